package spec

// Port range arithmetic, as prefix.go is for addresses.

import (
	"cmp"
	"slices"
)

// rangesMeet is where the ranges of a meet those of b.
func rangesMeet(a, b []PortRange) []PortRange {
	var out []PortRange
	for _, p := range a {
		for _, q := range b {
			if lo, hi := max(p.Lo, q.Lo), min(p.Hi, q.Hi); lo <= hi {
				out = append(out, PortRange{lo, hi})
			}
		}
	}
	return out
}

// rangesCover reports whether every range of inner lies inside one of outer.
func rangesCover(outer, inner []PortRange) bool {
	for _, p := range inner {
		if !slices.ContainsFunc(outer, func(q PortRange) bool { return q.Lo <= p.Lo && p.Hi <= q.Hi }) {
			return false
		}
	}
	return true
}

// mergeRanges sorts ranges and merges those that overlap or touch.
func mergeRanges(rs []PortRange) []PortRange {
	slices.SortFunc(rs, func(a, b PortRange) int { return cmp.Compare(a.Lo, b.Lo) })
	var out []PortRange
	for _, r := range rs {
		if n := len(out); n > 0 && int(r.Lo) <= int(out[n-1].Hi)+1 {
			out[n-1].Hi = max(out[n-1].Hi, r.Hi)
			continue
		}
		out = append(out, r)
	}
	return out
}
