package rules

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/xsyn-project/xsyn/spec"
)

func mustSnapshot(t *testing.T, a *Applier, iface string) Plan {
	t.Helper()
	p, ok, err := a.Snapshot(iface)
	if err != nil || !ok {
		t.Fatalf("snapshot %s: %v, %v", iface, ok, err)
	}
	return p
}

// Drift sees every piece a reload can take, including what Check cannot tell from a spec that
// never had it (FWD alone; MRK and NAT together), and Restore puts it all back, the originals of
// the sysctls included.
func TestDriftAndRestore(t *testing.T) {
	const iface = "eth0"
	name := func(k chainKind) string { return k.name(iface) }
	v4, v6 := spec.IPv4, spec.IPv6
	lostRecords := []string{
		"ipv4 filter XSYN-SAVED: the record of net.netfilter.nf_conntrack_tcp_loose's original value is gone",
		"ipv4 filter XSYN-SAVED: the record of net.ipv4.tcp_syncookies's original value is gone",
		"ipv4 filter XSYN-SAVED: the record of net.ipv4.conf.eth0.route_localnet's original value is gone",
	}
	for _, c := range []struct {
		name   string
		damage func(ns *fakeNS)
		want   []string
	}{
		{"complete", func(*fakeNS) {}, nil},
		{"forward chain deleted", func(ns *fakeNS) { ns.dropChain(v4, TableFilter, name(kindFwd)) }, []string{gone(v4, kindFwd, iface)}},
		{"mark and nat deleted", func(ns *fakeNS) {
			ns.dropChain(v6, TableMangle, name(kindMark))
			ns.dropChain(v6, TableNat, name(kindNat))
		}, []string{gone(v6, kindMark, iface), gone(v6, kindNat, iface)}},
		{"one rule deleted", func(ns *fakeNS) {
			in := ns.tables[v4][TableFilter][name(kindIn)]
			in.rules = in.rules[1:]
		}, nil}, // the counts: below
		{"one rule changed", func(ns *fakeNS) {
			in := ns.tables[v4][TableFilter][name(kindIn)]
			in.rules[0] = []string{"-j", "ACCEPT"}
		}, []string{"ipv4 filter INPUT: chain XSYN-IN-eth0 has other rules than attach installed"}},
		{"sysctl set back", func(ns *fakeNS) { ns.sysctls["net.netfilter.nf_conntrack_tcp_loose"] = "1" },
			[]string{"sysctl net.netfilter.nf_conntrack_tcp_loose is 1, attach set 0"}},
		{"one jump deleted", func(ns *fakeNS) {
			out := ns.tables[v6][TableFilter]["OUTPUT"]
			out.rules = slices.DeleteFunc(out.rules, func(r []string) bool { return slices.Equal(r, []string{"-j", name(kindOrphan)}) })
		}, []string{"ipv6 filter OUTPUT: the jump to chain XSYN-ORP-eth0 is gone"}},
		{"iptables -F", func(ns *fakeNS) {
			for _, c := range ns.tables[v4][TableFilter] {
				c.rules = nil
			}
		}, append([]string{
			"ipv4 filter INPUT: chain XSYN-IN-eth0 is flushed and the jump to it is gone",
			"ipv4 filter FORWARD: chain XSYN-FWD-eth0 is flushed and the jump to it is gone",
			"ipv4 filter OUTPUT: chain XSYN-OUT-eth0 is flushed and the jump to it is gone",
			"ipv4 filter OUTPUT: chain XSYN-ORP-eth0 is flushed and the jump to it is gone",
		}, lostRecords...)},
		{"nft flush ruleset", func(ns *fakeNS) {
			for _, f := range families {
				for table := range builtinChains {
					ns.restoreTable(f, table, nil)
				}
			}
			ns.withChain(v4, "TRAP").withChain(v6, "TRAP") // the reloaded ruleset has the user's chain
		}, nil}, // every chain: filled in below
	} {
		t.Run(c.name, func(t *testing.T) {
			ns := nsForEveryAction()
			a := ns.applier()
			p := mustConfig(t, iface, everyAction)
			mustApply(t, a, p)
			mustApply(t, a, mustBuild(t, "eth1", dualSimple)) // another interface's rules
			live := mustSnapshot(t, a, iface)
			originals, err := a.Originals()
			if err != nil {
				t.Fatal(err)
			}
			wantOriginals := map[string]string{"net.netfilter.nf_conntrack_tcp_loose": "1", "net.ipv4.tcp_syncookies": "2", "net.ipv4.conf.eth0.route_localnet": "0"}
			for k, v := range wantOriginals {
				if originals[k] != v {
					t.Fatalf("Originals: %v, want %v", originals, wantOriginals)
				}
			}
			applied := ifaceChains(xsynLists(t, a), iface)
			want := c.want
			switch c.name {
			case "one rule deleted":
				n := len(ns.tables[v4][TableFilter][name(kindIn)].rules)
				want = []string{fmt.Sprintf("ipv4 filter INPUT: chain XSYN-IN-eth0 has %d rules, attach installed %d", n-1, n)}
			case "nft flush ruleset":
				for _, fp := range live.Families {
					for _, ch := range fp.Chains {
						oc, _ := parseChain(ch.Name)
						want = append(want, gone(fp.Family, oc.kind, iface))
					}
				}
				want = append(want, "ipv4 filter: chain XSYN-SAVED, the record of the sysctls' original values, is gone")
			}
			c.damage(ns)
			damaged := ns.state()
			got, err := a.Drift(live)
			if err != nil {
				t.Fatal(err)
			}
			diffState(t, "Drift", ns.state(), damaged)
			if !slices.Equal(got, want) {
				t.Errorf("Drift:\n  got  %q\n  want %q", got, want)
			}
			if len(want) == 0 {
				return
			}

			if err := a.Restore(p, originals); err != nil {
				t.Fatal(err)
			}
			if got, err := a.Drift(live); err != nil || got != nil {
				t.Errorf("Drift after Restore: %q, %v; want nothing", got, err)
			}
			diffLists(t, "after Restore", ifaceChains(xsynLists(t, a), iface), applied)
			// The namespace's own values come back with the last detach, not xsyn's.
			mustApply(t, a, mustBuild(t, "eth1", dualSimple))
			mustRemove(t, a, "eth1")
			mustRemove(t, a, iface)
			for k, v := range wantOriginals {
				if ns.sysctls[k] != v {
					t.Errorf("%s after the last detach: %s, want the original %s", k, ns.sysctls[k], v)
				}
			}
		})
	}
}

// ifaceChains keeps, of xsynLists, the chains of one interface.
func ifaceChains(lists map[string][]string, iface string) map[string][]string {
	out := map[string][]string{}
	for k, lines := range ownChains(lists) {
		if strings.HasSuffix(k, "-"+iface) {
			out[k] = lines
		}
	}
	return out
}

// A failure anywhere in Restore leaves the damaged state as it was: the records it put back are
// taken out again, with Apply's own rollback.
func TestRestoreRollsBack(t *testing.T) {
	ns := newFakeNS()
	a := ns.applier()
	p := mustBuild(t, "eth0", dualSimple)
	mustApply(t, a, p)
	originals, err := a.Originals()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families { // nft flush ruleset
		for table := range builtinChains {
			ns.restoreTable(f, table, nil)
		}
	}
	damaged := ns.state()
	ns.calls = 0
	if err := a.Restore(p, originals); err != nil {
		t.Fatal(err)
	}
	total, failed := ns.calls, 0
	for n := 1; n <= total; n++ {
		for _, f := range families {
			for table := range builtinChains {
				ns.restoreTable(f, table, nil)
			}
		}
		ns.calls, ns.failAt = 0, n
		err := a.Restore(p, originals)
		ns.failAt = 0
		if err == nil {
			continue // a read that Restore does not need to fail on
		}
		failed++
		if !strings.Contains(err.Error(), "eth0") {
			t.Errorf("call %d failing: %v does not name the interface", n, err)
		}
		diffState(t, fmt.Sprintf("failing call %d/%d", n, total), ns.state(), damaged)
	}
	if failed < total/2 {
		t.Errorf("only %d of %d failing calls failed Restore", failed, total)
	}
}
