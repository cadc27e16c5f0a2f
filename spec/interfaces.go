package spec

import (
	"fmt"
	"net/netip"
	"slices"
)

// Statements of different interfaces meet on the SYNPROXY path's far side. SYNPROXY's own SYN to
// the server is marked in mangle OUTPUT, translated in nat OUTPUT and judged in filter OUTPUT,
// and none of those can match the interface the client came in on: every interface's
// XSYN-MRK/NAT/OUT chain sees every interface's SYNs, and the first that matches decides. Two
// interfaces whose statements cover one destination, port and client with different actions
// (or NAT) would each decide the other's connections: `in inface eth0 dst A dport 22 action
// SSH_ALLOW` beside `in inface eth1 dport 22 accept` lets a client of eth0 in without
// SSH_ALLOW whenever eth1's chains come first. Statements on the handoff path have no such
// rules, nor do reject statements (their client's ACK is reset in INPUT or FORWARD, and
// SYNPROXY opens nothing).

// OpensFromOutput reports whether the statement's connections are opened by SYNPROXY's own SYN,
// whose mark, NAT and action rules cannot tell interfaces apart.
func (st Statement) OpensFromOutput() bool {
	return st.Path == PathSynproxy && st.Action.Kind != Reject
}

// Interference finds a statement of mine and one of theirs (each in its interface's order,
// where the first that matches wins) that the other interface's rules would decide
// differently: same family, a destination, port and client both cover, different actions
// (including NAT targets), and neither covered in full by an earlier statement of its own
// interface. Only statements that OpensFromOutput count. ok is false when there is none.
func Interference(mine, theirs []Statement) (a, b Statement, ok bool) {
	mine, theirs = opening(mine), opening(theirs)
	for i, x := range mine {
		for j, y := range theirs {
			if x.Family != y.Family || x.Action == y.Action {
				continue
			}
			r, meet := intersect(x, y)
			if !meet || r.shadowed(mine[:i]) || r.shadowed(theirs[:j]) {
				continue
			}
			return x, y, true
		}
	}
	return Statement{}, Statement{}, false
}

func opening(stmts []Statement) []Statement {
	var out []Statement
	for _, st := range stmts {
		if st.OpensFromOutput() {
			out = append(out, st)
		}
	}
	return out
}

// region is the SYNs two statements both match: what each dimension of both allows.
type region struct {
	fam          Family
	src, dst     []netip.Prefix
	sport, dport []PortRange
}

func intersect(x, y Statement) (region, bool) {
	r := region{fam: x.Family,
		src:   prefixesMeet(x.Match.Src.Positive(x.Family), y.Match.Src.Positive(y.Family)),
		dst:   prefixesMeet(x.Match.Dst.Positive(x.Family), y.Match.Dst.Positive(y.Family)),
		sport: rangesMeet(x.Match.Sport.Positive(), y.Match.Sport.Positive()),
		dport: rangesMeet(x.Match.Dport.Positive(), y.Match.Dport.Positive()),
	}
	meet := len(r.src) > 0 && len(r.dst) > 0 && len(r.sport) > 0 && len(r.dport) > 0 &&
		namesMeet(x.Match.Outface, y.Match.Outface)
	return r, meet
}

// shadowed reports whether one of earlier matches every SYN of r, so that r never reaches the
// statement after them. (Several earlier statements that cover r only together are not seen:
// the pair is then reported, which errs on the side of refusing.)
func (r region) shadowed(earlier []Statement) bool {
	return slices.ContainsFunc(earlier, func(e Statement) bool {
		return e.Family == r.fam && e.Match.Outface.Any() &&
			prefixesCover(e.Match.Src.Positive(e.Family), r.src) && prefixesCover(e.Match.Dst.Positive(e.Family), r.dst) &&
			rangesCover(e.Match.Sport.Positive(), r.sport) && rangesCover(e.Match.Dport.Positive(), r.dport)
	})
}

// namesMeet reports whether some interface is in both sets.
func namesMeet(a, b NameSet) bool {
	switch {
	case a.Any() || b.Any() || a.Not && b.Not:
		return true
	case a.Not:
		a, b = b, a
	}
	// a lists names; b lists names or excludes them.
	return slices.ContainsFunc(a.Names, b.Has)
}

// InterferenceMessage says why statement a (of interface ai) and b (of bi) cannot both be
// installed, and what to do; where names a statement in it.
func InterferenceMessage(a Statement, ai string, b Statement, bi string, where func(Statement) string) string {
	return fmt.Sprintf("on %s it covers connections that %s covers on %s with another action (%s / %s): SYNPROXY's SYN to the server is marked, "+
		"translated and judged in OUTPUT, which cannot tell the interface a client came in on, so the chains of whichever interface come first "+
		"would decide for both; give both the same action, or make their destinations, ports or clients disjoint (dst, dport, src)",
		ai, where(b), bi, a.Action, b.Action)
}

// interfaceConflicts finds, for every two interfaces the configuration names, statements that
// would decide each other's connections (Interference); an error at the later line of each
// pair. Only statements that take the SYNPROXY path whatever the host are judged here (path
// synproxy, or an action or match the handoff cannot serve): attach judges the others once it
// knows their path, against the live chains of every interface. cols gives the column of a
// statement's first word, by line.
func (c Config) interfaceConflicts(cols map[int]int) []*ConfigError {
	ifaces := c.Interfaces()
	of := func(iface string) []Statement {
		var out []Statement
		for _, st := range c.Statements {
			if st.Match.Inface.Has(iface) && (st.Via == ViaSynproxy || st.HandoffReason() != "") {
				st.Path = PathSynproxy
				out = append(out, st)
			}
		}
		return out
	}
	type pair struct{ a, b int }
	seen := map[pair]bool{}
	var errs []*ConfigError
	for i, x := range ifaces {
		for _, y := range ifaces[i+1:] {
			a, b, ok := Interference(of(x), of(y))
			if !ok || seen[pair{a.Pos.Line, b.Pos.Line}] {
				continue
			}
			seen[pair{a.Pos.Line, b.Pos.Line}], seen[pair{b.Pos.Line, a.Pos.Line}] = true, true
			ai, bi := x, y
			if b.Pos.Line > a.Pos.Line {
				a, b, ai, bi = b, a, y, x
			}
			errs = append(errs, &ConfigError{File: a.Pos.File, Line: a.Pos.Line, Col: max(cols[a.Pos.Line], 1),
				Msg: InterferenceMessage(a, ai, b, bi, func(st Statement) string { return "line " + fmt.Sprint(st.Pos.Line) })})
		}
	}
	return errs
}
