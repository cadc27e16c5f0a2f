package repair

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	promtest "github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/xsyn-project/xsyn/internal/netlab"
	"github.com/xsyn-project/xsyn/internal/testutil"
	"github.com/xsyn-project/xsyn/loader"
	"github.com/xsyn-project/xsyn/rules"
	"github.com/xsyn-project/xsyn/spec"
)

// nsLab is a network namespace with an interface r0, and a Recorder and a Repairer acting in it
// through the system's iptables, with their store and lock in the test's own directories.
type nsLab struct {
	host *netlab.Host
	rec  *Recorder
	rep  *Repairer
}

func newNSLab(t *testing.T) *nsLab {
	t.Helper()
	testutil.RequireRoot(t, "network namespaces, netfilter")
	lab := testutil.Lab(t, "xsynrp")
	a, err := lab.Host("a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := lab.Host("b")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := netlab.Veth(a, "r0", nil, b, "p0", nil); err != nil {
		t.Fatal(err)
	}
	l := &nsLab{host: a}
	locks := t.TempDir()
	err = a.Do(func() error {
		ap, err := rules.NewApplier()
		if err != nil {
			return err
		}
		l.rec = &Recorder{Applier: ap, Store: &Store{Dir: filepath.Join(t.TempDir(), "netns")}}
		l.rep = New(l.rec, loader.Options{Locks: locks})
		l.rep.Metrics = NewMetrics()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// do runs fn in the namespace.
func (l *nsLab) do(t *testing.T, fn func() error) {
	t.Helper()
	if err := l.host.Do(fn); err != nil {
		t.Fatal(err)
	}
}

// sh runs a shell command line in the namespace.
func (l *nsLab) sh(t *testing.T, line string) string {
	t.Helper()
	out, err := l.host.Run("sh", "-c", line)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// plan is the plan of configuration src for r0.
func plan(t *testing.T, src string) rules.Plan {
	t.Helper()
	cfg, err := spec.ParseConfig("test.conf", []byte(src), nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := cfg.For("r0")
	if err != nil {
		t.Fatal(err)
	}
	p, err := rules.Build("r0", s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

const conf = "synproxy in inface r0 dport 8080 path synproxy accept\n"

func (l *nsLab) check(t *testing.T) []Result {
	t.Helper()
	var res []Result
	l.do(t, func() error { res = l.rep.Check(); return nil })
	return res
}

// xsynRules is every rule and chain of xsyn's in the namespace, both families.
func (l *nsLab) xsynRules(t *testing.T) string {
	t.Helper()
	return l.sh(t, "(iptables-save; ip6tables-save) | grep XSYN || true")
}

// A firewall reload is repaired, and what was missing said; a detach is never undone, nor an
// interface made again under the same name given rules it never had.
func TestRepair(t *testing.T) {
	l := newNSLab(t)
	l.do(t, func() error { return l.rec.Apply(plan(t, conf)) })
	applied := l.xsynRules(t)
	if res := l.check(t); res != nil {
		t.Fatalf("Check right after attach: %+v; want nothing to do", res)
	}

	for _, reload := range []string{
		"iptables -F",
		"iptables -F && iptables -X && ip6tables -t raw -F",
		"nft flush ruleset",
		"sysctl -q -w net.netfilter.nf_conntrack_tcp_loose=1", // sysctl --system
	} {
		l.sh(t, reload)
		res := l.check(t)
		if len(res) != 1 || res[0].Iface != "r0" || res[0].Err != nil || len(res[0].Missing) == 0 {
			t.Fatalf("Check after %s: %+v; want r0 repaired", reload, res)
		}
		t.Logf("after %s: %s", reload, strings.Join(res[0].Missing, "; "))
		if now := l.xsynRules(t); now != applied {
			t.Logf("%s", diffLines(now, applied))
			t.Errorf("rules after the repair of %s:\n%s\nwant as attach left them:\n%s", reload, now, applied)
		}
		if res := l.check(t); res != nil {
			t.Errorf("Check after the repair of %s: %+v; want nothing to do", reload, res)
		}
	}
	if got := l.sh(t, "sysctl -n net.netfilter.nf_conntrack_tcp_loose"); got != "0\n" {
		t.Errorf("nf_conntrack_tcp_loose after the repair: %q, want 0", got)
	}
	if got := promtest.ToFloat64(l.rep.Metrics.repairs.WithLabelValues("r0")); got != 4 {
		t.Errorf("repairs of r0: %v, want 4", got)
	}
	if got := promtest.ToFloat64(l.rep.Metrics.failures.WithLabelValues("r0")); got != 0 {
		t.Errorf("failures of r0: %v, want 0", got)
	}

	// detach: the record goes first, and nothing brings the rules back.
	l.do(t, func() error { return l.rec.Remove("r0") })
	if ifaces, err := l.rec.Store.Interfaces(); err != nil || ifaces != nil {
		t.Errorf("records after detach: %q, %v", ifaces, err)
	}
	if res := l.check(t); res != nil {
		t.Errorf("Check after detach: %+v; want nothing", res)
	}
	if now := l.xsynRules(t); now != "" {
		t.Errorf("xsyn's rules after detach and a check:\n%s", now)
	}
}

// A detach that takes the lock between a check and its repair wins: the repair finds no record.
func TestRepairYieldsToDetach(t *testing.T) {
	l := newNSLab(t)
	l.do(t, func() error { return l.rec.Apply(plan(t, conf)) })
	l.sh(t, "iptables -F")
	lock := l.rep.Lock
	l.rep.Lock = func() (func(), error) {
		if err := l.rec.Remove("r0"); err != nil { // the detach that held the lock just before
			return nil, err
		}
		return lock()
	}
	if res := l.check(t); res != nil {
		t.Errorf("Check with a detach before the lock: %+v; want nothing", res)
	}
	if now := l.xsynRules(t); now != "" {
		t.Errorf("xsyn's rules after a detach raced a repair:\n%s", now)
	}
}

// An interface deleted and made again under the same name is not the one attach protected.
func TestRepairSkipsNewInterface(t *testing.T) {
	l := newNSLab(t)
	l.do(t, func() error { return l.rec.Apply(plan(t, conf)) })
	l.sh(t, "ip link del r0 && ip link add r0 type veth peer name r1 && iptables -F")
	if res := l.check(t); res != nil {
		t.Errorf("Check of a new r0: %+v; want nothing", res)
	}
	if now := l.sh(t, "iptables -S INPUT"); strings.Contains(now, "XSYN-IN-r0") {
		t.Errorf("rules of the old r0 put back on the new one:\n%s", now)
	}
}

// A repair that cannot succeed (the reload deleted the user chain a statement jumps to) fails
// with the reason, counted, and changes nothing; once the chain is back, the next check repairs.
func TestRepairFailure(t *testing.T) {
	l := newNSLab(t)
	l.sh(t, "iptables -N TRAP && ip6tables -N TRAP")
	l.do(t, func() error { return l.rec.Apply(plan(t, "synproxy in inface r0 dport 22 action TRAP\n")) })
	l.sh(t, "iptables -F && iptables -X")
	before := l.sh(t, "iptables-save; ip6tables-save | grep -v '^#'")
	res := l.check(t)
	if len(res) != 1 || res[0].Err == nil || !strings.Contains(res[0].Err.Error(), "chain TRAP does not exist") {
		t.Fatalf("Check without TRAP: %+v; want the precondition named", res)
	}
	if now := l.sh(t, "iptables-save; ip6tables-save | grep -v '^#'"); strings.Count(now, "XSYN") != strings.Count(before, "XSYN") {
		t.Errorf("a failed repair changed the rules:\nbefore:\n%s\nafter:\n%s", before, now)
	}
	if got := promtest.ToFloat64(l.rep.Metrics.failures.WithLabelValues("r0")); got != 1 {
		t.Errorf("failures of r0: %v, want 1", got)
	}
	l.sh(t, "iptables -N TRAP")
	if res := l.check(t); len(res) != 1 || res[0].Err != nil {
		t.Errorf("Check with TRAP back: %+v; want r0 repaired", res)
	}
}

// A record that cannot be written fails the apply and puts the rules back as they were: never
// rules without a record (serve would not repair them) nor a record of rules not there.
func TestRecorderRollsBack(t *testing.T) {
	l := newNSLab(t)
	l.do(t, func() error { return l.rec.Apply(plan(t, conf)) })
	first := l.xsynRules(t)
	good := l.rec.Store.Dir
	l.rec.Store.Dir = filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(l.rec.Store.Dir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	var err error
	l.do(t, func() error {
		err = l.rec.Apply(plan(t, "synproxy in inface r0 dport 9090 path synproxy accept\n"))
		return nil
	})
	if err == nil || !strings.Contains(err.Error(), "save the applied rules of r0") {
		t.Errorf("Apply with an unwritable store: %v; want the failed save", err)
	}
	if now := l.xsynRules(t); now != first {
		t.Errorf("rules after a failed record:\n%s\nwant the previous ones:\n%s", now, first)
	}
	l.rec.Store.Dir = good
	if rec, ok, err := l.rec.Store.Load("r0"); err != nil || !ok || !slices.ContainsFunc(rec.Plan.Families[0].Chains[0].Rules, func(r rules.Rule) bool { return slices.Contains(r.Args, "8080") }) {
		t.Errorf("record after a failed apply: %v, %v; want the first plan's", ok, err)
	}
}

// Run checks at each tick of the injected ticker, reports each repair, counts the checks, and
// stops with its context.
func TestRun(t *testing.T) {
	l := newNSLab(t)
	l.do(t, func() error { return l.rec.Apply(plan(t, conf)) })
	ticks, reports := make(chan time.Time), make(chan Result, 4)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		l.host.Do(func() error { l.rep.Run(ctx, ticks, func(r Result) { reports <- r }); return nil })
	}()
	ticks <- time.Time{}
	ticks <- time.Time{} // the first check is over once the second tick is taken
	select {
	case r := <-reports:
		t.Errorf("report with nothing to repair: %+v", r)
	default:
	}
	l.sh(t, "iptables -F")
	ticks <- time.Time{}
	r := <-reports
	if r.Iface != "r0" || r.Err != nil || !slices.Contains(r.Missing, "ipv4 filter INPUT: chain XSYN-IN-r0 is flushed and the jump to it is gone") {
		t.Errorf("report after iptables -F: %+v", r)
	}
	cancel()
	<-done
	if got := promtest.ToFloat64(l.rep.Metrics.checks); got != 3 {
		t.Errorf("checks: %v, want 3", got)
	}
}

func diffLines(a, b string) string {
	var out []string
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := range max(len(al), len(bl)) {
		var x, y string
		if i < len(al) {
			x = al[i]
		}
		if i < len(bl) {
			y = bl[i]
		}
		if x != y {
			out = append(out, "got  "+x, "want "+y)
		}
	}
	return strings.Join(out, "\n")
}

// A record is only ever xsyn's own chains of its interface: one altered to name another chain
// (say, to flush the host's INPUT or insert a rule there) is refused by the check and by the
// repair, and the host's rules stay as they were.
func TestRepairRefusesForeignRecord(t *testing.T) {
	l := newNSLab(t)
	l.do(t, func() error { return l.rec.Apply(plan(t, conf)) })
	l.sh(t, "iptables -A INPUT -p tcp --dport 22 -j ACCEPT && iptables -F XSYN-IN-r0")
	rec, ok, err := l.rec.Store.Load("r0")
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	for _, p := range []*rules.Plan{&rec.Live, &rec.Plan} {
		for i := range p.Families[0].Chains {
			if p.Families[0].Chains[i].Table == rules.TableFilter {
				p.Families[0].Chains[i].Name = "INPUT"
				p.Families[0].Chains[i].Rules = []rules.Rule{{Origin: "attacker", Args: []string{"-j", "DROP"}}}
				break
			}
		}
	}
	if err := l.rec.Store.Save("r0", rec); err != nil {
		t.Fatal(err)
	}
	before := l.sh(t, "iptables -S INPUT")
	res := l.check(t)
	if len(res) != 1 || !errors.Is(res[0].Err, rules.ErrBadPlan) {
		t.Errorf("Check of a record naming INPUT: %+v; want ErrBadPlan", res)
	}
	if after := l.sh(t, "iptables -S INPUT"); after != before {
		t.Errorf("INPUT changed by a repair from an altered record:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if got := promtest.ToFloat64(l.rep.Metrics.failures.WithLabelValues("r0")); got != 1 {
		t.Errorf("failures of r0: %v, want 1", got)
	}
}
