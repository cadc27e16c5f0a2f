package spec

import (
	"fmt"
	"net/netip"
)

// Stack is what the local TCP stack offers in its own SYN-ACKs: the right defaults for services
// it serves itself, since SYNPROXY hands the client's connection to it with the options the
// client accepted from us.
type Stack struct {
	MTU    int   // of the protected interface
	WScale uint8 // the window scale shift the stack offers (see WScaleForBuffer)
}

// WScaleForBuffer is the window scale Linux offers for a receive buffer limit of maxRcvBuf bytes
// (max of net.ipv4.tcp_rmem[2] and net.core.rmem_max): the shift that lets the largest buffer
// be announced, as tcp_select_initial_window computes it. A stock kernel (6 MiB) gives 7.
func WScaleForBuffer(maxRcvBuf int) uint8 {
	shift := -15
	for b := maxRcvBuf; b > 1; b >>= 1 {
		shift++
	}
	return uint8(min(max(shift, 0), MaxWScale))
}

// Options are the SYN-ACK options the stack itself offers: its MSS and window scale, with SACK
// and timestamps on (FireHOL's choice, and Linux's default).
func (st Stack) Options(f Family) TCPOptions {
	o := DefaultOptions(f)
	o.WScale = st.WScale
	if st.MTU > 0 {
		o.MSS = uint16(min(st.mss(f), MaxMSS))
	}
	return o
}

// mss is the MSS the stack announces on a link of this MTU.
func (st Stack) mss(f Family) int {
	hdr := 40 // IPv4 + TCP
	if f == IPv6 {
		hdr = 60
	}
	return max(st.MTU-hdr, MinMSS)
}

// Simple is the short way to say "protect these ports on this host": what `xsyn attach` takes
// as flags. Zero values of the option fields mean the defaults: the local Stack's when given,
// else FireHOL's (DefaultOptions).
type Simple struct {
	Ports []uint16
	// Dst is the value of --dst: addresses, prefixes and ranges a-b, as dst takes them in a
	// configuration (ParseDst); empty: every address of both families.
	Dst          string
	MSS          int // 0: DefaultMSS per family
	WScale       int // -1: default
	NoSACK       bool
	NoTimestamps bool
	ECN          bool
	TTL          int // 0: DefaultTTL
	// Via is the path every statement asks for (--path). The flag form's `input ... accept`
	// statements can always take the handoff.
	Via Via
	// OnDemand is the SYN rate (a second) from which SYNs get cookies; below it the listener
	// answers (--on-demand). 0: cookies always. Handoff path only.
	OnDemand int
	Stack    *Stack
}

// Build turns the flag form into a validated Spec: an `input ... accept` statement for each
// family --dst names (both without it), marked Implicit, with the ports in one list.
func (f Simple) Build() (Spec, error) {
	if len(f.Ports) == 0 {
		return Spec{}, ErrNoServices
	}
	families := []Family{IPv4, IPv6}
	dsts := map[Family][]netip.Prefix{}
	if f.Dst != "" {
		ps, err := ParseDst(f.Dst)
		if err != nil {
			return Spec{}, err
		}
		families = nil
		for _, fam := range []Family{IPv4, IPv6} {
			for _, p := range ps {
				if familyOf(p) == fam {
					dsts[fam] = append(dsts[fam], p)
				}
			}
			if len(dsts[fam]) > 0 {
				families = append(families, fam)
			}
		}
	}
	var svcs []Service
	var stmts []Statement
	for _, fam := range families {
		opts, ttl, err := f.Options(fam)
		if err != nil {
			return Spec{}, err
		}
		st := Statement{Family: fam, Direction: Input, Options: opts, TTL: ttl, Action: Action{Kind: Accept}, Implicit: true}
		ds := dsts[fam]
		if len(ds) == 0 {
			ds = []netip.Prefix{fam.AnyAddr()}
		}
		for _, d := range ds {
			if d.Bits() != 0 { // a /0 is every address, as without --dst
				st.Match.Dst.Prefixes = append(st.Match.Dst.Prefixes, d)
			}
			for _, p := range f.Ports {
				svcs = append(svcs, Service{Family: fam, Dst: d, Port: p, Options: opts, TTL: ttl})
			}
		}
		for _, p := range f.Ports {
			st.Match.Dport.Ranges = append(st.Match.Dport.Ranges, PortRange{p, p})
		}
		stmts = append(stmts, st)
	}
	if err := (Spec{Services: svcs}).Validate(); err != nil {
		return Spec{}, err
	}
	if f.OnDemand < 0 || f.OnDemand > MaxOnDemand {
		return Spec{}, fmt.Errorf("%w: on-demand %d is outside 0-%d SYNs a second", ErrInvalid, f.OnDemand, MaxOnDemand)
	}
	for i := range stmts {
		stmts[i].OnDemand = uint32(f.OnDemand) // Compile checks the path
		stmts[i].Text = stmts[i].String()
	}
	s, err := Compile("", DefaultSettings(), stmts)
	if err != nil || f.Via == ViaAuto {
		return s, err
	}
	return s.WithVia("", f.Via)
}

// Options returns the SYN-ACK options and TTL the flags ask for in a family: the defaults (the
// Stack's when given, else FireHOL's) with every flag that was set applied.
func (f Simple) Options(fam Family) (TCPOptions, uint8, error) {
	opts := DefaultOptions(fam)
	if f.Stack != nil {
		opts = f.Stack.Options(fam)
	}
	if f.MSS != 0 {
		if f.MSS < MinMSS || f.MSS > MaxMSS {
			return TCPOptions{}, 0, fmt.Errorf("%w: mss %d is outside %d-%d", ErrInvalid, f.MSS, MinMSS, MaxMSS)
		}
		opts.MSS = uint16(f.MSS)
	}
	if f.WScale >= 0 {
		if f.WScale > MaxWScale {
			return TCPOptions{}, 0, fmt.Errorf("%w: wscale %d is above %d", ErrInvalid, f.WScale, MaxWScale)
		}
		opts.WScale = uint8(f.WScale)
	}
	opts.SACK = !f.NoSACK
	opts.Timestamps = !f.NoTimestamps
	opts.ECN = f.ECN
	ttl := DefaultTTL
	if f.TTL != 0 {
		if f.TTL < 1 || f.TTL > 255 {
			return TCPOptions{}, 0, fmt.Errorf("%w: ttl %d is outside 1-255", ErrInvalid, f.TTL)
		}
		ttl = f.TTL
	}
	return opts, uint8(ttl), nil
}

func familyOf(p netip.Prefix) Family {
	if p.Addr().Is4() {
		return IPv4
	}
	return IPv6
}

// ParseDst parses the value of --dst with the parser of dst in a configuration (prefixList):
// addresses, prefixes and ranges a-b ("203.0.113.10", "203.0.113.0/24", "2001:db8::/64",
// "192.0.2.1-192.0.2.9"), separated by commas or blanks, of either family. A bare address is a
// host prefix, a range the prefixes covering it exactly; an item another covers merges into
// it. IPv4-mapped IPv6 addresses and zones are refused, and so are host bits set in a prefix.
func ParseDst(s string) ([]netip.Prefix, error) {
	ps, bad := prefixList(token{val: s}, "--dst", 0, "")
	if bad != nil {
		return nil, fmt.Errorf("%w: %s", ErrInvalid, bad.msg)
	}
	return ps, nil
}

// ParsePorts parses the value of --port with the parser of dport in a configuration
// (portList): ports and ranges N-M or N:M, 1-65535, separated by commas or blanks, like
// "22,80,443" or "8000-8010,443". A port given twice, or inside a range also given, is merged
// (the same policy as dport's); the ports come out sorted, each once.
func ParsePorts(s string) ([]uint16, error) {
	rs, bad := portList(token{val: s}, "--port", "--port")
	if bad != nil {
		return nil, fmt.Errorf("%w: %s", ErrInvalid, bad.msg)
	}
	return PortSet{Ranges: rs}.Ports(), nil
}
