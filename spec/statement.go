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

// LoopbackPolicy is how xsyn treats traffic on the loopback interface, as FireHOL's
// FIREHOL_TRUST_LOOPBACK.
type LoopbackPolicy int

// The loopback policies.
const (
	// LoopbackStrict accepts on lo only traffic between loopback addresses (and xsyn's own
	// marked packets), and drops packets for loopback addresses arriving on any other
	// interface. The only policy REDIRECT accepts.
	LoopbackStrict LoopbackPolicy = iota
	// LoopbackLoose accepts everything on lo.
	LoopbackLoose
	// LoopbackNone installs no loopback rules: the rest of the firewall decides.
	LoopbackNone
)

func (p LoopbackPolicy) String() string {
	switch p {
	case LoopbackLoose:
		return "loose"
	case LoopbackNone:
		return "none"
	}
	return "strict"
}

// ParseLoopback parses a loopback policy; FireHOL's "no" is "none".
func ParseLoopback(s string) (LoopbackPolicy, error) {
	switch s {
	case "strict":
		return LoopbackStrict, nil
	case "loose", "1", "yes":
		return LoopbackLoose, nil
	case "none", "no", "0":
		return LoopbackNone, nil
	}
	return 0, fmt.Errorf("%w: loopback policy %q: expected strict, loose or none", ErrInvalid, s)
}

// Settings are the namespace-wide choices of a configuration.
type Settings struct {
	// Mark and MarkMask are the packet mark bits xsyn sets on the SYN that SYNPROXY sends
	// towards the server, so that only those packets pass xsyn's isolation rules.
	Mark, MarkMask uint32
	Loopback       LoopbackPolicy
	// CookieSecretFile is the file of the handoff path's cookie secret (config
	// `cookie-secret-file`, flag --cookie-secret-file); "" for none. It is only named here:
	// attach reads it (ReadCookieKey) into Spec.CookieKey.
	CookieSecretFile string
}

// DefaultSettings: mark bit 0x20000000 (FireHOL's marks use the low bits), strict loopback.
func DefaultSettings() Settings {
	return Settings{Mark: 0x20000000, MarkMask: 0x20000000, Loopback: LoopbackStrict}
}

// MarkString is the mark as iptables writes it: 0x20000000/0x20000000.
func (s Settings) MarkString() string {
	return fmt.Sprintf("0x%x/0x%x", s.Mark, s.MarkMask)
}

// Validate checks the settings on their own.
func (s Settings) Validate() error {
	if s.MarkMask == 0 {
		return fmt.Errorf("%w: mark mask is 0; xsyn needs at least one mark bit of its own", ErrInvalid)
	}
	if s.Mark&^s.MarkMask != 0 || s.Mark == 0 {
		return fmt.Errorf("%w: mark 0x%x must be non-zero and inside its mask 0x%x", ErrInvalid, s.Mark, s.MarkMask)
	}
	return nil
}

// Compile checks the statements that apply to interface iface, and derives from them the XDP
// services: one per destination prefix and port of every statement the XDP program can answer
// (see XDPReason). Every service's TCP options come from its statement, and two statements
// whose destinations overlap must agree on them, so the SYN-ACK XDP sends and the SYNPROXY that
// completes the handshake always offer the same options.
func Compile(iface string, set Settings, stmts []Statement) (Spec, error) {
	if err := set.Validate(); err != nil {
		return Spec{}, err
	}
	if len(stmts) == 0 {
		return Spec{}, ErrNoServices
	}
	s := Spec{Settings: set, Statements: stmts}
	for i, st := range stmts {
		if !st.Match.Inface.Has(iface) {
			return Spec{}, statementError{st.Pos, "does not apply to interface " + iface}
		}
		if err := st.Validate(set); err != nil {
			return Spec{}, err
		}
		for _, prev := range stmts[:i] {
			if prev.Family == st.Family && (prev.Options != st.Options || prev.TTL != st.TTL) && prev.overlaps(st) {
				return Spec{}, statementError{st.Pos, fmt.Sprintf("matches destinations of %s with different TCP options or ttl "+
					"(%s ttl %d / %s ttl %d): a client would be offered one set in the SYN-ACK and proxied with the other; "+
					"give both the server's options", prev.Pos, prev.Options, prev.TTL, st.Options, st.TTL)}
			}
		}
	}
	for i := range s.Statements {
		if err := s.Statements[i].resolvePath(); err != nil {
			return Spec{}, err
		}
	}
	if err := s.followSynproxy(); err != nil {
		return Spec{}, err
	}
	if err := s.checkOnDemand(); err != nil {
		return Spec{}, err
	}
	seen := map[Service]int{} // the service's index, by family, destination, port and path
	for i := range s.Statements {
		st := &s.Statements[i]
		if st.XDPReason() != "" || st.xdpServices() > MaxServices {
			continue
		}
		// An input statement without a destination of its own means this host's addresses;
		// on a router, the XDP program must leave the others' SYNs to be forwarded.
		local := st.Direction == Input && (st.Match.Dst.Any() || st.Match.Dst.Not)
		for _, dst := range st.Match.Dst.Positive(st.Family) {
			for _, port := range st.Match.Dport.Ports() {
				svc := Service{Family: st.Family, Dst: dst, Port: port, Options: st.Options, TTL: st.TTL,
					Handoff: st.Path == PathHandoff, LocalOnly: local, OnDemand: st.OnDemand}
				k := svc
				k.Options, k.TTL, k.LocalOnly, k.OnDemand = TCPOptions{}, 0, false, 0
				if j, ok := seen[k]; ok {
					// An earlier statement answers it, with the same options; a forward
					// statement's destinations are answered wherever they are.
					s.Services[j].LocalOnly = s.Services[j].LocalOnly && local
					continue
				}
				seen[k] = len(s.Services)
				s.Services = append(s.Services, svc)
			}
		}
	}
	return s, s.Validate()
}

// xdpServices is how many XDP services the statement needs.
func (st Statement) xdpServices() int {
	n := 0
	for _, r := range st.Match.Dport.Positive() {
		n += int(r.Hi) - int(r.Lo) + 1
	}
	return n * len(st.Match.Dst.Positive(st.Family))
}

// XDP says whether the XDP program answers this statement's SYNs, and if not, why.
func (st Statement) XDP() (bool, string) {
	if r := st.XDPReason(); r != "" {
		return false, r
	}
	if n := st.xdpServices(); n > MaxServices {
		return false, fmt.Sprintf("it covers %d destination ports and prefixes; the XDP maps hold %d", n, MaxServices)
	}
	return true, ""
}

func (st Statement) overlaps(o Statement) bool {
	portsMeet := false
	for _, a := range st.Match.Dport.Positive() {
		for _, b := range o.Match.Dport.Positive() {
			if a.Lo <= b.Hi && b.Lo <= a.Hi {
				portsMeet = true
			}
		}
	}
	if !portsMeet {
		return false
	}
	for _, a := range st.Match.Dst.Positive(st.Family) {
		for _, b := range o.Match.Dst.Positive(o.Family) {
			if a.Overlaps(b) {
				return true
			}
		}
	}
	return false
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

// FromServices turns services into `input accept` statements, one per family, destination and
// options, with their ports in one list: the statements behind the flag form and zero-config
// attach, marked Implicit.
func FromServices(set Settings, iface string, svcs []Service) (Spec, error) {
	type group struct {
		fam      Family
		dst      netip.Prefix
		opts     TCPOptions
		ttl      uint8
		onDemand uint32
	}
	var order []group
	ports := map[group][]PortRange{}
	for _, svc := range svcs {
		g := group{svc.Family, svc.Dst, svc.Options, svc.TTL, svc.OnDemand}
		if _, ok := ports[g]; !ok {
			order = append(order, g)
		}
		ports[g] = append(ports[g], PortRange{svc.Port, svc.Port})
	}
	var stmts []Statement
	for _, g := range order {
		st := Statement{Family: g.fam, Direction: Input, Options: g.opts, TTL: g.ttl, Action: Action{Kind: Accept},
			OnDemand: g.onDemand}
		if g.dst.Bits() != 0 {
			st.Match.Dst.Prefixes = []netip.Prefix{g.dst}
		}
		st.Match.Dport.Ranges = ports[g]
		st.Text = st.String()
		st.Implicit = true
		stmts = append(stmts, st)
	}
	return Compile(iface, set, stmts)
}

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
