package backend

import (
	"context"
	"fmt"
	"net/netip"
	"strings"

	"github.com/xsyn-project/xsyn/spec"
)

// Review is what attach makes of the servers of its statements before it changes anything.
type Review struct {
	Spec     spec.Spec        // the spec to apply: with the servers' options where they were adopted
	Notes    map[int][]string // per statement: what was adopted from its servers
	Warnings []string         // in the order to print them
}

// Review probes the servers of s's statements (Check). Without adopt it warns where a server
// offers other options than its statement, saying how to make them agree: as configuration words
// when written (the statements come from a file), else as flags. With adopt it returns s with
// the servers' options (Adopt), notes saying what was adopted, by statement, and warnings where
// even the adopted options cannot match. A server that cannot be probed is a warning either way.
func (c Checker) Review(ctx context.Context, iface string, s spec.Spec, ifaceAddrs []netip.Addr, adopt, written bool) (Review, error) {
	r := Review{Spec: s, Notes: map[int][]string{}}
	findings := c.Check(ctx, s, ifaceAddrs)
	for _, f := range findings {
		if f.Err != nil {
			r.Warnings = append(r.Warnings, fmt.Sprintf("%s: %v; its TCP options are not checked", Where(s.Statements[f.Stmt]), f.Err))
		}
	}
	if !adopt {
		for _, f := range findings {
			if len(f.Mismatches) > 0 {
				r.Warnings = append(r.Warnings, MismatchWarning(s.Statements[f.Stmt], f, written))
			}
		}
		return r, nil
	}
	adopted, as, err := Adopt(iface, s, findings)
	if err != nil {
		return Review{}, err
	}
	r.Spec = adopted
	for _, a := range as {
		r.Notes[a.Stmt] = append(r.Notes[a.Stmt], fmt.Sprintf("adopted from server %s (--probe): %s", joinAddrs(a.Servers), strings.Join(Changes(a.From, a.To), ", ")))
	}
	// What even the adopted options cannot match (a server without window scaling, say).
	for _, f := range findings {
		if f.Err != nil {
			continue
		}
		if m := f.Offer.Mismatches(adopted.Statements[f.Stmt].Options); len(m) > 0 {
			r.Warnings = append(r.Warnings, fmt.Sprintf("%s: server %s: %s: no SYN-ACK option can match that", Where(s.Statements[f.Stmt]), f.Server, strings.Join(m, "; ")))
		}
	}
	return r, nil
}

// MismatchWarning says where a server differs from its statement and how to make them agree:
// in configuration words when written, else as flags.
func MismatchWarning(st spec.Statement, f Finding, written bool) string {
	msg := fmt.Sprintf("%s: server %s offers other TCP options than the SYN-ACK (%s): run with --probe to adopt the server's options",
		Where(st), f.Server, strings.Join(f.Mismatches, "; "))
	want := f.Offer.Apply(st.Options)
	if written {
		if w := ConfigWords(st.Options, want); w != "" {
			msg += ", or set " + w
		}
	} else if w := FlagWords(st.Options, want); w != "" {
		msg += ", or give " + w
	}
	return msg
}

// Notes says which servers statement i of a spec hands its connections to and, where findings
// has them probed, what they offer, as explain lists it under the statement.
func Notes(i int, st spec.Statement, ifaceAddrs []netip.Addr, findings []Finding) []string {
	servers, why := Servers(st, ifaceAddrs)
	var out []string
	if len(servers) == 0 {
		return []string{"server: not checked: " + why}
	}
	line := "server: " + joinAddrs(servers)
	if why != "" {
		line += " (" + why + ")"
	}
	out = append(out, line)
	for _, f := range findings {
		switch {
		case f.Stmt != i:
		case f.Err != nil:
			out = append(out, fmt.Sprintf("  %v", f.Err))
		case len(f.Mismatches) == 0:
			out = append(out, fmt.Sprintf("  %s offers the same options", f.Server))
		default:
			out = append(out, fmt.Sprintf("  %s differs: %s; attach --probe would adopt: %s", f.Server,
				strings.Join(f.Mismatches, "; "), strings.Join(Changes(st.Options, f.Offer.Apply(st.Options)), ", ")))
		}
	}
	return out
}

// joinAddrs lists servers: "192.0.2.10:80, 192.0.2.11:80".
func joinAddrs(as []netip.AddrPort) string {
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = a.String()
	}
	return strings.Join(s, ", ")
}
