package spec

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Simple is the short way to say "protect these ports on this host": what `xsyn attach` takes
// as flags. Zero values of the option fields mean the family defaults.
type Simple struct {
	Ports        []uint16
	Dst          string // address or prefix; empty: every address of both families
	MSS          int    // 0: DefaultMSS per family
	WScale       int    // -1: default (7)
	NoSACK       bool
	NoTimestamps bool
	ECN          bool
	TTL          int // 0: DefaultTTL
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
	var s Spec
	for _, fam := range families {
		opts := DefaultOptions(fam)
		if f.MSS != 0 {
			if f.MSS < MinMSS || f.MSS > MaxMSS {
				return Spec{}, fmt.Errorf("%w: mss %d is outside %d-%d", ErrInvalid, f.MSS, MinMSS, MaxMSS)
			}
			opts.MSS = uint16(f.MSS)
		}
		if f.WScale >= 0 {
			if f.WScale > MaxWScale {
				return Spec{}, fmt.Errorf("%w: wscale %d is above %d", ErrInvalid, f.WScale, MaxWScale)
			}
			opts.WScale = uint8(f.WScale)
		}
		opts.SACK = !f.NoSACK
		opts.Timestamps = !f.NoTimestamps
		opts.ECN = f.ECN
		ttl := DefaultTTL
		if f.TTL != 0 {
			if f.TTL < 1 || f.TTL > 255 {
				return Spec{}, fmt.Errorf("%w: ttl %d is outside 1-255", ErrInvalid, f.TTL)
			}
			ttl = f.TTL
		}
		d := fam.AnyAddr()
		if dst.IsValid() {
			d = dst
		}
		for _, p := range f.Ports {
			s.Services = append(s.Services, Service{Family: fam, Dst: d, Port: p, Options: opts, TTL: uint8(ttl)})
		}
	}
	return s, s.Validate()
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
