package main

import (
	"fmt"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/xsyn-project/xsyn/internal/repair"
	"github.com/xsyn-project/xsyn/internal/testutil"
)

// A firewall reload during a SYN flood, with `xsyn serve` running: serve puts the SYNPROXY
// path's rules back by itself, says so in its log and its metrics, and real clients connect
// again; a deliberate detach is never undone. With --repair=false, as before serve could repair,
// the damage stays and every client fails until attach runs again (TestRulesHealthE2E).
func TestServeRepairsRules(t *testing.T) {
	requireRootForTest(t)
	l := newE2ELab(t, "xsynrep", enterers["ip-netns-exec"])
	l.echoServer(t, 8080)
	before, err := l.dut.Run(netfilterState[0], netfilterState[1:]...)
	if err != nil {
		t.Fatal(err)
	}
	l.mustXsyn(t, "attach", "d0", "--port", "8080", "--path", "synproxy", "--no-timestamps")
	t.Cleanup(func() { l.xsyn(t, "detach", "d0") })
	addr := freeLoopbackAddr(t, l.dut)
	url := "http://" + addr + "/metrics"
	c := nsHTTPClient(l.dut)
	clients := func(when string) {
		t.Helper()
		for _, tc := range []struct{ addr, client string }{{"192.0.2.2:8080", cli4.Addr().String()}, {"[2001:db8::2]:8080", cli6.Addr().String()}} {
			if seen, err := l.connect(tc.addr); err != nil || seen != tc.client {
				t.Errorf("%s: client to %s: saw %q, %v; want served as %s", when, tc.addr, seen, err, tc.client)
			}
		}
	}
	clients("after attach")

	// --repair=false: serve reports the damage and leaves it.
	off := l.startServe(t, addr, "--repair=false")
	if out, err := l.dut.Run("iptables", "-F"); err != nil {
		t.Fatalf("iptables -F: %v\n%s", err, out)
	}
	body := c.mustGet(t, url)
	if v, ok := metricValue(body, `xsyn_netfilter_rules_complete{iface="d0"}`); !ok || v != 0 {
		t.Errorf("serve --repair=false after iptables -F: xsyn_netfilter_rules_complete = %v (present %v), want 0", v, ok)
	}
	if _, ok := metricValue(body, "xsyn_rules_checks_total"); ok {
		t.Errorf("serve --repair=false checks the rules:\n%s", body)
	}
	if err := off.stop(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}

	// serve puts back what it finds gone when it starts, and what reloads take later.
	srv := l.startServe(t, addr)
	c.waitFor(t, url, `xsyn_rules_repairs_total{iface="d0"}`, func(v float64) bool { return v >= 1 })
	clients("after serve started")
	stopFlood := l.pacedFlood(t)
	defer stopFlood()
	const repairs = `xsyn_rules_repairs_total{iface="d0"}`
	for i, reload := range []string{
		"iptables -F && iptables -X && ip6tables -F && ip6tables -X",
		"nft flush ruleset",
	} {
		if out, err := l.dut.Run("sh", "-c", reload); err != nil {
			t.Fatalf("%s: %v\n%s", reload, err, out)
		}
		start := time.Now()
		c.waitFor(t, url, repairs, func(v float64) bool { return v >= float64(i+2) })
		clients("after " + reload)
		t.Logf("%s: repaired, and clients served, %v after it", reload, time.Since(start))
		if st := l.status(t); !st.NetfilterRules || st.RulesMissing != nil {
			t.Errorf("after %s and the repair: status says netfilter rules %v, missing %q", reload, st.NetfilterRules, st.RulesMissing)
		}
	}
	body = c.mustGet(t, url)
	if v, ok := metricValue(body, `xsyn_rules_repair_failures_total{iface="d0"}`); !ok || v != 0 {
		t.Errorf("xsyn_rules_repair_failures_total = %v (present %v), want 0 (serve's log, below)", v, ok)
	}
	// Scrapes wait for a repair in progress: none read the rules half-way through one.
	if v, ok := metricValue(body, "xsyn_collection_errors_total"); !ok || v != 0 {
		t.Errorf("xsyn_collection_errors_total = %v (present %v), want 0 (serve's log, below)", v, ok)
	}

	// detach is not undone: serve checks again (twice: one check starts after detach ended) and
	// puts nothing back. The sysctls are the namespace's own again, although the reload took
	// the records of their original values: the repair put those back too.
	repaired, _ := metricValue(body, repairs)
	l.mustXsyn(t, "detach", "d0")
	checks, _ := metricValue(c.mustGet(t, url), "xsyn_rules_checks_total")
	body = c.waitFor(t, url, "xsyn_rules_checks_total", func(v float64) bool { return v >= checks+2 })
	if v, _ := metricValue(body, repairs); v != repaired {
		t.Errorf("%s went from %v to %v after detach", repairs, repaired, v)
	}
	after, err := l.dut.Run(netfilterState[0], netfilterState[1:]...)
	if err != nil {
		t.Fatal(err)
	}
	if after != before {
		t.Errorf("netfilter and sysctls after detach, with serve running, differ from before attach:\nbefore:\n%s\nafter:\n%s", before, after)
	}

	// One line per repair, naming the interface and what was gone.
	if err := srv.stop(syscall.SIGTERM); err != nil {
		t.Errorf("serve on SIGTERM: %v", err)
	}
	log := srv.stderr.String()
	t.Logf("serve's log:\n%s", log)
	if n := strings.Count(log, "d0: put back netfilter rules that were gone: "); float64(n) != repaired {
		t.Errorf("serve logged %d repairs of d0, and counted %v", n, repaired)
	}
	if strings.Contains(log, "no record") {
		t.Errorf("serve says rules attach recorded have no record:\n%s", log)
	}
	for _, want := range []string{
		"d0: put back netfilter rules that were gone: ipv4 filter INPUT: chain XSYN-IN-d0 ",
		"d0: put back netfilter rules that were gone: ipv4 raw PREROUTING: chain XSYN-RAW-d0 and the jump to it are gone",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("serve's log lacks %q:\n%s", want, log)
		}
	}
}

// waitFor scrapes until series satisfies ok, for at most 10s, and returns the last scrape.
func (c nsClient) waitFor(t *testing.T, url, series string, ok func(float64) bool) string {
	t.Helper()
	var body string
	testutil.Eventually(t, 10*time.Second, series, func() error {
		body = c.mustGet(t, url)
		if v, found := metricValue(body, series); !found || !ok(v) {
			return fmt.Errorf("%s = %v (present %v)", series, v, found)
		}
		return nil
	})
	return body
}

// pacedFlood sends spoofed SYNs to the protected port, 50 every 10ms, until stopped.
func (l *e2eLab) pacedFlood(t *testing.T) (stop func()) {
	t.Helper()
	frames := l.synFlood(t, 5000, 3)
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i = (i + 50) % len(frames) {
			select {
			case <-quit:
				return
			case <-tick.C:
			}
			if _, err := l.cliL.Send(frames[i : i+50]); err != nil {
				t.Errorf("flood: %v", err)
				return
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(quit); <-done }) }
}

// Rules attach installed without recording them (an xsyn from before the repair) cannot be put
// back: serve says so when it starts, naming the interface, and repairs nothing.
func TestServeNamesUnrecordedRules(t *testing.T) {
	requireRootForTest(t)
	l := newE2ELab(t, "xsynunr", enterers["ip-netns-exec"])
	l.mustXsyn(t, "attach", "d0", "--port", "8080", "--mode", "netfilter")
	t.Cleanup(func() { l.xsyn(t, "detach", "d0") })
	err := l.dut.Do(func() error {
		dir, err := repair.DefaultDir()
		if err != nil {
			return err
		}
		return (&repair.Store{Dir: dir}).Delete("d0")
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := l.startServe(t, freeLoopbackAddr(t, l.dut))
	if err := srv.stop(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if want := "d0: its netfilter rules have no record of what attach installed, so they cannot be put back after a firewall reload: run attach for it again"; !strings.Contains(srv.stderr.String(), want) {
		t.Errorf("serve's log lacks %q:\n%s", want, srv.stderr)
	}
}
