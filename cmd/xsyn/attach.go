package main

import (
	"fmt"
	"io"
	"os"
	"strconv"

	"github.com/xsyn-project/xsyn/internal/protect"
	"github.com/xsyn-project/xsyn/spec"
)

const attachHelp = `Protects TCP ports on IFACE against SYN floods. An XDP program answers every SYN to those
ports with a SYN cookie; ACKs carrying a valid cookie go on to netfilter's SYNPROXY, which opens
the real connection to the server; forged ACKs are dropped in XDP. The netfilter rules (raw
NOTRACK, SYNPROXY, INVALID drop) and the sysctls SYNPROXY needs are installed too.

Without --port, attach protects what this host serves on IFACE: every TCP port listening on one
of IFACE's addresses or on a wildcard address, on each of IFACE's addresses, and prints it.
Ports listening only on other addresses (loopback, say) are left alone.

Running attach again with other flags updates the configuration in place, without a moment
unprotected. Where the kernel cannot run the XDP program (before Linux 6.0), the same netfilter
rules protect on their own (netfilter-only mode) and attach says so.

The TCP options must match what the protected server offers (SYNPROXY opens the real connection
with the options the client accepted from us). By default they are what this host's own stack
offers: MSS from the interface MTU (1460, or 1440 for IPv6, on a 1500-byte link), window scale
from the receive buffer limits (7 on a stock kernel), SACK and timestamps on.

Examples:
  xsyn attach eth0
  xsyn attach eth0 --port 80,443
  xsyn attach eth0 --port 22 --dst 203.0.113.10 --mss 1400
  xsyn attach eth0 --port 8000-8010 --dst 2001:db8::/64 --no-timestamps
`

func runAttach(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("attach", "attach IFACE [--port P[,P...]] [flags]", attachHelp, stdout)
	var (
		ports string
		f     = spec.Simple{WScale: -1}
		mode  string
	)
	fs.StringVar(&ports, "port", "", "TCP `ports` to protect: 80,443 or 8000-8010 (default: the ports listening on IFACE's addresses)")
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
	fs.StringVar(&mode, "mode", "auto", "`auto` (native XDP, else generic), native, generic, or netfilter (no XDP)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("need exactly one interface, got %d arguments", len(pos))
	}
	iface := pos[0]
	if st, err := protect.LocalStack(iface); err == nil {
		f.Stack = &st
	} // else: the interface is missing, which Apply reports
	var s spec.Spec
	if ports == "" {
		if f.Dst != "" {
			return usagef("--dst needs --port: without --port, attach protects the listening ports on IFACE's own addresses")
		}
		if s, err = listeningSpec(iface, f); err != nil {
			return err
		}
	} else {
		if f.Ports, err = spec.ParsePorts(ports); err != nil {
			return usageError{err}
		}
		if s, err = f.Build(); err != nil {
			return usageError{err}
		}
	}
	if err := requireRoot(); err != nil {
		return err
	}

	p, err := protect.New()
	if err != nil {
		return err
	}
	res, err := p.Apply(iface, s, mode)
	if err != nil {
		return err
	}
	for _, w := range res.Warnings {
		fmt.Fprintf(stderr, "xsyn attach: warning: %s\n", w)
	}
	verb := "protecting"
	if res.Reconfigured {
		verb = "updated; protecting"
	}
	fmt.Fprintf(stdout, "%s: %s (%s)\n", iface, verb, describeMode(res.Mode, res.Holder, res.StateDir))
	printServices(stdout, s.Services)
	return nil
}

func requireRoot() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("must run as root (needs CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN): try sudo")
	}
	return nil
}

// listeningSpec is zero-config attach: the listening ports of iface, with the option flags.
func listeningSpec(iface string, f spec.Simple) (spec.Spec, error) {
	s, err := protect.ListeningSpec(iface)
	if err != nil {
		return spec.Spec{}, err
	}
	for i, svc := range s.Services {
		o, ttl, err := f.Options(svc.Family)
		if err != nil {
			return spec.Spec{}, usageError{err}
		}
		s.Services[i].Options, s.Services[i].TTL = o, ttl
	}
	return s, s.Validate()
}
