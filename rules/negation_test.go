package rules

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/xsyn-project/xsyn/spec"
)

// negLines are lines whose complements gave 36,997 IPv4 rules (6,326 in XSYN-IN, at the top of
// INPUT) and 65,655 IPv6 rules before negated lists went to subchains.
const negLines = `synproxy4 input inface eth0 src not 10.0.0.0/8,172.16.0.0/12,192.168.0.0/16 dst not 198.51.100.7,198.51.100.9 dport not 22,25,53,110,143,993,995,3306,5432,6379,8080,8443,9000,9090,9200,11211 accept
synproxy6 input inface eth0 src not fd00::/8,fe80::/10,2001:db8:1::/48 dst not 2001:db8::7,2001:db8::9 dport not 22,25 accept
`

// TestBuildNegations: a negated list iptables cannot say in one rule becomes, FireHOL's way, a
// subchain per rule: one RETURN per excluded item, then the rule's target; the rule itself
// jumps there by its positive matches. The rule count grows with the items, not with their
// complement.
func TestBuildNegations(t *testing.T) {
	p := mustConfig(t, "eth0", negLines)
	for _, c := range []struct {
		f          spec.Family
		maxRules   int
		srcItems   []string
		dstItems   []string
		portsNeg   string // how the negated ports appear in the client's packets' rules
		portsItems int    // ports returned one by one (conntrack's --ctorigdstport)
	}{
		{spec.IPv4, 110, []string{"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"}, []string{"198.51.100.7/32", "198.51.100.9/32"}, "", 16},
		{spec.IPv6, 80, []string{"fd00::/8", "fe80::/10", "2001:db8:1::/48"}, []string{"2001:db8::7/128", "2001:db8::9/128"}, "-m multiport ! --dports 22,25", 2},
	} {
		fp, _ := p.Family(c.f)
		chains := map[string]Chain{}
		total := 0
		for _, ch := range fp.Chains {
			chains[ch.Name] = ch
			total += len(ch.Rules)
		}
		if total > c.maxRules {
			t.Errorf("%s: %d rules, want at most %d", c.f, total, c.maxRules)
		}
		if n := len(chains["XSYN-IN-eth0"].Rules); n != 4 {
			t.Errorf("%s: %d rules in XSYN-IN-eth0 (at the top of INPUT), want 4: loopback, isolation, SYNPROXY, DROP", c.f, n)
		}
		subs := 0
		for _, ch := range fp.Chains {
			oc, ok := parseChain(ch.Name)
			if !ok {
				t.Fatalf("%s: chain %s is not xsyn's", c.f, ch.Name)
			}
			for _, r := range ch.Rules {
				line := joinArgs(r.Args)
				// No complement: every address and port matched is one the line names.
				for _, a := range []string{"-s", "-d", "--ctorigdst"} {
					if v := argAfter(r.Args, a); v != "" && !strings.HasPrefix(v, "127.") && v != "::1/128" &&
						!slices.Contains(c.srcItems, v) && !slices.Contains(c.dstItems, v) && !slices.Contains(c.dstItems, v+"/32") && !slices.Contains(c.dstItems, v+"/128") {
						t.Errorf("%s %s: %q matches %s %s, which the line does not name", c.f, ch.Name, line, a, v)
					}
				}
				if c.portsNeg != "" && (oc.kind.tag == kindRaw.tag || oc.kind.tag == kindMark.tag) && strings.HasPrefix(r.Origin, "synproxy") && !strings.Contains(line, c.portsNeg) {
					t.Errorf("%s %s: %q, want the ports negated inline (%s)", c.f, ch.Name, line, c.portsNeg)
				}
				// A jump to a subchain goes to one the plan has, in the same table.
				if to := target(r.Args); len(to) == 1 {
					if sc, ok := chains[to[0]]; ok && sc.Table != ch.Table {
						t.Errorf("%s: %s jumps to %s of another table", c.f, ch.Name, to[0])
					} else if oc2, mine := parseChain(to[0]); mine && oc2.kind.sub && !ok {
						t.Errorf("%s: %s jumps to %s, which the plan lacks", c.f, ch.Name, to[0])
					}
				}
			}
			if !oc.kind.sub {
				continue
			}
			subs++
			// RETURN for each item, then the target, and nothing else.
			rs := ch.Rules
			last := rs[len(rs)-1].Args
			if last[0] != "-p" || last[1] != "tcp" || target(last)[0] == "RETURN" {
				t.Errorf("%s %s: last rule %q, want -p tcp and the rule's target", c.f, ch.Name, last)
			}
			var items []string
			for _, r := range rs[:len(rs)-1] {
				if !slices.Equal(target(r.Args), []string{"RETURN"}) {
					t.Errorf("%s %s: %q before the target is no RETURN", c.f, ch.Name, r.Args)
				}
				items = append(items, strings.Join(r.Args[:slices.Index(r.Args, "--comment")], " "))
			}
			if n := len(items); n < 2 || n > len(c.srcItems)+len(c.dstItems)+c.portsItems {
				t.Errorf("%s %s: %d items %q", c.f, ch.Name, n, items)
			}
		}
		// Every rule of the statement that matches its lists has a subchain: RAW, IN (2), the
		// SYN-ACK and its NOTRACK (SAK), MRK and the ACK's timestamp strip, NAT, the action,
		// the server's INVALID drop.
		if subs != 10 {
			t.Errorf("%s: %d subchains, want 10", c.f, subs)
		}
	}
}

// TestBuildNegatedSingle: what iptables negates in one rule stays in the rule: one prefix
// ("! -d", "! -s" for SYNPROXY's SYN-ACK, "! --ctorigdst" for the action), one port range.
func TestBuildNegatedSingle(t *testing.T) {
	p := mustConfig(t, "eth0", "synproxy4 input inface eth0 dst not 198.51.100.0/24 dport not 80:89 accept\n")
	fp, _ := p.Family(spec.IPv4)
	for _, ch := range fp.Chains {
		if oc, _ := parseChain(ch.Name); oc.kind.sub {
			t.Errorf("subchain %s for negations iptables says in one rule", ch.Name)
		}
	}
	for k, want := range map[chainKind]string{
		kindRaw: "-d 198.51.100.0/24 -i eth0 -p tcp -m tcp ! --dport 80:89",
		kindIn:  "-d 198.51.100.0/24 -i eth0 -p tcp -m tcp ! --dport 80:89",
		kindOut: "--ctstate NEW ! --ctorigdst 198.51.100.0/24 ! --ctorigdstport 80:89",
	} {
		found := false
		for _, r := range rulesWith(p, spec.IPv4, k, "") {
			found = found || strings.Contains(r, want)
		}
		if !found {
			t.Errorf("%s: no rule with %q:\n%s", k.tag, want, strings.Join(rulesWith(p, spec.IPv4, k, ""), "\n"))
		}
	}
}

// TestBuildRuleCap: a statement that would render more rules than xsyn installs is refused
// with an error that names it, where it was written and what to do.
func TestBuildRuleCap(t *testing.T) {
	var items []string
	for i := range 200 {
		items = append(items, fmt.Sprintf("10.%d.0.0/16", i))
	}
	conf := "synproxy4 input inface eth0 dport 80 accept\n" +
		"synproxy4 input inface eth0 src not " + strings.Join(items, ",") + " dport 443 accept\n"
	_, err := Build("eth0", configSpec(t, "big.conf", "eth0", conf))
	if !errors.Is(err, ErrTooManyRules) {
		t.Fatalf("Build = %v, want ErrTooManyRules", err)
	}
	for _, want := range []string{"big.conf:2: ", "src not 10.0.0.0/16", "renders 1819 iptables rules", "more than the 1000", "shorten its lists"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	// 90 items fit.
	conf = "synproxy4 input inface eth0 src not " + strings.Join(items[:90], ",") + " dport 443 accept\n"
	if _, err := Build("eth0", configSpec(t, "ok.conf", "eth0", conf)); err != nil {
		t.Errorf("Build with 90 negated sources: %v", err)
	}
}

// TestNegationsSnapshotAndCheck: the subchains of negated lists come back with a snapshot,
// go with Remove, and Check finds one flushed.
func TestNegationsSnapshotAndCheck(t *testing.T) {
	ns := newFakeNS().withForeign()
	before := ns.state()
	a := ns.applier()
	mustApply(t, a, mustConfig(t, "eth0", negLines))
	want := xsynLists(t, a)
	if st, err := a.Check("eth0"); err != nil || !st.Complete() {
		t.Fatalf("Check after apply = %+v, %v; want complete", st, err)
	}
	snap, ok, err := a.Snapshot("eth0")
	if err != nil || !ok {
		t.Fatalf("Snapshot = %v, %v", ok, err)
	}
	mustApply(t, a, mustBuild(t, "eth0", dualSimple))
	if subs := ns.chainNames(spec.IPv4, TableFilter, "XSYN-f"); len(subs) != 0 {
		t.Errorf("subchains left after a plan without negations: %v", subs)
	}
	mustApply(t, a, snap)
	diffLists(t, "negations restored from their snapshot", xsynLists(t, a), want)

	ns.tables[spec.IPv4][TableFilter]["XSYN-f00-eth0"].rules = nil
	st, err := a.Check("eth0")
	if err != nil || st.Complete() || !slices.ContainsFunc(st.Missing(), func(m string) bool { return strings.Contains(m, "XSYN-f00-eth0 is flushed") }) {
		t.Errorf("Check with a flushed subchain = %q, %v; want it reported", st.Missing(), err)
	}
	mustRemove(t, a, "eth0")
	diffState(t, "after remove", ns.state(), before)
}
