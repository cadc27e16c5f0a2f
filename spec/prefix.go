package spec

// Prefix arithmetic: ranges a-b as prefixes, complements, and where lists of prefixes meet or
// cover each other.

import (
	"fmt"
	"net/netip"
	"slices"
)

// RangePrefixes returns the fewest prefixes covering exactly the addresses from a to b
// (inclusive), for ranges written a-b.
func RangePrefixes(a, b netip.Addr) ([]netip.Prefix, error) {
	if a.Is4() != b.Is4() || b.Less(a) {
		return nil, fmt.Errorf("%w: range %s-%s: both ends must be of one family, low first", ErrInvalid, a, b)
	}
	var out []netip.Prefix
	for {
		// The largest prefix starting at a that does not pass b.
		bits := a.BitLen()
		for bits > 0 {
			p := netip.PrefixFrom(a, bits-1)
			if p.Masked().Addr() != a || lastAddr(p.Masked()).Compare(b) > 0 {
				break
			}
			bits--
		}
		p := netip.PrefixFrom(a, bits)
		out = append(out, p)
		last := lastAddr(p)
		if last.Compare(b) >= 0 {
			return out, nil
		}
		a = last.Next()
	}
}

// lastAddr is the highest address of p.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// complement returns the prefixes of family f not covered by any of ps.
func complement(f Family, ps []netip.Prefix) []netip.Prefix {
	var out []netip.Prefix
	var walk func(p netip.Prefix)
	walk = func(p netip.Prefix) {
		overlap := false
		for _, q := range ps {
			if q.Bits() <= p.Bits() && q.Contains(p.Addr()) {
				return // covered
			}
			if q.Overlaps(p) {
				overlap = true
			}
		}
		if !overlap {
			out = append(out, p)
			return
		}
		lo := netip.PrefixFrom(p.Addr(), p.Bits()+1)
		walk(lo)
		walk(netip.PrefixFrom(lastAddr(lo).Next(), p.Bits()+1))
	}
	walk(f.AnyAddr())
	return out
}

// prefixesMeet is where the prefixes of a meet those of b: the narrower of each overlapping pair.
func prefixesMeet(a, b []netip.Prefix) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range a {
		for _, q := range b {
			switch {
			case !p.Overlaps(q):
			case p.Bits() >= q.Bits():
				out = append(out, p) // the narrower of two overlapping prefixes is their intersection
			default:
				out = append(out, q)
			}
		}
	}
	return out
}

// prefixesCover reports whether every prefix of inner lies inside one of outer.
func prefixesCover(outer, inner []netip.Prefix) bool {
	for _, p := range inner {
		if !slices.ContainsFunc(outer, func(q netip.Prefix) bool { return q.Bits() <= p.Bits() && q.Contains(p.Addr()) }) {
			return false
		}
	}
	return true
}

// mergePrefixes drops every prefix another of ps covers: one given twice is kept at its first
// place, one inside a wider one is left to it. The rest keep their order.
func mergePrefixes(ps []netip.Prefix) []netip.Prefix {
	var out []netip.Prefix
	for i, p := range ps {
		covered := false
		for j, q := range ps {
			if q.Bits() < p.Bits() && q.Contains(p.Addr()) || q == p && j < i {
				covered = true
				break
			}
		}
		if !covered {
			out = append(out, p)
		}
	}
	return out
}
