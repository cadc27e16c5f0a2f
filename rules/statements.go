package rules

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"

	"github.com/xsyn-project/xsyn/spec"
)

// chainBuilder collects the rules of one family's chains in a fixed order of kinds.
type chainBuilder struct {
	iface string
	rules map[string][]Rule // by kind tag
	subs  []*subchain       // of negated lists (addNeg), in the order made
	nsub  map[string]int    // subchains made, by table
}

func (b *chainBuilder) add(k chainKind, origin, why string, args ...[]string) {
	for _, a := range args {
		b.rules[k.tag] = append(b.rules[k.tag], Rule{Origin: origin, Why: why, Args: a})
	}
}

// planFamily lays out the chains of one family: the SYNPROXY rules of the statements proxied,
// and the conntrack bypass of those handed off (see handoffRules). Build calls it only for a plan
// that has SYNPROXY statements, in this family or the other.
func planFamily(iface string, f spec.Family, set spec.Settings, proxied, handedOff []spec.Statement) (FamilyPlan, error) {
	b := &chainBuilder{iface: iface, rules: map[string][]Rule{}, nsub: map[string]int{}}
	if len(proxied) > 0 {
		loopbackRules(b, f, set)
	}
	for _, st := range proxied {
		n := b.countRules()
		if err := statementRules(b, iface, set, st); err != nil {
			return FamilyPlan{}, fmt.Errorf("%s: %w", st.Pos, err)
		}
		if n = b.countRules() - n; n > MaxStatementRules {
			return FamilyPlan{}, fmt.Errorf("%s: %w", st.Pos, tooMany(st, n))
		}
	}
	if len(proxied) > 0 {
		b.add(kindOrphan, "orphans", "log (rate-limited) a SYNPROXY SYN that no statement claimed",
			append(markedSYN(set), "-m", "limit", "--limit", "6/min", "-j", "LOG", "--log-prefix", "xsyn ORPHAN SYNPROXY->SERVER "))
		b.add(kindOrphan, "orphans", "and drop it: it escaped every statement",
			append(markedSYN(set), "-j", "DROP"))
	}
	for _, st := range handedOff {
		n := b.countRules()
		if err := handoffRules(b, iface, st); err != nil {
			return FamilyPlan{}, fmt.Errorf("%s: %w", st.Pos, err)
		}
		if n = b.countRules() - n; n > MaxStatementRules {
			return FamilyPlan{}, fmt.Errorf("%s: %w", st.Pos, tooMany(st, n))
		}
	}
	if n := b.countRules(); n > MaxPlanRules {
		return FamilyPlan{}, fmt.Errorf("%w: the %s statements render %d iptables rules for %s, more than the %d xsyn installs for one interface and family: "+
			"shorten their lists or merge statements", ErrTooManyRules, f, n, iface, MaxPlanRules)
	}

	// Subchains first: the rules that jump to them need them to exist. Nothing jumps to
	// them from a builtin chain.
	fp := FamilyPlan{Family: f}
	for _, sc := range b.subs {
		for i := range sc.rules {
			sc.rules[i].Args = withComment(sc.rules[i].Args, sc.rules[i].Origin)
		}
		fp.Chains = append(fp.Chains, Chain{Table: sc.kind.table, Name: sc.kind.name(iface), Why: sc.kind.why, Rules: sc.rules})
	}
	for _, k := range chainKinds {
		rules := b.rules[k.tag]
		if len(rules) == 0 {
			continue
		}
		for i := range rules {
			rules[i].Args = withComment(rules[i].Args, rules[i].Origin)
		}
		c := Chain{Table: k.table, Name: k.name(iface), Why: k.why, Rules: rules}
		fp.Chains = append(fp.Chains, c)
		fp.Jumps = append(fp.Jumps, Jump{Table: k.table, From: k.hook, To: c.Name, Position: 1, After: k.after})
	}
	return fp, nil
}

// withComment puts "xsyn: ORIGIN" in the rule as a comment match, before the target, where
// iptables-save prints it.
func withComment(args []string, origin string) []string {
	i := len(args)
	for j, a := range args {
		if a == "-j" {
			i = j
			break
		}
	}
	c := "xsyn: " + origin
	if len(c) > 255 {
		c = c[:252] + "..."
	}
	out := append([]string{}, args[:i]...)
	out = append(out, "-m", "comment", "--comment", c)
	return append(out, args[i:]...)
}

// loopbackAddr is the family's loopback prefix.
func loopbackAddr(f spec.Family) string {
	if f == spec.IPv6 {
		return "::1/128"
	}
	return "127.0.0.0/8"
}

// loopbackRules enforce the loopback policy and accept SYNPROXY's marked SYN when it comes back
// through lo to a server on this host, whatever the rest of INPUT says.
func loopbackRules(b *chainBuilder, f spec.Family, set spec.Settings) {
	origin := "loopback " + set.Loopback.String()
	lo := loopbackAddr(f)
	switch set.Loopback {
	case spec.LoopbackStrict:
		b.add(kindRaw, origin, "a packet for a loopback address that did not come from lo is an attack (route_localnet lets it in)",
			[]string{"-d", lo, "!", "-i", "lo", "-j", "DROP"})
		b.add(kindIn, origin, "trust lo only between loopback addresses",
			[]string{"-s", lo, "-d", lo, "-i", "lo", "-j", "ACCEPT"})
	case spec.LoopbackLoose:
		b.add(kindIn, origin, "trust everything on lo", []string{"-i", "lo", "-j", "ACCEPT"})
	}
	b.add(kindIn, "synproxy isolation", "SYNPROXY's marked SYN to a server on this host loops back through lo: its action was applied in OUTPUT; "+
		"only a SYN opening a connection, so no other packet carrying the mark bits rides this accept",
		append(append([]string{"-i", "lo"}, markedSYN(set)...), "-j", "ACCEPT"))
}

// markedSYN matches what the mark stands for: SYNPROXY's SYN to the server, a SYN that opens a
// new connection and carries xsyn's mark bits. Another packet with those bits (someone else's
// rule that uses them, a mark set by a local process with CAP_NET_ADMIN) matches no accept.
func markedSYN(set spec.Settings) []string {
	return []string{"-p", "tcp", "-m", "tcp", "--tcp-flags", "FIN,SYN,RST,ACK", "SYN",
		"-m", "mark", "--mark", set.MarkString(), "-m", "conntrack", "--ctstate", "NEW"}
}

// statementRules adds the rules of one statement to every chain kind it needs. A negated list
// that iptables cannot say in one rule is checked in a subchain (addNeg): its items are
// matched as each rule's packets carry them (the client's source is -s in the client's
// packets, -d in SYNPROXY's SYN-ACK to it).
func statementRules(b *chainBuilder, iface string, set spec.Settings, st spec.Statement) error {
	origin := st.Origin()
	f := st.Family
	m := st.Match
	src, srcNeg, err := addrMatch("-s", m.Src, f)
	if err != nil {
		return err
	}
	dst, dstNeg, err := addrMatch("-d", m.Dst, f)
	if err != nil {
		return err
	}
	out, err := ifaceAlternatives("-o", m.Outface)
	if err != nil {
		return err
	}
	sport, sportNeg := portMatch("--sport", "--sports", m.Sport)
	dport, dportNeg := portMatch("--dport", "--dports", m.Dport)
	in := []string{"-i", iface}
	client := slices.Concat(srcNeg, dstNeg, sportNeg, dportNeg) // what the client's packets must not be

	// Without dst, the statement's destinations are told by their kind: this host's own
	// addresses for SYNPROXY in INPUT alone, routed ones for SYNPROXY in FORWARD alone (see
	// local). Every rule that matches the client's destination says so.
	here := local(st)

	// The client's SYN, untracked before conntrack sees it. Outface is not known yet.
	syn := []string{"--tcp-flags", "FIN,SYN,RST,ACK", "SYN"}
	err = b.addNeg(kindRaw, origin, "the client's SYN skips conntrack: SYNPROXY (or XDP) answers it with a cookie", client,
		product(src, dst, [][]string{in}, tcp(sport, dport, append(syn, here...)), [][]string{{"-j", "CT", "--notrack"}})...)
	if err != nil {
		return err
	}

	// SYNPROXY where the client's packets pass: INPUT, FORWARD, or both.
	if st.Direction == spec.Input {
		out = [][]string{nil} // nothing is routed: no outface in any chain
	}
	for _, pk := range proxyKinds(st) {
		o := out
		if pk == kindIn {
			o = [][]string{nil} // -o is refused in INPUT
		}
		if err := proxyRules(b, pk, st, product(src, dst, [][]string{in}, o), sport, dport, client); err != nil {
			return err
		}
	}

	// SYNPROXY's SYN-ACK back to the client: the reverse of the match.
	rsrc, rsrcNeg, _ := addrMatch("-s", m.Dst, f)
	rdst, rdstNeg, _ := addrMatch("-d", m.Src, f)
	rsport, rsportNeg := portMatch("--sport", "--sports", m.Dport)
	rdport, rdportNeg := portMatch("--dport", "--dports", m.Sport)
	err = b.addNeg(kindOut, origin, "SYNPROXY's cookie SYN-ACK to the client (which conntrack sees as INVALID) leaves, whatever the rest of OUTPUT says",
		slices.Concat(rsrcNeg, rdstNeg, rsportNeg, rdportNeg),
		product(rsrc, rdst, tcp(rsport, rdport, []string{"--tcp-flags", "FIN,SYN,RST,ACK", "SYN,ACK"}),
			[][]string{{"-m", "conntrack", "--ctstate", "INVALID,UNTRACKED", "-j", "ACCEPT"}})...)
	if err != nil {
		return err
	}

	// The same SYN-ACK skips conntrack (kernel_faults.go).
	err = untrackSynack(b, origin, f, slices.Concat(rsrcNeg, rdstNeg, rsportNeg, rdportNeg),
		product(rsrc, rdst, tcp(rsport, rdport, []string{"--tcp-flags", "FIN,SYN,RST,ACK", "SYN,ACK"})))
	if err != nil {
		return err
	}

	if st.Action.Kind == spec.Reject {
		return nil // no connection to a server is ever opened
	}

	// SYNPROXY's own SYN to the server: no socket, NEW, the client's address, the original
	// destination. Mark it, NAT it, apply the action.
	mark := set.MarkString()
	err = b.addNeg(kindMark, origin, "mark SYNPROXY's SYN to the server (a SYN without a socket, for this statement's destination)", client,
		product(src, dst, out, tcp(sport, dport, append(syn, here...)),
			[][]string{{"-m", "owner", "!", "--socket-exists", "-m", "conntrack", "--ctstate", "NEW",
				"-j", "MARK", "--set-xmark", mark}})...)
	if err != nil {
		return err
	}
	if st.Options.Timestamps {
		// SYNPROXY's ACK to the server that follows, matched as its SYN (kernel_faults.go).
		err = stripServerACKTimestamp(b, origin, client,
			product(src, dst, out, tcp(sport, dport, append([]string{"--tcp-flags", "FIN,SYN,RST,PSH,ACK", "ACK"}, here...))))
		if err != nil {
			return err
		}
	}
	marked := append([]string{"-m", "mark", "--mark", mark}, here...)
	natWhy, natTarget := "SYNPROXY's marked SYN goes to the destination the client asked for, past every other NAT rule", []string{"-j", "ACCEPT"}
	switch st.Action.Kind {
	case spec.Redirect:
		natWhy = "REDIRECT after cookie validation: the cookie encodes the original port, so the SYN loops through lo to the local port"
		natTarget = []string{"-j", "REDIRECT", "--to-ports", strconv.Itoa(int(st.Action.Port))}
		if f == spec.IPv6 {
			// XXX: REDIRECT in nat OUTPUT sends IPv6 to ::1, and the server's answer from ::1
			// never leaves for the client (IPv6 has no route_localnet). Only the port changes
			// instead: the SYN keeps its destination, one of this host's addresses, so the
			// server must listen on that address, not on ::1 alone.
			natWhy = "redirect after cookie validation: the cookie encodes the original port; only the port changes, since IPv6 cannot answer a remote client from ::1"
			natTarget = []string{"-j", "DNAT", "--to-destination", ":" + strconv.Itoa(int(st.Action.Port))}
		}
	case spec.DNAT:
		natWhy = "DNAT after cookie validation: the cookie encodes the original destination, so only SYNPROXY's own SYN is translated"
		natTarget = []string{"-j", "DNAT", "--to-destination", st.Action.Target()}
	}
	if err := b.addNeg(kindNat, origin, natWhy, client, product(src, dst, out, tcp(sport, dport, marked), [][]string{natTarget})...); err != nil {
		return err
	}

	// The action, in filter OUTPUT, on the original destination (NAT has happened).
	odst, odstNeg := origDst(m.Dst, m.Dport, f)
	actionNeg := slices.Concat(srcNeg, sportNeg, odstNeg)
	tdst, tlocal := translatedLocal(st)
	match := product(src, [][]string{tdst}, out, tcp(sport, anyPort, []string{"-m", "mark", "--mark", mark}), odst, [][]string{tlocal})
	if st.LogLimit != "" {
		err := b.addNeg(kindOut, origin, "loglimit: log the connection SYNPROXY opens (rate-limited)", actionNeg,
			product(match, [][]string{{"-m", "limit", "--limit", "1/sec",
				"-j", "LOG", "--log-prefix", st.LogLimit + " "}})...)
		if err != nil {
			return err
		}
	}
	if err := b.addNeg(kindOut, origin, actionWhy(st.Action), actionNeg, product(match, [][]string{actionTarget(st.Action)})...); err != nil {
		return err
	}

	// Packets from the server to the client that conntrack does not know: drop them, in the
	// chain they pass (OUTPUT from a server on this host, FORWARD from one behind it).
	saddr, sport2, serverNeg := serverSide(st)
	replyKind := kindOut
	if !serverLocal(st) {
		replyKind = kindFwd
	}
	// As FireHOL's: only segments with ACK and without RST, which is what the server sends
	// when conntrack lost its connection (an ACK, data), and only to the client's side (-o
	// the interface), so that a statement without dst does not drop every INVALID packet
	// that merely comes from its port.
	return b.addNeg(replyKind, origin, "an INVALID packet from the server to the client is dropped, not leaked", serverNeg,
		product(saddr, [][]string{{"-o", iface}}, tcp(sport2, anyPort, []string{"--tcp-flags", "RST,ACK", "ACK"}),
			[][]string{{"-m", "conntrack", "--ctstate", "INVALID", "-j", "DROP"}})...)
}

// local is the addrtype match a statement without dst puts on the client's destination: this
// host's own addresses when SYNPROXY is in INPUT alone (an input statement: a router's
// forwarded SYNs are neither untracked nor proxied by it, and its NAT and action never claim
// another statement's connection to a routed destination), routed ones when it is in
// FORWARD alone. A statement with dst, or with SYNPROXY in both chains, matches both.
func local(st spec.Statement) []string {
	if !st.Match.Dst.Any() {
		return nil
	}
	kinds := proxyKinds(st)
	switch {
	case len(kinds) != 1:
		return nil
	case kinds[0] == kindIn:
		return []string{"-m", "addrtype", "--dst-type", "LOCAL"}
	}
	return []string{"-m", "addrtype", "!", "--dst-type", "LOCAL"}
}

// translatedLocal is local for the action in filter OUTPUT, which sees the destination after
// NAT: a DNAT to an address is matched by that address instead (-d, returned first), a
// redirect by this host's addresses (returned second, as local is).
//
// XXX: a forward statement with an outface that redirects (to this host) cannot be told from
// an input statement there: both end at a local address.
func translatedLocal(st spec.Statement) (dst, addrtype []string) {
	here := local(st)
	switch {
	case here == nil:
		return nil, nil
	case st.Action.Kind == spec.DNAT && st.Action.Addr.IsValid():
		return []string{"-d", netip.PrefixFrom(st.Action.Addr, st.Action.Addr.BitLen()).String()}, nil
	case st.Action.Kind == spec.Redirect:
		return nil, []string{"-m", "addrtype", "--dst-type", "LOCAL"}
	}
	return nil, here
}

// handoffRules take the flows of a statement on the handoff path out of conntrack, in both
// directions, on the interface: the client's packets in raw PREROUTING (XSYN-HFI), the server's
// in raw OUTPUT (XSYN-HFO), matched by the statement's destination and port.
//
// Why: the plan's SYNPROXY statements set nf_conntrack_tcp_loose=0 for the whole namespace. XDP
// answered the handed-off connection's SYN, so the first packet conntrack would see is the
// client's ACK, and without loose tracking conntrack calls it, and every packet after it,
// INVALID, which host firewalls (ufw, firewalld) drop. Untracked, the flow reaches the firewall
// as UNTRACKED instead, which it still matches by address and port; a firewall rule that accepts
// only --ctstate NEW must say NEW,UNTRACKED to let these connections in (docs/design.md). The
// handoff itself needs no conntrack: XDP and TC find the connection by a socket lookup.
//
// XXX: the server's packets are matched by the interface they leave by (-o): a reply routed out
// of another interface (asymmetric routing) is tracked, and INVALID. Without -o, the server's
// replies to clients on other interfaces, lo included, would be untracked while their requests
// are not, and conntrack would call those connections INVALID instead.
//
// XXX: Build sees one interface. When another interface's SYNPROXY statements turned loose
// tracking off, a handoff-only plan (which installs nothing) leaves its flows INVALID.
func handoffRules(b *chainBuilder, iface string, st spec.Statement) error {
	origin := st.Origin()
	f := st.Family
	dst, dstNeg, err := addrMatch("-d", st.Match.Dst, f)
	if err != nil {
		return err
	}
	src, srcNeg, _ := addrMatch("-s", st.Match.Dst, f)
	dport, dportNeg := portMatch("--dport", "--dports", st.Match.Dport)
	sport, sportNeg := portMatch("--sport", "--sports", st.Match.Dport)
	err = b.addNeg(kindHandoffIn, origin, "the client's packets of a handed-off connection skip conntrack, which would call them INVALID (no loose tracking)",
		slices.Concat(dstNeg, dportNeg),
		product(dst, [][]string{{"-i", iface}}, tcp(anyPort, dport, local(st)), [][]string{{"-j", "CT", "--notrack"}})...)
	if err != nil {
		return err
	}
	return b.addNeg(kindHandoffOut, origin, "the server's packets of a handed-off connection skip conntrack as well: the firewall sees the whole flow UNTRACKED",
		slices.Concat(srcNeg, sportNeg),
		product(src, [][]string{{"-o", iface}}, tcp(sport, anyPort, nil), [][]string{{"-j", "CT", "--notrack"}})...)
}

func actionTarget(a spec.Action) []string {
	switch a.Kind {
	case spec.Reject:
		return []string{"-j", "REJECT", "--reject-with", "tcp-reset"}
	case spec.Drop:
		return []string{"-j", "DROP"}
	case spec.Chain:
		return []string{"-j", a.Chain}
	}
	return []string{"-j", "ACCEPT"}
}

func actionWhy(a spec.Action) string {
	switch a.Kind {
	case spec.Reject:
		return "reject: the client proved it is real, and gets a reset instead of the server"
	case spec.Drop:
		return "drop: the client proved it is real, and its connection goes nowhere"
	case spec.Chain:
		return "hand SYNPROXY's SYN (a client that completed the handshake) to the user chain " + a.Chain
	case spec.Redirect, spec.DNAT:
		return "SYNPROXY's SYN, translated, goes on to the server"
	}
	return "SYNPROXY's SYN goes on to the server, past the rest of OUTPUT"
}

// serverLocal reports whether the real server is this host, so that its packets to the client
// pass OUTPUT rather than FORWARD.
func serverLocal(st spec.Statement) bool {
	switch st.Action.Kind {
	case spec.Redirect:
		return true
	case spec.DNAT:
		if st.Action.Addr.IsValid() {
			return false
		}
	}
	return st.Direction == spec.Input
}

// serverSide is the source address and port alternatives of the server's packets to the
// client, before conntrack undoes any NAT, and the items of their negated lists.
func serverSide(st spec.Statement) (addrs, ports, neg [][]string) {
	f := st.Family
	addrs, addrNeg, _ := addrMatch("-s", st.Match.Dst, f)
	ports, portNeg := portMatch("--sport", "--sports", st.Match.Dport)
	switch st.Action.Kind {
	case spec.Redirect:
		if f == spec.IPv4 { // IPv6 keeps the destination address: see statementRules
			addrs, addrNeg = [][]string{{"-s", "127.0.0.1/32"}}, nil
		}
		ports, portNeg = [][]string{{"--sport", strconv.Itoa(int(st.Action.Port))}}, nil
	case spec.DNAT:
		if st.Action.Addr.IsValid() {
			addrs, addrNeg = [][]string{{"-s", netip.PrefixFrom(st.Action.Addr, st.Action.Addr.BitLen()).String()}}, nil
		}
		if st.Action.Port != 0 {
			ports, portNeg = [][]string{{"--sport", strconv.Itoa(int(st.Action.Port))}}, nil
		}
	}
	return addrs, ports, slices.Concat(addrNeg, portNeg)
}
