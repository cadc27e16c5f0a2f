package rules

import (
	"errors"
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

func TestApplyFresh(t *testing.T) {
	ns := newFakeNS().withForeign()
	before := ns.state()
	a := ns.applier()
	p := mustBuild(t, "eth0", dualSimple)
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
		for _, j := range fp.Jumps {
			if first := ns.tables[fp.Family][j.Table][j.From].rules[0]; !slices.Equal(first, j.Args()) {
				t.Errorf("%s %s first rule = %q, want the jump %q", fp.Family, j.From, first, j.Args())
			}
		}
	}
	wantSys := map[string]string{"net.netfilter.nf_conntrack_tcp_loose": "0", "net.ipv4.tcp_syncookies": "1"}
	if !reflect.DeepEqual(ns.sysctls, wantSys) {
		t.Errorf("sysctls = %v, want %v", ns.sysctls, wantSys)
	}
	wantSaved := [][]string{
		savedArgs("net.netfilter.nf_conntrack_tcp_loose", "1"),
		savedArgs("net.ipv4.tcp_syncookies", "2"),
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
// new plan, including dropping a family the new spec no longer has.
func TestApplyReplaces(t *testing.T) {
	cases := []struct {
		name     string
		old, new spec.Simple
	}{
		{"new mss", dualSimple, spec.Simple{Ports: []uint16{80, 443}, MSS: 1400, WScale: -1}},
		{"fewer families", dualSimple, v4Simple},
		{"more families", v4Simple, dualSimple},
		{"other ports", dualSimple, spec.Simple{Ports: []uint16{22}, ECN: true, WScale: -1}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fresh := newFakeNS().withForeign()
			mustApply(t, fresh.applier(), mustBuild(t, "eth0", c.new))

			ns := newFakeNS().withForeign()
			a := ns.applier()
			mustApply(t, a, mustBuild(t, "eth0", c.old))
			mustApply(t, a, mustBuild(t, "eth0", c.new))
			diffState(t, "re-apply", ns.state(), fresh.state())
		})
	}
}

// TestApplyKeepsOldRulesUntilNewAreIn watches every single change of a re-apply: at each moment
// each port of each family must be reachable from INPUT and PREROUTING through complete chains
// only (old or new), and no chain that is jumped to may be half built.
func TestApplyKeepsOldRulesUntilNewAreIn(t *testing.T) {
	ns := newFakeNS().withForeign()
	a := ns.applier()
	mustApply(t, a, mustBuild(t, "eth0", dualSimple))
	newSimple := dualSimple
	newSimple.MSS = 1400
	p := mustBuild(t, "eth0", newSimple)

	changes := 0
	ns.afterChange = func(op string) {
		changes++
		for _, f := range families {
			for _, k := range chainKinds {
				checkProtected(t, ns, f, k, dualSimple.Ports, op)
			}
		}
	}
	mustApply(t, a, p)
	ns.afterChange = nil
	if changes < 8 {
		t.Fatalf("only %d changes observed; the test watches nothing", changes)
	}
	for _, f := range families {
		rules := ns.tables[f][TableFilter]["XSYN-IN-eth0"].rules
		for _, r := range rules {
			if slices.Contains(r, "SYNPROXY") && !slices.Contains(r, "1400") {
				t.Errorf("%s: old SYNPROXY rule left: %q", f, r)
			}
		}
		if got := ns.chainNames(f, TableFilter, "XSYN-NEW"); len(got) > 0 {
			t.Errorf("%s: staging chains left: %v", f, got)
		}
	}
}

func checkProtected(t *testing.T, ns *fakeNS, f spec.Family, k chainKind, ports []uint16, op string) {
	t.Helper()
	tab := ns.tables[f][k.table]
	var jumped []string
	for _, r := range tab[k.hook].rules {
		if len(r) == 2 && r[0] == "-j" && strings.HasPrefix(r[1], ChainPrefix) && r[1] != "XSYN-LOG" {
			jumped = append(jumped, r[1])
		}
	}
	if len(jumped) == 0 {
		t.Errorf("after %q: %s %s jumps to no xsyn chain: ports unprotected", op, f, k.hook)
	}
	// The new rules go in front: once jumped to, they are what packets meet.
	if i, j := slices.Index(jumped, k.stagingName("eth0")), slices.Index(jumped, k.name("eth0")); i >= 0 && j >= 0 && i > j {
		t.Errorf("after %q: %s %s jumps to the old chain before the new one: %v", op, f, k.hook, jumped)
	}
	for _, name := range jumped {
		rules := tab[name].rules
		for _, port := range ports {
			has := func(target string) bool {
				return slices.ContainsFunc(rules, func(r []string) bool {
					return slices.Contains(r, strconv.Itoa(int(port))) && slices.Contains(r, target)
				})
			}
			complete := has("CT")
			if k.table == TableFilter {
				complete = has("SYNPROXY") && has("DROP")
			}
			if !complete {
				t.Errorf("after %q: %s %s jumps to %s, which lacks port %d: %q", op, f, k.hook, name, port, rules)
			}
		}
	}
}

// TestApplyRollsBack fails each call of Apply in turn and checks the namespace is left exactly
// as it was before.
func TestApplyRollsBack(t *testing.T) {
	newMSS := dualSimple
	newMSS.MSS = 1400
	cases := []struct {
		name  string
		setup func(t *testing.T, a *Applier)
		iface string
		spec  spec.Simple
	}{
		{"fresh install", func(*testing.T, *Applier) {}, "eth0", dualSimple},
		{"re-apply new mss", func(t *testing.T, a *Applier) { mustApply(t, a, mustBuild(t, "eth0", dualSimple)) }, "eth0", newMSS},
		{"re-apply fewer families", func(t *testing.T, a *Applier) { mustApply(t, a, mustBuild(t, "eth0", dualSimple)) }, "eth0", v4Simple},
		{"second interface", func(t *testing.T, a *Applier) { mustApply(t, a, mustBuild(t, "eth0", dualSimple)) }, "eth1", v4Simple},
		{"re-apply below a foreign rule", func(t *testing.T, a *Applier) {
			mustApply(t, a, mustBuild(t, "eth0", dualSimple))
			insertForeignFirst(t, a)
		}, "eth0", newMSS},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := mustBuild(t, c.iface, c.spec)
			prepare := func() (*fakeNS, *Applier, fakeState) {
				ns := newFakeNS().withForeign()
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
				if !strings.HasPrefix(err.Error(), "apply rules for "+c.iface+": ") || strings.Contains(err.Error(), "rollback") {
					t.Errorf("call %d failing: error %q, want \"apply rules for %s: <step>: injected failure\"", n, err, c.iface)
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

// insertForeignFirst puts someone else's rule above xsyn's jumps, as an admin inserting a rule
// at the top of INPUT would.
func insertForeignFirst(t *testing.T, a *Applier) {
	t.Helper()
	for _, f := range families {
		for _, k := range chainKinds {
			if err := a.ipt[f].Insert(k.table, k.hook, 1, "-p", "udp", "-j", "ACCEPT"); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestApplyKeepsJumpPosition: re-applying leaves xsyn's jumps where they were among foreign rules.
func TestApplyKeepsJumpPosition(t *testing.T) {
	ns := newFakeNS().withForeign()
	a := ns.applier()
	mustApply(t, a, mustBuild(t, "eth0", dualSimple))
	insertForeignFirst(t, a)
	newMSS := dualSimple
	newMSS.MSS = 1400
	mustApply(t, a, mustBuild(t, "eth0", newMSS))
	for _, f := range families {
		for _, k := range chainKinds {
			rules := ns.tables[f][k.table][k.hook].rules
			if len(rules) < 2 || !slices.Equal(rules[1], []string{"-j", k.name("eth0")}) {
				t.Errorf("%s %s = %q, want the jump to %s second, below the foreign rule", f, k.hook, rules, k.name("eth0"))
			}
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

	// A previous Apply was killed after jumping to its staging chain.
	ns := newFakeNS()
	a := ns.applier()
	mustApply(t, a, p)
	for _, f := range families {
		filter := ns.tables[f][TableFilter]
		filter["XSYN-NEW-IN-eth0"] = &fakeChain{rules: [][]string{{"-j", "DROP"}}}
		filter["INPUT"].rules = slices.Insert(filter["INPUT"].rules, 0, []string{"-j", "XSYN-NEW-IN-eth0"})
	}
	if got := interfaces(t, a); !slices.Equal(got, []string{"eth0"}) {
		t.Errorf("Interfaces with a leftover = %v, want [eth0]", got)
	}
	mustApply(t, a, p)
	diffState(t, "apply over a leftover staging chain", ns.state(), fresh.state())
}

func TestApplyRejectsForeignPlan(t *testing.T) {
	cases := map[string]func(p *Plan){
		"builtin chain":    func(p *Plan) { p.Families[0].Chains[1].Name = "INPUT" },
		"foreign chain":    func(p *Plan) { p.Families[0].Chains[1].Name = "f2b-sshd" },
		"other interface":  func(p *Plan) { p.Families[0].Chains[1].Name = "XSYN-IN-eth1" },
		"staging name":     func(p *Plan) { p.Families[0].Chains[1].Name = "XSYN-NEW-IN-eth0" },
		"wrong table":      func(p *Plan) { p.Families[0].Chains[1].Table = "nat" },
		"jump from a user": func(p *Plan) { p.Families[0].Jumps[0].From = "OTHER" },
		"jump table":       func(p *Plan) { p.Families[0].Jumps[0].Table = "filter" },
		"jump position":    func(p *Plan) { p.Families[0].Jumps[0].Position = 0 },
		"bad sysctl":       func(p *Plan) { p.Sysctls[0].Key = "../../etc/passwd" },
		"no families":      func(p *Plan) { p.Families = nil },
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			p := mustBuild(t, "eth0", dualSimple)
			mutate(&p)
			ns := newFakeNS().withForeign()
			before := ns.state()
			err := ns.applier().Apply(p)
			if !errors.Is(err, ErrBadPlan) {
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
	ns := newFakeNS().withForeign()
	before := ns.state()
	a := ns.applier()
	mustApply(t, a, mustBuild(t, "eth0", dualSimple))
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
		ns := newFakeNS().withForeign()
		a := ns.applier()
		mustApply(t, a, mustBuild(t, "eth0", dualSimple))
		ns.calls = 0
		return ns, a
	}
	want := newFakeNS().withForeign().state()
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
