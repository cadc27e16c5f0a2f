package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/xsyn-project/xsyn/internal/backend"
	"github.com/xsyn-project/xsyn/internal/host"
	"github.com/xsyn-project/xsyn/internal/intent"
	"github.com/xsyn-project/xsyn/internal/protect"
	"github.com/xsyn-project/xsyn/loader"
	"github.com/xsyn-project/xsyn/rules"
	"github.com/xsyn-project/xsyn/spec"
)

const explainHelp = `Shows what 'xsyn attach IFACE' with the same flags would install, and why, changing nothing:
the settings, each statement with its TCP options, the path it takes and why, the servers it
hands connections to, the XDP services table, the netfilter rules of each family (for the
statements on the SYNPROXY path) in iptables-save form with a comment on what every rule does,
and the sysctls attach changes and the requirements it checks. It needs no root: it reads the
interface's MTU, the stack's buffer limits and (without --port or --config) the listening
sockets.

Each statement takes one of two paths:
  handoff   an 'input ... accept' statement that XDP can match (destination and port only),
            by default: XDP answers with xsyn's own cookie and the valid ACK is handed
            straight to the listening socket. No SYNPROXY, no sysctls; your firewall still
            decides. Needs Linux 6.9+.
  synproxy  every other statement (forward, redirect, dnat, reject, drop, action CHAIN, a
            match on src, sport or outface), any that asks for it (--path synproxy, or 'path
            synproxy' in a configuration), and any that attach moves there: FireHOL's
            netfilter SYNPROXY opens the connection.
attach moves a statement from the handoff to SYNPROXY, with a warning, where the handoff cannot
run (a kernel before 6.9, or attach --mode netfilter), or where its server listens with MPTCP,
which the kernel cannot hand connections to (Go programs do by default: GODEBUG=multipathtcp=0
turns that off, as does net.ListenConfig's SetMultipathTCP(false)); a statement that shares
destinations with a moved one follows it. For a statement that demands the handoff (path
handoff) each of those is an error. Run as root, explain checks the kernel and the listening
servers as attach does, shows the paths attach would take and prints the warnings it would
print; without root it says it could not check. --cookie-secret-file FILE is accepted and
named, not read: attach reads it.

It takes what attach takes: --config FILE (docs/config.md), or --port with the option flags,
or neither (the ports listening on IFACE's addresses). Without IFACE, --config FILE is
explained for each interface its statements name in inface, one after the other, as attach
without IFACE would protect them all; every statement must then name its interfaces. For an
interface that does not exist (yet) a configuration is still explained, with xsyn's default
TCP options instead of the stack's, and explain says so. With --probe it also connects to each
server and shows what it offers, as attach does before it changes anything.

A configuration file, for instance eth0.conf:
  # the host's SSH, moved to port 2200 outside, logged: SYNPROXY
  synproxy4 in inface eth0 dst 203.0.113.10 dport 2200 redirect to 22 loglimit "SYNPROXY SSH"
  # a web server behind this router: SYNPROXY
  synproxy6 forward inface eth0 dst 2001:db8::10 dport 80,443 dnat to [2001:db8:1::5]
  # this host's web server: the handoff, or an error where it cannot run
  synproxy in inface eth0 dst 203.0.113.10,2001:db8::1 dport 80,443 path handoff accept
Errors in it are reported line by line (FILE:LINE:COL: message); explain then exits 1.

Examples:
  xsyn explain eth0 --config eth0.conf
  xsyn explain --config xsyn.conf
  xsyn explain eth0 --port 80,443 --mss 1400
  xsyn explain eth0 --port 443 --path handoff
  xsyn explain eth0
`

// handoffFlow is the path of a connection on the handoff path, for the reader of explain.
const handoffFlow = `How a connection on the handoff path goes:
  1. SYN: XDP answers at once with a SYN-ACK whose sequence number is xsyn's own cookie: a
     SipHash of the connection and the minute, keyed by the cookie secret, that also carries
     the client's MSS, window scale, SACK and timestamp choices. No socket, conntrack entry or
     skb is spent, so a flood of forged SYNs costs a SYN-ACK each and nothing else.
  2. ACK: an ACK for a connection the host has passes. Otherwise XDP checks the cookie (this
     minute's or the last) and drops a wrong one; a TC program hands a valid one straight to
     the listening socket, which makes the connection as if it had answered the SYN itself.
  3. No SYNPROXY is involved. Alone, the handoff needs no netfilter rule and no sysctl: your
     firewall's INPUT rules see the ACK and decide, as for any connection. Beside statements on
     the SYNPROXY path, which turn conntrack's loose tracking off, xsyn's raw rules keep the
     handed-off connections out of conntrack: your firewall sees their packets UNTRACKED, and a
     rule that accepts only NEW or ESTABLISHED ones does not match them.
`

// synproxyFlow is the path of a connection on the SYNPROXY path, for the reader of explain.
const synproxyFlow = `How a connection on the SYNPROXY path goes:
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
	fs := newFlags("explain", "explain [IFACE] [--config FILE | --port P[,P...] [flags]] [--probe]", explainHelp, stdout)
	sf := addSpecFlags(fs)
	probe := fs.Bool("probe", false, "also connect to each server and compare the TCP options it offers")
	named, bs, err := parseSpecs(fs, sf, args)
	if err != nil {
		return err
	}
	w := &errWriter{w: stdout}
	if named == "" {
		fmt.Fprintf(w, "xsyn explain --config %s: its statements name %s; what 'xsyn attach --config %s' would install on each follows.\n\n",
			sf.config, joinIfaces(bs), sf.config)
	}
	shown := map[spec.Path]bool{} // the paths whose flow was told already: told once
	for i, b := range bs {
		if len(bs) > 1 {
			fmt.Fprintf(w, "=== %s (%d of %d) ===\n\n", b.Iface, i+1, len(bs))
		}
		err := explainIface(w, b, *probe, shown)
		switch {
		case err != nil && len(bs) > 1:
			return fmt.Errorf("%s: %w", b.Iface, err)
		case err != nil:
			return err
		}
	}
	return w.err
}

// explainIface explains what attach would install on one interface. shown are the paths whose
// flow was told already (for an earlier interface), which it adds to.
func explainIface(w *errWriter, b *intent.Built, probe bool, shown map[spec.Path]bool) error {
	hostNote, err := hostPaths(b, func(s spec.Spec) (spec.Spec, []string, error) {
		return (&protect.Protector{}).ChoosePaths(b.Iface, s, loader.ModeAuto)
	})
	if err != nil {
		return err
	}
	// As root, the firewall attach would read (without, attach's check is only described).
	if err := (&protect.Protector{}).CheckFirewall(b.Iface, b.Spec); errors.Is(err, protect.ErrFirewallRefuses) {
		return fmt.Errorf("%w\nattach would fail the same way", err)
	}
	plan, err := rules.Build(b.Iface, b.Spec)
	if err != nil {
		return err
	}
	var findings []backend.Finding
	if probe {
		findings = backend.Checker{AskedECN: backend.AsksECN()}.Check(context.Background(), b.Spec, b.Addrs)
	}
	explainSpec(w, b, hostNote, findings, shown)
	explainRules(w, b.Spec, plan)
	return w.err
}

// hostPaths moves the handoff statements of b to SYNPROXY where this host cannot serve them
// on the handoff path, as attach would: choose is protect's ChoosePaths, which asks the kernel
// whether it has the socket handoff and sock_diag which servers listen with MPTCP. It returns
// what to say about it ("" when no statement takes the handoff), or the error attach would
// fail with: a statement insists on the handoff (path handoff). Where the host could not be
// asked (explain without root) it says so, and shows the paths as if nothing stood in the way.
func hostPaths(b *intent.Built, choose func(spec.Spec) (spec.Spec, []string, error)) (string, error) {
	if !b.Spec.HasPath(spec.PathHandoff) {
		return "", nil
	}
	s, warnings, err := choose(b.Spec)
	switch {
	case errors.Is(err, spec.ErrHandoffUnavailable):
		return "", fmt.Errorf("%w\nattach would fail the same way: %s", err, handoffUnavailableHint)
	case err != nil:
		return fmt.Sprintf("This host: whether its kernel has the socket handoff (Linux 6.9+), and which servers listen with MPTCP, "+
			"could not be checked (explain checks both as root): %v.\n"+
			"Shown as if nothing stands in the way of the handoff. Where the kernel lacks it, or a statement's server listens with MPTCP, "+
			"attach moves the statement to SYNPROXY and warns (or fails, for path handoff).", err), nil
	case len(warnings) == 0:
		return "Kernel: it has the socket handoff (Linux 6.9+), and no server of a statement on the handoff path listens with MPTCP.", nil
	}
	b.Spec = s
	var w strings.Builder
	w.WriteString("This host, checked as attach checks it (the kernel's socket handoff, the servers that listen with MPTCP):")
	for _, warning := range warnings {
		w.WriteString("\n  attach would warn: " + warning)
	}
	w.WriteString("\nThe statements below take the paths attach would give them.")
	return w.String(), nil
}

// explainSpec prints the header, the settings, the statements and the XDP services.
func explainSpec(w io.Writer, b *intent.Built, hostNote string, findings []backend.Finding, shown map[spec.Path]bool) {
	from := map[intent.Kind]string{
		intent.FromConfig:    "the statements of the configuration that apply to " + b.Iface,
		intent.FromFlags:     "--port and the option flags, one 'input ... accept' statement per family",
		intent.FromListeners: "the TCP ports listening on " + b.Iface + "'s addresses (no --port, no --config)",
	}[b.Kind]
	fmt.Fprintf(w, "xsyn explain %s: what 'xsyn attach %s' would install, from %s. Nothing is changed.\n\n", b.Iface, b.Iface, from)
	fmt.Fprintf(w, "%s.\n\n", pathSummary(b.Spec.Statements))
	for _, f := range []struct {
		path spec.Path
		text string
	}{{spec.PathHandoff, handoffFlow}, {spec.PathSynproxy, synproxyFlow}} {
		if b.Spec.HasPath(f.path) && !shown[f.path] {
			fmt.Fprint(w, f.text+"\n")
			shown[f.path] = true
		}
	}
	if hostNote != "" {
		fmt.Fprint(w, hostNote+"\n\n")
	}
	switch {
	case b.StackErr != nil && errors.Is(b.StackErr, host.ErrNoInterface):
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
	if b.Spec.HasPath(spec.PathSynproxy) {
		fmt.Fprintf(w, "  mark %s: set on SYNPROXY's SYN to the server; only SYNs with it pass xsyn's isolation rules\n", set.MarkString())
		fmt.Fprintf(w, "  loopback %s: %s\n", set.Loopback, loopbackWhy[set.Loopback])
	} else {
		fmt.Fprintf(w, "  mark %s, loopback %s: unused, they concern the SYNPROXY path, which no statement takes\n", set.MarkString(), set.Loopback)
	}
	if c := cookieSecret(b.Spec); c != "" {
		fmt.Fprintf(w, "  %s\n", c)
	}
	fmt.Fprintln(w)

	fmt.Fprintln(w, "Statements (the first that matches a SYN wins):")
	notes := map[int][]string{}
	for i, st := range b.Spec.Statements {
		notes[i] = backend.Notes(i, st, b.Addrs, findings)
		if w := intent.LocalWarning(st, b.Iface, b.Addrs); w != "" {
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

// cookieSecret says where the handoff's cookie secret comes from, or "" when nothing takes the
// handoff and no secret is named.
func cookieSecret(s spec.Spec) string {
	file, handoff := s.Settings.CookieSecretFile, s.HasPath(spec.PathHandoff)
	switch {
	case file != "" && handoff:
		return "cookie-secret-file " + file + ": the handoff's cookie secret; attach reads it (explain does not), " +
			"and every machine with the same file accepts the others' cookies"
	case file != "":
		return "cookie-secret-file " + file + ": unused, no statement takes the handoff path"
	case handoff:
		return "cookie secret: random, made by the first attach and kept; machines behind one address " +
			"need the same one: cookie-secret-file FILE (--cookie-secret-file)"
	}
	return ""
}

var loopbackWhy = map[spec.LoopbackPolicy]string{
	spec.LoopbackStrict: "lo is trusted only between loopback addresses, and a packet for a loopback address arriving on any other interface is dropped",
	spec.LoopbackLoose:  "everything on lo is accepted",
	spec.LoopbackNone:   "no loopback rules; the rest of the firewall decides",
}

// explainRules prints each family's rules, the sysctls and the requirements: for the statements
// of s on the SYNPROXY path; the handoff path has none.
func explainRules(w io.Writer, s spec.Spec, plan rules.Plan) {
	switch {
	case len(plan.Families) == 0:
		fmt.Fprintln(w, "Netfilter rules: none; every statement takes the handoff path, which needs no netfilter rules and no sysctls.")
		fmt.Fprintln(w)
	case s.HasPath(spec.PathHandoff):
		fmt.Fprintln(w, "Netfilter rules: SYNPROXY's, for the statements on the SYNPROXY path; the handoff statements only have")
		fmt.Fprintln(w, "their connections kept out of conntrack, which the SYNPROXY statements' strict tracking would call INVALID.")
		fmt.Fprintln(w)
	}
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
	if len(plan.Sysctls) == 0 {
		fmt.Fprintln(w, "  none")
	}
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
