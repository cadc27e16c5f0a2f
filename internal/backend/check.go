package backend

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/xsyn-project/xsyn/internal/host"
	"github.com/xsyn-project/xsyn/spec"
)

// SYNPROXY opens the real connection with the options the client accepted from the SYN-ACK
// (XDP's or SYNPROXY's). When they are not what the server itself offers, the two halves of
// the spliced connection disagree on window scaling, SACK or timestamps. The statements'
// options are the local stack's by default, which is right for servers on this host with
// default buffers and wrong for any other; probing a statement's server tells.

// ProbeFunc reads the options a server offers (Probe).
type ProbeFunc func(ctx context.Context, addr netip.AddrPort) (Offer, error)

// MaxServers is how many servers of one statement are probed; a statement for a port range
// has the first ones probed.
const MaxServers = 16

// DefaultTimeout bounds the probe of one server.
const DefaultTimeout = 2 * time.Second

// Servers returns the servers statement st hands its connections to, as far as this host can
// name and reach them: the destination (a host address; for a wildcard destination of an input
// statement, the interface's first address of the family) and port of an accept; 127.0.0.1 or
// ::1 and the port of a redirect; the target of a dnat, its missing half taken from the
// statement's destination. note says why there are none, or fewer than the statement covers.
func Servers(st spec.Statement, ifaceAddrs []netip.Addr) (servers []netip.AddrPort, note string) {
	m := st.Match
	var addrs []netip.Addr
	var ports []uint16
	dstAddrs := func() string {
		switch {
		case m.Dst.Not:
			return "its destination is a negated set, not one server"
		case m.Dst.Any() && st.Direction == spec.Forward:
			return "it matches every destination: the server is whatever the client asked for"
		case m.Dst.Any():
			for _, a := range ifaceAddrs {
				if isFamily(a, st.Family) && !a.IsLinkLocalUnicast() {
					addrs = []netip.Addr{a}
					return ""
				}
			}
			return fmt.Sprintf("the interface has no %s address to reach the server at", st.Family)
		}
		linkLocal := false
		for _, p := range m.Dst.Prefixes {
			switch {
			case p.IsSingleIP() && p.Addr().IsLinkLocalUnicast():
				linkLocal = true // no zone to dial it with; zero-config's other addresses reach the same listener
			case p.IsSingleIP():
				addrs = append(addrs, p.Addr())
			}
		}
		switch {
		case len(addrs) == 0 && linkLocal:
			return "its destination is link-local, which cannot be dialled without a zone"
		case len(addrs) == 0:
			return "its destinations are networks, not single servers"
		}
		return ""
	}
	dstPorts := func() string {
		switch {
		case m.Dport.Any():
			return "it matches every destination port, not one server port"
		case m.Dport.Not:
			return "its destination ports are a negated set, not server ports"
		}
		ports = m.Dport.Ports()
		return ""
	}
	switch a := st.Action; a.Kind {
	case spec.Accept:
		note = cmp.Or(dstAddrs(), dstPorts())
	case spec.Redirect:
		addrs, ports = []netip.Addr{netip.MustParseAddr("127.0.0.1")}, []uint16{a.Port}
		if st.Family == spec.IPv6 {
			addrs[0] = netip.IPv6Loopback()
		}
	case spec.DNAT:
		if a.Addr.IsValid() {
			addrs = []netip.Addr{a.Addr}
		} else {
			note = dstAddrs()
		}
		if a.Port != 0 {
			ports = []uint16{a.Port}
		} else if note == "" {
			note = dstPorts()
		}
	default:
		return nil, fmt.Sprintf("its action (%s) hands the connection to no server", a)
	}
	for _, addr := range addrs {
		for _, p := range ports {
			servers = append(servers, netip.AddrPortFrom(addr, p))
		}
	}
	if n := len(servers); n > MaxServers {
		servers = servers[:MaxServers]
		note = fmt.Sprintf("the first %d of its %d servers", MaxServers, n)
	}
	return servers, note
}

func isFamily(a netip.Addr, f spec.Family) bool { return a.Is4() == (f == spec.IPv4) }

// Checker probes the servers of a spec.
type Checker struct {
	Probe   ProbeFunc     // Probe when nil
	Timeout time.Duration // per server; DefaultTimeout when 0
	// AskedECN says whether this host's connects ask for ECN (net.ipv4.tcp_ecn=1). A server
	// can only agree to ECN when asked, so without it a probe cannot tell, and the statement's
	// ECN choice is kept.
	AskedECN bool
}

// Finding is what one server offered, or why it could not be probed.
type Finding struct {
	Stmt       int // index into Spec.Statements
	Server     netip.AddrPort
	Offer      Offer
	Err        error    // the server could not be probed: its options are not checked
	Mismatches []string // where the statement's options differ from the offer (Offer.Mismatches)
}

// Check probes every server of every statement of s, in parallel, and compares what each
// offers with its statement's options. Findings are in statement order, then server order.
func (c Checker) Check(ctx context.Context, s spec.Spec, ifaceAddrs []netip.Addr) []Finding {
	probe, timeout := c.Probe, c.Timeout
	if probe == nil {
		probe = Probe
	}
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	var out []Finding
	for i, st := range s.Statements {
		servers, _ := Servers(st, ifaceAddrs)
		for _, srv := range servers {
			out = append(out, Finding{Stmt: i, Server: srv})
		}
	}
	var wg sync.WaitGroup
	for i := range out {
		f := &out[i]
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			f.Offer, f.Err = probe(ctx, f.Server)
		})
	}
	wg.Wait()
	for i := range out {
		f := &out[i]
		if f.Err != nil {
			continue
		}
		opts := s.Statements[f.Stmt].Options
		if !c.AskedECN {
			f.Offer.ECN = opts.ECN
		}
		f.Mismatches = f.Offer.Mismatches(opts)
	}
	return out
}

// AsksECN reads whether this network namespace's connects ask for ECN (net.ipv4.tcp_ecn=1).
func AsksECN() bool {
	v, err := host.Sysctl("net.ipv4.tcp_ecn")
	return err == nil && v == "1"
}

// ErrServersDisagree: the servers of one statement offer different options, which no single
// SYN-ACK can match.
var ErrServersDisagree = errors.New("servers of one statement offer different TCP options")

// Adoption is a statement whose options were replaced by those its server offers.
type Adoption struct {
	Stmt     int
	From, To spec.TCPOptions
	Servers  []netip.AddrPort
}

// Adopt returns s with every statement's options replaced by what its servers offered
// (Offer.Apply), compiled again for iface, and the statements that changed. Servers that
// could not be probed are left out. All servers of a statement must agree.
func Adopt(iface string, s spec.Spec, findings []Finding) (spec.Spec, []Adoption, error) {
	stmts := slices.Clone(s.Statements)
	type want struct {
		opts   spec.TCPOptions
		from   netip.AddrPort
		others []netip.AddrPort
	}
	wants := map[int]*want{}
	for _, f := range findings {
		if f.Err != nil {
			continue
		}
		st := stmts[f.Stmt]
		o := f.Offer.Apply(st.Options)
		w, ok := wants[f.Stmt]
		switch {
		case !ok:
			wants[f.Stmt] = &want{opts: o, from: f.Server}
		case w.opts != o:
			return spec.Spec{}, nil, fmt.Errorf("%w: %s: server %s offers %s, server %s offers %s; split the statement so that each has one server's options",
				ErrServersDisagree, Where(st), w.from, w.opts, f.Server, o)
		default:
			w.others = append(w.others, f.Server)
		}
	}
	var adopted []Adoption
	for i := range stmts {
		w, ok := wants[i]
		if !ok || w.opts == stmts[i].Options {
			continue
		}
		adopted = append(adopted, Adoption{Stmt: i, From: stmts[i].Options, To: w.opts, Servers: append([]netip.AddrPort{w.from}, w.others...)})
		stmts[i].Options = w.opts
	}
	if len(adopted) == 0 {
		return s, nil, nil
	}
	out, err := spec.Compile(iface, s.Settings, stmts)
	if err != nil {
		return spec.Spec{}, nil, fmt.Errorf("adopt the servers' options: %w", err)
	}
	return out, adopted, nil
}
