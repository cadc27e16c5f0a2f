package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/xsyn-project/xsyn/internal/source"
	"github.com/xsyn-project/xsyn/spec"
)

// specFlags say what to protect: a configuration file, or the flag form. attach and explain
// take the same ones.
type specFlags struct {
	config string
	ports  string
	simple spec.Simple
}

// flagForm are the flags of the flag form, which a configuration file replaces.
var flagForm = []string{"port", "dst", "mss", "wscale", "no-sack", "no-timestamps", "ecn", "ttl"}

func addSpecFlags(fs *cmdFlags) *specFlags {
	sf := &specFlags{simple: spec.Simple{WScale: -1}}
	f := &sf.simple
	fs.StringVar(&sf.config, "config", "", "protect what the configuration `FILE` says (synproxy statements, docs/config.md); replaces --port, --dst and the option flags")
	fs.StringVar(&sf.ports, "port", "", "TCP `ports` to protect: 80,443 or 8000-8010 (default: the ports listening on IFACE's addresses)")
	fs.StringVar(&f.Dst, "dst", "", "protect only this destination `address[/len]` (default: every address, IPv4 and IPv6)")
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
	return sf
}

// request checks the combination of flags and says what to build for iface.
func (sf *specFlags) request(fs *cmdFlags, iface string) (source.Request, error) {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if set["config"] {
		if sf.config == "" {
			return source.Request{}, usagef("--config needs a file name")
		}
		var clash []string
		for _, name := range flagForm {
			if set[name] {
				clash = append(clash, "--"+name)
			}
		}
		if len(clash) > 0 {
			return source.Request{}, usagef("--config cannot be combined with %s: the configuration file says which ports to protect "+
				"and with which TCP options (write them in its synproxy statements, or on an `options` line)", strings.Join(clash, ", "))
		}
	}
	req := source.Request{Iface: iface, Config: sf.config, Flags: sf.simple}
	switch {
	case sf.ports != "":
		ports, err := spec.ParsePorts(sf.ports)
		if err != nil {
			return source.Request{}, usageError{err}
		}
		req.Flags.Ports = ports
	case sf.simple.Dst != "":
		return source.Request{}, usagef("--dst needs --port: without --port, attach protects the listening ports on IFACE's own addresses")
	}
	return req, nil
}

// build builds the spec; errors in the flag form are usage errors.
// parseSpec parses a command line of the form IFACE plus spec flags, and builds the spec for
// IFACE from it: what attach and explain share.
func parseSpec(fs *cmdFlags, sf *specFlags, args []string) (string, *source.Built, error) {
	pos, err := parse(fs, args)
	if err != nil {
		return "", nil, err
	}
	if len(pos) != 1 {
		return "", nil, usagef("need exactly one interface, got %d arguments", len(pos))
	}
	req, err := sf.request(fs, pos[0])
	if err != nil {
		return "", nil, err
	}
	b, err := build(req)
	return pos[0], b, err
}

func build(req source.Request) (*source.Built, error) {
	b, err := source.Build(req, source.Local())
	switch {
	case err == nil:
		return b, nil
	case errors.As(err, new(*source.FlagError)):
		return nil, usageError{errors.Unwrap(err)}
	case errors.As(err, new(*spec.ConfigError)):
		return nil, fmt.Errorf("%w\n%s has errors: nothing was changed", err, req.Config)
	case errors.Is(err, spec.ErrNoStatement):
		if _, serr := source.Local().Stack(req.Iface); serr != nil {
			return nil, fmt.Errorf("%w (and %v)", err, serr)
		}
	}
	return nil, err
}

// printStatements shows each statement with its TCP options and what answers its SYNs; xdp is
// false when no XDP program is in front of the rules. notes are extra lines per statement.
func printStatements(w io.Writer, stmts []spec.Statement, xdp bool, notes map[int][]string) {
	for i, st := range stmts {
		where := ""
		if st.Pos.Line > 0 {
			where = st.Pos.String() + ": "
		}
		fmt.Fprintf(w, "  %d. %s%s\n", i+1, where, st.Origin())
		fmt.Fprintf(w, "     %s: %s, ttl %d\n", st.Family, st.Options, st.TTL)
		ok, why := st.XDP()
		switch {
		case !xdp:
			fmt.Fprintf(w, "     SYNPROXY answers its SYNs (no XDP fast path)\n")
		case ok:
			fmt.Fprintf(w, "     XDP answers its SYNs with cookies; SYNPROXY completes the handshake\n")
		default:
			fmt.Fprintf(w, "     SYNPROXY answers its SYNs, not XDP: %s\n", why)
		}
		for _, n := range notes[i] {
			fmt.Fprintf(w, "     %s\n", n)
		}
	}
}

// printXDPServices is the table the XDP program matches SYNs against.
func printXDPServices(w io.Writer, svcs []spec.Service) {
	if len(svcs) == 0 {
		fmt.Fprintln(w, "  XDP services: none; SYNPROXY answers every statement's SYNs")
		return
	}
	printServices(w, svcs)
}
