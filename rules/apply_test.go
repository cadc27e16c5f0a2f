package rules

import (
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/xsyn-project/xsyn/spec"
)

func diffState(t *testing.T, what string, got, want fakeState) {
	t.Helper()
	if reflect.DeepEqual(got, want) {
		return
	}
	t.Errorf("%s: state differs", what)
	for k := range want.Tables {
		if !slices.Equal(got.Tables[k], want.Tables[k]) {
			t.Errorf("  %s:\n    got  %q\n    want %q", k, got.Tables[k], want.Tables[k])
		}
	}
	if !reflect.DeepEqual(got.Sysctls, want.Sysctls) {
		t.Errorf("  sysctls: got %v, want %v", got.Sysctls, want.Sysctls)
	}
}

func mustApply(t *testing.T, a *Applier, p Plan) {
	t.Helper()
	if err := a.Apply(p); err != nil {
		t.Fatalf("apply %s: %v", p.Iface, err)
	}
}

func mustRemove(t *testing.T, a *Applier, iface string) {
	t.Helper()
	if err := a.Remove(iface); err != nil {
		t.Fatalf("remove %s: %v", iface, err)
	}
}

func interfaces(t *testing.T, a *Applier) []string {
	t.Helper()
	got, err := a.Interfaces()
	if err != nil {
		t.Fatalf("interfaces: %v", err)
	}
	return got
}

var (
	dualSimple = spec.Simple{Ports: []uint16{80, 443}, WScale: -1}
	v4Simple   = spec.Simple{Ports: []uint16{80, 443}, Dst: "192.0.2.0/24", WScale: -1}
)

// everyAction is a configuration with a statement of every kind of action and direction, for
// eth0 and eth1. It needs the user chain TRAP in both families and forwarding in IPv4.
const everyAction = `synproxy input inface eth0,eth1 dport 2222 redirect to 22
synproxy4 forward inface eth0,eth1 dst 203.0.113.10 dport 80 dnat to 10.0.0.5:8080
synproxy4 input inface eth0,eth1 dst 198.51.100.1 dport 443 dnat to 10.0.0.6
synproxy input inface eth0,eth1 dport 23 reject loglimit "xsyn telnet"
synproxy input inface eth0,eth1 dport 22 action TRAP
synproxy6 forward inface eth0,eth1 outface eth2 dst 2001:db8:1::/64 dport 443 accept
synproxy4 input inface eth0,eth1 dport 25 drop
`

// nsForEveryAction is a namespace everyAction can be applied in.
func nsForEveryAction() *fakeNS {
	ns := newFakeNS().withForeign().withChain(spec.IPv4, "TRAP").withChain(spec.IPv6, "TRAP")
	ns.sysctls["net.ipv4.ip_forward"] = "1"
	ns.sysctls["net.ipv6.conf.all.forwarding"] = "1"
	return ns
}

// hookRules returns the rules of the family's builtin chain from of table.
func hookRules(ns *fakeNS, f spec.Family, table, from string) []string {
	var out []string
	for _, r := range ns.tables[f][table][from].rules {
		out = append(out, joinArgs(r))
	}
	return out
}

func TestApplyFresh(t *testing.T) {
	ns := nsForEveryAction()
	before := ns.state()
	a := ns.applier()
	p := mustConfig(t, "eth0", everyAction)
	mustApply(t, a, p)

	for _, fp := range p.Families {
		for _, c := range fp.Chains {
			got := ns.tables[fp.Family][c.Table][c.Name]
			if got == nil || len(got.rules) != len(c.Rules) {
				t.Fatalf("%s %s/%s = %+v, want %d rules", fp.Family, c.Table, c.Name, got, len(c.Rules))
			}
			for i, r := range c.Rules {
				if !slices.Equal(got.rules[i], r.Args) {
					t.Errorf("%s %s rule %d = %q, want %q", fp.Family, c.Name, i, got.rules[i], r.Args)
				}
			}
		}
		// Each builtin chain starts with the plan's jumps to it, in plan order (the orphan
		// chain after the OUTPUT chain), and then has what it had.
		want := map[string][]string{}
		for _, j := range fp.Jumps {
			k := j.Table + "/" + j.From
			want[k] = append(want[k], joinArgs(j.Args()))
		}
		for k, jumps := range want {
			table, from, _ := strings.Cut(k, "/")
			beforeRules := before.Tables[fmt.Sprintf("%s %s", fp.Family, table)]
			var foreign []string
			for _, l := range beforeRules {
				if rest, ok := strings.CutPrefix(l, "-A "+from+" "); ok {
					foreign = append(foreign, rest)
				}
			}
			if got := hookRules(ns, fp.Family, table, from); !slices.Equal(got, append(jumps, foreign...)) {
				t.Errorf("%s %s = %q, want %q", fp.Family, k, got, append(jumps, foreign...))
			}
		}
	}
	wantSys := maps.Clone(before.Sysctls)
	wantSys["net.netfilter.nf_conntrack_tcp_loose"] = "0"
	wantSys["net.ipv4.tcp_syncookies"] = "1"
	wantSys["net.ipv4.conf.eth0.route_localnet"] = "1"
	if !reflect.DeepEqual(ns.sysctls, wantSys) {
		t.Errorf("sysctls = %v, want %v", ns.sysctls, wantSys)
	}
	wantSaved := [][]string{
		savedArgs("net.netfilter.nf_conntrack_tcp_loose", "1"),
		savedArgs("net.ipv4.tcp_syncookies", "2"),
		savedArgs("net.ipv4.conf.eth0.route_localnet", "0"),
	}
	if saved := ns.tables[spec.IPv4][TableFilter][SavedChain]; saved == nil || !reflect.DeepEqual(saved.rules, wantSaved) {
		t.Errorf("%s = %+v, want records %q", SavedChain, saved, wantSaved)
	}
	if ok, err := a.Installed("eth0"); !ok || err != nil {
		t.Errorf("Installed(eth0) = %v, %v", ok, err)
	}
	if ok, err := a.Installed("eth1"); ok || err != nil {
		t.Errorf("Installed(eth1) = %v, %v", ok, err)
	}
	if got := interfaces(t, a); !slices.Equal(got, []string{"eth0"}) {
		t.Errorf("Interfaces = %v", got)
	}

	// Idempotent: the same plan again changes nothing.
	after := ns.state()
	mustApply(t, a, p)
	diffState(t, "second apply of the same plan", ns.state(), after)

	mustRemove(t, a, "eth0")
	diffState(t, "after remove", ns.state(), before)
}

// TestApplyReplaces checks that re-applying ends in the same state as a fresh install of the
// new plan, including dropping a family or a chain kind the new spec no longer has.
func TestApplyReplaces(t *testing.T) {
	simple := func(s spec.Simple) func(*testing.T) Plan {
		return func(t *testing.T) Plan { return mustBuild(t, "eth0", s) }
	}
	config := func(src string) func(*testing.T) Plan {
		return func(t *testing.T) Plan { return mustConfig(t, "eth0", src) }
	}
	cases := []struct {
		name     string
		old, new func(*testing.T) Plan
	}{
		{"new mss", simple(dualSimple), simple(spec.Simple{Ports: []uint16{80, 443}, MSS: 1400, WScale: -1})},
		{"fewer families", simple(dualSimple), simple(v4Simple)},
		{"more families", simple(v4Simple), simple(dualSimple)},
		{"other ports", simple(dualSimple), simple(spec.Simple{Ports: []uint16{22}, ECN: true, WScale: -1})},
		{"every action", simple(dualSimple), config(everyAction)},
		{"no more forward chain", config(everyAction), simple(dualSimple)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fresh := nsForEveryAction()
			mustApply(t, fresh.applier(), c.new(t))

			ns := nsForEveryAction()
			a := ns.applier()
			mustApply(t, a, c.old(t))
			mustApply(t, a, c.new(t))
			// The namespace's sysctls stay set (and recorded) until the last interface goes,
			// the interface's own follow its plan (TestRouteLocalnetFollowsRedirect); compare
			// the rules.
			got, want := ns.state(), fresh.state()
			got.Sysctls, want.Sysctls = nil, nil
			for _, st := range []fakeState{got, want} {
				for k := range st.Tables {
					st.Tables[k] = slices.DeleteFunc(st.Tables[k], func(l string) bool { return strings.Contains(l, "route_localnet") })
				}
			}
			diffState(t, "re-apply", got, want)
		})
	}
}

// chainRulesOf returns the rules of the plan's chain of kind k in family f, and whether the
// plan has that chain.
func chainRulesOf(p Plan, f spec.Family, k chainKind) ([][]string, bool) {
	fp, ok := p.Family(f)
	if !ok {
		return nil, false
	}
	for _, c := range fp.Chains {
		if c.Name == k.name(p.Iface) {
			var rules [][]string
			for _, r := range c.Rules {
				rules = append(rules, r.Args)
			}
			return rules, true
		}
	}
	return nil, false
}

// checkServing checks, at one moment of a re-apply of iface from plan old to plan new, that
// every chain kind either plan has is jumped to, and only through complete chains: each chain
// of iface jumped to holds exactly the rules of the old or of the new plan.
func checkServing(t *testing.T, ns *fakeNS, old, new Plan, op string) {
	t.Helper()
	for _, f := range families {
		for _, k := range chainKinds {
			oldRules, inOld := chainRulesOf(old, f, k)
			newRules, inNew := chainRulesOf(new, f, k)
			if !inOld && !inNew {
				continue
			}
			tab := ns.tables[f][k.table]
			var jumped []string
			for _, r := range tab[k.hook].rules {
				if oc, ok := parseChain(r[len(r)-1]); ok && len(r) == 2 && oc.kind.tag == k.tag && oc.iface == new.Iface {
					jumped = append(jumped, r[1])
				}
			}
			if len(jumped) == 0 && inOld && inNew {
				t.Errorf("after %q: %s %s jumps to no %s chain of %s: its packets are unprotected", op, f, k.hook, k.tag, new.Iface)
			}
			// The new rules go in front: once jumped to, they are what packets meet.
			if i, j := slices.Index(jumped, k.stagingName(new.Iface)), slices.Index(jumped, k.name(new.Iface)); i >= 0 && j >= 0 && i > j {
				t.Errorf("after %q: %s %s jumps to the old chain before the new one: %v", op, f, k.hook, jumped)
			}
			for _, name := range jumped {
				got := unstaged(tab[name].rules)
				if !(inOld && reflect.DeepEqual(got, oldRules)) && !(inNew && reflect.DeepEqual(got, newRules)) {
					t.Errorf("after %q: %s %s jumps to %s, which holds neither the old nor the new rules: %q", op, f, k.hook, name, got)
				}
			}
		}
	}
}

// unstaged returns rules with jumps to staging chains sent to the chains' own names, as the
// plan has them.
func unstaged(rules [][]string) [][]string {
	var out [][]string
	for _, r := range rules {
		r = slices.Clone(r)
		if i := slices.Index(r, "-j"); i >= 0 && i+1 < len(r) {
			r[i+1] = strings.Replace(r[i+1], ChainPrefix+stagingTag, ChainPrefix, 1)
		}
		out = append(out, r)
	}
	return out
}

// TestApplyKeepsOldRulesUntilNewAreIn watches every single change of a re-apply: at each moment
// the interface's packets must pass complete chains only (old or new), no chain that is jumped
// to may be half built, and orphan chains stay behind every OUTPUT chain.
func TestApplyKeepsOldRulesUntilNewAreIn(t *testing.T) {
	for _, c := range []struct {
		name     string
		old, new string
	}{
		{"new mss", "synproxy input inface eth0 dport 80,443 accept", "synproxy input inface eth0 dport 80,443 mss 1400 accept"},
		{"every action", "synproxy input inface eth0 dport 80,443 accept", everyAction},
		{"back to accept", everyAction, "synproxy input inface eth0 dport 80,443 accept"},
		// Statements on the handoff path: their bypass chains come, and everything goes.
		{"both paths", "synproxy input inface eth0 dport 80,443 accept", mixedConf},
		{"handoff only", everyAction, handoffConf},
		{"negations", everyAction, negLines},
		{"other negations", negLines, strings.ReplaceAll(negLines, "10.0.0.0/8,", "")},
		{"no more negations", negLines, everyAction},
	} {
		t.Run(c.name, func(t *testing.T) {
			ns := nsForEveryAction()
			a := ns.applier()
			mustApply(t, a, mustConfig(t, "eth1", everyAction)) // another interface's chains around
			old, p := mustConfig(t, "eth0", c.old), mustConfig(t, "eth0", c.new)
			mustApply(t, a, old)

			changes := 0
			ns.afterChange = func(op string) {
				changes++
				checkServing(t, ns, old, p, op)
				checkOrphansLast(t, ns, op)
			}
			mustApply(t, a, p)
			ns.afterChange = nil
			if changes < 20 {
				t.Fatalf("only %d changes observed; the test watches nothing", changes)
			}
			checkServing(t, ns, p, p, "the end")
			for _, f := range families {
				for _, table := range []string{TableRaw, TableMangle, TableNat, TableFilter} {
					if got := ns.chainNames(f, table, "XSYN-NEW"); len(got) > 0 {
						t.Errorf("%s %s: staging chains left: %v", f, table, got)
					}
				}
			}
		})
	}
}

// checkOrphansLast checks that in filter OUTPUT every jump to an orphan chain comes after
// every jump to an OUTPUT chain of any interface.
func checkOrphansLast(t *testing.T, ns *fakeNS, when string) {
	t.Helper()
	for _, f := range families {
		lastOut, firstOrp := -1, -1
		var jumps []string
		for i, r := range ns.tables[f][TableFilter]["OUTPUT"].rules {
			oc, ok := parseChain(r[len(r)-1])
			if !ok || len(r) != 2 {
				continue
			}
			jumps = append(jumps, r[1])
			switch oc.kind.tag {
			case kindOut.tag:
				lastOut = i
			case kindOrphan.tag:
				if firstOrp < 0 {
					firstOrp = i
				}
			}
		}
		if firstOrp >= 0 && firstOrp < lastOut {
			t.Errorf("after %s: %s OUTPUT jumps to an orphan chain before an OUTPUT chain: %v", when, f, jumps)
		}
	}
}

// outputJumps lists the xsyn chains filter OUTPUT jumps to, in order.
func outputJumps(ns *fakeNS, f spec.Family) []string {
	var out []string
	for _, r := range ns.tables[f][TableFilter]["OUTPUT"].rules {
		if len(r) == 2 && strings.HasPrefix(r[1], ChainPrefix) {
			out = append(out, r[1])
		}
	}
	return out
}

// TestApplyOrphansAfterEveryOutput: the orphan chain of every interface drops what no
// statement of any interface claimed, so its jump must follow the OUTPUT chains of all of them,
// however interfaces come, are re-applied and go.
func TestApplyOrphansAfterEveryOutput(t *testing.T) {
	ns := nsForEveryAction()
	before := ns.state()
	a := ns.applier()
	ns.afterChange = func(op string) { checkOrphansLast(t, ns, op) }
	accept := func(iface string) Plan {
		return mustConfig(t, iface, "synproxy input inface "+iface+" dport 80 accept")
	}
	steps := []struct {
		what string
		do   func()
		want []string // OUTPUT jumps, both families
	}{
		{"apply eth0", func() { mustApply(t, a, accept("eth0")) },
			[]string{"XSYN-OUT-eth0", "XSYN-ORP-eth0"}},
		// The new orphan chain goes right after the last OUTPUT chain, before the others'.
		{"apply eth1", func() { mustApply(t, a, accept("eth1")) },
			[]string{"XSYN-OUT-eth1", "XSYN-OUT-eth0", "XSYN-ORP-eth1", "XSYN-ORP-eth0"}},
		{"re-apply eth0", func() { mustApply(t, a, mustConfig(t, "eth0", everyAction)) },
			[]string{"XSYN-OUT-eth1", "XSYN-OUT-eth0", "XSYN-ORP-eth1", "XSYN-ORP-eth0"}},
		{"apply eth2", func() { mustApply(t, a, accept("eth2")) },
			[]string{"XSYN-OUT-eth2", "XSYN-OUT-eth1", "XSYN-OUT-eth0", "XSYN-ORP-eth2", "XSYN-ORP-eth1", "XSYN-ORP-eth0"}},
		{"remove eth1", func() { mustRemove(t, a, "eth1") },
			[]string{"XSYN-OUT-eth2", "XSYN-OUT-eth0", "XSYN-ORP-eth2", "XSYN-ORP-eth0"}},
		{"re-apply eth2", func() { mustApply(t, a, mustConfig(t, "eth2", "synproxy input inface eth2 dport 81 accept")) },
			[]string{"XSYN-OUT-eth2", "XSYN-OUT-eth0", "XSYN-ORP-eth2", "XSYN-ORP-eth0"}},
		{"apply eth1 again", func() { mustApply(t, a, accept("eth1")) },
			[]string{"XSYN-OUT-eth1", "XSYN-OUT-eth2", "XSYN-OUT-eth0", "XSYN-ORP-eth1", "XSYN-ORP-eth2", "XSYN-ORP-eth0"}},
		{"remove eth0", func() { mustRemove(t, a, "eth0") },
			[]string{"XSYN-OUT-eth1", "XSYN-OUT-eth2", "XSYN-ORP-eth1", "XSYN-ORP-eth2"}},
	}
	for _, s := range steps {
		s.do()
		for _, f := range families {
			if got := outputJumps(ns, f); !slices.Equal(got, s.want) {
				t.Errorf("after %s: %s OUTPUT jumps to %v, want %v", s.what, f, got, s.want)
			}
			// Someone else's rule stays below xsyn's jumps.
			if got := hookRules(ns, f, TableFilter, "OUTPUT"); got[len(got)-1] != "-p udp -m udp --dport 53 -j ACCEPT" {
				t.Errorf("after %s: %s OUTPUT = %q, want the foreign rule last", s.what, f, got)
			}
		}
	}
	mustRemove(t, a, "eth1")
	mustRemove(t, a, "eth2")
	ns.afterChange = nil
	diffState(t, "after removing every interface", ns.state(), before)
}

// TestApplyRequires: a plan whose requirements the namespace does not meet is refused before
// anything changes, with a message that names the statement and how to meet it.
func TestApplyRequires(t *testing.T) {
	trap4 := "synproxy4 input inface eth0 dport 22 action TRAP"
	trap46 := "synproxy input inface eth0 dport 22 action TRAP"
	fwd4 := "synproxy4 forward inface eth0 dst 203.0.113.10 dport 80 accept"
	fwd6 := "synproxy6 forward inface eth0 dst 2001:db8::10 dport 80 accept"
	dnat := "synproxy4 input inface eth0 dst 198.51.100.1 dport 443 dnat to 10.0.0.6"
	cases := []struct {
		name  string
		conf  string
		setup func(ns *fakeNS)
		msg   []string
		fix   func(ns *fakeNS)
	}{
		{"missing user chain", "synproxy4 input inface eth0 dport 80 accept\n" + trap4, func(*fakeNS) {},
			[]string{`"` + trap4 + `": chain TRAP does not exist in the ipv4 filter table; create it first (iptables -N TRAP)`},
			func(ns *fakeNS) { ns.withChain(spec.IPv4, "TRAP") }},
		{"missing ipv6 user chain", trap46, func(ns *fakeNS) { ns.withChain(spec.IPv4, "TRAP") },
			[]string{`"` + trap46 + `": chain TRAP does not exist in the ipv6 filter table; create it first (ip6tables -N TRAP)`},
			func(ns *fakeNS) { ns.withChain(spec.IPv6, "TRAP") }},
		{"user chain in another table", trap4, func(ns *fakeNS) { ns.tables[spec.IPv4][TableRaw]["TRAP"] = &fakeChain{} },
			[]string{"chain TRAP does not exist in the ipv4 filter table"},
			func(ns *fakeNS) { ns.withChain(spec.IPv4, "TRAP") }},
		{"ip_forward 0", fwd4, func(*fakeNS) {},
			[]string{`"` + fwd4 + `": net.ipv4.ip_forward is 0, it must be 1`, "the server is behind this host", "(sysctl -w net.ipv4.ip_forward=1)"},
			func(ns *fakeNS) { ns.sysctls["net.ipv4.ip_forward"] = "1" }},
		{"ipv6 forwarding 0", fwd6, func(ns *fakeNS) { ns.sysctls["net.ipv4.ip_forward"] = "1" },
			[]string{`"` + fwd6 + `": net.ipv6.conf.all.forwarding is 0, it must be 1`, "(sysctl -w net.ipv6.conf.all.forwarding=1)"},
			func(ns *fakeNS) { ns.sysctls["net.ipv6.conf.all.forwarding"] = "1" }},
		{"dnat to a server behind", dnat, func(*fakeNS) {},
			[]string{`"` + dnat + `": net.ipv4.ip_forward is 0, it must be 1`},
			func(ns *fakeNS) { ns.sysctls["net.ipv4.ip_forward"] = "1" }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// eth1 is installed already: a refused eth0 must not touch it either, nor the
			// sysctls xsyn saved for it.
			ns := newFakeNS().withForeign()
			a := ns.applier()
			mustApply(t, a, mustBuild(t, "eth1", dualSimple))
			c.setup(ns)
			// And eth0 had rules before: they stay as they are.
			mustApply(t, a, mustConfig(t, "eth0", "synproxy4 input inface eth0 dport 8080 accept"))
			before := ns.state()
			p := mustConfig(t, "eth0", c.conf)

			ns.afterChange = func(op string) { t.Errorf("a refused plan changed the namespace: %s", op) }
			err := a.Apply(p)
			ns.afterChange = nil
			if !errors.Is(err, ErrPrecondition) {
				t.Fatalf("Apply = %v, want ErrPrecondition", err)
			}
			if !strings.HasPrefix(err.Error(), "apply rules for eth0: precondition not met: ") {
				t.Errorf("error %q does not start with \"apply rules for eth0: precondition not met: \"", err)
			}
			for _, m := range c.msg {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q does not say %q", err, m)
				}
			}
			diffState(t, "refused plan", ns.state(), before)

			c.fix(ns)
			mustApply(t, a, p)
		})
	}
}

// xsynLists is what iptables -S shows of every xsyn chain (but SavedChain) and of every
// builtin chain, by family and table.
func xsynLists(t *testing.T, a *Applier) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, f := range families {
		for table, builtins := range builtinChains {
			names, err := a.ipt[f].ListChains(table)
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range names {
				if n == SavedChain || !slices.Contains(builtins, n) && !strings.HasPrefix(n, ChainPrefix) {
					continue
				}
				lines, err := a.ipt[f].List(table, n)
				if err != nil {
					t.Fatal(err)
				}
				out[fmt.Sprintf("%s %s %s", f, table, n)] = lines
			}
		}
	}
	return out
}

func diffLists(t *testing.T, what string, got, want map[string][]string) {
	t.Helper()
	for _, k := range slices.Sorted(maps.Keys(want)) {
		if !slices.Equal(got[k], want[k]) {
			t.Errorf("%s: %s:\n  got  %q\n  want %q", what, k, got[k], want[k])
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("%s: %s is left: %q", what, k, got[k])
		}
	}
}

// TestSnapshotRoundTrip: the snapshot of an interface's rules, applied over other rules,
// gives back exactly what was installed.
func TestSnapshotRoundTrip(t *testing.T) {
	ns := nsForEveryAction()
	a := ns.applier()
	mustApply(t, a, mustBuild(t, "eth1", v4Simple))
	planA := mustConfig(t, "eth0", everyAction)
	planB := mustConfig(t, "eth0", `synproxy4 input inface eth0 dport 80 mss 1400 accept loglimit "it's \"B\""`)
	mustApply(t, a, planA)
	want := xsynLists(t, a)

	snap, ok, err := a.Snapshot("eth0")
	if err != nil || !ok {
		t.Fatalf("Snapshot(eth0) = %v, %v", ok, err)
	}
	// The sysctls the rules need, as Build planned them (REDIRECT's route_localnet included):
	// an empty plan applied in between may have restored them (TestEmptyPlanUndoneBySnapshot).
	if !reflect.DeepEqual(snap.Sysctls, planA.Sysctls) || len(snap.Requires) != 0 || snap.Iface != "eth0" {
		t.Errorf("snapshot has sysctls %v, requires %v, iface %s; want %v, none, eth0", snap.Sysctls, snap.Requires, snap.Iface, planA.Sysctls)
	}
	for _, fp := range snap.Families {
		for _, j := range fp.Jumps {
			if oc, _ := parseChain(j.To); oc.kind.after != j.After {
				t.Errorf("snapshot jump to %s follows %q, want %q", j.To, j.After, oc.kind.after)
			}
		}
	}
	if _, ok, err := a.Snapshot("eth2"); ok || err != nil {
		t.Errorf("Snapshot(eth2), never installed = %v, %v; want nothing", ok, err)
	}

	mustApply(t, a, planB)
	if got := xsynLists(t, a); reflect.DeepEqual(got, want) {
		t.Fatal("plan B installed the same rules as plan A; the test proves nothing")
	}
	mustApply(t, a, snap)
	diffLists(t, "plan A restored from its snapshot", xsynLists(t, a), want)

	// A snapshot restores after a Remove as well: the same chains, and the orphan chain's jump
	// after every OUTPUT chain (eth1's included).
	mustRemove(t, a, "eth0")
	mustApply(t, a, snap)
	got := xsynLists(t, a)
	for k, lines := range want {
		if strings.Contains(k, ChainPrefix) && !slices.Equal(got[k], lines) {
			t.Errorf("restored after remove: %s:\n  got  %q\n  want %q", k, got[k], lines)
		}
	}
	checkOrphansLast(t, ns, "restore after remove")
	again, _, err := a.Snapshot("eth0")
	if err != nil || !reflect.DeepEqual(again, snap) {
		t.Errorf("snapshot of the restored rules differs from the one restored (%v)", err)
	}
}

// TestApplyRollsBack fails each call of Apply in turn and checks the namespace is left exactly
// as it was before.
func TestApplyRollsBack(t *testing.T) {
	newMSS := dualSimple
	newMSS.MSS = 1400
	install := func(s spec.Simple) func(t *testing.T, a *Applier) {
		return func(t *testing.T, a *Applier) { mustApply(t, a, mustBuild(t, "eth0", s)) }
	}
	cases := []struct {
		name  string
		setup func(t *testing.T, a *Applier)
		plan  func(t *testing.T) Plan
	}{
		{"fresh install", func(*testing.T, *Applier) {}, func(t *testing.T) Plan { return mustBuild(t, "eth0", dualSimple) }},
		{"fresh install, every action", func(*testing.T, *Applier) {}, func(t *testing.T) Plan { return mustConfig(t, "eth0", everyAction) }},
		{"re-apply new mss", install(dualSimple), func(t *testing.T) Plan { return mustBuild(t, "eth0", newMSS) }},
		{"re-apply fewer families", install(dualSimple), func(t *testing.T) Plan { return mustBuild(t, "eth0", v4Simple) }},
		{"re-apply every action", install(dualSimple), func(t *testing.T) Plan { return mustConfig(t, "eth0", everyAction) }},
		{"second interface", install(dualSimple), func(t *testing.T) Plan { return mustConfig(t, "eth1", everyAction) }},
		{"re-apply below a foreign rule", func(t *testing.T, a *Applier) {
			install(dualSimple)(t, a)
			insertForeignFirst(t, a)
		}, func(t *testing.T) Plan { return mustBuild(t, "eth0", newMSS) }},
		// Negated lists: subchains come, are replaced under staging names, and go.
		{"fresh install, negations", func(*testing.T, *Applier) {}, func(t *testing.T) Plan { return mustConfig(t, "eth0", negLines) }},
		{"re-apply negations", func(t *testing.T, a *Applier) { mustApply(t, a, mustConfig(t, "eth0", negLines)) },
			func(t *testing.T) Plan { return mustConfig(t, "eth0", strings.ReplaceAll(negLines, "10.0.0.0/8,", "")) }},
		{"negations to none", func(t *testing.T, a *Applier) { mustApply(t, a, mustConfig(t, "eth0", negLines)) },
			func(t *testing.T) Plan { return mustBuild(t, "eth0", dualSimple) }},
		// An empty plan removes, and restores the sysctls with the last interface: undone too.
		{"empty plan, last interface", func(t *testing.T, a *Applier) { mustApply(t, a, mustConfig(t, "eth0", everyAction)) },
			func(t *testing.T) Plan { return handoffOnly(t, "eth0") }},
		{"empty plan, another interface stays", func(t *testing.T, a *Applier) {
			mustApply(t, a, mustBuild(t, "eth1", v4Simple))
			mustApply(t, a, mustConfig(t, "eth0", everyAction))
		}, func(t *testing.T) Plan { return handoffOnly(t, "eth0") }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := c.plan(t)
			prepare := func() (*fakeNS, *Applier, fakeState) {
				ns := nsForEveryAction()
				a := ns.applier()
				c.setup(t, a)
				ns.calls = 0
				return ns, a, ns.state()
			}
			ns, a, _ := prepare()
			mustApply(t, a, p)
			total := ns.calls
			want := ns.state()

			for n := 1; n <= total; n++ {
				ns, a, before := prepare()
				ns.failAt = n
				err := a.Apply(p)
				if !errors.Is(err, errInjected) {
					t.Fatalf("call %d/%d failing: Apply error = %v, want the injected failure", n, total, err)
				}
				if !strings.HasPrefix(err.Error(), "apply rules for "+p.Iface+": ") || strings.Contains(err.Error(), "rollback") {
					t.Errorf("call %d failing: error %q, want \"apply rules for %s: <step>: injected failure\"", n, err, p.Iface)
				}
				diffState(t, "after failing call "+strconv.Itoa(n)+" ("+err.Error()+")", ns.state(), before)

				// And the failure is not sticky: the next Apply succeeds.
				ns.failAt = 0
				mustApply(t, a, p)
				diffState(t, "retry after failing call "+strconv.Itoa(n), ns.state(), want)
			}
		})
	}
}

// insertForeignFirst puts someone else's rule above xsyn's jumps in every builtin chain xsyn
// jumps from, as an admin inserting a rule at the top of INPUT would.
func insertForeignFirst(t *testing.T, a *Applier) {
	t.Helper()
	for _, f := range families {
		done := map[string]bool{}
		for _, k := range chainKinds {
			if done[k.table+k.hook] {
				continue
			}
			done[k.table+k.hook] = true
			if err := a.ipt[f].Insert(k.table, k.hook, 1, "-p", "udp", "-j", "ACCEPT"); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestApplyKeepsJumpPosition: re-applying leaves xsyn's jumps where they were among foreign rules.
func TestApplyKeepsJumpPosition(t *testing.T) {
	ns := nsForEveryAction()
	a := ns.applier()
	mustApply(t, a, mustConfig(t, "eth0", everyAction))
	mustApply(t, a, mustConfig(t, "eth1", everyAction))
	insertForeignFirst(t, a)
	hooks := func() map[string][]string {
		out := map[string][]string{}
		for _, f := range families {
			for _, k := range chainKinds {
				out[fmt.Sprintf("%s %s %s", f, k.table, k.hook)] = hookRules(ns, f, k.table, k.hook)
			}
		}
		return out
	}
	before := hooks()
	mustApply(t, a, mustConfig(t, "eth0", strings.ReplaceAll(everyAction, "dport 25 drop", "dport 25 mss 1400 drop")))
	after := hooks()
	for k, want := range before {
		if !slices.Equal(after[k], want) {
			t.Errorf("%s after re-applying eth0 = %q, want it unchanged: %q", k, after[k], want)
		}
	}
}

func TestApplyReportsFailedRollback(t *testing.T) {
	ns := newFakeNS()
	a := ns.applier()
	p := mustBuild(t, "eth0", dualSimple)
	mustApply(t, a, p)
	ns.calls, ns.failAt, ns.failFrom = 0, 30, true
	newMSS := dualSimple
	newMSS.MSS = 1400
	err := a.Apply(mustBuild(t, "eth0", newMSS))
	if !errors.Is(err, errInjected) || !strings.Contains(err.Error(), "rollback incomplete: undo ") {
		t.Errorf("Apply with every call failing from the 30th = %v, want the failure and the failed undo steps", err)
	}
}

func TestApplyCleansLeftoverStaging(t *testing.T) {
	fresh := newFakeNS()
	p := mustBuild(t, "eth0", dualSimple)
	mustApply(t, fresh.applier(), p)

	// A previous Apply was killed after jumping to its staging chains.
	ns := newFakeNS()
	a := ns.applier()
	mustApply(t, a, p)
	for _, f := range families {
		filter, mangle := ns.tables[f][TableFilter], ns.tables[f][TableMangle]
		filter["XSYN-NEW-IN-eth0"] = &fakeChain{rules: [][]string{{"-j", "DROP"}}}
		filter["INPUT"].rules = slices.Insert(filter["INPUT"].rules, 0, []string{"-j", "XSYN-NEW-IN-eth0"})
		filter["XSYN-NEW-ORP-eth0"] = &fakeChain{rules: [][]string{{"-j", "DROP"}}}
		filter["OUTPUT"].rules = slices.Insert(filter["OUTPUT"].rules, 1, []string{"-j", "XSYN-NEW-ORP-eth0"})
		mangle["XSYN-NEW-MRK-eth0"] = &fakeChain{}
	}
	if got := interfaces(t, a); !slices.Equal(got, []string{"eth0"}) {
		t.Errorf("Interfaces with a leftover = %v, want [eth0]", got)
	}
	mustApply(t, a, p)
	diffState(t, "apply over a leftover staging chain", ns.state(), fresh.state())
}

func TestApplyRejectsForeignPlan(t *testing.T) {
	chain := func(p *Plan, name string) *Chain {
		for i, c := range p.Families[0].Chains {
			if c.Name == name {
				return &p.Families[0].Chains[i]
			}
		}
		panic("no chain " + name)
	}
	jump := func(p *Plan, to string) *Jump {
		for i, j := range p.Families[0].Jumps {
			if j.To == to {
				return &p.Families[0].Jumps[i]
			}
		}
		panic("no jump to " + to)
	}
	cases := map[string]func(p *Plan){
		"builtin chain":     func(p *Plan) { chain(p, "XSYN-MRK-eth0").Name = "OUTPUT" },
		"foreign chain":     func(p *Plan) { chain(p, "XSYN-IN-eth0").Name = "f2b-sshd" },
		"other interface":   func(p *Plan) { chain(p, "XSYN-IN-eth0").Name = "XSYN-IN-eth1" },
		"staging name":      func(p *Plan) { chain(p, "XSYN-IN-eth0").Name = "XSYN-NEW-IN-eth0" },
		"wrong table":       func(p *Plan) { chain(p, "XSYN-MRK-eth0").Table = "nat" },
		"planned twice":     func(p *Plan) { chain(p, "XSYN-ORP-eth0").Name = "XSYN-OUT-eth0" },
		"jump from a user":  func(p *Plan) { jump(p, "XSYN-RAW-eth0").From = "OTHER" },
		"jump table":        func(p *Plan) { jump(p, "XSYN-RAW-eth0").Table = "filter" },
		"jump position":     func(p *Plan) { jump(p, "XSYN-RAW-eth0").Position = 0 },
		"jump after":        func(p *Plan) { jump(p, "XSYN-ORP-eth0").After = "XYZ" },
		"jump to a foreign": func(p *Plan) { jump(p, "XSYN-IN-eth0").To = "f2b-sshd" },
		"bad sysctl":        func(p *Plan) { p.Sysctls[0].Key = "../../etc/passwd" },
		"sysctl outside":    func(p *Plan) { p.Sysctls[0].Key = "net.//.//.//.etc.passwd" },
		"no families":       func(p *Plan) { p.Families = nil },
		"bad family":        func(p *Plan) { p.Families[0].Family = 5 },
		"bad interface":     func(p *Plan) { p.Iface = "eth+" },
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			p := mustBuild(t, "eth0", dualSimple)
			mutate(&p)
			ns := newFakeNS().withForeign()
			before := ns.state()
			err := ns.applier().Apply(p)
			if !errors.Is(err, ErrBadPlan) && !errors.Is(err, ErrBadInterfaceName) {
				t.Errorf("Apply = %v, want ErrBadPlan", err)
			}
			if ns.calls != 0 {
				t.Errorf("a rejected plan made %d calls", ns.calls)
			}
			diffState(t, "rejected plan", ns.state(), before)
		})
	}
}

func TestRemoveLastInterfaceRestoresSysctls(t *testing.T) {
	ns := nsForEveryAction()
	before := ns.state()
	a := ns.applier()
	mustApply(t, a, mustConfig(t, "eth0", everyAction))
	mustApply(t, a, mustBuild(t, "eth1", v4Simple))
	if got := interfaces(t, a); !slices.Equal(got, []string{"eth0", "eth1"}) {
		t.Fatalf("Interfaces = %v", got)
	}

	mustRemove(t, a, "eth0")
	if got := interfaces(t, a); !slices.Equal(got, []string{"eth1"}) {
		t.Errorf("Interfaces after removing eth0 = %v", got)
	}
	if ns.sysctls["net.netfilter.nf_conntrack_tcp_loose"] != "0" || ns.sysctls["net.ipv4.tcp_syncookies"] != "1" {
		t.Errorf("sysctls restored while eth1 still needs them: %v", ns.sysctls)
	}
	if ns.tables[spec.IPv4][TableFilter][SavedChain] == nil {
		t.Errorf("%s deleted while eth1 is installed", SavedChain)
	}

	mustRemove(t, a, "eth1")
	diffState(t, "after removing the last interface", ns.state(), before)
	if got := interfaces(t, a); len(got) != 0 {
		t.Errorf("Interfaces after removing all = %v", got)
	}

	// Idempotent, also for interfaces never installed.
	mustRemove(t, a, "eth1")
	mustRemove(t, a, "wlan0")
	diffState(t, "after removing again", ns.state(), before)

	if err := a.Remove("eth+"); !errors.Is(err, ErrBadInterfaceName) {
		t.Errorf("Remove(eth+) = %v, want ErrBadInterfaceName", err)
	}
}

// TestRemoveRetriesAfterFailure fails each call of Remove in turn; a retry must then finish the
// job, whatever was left half done.
func TestRemoveRetriesAfterFailure(t *testing.T) {
	prepare := func() (*fakeNS, *Applier) {
		ns := nsForEveryAction()
		a := ns.applier()
		mustApply(t, a, mustConfig(t, "eth0", everyAction))
		ns.calls = 0
		return ns, a
	}
	want := nsForEveryAction().state()
	ns, a := prepare()
	mustRemove(t, a, "eth0")
	total := ns.calls
	diffState(t, "remove", ns.state(), want)

	for n := 1; n <= total; n++ {
		ns, a := prepare()
		ns.failAt = n
		err := a.Remove("eth0")
		if !errors.Is(err, errInjected) || !strings.HasPrefix(err.Error(), "remove rules for eth0: ") {
			t.Fatalf("call %d/%d failing: Remove = %v, want \"remove rules for eth0: ...\" wrapping the failure", n, total, err)
		}
		ns.failAt = 0
		mustRemove(t, a, "eth0")
		diffState(t, "retried remove after failing call "+strconv.Itoa(n), ns.state(), want)
	}
}

// A firewall reload that deletes the filter table takes SavedChain with it while the raw chains
// stay. Attaching again must not record xsyn's own settings as the originals: the kernel's
// defaults are recorded instead, and the last detach does not leave loose tracking off.
func TestLostSavedChainRecordsDefaults(t *testing.T) {
	ns := newFakeNS()
	a := ns.applier()
	mustApply(t, a, mustBuild(t, "eth0", dualSimple))
	for _, fam := range []spec.Family{spec.IPv4, spec.IPv6} { // the reload: filter is empty again
		for name, c := range ns.tables[fam][TableFilter] {
			if c.builtin {
				c.rules = nil
			} else {
				delete(ns.tables[fam][TableFilter], name)
			}
		}
	}
	mustApply(t, a, mustBuild(t, "eth0", dualSimple))
	saved, ok, err := a.readSaved()
	if err != nil || !ok {
		t.Fatalf("%s after attaching again: %v, %v", SavedChain, ok, err)
	}
	want := []savedSysctl{{"net.netfilter.nf_conntrack_tcp_loose", "1"}, {"net.ipv4.tcp_syncookies", "1"}}
	if !slices.Equal(saved, want) {
		t.Errorf("recorded %v, want the kernel's defaults %v (the current values are xsyn's)", saved, want)
	}
	mustRemove(t, a, "eth0")
	if got := ns.sysctls["net.netfilter.nf_conntrack_tcp_loose"]; got != "1" {
		t.Errorf("nf_conntrack_tcp_loose after the last detach: %s, want the default 1", got)
	}
}

func TestRemoveKeepsSavedSysctlsOnFailedRestore(t *testing.T) {
	ns := newFakeNS()
	a := ns.applier()
	mustApply(t, a, mustBuild(t, "eth0", dualSimple))
	delete(ns.sysctls, "net.ipv4.tcp_syncookies") // Set of it will fail
	err := a.Remove("eth0")
	if err == nil || !strings.Contains(err.Error(), "restore sysctl net.ipv4.tcp_syncookies=2") {
		t.Fatalf("Remove = %v, want the failed restore", err)
	}
	if ns.tables[spec.IPv4][TableFilter][SavedChain] == nil {
		t.Errorf("%s deleted although a value could not be restored", SavedChain)
	}
}
