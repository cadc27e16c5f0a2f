package rules

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/xsyn-project/xsyn/spec"
)

// anyPort is the port alternative that matches every port.
var anyPort = [][]string{nil}

// maxMultiport is how many ports one multiport match holds (a range counts twice).
const maxMultiport = 15

// chainBuilder collects the rules of one family's chains in a fixed order of kinds.
type chainBuilder struct {
	iface string
	rules map[string][]Rule // by kind tag
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
	b := &chainBuilder{iface: iface, rules: map[string][]Rule{}}
	if len(proxied) > 0 {
		loopbackRules(b, f, set)
	}
	for _, st := range proxied {
		if err := statementRules(b, iface, set, st); err != nil {
			return FamilyPlan{}, fmt.Errorf("%s: %w", st.Pos, err)
		}
	}
	if len(proxied) > 0 {
		mark := set.MarkString()
		b.add(kindOrphan, "orphans", "log (rate-limited) a SYNPROXY SYN that no statement claimed",
			[]string{"-p", "tcp", "-m", "tcp", "--tcp-flags", "FIN,SYN,RST,ACK", "SYN", "-m", "mark", "--mark", mark, "-m", "limit", "--limit", "6/min",
				"-j", "LOG", "--log-prefix", "xsyn ORPHAN SYNPROXY->SERVER "})
		b.add(kindOrphan, "orphans", "and drop it: it escaped every statement",
			[]string{"-p", "tcp", "-m", "tcp", "--tcp-flags", "FIN,SYN,RST,ACK", "SYN", "-m", "mark", "--mark", mark, "-j", "DROP"})
	}
	for _, st := range handedOff {
		if err := handoffRules(b, iface, st); err != nil {
			return FamilyPlan{}, fmt.Errorf("%s: %w", st.Pos, err)
		}
	}

	fp := FamilyPlan{Family: f}
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
	b.add(kindIn, "synproxy isolation", "SYNPROXY's marked SYN to a server on this host loops back through lo: its action was applied in OUTPUT",
		[]string{"-i", "lo", "-m", "mark", "--mark", set.MarkString(), "-j", "ACCEPT"})
}

// statementRules adds the rules of one statement to every chain kind it needs.
func statementRules(b *chainBuilder, iface string, set spec.Settings, st spec.Statement) error {
	origin := st.Origin()
	f := st.Family
	m := st.Match
	src, err := addrAlternatives("-s", m.Src, f)
	if err != nil {
		return err
	}
	dst, err := addrAlternatives("-d", m.Dst, f)
	if err != nil {
		return err
	}
	out, err := ifaceAlternatives("-o", m.Outface)
	if err != nil {
		return err
	}
	sport := portAlternatives("--sport", "--sports", m.Sport)
	dport := portAlternatives("--dport", "--dports", m.Dport)
	in := []string{"-i", iface}

	// The client's SYN, untracked before conntrack sees it. Outface is not known yet.
	syn := []string{"--tcp-flags", "FIN,SYN,RST,ACK", "SYN"}
	b.add(kindRaw, origin, "the client's SYN skips conntrack: SYNPROXY (or XDP) answers it with a cookie",
		product(src, dst, [][]string{in}, tcp(sport, dport, syn), [][]string{{"-j", "CT", "--notrack"}})...)

	// SYNPROXY where the client's packets pass: INPUT, FORWARD, or both.
	if st.Direction == spec.Input {
		out = [][]string{nil} // nothing is routed: no outface in any chain
	}
	for _, pk := range proxyKinds(st) {
		o := out
		if pk == kindIn {
			o = [][]string{nil} // -o is refused in INPUT
		}
		proxyRules(b, pk, st, product(src, dst, [][]string{in}, o), sport, dport)
	}

	// SYNPROXY's SYN-ACK back to the client: the reverse of the match.
	rsrc, _ := addrAlternatives("-s", m.Dst, f)
	rdst, _ := addrAlternatives("-d", m.Src, f)
	rsport := portAlternatives("--sport", "--sports", m.Dport)
	rdport := portAlternatives("--dport", "--dports", m.Sport)
	b.add(kindOut, origin, "SYNPROXY's cookie SYN-ACK to the client (which conntrack sees as INVALID) leaves, whatever the rest of OUTPUT says",
		product(rsrc, rdst, tcp(rsport, rdport, []string{"--tcp-flags", "FIN,SYN,RST,ACK", "SYN,ACK"}),
			[][]string{{"-m", "conntrack", "--ctstate", "INVALID,UNTRACKED", "-j", "ACCEPT"}})...)

	// The same SYN-ACK skips conntrack (kernel_faults.go).
	untrackSynack(b, origin, f, product(rsrc, rdst, tcp(rsport, rdport, []string{"--tcp-flags", "FIN,SYN,RST,ACK", "SYN,ACK"})))

	if st.Action.Kind == spec.Reject {
		return nil // no connection to a server is ever opened
	}

	// SYNPROXY's own SYN to the server: no socket, NEW, the client's address, the original
	// destination. Mark it, NAT it, apply the action.
	mark := set.MarkString()
	b.add(kindMark, origin, "mark SYNPROXY's SYN to the server (a SYN without a socket, for this statement's destination)",
		product(src, dst, out, tcp(sport, dport, syn),
			[][]string{{"-m", "owner", "!", "--socket-exists", "-m", "conntrack", "--ctstate", "NEW",
				"-j", "MARK", "--set-xmark", mark}})...)
	if st.Options.Timestamps {
		// SYNPROXY's ACK to the server that follows, matched as its SYN (kernel_faults.go).
		stripServerACKTimestamp(b, origin, product(src, dst, out, tcp(sport, dport, []string{"--tcp-flags", "FIN,SYN,RST,PSH,ACK", "ACK"})))
	}
	marked := []string{"-m", "mark", "--mark", mark}
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
	b.add(kindNat, origin, natWhy, product(src, dst, out, tcp(sport, dport, marked), [][]string{natTarget})...)

	// The action, in filter OUTPUT, on the original destination (NAT has happened).
	odst := origDst(m.Dst, m.Dport, f)
	match := product(src, out, tcp(sport, anyPort, marked), odst)
	if st.LogLimit != "" {
		b.add(kindOut, origin, "loglimit: log the connection SYNPROXY opens (rate-limited)",
			product(match, [][]string{{"-m", "limit", "--limit", "1/sec",
				"-j", "LOG", "--log-prefix", st.LogLimit + " "}})...)
	}
	b.add(kindOut, origin, actionWhy(st.Action), product(match, [][]string{actionTarget(st.Action)})...)

	// Packets from the server to the client that conntrack does not know: drop them, in the
	// chain they pass (OUTPUT from a server on this host, FORWARD from one behind it).
	saddr, sport2 := serverSide(st)
	replyKind := kindOut
	if !serverLocal(st) {
		replyKind = kindFwd
	}
	b.add(replyKind, origin, "an INVALID packet from the server to the client is dropped, not leaked",
		product(saddr, tcp(sport2, anyPort, nil), [][]string{{"-m", "conntrack", "--ctstate", "INVALID", "-j", "DROP"}})...)
	return nil
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
	dst, err := addrAlternatives("-d", st.Match.Dst, f)
	if err != nil {
		return err
	}
	src, _ := addrAlternatives("-s", st.Match.Dst, f)
	b.add(kindHandoffIn, origin, "the client's packets of a handed-off connection skip conntrack, which would call them INVALID (no loose tracking)",
		product(dst, [][]string{{"-i", iface}}, tcp(anyPort, portAlternatives("--dport", "--dports", st.Match.Dport), nil),
			[][]string{{"-j", "CT", "--notrack"}})...)
	b.add(kindHandoffOut, origin, "the server's packets of a handed-off connection skip conntrack as well: the firewall sees the whole flow UNTRACKED",
		product(src, [][]string{{"-o", iface}}, tcp(portAlternatives("--sport", "--sports", st.Match.Dport), anyPort, nil),
			[][]string{{"-j", "CT", "--notrack"}})...)
	return nil
}

// proxyKinds are the chains where SYNPROXY meets the client's packets. An input statement's
// client asks for one of this host's addresses: INPUT. A forward statement's packets are
// routed: FORWARD. But when a forward statement's action moves the connection elsewhere (dnat
// to, redirect to), the address the client asks for is only the front the server hides
// behind, and it may well be this host's own: FireHOL's "synproxy forward inface dsl0 dst
// YOUR_INTERNET_IP dport 80 dnat to ...". The client's packets then pass INPUT, so such a
// statement gets SYNPROXY in both chains and works whichever the address is. Everything
// after the handshake (mark, NAT, action, the server's INVALID packets) is on the OUTPUT
// path or matched by the server's address, the same either way.
//
// XXX: INPUT cannot match -o, and a packet for this host leaves by no interface, so a forward
// statement with an outface gets SYNPROXY in FORWARD only: it protects routed destinations
// alone (SYNPROXY's SYN to one of this host's addresses would not be marked either: mangle
// OUTPUT sees it leave by lo, not by the outface). Its SYNs to this host's addresses are still
// untracked in raw PREROUTING, which cannot match the outface, and then meet no SYNPROXY:
// those connections fail. docs/config.md tells users to leave outface out for them.
func proxyKinds(st spec.Statement) []chainKind {
	if st.Direction == spec.Input {
		return []chainKind{kindIn}
	}
	switch st.Action.Kind {
	case spec.DNAT, spec.Redirect:
		if st.Match.Outface.Any() {
			return []chainKind{kindFwd, kindIn}
		}
	}
	return []chainKind{kindFwd}
}

// ProxiesLocal reports whether the statement has SYNPROXY in INPUT, where the client's packets
// go when the address it asks for is one of this host's own (see proxyKinds).
func ProxiesLocal(st spec.Statement) bool {
	return slices.Contains(proxyKinds(st), kindIn)
}

// proxyRules add to chain kind k the rules that hand the client's packets of statement st to
// SYNPROXY; match is the address and interface part of the client's packets, before -p tcp.
func proxyRules(b *chainBuilder, k chainKind, st spec.Statement, match, sport, dport [][]string) {
	origin := st.Origin()
	why := func(s string) string {
		if k == kindIn && st.Direction == spec.Forward {
			return s + "; in INPUT as well as FORWARD: the address the client asks for, translated by the action, may be this host's own"
		}
		return s
	}
	if st.Action.Kind == spec.Reject {
		// A reset for SYNPROXY's SYN to the server would carry sequence number 0, outside the
		// window of the client's (already established) connection: the client would ignore it
		// and time out. So reject answers the client's ACK itself: the reset takes its sequence
		// number from the ACK and the client sees ECONNRESET. With XDP in front only ACKs with
		// a valid cookie get here; without it any ACK would, so the resets are rate-limited.
		b.add(k, origin, why("SYNPROXY answers the untracked SYN with a cookie SYN-ACK"),
			product(match, tcp(sport, dport, nil),
				[][]string{append([]string{"-m", "conntrack", "--ctstate", "UNTRACKED", "-j", "SYNPROXY"}, synproxyOptions(st.Options)...)})...)
		if st.LogLimit != "" {
			b.add(k, origin, why("loglimit: log the client that is rejected (rate-limited)"),
				product(match, tcp(sport, dport, []string{"--tcp-flags", "SYN,RST,ACK", "ACK"}),
					[][]string{{"-m", "conntrack", "--ctstate", "INVALID", "-m", "limit", "--limit", "1/sec",
						"-j", "LOG", "--log-prefix", st.LogLimit + " "}})...)
		}
		b.add(k, origin, why("reject: the client's ACK (its cookie checked by XDP when XDP is on) gets a reset it accepts; rate-limited, since without XDP forged ACKs get here too"),
			product(match, tcp(sport, dport, []string{"--tcp-flags", "SYN,RST,ACK", "ACK"}),
				[][]string{{"-m", "conntrack", "--ctstate", "INVALID", "-m", "limit", "--limit", "100/sec", "--limit-burst", "200",
					"-j", "REJECT", "--reject-with", "tcp-reset"}})...)
	} else {
		b.add(k, origin, why("SYNPROXY answers the untracked SYN with a cookie SYN-ACK, and validates the client's ACK (INVALID to conntrack)"),
			product(match, tcp(sport, dport, nil),
				[][]string{append([]string{"-m", "conntrack", "--ctstate", "INVALID,UNTRACKED", "-j", "SYNPROXY"}, synproxyOptions(st.Options)...)})...)
	}
	b.add(k, origin, why("any other packet of the service that conntrack does not know is dropped (forged ACKs, stray RSTs)"),
		product(match, tcp(sport, dport, nil),
			[][]string{{"-m", "conntrack", "--ctstate", "INVALID", "-j", "DROP"}})...)
}

func synproxyOptions(o spec.TCPOptions) []string {
	var args []string
	if o.SACK {
		args = append(args, "--sack-perm")
	}
	if o.Timestamps {
		args = append(args, "--timestamp")
	}
	args = append(args, "--wscale", strconv.Itoa(int(o.WScale)), "--mss", strconv.Itoa(int(o.MSS)))
	if o.ECN {
		args = append(args, "--ecn")
	}
	return args
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
// client, before conntrack undoes any NAT.
func serverSide(st spec.Statement) ([][]string, [][]string) {
	f := st.Family
	addrs, _ := addrAlternatives("-s", st.Match.Dst, f)
	ports := portAlternatives("--sport", "--sports", st.Match.Dport)
	switch st.Action.Kind {
	case spec.Redirect:
		if f == spec.IPv4 { // IPv6 keeps the destination address: see statementRules
			addrs = [][]string{{"-s", "127.0.0.1/32"}}
		}
		ports = [][]string{{"--sport", strconv.Itoa(int(st.Action.Port))}}
	case spec.DNAT:
		if st.Action.Addr.IsValid() {
			addrs = [][]string{{"-s", netip.PrefixFrom(st.Action.Addr, st.Action.Addr.BitLen()).String()}}
		}
		if st.Action.Port != 0 {
			ports = [][]string{{"--sport", strconv.Itoa(int(st.Action.Port))}}
		}
	}
	return addrs, ports
}

// origDst matches the connection's original destination (before NAT) in conntrack.
func origDst(d spec.AddrSet, ports spec.PortSet, f spec.Family) [][]string {
	var addrs [][]string
	if !d.Any() {
		for _, p := range d.Positive(f) {
			a := p.String()
			if p.IsSingleIP() {
				a = p.Addr().String() // as iptables-save prints it
			}
			addrs = append(addrs, []string{"--ctorigdst", a})
		}
	} else {
		addrs = [][]string{nil}
	}
	var ps [][]string
	if !ports.Any() {
		for _, r := range ports.Positive() {
			ps = append(ps, []string{"--ctorigdstport", portRange(r)})
		}
	} else {
		ps = [][]string{nil}
	}
	var out [][]string
	for _, a := range addrs {
		for _, p := range ps {
			args := []string{"-m", "conntrack", "--ctstate", "NEW"}
			args = append(args, a...)
			out = append(out, append(args, p...))
		}
	}
	return out
}

// addrAlternatives renders an address set as alternative matches: one per prefix, a negated
// single prefix as "! -s P", a negated list as the prefixes of its complement.
func addrAlternatives(flag string, s spec.AddrSet, f spec.Family) ([][]string, error) {
	switch {
	case s.Any():
		return [][]string{nil}, nil
	case s.Not && len(s.Prefixes) == 1:
		return [][]string{{"!", flag, s.Prefixes[0].String()}}, nil
	}
	var out [][]string
	for _, p := range s.Positive(f) {
		out = append(out, []string{flag, p.String()})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: %s %s matches no address", ErrUnsupported, flag, s)
	}
	return out, nil
}

func ifaceAlternatives(flag string, s spec.NameSet) ([][]string, error) {
	switch {
	case s.Any():
		return [][]string{nil}, nil
	case s.Not && len(s.Names) == 1:
		return [][]string{{"!", flag, s.Names[0]}}, nil
	case s.Not:
		return nil, fmt.Errorf("%w: %s not with several interfaces (%s); iptables negates one interface per rule", ErrUnsupported, flag, s)
	}
	var out [][]string
	for _, n := range s.Names {
		if err := checkIface(n); err != nil {
			return nil, err
		}
		out = append(out, []string{flag, n})
	}
	return out, nil
}

// portAlternatives renders a port set as alternative matches (to follow "-p tcp"): a single
// port or range with the tcp match, lists with multiport in chunks of what one match holds.
// Each alternative is marked by its first argument: "-m" for multiport, flag for tcp.
func portAlternatives(flag, multiFlag string, s spec.PortSet) [][]string {
	if s.Any() {
		return [][]string{nil}
	}
	if len(s.Ranges) == 1 {
		a := []string{flag, portRange(s.Ranges[0])}
		if s.Not {
			a = append([]string{"!"}, a...)
		}
		return [][]string{a}
	}
	ranges := s.Ranges
	not := s.Not
	if not && weight(ranges) > maxMultiport {
		ranges, not = s.Positive(), false
	}
	var out [][]string
	var chunk []string
	n := 0
	flush := func() {
		if len(chunk) == 0 {
			return
		}
		a := []string{"-m", "multiport"}
		if not {
			a = append(a, "!")
		}
		out = append(out, append(a, multiFlag, strings.Join(chunk, ",")))
		chunk, n = nil, 0
	}
	for _, r := range ranges {
		w := weight([]spec.PortRange{r})
		if n+w > maxMultiport {
			flush()
		}
		chunk = append(chunk, portRange(r))
		n += w
	}
	flush()
	return out
}

func weight(rs []spec.PortRange) int {
	n := 0
	for _, r := range rs {
		n++
		if r.Lo != r.Hi {
			n++
		}
	}
	return n
}

func portRange(r spec.PortRange) string {
	if r.Lo == r.Hi {
		return strconv.Itoa(int(r.Lo))
	}
	return fmt.Sprintf("%d:%d", r.Lo, r.Hi)
}

// tcp combines source and destination port alternatives behind "-p tcp": the tcp match's
// options (ports, flags) first, then multiport matches, then extra, the way iptables-save
// orders them.
func tcp(sport, dport [][]string, extra []string) [][]string {
	var flags []string
	if len(extra) >= 3 && extra[0] == "--tcp-flags" {
		flags, extra = extra[:3], extra[3:]
	}
	var out [][]string
	for _, s := range sport {
		for _, d := range dport {
			var tcpOpts, multi []string
			for _, alt := range [][]string{s, d} {
				if len(alt) > 0 && alt[0] == "-m" {
					multi = append(multi, alt...)
				} else {
					tcpOpts = append(tcpOpts, alt...)
				}
			}
			args := []string{"-p", "tcp"}
			if len(tcpOpts) > 0 || len(flags) > 0 {
				args = append(args, "-m", "tcp")
				args = append(args, tcpOpts...)
				args = append(args, flags...)
			}
			args = append(args, multi...)
			out = append(out, append(args, extra...))
		}
	}
	return out
}

// product concatenates one alternative of each group, for every combination, in order.
func product(groups ...[][]string) [][]string {
	out := [][]string{nil}
	for _, g := range groups {
		var next [][]string
		for _, prefix := range out {
			for _, alt := range g {
				r := append(append([]string{}, prefix...), alt...)
				next = append(next, r)
			}
		}
		out = next
	}
	return out
}

// familySysctls are the per-family settings the statements need.
func familySysctls(iface string, f spec.Family, stmts []spec.Statement) []SysctlSetting {
	if f != spec.IPv4 {
		return nil
	}
	for _, st := range stmts {
		if st.Action.Kind == spec.Redirect {
			return []SysctlSetting{routeLocalnet(iface)}
		}
	}
	return nil
}

// routeLocalnet is the setting IPv4 REDIRECT needs on the interface.
func routeLocalnet(iface string) SysctlSetting {
	return SysctlSetting{
		Key:   "net.ipv4.conf." + strings.ReplaceAll(iface, ".", "/") + ".route_localnet",
		Value: "1",
		Why: "REDIRECT sends SYNPROXY's SYN to 127.0.0.1; the server answers from 127.0.0.1 and the " +
			"route back to the client through " + iface + " needs route_localnet (the strict loopback policy drops what else it would let in)",
		Default: "0",
	}
}

// requirements are what the statements need and xsyn does not create.
func requirements(f spec.Family, stmts []spec.Statement) []Requirement {
	var out []Requirement
	forwarding := false
	for _, st := range stmts {
		if st.Action.Kind == spec.Chain {
			out = append(out, Requirement{Origin: st.Origin(), Family: f, Chain: st.Action.Chain,
				Why: "the statement's action jumps to it"})
		}
		if !serverLocal(st) && !forwarding {
			forwarding = true
			key := "net.ipv4.ip_forward"
			if f == spec.IPv6 {
				key = "net.ipv6.conf.all.forwarding"
			}
			out = append(out, Requirement{Origin: st.Origin(), Family: f, Sysctl: key, Value: "1",
				Why: "the server is behind this host: the client's and the server's packets are routed"})
		}
	}
	return out
}
