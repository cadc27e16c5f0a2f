package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"

	"github.com/xsyn-project/xsyn/internal/source"
	"github.com/xsyn-project/xsyn/loader"
	"github.com/xsyn-project/xsyn/rules"
	"github.com/xsyn-project/xsyn/spec"
)

const explainHelp = `Shows what 'xsyn attach IFACE' with the same flags would install, and why, changing nothing:
the settings, each statement with its TCP options and whether XDP or SYNPROXY answers its
SYNs, the servers it hands connections to, the XDP services table, the netfilter rules of
each family in iptables-save form with a comment on what every rule does, and the sysctls
attach changes and the requirements it checks. It needs no root: it reads the interface's
MTU, the stack's buffer limits and (without --port or --config) the listening sockets.

It takes what attach takes: --config FILE (docs/config.md), or --port with the option flags,
or neither (the ports listening on IFACE's addresses). For an interface that does not exist
(yet) a configuration is still explained, with xsyn's default TCP options instead of the
stack's, and explain says so. With --probe it also connects to each server and shows what it
offers, as attach does before it changes anything.

A configuration file, for instance eth0.conf:
  # the host's SSH, moved to port 2200 outside, logged
  synproxy4 in inface eth0 dst 203.0.113.10 dport 2200 redirect to 22 loglimit "SYNPROXY SSH"
  # a web server behind this router
  synproxy6 forward inface eth0 dst 2001:db8::10 dport 80,443 dnat to [2001:db8:1::5]
Errors in it are reported line by line (FILE:LINE:COL: message); explain then exits 1.

Examples:
  xsyn explain eth0 --config eth0.conf
  xsyn explain eth0 --port 80,443 --mss 1400
  xsyn explain eth0
`

// flowText is the path of one protected connection, for the reader of explain.
const flowText = `How a connection to a protected service goes:
  1. SYN: the client's SYN is answered at once with a SYN-ACK whose sequence number is a SYN
     cookie, by the XDP program before the kernel allocates anything, or else by netfilter's
     SYNPROXY (the SYN skips conntrack: raw NOTRACK). No socket or conntrack entry is spent,
     so a flood of forged SYNs costs a SYN-ACK each and nothing else.
  2. ACK: a real client sends the cookie back in its ACK. XDP drops ACKs with a wrong cookie;
     SYNPROXY validates the rest, in filter INPUT when the client dialled one of this host's
     addresses, FORWARD when this host routes its packets.
  3. SYN to the server: only now SYNPROXY opens the real connection, with a SYN of its own
     carrying the client's address and the TCP options the client accepted. mangle OUTPUT
     marks it; nat OUTPUT applies the statement's redirect or dnat (the cookie holds the
     original destination, so NAT can only happen now); filter OUTPUT applies the statement's
     action and loglimit. A marked SYN no statement claims is dropped.
  4. SYNPROXY splices the two halves; the rest is ordinary conntrack traffic.
  Client and server never negotiate with each other, so the SYN-ACK must offer the server's
  own TCP options (MSS, window scale, SACK, timestamps): see each statement's.
`

func runExplain(args []string, stdout, _ io.Writer) error {
	fs := newFlags("explain", "explain IFACE [--config FILE | --port P[,P...] [flags]] [--probe]", explainHelp, stdout)
	sf := addSpecFlags(fs)
	probe := fs.Bool("probe", false, "also connect to each server and compare the TCP options it offers")
	iface, b, err := parseSpec(fs, sf, args)
	if err != nil {
		return err
	}
	plan, err := rules.Build(iface, b.Spec)
	if err != nil {
		return err
	}
	var findings []source.Finding
	if *probe {
		findings = source.Checker{AskedECN: source.AsksECN()}.Check(context.Background(), b.Spec, b.Addrs)
	}
	w := &errWriter{w: stdout}
	explainSpec(w, b, findings)
	explainRules(w, plan)
	return w.err
}

// explainSpec prints the header, the settings, the statements and the XDP services.
func explainSpec(w io.Writer, b *source.Built, findings []source.Finding) {
	from := map[source.Kind]string{
		source.FromConfig:    "the statements of the configuration that apply to " + b.Iface,
		source.FromFlags:     "--port and the option flags, one 'input ... accept' statement per family",
		source.FromListeners: "the TCP ports listening on " + b.Iface + "'s addresses (no --port, no --config)",
	}[b.Kind]
	fmt.Fprintf(w, "xsyn explain %s: what 'xsyn attach %s' would install, from %s. Nothing is changed.\n\n", b.Iface, b.Iface, from)
	fmt.Fprint(w, flowText+"\n")
	switch {
	case b.StackErr != nil && errors.Is(b.StackErr, loader.ErrNoInterface):
		fmt.Fprintf(w, "Note: %v.\nThe TCP options below are xsyn's defaults (MSS of a 1500-byte MTU, window scale 7), not\n"+
			"what this host's stack would offer there; attach would fail until the interface exists.\n\n", b.StackErr)
	case b.StackErr != nil:
		fmt.Fprintf(w, "Note: %v. The TCP options below are xsyn's defaults, not the stack's.\n\n", b.StackErr)
	default:
		fmt.Fprintf(w, "Interface %s: MTU %d; its stack offers window scale %d (from the receive buffer limits).\n"+
			"Options a statement does not set are those the stack offers.\n\n", b.Iface, b.Stack.MTU, b.Stack.WScale)
	}

	set := b.Spec.Settings
	fmt.Fprintln(w, "Settings:")
	fmt.Fprintf(w, "  mark %s: set on SYNPROXY's SYN to the server; only SYNs with it pass xsyn's isolation rules\n", set.MarkString())
	fmt.Fprintf(w, "  loopback %s: %s\n\n", set.Loopback, loopbackWhy[set.Loopback])

	fmt.Fprintln(w, "Statements (the first that matches a SYN wins):")
	notes := map[int][]string{}
	for i, st := range b.Spec.Statements {
		notes[i] = serverNotes(i, st, b, findings)
		if w := localWarning(st, b.Iface, b.Addrs); w != "" {
			notes[i] = append(notes[i], w)
		}
	}
	printStatements(w, b.Spec.Statements, true, notes)
	fmt.Fprintln(w)

	fmt.Fprintln(w, "XDP services (the XDP program matches a SYN's destination address and port; the")
	fmt.Fprintln(w, "first statement covering a destination gives its options):")
	printXDPServices(w, b.Spec.Services)
	fmt.Fprintln(w)
}

var loopbackWhy = map[spec.LoopbackPolicy]string{
	spec.LoopbackStrict: "lo is trusted only between loopback addresses, and a packet for a loopback address arriving on any other interface is dropped",
	spec.LoopbackLoose:  "everything on lo is accepted",
	spec.LoopbackNone:   "no loopback rules; the rest of the firewall decides",
}

// localWarning warns about a statement whose destinations include addresses of the interface
// but that has no SYNPROXY in INPUT, where the client's packets to them go: a forward statement
// that keeps the destination, or that has an outface. Its SYNs are answered (by XDP, or
// NOTRACKed for SYNPROXY in FORWARD) and nothing completes the handshake.
func localWarning(st spec.Statement, iface string, addrs []netip.Addr) string {
	if rules.ProxiesLocal(st) {
		return ""
	}
	var hit []string
	for _, a := range addrs {
		if a.IsLinkLocalUnicast() || a.Is4() != (st.Family == spec.IPv4) {
			continue
		}
		if slices.ContainsFunc(st.Match.Dst.Positive(st.Family), func(p netip.Prefix) bool { return p.Contains(a) }) {
			hit = append(hit, a.String())
		}
	}
	if len(hit) == 0 {
		return ""
	}
	why, fix := "its action ("+st.Action.String()+") keeps the destination", "write 'in' for them"
	if k := st.Action.Kind; k == spec.DNAT || k == spec.Redirect {
		why, fix = "it has an outface, which INPUT cannot match", "leave outface out"
	}
	return fmt.Sprintf("warning: it matches %s, of %s, but %s: SYNPROXY is in FORWARD only and connections to this host's own addresses fail; %s",
		strings.Join(hit, ", "), iface, why, fix)
}

// serverNotes says which servers statement i hands its connections to and, when they were
// probed, what they offer.
func serverNotes(i int, st spec.Statement, b *source.Built, findings []source.Finding) []string {
	servers, why := source.Servers(st, b.Addrs)
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
				strings.Join(f.Mismatches, "; "), strings.Join(source.Changes(st.Options, f.Offer.Apply(st.Options)), ", ")))
		}
	}
	return out
}

// explainRules prints each family's rules, the sysctls and the requirements.
func explainRules(w io.Writer, plan rules.Plan) {
	for _, fp := range plan.Families {
		cmd := "iptables-save"
		if fp.Family == spec.IPv6 {
			cmd = "ip6tables-save"
		}
		fmt.Fprintf(w, "%s rules, as '%s' shows them once attached (# lines: what each chain and rule is for):\n", fp.Family, cmd)
		plan.Render(w, fp.Family)
		fmt.Fprintln(w)
	}
	sys := rules.ProcSys{Root: "/proc/sys"}
	fmt.Fprintln(w, "Sysctls attach sets in this network namespace (detach of the last interface puts them back):")
	for _, s := range plan.Sysctls {
		fmt.Fprintf(w, "  %s=%s (%s): %s\n", s.Key, s.Value, nowValue(sys, s.Key), s.Why)
	}
	fmt.Fprintln(w, "Requirements attach checks before changing anything (xsyn does not create them):")
	if len(plan.Requires) == 0 {
		fmt.Fprintln(w, "  none")
	}
	for _, r := range plan.Requires {
		now := ""
		if r.Sysctl != "" {
			now = " (" + nowValue(sys, r.Sysctl) + ")"
		}
		fmt.Fprintf(w, "  [%s] %s%s\n", r.Origin, r, now)
	}
}

func nowValue(sys rules.ProcSys, key string) string {
	v, err := sys.Get(key)
	if err != nil {
		return "now unreadable"
	}
	return "now " + v
}

// errWriter keeps the first write error, so that a long listing is checked once.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.w.Write(p)
	e.err = err
	return n, err
}
