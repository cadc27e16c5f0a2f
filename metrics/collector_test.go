package metrics

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/xsyn-project/xsyn/internal/protect"
	"github.com/xsyn-project/xsyn/loader"
	"github.com/xsyn-project/xsyn/spec"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

const (
	synproxyFixture = "testdata/synproxy" // 4 CPUs, in the kernel's format
	netstatFixture  = "testdata/netstat"  // Linux 6.18's /proc/net/netstat, the exported counters set
)

func TestParseSynproxyStats(t *testing.T) {
	got, err := ReadSynproxyStats(synproxyFixture)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]uint64{
		"entries":        0,
		"syn_received":   0xa + 0x1a + 0xffffffff, // past 2^32: each CPU's is 32 bits, the sum is not
		"cookie_invalid": 3 + 1,
		"cookie_valid":   0xff + 0x1000 + 1,
		"cookie_retrans": 1,
		"conn_reopened":  2,
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("summed statistics:\n got %v\nwant %v", got, want)
	}

	for _, tc := range []struct{ name, in, want string }{
		{"empty", "", "empty file"},
		{"short row", "entries\tsyn_received\n00000000\n", "row 1 has 1 columns, the header 2"},
		{"not hex", "entries\tsyn_received\n00000000\t0000000g\n", "row 1, column syn_received"},
	} {
		if _, err := parseSynproxyStats(strings.NewReader(tc.in)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one saying %q", tc.name, err, tc.want)
		}
	}
	// Columns are found by name, wherever they are.
	got, err = parseSynproxyStats(strings.NewReader("cookie_valid entries new_column\n0000000f 00000000 00000001\n00000001 00000000 00000001\n"))
	if err != nil || got["cookie_valid"] != 16 || got["new_column"] != 2 {
		t.Errorf("reordered columns: %v, %v", got, err)
	}
}

func TestParseNetstat(t *testing.T) {
	got, err := ReadNetstat(netstatFixture)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]uint64{
		"TcpExtSyncookiesSent": 1001, "TcpExtSyncookiesRecv": 1002, "TcpExtSyncookiesFailed": 1003,
		"TcpExtListenOverflows": 1004, "TcpExtListenDrops": 1005, "TcpExtTCPReqQFullDrop": 1006,
		"TcpExtTSEcrRejected":        5_000_000_000, // 64 bits: the kernel's are unsigned long
		"TcpExtTCPReqQFullDoCookies": 7, "TcpExtEmbryonicRsts": 0, "IpExtInOctets": 0, "MPTcpExtMPCapableSYNRX": 0,
	} {
		if v, ok := got[name]; !ok || v != want {
			t.Errorf("%s = %v (found %v), want %d", name, v, ok, want)
		}
	}

	for _, tc := range []struct{ name, in, want string }{
		{"names without values", "TcpExt: SyncookiesSent\n", "line 1: section TcpExt has names but no values"},
		{"values of another section", "TcpExt: SyncookiesSent\nIpExt: 1\n", `line 2: values of section "IpExt", want "TcpExt"`},
		{"short row", "TcpExt: SyncookiesSent SyncookiesRecv\nTcpExt: 1\n", "line 2: section TcpExt has 2 names and 1 values"},
		{"not decimal", "IpExt: InOctets\nIpExt: 0\nTcpExt: SyncookiesSent\nTcpExt: 1f\n", "line 4, TcpExtSyncookiesSent"},
		{"no section", "SyncookiesSent\n", "line 1: no section name"},
	} {
		if _, err := parseNetstat(strings.NewReader(tc.in)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one saying %q", tc.name, err, tc.want)
		}
	}
	// Counters are found by name: a kernel before 6.15 has no TSEcrRejected, a later one may
	// add or move counters.
	got, err = parseNetstat(strings.NewReader("TcpExt: ListenDrops NewCounter SyncookiesSent\nTcpExt: 3 4 5\n\n"))
	if err != nil || got["TcpExtSyncookiesSent"] != 5 || got["TcpExtListenDrops"] != 3 || len(got) != 3 {
		t.Errorf("reordered counters: %v, %v", got, err)
	}
}

// The kernel's TCP counters are the namespace's, whatever xsyn protects: exported with nothing
// attached, and only those the running kernel has.
func TestKernelCounters(t *testing.T) {
	old := filepath.Join(t.TempDir(), "netstat")
	if err := os.WriteFile(old, []byte("TcpExt: SyncookiesSent SyncookiesRecv SyncookiesFailed ListenOverflows ListenDrops TCPReqQFullDrop\n"+
		"TcpExt: 10 11 12 13 14 15\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(New(fakeSource{}, Options{SynproxyStats: synproxyFixture, Netstat: old}))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]float64{
		"xsyn_kernel_syncookies_sent_total": 10, "xsyn_kernel_syncookies_recv_total": 11, "xsyn_kernel_syncookies_failed_total": 12,
		"xsyn_kernel_listen_overflows_total": 13, "xsyn_kernel_listen_drops_total": 14, "xsyn_kernel_reqq_full_drop_total": 15,
	} {
		if v, ok := find(mfs, name, nil); !ok || v != want {
			t.Errorf("%s = %v (found %v), want %v", name, v, ok, want)
		}
	}
	if _, ok := find(mfs, "xsyn_kernel_tsecr_rejected_total", nil); ok {
		t.Error("xsyn_kernel_tsecr_rejected_total exported from a kernel without TcpExtTSEcrRejected")
	}
	if v, _ := find(mfs, "xsyn_collection_errors_total", nil); v != 0 {
		t.Errorf("xsyn_collection_errors_total %v: a counter the kernel lacks is not an error", v)
	}
}

// fakeSource stands in for the kernel: canned statuses, or errors.
type fakeSource struct {
	ifaces   []string
	listErr  error
	statuses map[string]protect.Status
	errs     map[string]error
}

func (f fakeSource) Interfaces() ([]string, error) { return f.ifaces, f.listErr }

func (f fakeSource) Status(iface string) (protect.Status, error) {
	if err := f.errs[iface]; err != nil {
		return protect.Status{}, err
	}
	return f.statuses[iface], nil
}

// distinct gives every counter field its own value: base, base+1, ... Fields are listed by hand,
// newer ones last, so that a new field does not renumber the golden file; TestDistinct makes
// sure none is forgotten (a forgotten one would read 0 and prove nothing).
func distinct(base uint64) loader.Counters {
	var c loader.Counters
	fields := []*uint64{&c.SynReceived, &c.SynackSent, &c.AckCookieValid, &c.AckCookieInvalid, &c.EstablishedPassed,
		&c.PassNotIp, &c.PassNotTcp, &c.PassNotProtected, &c.PassFragment, &c.PassVlanDepth,
		&c.PassMalformed, &c.PassNoRoom, &c.PassCookieError, &c.DropNoConn, &c.DropMalformed, &c.DropInternal,
		&c.HandoffAssigned, &c.HandoffRefused, &c.PassNoListener, &c.PassTimeWait, &c.PassNotForHost, &c.DropFragment, &c.DropAh, &c.DropExtHdrChain, &c.PassRouted,
		&c.PassOnDemandIdle, &c.PassKernelCookie}
	for i, f := range fields {
		*f = base + uint64(i)
	}
	return c
}

func TestDistinct(t *testing.T) {
	seen := map[uint64]string{}
	for _, f := range loader.Fields(distinct(100)) {
		if f.Value == 0 {
			t.Errorf("distinct leaves field %s at 0: add it to its list", f.Name)
		} else if other, ok := seen[f.Value]; ok {
			t.Errorf("fields %s and %s both %d", other, f.Name, f.Value)
		}
		seen[f.Value] = f.Name
	}
}

func twoInterfaces() fakeSource {
	svcs := []spec.Service{
		{Family: spec.IPv4, Dst: netip.MustParsePrefix("0.0.0.0/0"), Port: 80},
		{Family: spec.IPv6, Dst: netip.MustParsePrefix("::/0"), Port: 80},
		{Family: spec.IPv4, Dst: netip.MustParsePrefix("0.0.0.0/0"), Port: 443},
		{Family: spec.IPv4, Dst: netip.MustParsePrefix("0.0.0.0/0"), Port: 8080, Handoff: true, OnDemand: 20000},
		{Family: spec.IPv6, Dst: netip.MustParsePrefix("::/0"), Port: 8080, Handoff: true, OnDemand: 20000},
	}
	onDemand := []loader.ServiceOnDemand{
		{Service: svcs[3], ID: 3, OnDemandState: loader.OnDemandState{Threshold: 20000, Cookies: true, Rate: 35000, Switches: 3}},
		{Service: svcs[4], ID: 4, OnDemandState: loader.OnDemandState{Threshold: 20000, Rate: 10, Switches: 0}},
	}
	return fakeSource{
		ifaces: []string{"eth0", "eth1"},
		statuses: map[string]protect.Status{
			"eth0": {Iface: "eth0", Mode: "native", Rules: true, Services: svcs,
				Counters: &loader.FamilyCounters{IPv4: distinct(100), IPv6: distinct(200), Other: distinct(300)}, OnDemand: onDemand},
			"eth1": {Iface: "eth1", Mode: protect.ModeNetfilterOnly, Rules: true},
		},
	}
}

func gatherText(t *testing.T, g prometheus.Gatherer, names ...string) []byte {
	t.Helper()
	b, err := testutil.GatherAndFormat(g, expfmt.TypeTextPlain, names...)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// allNamesBut lists the metric families g gathers, without the excluded ones.
func allNamesBut(t *testing.T, g prometheus.Gatherer, exclude ...string) []string {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, mf := range mfs {
		if !contains(exclude, mf.GetName()) {
			names = append(names, mf.GetName())
		}
	}
	return names
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// The whole exposition for a native XDP interface and a netfilter-only one, in a golden file
// (go test ./metrics -run Golden -update rewrites it). build_info is left out: its goversion
// label depends on the toolchain.
func TestCollectGolden(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(New(twoInterfaces(), Options{Version: "v1.2.3", SynproxyStats: synproxyFixture, Netstat: netstatFixture}))
	got := gatherText(t, reg, allNamesBut(t, reg, "xsyn_build_info")...)
	golden := filepath.Join("testdata", "collect.golden")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("exposition differs from %s (rerun with -update if intended):\n%s", golden, got)
	}

	info := fmt.Sprintf(`# HELP xsyn_build_info 1, labelled with the xsyn version and the Go version it was built with.
# TYPE xsyn_build_info gauge
xsyn_build_info{goversion=%q,version="v1.2.3"} 1
`, runtime.Version())
	if err := testutil.GatherAndCompare(reg, strings.NewReader(info), "xsyn_build_info"); err != nil {
		t.Error(err)
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %+v", err, problems)
	}
}

// Every counter field of the BPF program becomes a series, named by the rule in
// bpf/counters.h, without a table of counters in Go: a new field shows up by itself.
func TestEveryCounterFieldExported(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(New(twoInterfaces(), Options{SynproxyStats: synproxyFixture, Netstat: netstatFixture}))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]loader.Counters{"ipv4": distinct(100), "ipv6": distinct(200), "other": distinct(300)}
	for fam, cs := range want {
		for _, f := range loader.Fields(cs) {
			name, labels := "xsyn_"+f.Name+"_total", map[string]string{"iface": "eth0", "family": fam}
			switch {
			case strings.HasPrefix(f.Name, "pass__"):
				name, labels["reason"] = "xsyn_passed_total", strings.TrimPrefix(f.Name, "pass__")
			case strings.HasPrefix(f.Name, "drop__"):
				name, labels["reason"] = "xsyn_dropped_total", strings.TrimPrefix(f.Name, "drop__")
			case fam == "other":
				if _, ok := find(mfs, name, labels); ok {
					t.Errorf("%s%v exported: the family \"other\" has no protected-service counters", name, labels)
				}
				continue
			}
			if v, ok := find(mfs, name, labels); !ok || v != float64(f.Value) {
				t.Errorf("%s%v = %v (found %v), want %d from field %s", name, labels, v, ok, f.Value, f.Name)
			}
		}
	}
}

// find returns the value of the series name{labels} (exactly those labels).
func find(mfs []*dto.MetricFamily, name string, labels map[string]string) (float64, bool) {
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			if len(m.GetLabel()) != len(labels) {
				continue
			}
			for _, l := range m.GetLabel() {
				if v, ok := labels[l.GetName()]; !ok || v != l.GetValue() {
					continue metric
				}
			}
			switch {
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue(), true
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue(), true
			}
		}
	}
	return 0, false
}

// A source that cannot be read is counted and reported, and the scrape still returns the rest.
func TestCollectionErrors(t *testing.T) {
	src := twoInterfaces()
	src.ifaces = append(src.ifaces, "eth2", "eth3")
	src.errs = map[string]error{
		"eth2": errors.New("map went away"),
		"eth3": fmt.Errorf("%w: eth3", protect.ErrNotProtected), // detached since listed: not an error
	}
	missing := filepath.Join(t.TempDir(), "no-synproxy")
	noNetstat := filepath.Join(t.TempDir(), "no-netstat")
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(New(src, Options{SynproxyStats: missing, Netstat: noNetstat}))

	for scrape := 1; scrape <= 2; scrape++ {
		mfs, err := reg.Gather()
		if err == nil || !strings.Contains(err.Error(), missing) || !strings.Contains(err.Error(), "read eth2: map went away") ||
			!strings.Contains(err.Error(), "read kernel TCP counters: open "+noNetstat) {
			t.Errorf("scrape %d: error %v; want one naming the synproxy file, the netstat file and eth2", scrape, err)
		}
		if strings.Contains(fmt.Sprint(err), "eth3") {
			t.Errorf("scrape %d: an interface detached meanwhile reported as an error: %v", scrape, err)
		}
		if v, _ := find(mfs, "xsyn_collection_errors_total", nil); v != float64(3*scrape) {
			t.Errorf("scrape %d: xsyn_collection_errors_total %v, want %d (three failed sources per scrape)", scrape, v, 3*scrape)
		}
		if _, ok := find(mfs, "xsyn_kernel_syncookies_sent_total", nil); ok {
			t.Errorf("scrape %d: kernel TCP counters exported from a missing file", scrape)
		}
		if v, ok := find(mfs, "xsyn_synack_sent_total", map[string]string{"iface": "eth0", "family": "ipv4"}); !ok || v != 101 {
			t.Errorf("scrape %d: eth0 counters missing after other sources failed: %v %v", scrape, v, ok)
		}
		if _, ok := find(mfs, "xsyn_attached", map[string]string{"iface": "eth1", "mode": "netfilter-only"}); !ok {
			t.Errorf("scrape %d: eth1 missing after other sources failed", scrape)
		}
		if _, ok := find(mfs, "xsyn_netfilter_synproxy_cookie_valid_total", nil); ok {
			t.Errorf("scrape %d: synproxy statistics exported from a missing file", scrape)
		}
	}

	// A failed listing still exports the interfaces it found.
	src = twoInterfaces()
	src.ifaces, src.listErr = []string{"eth0"}, errors.New("iptables: permission denied")
	reg = prometheus.NewPedanticRegistry()
	reg.MustRegister(New(src, Options{SynproxyStats: synproxyFixture, Netstat: netstatFixture}))
	mfs, err := reg.Gather()
	if err == nil || !strings.Contains(err.Error(), "list protected interfaces: iptables: permission denied") {
		t.Errorf("failed listing: error %v", err)
	}
	if v, _ := find(mfs, "xsyn_collection_errors_total", nil); v != 1 {
		t.Errorf("failed listing: xsyn_collection_errors_total %v, want 1", v)
	}
	if _, ok := find(mfs, "xsyn_attached", map[string]string{"iface": "eth0", "mode": "native"}); !ok {
		t.Error("failed listing: eth0, which was listed, is missing")
	}
}

// xsyn_netfilter_rules_complete is 1 only with every rule there, in either mode: 0 when a reload
// took some of them (the interface is still listed by what is left) and when XDP is attached
// without any rules at all, unless every service takes the handoff path, which needs none.
func TestRulesComplete(t *testing.T) {
	gone := []string{"ipv4 filter INPUT: chain XSYN-IN-eth1 and the jump to it are gone"}
	handoff := spec.Service{Family: spec.IPv4, Dst: netip.MustParsePrefix("0.0.0.0/0"), Port: 80, Handoff: true}
	synproxy := spec.Service{Family: spec.IPv4, Dst: netip.MustParsePrefix("0.0.0.0/0"), Port: 22}
	src := fakeSource{
		ifaces: []string{"eth0", "eth1", "eth2", "eth3", "eth4", "eth5", "eth6"},
		statuses: map[string]protect.Status{
			"eth0": {Iface: "eth0", Mode: "native", Rules: true, Counters: &loader.FamilyCounters{}},
			"eth1": {Iface: "eth1", Mode: protect.ModeNetfilterOnly, Rules: true, RulesMissing: gone},
			"eth2": {Iface: "eth2", Mode: "generic", Rules: false, RulesMissing: gone, Counters: &loader.FamilyCounters{}},
			"eth3": {Iface: "eth3", Mode: protect.ModeNetfilterOnly, Rules: true},
			// Every service on the handoff path: no rules, none needed.
			"eth4": {Iface: "eth4", Mode: "native", Rules: false, Services: []spec.Service{handoff}, Counters: &loader.FamilyCounters{}},
			// Both paths, the SYNPROXY one's rules gone.
			"eth5": {Iface: "eth5", Mode: "native", Rules: false, RulesMissing: gone,
				Services: []spec.Service{handoff, synproxy}, Counters: &loader.FamilyCounters{}},
			// XDP without services or rules: nothing says none are needed.
			"eth6": {Iface: "eth6", Mode: "native", Rules: false, Counters: &loader.FamilyCounters{}},
		},
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(New(src, Options{SynproxyStats: synproxyFixture}))
	want := `# HELP xsyn_netfilter_rules_complete 1 when the interface has every netfilter chain and jump that xsyn attach installed; 0 when some are gone, e.g. a firewall reload replaced the filter table: the ACKs of real clients may then meet no SYNPROXY and fail. xsyn status IFACE names what is missing; xsyn attach again (systemctl reload xsyn@IFACE) repairs it.
# TYPE xsyn_netfilter_rules_complete gauge
xsyn_netfilter_rules_complete{iface="eth0"} 1
xsyn_netfilter_rules_complete{iface="eth1"} 0
xsyn_netfilter_rules_complete{iface="eth2"} 0
xsyn_netfilter_rules_complete{iface="eth3"} 1
xsyn_netfilter_rules_complete{iface="eth4"} 1
xsyn_netfilter_rules_complete{iface="eth5"} 0
xsyn_netfilter_rules_complete{iface="eth6"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "xsyn_netfilter_rules_complete"); err != nil {
		t.Error(err)
	}
}
