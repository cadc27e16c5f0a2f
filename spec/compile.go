package spec

import (
	"fmt"
	"net/netip"
)

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

// overlaps reports whether some destination address and port is in both statements.
func (st Statement) overlaps(o Statement) bool {
	return len(rangesMeet(st.Match.Dport.Positive(), o.Match.Dport.Positive())) > 0 &&
		len(prefixesMeet(st.Match.Dst.Positive(st.Family), o.Match.Dst.Positive(o.Family))) > 0
}

// FromServices turns services into `input accept` statements, one per family, destination and
// options, with their ports in one list: the statements behind zero-config attach, marked
// Implicit (Simple.Build makes the flag form's alike, one per family).
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
