package protect

import (
	"errors"
	"slices"
	"testing"

	"github.com/xsyn-project/xsyn/loader"
	"github.com/xsyn-project/xsyn/rules"
	"github.com/xsyn-project/xsyn/spec"
)

// A firewall reload that takes part of xsyn's rules: status still finds the interface, in
// netfilter-only mode by its remaining rules alone, and says what is missing; attach again
// repairs it. With XDP in front, a family whose rules are gone altogether is missing as well:
// the program's services say that family is protected.
func TestStatusRulesMissing(t *testing.T) {
	h := server(t, "xsynst")
	// The SYNPROXY path: the handoff has no rules to go missing.
	s, err := spec.Simple{Ports: []uint16{8080}, WScale: -1, Via: spec.ViaSynproxy}.Build()
	if err != nil {
		t.Fatal(err)
	}
	var p *Protector
	if err := h.Do(func() error {
		a, err := rules.NewApplier()
		p = &Protector{Rules: a, Loader: loader.Options{Locks: t.TempDir()}}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // pins live in the host's bpffs: gone before the namespace
		if err := h.Do(func() error { return p.Remove("d0") }); err != nil && !errors.Is(err, ErrNotProtected) {
			t.Errorf("remove: %v", err)
		}
	})
	apply := func(mode loader.Mode) {
		t.Helper()
		if err := h.Do(func() error { _, err := p.Apply("d0", s, mode); return err }); err != nil {
			t.Fatalf("apply %s: %v", mode, err)
		}
	}
	status := func(want Status) {
		t.Helper()
		var sts []Status
		if err := h.Do(func() error { var err error; sts, err = p.Statuses(""); return err }); err != nil {
			t.Fatalf("statuses: %v", err)
		}
		if len(sts) != 1 {
			t.Fatalf("statuses: %+v, want d0 alone", sts)
		}
		got := sts[0]
		if got.Iface != "d0" || got.Mode != want.Mode || got.Rules != want.Rules || !slices.Equal(got.RulesMissing, want.RulesMissing) ||
			got.RulesComplete() != (want.Rules && len(want.RulesMissing) == 0) {
			t.Errorf("status: mode %s, rules %v, missing %q; want %s, %v, %q", got.Mode, got.Rules, got.RulesMissing, want.Mode, want.Rules, want.RulesMissing)
		}
	}
	sh := func(script string) {
		t.Helper()
		if out, err := h.Run("sh", "-c", script); err != nil {
			t.Fatalf("%s: %v\n%s", script, err, out)
		}
	}

	apply(ModeNetfilter)
	status(Status{Mode: ModeNetfilterOnly, Rules: true})
	sh(`printf '*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n' | iptables-restore`)
	status(Status{Mode: ModeNetfilterOnly, Rules: true, RulesMissing: []string{
		"ipv4 filter INPUT: chain XSYN-IN-d0 and the jump to it are gone",
		"ipv4 filter OUTPUT: chain XSYN-OUT-d0 and the jump to it are gone",
		"ipv4 filter OUTPUT: chain XSYN-ORP-d0 and the jump to it are gone",
	}})
	apply(ModeNetfilter)
	status(Status{Mode: ModeNetfilterOnly, Rules: true})

	apply("native")
	status(Status{Mode: "native", Rules: true})
	sh(`for t in raw mangle nat filter; do ip6tables -t $t -F && ip6tables -t $t -X; done`)
	status(Status{Mode: "native", Rules: true, RulesMissing: []string{
		"ipv6 raw PREROUTING: chain XSYN-RAW-d0 and the jump to it are gone",
		"ipv6 raw OUTPUT: chain XSYN-SAK-d0 and the jump to it are gone",
		"ipv6 filter INPUT: chain XSYN-IN-d0 and the jump to it are gone",
		"ipv6 filter OUTPUT: chain XSYN-OUT-d0 and the jump to it are gone",
		"ipv6 filter OUTPUT: chain XSYN-ORP-d0 and the jump to it are gone",
	}})
	sh(`for t in raw mangle nat filter; do iptables -t $t -F && iptables -t $t -X; done`)
	status(Status{Mode: "native", Rules: false, RulesMissing: []string{
		"ipv4 raw PREROUTING: chain XSYN-RAW-d0 and the jump to it are gone",
		"ipv4 raw OUTPUT: chain XSYN-SAK-d0 and the jump to it are gone",
		"ipv4 filter INPUT: chain XSYN-IN-d0 and the jump to it are gone",
		"ipv4 filter OUTPUT: chain XSYN-OUT-d0 and the jump to it are gone",
		"ipv4 filter OUTPUT: chain XSYN-ORP-d0 and the jump to it are gone",
		"ipv6 raw PREROUTING: chain XSYN-RAW-d0 and the jump to it are gone",
		"ipv6 raw OUTPUT: chain XSYN-SAK-d0 and the jump to it are gone",
		"ipv6 filter INPUT: chain XSYN-IN-d0 and the jump to it are gone",
		"ipv6 filter OUTPUT: chain XSYN-OUT-d0 and the jump to it are gone",
		"ipv6 filter OUTPUT: chain XSYN-ORP-d0 and the jump to it are gone",
	}})
	apply("native")
	status(Status{Mode: "native", Rules: true})
}
