package main

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/xsyn-project/xsyn/internal/protect"
	"github.com/xsyn-project/xsyn/loader"
)

// What status says of the interface's netfilter rules: installed, INCOMPLETE with each missing
// piece, or MISSING, with XDP and without.
func TestStatusRulesState(t *testing.T) {
	gone := []string{
		"ipv4 filter INPUT: chain XSYN-IN-d0 and the jump to it are gone",
		"ipv4 filter OUTPUT: chain XSYN-OUT-d0 and the jump to it are gone",
	}
	xdp := protect.Status{Iface: "d0", Mode: "native", Holder: loader.HolderLink, ProgID: 7, Counters: &loader.FamilyCounters{}}
	nf := protect.Status{Iface: "d0", Mode: protect.ModeNetfilterOnly}
	with := func(st protect.Status, rules bool, missing []string) protect.Status {
		st.Rules, st.RulesMissing = rules, missing
		return st
	}
	const again = "; run attach again (systemctl reload xsyn@d0)\n"
	for _, c := range []struct {
		name string
		st   protect.Status
		want []string // lines, in order, that the text has
		not  string   // and something it must not have
	}{
		{"xdp, complete", with(xdp, true, nil), []string{"  program id 7; netfilter rules installed\n"}, "INCOMPLETE"},
		{"xdp, incomplete", with(xdp, true, gone),
			[]string{"  program id 7; netfilter rules INCOMPLETE" + again, "    " + gone[0] + "\n", "    " + gone[1] + "\n"}, "installed"},
		{"xdp, no rules", with(xdp, false, gone), []string{"  program id 7; netfilter rules MISSING" + again}, gone[0]},
		{"netfilter-only, complete", with(nf, true, nil), []string{"d0: netfilter-only: SYNPROXY rules without the XDP fast path\n"}, "netfilter rules"},
		{"netfilter-only, incomplete", with(nf, true, gone),
			[]string{"d0: netfilter-only", "\n  netfilter rules INCOMPLETE" + again, "    " + gone[0] + "\n", "    " + gone[1] + "\n"}, "installed"},
	} {
		var b strings.Builder
		writeText(&b, c.st, nil, true)
		text, rest := b.String(), b.String()
		for _, w := range c.want {
			i := strings.Index(rest, w)
			if i < 0 {
				t.Errorf("%s: text lacks %q (in this order):\n%s", c.name, w, text)
				break
			}
			rest = rest[i+len(w):]
		}
		if strings.Contains(text, c.not) {
			t.Errorf("%s: text has %q:\n%s", c.name, c.not, text)
		}

		var out strings.Builder
		if err := writeJSON(&out, []protect.Status{c.st}, nil, true); err != nil {
			t.Fatal(err)
		}
		var doc statusJSON
		var keys struct {
			Interfaces []map[string]json.RawMessage `json:"interfaces"`
		}
		if err := json.Unmarshal([]byte(out.String()), &doc); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal([]byte(out.String()), &keys); err != nil {
			t.Fatal(err)
		}
		got := doc.Interfaces[0]
		_, has := keys.Interfaces[0]["netfilter_rules_missing"]
		if complete := c.st.Rules && len(c.st.RulesMissing) == 0; got.NetfilterRules != complete || has == complete || !slices.Equal(got.RulesMissing, c.st.RulesMissing) {
			t.Errorf("%s: JSON netfilter_rules %v, netfilter_rules_missing %q (key present: %v); want %v and %q",
				c.name, got.NetfilterRules, got.RulesMissing, has, complete, c.st.RulesMissing)
		}
	}
}

// A firewall reload that restores only the filter table, through the built binary: XDP goes on
// answering SYNs, the valid ACKs meet no SYNPROXY and real clients fail, and status says so
// (exit 0) in JSON and text; attach again repairs it. The SYNPROXY path, whose rules a reload
// can take: the handoff has none.
func TestRulesHealthE2E(t *testing.T) {
	l := newE2ELab(t, "xsynrh", enterers["ip-netns-exec"])
	l.echoServer(t, 8080)
	l.mustXsyn(t, "attach", "d0", "--port", "8080", "--path", "synproxy")
	t.Cleanup(func() { l.xsyn(t, "detach", "d0") })
	connect := func(addr, client string) error {
		t.Helper()
		seen, err := l.connect(addr)
		if err == nil && seen != client {
			t.Errorf("%s: server saw client %q, want %s", addr, seen, client)
		}
		return err
	}
	complete := func(when string) {
		t.Helper()
		if st := l.status(t); st.Mode != "native" || !st.NetfilterRules || st.RulesMissing != nil {
			t.Fatalf("%s: status %+v; want native with every rule", when, st)
		}
		if out := l.mustXsyn(t, "status", "d0", "--interval", "0"); !strings.Contains(out, "netfilter rules installed\n") {
			t.Errorf("%s: text status:\n%s", when, out)
		}
		for _, addr := range []struct{ addr, client string }{{"192.0.2.2:8080", cli4.Addr().String()}, {"[2001:db8::2]:8080", cli6.Addr().String()}} {
			if err := connect(addr.addr, addr.client); err != nil {
				t.Errorf("%s: client to %s: %v", when, addr.addr, err)
			}
		}
	}
	complete("after attach")

	// The reload: the host's own firewall, one table, as iptables-save wrote it.
	reload := "printf '*filter\\n:INPUT ACCEPT [0:0]\\n:FORWARD ACCEPT [0:0]\\n:OUTPUT ACCEPT [0:0]\\n" +
		"-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\\nCOMMIT\\n' | iptables-restore"
	if out, err := l.dut.Run("sh", "-c", reload); err != nil {
		t.Fatalf("iptables-restore: %v\n%s", err, out)
	}
	want := []string{
		"ipv4 filter INPUT: chain XSYN-IN-d0 and the jump to it are gone",
		"ipv4 filter OUTPUT: chain XSYN-OUT-d0 and the jump to it are gone",
		"ipv4 filter OUTPUT: chain XSYN-ORP-d0 and the jump to it are gone",
	}
	raw := l.mustXsyn(t, "status", "d0", "--json", "--interval", "0") // exit 0: a report, not a failure
	var doc statusJSON
	if err := json.Unmarshal([]byte(raw), &doc); err != nil || len(doc.Interfaces) != 1 {
		t.Fatalf("status --json: %v\n%s", err, raw)
	}
	if st := doc.Interfaces[0]; st.Mode != "native" || st.NetfilterRules || !slices.Equal(st.RulesMissing, want) {
		t.Errorf("status --json after the reload: mode %s, netfilter_rules %v, missing %q; want native, false, %q", st.Mode, st.NetfilterRules, st.RulesMissing, want)
	}
	checkDocumentedKeys(t, raw, []string{"interface", "mode", "held_by", "program_id", "netfilter_rules", "netfilter_rules_missing", "services", "counters"})
	text := l.mustXsyn(t, "status", "d0", "--interval", "0")
	t.Logf("xsyn status d0 after the reload:\n%s", text)
	if !strings.Contains(text, "program id ") || !strings.Contains(text, "; netfilter rules INCOMPLETE; run attach again (systemctl reload xsyn@d0)\n") {
		t.Errorf("text status after the reload does not say INCOMPLETE:\n%s", text)
	}
	for _, w := range want {
		if !strings.Contains(text, "\n    "+w+"\n") {
			t.Errorf("text status after the reload lacks %q:\n%s", w, text)
		}
	}

	// The point: XDP still answers the IPv4 SYN, and the client's valid ACK meets no SYNPROXY.
	// IPv6, whose tables the reload left alone, still works.
	st0 := l.status(t)
	if err := connect("192.0.2.2:8080", cli4.Addr().String()); err == nil {
		t.Error("an IPv4 client connected without xsyn's filter rules; the reload proves nothing")
	} else {
		t.Logf("IPv4 client after the reload, as expected: %v", err)
	}
	st1 := l.waitStatus(t, func(s ifaceJSON) bool {
		return counter(s, "ipv4", "ack_cookie_valid") > counter(st0, "ipv4", "ack_cookie_valid")
	})
	for _, name := range []string{"synack_sent", "ack_cookie_valid"} {
		if counter(st1, "ipv4", name) == counter(st0, "ipv4", name) {
			t.Errorf("ipv4 %s did not move for the failing client: XDP did not answer it or pass its ACK on (%v)", name, st1.Counters["ipv4"])
		}
	}
	if err := connect("[2001:db8::2]:8080", cli6.Addr().String()); err != nil {
		t.Errorf("IPv6 client after an IPv4-only reload: %v", err)
	}

	// attach again (what systemctl reload xsyn@d0 runs) puts every piece back.
	l.mustXsyn(t, "attach", "d0", "--port", "8080", "--path", "synproxy")
	complete("after attach again")
}
