package rules

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/xsyn-project/xsyn/spec"
)

// Negated lists, FireHOL's way. iptables negates one address, one port range or one multiport
// list per rule; "src not A,B,C" is none of these, and the complement of such a list is
// thousands of prefixes (one IPv4 statement gave 7,417 rules). Instead, a rule with a negated
// list jumps, by its positive matches, to a subchain of its own: there each negated item is
// "ITEM -j RETURN" (the packet goes back to the calling chain, where the statement does not
// apply), and the rule's target follows. O(n) rules for n items, and the per-packet cost is
// paid only by the packets the positive matches select.

// Limits on what one statement and one family's plan may render, so that a long list gives a
// clear error instead of a ruleset that takes minutes to install and slows every packet.
const (
	MaxStatementRules = 1000
	MaxPlanRules      = 10000
)

// ErrTooManyRules: a statement or a plan would render more rules than xsyn installs.
var ErrTooManyRules = errors.New("too many rules")

// Subchains of negations are named XSYN-<table letter><two base-36 digits>-<iface>: lower-case
// letters keep them apart from the per-interface kinds' tags, and the staging name still fits
// MaxChainName. Each table's subchains of a family's plan are numbered from 00.
const subDigits = "0123456789abcdefghijklmnopqrstuvwxyz"

var subLetters = map[string]byte{TableRaw: 'r', TableMangle: 'm', TableNat: 'n', TableFilter: 'f'}

// maxSubchains is how many subchains one table of one family's plan can name.
const maxSubchains = len(subDigits) * len(subDigits)

// subKind is the chainKind of a subchain tag, or false.
func subKind(tag string) (chainKind, bool) {
	if len(tag) != 3 || !strings.ContainsRune(subDigits, rune(tag[1])) || !strings.ContainsRune(subDigits, rune(tag[2])) {
		return chainKind{}, false
	}
	for table, l := range subLetters {
		if tag[0] == l {
			return chainKind{tag: tag, table: table, sub: true,
				why: "negated lists of one statement's rule: each excluded item returns, then the rule's target"}, true
		}
	}
	return chainKind{}, false
}

// subchain is one subchain being built.
type subchain struct {
	kind  chainKind
	rules []Rule
}

// addNeg adds rules to chain kind k, like add, for a rule whose statement has negated lists
// that iptables cannot say in one rule: neg are the matches of the excluded items. Without
// them it is add. With them, each rule jumps, by what it matches before its rate limit or
// target, to a subchain that returns for every item of neg and then applies the rate limit and
// target; rules with the same tail share the subchain.
func (b *chainBuilder) addNeg(k chainKind, origin, why string, neg [][]string, rules ...[]string) error {
	if len(neg) == 0 {
		b.add(k, origin, why, rules...)
		return nil
	}
	subs := map[string]string{} // tail -> subchain
	for _, r := range rules {
		split := slices.Index(r, "-j")
		for i := 0; i+1 < split; i++ {
			if r[i] == "-m" && r[i+1] == "limit" {
				split = i
				break
			}
		}
		head, tail := r[:split], r[split:]
		key := strings.Join(tail, "\x00")
		name, ok := subs[key]
		if !ok {
			n := b.nsub[k.table]
			if n >= maxSubchains {
				return fmt.Errorf("%w: more than %d rules with negated lists in the %s table", ErrTooManyRules, maxSubchains, k.table)
			}
			b.nsub[k.table]++
			sk, _ := subKind(string([]byte{subLetters[k.table], subDigits[n/len(subDigits)], subDigits[n%len(subDigits)]}))
			name = sk.name(b.iface)
			subs[key] = name
			sc := &subchain{kind: sk}
			for _, item := range neg {
				sc.rules = append(sc.rules, Rule{Origin: origin, Args: append(slices.Clone(item), "-j", "RETURN"),
					Why: "an item of the statement's negated list: the statement does not apply to it, back to " + k.name(b.iface)})
			}
			sc.rules = append(sc.rules, Rule{Origin: origin, Why: why, Args: append([]string{"-p", "tcp"}, tail...)})
			b.subs = append(b.subs, sc)
		}
		b.add(k, origin, why+" (its negated lists are checked in "+name+")", append(slices.Clone(head), "-j", name))
	}
	return nil
}

// addrMatch renders an address set as alternative matches, and the items of a negated list
// (empty otherwise): one alternative per prefix; a negated single prefix as "! -s P"; a
// negated list as no match here and "-s P" for each of its prefixes (of family f).
func addrMatch(flag string, s spec.AddrSet, f spec.Family) (alts, neg [][]string, err error) {
	if s.Any() {
		return [][]string{nil}, nil, nil
	}
	if !s.Not {
		for _, p := range s.Prefixes {
			alts = append(alts, []string{flag, p.String()})
		}
		return alts, nil, nil
	}
	if len(s.Positive(f)) == 0 {
		return nil, nil, fmt.Errorf("%w: %s %s matches no address", ErrUnsupported, flag, s)
	}
	items := ofFamily(s.Prefixes, f)
	switch len(items) {
	case 0:
		return [][]string{nil}, nil, nil
	case 1:
		return [][]string{{"!", flag, items[0].String()}}, nil, nil
	}
	for _, p := range items {
		neg = append(neg, []string{flag, p.String()})
	}
	return [][]string{nil}, neg, nil
}

func ofFamily(ps []netip.Prefix, f spec.Family) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range ps {
		if p.Addr().Is4() == (f == spec.IPv4) {
			out = append(out, p)
		}
	}
	return out
}

// portMatch renders a port set as alternative matches (see portAlternatives) and the items of
// a negated list that one negated multiport match cannot hold: each a "-p tcp" match of a
// chunk of the list.
func portMatch(flag, multiFlag string, s spec.PortSet) (alts, neg [][]string) {
	if !s.Not || len(s.Ranges) == 1 || weight(s.Ranges) <= maxMultiport {
		return portAlternatives(flag, multiFlag, s), nil
	}
	for _, item := range portAlternatives(flag, multiFlag, spec.PortSet{Ranges: s.Ranges}) {
		neg = append(neg, tcp([][]string{item}, anyPort, nil)...)
	}
	return anyPort, neg
}

// origDst matches the connection's original destination (before NAT) in conntrack, and gives
// the items of negated lists conntrack cannot negate in one match.
func origDst(d spec.AddrSet, ports spec.PortSet, f spec.Family) (alts, neg [][]string) {
	addr := func(p netip.Prefix) string {
		if p.IsSingleIP() {
			return p.Addr().String() // as iptables-save prints it
		}
		return p.String()
	}
	addrs := [][]string{nil}
	switch {
	case d.Any():
	case !d.Not:
		addrs = nil
		for _, p := range d.Prefixes {
			addrs = append(addrs, []string{"--ctorigdst", addr(p)})
		}
	default:
		items := ofFamily(d.Prefixes, f)
		if len(items) == 1 {
			addrs = [][]string{{"!", "--ctorigdst", addr(items[0])}}
		} else {
			for _, p := range items {
				neg = append(neg, []string{"-m", "conntrack", "--ctorigdst", addr(p)})
			}
		}
	}
	ps := [][]string{nil}
	switch {
	case ports.Any():
	case !ports.Not:
		ps = nil
		for _, r := range ports.Positive() {
			ps = append(ps, []string{"--ctorigdstport", portRange(r)})
		}
	default:
		rs := spec.PortSet{Ranges: ports.Ranges}.Positive() // sorted, merged
		if len(rs) == 1 {
			ps = [][]string{{"!", "--ctorigdstport", portRange(rs[0])}}
		} else {
			for _, r := range rs {
				neg = append(neg, []string{"-m", "conntrack", "--ctorigdstport", portRange(r)})
			}
		}
	}
	for _, a := range addrs {
		for _, p := range ps {
			args := append([]string{"-m", "conntrack", "--ctstate", "NEW"}, a...)
			alts = append(alts, append(args, p...))
		}
	}
	return alts, neg
}

// countRules is how many rules the builder holds, subchains included.
func (b *chainBuilder) countRules() int {
	n := 0
	for _, rs := range b.rules {
		n += len(rs)
	}
	for _, s := range b.subs {
		n += len(s.rules)
	}
	return n
}

// tooMany is the error of a statement that renders n rules.
func tooMany(st spec.Statement, n int) error {
	what := st.Origin()
	if len(what) > 120 {
		what = what[:117] + "..."
	}
	return fmt.Errorf("%w: %q renders %d iptables rules, more than the %d xsyn installs for one statement: "+
		"shorten its lists (a covering prefix for neighbouring addresses, a range for neighbouring ports) "+
		"or split them over several statements", ErrTooManyRules, what, n, MaxStatementRules)
}
