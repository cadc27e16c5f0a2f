package spec

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// Direction says where the protected server is, as FireHOL's synproxy type does.
type Direction int

// The directions of a statement.
const (
	// Input: the server is this host (the destination is one of its addresses); SYNPROXY sits
	// in filter INPUT.
	Input Direction = iota
	// Forward: the server is behind this host, which routes to it; SYNPROXY sits in filter
	// FORWARD.
	Forward
)

func (d Direction) String() string {
	if d == Forward {
		return "forward"
	}
	return "input"
}

// ActionKind is what happens to the connection once SYNPROXY has validated the client's
// handshake and opens the real one.
type ActionKind int

// The actions of a statement.
const (
	Accept   ActionKind = iota // let the connection reach the destination the client asked for
	Reject                     // refuse it with a TCP reset, after the client proved it is real
	Drop                       // drop it silently
	Redirect                   // to a port of this host (REDIRECT in nat OUTPUT)
	DNAT                       // to another address and/or port (DNAT in nat OUTPUT)
	Chain                      // jump to a user chain of the filter table
)

// Action is a statement's action and its arguments.
type Action struct {
	Kind  ActionKind
	Addr  netip.Addr // DNAT: new destination address (invalid: keep the address)
	Port  uint16     // Redirect: target port; DNAT: new destination port (0: keep the port)
	Chain string     // Chain: the user chain in the filter table
}

func (a Action) String() string {
	switch a.Kind {
	case Reject:
		return "reject"
	case Drop:
		return "drop"
	case Redirect:
		return fmt.Sprintf("redirect to %d", a.Port)
	case DNAT:
		return "dnat to " + a.Target()
	case Chain:
		return "action " + a.Chain
	}
	return "accept"
}

// Target is the DNAT destination as iptables' --to-destination takes it: "10.1.1.5",
// "10.1.1.5:8080", "[2001:db8::5]:8080", ":8080".
func (a Action) Target() string {
	switch {
	case !a.Addr.IsValid():
		return ":" + strconv.Itoa(int(a.Port))
	case a.Port == 0:
		if a.Addr.Is6() {
			return "[" + a.Addr.String() + "]"
		}
		return a.Addr.String()
	}
	return netip.AddrPortFrom(a.Addr, a.Port).String()
}

// AddrSet is a list of prefixes, or everything but them. An IP range a-b is stored as the
// prefixes covering it exactly. The zero value matches every address.
type AddrSet struct {
	Prefixes []netip.Prefix
	Not      bool
}

// Any reports whether the set matches every address.
func (s AddrSet) Any() bool { return len(s.Prefixes) == 0 && !s.Not }

// Positive returns the prefixes the set matches, in family f: the complement of a negated set.
func (s AddrSet) Positive(f Family) []netip.Prefix {
	if !s.Not {
		if len(s.Prefixes) == 0 {
			return []netip.Prefix{f.AnyAddr()}
		}
		return s.Prefixes
	}
	return complement(f, s.Prefixes)
}

func (s AddrSet) String() string {
	return setString(s.Not, s.Prefixes)
}

// PortRange is an inclusive range of TCP ports.
type PortRange struct{ Lo, Hi uint16 }

func (r PortRange) String() string {
	if r.Lo == r.Hi {
		return strconv.Itoa(int(r.Lo))
	}
	return fmt.Sprintf("%d-%d", r.Lo, r.Hi)
}

// PortSet is a list of port ranges, or every port but them. The zero value matches every port.
type PortSet struct {
	Ranges []PortRange
	Not    bool
}

// Any reports whether the set matches every port.
func (s PortSet) Any() bool { return len(s.Ranges) == 0 && !s.Not }

// Positive returns the ranges the set matches (the complement of a negated set), sorted and
// merged.
func (s PortSet) Positive() []PortRange {
	if len(s.Ranges) == 0 && !s.Not {
		return []PortRange{{1, 65535}}
	}
	merged := mergeRanges(slices.Clone(s.Ranges))
	if !s.Not {
		return merged
	}
	var out []PortRange
	next := 1
	for _, r := range merged {
		if int(r.Lo) > next {
			out = append(out, PortRange{uint16(next), r.Lo - 1})
		}
		next = int(r.Hi) + 1
	}
	if next <= 65535 {
		out = append(out, PortRange{uint16(next), 65535})
	}
	return out
}

// Ports lists every port the set matches.
func (s PortSet) Ports() []uint16 {
	var out []uint16
	for _, r := range s.Positive() {
		for p := int(r.Lo); p <= int(r.Hi); p++ {
			out = append(out, uint16(p))
		}
	}
	return out
}

func (s PortSet) String() string {
	return setString(s.Not, s.Ranges)
}

// NameSet is a list of interface names, or every interface but them. The zero value matches
// every interface.
type NameSet struct {
	Names []string
	Not   bool
}

// Any reports whether the set matches every interface.
func (s NameSet) Any() bool { return len(s.Names) == 0 && !s.Not }

// Has reports whether the set matches interface name.
func (s NameSet) Has(name string) bool {
	return slices.Contains(s.Names, name) != s.Not || s.Any()
}

func (s NameSet) String() string {
	return setString(s.Not, s.Names)
}

func setString[T any](not bool, items []T) string {
	parts := make([]string, len(items))
	for i, it := range items {
		parts[i] = fmt.Sprint(it)
	}
	out := strings.Join(parts, ",")
	if not {
		out = "not " + out
	}
	return out
}

// Match is what a statement matches of the client's SYN, before any NAT.
type Match struct {
	Inface, Outface NameSet
	Src, Dst        AddrSet
	Sport, Dport    PortSet
}

// Pos is where a statement was written.
type Pos struct {
	File string
	Line int
}

func (p Pos) String() string {
	if p.File == "" {
		return "line " + strconv.Itoa(p.Line)
	}
	return p.File + ":" + strconv.Itoa(p.Line)
}

// Statement is one synproxy statement, for one family: which SYNs are proxied, with which TCP
// options, and what happens to the connection once the client has completed the handshake.
// Statements are evaluated in order; the first that matches a packet wins, as in iptables.
type Statement struct {
	Pos       Pos    // where it was written (zero for statements made from flags)
	Text      string // the statement as written, for annotations
	Family    Family
	Direction Direction
	Match     Match
	Options   TCPOptions // resolved: defaults with the statement's overrides applied
	TTL       uint8
	Action    Action
	LogLimit  string // iptables LOG prefix of a rate-limited log of each accepted connection
	// Via is the path asked for (config `path`, flag --path); Path the one Compile chose, and
	// PathReason why it is SYNPROXY ("" for the handoff). See path.go.
	Via        Via
	Path       Path
	PathReason string
	// Implicit: xsyn made the statement (the flag form, zero-config), nobody wrote it. On the
	// SYNPROXY path its accept would replace the host firewall's INPUT verdict, which nobody
	// asked for: attach protects such a statement's ports only where the firewall lets every
	// client in (internal/protect, firewall.go).
	Implicit bool
	// OnDemand is the SYN rate (a second) from which the statement's SYNs get cookies; below
	// it the listener answers them (config `on-demand`, flag --on-demand). 0: cookies always.
	// Handoff path only.
	OnDemand uint32
}

// Origin names the statement in annotations: its text, or where it was written.
func (st Statement) Origin() string {
	if st.Text != "" {
		return st.Text
	}
	return st.String()
}

func (st Statement) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "synproxy%c %s", "46"[b2i(st.Family == IPv6)], st.Direction)
	m := st.Match
	for _, kv := range []struct {
		k   string
		any bool
		v   fmt.Stringer
	}{
		{"inface", m.Inface.Any(), m.Inface}, {"outface", m.Outface.Any(), m.Outface},
		{"src", m.Src.Any(), m.Src}, {"dst", m.Dst.Any(), m.Dst},
		{"sport", m.Sport.Any(), m.Sport}, {"dport", m.Dport.Any(), m.Dport},
	} {
		if !kv.any {
			fmt.Fprintf(&b, " %s %s", kv.k, kv.v)
		}
	}
	b.WriteString(" " + st.Action.String())
	if st.LogLimit != "" {
		fmt.Fprintf(&b, " loglimit %q", st.LogLimit)
	}
	return b.String()
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// XDPReason says why a statement cannot be answered in XDP ("" when it can): the XDP program
// matches destination prefix and port only, on the interface it is attached to.
func (st Statement) XDPReason() string {
	m := st.Match
	switch {
	case !m.Src.Any():
		return "it matches the source address"
	case !m.Sport.Any():
		return "it matches the source port"
	case !m.Outface.Any():
		return "it matches the outgoing interface"
	}
	return ""
}

// Validate checks one statement against the settings it will be installed with.
func (st Statement) Validate(set Settings) error {
	bad := func(format string, args ...any) error {
		return statementError{st.Pos, fmt.Sprintf(format, args...)}
	}
	if st.Family != IPv4 && st.Family != IPv6 {
		return bad("family must be 4 or 6")
	}
	m := st.Match
	for _, set := range []struct {
		what string
		s    AddrSet
	}{{"src", m.Src}, {"dst", m.Dst}} {
		for _, p := range set.s.Prefixes {
			if !p.IsValid() || p.Addr().Is4() != (st.Family == IPv4) || p.Addr().Is4In6() {
				return bad("%s %s is not an %s prefix", set.what, p, st.Family)
			}
			if p != p.Masked() {
				return bad("%s %s has host bits set (did you mean %s?)", set.what, p, p.Masked())
			}
		}
		if set.s.Not && len(set.s.Prefixes) == 0 {
			return bad("%s not: nothing to negate", set.what)
		}
	}
	for _, set := range []struct {
		what string
		s    PortSet
	}{{"sport", m.Sport}, {"dport", m.Dport}} {
		for _, r := range set.s.Ranges {
			if r.Lo == 0 || r.Hi < r.Lo {
				return bad("%s %s: ports are 1-65535, ranges low-high", set.what, r)
			}
		}
		if len(set.s.Positive()) == 0 {
			return bad("%s matches no port", set.what)
		}
	}
	if len(m.Dst.Positive(st.Family)) == 0 {
		return bad("dst matches no address")
	}
	if msg := st.Options.problem(); msg != "" {
		return bad("%s", msg)
	}
	if st.TTL == 0 {
		return bad("ttl must be 1-255")
	}
	a := st.Action
	switch a.Kind {
	case Accept, Reject, Drop:
	case Redirect:
		if a.Port == 0 {
			return bad("redirect to needs a port 1-65535")
		}
		if set.Loopback != LoopbackStrict {
			return bad("redirect needs `loopback strict` (it is %s): the redirected SYN loops through lo with "+
				"the client's address, and a %s loopback policy would let anything that reaches lo that way "+
				"at local services", set.Loopback, set.Loopback)
		}
	case DNAT:
		if !a.Addr.IsValid() && a.Port == 0 {
			return bad("dnat to needs an address, a port or both")
		}
		if a.Addr.IsValid() && (a.Addr.Is4() != (st.Family == IPv4) || a.Addr.Is4In6() || a.Addr.Zone() != "") {
			return bad("dnat to %s is not an %s address", a.Addr, st.Family)
		}
	case Chain:
		if err := CheckChainName(a.Chain); err != nil {
			return bad("%v", err)
		}
	default:
		return bad("unknown action")
	}
	if len(st.LogLimit) > MaxLogPrefix {
		return bad("loglimit %q is %d characters; iptables LOG prefixes hold at most %d", st.LogLimit, len(st.LogLimit), MaxLogPrefix)
	}
	return nil
}

// statementError is an invalid statement, named by where it was written.
type statementError struct {
	pos Pos
	msg string
}

func (e statementError) Error() string { return e.pos.String() + ": " + e.msg }
func (e statementError) Unwrap() error { return ErrInvalid }

// MaxLogPrefix is the longest iptables LOG prefix.
const MaxLogPrefix = 29

// CheckChainName accepts names of user chains xsyn may jump to: 1-28 characters without
// whitespace, not a builtin target, not one of xsyn's own chains.
func CheckChainName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("empty chain name")
	case len(name) > 28:
		return fmt.Errorf("chain %q is longer than iptables' 28 characters", name)
	case strings.ContainsAny(name, " \t\n'\"!"):
		return fmt.Errorf("chain %q holds whitespace, a quote or '!'", name)
	case strings.HasPrefix(name, "XSYN-"):
		return fmt.Errorf("chain %q is one of xsyn's own", name)
	case name == "ACCEPT" || name == "DROP" || name == "REJECT" || name == "RETURN" || name == "LOG" ||
		strings.HasPrefix(name, "-"):
		return fmt.Errorf("%q is not a user chain; use accept, drop or reject", name)
	}
	return nil
}

func (o TCPOptions) String() string {
	s := fmt.Sprintf("mss %d wscale %d", o.MSS, o.WScale)
	for _, f := range []struct {
		on   bool
		name string
	}{{o.SACK, "sack"}, {o.Timestamps, "timestamps"}, {o.ECN, "ecn"}} {
		if f.on {
			s += " " + f.name
		} else if f.name != "ecn" {
			s += " no" + f.name
		}
	}
	return s
}
