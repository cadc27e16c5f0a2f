package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/xsyn-project/xsyn/internal/intent"
	"github.com/xsyn-project/xsyn/rules"
	"github.com/xsyn-project/xsyn/spec"
)

// specFlags say what to protect: a configuration file, or the flag form. attach and explain
// take the same ones.
type specFlags struct {
	config     string
	ports      string
	cookieFile string
	simple     spec.Simple
}

// flagForm are the flags of the flag form, which a configuration file replaces.
var flagForm = []string{"port", "dst", "mss", "wscale", "no-sack", "no-timestamps", "ecn", "ttl", "path", "on-demand"}

func addSpecFlags(fs *cmdFlags) *specFlags {
	sf := &specFlags{simple: spec.Simple{WScale: -1}}
	f := &sf.simple
	fs.StringVar(&sf.config, "config", "", "protect what the configuration `FILE` says (synproxy statements, docs/config.md); replaces --port, --dst and the option flags")
	fs.StringVar(&sf.ports, "port", "", "TCP `ports` to protect, as dport takes them: 80,443, ranges 8000-8010 or 8000:8010; repeats merge "+
		"(default: the ports listening on IFACE's addresses)")
	fs.StringVar(&f.Dst, "dst", "", "protect only these `addresses`, as dst takes them: 203.0.113.10, 203.0.113.0/24, 2001:db8::/64, "+
		"ranges 192.0.2.1-192.0.2.9, in a list of both families (default: every address, IPv4 and IPv6)")
	fs.IntVar(&f.MSS, "mss", 0, "`MSS` announced in the SYN-ACK (default: the interface MTU less headers)")
	fs.Func("wscale", "window scale `shift` announced, 0-14 (default: what the local stack offers)", func(v string) error {
		n, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("not a number")
		}
		f.WScale = n
		return nil
	})
	fs.BoolVar(&f.NoSACK, "no-sack", false, "do not offer SACK")
	fs.BoolVar(&f.NoTimestamps, "no-timestamps", false, "do not offer timestamps (then neither window scaling nor SACK can be offered)")
	fs.BoolVar(&f.ECN, "ecn", false, "accept ECN when the client asks for it")
	fs.IntVar(&f.TTL, "ttl", 0, "IPv4 TTL / IPv6 hop limit of the SYN-ACK (default 64)")
	fs.Func("path", "`path` of every statement: handoff (xsyn's cookie, the ACK handed to the listening socket; Linux 6.9+), synproxy (netfilter SYNPROXY), or auto (the default: handoff where it can run and serve the server, else synproxy with a warning, e.g. for a server that listens with MPTCP)", func(v string) error {
		via, err := spec.ParseVia(v)
		if err != nil {
			return errors.New("want auto, synproxy or handoff")
		}
		f.Via = via
		return nil
	})
	fs.IntVar(&f.OnDemand, "on-demand", 0, "handoff path only: let the listener answer SYNs itself (TCP Fast Open and all its options work) until they come at `N` a second or faster, "+
		"then answer them with cookies until the rate stays below N/2 for a second (default 0: cookies always; docs/config.md#on-demand)")
	fs.StringVar(&sf.cookieFile, "cookie-secret-file", "", "the handoff path's cookie secret: a `FILE` of 32 hexadecimal digits, mode 600, the same on every machine behind one address (default: a random secret, kept across attaches)")
	return sf
}

// request checks the combination of flags and says what to build for iface.
func (sf *specFlags) request(fs *cmdFlags, iface string) (intent.Request, error) {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if set["config"] {
		if sf.config == "" {
			return intent.Request{}, usagef("--config needs a file name")
		}
		var clash []string
		for _, name := range flagForm {
			if set[name] {
				clash = append(clash, "--"+name)
			}
		}
		if len(clash) > 0 {
			return intent.Request{}, usagef("--config cannot be combined with %s: the configuration file says which ports to protect, "+
				"with which TCP options and on which path (write them in its synproxy statements, or on an `options` line)", strings.Join(clash, ", "))
		}
	}
	req := intent.Request{Iface: iface, Config: sf.config, Flags: sf.simple}
	switch {
	case sf.ports != "":
		ports, err := spec.ParsePorts(sf.ports)
		if err != nil {
			return intent.Request{}, usageError{err}
		}
		req.Flags.Ports = ports
	case sf.simple.Dst != "":
		return intent.Request{}, usagef("--dst needs --port: without --port, attach protects the listening ports on IFACE's own addresses")
	}
	if n := sf.simple.OnDemand; n < 0 || n > spec.MaxOnDemand {
		return intent.Request{}, usagef("--on-demand %d is outside 0-%d SYNs a second", n, spec.MaxOnDemand)
	}
	if set["cookie-secret-file"] && sf.cookieFile == "" {
		return intent.Request{}, usagef("--cookie-secret-file needs a file name")
	}
	return req, nil
}

// parseSpecs parses a command line of the form [IFACE] plus spec flags, and builds the spec of
// each interface it covers: IFACE's, or without it (--config alone) those of every interface the
// configuration's statements name, in name order. named is IFACE, "" when none was given. What
// attach and explain share.
func parseSpecs(fs *cmdFlags, sf *specFlags, args []string) (named string, bs []*intent.Built, err error) {
	pos, err := parse(fs, args)
	if err != nil {
		return "", nil, err
	}
	if len(pos) > 1 {
		return "", nil, usagef("at most one interface, got %d arguments", len(pos))
	}
	if len(pos) == 1 {
		named = pos[0]
	}
	req, err := sf.request(fs, named)
	if err != nil {
		return "", nil, err
	}
	if named == "" && req.Config == "" {
		return "", nil, usagef("need an interface: IFACE, or --config FILE alone for the interfaces its statements name")
	}
	if bs, err = build(req); err != nil {
		return "", nil, err
	}
	for _, b := range bs {
		if err := sf.apply(b); err != nil {
			return "", nil, err
		}
	}
	return named, bs, nil
}

// joinIfaces names the interfaces of bs: "d0, d1".
func joinIfaces(bs []*intent.Built) string {
	names := make([]string, len(bs))
	for i, b := range bs {
		names[i] = b.Iface
	}
	return strings.Join(names, ", ")
}

// apply gives b what the flags say beyond the source itself: --path for the listeners of
// zero-config (the flag form's statements have it from spec.Simple already) and
// --cookie-secret-file, which a configuration may name too, but not both.
func (sf *specFlags) apply(b *intent.Built) error {
	if v := sf.simple.Via; v != spec.ViaAuto && b.Kind == intent.FromListeners {
		s, err := b.Spec.WithVia(b.Iface, v)
		if err != nil {
			return fmt.Errorf("--path %s: %w", v, err)
		}
		b.Spec = s
	}
	if n := sf.simple.OnDemand; n != 0 && b.Kind == intent.FromListeners {
		s, err := b.Spec.WithOnDemand(b.Iface, uint32(n))
		if err != nil {
			return fmt.Errorf("--on-demand %d: %w", n, err)
		}
		b.Spec = s
	}
	if sf.cookieFile == "" {
		return nil
	}
	if prev := b.Spec.Settings.CookieSecretFile; prev != "" {
		return usagef("--cookie-secret-file %s: %s names the cookie secret already (cookie-secret-file %s); give it in one place", sf.cookieFile, sf.config, prev)
	}
	b.Spec.Settings.CookieSecretFile = sf.cookieFile
	return nil
}

// build builds the specs; errors in the flag form are usage errors.
func build(req intent.Request) ([]*intent.Built, error) {
	bs, err := intent.BuildAll(req, intent.Local())
	switch {
	case err == nil:
		return bs, nil
	case errors.As(err, new(*intent.FlagError)):
		return nil, usageError{errors.Unwrap(err)}
	case errors.As(err, new(*spec.ConfigError)):
		return nil, fmt.Errorf("%w\n%s has errors: nothing was changed", err, req.Config)
	case errors.Is(err, spec.ErrNoStatement):
		if _, serr := intent.Local().Stack(req.Iface); serr != nil {
			return nil, fmt.Errorf("%w (and %v)", err, serr)
		}
	}
	return nil, err
}

// printStatements shows each statement with its TCP options, its path and what answers its
// SYNs; xdp is false when no XDP program is in front of the rules. notes are extra lines per
// statement.
func printStatements(w io.Writer, stmts []spec.Statement, xdp bool, notes map[int][]string) {
	mixed := slices.ContainsFunc(stmts, func(st spec.Statement) bool { return st.Path == spec.PathSynproxy })
	for i, st := range stmts {
		where := ""
		if st.Pos.Line > 0 {
			where = st.Pos.String() + ": "
		}
		fmt.Fprintf(w, "  %d. %s%s\n", i+1, where, st.Origin())
		fmt.Fprintf(w, "     %s: %s, ttl %d\n", st.Family, st.Options, st.TTL)
		for _, l := range pathLines(st, xdp, mixed) {
			fmt.Fprintf(w, "     %s\n", l)
		}
		if l := firewallLine(st); l != "" {
			fmt.Fprintf(w, "     %s\n", l)
		}
		if st.OnDemand != 0 {
			fmt.Fprintf(w, "     on-demand: the listener answers its SYNs below %d a second; XDP's cookies from there until a second below %d\n",
				st.OnDemand, st.OnDemand/2)
		}
		for _, n := range notes[i] {
			fmt.Fprintf(w, "     %s\n", n)
		}
	}
}

// handoffWhat is what the handoff path means for a statement, said where its path is shown:
// alone, and beside statements on the SYNPROXY path, whose loose-tracking sysctl makes xsyn keep
// the handed-off connections out of conntrack.
const (
	handoffWhat      = "xsyn cookie, handed to the listening socket; no netfilter rules; your firewall's INPUT rules still apply"
	handoffWhatMixed = "xsyn cookie, handed to the listening socket; no SYNPROXY; its packets skip conntrack " +
		"(the SYNPROXY statements turn loose tracking off), so your firewall's INPUT rules see them UNTRACKED"
)

// pathLines say which path a statement takes, why, and what answers its SYNs; synproxy is true
// when some statement of the spec takes the SYNPROXY path.
func pathLines(st spec.Statement, xdp, synproxy bool) []string {
	switch {
	case st.Path == spec.PathHandoff && synproxy:
		return []string{"path: handoff: " + handoffWhatMixed}
	case st.Path == spec.PathHandoff:
		return []string{"path: handoff: " + handoffWhat}
	}
	path := "path: synproxy: " + st.PathReason
	ok, why := st.XDP()
	switch {
	case !xdp:
		return []string{path, "SYNPROXY answers its SYNs (no XDP fast path)"}
	case !ok && strings.Contains(st.PathReason, why):
		return []string{path, "SYNPROXY answers its SYNs and completes the handshake"}
	case !ok:
		return []string{path, "SYNPROXY answers its SYNs, not XDP: " + why}
	}
	return []string{path, "XDP answers its SYNs with cookies; SYNPROXY completes the handshake"}
}

// firewallLine says what becomes of the host firewall's verdict on the clients of a statement on
// the SYNPROXY path, whose handshake SYNPROXY completes ahead of the firewall's rules; "" for the
// handoff path (the firewall decides) and for statements that let no client in.
func firewallLine(st spec.Statement) string {
	if st.Path != spec.PathSynproxy || st.Action.Kind == spec.Reject || st.Action.Kind == spec.Drop {
		return ""
	}
	if st.Implicit {
		return "firewall: made by xsyn, not written, so attach protects its ports on this path only where your INPUT rules let every client in " +
			"(it reads them, and refuses the ports they restrict)"
	}
	chains := "INPUT"
	if st.Direction == spec.Forward {
		chains = "FORWARD"
		if rules.ProxiesLocal(st) {
			chains = "FORWARD and INPUT"
		}
	}
	return fmt.Sprintf("firewall: its action (%s) replaces your %s rules' decision on new connections: SYNPROXY completes the handshake "+
		"ahead of them, so they only see a connection's later packets; give the statement src to keep a restriction", st.Action, chains)
}

// pathSummary counts the statements on each path: "3 statements on the handoff path, 1 on the
// SYNPROXY path".
func pathSummary(stmts []spec.Statement) string {
	n := 0
	for _, st := range stmts {
		if st.Path == spec.PathHandoff {
			n++
		}
	}
	noun := "statements"
	if n == 1 {
		noun = "statement"
	}
	return fmt.Sprintf("%d %s on the handoff path, %d on the SYNPROXY path", n, noun, len(stmts)-n)
}

// printXDPServices is the table the XDP program matches SYNs against.
func printXDPServices(w io.Writer, svcs []spec.Service) {
	if len(svcs) == 0 {
		fmt.Fprintln(w, "  XDP services: none; SYNPROXY answers every statement's SYNs")
		return
	}
	printServices(w, svcs)
}
