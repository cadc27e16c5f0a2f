package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/xsyn-project/xsyn/internal/protect"
	"github.com/xsyn-project/xsyn/internal/source"
	"github.com/xsyn-project/xsyn/loader"
	"github.com/xsyn-project/xsyn/spec"
)

const attachHelp = `Protects TCP ports on IFACE against SYN floods. An XDP program answers every SYN to those
ports with a SYN cookie; ACKs carrying a valid cookie go on to netfilter's SYNPROXY, which opens
the real connection to the server; forged ACKs are dropped in XDP. The netfilter rules (raw
NOTRACK, SYNPROXY, INVALID drop) and the sysctls SYNPROXY needs are installed too.
'xsyn explain' shows, without changing anything, what attach would install and why.

What to protect comes from one of three places:
  --config FILE   synproxy statements, as FireHOL writes them (docs/config.md). attach installs
                  the statements that apply to IFACE (no inface, or one naming IFACE).
  --port P        the flag form: these ports on every address (or on --dst), with the option
                  flags; one 'input ... accept' statement per family.
  neither         what this host serves on IFACE: every TCP port listening on one of IFACE's
                  addresses or on a wildcard address, on each of IFACE's addresses. Ports
                  listening only on other addresses (loopback, say) are left alone.
--config cannot be combined with --port, --dst or the option flags: the file says it all.

A configuration file, for instance /etc/xsyn/eth0.conf:
  # the host's SSH, moved to port 2200 outside, logged
  synproxy4 in inface eth0 dst 203.0.113.10 dport 2200 redirect to 22 loglimit "SYNPROXY SSH"
  # a web server behind this router
  synproxy6 forward inface eth0 dst 2001:db8::10 dport 80,443 dnat to [2001:db8:1::5]
A file with errors is reported line by line (FILE:LINE:COL: message) and attach exits 1 with
nothing changed; so does a statement that needs what the host lacks (the user chain of an
'action CHAIN', forwarding for a server behind this host).

Connections already open to a protected service keep working only if conntrack tracks them
(a stateful firewall does): their segments carry no cookie. attach refuses to cut any that it
does not track, listing them and how to keep them, unless --cut-untracked is given.

Running attach again updates the configuration in place, without a moment unprotected. Where
the kernel cannot run the XDP program (before Linux 6.0), the same netfilter rules protect on
their own (netfilter-only mode) and attach says so. Statements XDP cannot answer (those
matching a source address or port, or an outgoing interface) are answered by SYNPROXY alone.

The TCP options must match what the protected server offers (SYNPROXY opens the real connection
with the options the client accepted from us). By default they are what this host's own stack
offers: MSS from the interface MTU (1460, or 1440 for IPv6, on a 1500-byte link), window scale
from the receive buffer limits (7 on a stock kernel), SACK and timestamps on. Before changing
anything, attach connects to every server it can name (the destination of an accept, the
target of a redirect or dnat; 2s each) and warns where the server offers other options; with
--probe it adopts the server's options instead. A server that does not answer is a warning.

Examples:
  xsyn attach eth0
  xsyn attach eth0 --port 80,443
  xsyn attach eth0 --port 22 --dst 203.0.113.10 --mss 1400
  xsyn attach eth0 --port 8000-8010 --dst 2001:db8::/64 --no-timestamps
  xsyn attach eth0 --config /etc/xsyn/eth0.conf --probe
`

func runAttach(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("attach", "attach IFACE [--config FILE | --port P[,P...] [flags]] [--probe] [--mode M]", attachHelp, stdout)
	sf := addSpecFlags(fs)
	mode := "auto"
	fs.Func("mode", "protect in mode `M`: auto (the default: native XDP, else generic), native, generic, or netfilter (SYNPROXY alone, no XDP)", func(v string) error {
		switch v {
		case "auto", "native", "generic", protect.ModeNetfilter:
			mode = v
			return nil
		}
		return errors.New("want auto, native, generic or netfilter")
	})
	probe := fs.Bool("probe", false, "adopt the TCP options each server offers (default: warn where they differ)")
	cut := fs.Bool("cut-untracked", false, "protect even if that cuts established connections conntrack does not track")
	iface, b, err := parseSpec(fs, sf, args)
	if err != nil {
		return err
	}
	if b.StackErr != nil {
		return b.StackErr // no such interface
	}
	if err := requireRoot(); err != nil {
		return err
	}

	s, notes, err := checkServers(b, *probe, func(w string) { fmt.Fprintf(stderr, "xsyn attach: warning: %s\n", w) })
	if err != nil {
		return err
	}
	for _, st := range s.Statements {
		if w := localWarning(st, iface, b.Addrs); w != "" {
			fmt.Fprintf(stderr, "xsyn attach: warning: %s: %s\n", source.Where(st), strings.TrimPrefix(w, "warning: "))
		}
	}
	p, err := protect.New()
	if err != nil {
		return err
	}
	if !*cut {
		conns, err := p.Untracked(iface, s)
		if err != nil {
			return err
		}
		if len(conns) > 0 {
			return untrackedError(conns)
		}
	}
	res, err := p.Apply(iface, s, mode)
	if err != nil {
		return attachHint(err, iface, mode)
	}
	for _, w := range res.Warnings {
		fmt.Fprintf(stderr, "xsyn attach: warning: %s\n", w)
	}
	verb := "protecting"
	if res.Reconfigured {
		verb = "updated; protecting"
	}
	fmt.Fprintf(stdout, "%s: %s (%s)\n", iface, verb, describeMode(res.Mode, res.Holder, res.StateDir))
	xdp := res.Mode != protect.ModeNetfilterOnly
	printStatements(stdout, s.Statements, xdp, notes)
	if xdp {
		printXDPServices(stdout, s.Services)
	}
	return nil
}

// checkServers probes the servers of b's statements. Without adopt it warns where a server
// offers other options than its statement; with adopt it returns the spec with the servers'
// options, and notes saying what was adopted, by statement. A server that cannot be probed is
// a warning either way.
func checkServers(b *source.Built, adopt bool, warn func(string)) (spec.Spec, map[int][]string, error) {
	s := b.Spec
	c := source.Checker{AskedECN: source.AsksECN()}
	findings := c.Check(context.Background(), s, b.Addrs)
	for _, f := range findings {
		if f.Err != nil {
			warn(fmt.Sprintf("%s: %v; its TCP options are not checked", source.Where(s.Statements[f.Stmt]), f.Err))
		}
	}
	notes := map[int][]string{}
	if !adopt {
		for _, f := range findings {
			if len(f.Mismatches) > 0 {
				warn(mismatchWarning(b.Kind, s.Statements[f.Stmt], f))
			}
		}
		return s, notes, nil
	}
	adopted, as, err := source.Adopt(b.Iface, s, findings)
	if err != nil {
		return spec.Spec{}, nil, err
	}
	for _, a := range as {
		notes[a.Stmt] = append(notes[a.Stmt], fmt.Sprintf("adopted from server %s (--probe): %s", joinAddrs(a.Servers), strings.Join(source.Changes(a.From, a.To), ", ")))
	}
	// What even the adopted options cannot match (a server without window scaling, say).
	for _, f := range findings {
		if f.Err != nil {
			continue
		}
		if m := f.Offer.Mismatches(adopted.Statements[f.Stmt].Options); len(m) > 0 {
			warn(fmt.Sprintf("%s: server %s: %s: no SYN-ACK option can match that", source.Where(s.Statements[f.Stmt]), f.Server, strings.Join(m, "; ")))
		}
	}
	return adopted, notes, nil
}

// mismatchWarning says where a server differs from its statement and how to make them agree.
func mismatchWarning(k source.Kind, st spec.Statement, f source.Finding) string {
	msg := fmt.Sprintf("%s: server %s offers other TCP options than the SYN-ACK (%s): run with --probe to adopt the server's options",
		source.Where(st), f.Server, strings.Join(f.Mismatches, "; "))
	want := f.Offer.Apply(st.Options)
	if k == source.FromConfig {
		if w := source.ConfigWords(st.Options, want); w != "" {
			msg += ", or set " + w
		}
	} else if w := source.FlagWords(st.Options, want); w != "" {
		msg += ", or give " + w
	}
	return msg
}

func joinAddrs[T fmt.Stringer](as []T) string {
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = a.String()
	}
	return strings.Join(s, ", ")
}

// untrackedError refuses to cut connections the operator may be using, saying how to keep them.
func untrackedError(conns []protect.Conn) error {
	var b strings.Builder
	fmt.Fprintf(&b, "refusing to cut %d established connection(s) to protected services that conntrack does not track:", len(conns))
	for i, c := range conns {
		if i == 5 {
			fmt.Fprintf(&b, "\n  ... and %d more", len(conns)-i)
			break
		}
		fmt.Fprintf(&b, "\n  %s", c)
	}
	b.WriteString("\ntheir next segment would have no conntrack entry and no valid cookie, and be dropped as a forged ACK (your SSH session, if it is one of them); nothing was changed" +
		"\nmake conntrack track them first: iptables -I INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT (ip6tables too), then traffic on each (docs/operator-guide.md, Before you attach over SSH); or cut them: --cut-untracked")
	return errors.New(b.String())
}

// attachHint adds, on a line of its own, what to do about the errors of attach that another
// --mode avoids.
func attachHint(err error, iface, mode string) error {
	switch {
	case errors.Is(err, loader.ErrFeatureMissing):
		return fmt.Errorf("%w\nthe XDP fast path cannot run on this kernel: --mode auto protects %s with netfilter SYNPROXY alone, and says so (--mode netfilter asks for that outright)", err, iface)
	case mode == string(loader.ModeNative) && errors.Is(err, unix.EOPNOTSUPP):
		return fmt.Errorf("%w\nthe driver of %s has no native XDP: --mode generic (or auto, which falls back to it and warns) attaches after the kernel has built the skb: slower, but protected", err, iface)
	}
	return err
}

func requireRoot() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("must run as root (needs CAP_NET_ADMIN, CAP_BPF and CAP_PERFMON): try sudo")
	}
	return nil
}
