package spec

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
)

// Path is how a valid client ACK becomes a connection.
type Path int

// The paths.
const (
	// PathSynproxy: the XDP program answers with the kernel's cookie and netfilter's SYNPROXY
	// target opens the connection to the server (FireHOL's design). Every action, forwarding,
	// any kernel with netfilter.
	PathSynproxy Path = iota
	// PathHandoff: the XDP program answers with xsyn's own cookie and a TC program hands the
	// valid ACK straight to the listening socket (bpf_sk_assign_tcp_reqsk, Linux 6.9+). No
	// netfilter rules, no sysctls; the host's firewall still sees the ACK and decides.
	PathHandoff
)

func (p Path) String() string {
	if p == PathHandoff {
		return "handoff"
	}
	return "synproxy"
}

// Via is what a statement asks for (config `path`, flag --path).
type Via int

// The choices.
const (
	ViaAuto     Via = iota // handoff where the statement and the kernel allow it, else synproxy
	ViaSynproxy            // always SYNPROXY
	ViaHandoff             // handoff or an error
)

func (v Via) String() string {
	switch v {
	case ViaSynproxy:
		return "synproxy"
	case ViaHandoff:
		return "handoff"
	}
	return "auto"
}

// ParseVia reads auto, synproxy or handoff.
func ParseVia(s string) (Via, error) {
	switch s {
	case "auto":
		return ViaAuto, nil
	case "synproxy":
		return ViaSynproxy, nil
	case "handoff":
		return ViaHandoff, nil
	}
	return ViaAuto, fmt.Errorf("%w: path %q: want auto, synproxy or handoff", ErrInvalid, s)
}

// HandoffReason says why the statement cannot take the handoff path ("" when it can): the
// handoff gives the connection to a listening socket of this host, as the client asked for it.
func (st Statement) HandoffReason() string {
	switch {
	case st.Direction != Input:
		return "it forwards to another host (only SYNPROXY can open that connection)"
	case st.Action.Kind != Accept:
		return fmt.Sprintf("its action is %s, which only netfilter can carry out", st.Action)
	}
	if ok, why := st.XDP(); !ok {
		return "XDP cannot answer it: " + why
	}
	return ""
}

// resolvePath sets Path and PathReason from Via and what the statement allows.
func (st *Statement) resolvePath() error {
	why := st.HandoffReason()
	switch {
	case st.Via == ViaSynproxy:
		st.Path, st.PathReason = PathSynproxy, "asked for (path synproxy)"
	case st.Via == ViaHandoff && why != "":
		return statementError{st.Pos, "path handoff is not possible: " + why}
	case st.Via == ViaHandoff:
		st.Path, st.PathReason = PathHandoff, ""
	case why != "":
		st.Path, st.PathReason = PathSynproxy, why
	default:
		st.Path, st.PathReason = PathHandoff, ""
	}
	return nil
}

// HasPath reports whether any statement takes path p.
func (s Spec) HasPath(p Path) bool {
	for _, st := range s.Statements {
		if st.Path == p {
			return true
		}
	}
	return false
}

// WithVia asks every statement for path v and compiles them again for iface: what --path does
// to the statements the flags (or the listeners) make.
func (s Spec) WithVia(iface string, v Via) (Spec, error) {
	stmts := append([]Statement(nil), s.Statements...)
	for i := range stmts {
		stmts[i].Via = v
	}
	out, err := Compile(iface, s.Settings, stmts)
	if err != nil {
		return Spec{}, err
	}
	out.CookieKey = s.CookieKey
	return out, nil
}

// ErrHandoffUnavailable: a statement demands the handoff path (path handoff) where it cannot run.
var ErrHandoffUnavailable = errors.New("socket handoff unavailable")

// WithoutHandoff moves every statement to the SYNPROXY path, saying why (the kernel lacks the
// handoff, or no XDP runs to answer SYNs with xsyn's cookie). A statement that demands the
// handoff (path handoff) makes it an error wrapping ErrHandoffUnavailable.
func (s Spec) WithoutHandoff(why string) (Spec, error) {
	return s.MoveToSynproxy(func(Statement) string { return why })
}

// MoveToSynproxy moves the handoff statements for which why says a reason ("" keeps the
// handoff) to the SYNPROXY path, with every statement whose destinations overlap theirs (one
// SYN-ACK cannot serve two paths), and the XDP services with them. A statement that demands the
// handoff (path handoff) makes it an error wrapping ErrHandoffUnavailable.
func (s Spec) MoveToSynproxy(why func(Statement) string) (Spec, error) {
	out := s
	out.Statements = append([]Statement(nil), s.Statements...)
	out.Services = append([]Service(nil), s.Services...)
	move := func(st *Statement, reason string) error {
		if st.Via == ViaHandoff {
			return fmt.Errorf("%w: %s: %s", ErrHandoffUnavailable, st.Origin(), reason)
		}
		st.Path, st.PathReason = PathSynproxy, reason
		return nil
	}
	for i := range out.Statements {
		st := &out.Statements[i]
		if st.Path != PathHandoff {
			continue
		}
		if reason := why(*st); reason != "" {
			if err := move(st, reason); err != nil {
				return Spec{}, err
			}
		}
	}
	// Overlapping statements follow, as Compile has them do.
	if err := out.followSynproxy(); err != nil {
		return Spec{}, err
	}
	out.dropOnDemand()
	out.syncServiceHandoff()
	return out, nil
}

// syncServiceHandoff sets each service's Handoff from the statement that answers it in XDP: the
// first one covering its destination and port, as Compile chose it.
func (s *Spec) syncServiceHandoff() {
	type key struct {
		fam  Family
		dst  netip.Prefix
		port uint16
	}
	owner := map[key]bool{}
	for _, st := range s.Statements {
		if ok, _ := st.XDP(); !ok {
			continue
		}
		for _, dst := range st.Match.Dst.Positive(st.Family) {
			for _, r := range st.Match.Dport.Positive() {
				for p := int(r.Lo); p <= int(r.Hi); p++ {
					k := key{st.Family, dst, uint16(p)}
					if _, seen := owner[k]; !seen {
						owner[k] = st.Path == PathHandoff
					}
				}
			}
		}
	}
	for i := range s.Services {
		svc := &s.Services[i]
		svc.Handoff = owner[key{svc.Family, svc.Dst, svc.Port}]
		if !svc.Handoff {
			svc.OnDemand = 0
		}
	}
}

// CookieKey is the 128-bit SipHash key of the handoff path's cookies.
type CookieKey [16]byte

// ReadCookieKey reads a key file: 32 hexadecimal digits (128 bits), surrounding white space
// allowed, nothing else. Nodes that share the file validate each other's cookies. The file must
// not be readable by other users: whoever knows the key can forge handshakes.
func ReadCookieKey(path string) (CookieKey, error) {
	var k CookieKey
	fi, err := os.Stat(path)
	if err != nil {
		return k, fmt.Errorf("cookie secret file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return k, fmt.Errorf("cookie secret file %s: not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return k, fmt.Errorf("cookie secret file %s: mode %04o lets other users read the key: chmod 600 %s", path, perm, path)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return k, fmt.Errorf("cookie secret file: %w", err)
	}
	text := strings.TrimSpace(string(raw))
	if len(text) != 32 {
		return k, fmt.Errorf("cookie secret file %s: want 32 hexadecimal digits (128 bits), found %d characters; make one with: head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \\n' > %s", path, len(text), path)
	}
	if _, err := hex.Decode(k[:], []byte(text)); err != nil {
		return k, fmt.Errorf("cookie secret file %s: want 32 hexadecimal digits: %v", path, err)
	}
	if k == (CookieKey{}) {
		return k, fmt.Errorf("cookie secret file %s: the key is all zeros", path)
	}
	return k, nil
}

// followSynproxy moves to the SYNPROXY path every handoff statement whose destinations overlap
// a SYNPROXY statement's (one SYN-ACK cannot serve two paths), until none is left: FireHOL's
// `input ... accept` beside a `forward ... dnat` for the same address and port keeps working.
// A statement that demands the handoff (path handoff) makes the overlap an error.
func (s *Spec) followSynproxy() error {
	for changed := true; changed; {
		changed = false
		for i := range s.Statements {
			st := &s.Statements[i]
			if st.Path != PathHandoff {
				continue
			}
			for _, o := range s.Statements {
				if o.Path != PathSynproxy || o.Family != st.Family || !o.overlaps(*st) {
					continue
				}
				if st.Via == ViaHandoff {
					return statementError{st.Pos, fmt.Sprintf("path handoff is not possible: it matches destinations of %s, "+
						"which takes the SYNPROXY path (%s), and one SYN-ACK cannot serve both; give both the same `path`", where(o), o.PathReason)}
				}
				st.Path, st.PathReason = PathSynproxy, fmt.Sprintf("it matches destinations of %s, which takes the SYNPROXY path", where(o))
				changed = true
				break
			}
		}
	}
	return nil
}

// where names a statement in a message: its position, or its text for one made from flags.
func where(st Statement) string {
	if st.Pos != (Pos{}) {
		return st.Pos.String()
	}
	return st.Origin()
}
