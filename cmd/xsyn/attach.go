package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"golang.org/x/sys/unix"

	"github.com/xsyn-project/xsyn/internal/backend"
	"github.com/xsyn-project/xsyn/internal/intent"
	"github.com/xsyn-project/xsyn/internal/protect"
	"github.com/xsyn-project/xsyn/loader"
	"github.com/xsyn-project/xsyn/spec"
)

const attachHelp = `Protects TCP ports on IFACE against SYN floods. An XDP program answers every SYN to those
ports with a SYN cookie, before the kernel allocates anything, and drops ACKs with a forged
one. What makes a connection of a valid ACK depends on the statement's path:

  handoff   for 'input ... accept' statements XDP can match (destination and port only), by
            default: the cookie is xsyn's own (SipHash, keyed by a 128-bit secret) and a TC
            program hands the valid ACK straight to the listening socket. No SYNPROXY, no
            sysctls; your firewall's INPUT rules still see the ACK and decide. Needs Linux 6.9+.
  synproxy  for every other statement (forward, redirect, dnat, reject, drop, action CHAIN, a
            match on src, sport or outface), and where the handoff cannot serve one: the
            kernel's cookie, and netfilter's SYNPROXY opens the real connection, as in FireHOL.
            attach installs its rules (raw NOTRACK, SYNPROXY, INVALID drop) and the sysctls it
            needs. SYNPROXY completes the handshake ahead of your INPUT rules, so a statement's
            action replaces their decision on new connections (give it src to keep a
            restriction).

--path auto, the default, gives the handoff to every statement that can take it, and moves a
statement to SYNPROXY, with a warning, where the handoff cannot serve it:
  - on a kernel before 6.9, or with --mode netfilter: every statement;
  - where its server listens with MPTCP, which the kernel cannot hand connections to: the
    statements covering that server's address and port, and those sharing destinations with
    them. The warning names the server ("the server on 192.0.2.10:443 listens with MPTCP").
    Go programs listen with MPTCP by default: start the server with GODEBUG=multipathtcp=0,
    or have it call net.ListenConfig's SetMultipathTCP(false), then run attach again.
attach looks at the listening servers when it runs: a server restarted later with MPTCP gets
its clients reset (status counts them as handoff_refused) until attach runs again.
--path handoff makes each of those cases an error, with nothing changed. --path synproxy says
SYNPROXY outright. In a configuration the word 'path' says the same, per statement or on the
options line. 'xsyn explain' shows, without changing anything, each statement's path and why.

The handoff's cookie secret is random, made by the first attach and kept when attach runs
again. Machines behind one address (anycast, a load balancer, a failover pair) must share it,
or an ACK that reaches another machine than its SYN did is dropped: give each the same file,
--cookie-secret-file FILE (or 'cookie-secret-file FILE' in the configuration), holding 32
hexadecimal digits (128 bits), readable by root only. Make one with:
  (umask 077; head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n' > /etc/xsyn/cookie.key)
and copy it to every machine. attach reads it before it changes anything: a missing, readable
by others, or malformed file is an error. A new file, then attach again, changes the key
without failing the handshakes in flight.

What to protect comes from one of three places:
  --config FILE   synproxy statements, as FireHOL writes them (docs/config.md). attach installs
                  the statements that apply to IFACE (no inface, or one naming IFACE). Without
                  IFACE, every interface the statements name in inface, all or none: when one
                  fails, those changed before it are put back as they were. Every statement
                  must then name its interfaces.
  --port P        the flag form: these ports on every address (or on --dst), with the option
                  flags; one 'input ... accept' statement per family.
  neither         what this host serves on IFACE: every TCP port listening on one of IFACE's
                  addresses or on a wildcard address, on each of IFACE's addresses. Ports
                  listening only on other addresses (loopback, say) are left alone.
--config cannot be combined with --port, --dst or the option flags: the file says it all.

Statements from --port or the listening sockets were written by nobody, so on the SYNPROXY path
(--mode netfilter, --path synproxy, a kernel without the handoff, an MPTCP server) attach reads
the host firewall first (iptables-save, ip6tables-save, nft) and protects a port only where the
INPUT rules let every client in. A port they restrict, or that a native nftables input chain
may restrict, is refused, with nothing changed, naming the port and the rule: write a
statement that carries the restriction (--config FILE, 'synproxy input inface IFACE src ...
dport P accept'), use the handoff path, or open the port in the firewall.

Mark, NAT and OUTPUT rules cannot tell the interface a client came in on, so the SYNPROXY
statements of two interfaces must not cover one destination, port and client with different
actions: each would decide the other's connections. A configuration that does is an error at
its line, and attach refuses a statement that conflicts with another interface already
protected (read back from its rules), changing nothing.

A configuration file, for instance /etc/xsyn/eth0.conf:
  # the host's SSH, moved to port 2200 outside, logged
  synproxy4 in inface eth0 dst 203.0.113.10 dport 2200 redirect to 22 loglimit "SYNPROXY SSH"
  # a web server behind this router
  synproxy6 forward inface eth0 dst 2001:db8::10 dport 80,443 dnat to [2001:db8:1::5]
  # this host's web server: the handoff path, or an error where it cannot run
  synproxy4 in inface eth0 dst 203.0.113.10 dport 80,443 path handoff accept
A file with errors is reported line by line (FILE:LINE:COL: message) and attach exits 1 with
nothing changed; so does a statement that needs what the host lacks (the user chain of an
'action CHAIN', forwarding for a server behind this host).

Connections already open to a service on the SYNPROXY path keep working only if conntrack
tracks them (a stateful firewall does): their segments carry no cookie. attach refuses to cut
any that it does not track, listing them and how to keep them, unless --cut-untracked is given.
On the handoff path they keep working: XDP finds their socket.

Running attach again updates the configuration in place, without a moment unprotected. Where
the kernel cannot run the XDP program (before Linux 6.0), the same netfilter rules protect on
their own (netfilter-only mode), every statement on the SYNPROXY path, and attach says so.
Statements XDP cannot answer (those matching a source address or port, or an outgoing
interface) are answered by SYNPROXY alone.

The TCP options must match what the protected server offers: the connection, SYNPROXY's or the
listener's, goes on with the options the client accepted from the SYN-ACK. By default they are
what this host's own stack offers: MSS from the interface MTU (1460, or 1440 for IPv6, on a
1500-byte link), window scale from the receive buffer limits (7 on a stock kernel), SACK and
timestamps on. Before changing anything, attach connects to every server it can name (the
destination of an accept, the target of a redirect or dnat; 2s each) and warns where the
server offers other options; with --probe it adopts the server's options instead. A server that
does not answer is a warning.

Examples:
  xsyn attach eth0
  xsyn attach eth0 --port 80,443
  xsyn attach eth0 --port 22 --dst 203.0.113.10 --mss 1400
  xsyn attach eth0 --port 8000-8010 --dst 2001:db8::/64 --no-timestamps
  xsyn attach eth0 --port 443,8000:8010 --dst 192.0.2.1-192.0.2.9,2001:db8::10
  xsyn attach eth0 --port 443 --path handoff --cookie-secret-file /etc/xsyn/cookie.key
  xsyn attach eth0 --config /etc/xsyn/eth0.conf --probe
  xsyn attach --config /etc/xsyn/xsyn.conf
`

func runAttach(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("attach", "attach [IFACE] [--config FILE | --port P[,P...] [flags]] [--probe] [--mode M]", attachHelp, stdout)
	sf := addSpecFlags(fs)
	mode := loader.ModeAuto
	fs.Func("mode", "protect in mode `M`: auto (the default: native XDP, else generic), native, generic, or netfilter (SYNPROXY alone, no XDP)", func(v string) error {
		m, err := protect.ParseMode(v)
		if err != nil {
			return errors.New("want auto, native, generic or netfilter")
		}
		mode = m
		return nil
	})
	probe := fs.Bool("probe", false, "adopt the TCP options each server offers (default: warn where they differ)")
	cut := fs.Bool("cut-untracked", false, "protect even if that cuts established connections conntrack does not track")
	_, bs, err := parseSpecs(fs, sf, args)
	if err != nil {
		return err
	}
	for _, b := range bs {
		if b.StackErr == nil {
			continue
		}
		if len(bs) > 1 {
			return fmt.Errorf("%w\nnothing was changed: %s names %s, and attach protects all of them or none", b.StackErr, sf.config, joinIfaces(bs))
		}
		return b.StackErr // no such interface
	}
	if err := requireRoot(); err != nil {
		return err
	}
	// One configuration, one cookie secret for all its interfaces.
	key, err := readCookieKey(bs[0].Spec.Settings.CookieSecretFile)
	if err != nil {
		return err
	}
	p, err := protect.New()
	if err != nil {
		return err
	}
	// Everything that can refuse without changing anything, for every interface, before the
	// first one changes.
	warn := func(w string) { fmt.Fprintf(stderr, "xsyn attach: warning: %s\n", w) }
	steps := make([]attachStep, len(bs))
	for i, b := range bs {
		if steps[i], err = prepareAttach(p, b, key, mode, *probe, *cut, warn); err != nil {
			return err
		}
	}
	if len(steps) > 1 {
		ifaces, specs := make([]string, len(steps)), make([]spec.Spec, len(steps))
		for i, st := range steps {
			ifaces[i], specs[i] = st.iface, st.spec
		}
		if err := protect.CheckTogether(ifaces, specs); err != nil {
			return err
		}
		p.Together = ifaces
	}
	results, err := attachAll(p, steps, mode)
	if err != nil {
		return err
	}
	for i, res := range results {
		if i > 0 {
			fmt.Fprintln(stdout)
		}
		printAttached(stdout, stderr, steps[i], res, len(bs) > 1)
	}
	return nil
}

// prepareAttach makes the spec attach applies to b's interface: the servers' TCP options checked
// (or adopted), the cookie secret, and each statement's path as Apply will choose it. It
// refuses, changing nothing, where the paths cannot be had or untracked connections would be
// cut (unless cut).
func prepareAttach(p *protect.Protector, b *intent.Built, key *spec.CookieKey, mode loader.Mode, probe, cut bool, warn func(string)) (attachStep, error) {
	r, err := b.Review(context.Background(), backend.Checker{AskedECN: backend.AsksECN()}, probe)
	if err != nil {
		return attachStep{}, err
	}
	for _, w := range r.Warnings {
		warn(w)
	}
	s, notes := r.Spec, r.Notes
	s.CookieKey = key
	// The paths first: a statement that moves to SYNPROXY (its server listens with MPTCP, say)
	// cuts the untracked connections the handoff would have kept. Apply decides the same again,
	// and finds nothing more to move.
	s, warnings, err := p.ChoosePaths(b.Iface, s, mode)
	if err != nil {
		return attachStep{}, attachHint(err, b.Iface, mode)
	}
	if !cut {
		if err := p.CheckUntracked(b.Iface, s); err != nil {
			return attachStep{}, err
		}
	}
	return attachStep{iface: b.Iface, spec: s, notes: notes, warnings: warnings}, nil
}

// printAttached says what attach did to one interface; named prefixes the warnings with the
// interface, for an attach of several.
func printAttached(stdout, stderr io.Writer, st attachStep, res *protect.Result, named bool) {
	for _, w := range append(st.warnings, res.Warnings...) {
		if named {
			w = st.iface + ": " + w
		}
		fmt.Fprintf(stderr, "xsyn attach: warning: %s\n", w)
	}
	verb := "protecting"
	if res.Reconfigured {
		verb = "updated; protecting"
	}
	fmt.Fprintf(stdout, "%s: %s (%s)\n", st.iface, verb, describeMode(res.Mode, res.Holder, res.StateDir))
	// res.Spec is what was applied: handoff statements moved to SYNPROXY where the kernel (or
	// --mode netfilter) has no handoff.
	applied := res.Spec
	fmt.Fprintf(stdout, "%s\n", pathSummary(applied.Statements))
	xdp := res.Mode != protect.ModeNetfilterOnly
	printStatements(stdout, applied.Statements, xdp, st.notes)
	if xdp {
		printXDPServices(stdout, applied.Services)
	}
}

// readCookieKey reads the handoff's cookie secret from file, when one is named ("" : nil, the
// program keeps its own). A bad file stops attach before anything changes, saying how to fix it.
func readCookieKey(file string) (*spec.CookieKey, error) {
	if file == "" {
		return nil, nil
	}
	k, err := spec.ReadCookieKey(file)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("%w\nnothing was changed; make the file with: (umask 077; head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \\n' > %s) "+
			"and copy it to every machine that shares the address", err, file)
	case err != nil:
		return nil, fmt.Errorf("%w\nnothing was changed", err)
	}
	return &k, nil
}

// handoffUnavailableHint says what to do about a statement that demands the handoff (path
// handoff) where it cannot run.
const handoffUnavailableHint = "the handoff needs Linux 6.9+, XDP (not --mode netfilter) and a server that does not listen with MPTCP: " +
	"turn MPTCP off in the server (GODEBUG=multipathtcp=0 for a Go server, or net.ListenConfig's SetMultipathTCP(false)), " +
	"or let attach move the statement to SYNPROXY, saying so: path auto (--path auto), or path synproxy"

// attachHint adds, on a line of its own, what to do about the errors of attach that another
// --mode or --path avoids.
func attachHint(err error, iface string, mode loader.Mode) error {
	switch {
	case errors.Is(err, spec.ErrHandoffUnavailable):
		return fmt.Errorf("%w\nnothing was changed; %s", err, handoffUnavailableHint)
	case errors.Is(err, loader.ErrFeatureMissing):
		return fmt.Errorf("%w\nthe XDP fast path cannot run on this kernel: --mode auto protects %s with netfilter SYNPROXY alone, and says so (--mode netfilter asks for that outright)", err, iface)
	case mode == loader.ModeNative && errors.Is(err, unix.EOPNOTSUPP):
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
