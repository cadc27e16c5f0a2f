package rules

import (
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/xsyn-project/xsyn/spec"
)

const (
	redirectConf   = "synproxy input inface eth0 dport 2222 redirect to 22\n"
	noRedirectConf = "synproxy input inface eth0 dport 80 accept\n"
	eth0Localnet   = "net.ipv4.conf.eth0.route_localnet"
)

// checkLoopbackDrop fails the test if eth0's route_localnet is 1 while no IPv4 raw PREROUTING
// jump of eth0 leads to the strict loopback drop: route_localnet lets packets for 127/8 in
// from the wire, and only that rule keeps them out.
func checkLoopbackDrop(t *testing.T, ns *fakeNS, when string) {
	t.Helper()
	if ns.sysctls[eth0Localnet] != "1" {
		return
	}
	raw := ns.tables[spec.IPv4][TableRaw]
	drop := []string{"-d", "127.0.0.0/8", "!", "-i", "lo", "-m", "comment", "--comment", "xsyn: loopback strict", "-j", "DROP"}
	for _, j := range raw["PREROUTING"].rules {
		if oc, ok := parseChain(j[len(j)-1]); ok && oc.iface == "eth0" && oc.kind.tag == kindRaw.tag &&
			slices.ContainsFunc(raw[j[len(j)-1]].rules, func(r []string) bool { return slices.Equal(r, drop) }) {
			return
		}
	}
	t.Errorf("after %s: eth0 route_localnet=1 without the strict loopback drop in raw PREROUTING", when)
}

// TestRouteLocalnetFollowsRedirect: route_localnet=1 lives as long as the interface's plan has
// a redirect, whatever other interfaces do: a plan without one, an empty plan and a remove put
// the original value back (and drop its record), and at no moment is it 1 without the strict
// loopback drop.
func TestRouteLocalnetFollowsRedirect(t *testing.T) {
	ns := newFakeNS()
	ns.sysctls["net.ipv4.ip_forward"] = "1"
	a := ns.applier()
	mustApply(t, a, mustBuild(t, "eth1", v4Simple)) // another interface stays throughout
	ns.afterChange = func(op string) { checkLoopbackDrop(t, ns, op) }
	none := "loopback none\n"
	steps := []struct {
		what string
		do   func() error
		want string
	}{
		{"redirect", func() error { return a.Apply(mustConfig(t, "eth0", redirectConf)) }, "1"},
		{"no more redirect", func() error { return a.Apply(mustConfig(t, "eth0", noRedirectConf)) }, "0"},
		{"redirect again", func() error { return a.Apply(mustConfig(t, "eth0", redirectConf)) }, "1"},
		// No loopback rules in the new plan: route_localnet goes back before the old drop goes.
		{"no redirect, no loopback rules", func() error { return a.Apply(mustConfig(t, "eth0", none+noRedirectConf)) }, "0"},
		{"redirect, then", func() error { return a.Apply(mustConfig(t, "eth0", redirectConf)) }, "1"},
		{"empty plan", func() error { return a.Apply(handoffOnly(t, "eth0")) }, "0"},
		{"redirect once more", func() error { return a.Apply(mustConfig(t, "eth0", redirectConf)) }, "1"},
		{"remove", func() error { return a.Remove("eth0") }, "0"},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			t.Fatalf("%s: %v", s.what, err)
		}
		if got := ns.sysctls[eth0Localnet]; got != s.want {
			t.Errorf("after %s: %s = %s, want %s", s.what, eth0Localnet, got, s.want)
		}
		_, recorded, err := a.Original(eth0Localnet)
		if err != nil || recorded != (s.want == "1") {
			t.Errorf("after %s: record of %s: %v, %v; want one exactly while xsyn's value is set", s.what, eth0Localnet, recorded, err)
		}
	}
	ns.afterChange = nil
	if ns.sysctls["net.netfilter.nf_conntrack_tcp_loose"] != "0" {
		t.Errorf("eth1 is still protected, but loose tracking is back: %v", ns.sysctls)
	}
}

// TestRouteLocalnetRollback fails each call of an Apply that drops eth0's redirect (and of an
// empty plan, which removes eth0's rules) in turn: route_localnet is 1 again after each
// failure, with its record and the loopback drop, and the retry restores it.
func TestRouteLocalnetRollback(t *testing.T) {
	for _, c := range []struct {
		name string
		plan func(t *testing.T) Plan
	}{
		{"plan without redirect", func(t *testing.T) Plan { return mustConfig(t, "eth0", noRedirectConf) }},
		{"empty plan", func(t *testing.T) Plan { return handoffOnly(t, "eth0") }},
	} {
		t.Run(c.name, func(t *testing.T) {
			prepare := func() (*fakeNS, *Applier, fakeState) {
				ns := newFakeNS()
				a := ns.applier()
				mustApply(t, a, mustBuild(t, "eth1", v4Simple))
				mustApply(t, a, mustConfig(t, "eth0", redirectConf))
				ns.calls = 0
				return ns, a, ns.state()
			}
			ns, a, _ := prepare()
			mustApply(t, a, c.plan(t))
			total := ns.calls
			for n := 1; n <= total; n++ {
				ns, a, before := prepare()
				ns.failAt = n
				ns.afterChange = func(op string) { checkLoopbackDrop(t, ns, op) }
				if err := a.Apply(c.plan(t)); !errors.Is(err, errInjected) {
					t.Fatalf("call %d/%d failing: Apply = %v, want the injected failure", n, total, err)
				}
				ns.afterChange = nil
				if got := ns.sysctls[eth0Localnet]; got != "1" {
					t.Errorf("call %d failing: %s = %s after the rollback, want 1 (the redirect is still there)", n, eth0Localnet, got)
				}
				diffState(t, "after failing call "+strconv.Itoa(n), ns.state(), before)
				ns.failAt = 0
				mustApply(t, a, c.plan(t))
				if got := ns.sysctls[eth0Localnet]; got != "0" {
					t.Errorf("retry after failing call %d: %s = %s, want 0", n, eth0Localnet, got)
				}
			}
		})
	}
}

// TestBuildRedirectNeedsStrictLoopback: route_localnet=1 is never planned without the strict
// loopback drop, even for a spec made without the config parser (spec.Validate refuses it).
func TestBuildRedirectNeedsStrictLoopback(t *testing.T) {
	s := configSpec(t, "r.conf", "eth0", redirectConf)
	s.Settings.Loopback = spec.LoopbackNone
	if _, err := Build("eth0", s); err == nil || !strings.Contains(err.Error(), "loopback strict") {
		t.Errorf("Build of a redirect with loopback none = %v, want it refused for want of loopback strict", err)
	}
}
