package spec

// The values of a configuration: lists of ports, addresses and interface names, numbers, DNAT
// targets. Each parser returns what is wrong as a message; the caller says where.

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// addrList is a src or dst list as written, before it is split by family.
type addrList struct {
	set   bool
	not   bool
	items []netip.Prefix
}

// forFamily is the list's AddrSet in family f; ok is false when the list names addresses of
// the other family only, so the statement is not for f. A negated list naming only the other
// family excludes nothing in f.
func (l addrList) forFamily(f Family) (set AddrSet, ok bool) {
	if !l.set {
		return AddrSet{}, true
	}
	for _, p := range l.items {
		if familyOf(p) == f {
			set.Prefixes = append(set.Prefixes, p)
		}
	}
	if len(set.Prefixes) == 0 {
		return AddrSet{}, l.not
	}
	set.Not = l.not
	return set, true
}

// number parses the decimal number s, the argument of kw, in lo-hi.
func number(c *cursor, kw, s string, at position, lo, hi int) (int, *ConfigError) {
	if s == "" || strings.Trim(s, "0123456789") != "" {
		return 0, c.errAt(at, "expected a number %d-%d after %q, got %q", lo, hi, kw, s)
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < lo || n > hi {
		return 0, c.errAt(at, "%s %s is outside %d-%d", strings.TrimLeft(kw, "-"), s, lo, hi)
	}
	return n, nil
}

// listSeps separate the items of a list value: commas and blanks (`dport 80,443`, a quoted
// "80 443" or "80, 443", `--port 80,443`).
const listSeps = ", \t"

// badItem is what is wrong with a list value, and where: at the item that is wrong, or at the
// value when it is empty. The configuration reports it at FILE:LINE:COL; a flag, whose
// messages name it, without a position.
type badItem struct {
	at  position
	msg string
}

// listItems splits the list v, written after kw, into its items; an empty list is an error
// saying what was expected.
func listItems(v token, kw, what string) ([]item, *badItem) {
	items := split(v, 0, listSeps)
	if len(items) == 0 {
		return nil, &badItem{v.pos, fmt.Sprintf("expected %s after %q, got an empty list", what, kw)}
	}
	return items, nil
}

// The lists below are shared by the configuration (dport, dst, ...) and the flags (--port,
// --dst: flags.go), with one policy for an item given twice: a list matches the union of its
// items, so a repeated or overlapping item merges into the others (FireHOL, whose lists
// become iptables rules, accepts them too) instead of being an error. attach and explain show
// the merged list, so a typo that merged is still seen.

// portList parses the ports and ranges (N, N-M, or N:M as iptables writes it) of the list v
// written after kw (dport, "sport not", --port); noun names one port in messages ("port",
// "--port"). The ranges come out sorted, overlapping and touching ones merged.
func portList(v token, kw, noun string) ([]PortRange, *badItem) {
	items, bad := listItems(v, kw, "ports")
	if bad != nil {
		return nil, bad
	}
	rs := make([]PortRange, 0, len(items))
	for _, it := range items {
		r, msg := parsePortItem(it.s, kw, noun)
		if msg != "" {
			return nil, &badItem{it.pos, msg}
		}
		rs = append(rs, r)
	}
	return mergeRanges(rs), nil
}

// prefixList parses the addresses, prefixes and ranges a-b of the list v written after kw (a
// range is stored as the prefixes covering it exactly). When only is not 0 the list may name
// that family only, the one of statement cmd. A prefix another item covers (an address given
// twice, a host inside a listed network) merges into it; the rest keep their order.
func prefixList(v token, kw string, only Family, cmd string) ([]netip.Prefix, *badItem) {
	items, bad := listItems(v, kw, "addresses")
	if bad != nil {
		return nil, bad
	}
	var out []netip.Prefix
	for _, it := range items {
		ps, msg := parseAddrItem(it.s, kw)
		if msg != "" {
			return nil, &badItem{it.pos, msg}
		}
		if f := familyOf(ps[0]); only != 0 && f != only {
			return nil, &badItem{it.pos, fmt.Sprintf("%s %s is %s, but %s takes %s addresses (use synproxy for both families)",
				kw, it.s, familyName(f), cmd, familyName(only))}
		}
		out = append(out, ps...)
	}
	return mergePrefixes(out), nil
}

// nameList parses the interface names of the list v written after kw; a name given twice is
// kept once.
func nameList(v token, kw string) ([]string, *badItem) {
	items, bad := listItems(v, kw, "interface names")
	if bad != nil {
		return nil, bad
	}
	var names []string
	for _, it := range items {
		if msg := checkIface(it.s, kw); msg != "" {
			return nil, &badItem{it.pos, msg}
		}
		if !slices.Contains(names, it.s) {
			names = append(names, it.s)
		}
	}
	return names, nil
}

func addrFamily(a netip.Addr) Family {
	if a.Is4() {
		return IPv4
	}
	return IPv6
}

func familyName(f Family) string {
	if f == IPv6 {
		return "IPv6"
	}
	return "IPv4"
}

// item is one element of a list word.
type item struct {
	s   string
	pos position
}

// split splits the value of t, from byte off on, at any of the bytes in seps.
func split(t token, off int, seps string) []item {
	var out []item
	start := -1
	for i := off; i <= len(t.val); i++ {
		if i == len(t.val) || strings.IndexByte(seps, t.val[i]) >= 0 {
			if start >= 0 {
				out = append(out, item{t.val[start:i], t.posOf(start)})
				start = -1
			}
		} else if start < 0 {
			start = i
		}
	}
	return out
}

// checkIface checks an interface name written after kw; it returns what is wrong, or "".
func checkIface(name, kw string) string {
	if len(name) > 15 {
		return fmt.Sprintf("%s %s: interface names are at most 15 characters", kw, name)
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return fmt.Sprintf("expected interface names after %q (letters, digits, '.', '_' and '-'; no wildcards), got %q", kw, name)
		}
	}
	return ""
}

// parseAddrItem parses an address, a prefix or a range a-b written after kw; it returns what
// is wrong, or "".
func parseAddrItem(s, kw string) ([]netip.Prefix, string) {
	if strings.Contains(s, "%") {
		return nil, fmt.Sprintf("%s %s has a zone; give the address without %%zone", kw, s)
	}
	if lo, hi, ok := strings.Cut(s, "-"); ok {
		a, msg := parseHost(lo, s, kw)
		if msg != "" {
			return nil, msg
		}
		b, msg := parseHost(hi, s, kw)
		if msg != "" {
			return nil, msg
		}
		if a.Is4() != b.Is4() {
			return nil, fmt.Sprintf("%s range %s mixes IPv4 and IPv6", kw, s)
		}
		if b.Less(a) {
			return nil, fmt.Sprintf("%s range %s runs backwards", kw, s)
		}
		ps, err := RangePrefixes(a, b)
		if err != nil {
			return nil, fmt.Sprintf("%s range %s: %v", kw, s, err)
		}
		return ps, ""
	}
	host, bits, isPrefix := strings.Cut(s, "/")
	a, msg := parseHost(host, s, kw)
	if msg != "" {
		return nil, msg
	}
	if !isPrefix {
		return []netip.Prefix{netip.PrefixFrom(a, a.BitLen())}, ""
	}
	n, err := strconv.Atoi(bits)
	if err != nil || n < 0 || n > a.BitLen() || strings.Trim(bits, "0123456789") != "" {
		return nil, fmt.Sprintf("%s %s: the prefix length must be 0-%d", kw, s, a.BitLen())
	}
	p := netip.PrefixFrom(a, n)
	if p != p.Masked() {
		return nil, fmt.Sprintf("%s %s has host bits set (did you mean %s?)", kw, s, p.Masked())
	}
	return []netip.Prefix{p}, ""
}

// parseHost parses one address h of item s, IPv6 bare or in brackets.
func parseHost(h, s, kw string) (netip.Addr, string) {
	if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") {
		h = h[1 : len(h)-1]
	}
	a, err := netip.ParseAddr(h)
	if err != nil {
		return a, fmt.Sprintf("expected addresses, prefixes or ranges a-b after %q, got %q (host names are not resolved)", kw, s)
	}
	if a.Is4In6() {
		return a, fmt.Sprintf("%s %s is IPv4-mapped; write %s", kw, h, a.Unmap())
	}
	return a, ""
}

// parsePortItem parses N, N-M or N:M written after kw, whose ports messages call noun; it
// returns what is wrong, or "".
func parsePortItem(s, kw, noun string) (PortRange, string) {
	lo, hi, isRange := strings.Cut(s, "-")
	if !isRange {
		lo, hi, isRange = strings.Cut(s, ":")
	}
	if !isRange {
		hi = lo
	}
	var r [2]uint16
	for i, v := range []string{lo, hi} {
		if v == "" || strings.Trim(v, "0123456789") != "" {
			return PortRange{}, fmt.Sprintf("expected a port or a range N-M after %q, got %q (service names are not looked up)", kw, s)
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 65535 {
			return PortRange{}, fmt.Sprintf("%s %s is outside 1-65535", noun, v)
		}
		r[i] = uint16(n)
	}
	if r[1] < r[0] {
		return PortRange{}, fmt.Sprintf("%s range %s runs backwards", noun, s)
	}
	return PortRange{r[0], r[1]}, ""
}

// parseTarget parses a DNAT target: IP, IP:PORT, [IPv6], [IPv6]:PORT or :PORT; it returns what
// is wrong, or "".
func parseTarget(s string) (netip.Addr, uint16, string) {
	const want = "expected IP, IP:PORT, [IPv6], [IPv6]:PORT or :PORT"
	if strings.Contains(s, "%") {
		return netip.Addr{}, 0, "zones are not supported"
	}
	host, port, hasPort := s, "", false
	switch {
	case strings.HasPrefix(s, "["):
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return netip.Addr{}, 0, want
		}
		host, port = s[1:end], s[end+1:]
		if port != "" && !strings.HasPrefix(port, ":") {
			return netip.Addr{}, 0, want
		}
		port, hasPort = strings.CutPrefix(port, ":")
	case strings.HasPrefix(s, ":"):
		host, port, hasPort = "", s[1:], true
	default:
		if _, err := netip.ParseAddr(s); err != nil {
			if i := strings.LastIndexByte(s, ':'); i >= 0 {
				host, port, hasPort = s[:i], s[i+1:], true
				if strings.Contains(host, ":") {
					return netip.Addr{}, 0, "write an IPv6 address with a port as [ADDRESS]:PORT"
				}
			}
		}
	}
	var a netip.Addr
	if host != "" {
		if strings.Contains(host, "-") {
			return netip.Addr{}, 0, "address ranges are not supported; give one address"
		}
		var err error
		if a, err = netip.ParseAddr(host); err != nil {
			return netip.Addr{}, 0, want
		}
		if a.Is4In6() {
			return netip.Addr{}, 0, fmt.Sprintf("%s is IPv4-mapped; write %s", a, a.Unmap())
		}
	}
	var p uint16
	if hasPort || !a.IsValid() {
		if strings.Contains(port, "-") {
			return netip.Addr{}, 0, "port ranges are not supported; give one port"
		}
		if port == "" || strings.Trim(port, "0123456789") != "" {
			return netip.Addr{}, 0, want
		}
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 {
			return netip.Addr{}, 0, fmt.Sprintf("port %s is outside 1-65535", port)
		}
		p = uint16(n)
	}
	return a, p, ""
}
