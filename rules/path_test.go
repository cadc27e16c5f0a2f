package rules

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/xsyn-project/xsyn/spec"
)

// handoffConf has only statements that take the socket handoff, in both families.
const handoffConf = `synproxy input inface eth0 dport 80,443 path handoff accept
synproxy6 input inface eth0 dst 2001:db8::10 dport 22 path handoff accept
`

// handoffOnly is the (empty) plan of iface for a spec whose statements all take the handoff.
func handoffOnly(t *testing.T, iface string) Plan {
	t.Helper()
	s := configSpec(t, "handoff.conf", iface, strings.ReplaceAll(handoffConf, "eth0", iface))
	if s.HasPath(spec.PathSynproxy) || !s.HasPath(spec.PathHandoff) {
		t.Fatalf("handoffConf does not take the handoff path alone: %+v", s.Statements)
	}
	p, err := Build(iface, s)
	if err != nil {
		t.Fatalf("build plan for %s: %v", iface, err)
	}
	return p
}

func TestBuildHandoffOnlyIsEmpty(t *testing.T) {
	flags, err := spec.Simple{Ports: []uint16{80}, WScale: -1, Via: spec.ViaHandoff}.Build() // attach --path handoff
	if err != nil {
		t.Fatal(err)
	}
	fromFlags, err := Build("eth0", flags)
	if err != nil {
		t.Fatal(err)
	}
	for name, p := range map[string]Plan{"config": handoffOnly(t, "eth0"), "flags": fromFlags} {
		if !p.Empty() || len(p.Families) != 0 || len(p.Sysctls) != 0 || len(p.Requires) != 0 || p.Iface != "eth0" {
			t.Errorf("%s: plan %+v; want an empty plan for eth0: no families, no sysctls, no requirements", name, p)
		}
		if err := p.check(); err != nil {
			t.Errorf("%s: the empty plan fails its own check: %v", name, err)
		}
		var b bytes.Buffer
		if err := p.Render(&b, spec.IPv4); err != nil || strings.Contains(b.String(), "*") || !strings.Contains(b.String(), "no statement takes the SYNPROXY path") {
			t.Errorf("%s: Render = %q, %v; want only a comment saying nothing is installed", name, b.String(), err)
		}
	}
	// An empty plan carries nothing: one that does is not Build's.
	bad := handoffOnly(t, "eth0")
	bad.Sysctls = append(bad.Sysctls, sysctls[0])
	if err := bad.check(); !errors.Is(err, ErrBadPlan) {
		t.Errorf("check of an empty plan with a sysctl = %v, want ErrBadPlan", err)
	}
}

// TestApplyEmptyPlan: applying an empty plan takes the interface's rules away, and with the
// last interface the sysctls come back, exactly as Remove does.
func TestApplyEmptyPlan(t *testing.T) {
	t.Run("last interface", func(t *testing.T) {
		ns := nsForEveryAction()
		before := ns.state()
		a := ns.applier()
		mustApply(t, a, mustConfig(t, "eth0", everyAction))
		mustApply(t, a, handoffOnly(t, "eth0"))
		diffState(t, "after the empty plan", ns.state(), before)
		if st := mustCheck(t, a, "eth0"); st.Installed() || len(st.Missing()) != 0 || len(st.Families) != 0 {
			t.Errorf("Check after the empty plan = %+v; want not installed, nothing missing", st)
		}
		if ok, err := a.Installed("eth0"); ok || err != nil {
			t.Errorf("Installed(eth0) = %v, %v; want false", ok, err)
		}
		// Again, and where nothing was: no change at all, not even an empty XSYN-SAVED.
		ns.afterChange = func(op string) { t.Errorf("an empty plan over nothing changed the namespace: %s", op) }
		mustApply(t, a, handoffOnly(t, "eth0"))
		mustApply(t, a, handoffOnly(t, "eth1"))
		ns.afterChange = nil
	})
	t.Run("another interface stays", func(t *testing.T) {
		ns := nsForEveryAction()
		a := ns.applier()
		mustApply(t, a, mustBuild(t, "eth1", v4Simple))
		eth1 := ownChains(xsynLists(t, a))
		mustApply(t, a, mustConfig(t, "eth0", everyAction))
		mustApply(t, a, handoffOnly(t, "eth0"))
		diffLists(t, "eth1's chains after eth0's empty plan", ownChains(xsynLists(t, a)), eth1)
		if ns.sysctls[tcpLoose] != "0" || ns.sysctls[syncookies] != "1" || ns.tables[spec.IPv4][TableFilter][SavedChain] == nil {
			t.Errorf("sysctls %v, %s %v: restored while eth1 still needs them", ns.sysctls, SavedChain, ns.tables[spec.IPv4][TableFilter][SavedChain])
		}
		if st := mustCheck(t, a, "eth1"); !st.Complete() {
			t.Errorf("eth1 after eth0's empty plan: %q missing", st.Missing())
		}
	})
}

// TestEmptyPlanUndoneBySnapshot is attach's undo (internal/protect): the snapshot taken before
// an empty plan was applied puts back the rules, the sysctls and their records.
func TestEmptyPlanUndoneBySnapshot(t *testing.T) {
	ns := nsForEveryAction()
	before := ns.state()
	a := ns.applier()
	mustApply(t, a, mustConfig(t, "eth0", everyAction+"synproxy input inface eth0 dport 8080 path handoff accept\n"))
	installed := ns.state()
	snap, ok, err := a.Snapshot("eth0")
	if err != nil || !ok {
		t.Fatalf("Snapshot = %v, %v", ok, err)
	}
	mustApply(t, a, handoffOnly(t, "eth0"))
	diffState(t, "after the empty plan", ns.state(), before)
	mustApply(t, a, snap)
	diffState(t, "after the snapshot", ns.state(), installed)

	if p, ok, err := a.Snapshot("eth2"); ok || err != nil || !p.Empty() {
		t.Errorf("Snapshot(eth2), never installed = %+v, %v, %v; want an empty plan", p, ok, err)
	}
}

// ExpectServices expects rules for the families of SYNPROXY services only.
func TestCheckExpectServices(t *testing.T) {
	a := newFakeNS().applier()
	none := mustCheck(t, a, "eth0")
	handoff := []spec.Service{{Family: spec.IPv4, Port: 80, Handoff: true}, {Family: spec.IPv6, Port: 80, Handoff: true}}
	if got := none.ExpectServices(handoff); len(got.Families) != 0 || len(got.Missing()) != 0 {
		t.Errorf("ExpectServices(handoff services) without rules = %+v; want nothing expected", got)
	}
	mixed := append(handoff, spec.Service{Family: spec.IPv6, Port: 22})
	got := none.ExpectServices(mixed)
	if len(got.Families) != 1 || got.Families[0].Family != spec.IPv6 || len(got.Missing()) != len(alwaysPlanned) {
		t.Errorf("ExpectServices(an ipv6 SYNPROXY service) without rules = %+v; want ipv6's chains missing", got)
	}
}
