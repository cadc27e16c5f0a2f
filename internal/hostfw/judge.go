package hostfw

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// SYN is the packet judged: a TCP SYN, conntrack state NEW, to port Port of one of the
// addresses in Dst, arriving on interface Iface, from any source address and port. It is what
// every client of a service sends first, as the firewall would see it without xsyn.
type SYN struct {
	Iface string
	Port  uint16
	// Dst are the destinations the service covers; one prefix of length 0 for every address.
	Dst []netip.Prefix
}

// Verdict is what the firewall does with the SYNs of every client.
type Verdict struct {
	// Open: every client's SYN is accepted (a rule accepts it, or the chain's policy).
	Open bool
	// Why names what refuses some client, or may: the rule as iptables-save prints it, the
	// chain's policy, or what xsyn cannot judge. Empty when Open.
	Why string
}

// match is how much of the SYNs a rule (or one of its options) matches.
type match int

const (
	matchNone match = iota // no SYN of the service
	matchSome              // some clients' SYNs, not others' (or xsyn cannot tell)
	matchAll               // every client's SYN
)

func and(a, b match) match { return min(a, b) }

// maxDepth bounds the jumps between user chains (iptables refuses loops; a bound keeps a
// malformed input from recursing forever).
const maxDepth = 32

// Judge walks the INPUT chain, and the user chains it jumps to, for the SYNs of q. xsyn's own
// chains (XSYN-*) are skipped: the question is what the firewall decides without them.
func (t *Table) Judge(q SYN) Verdict {
	if t.legacy {
		return Verdict{Why: "xsyn cannot judge the iptables-legacy tables loaded beside iptables-nft's (iptables-legacy-save shows them)"}
	}
	out := t.walk("INPUT", q, 0)
	switch {
	case out.refuse != "":
		return Verdict{Why: out.refuse}
	case !out.through:
		return Verdict{Open: true}
	}
	if p := t.chains["INPUT"].policy; p != "ACCEPT" {
		return Verdict{Why: fmt.Sprintf("the INPUT chain's policy %s (:INPUT %s), for the SYNs no rule accepts", p, p)}
	}
	return Verdict{Open: true}
}

// outcome is what a chain does with the SYNs that reach it: refuse names the first rule that
// refuses some of them ("" if none does), through says some leave the chain again (RETURN, or
// its end) for the caller to decide.
type outcome struct {
	refuse  string
	through bool
}

func (t *Table) walk(name string, q SYN, depth int) outcome {
	c := t.chains[name]
	if c == nil {
		return outcome{refuse: fmt.Sprintf("xsyn cannot judge a jump to chain %s, which the table does not have", name)}
	}
	if depth > maxDepth {
		return outcome{refuse: fmt.Sprintf("xsyn cannot judge chain %s: jumps nest deeper than %d", name, maxDepth)}
	}
	returned := false // some SYNs have left the chain already (RETURN, or a goto's end)
	for _, r := range c.rules {
		m, target, isGoto := r.judge(q)
		if m == matchNone || strings.HasPrefix(target, "XSYN-") {
			continue
		}
		switch kind := targetKind(target, t.chains); kind {
		case targetContinue:
		case targetAccept:
			if m == matchAll {
				return outcome{through: returned}
			}
		case targetRefuse:
			return outcome{refuse: r.text}
		case targetReturn:
			if m == matchAll {
				return outcome{through: true}
			}
			returned = true
		case targetChain:
			sub := t.walk(target, q, depth+1)
			if sub.refuse != "" {
				return sub
			}
			if isGoto && sub.through {
				returned = true // a goto's end returns from this chain
			}
			if m == matchAll && (isGoto || !sub.through) {
				return outcome{through: returned}
			}
		default:
			return outcome{refuse: fmt.Sprintf("xsyn cannot judge the target %s: %s", target, r.text)}
		}
	}
	return outcome{through: true}
}

type target int

const (
	targetContinue target = iota // the SYN goes on to the next rule
	targetAccept
	targetRefuse
	targetReturn
	targetChain
	targetUnknown
)

// nonTerminating are targets that change or log a packet and let it go on to the next rule.
var nonTerminating = []string{"", "LOG", "NFLOG", "ULOG", "MARK", "CONNMARK", "CT", "NOTRACK", "TRACE", "AUDIT",
	"CLASSIFY", "DSCP", "TOS", "TCPMSS", "SET", "SECMARK", "CONNSECMARK", "TEE", "RATEEST", "LED", "IDLETIMER",
	"CHECKSUM", "TTL", "HL", "HMARK", "NETMAP"}

func targetKind(name string, chains map[string]*chain) target {
	switch {
	case slices.Contains(nonTerminating, name):
		return targetContinue
	case name == "ACCEPT":
		return targetAccept
	case name == "DROP" || name == "REJECT" || name == "TARPIT":
		return targetRefuse
	case name == "RETURN":
		return targetReturn
	case chains[name] != nil && chains[name].policy == "-":
		return targetChain
	}
	return targetUnknown // QUEUE, NFQUEUE, SYNPROXY, ...: someone else decides
}

// judge says how much of q the rule matches, and its target (-j or -g, "" for none).
func (r rule) judge(q SYN) (m match, target string, isGoto bool) {
	m = matchAll
	not := false
	a := r.args
	for i := 0; i < len(a); i++ {
		opt := a[i]
		val := func() string {
			if i+1 < len(a) {
				i++
				return a[i]
			}
			return ""
		}
		if opt == "!" {
			not = true
			continue
		}
		neg := func(x match) match {
			if !not || x == matchSome {
				return x
			}
			return matchAll - x
		}
		switch opt {
		case "-j", "--jump":
			return m, val(), false
		case "-g", "--goto":
			return m, val(), true
		case "-m", "--match":
			if !slices.Contains(knownModules, val()) {
				m = and(m, matchSome) // a module xsyn does not know may tell clients apart
			}
		case "--comment", "-c":
			val()
			if opt == "-c" {
				val()
			}
		case "-p", "--protocol":
			m = and(m, neg(protocol(val())))
		case "-s", "--source", "--src-type", "--sport", "--source-port", "--sports", "--source-ports":
			m = and(m, neg(source(opt, val())))
		case "-d", "--destination":
			m = and(m, neg(destination(val(), q.Dst)))
		case "-i", "--in-interface":
			m = and(m, neg(bool2match(ifaceMatch(val(), q.Iface))))
		case "-o", "--out-interface":
			val()
			m = and(m, neg(matchNone)) // INPUT has no outgoing interface
		case "-f", "--fragment":
			m = and(m, neg(matchNone)) // a SYN is a first (or only) fragment
		case "--dport", "--destination-port", "--dports", "--destination-ports":
			m = and(m, neg(bool2match(portsHave(val(), q.Port))))
		case "--ports":
			if portsHave(val(), q.Port) {
				m = and(m, neg(matchAll))
			} else {
				m = and(m, matchSome) // the source port may be in the list
			}
		case "--syn":
			m = and(m, neg(matchAll))
		case "--tcp-flags":
			mask, comp := flags(val()), flags(val())
			m = and(m, neg(bool2match(flagSYN&mask == comp)))
		case "--ctstate", "--state":
			m = and(m, neg(bool2match(slices.Contains(strings.Split(val(), ","), "NEW"))))
		case "--dst-type":
			m = and(m, neg(bool2match(slices.Contains(strings.Split(val(), ","), "LOCAL"))))
		case "--pkt-type":
			m = and(m, neg(bool2match(val() == "unicast")))
		default:
			// An option xsyn does not know (a rate limit, a set, recent, a source match of a
			// module...): it may tell clients apart.
			m = and(m, matchSome)
		}
		not = false
	}
	return m, "", false
}

func bool2match(b bool) match {
	if b {
		return matchAll
	}
	return matchNone
}

func protocol(p string) match {
	switch strings.ToLower(p) {
	case "tcp", "6", "all", "0":
		return matchAll
	}
	return matchNone
}

// source judges a match on the client's address or port: it tells clients apart, unless it
// matches every one.
func source(opt, v string) match {
	switch opt {
	case "-s", "--source":
		if p, err := netip.ParsePrefix(v); err == nil && p.Bits() == 0 {
			return matchAll
		}
	case "--sport", "--source-port", "--sports", "--source-ports":
		if v == "0:65535" || v == "1:65535" || v == ":" {
			return matchAll
		}
	}
	return matchSome
}

// destination judges -d PREFIX against the service's destinations.
func destination(v string, dst []netip.Prefix) match {
	p, err := netip.ParsePrefix(v)
	if err != nil {
		a, aerr := netip.ParseAddr(v)
		if aerr != nil {
			return matchSome
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	all, any := true, false
	for _, d := range dst {
		if p.Bits() <= d.Bits() && p.Contains(d.Addr()) {
			any = true
			continue
		}
		all = false
		if p.Overlaps(d) {
			any = true
		}
	}
	switch {
	case all && any:
		return matchAll
	case any:
		return matchSome
	}
	return matchNone
}

// ifaceMatch is iptables' interface match: a name, or a prefix ending in "+".
func ifaceMatch(pattern, iface string) bool {
	if p, ok := strings.CutSuffix(pattern, "+"); ok {
		return strings.HasPrefix(iface, p)
	}
	return pattern == iface
}

// portsHave reports whether a port list ("22", "80,443", "8000:8010", ":1024") has port.
func portsHave(list string, port uint16) bool {
	for _, item := range strings.Split(list, ",") {
		lo, hi, isRange := strings.Cut(item, ":")
		if !isRange {
			hi = lo
		}
		l, h := 0, 65535
		if lo != "" {
			n, err := strconv.Atoi(lo)
			if err != nil {
				return true // unreadable: as if it matched (then a refusal is not missed)
			}
			l = n
		}
		if hi != "" {
			n, err := strconv.Atoi(hi)
			if err != nil {
				return true
			}
			h = n
		}
		if int(port) >= l && int(port) <= h {
			return true
		}
	}
	return false
}

// knownModules are the match modules whose options judge reads; with -p tcp, the options of
// another protocol's module never match.
var knownModules = []string{"tcp", "multiport", "conntrack", "state", "addrtype", "comment", "pkttype",
	"udp", "udplite", "icmp", "icmp6", "sctp", "dccp"}

const flagSYN = 0x02

// flags reads a --tcp-flags list ("SYN,RST,ACK,FIN", "ALL", "NONE").
func flags(list string) int {
	bits := map[string]int{"FIN": 0x01, "SYN": 0x02, "RST": 0x04, "PSH": 0x08, "ACK": 0x10, "URG": 0x20,
		"ECE": 0x40, "CWR": 0x80, "ALL": 0xff, "NONE": 0}
	out := 0
	for _, f := range strings.Split(list, ",") {
		out |= bits[strings.ToUpper(f)]
	}
	return out
}
