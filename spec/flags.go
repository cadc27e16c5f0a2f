package spec

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
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
	Ports        []uint16
	Dst          string // address or prefix; empty: every address of both families
	MSS          int    // 0: DefaultMSS per family
	WScale       int    // -1: default
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

// Build turns the flag form into a validated Spec.
func (f Simple) Build() (Spec, error) {
	if len(f.Ports) == 0 {
		return Spec{}, ErrNoServices
	}
	families := []Family{IPv4, IPv6}
	var dst netip.Prefix
	if f.Dst != "" {
		var err error
		dst, err = ParsePrefix(f.Dst)
		if err != nil {
			return Spec{}, err
		}
		families = []Family{familyOf(dst)}
	}
	var svcs []Service
	for _, fam := range families {
		opts, ttl, err := f.Options(fam)
		if err != nil {
			return Spec{}, err
		}
		d := fam.AnyAddr()
		if dst.IsValid() {
			d = dst
		}
		for _, p := range f.Ports {
			svcs = append(svcs, Service{Family: fam, Dst: d, Port: p, Options: opts, TTL: ttl})
		}
	}
	if err := (Spec{Services: svcs}).Validate(); err != nil {
		return Spec{}, err
	}
	if f.OnDemand < 0 || f.OnDemand > MaxOnDemand {
		return Spec{}, fmt.Errorf("%w: on-demand %d is outside 0-%d SYNs a second", ErrInvalid, f.OnDemand, MaxOnDemand)
	}
	for i := range svcs {
		svcs[i].OnDemand = uint32(f.OnDemand) // Compile checks the path
	}
	s, err := FromServices(DefaultSettings(), "", svcs)
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

// ParsePrefix parses "203.0.113.10", "203.0.113.0/24", "2001:db8::1" or "2001:db8::/64".
// A bare address is a host prefix. IPv4-mapped IPv6 addresses are refused: say the IPv4 address.
func ParsePrefix(s string) (netip.Prefix, error) {
	var p netip.Prefix
	var err error
	if strings.Contains(s, "/") {
		p, err = netip.ParsePrefix(s)
	} else {
		var a netip.Addr
		a, err = netip.ParseAddr(s)
		if err == nil && a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("%w: destination %q has a zone; give the address without %%zone", ErrInvalid, s)
		}
		if err == nil {
			p = netip.PrefixFrom(a, a.BitLen())
		}
	}
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%w: destination %q is not an address or prefix (e.g. 203.0.113.10, 2001:db8::/64)", ErrInvalid, s)
	}
	if p.Addr().Is4In6() {
		return netip.Prefix{}, fmt.Errorf("%w: destination %q is IPv4-mapped; give the IPv4 address", ErrInvalid, s)
	}
	if p != p.Masked() {
		return netip.Prefix{}, fmt.Errorf("%w: destination %q has host bits set (did you mean %s?)", ErrInvalid, s, p.Masked())
	}
	return p, nil
}

// ParsePorts parses a list like "22,80,443" or "8000-8010,443". Ports are 1-65535; duplicates
// are an error, so a typo does not silently vanish.
func ParsePorts(s string) ([]uint16, error) {
	if strings.TrimSpace(s) == "" {
		return nil, fmt.Errorf("%w: empty port list", ErrInvalid)
	}
	var out []uint16
	seen := map[uint16]bool{}
	for _, tok := range strings.Split(s, ",") {
		tok = strings.TrimSpace(tok)
		lo, hi, isRange := strings.Cut(tok, "-")
		a, err := parsePort(lo)
		if err != nil {
			return nil, fmt.Errorf("%w: port %q: %v", ErrInvalid, tok, err)
		}
		b := a
		if isRange {
			if b, err = parsePort(hi); err != nil {
				return nil, fmt.Errorf("%w: port range %q: %v", ErrInvalid, tok, err)
			}
			if b < a {
				return nil, fmt.Errorf("%w: port range %q runs backwards", ErrInvalid, tok)
			}
		}
		for p := int(a); p <= int(b); p++ {
			if seen[uint16(p)] {
				return nil, fmt.Errorf("%w: port %d is listed twice", ErrInvalid, p)
			}
			seen[uint16(p)] = true
			out = append(out, uint16(p))
		}
	}
	return out, nil
}

func parsePort(s string) (uint16, error) {
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("not a number")
	}
	if n < 1 || n > 65535 {
		return 0, fmt.Errorf("%d is outside 1-65535", n)
	}
	return uint16(n), nil
}
