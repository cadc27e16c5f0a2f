package rules

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/xsyn-project/xsyn/spec"
)

// The kinds Check expects of every family plan are what Build really plans, for every
// configuration in testdata and every kind of statement: RAW, IN, OUT and ORP always; MRK and
// NAT together or not at all.
func TestBuildKeepsCheckInvariant(t *testing.T) {
	plans := map[string]Plan{
		"everyAction":     mustConfig(t, "eth0", everyAction),
		"reject only":     mustConfig(t, "eth0", "synproxy input inface eth0 dport 23 reject\n"),
		"forward only":    mustConfig(t, "eth0", "synproxy6 forward inface eth0 outface eth1 dport 443 accept\n"),
		"forward reject":  mustConfig(t, "eth0", "synproxy4 forward inface eth0 dport 443 reject\n"),
		"loopback none":   mustConfig(t, "eth0", "loopback none\nsynproxy input inface eth0 dport 80 drop\n"),
		"dual simple":     mustBuild(t, "eth0", dualSimple),
		"ipv4 simple":     mustBuild(t, "eth0", v4Simple),
		"simple, no opts": mustBuild(t, "eth0", spec.Simple{Ports: []uint16{8080}, MSS: 1400, WScale: 0, NoSACK: true, NoTimestamps: true}),
	}
	for _, name := range configGolden {
		p, err := Build("eth0", goldenSpec(t, name))
		if err != nil {
			t.Fatal(err)
		}
		plans[name] = p
	}
	for name, p := range plans {
		for _, fp := range p.Families {
			has := map[string]bool{}
			proxied := false
			for _, c := range fp.Chains {
				oc, _ := parseChain(c.Name)
				has[oc.kind.tag] = true
				proxied = proxied || !oc.kind.handoff
			}
			for _, k := range alwaysPlanned {
				if proxied && !has[k.tag] {
					t.Errorf("%s, %s: no %s chain; Check reports its absence as missing", name, fp.Family, k.tag)
				}
			}
			for _, group := range plannedTogether {
				n := 0
				for _, k := range group {
					if has[k.tag] {
						n++
					}
				}
				if n != 0 && n != len(group) {
					t.Errorf("%s, %s: %d of the kinds %v planned; Check expects all or none", name, fp.Family, n, group)
				}
			}
		}
	}
}

// dropChain takes a chain and every jump to it out of the fake, the way a reload of its table
// does.
func (n *fakeNS) dropChain(f spec.Family, table, chain string) {
	t := n.tables[f][table]
	delete(t, chain)
	for _, c := range t {
		c.rules = slices.DeleteFunc(c.rules, func(r []string) bool { return slices.Equal(r, []string{"-j", chain}) })
	}
}

// restoreTable replaces a table of the fake with one holding only the builtin chains and the
// given rules of builtin chains, as iptables-restore of a file with only that table does.
func (n *fakeNS) restoreTable(f spec.Family, table string, rules map[string][][]string) {
	n.tables[f][table] = map[string]*fakeChain{}
	for _, c := range builtinChains[table] {
		n.tables[f][table][c] = &fakeChain{builtin: true, rules: rules[c]}
	}
}

func mustCheck(t *testing.T, a *Applier, iface string) State {
	t.Helper()
	st, err := a.Check(iface)
	if err != nil {
		t.Fatalf("check %s: %v", iface, err)
	}
	return st
}

// gone is Check's message for a chain that is not there at all.
func gone(f spec.Family, k chainKind, iface string) string {
	return fmt.Sprintf("%s %s %s: chain %s and the jump to it are gone", f, k.table, k.hook, k.name(iface))
}

func TestCheck(t *testing.T) {
	const iface = "eth0"
	name := func(k chainKind) string { return k.name(iface) }
	v4, v6 := spec.IPv4, spec.IPv6
	for _, c := range []struct {
		name   string
		damage func(ns *fakeNS)
		want   []string // Missing, IPv4 first
	}{
		{"complete", func(*fakeNS) {}, nil},
		{
			// iptables-restore of a file with only *filter: every xsyn chain of the table and
			// every jump to one is gone (XSYN-SAVED too); the foreign rule the file has stays.
			// FWD cannot be told from a spec without forward statements.
			"filter table restored",
			func(ns *fakeNS) {
				ns.restoreTable(v4, TableFilter, map[string][][]string{"INPUT": {{"-p", "tcp", "-m", "tcp", "--dport", "22", "-j", "ACCEPT"}}})
				ns.withChain(v4, "TRAP") // the user's chain is in the file
			},
			[]string{gone(v4, kindIn, iface), gone(v4, kindOut, iface), gone(v4, kindOrphan, iface)},
		},
		{
			// iptables -F: every chain of the table flushed, none deleted.
			"filter table flushed",
			func(ns *fakeNS) {
				for _, c := range ns.tables[v4][TableFilter] {
					c.rules = nil
				}
			},
			[]string{
				"ipv4 filter INPUT: chain XSYN-IN-eth0 is flushed and the jump to it is gone",
				"ipv4 filter FORWARD: chain XSYN-FWD-eth0 is flushed and the jump to it is gone",
				"ipv4 filter OUTPUT: chain XSYN-OUT-eth0 is flushed and the jump to it is gone",
				"ipv4 filter OUTPUT: chain XSYN-ORP-eth0 is flushed and the jump to it is gone",
			},
		},
		{
			"raw table restored",
			func(ns *fakeNS) { ns.restoreTable(v6, TableRaw, nil) },
			[]string{gone(v6, kindRaw, iface), gone(v6, kindSynack, iface)},
		},
		{
			// MRK and NAT come together: one tells the other is missing.
			"nat table restored",
			func(ns *fakeNS) { ns.restoreTable(v6, TableNat, nil) },
			[]string{gone(v6, kindNat, iface)},
		},
		{
			"mangle chain deleted",
			func(ns *fakeNS) { ns.dropChain(v4, TableMangle, name(kindMark)) },
			[]string{gone(v4, kindMark, iface)},
		},
		{
			"one jump deleted",
			func(ns *fakeNS) {
				out := ns.tables[v6][TableFilter]["OUTPUT"]
				out.rules = slices.DeleteFunc(out.rules, func(r []string) bool { return slices.Equal(r, []string{"-j", name(kindOrphan)}) })
			},
			[]string{"ipv6 filter OUTPUT: the jump to chain XSYN-ORP-eth0 is gone"},
		},
		{
			"one chain flushed",
			func(ns *fakeNS) { ns.tables[v4][TableFilter][name(kindFwd)].rules = nil },
			[]string{"ipv4 filter FORWARD: chain XSYN-FWD-eth0 is flushed: it has no rules"},
		},
		{
			// A killed Apply: the staging chain is left, the canonical one it replaces gone.
			"interrupted apply",
			func(ns *fakeNS) {
				ns.dropChain(v4, TableRaw, name(kindRaw))
				ns.tables[v4][TableRaw][kindRaw.stagingName(iface)] = &fakeChain{rules: [][]string{{"-j", "ACCEPT"}}}
			},
			[]string{gone(v4, kindRaw, iface), "ipv4 raw PREROUTING: chain XSYN-NEW-RAW-eth0 is left over from an interrupted attach"},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			ns := nsForEveryAction()
			a := ns.applier()
			p := mustConfig(t, iface, everyAction)
			mustApply(t, a, p)
			mustApply(t, a, mustBuild(t, "eth1", dualSimple)) // chains and jumps not eth0's
			want := xsynLists(t, a)
			c.damage(ns)

			before := ns.state()
			st := mustCheck(t, a, iface)
			diffState(t, "Check", ns.state(), before)
			if got := st.Missing(); !slices.Equal(got, c.want) {
				t.Errorf("Missing:\n  got  %q\n  want %q", got, c.want)
			}
			if !st.Installed() || st.Complete() != (len(c.want) == 0) || st.Iface != iface {
				t.Errorf("Installed %v, Complete %v, Iface %q; want true, %v, %s", st.Installed(), st.Complete(), st.Iface, len(c.want) == 0, iface)
			}

			// Applying the plans again repairs everything (a table restored took eth1's chains
			// as well).
			mustApply(t, a, p)
			mustApply(t, a, mustBuild(t, "eth1", dualSimple))
			if st := mustCheck(t, a, iface); !st.Complete() {
				t.Errorf("after apply again: %q missing", st.Missing())
			}
			// The chains are as they were; where their jumps went back is Apply's business
			// (TestApplyKeepsJumpPosition), and the reload's foreign rules are the reload's.
			diffLists(t, "after apply again", ownChains(xsynLists(t, a)), ownChains(want))
		})
	}
}

// ownChains keeps, of xsynLists, the per-interface chains of xsyn.
func ownChains(lists map[string][]string) map[string][]string {
	out := map[string][]string{}
	for k, lines := range lists {
		if _, mine := parseChain(k[strings.LastIndex(k, " ")+1:]); mine {
			out[k] = lines
		}
	}
	return out
}

// Check lists the chains of each family in the order packets meet them.
func TestCheckChains(t *testing.T) {
	ns := nsForEveryAction()
	a := ns.applier()
	mustApply(t, a, mustConfig(t, "eth0", everyAction))
	st := mustCheck(t, a, "eth0")
	want := State{Iface: "eth0", Families: []FamilyState{
		{Family: spec.IPv4, Chains: []string{"XSYN-RAW-eth0", "XSYN-SAK-eth0", "XSYN-MRK-eth0", "XSYN-NAT-eth0", "XSYN-IN-eth0", "XSYN-FWD-eth0", "XSYN-OUT-eth0", "XSYN-ORP-eth0"}},
		{Family: spec.IPv6, Chains: []string{"XSYN-RAW-eth0", "XSYN-SAK-eth0", "XSYN-MRK-eth0", "XSYN-NAT-eth0", "XSYN-IN-eth0", "XSYN-FWD-eth0", "XSYN-OUT-eth0", "XSYN-ORP-eth0"}},
	}}
	if !reflect.DeepEqual(st, want) {
		t.Errorf("Check = %+v\nwant %+v", st, want)
	}

	// Reject opens no connection to a server: no MRK, no NAT, and none missing.
	mustApply(t, a, mustConfig(t, "eth1", "synproxy4 input inface eth1 dport 23 reject\n"))
	st = mustCheck(t, a, "eth1")
	want = State{Iface: "eth1", Families: []FamilyState{
		{Family: spec.IPv4, Chains: []string{"XSYN-RAW-eth1", "XSYN-SAK-eth1", "XSYN-IN-eth1", "XSYN-OUT-eth1", "XSYN-ORP-eth1"}},
	}}
	if !reflect.DeepEqual(st, want) || !st.Complete() {
		t.Errorf("Check of a reject-only spec = %+v\nwant %+v", st, want)
	}
}

// Expect adds the families known to be protected that have no chain at all: their chains are
// missing, and the interface's rules are incomplete.
func TestCheckExpect(t *testing.T) {
	ns := newFakeNS()
	a := ns.applier()
	mustApply(t, a, mustBuild(t, "eth0", v4Simple))
	st := mustCheck(t, a, "eth0")
	if got := st.Expect(spec.IPv4); !reflect.DeepEqual(got, st) || !got.Complete() {
		t.Errorf("Expect(ipv4) of complete ipv4 rules = %+v, want them unchanged", got)
	}
	got := st.Expect(spec.IPv6, spec.IPv4)
	want := []string{gone(spec.IPv6, kindRaw, "eth0"), gone(spec.IPv6, kindSynack, "eth0"), gone(spec.IPv6, kindIn, "eth0"), gone(spec.IPv6, kindOut, "eth0"), gone(spec.IPv6, kindOrphan, "eth0")}
	if !slices.Equal(got.Missing(), want) || got.Complete() || !got.Installed() {
		t.Errorf("Expect(ipv6) of ipv4-only rules: missing %q, complete %v; want %q", got.Missing(), got.Complete(), want)
	}
	if len(got.Families) != 2 || got.Families[0].Family != spec.IPv4 || got.Families[1].Family != spec.IPv6 {
		t.Errorf("Expect(ipv6): families %+v, want ipv4 then ipv6", got.Families)
	}

	// No rules at all: nothing installed, nothing missing until something is expected.
	none := mustCheck(t, a, "eth1")
	if none.Installed() || none.Complete() || len(none.Missing()) != 0 || len(none.Families) != 0 {
		t.Errorf("Check of an interface without rules = %+v", none)
	}
	if got := none.Expect(spec.IPv4).Missing(); len(got) != len(alwaysPlanned) || got[0] != gone(spec.IPv4, kindRaw, "eth1") {
		t.Errorf("Expect(ipv4) without rules: missing %q", got)
	}
}

// notExistErr says what go-iptables' *iptables.Error says of a chain that does not exist.
type notExistErr struct{}

func (notExistErr) Error() string    { return "iptables: No chain/target/match by that name." }
func (notExistErr) IsNotExist() bool { return true }

// vanishingIPT lists a chain that is gone when it is read: a reload or detach in between.
type vanishingIPT struct {
	IPTables
	chain string
}

func (v vanishingIPT) List(table, chain string) ([]string, error) {
	if chain == v.chain {
		return nil, fmt.Errorf("list: %w", notExistErr{})
	}
	return v.IPTables.List(table, chain)
}

func TestCheckErrors(t *testing.T) {
	ns := newFakeNS()
	mustApply(t, ns.applier(), mustBuild(t, "eth0", dualSimple))

	a := NewApplierWith(vanishingIPT{&fakeIPT{ns, spec.IPv4}, "XSYN-OUT-eth0"}, &fakeIPT{ns, spec.IPv6}, fakeSysctl{ns})
	if got := mustCheck(t, a, "eth0").Missing(); !slices.Equal(got, []string{gone(spec.IPv4, kindOut, "eth0")}) {
		t.Errorf("a chain gone between listing and reading: missing %q", got)
	}

	if _, err := ns.applier().Check("eth+"); !errors.Is(err, ErrBadInterfaceName) {
		t.Errorf("Check(eth+) = %v, want ErrBadInterfaceName", err)
	}
	// Every call Check makes can fail; each failure is an error naming the interface, never a
	// state that looks complete or incomplete.
	calls := func() int {
		ns.calls, ns.failAt = 0, 0
		mustCheck(t, ns.applier(), "eth0")
		return ns.calls
	}()
	for i := 1; i <= calls; i++ {
		ns.calls, ns.failAt = 0, i
		st, err := ns.applier().Check("eth0")
		if !errors.Is(err, errInjected) || !strings.HasPrefix(err.Error(), "check rules for eth0: ") || st.Installed() {
			t.Errorf("call %d of %d failing: %+v, %v; want no state and the error", i, calls, st, err)
		}
	}
	ns.failAt = 0
}
