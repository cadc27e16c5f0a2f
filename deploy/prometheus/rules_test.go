package prometheus

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/template"
)

const rulesFile = "xsyn-rules.yml"

// The runbook links point at the docs: these files, and the sections of each they may name.
const runbookBase = "https://github.com/xsyn-project/xsyn/blob/main/docs/"

var runbookAnchors = map[string][]string{
	"operator-guide.md": {"under-attack", "fallback", "exporter"},
	"metrics.md":        {"the-handoff-path", "kernel-tcp-counters", "a-flood-reaching-the-stack"},
}

var severities = []string{"critical", "warning", "info"}

func newCatalog(t *testing.T) Catalog {
	t.Helper()
	cat, err := NewCatalog()
	if err != nil {
		t.Fatal(err)
	}
	return cat
}

// loadRules parses the rule file as Prometheus does, strictly: unknown fields, bad expressions
// and templates that do not parse are errors.
func loadRules(t *testing.T) []rulefmt.Rule {
	t.Helper()
	groups, errs := rulefmt.ParseFile(rulesFile, false, model.LegacyValidation,
		parser.NewParser(parser.Options{}), slog.New(slog.DiscardHandler))
	for _, err := range errs {
		t.Error(err)
	}
	if len(errs) > 0 {
		t.FailNow()
	}
	var rules []rulefmt.Rule
	for _, g := range groups.Groups {
		rules = append(rules, g.Rules...)
	}
	return rules
}

func TestRuleFile(t *testing.T) {
	rules := loadRules(t)
	var alerts []string
	for _, r := range rules {
		if r.Alert == "" {
			t.Errorf("recording rule %s: the file has alerts only, and the checks below assume it", r.Record)
			continue
		}
		alerts = append(alerts, r.Alert)
		if !slices.Contains(severities, r.Labels["severity"]) {
			t.Errorf("%s: severity %q, want one of %v", r.Alert, r.Labels["severity"], severities)
		}
		for _, a := range []string{"summary", "description", "runbook_url"} {
			if strings.TrimSpace(r.Annotations[a]) == "" {
				t.Errorf("%s: no %s annotation", r.Alert, a)
			}
		}
		page, ok := strings.CutPrefix(r.Annotations["runbook_url"], runbookBase)
		file, anchor, _ := strings.Cut(page, "#")
		if !ok || !slices.Contains(runbookAnchors[file], anchor) {
			t.Errorf("%s: runbook_url %q, want %s followed by one of %v", r.Alert, r.Annotations["runbook_url"], runbookBase, runbookAnchors)
		}
	}
	want := []string{"XsynUnderAttack", "XsynForgedAcks", "XsynFallbackActive", "XsynXDPGenericMode",
		"XsynInterfaceUnprotected", "XsynNetfilterRulesIncomplete", "XsynHandoffRefused",
		"XsynSynFloodReachesStack", "XsynSynproxyTimestampStall",
		"XsynExporterDown", "XsynExporterCollectionErrors"}
	if !slices.Equal(alerts, want) {
		t.Errorf("alerts %v, want %v", alerts, want)
	}
	// The exporter-down alert is the one place an operator must read that protection is fine.
	for _, r := range rules {
		if r.Alert == "XsynExporterDown" && !strings.Contains(r.Annotations["description"], "Protection is NOT affected") {
			t.Errorf("XsynExporterDown must say that protection is NOT affected")
		}
	}
}

// templateLabel finds the labels an annotation reads.
var templateLabel = regexp.MustCompile(`\$labels\.([a-zA-Z_][a-zA-Z0-9_]*)`)

func TestRulesUseRealMetrics(t *testing.T) {
	chk := NewChecker(newCatalog(t))
	for _, r := range loadRules(t) {
		res, err := chk.Check(r.Expr)
		if err != nil {
			t.Errorf("%s: %v", r.Alert, err)
			continue
		}
		// Routing and the annotations need to know which host.
		if !res.HasLabel("instance") {
			t.Errorf("%s: the alert loses the instance label (keeps %v)", r.Alert, res.Labels)
		}
		for name, text := range r.Annotations {
			for _, m := range templateLabel.FindAllStringSubmatch(text, -1) {
				if !res.HasLabel(m[1]) {
					t.Errorf("%s: annotation %s reads $labels.%s, which the alert never carries (it has %v)", r.Alert, name, m[1], res.Labels)
				}
			}
		}
	}
}

// TestChecker shows the checks reject what they exist to reject, and accept every PromQL
// example of docs/metrics.md.
func TestChecker(t *testing.T) {
	cat := newCatalog(t)
	chk := NewChecker(cat)

	want := []string{"xsyn_ack_cookie_invalid_total", "xsyn_ack_cookie_valid_total", "xsyn_attached",
		"xsyn_build_info", "xsyn_collection_errors_total", "xsyn_dropped_total", "xsyn_established_passed_total",
		"xsyn_handoff_assigned_total", "xsyn_handoff_refused_total",
		"xsyn_kernel_listen_drops_total", "xsyn_kernel_listen_overflows_total", "xsyn_kernel_reqq_full_drop_total",
		"xsyn_kernel_syncookies_failed_total", "xsyn_kernel_syncookies_recv_total", "xsyn_kernel_syncookies_sent_total",
		"xsyn_kernel_tsecr_rejected_total",
		"xsyn_netfilter_rules_complete", "xsyn_netfilter_synproxy_conn_reopened_total",
		"xsyn_netfilter_synproxy_cookie_invalid_total", "xsyn_netfilter_synproxy_cookie_retrans_total",
		"xsyn_netfilter_synproxy_cookie_valid_total", "xsyn_netfilter_synproxy_syn_received_total",
		"xsyn_on_demand_cookies", "xsyn_on_demand_switches_total", "xsyn_on_demand_threshold_syns_per_second",
		"xsyn_passed_total", "xsyn_rules_checks_total", "xsyn_rules_repair_failures_total", "xsyn_rules_repairs_total",
		"xsyn_services", "xsyn_syn_received_total", "xsyn_synack_sent_total"}
	if got := cat.Xsyn(); !slices.Equal(got, want) {
		t.Errorf("xsyn's metrics:\n got %v\nwant %v (docs/metrics.md, and the dashboard, may need the change too)", got, want)
	}
	if got := cat["xsyn_attached"].Values["mode"]; !slices.Equal(sorted(got), []string{"generic", "native", "netfilter-only"}) {
		t.Errorf("modes %v", got)
	}

	for _, tc := range []struct{ expr, want string }{
		{`rate(xsyn_syn_recieved_total[1m])`, "not a metric"},
		{`rate(xsyn_syn_received_total{reason="no_room"}[1m])`, `no label "reason"`},
		{`xsyn_attached{family="ipv4"}`, `no label "family"`},
		{`sum by (reason) (rate(xsyn_syn_received_total[1m]))`, `groups by "reason"`},
		{`sum without (family) (rate(xsyn_syn_received_total[1m]))`, ""}, // fine: family is there
		{`rate(xsyn_passed_total{reason="no_rooom"}[1m])`, `"no_rooom" is not a value`},
		{`rate(xsyn_passed_total{reason=~"no_room|cookie_eror"}[1m])`, `"cookie_eror" is not a value`},
		{`rate(xsyn_passed_total{reason=~"nope.*"}[1m])`, "matches no value"},
		{`xsyn_attached{mode="netfilter"}`, `"netfilter" is not a value`},
		{`xsyn_syn_received_total > 1000`, "is a counter"},
		{`max_over_time(xsyn_syn_received_total[1h])`, "is a counter"},
		{`rate(xsyn_attached[5m])`, "is a gauge"},
		{`rate(xsyn_syn_received_total[1m]) / on (reason) rate(xsyn_passed_total[1m])`, `matches on "reason"`},
		{`xsyn_attached * on (iface) group_left (version) xsyn_services`, `copies label "version"`},
		{`{__name__=~"xsyn_.*"}`, "exact name"},
		{`rate(xsyn_syn_received_total[1m]`, "parse"},
		{`absent(up{job="xsyn"})`, ""},
		{`rate(go_gc_duration_seconds_count[5m])`, ""},
		{`rate(process_cpu_seconds_total{job="xsyn"}[5m])`, ""},
		{`sum by (code) (rate(promhttp_metric_handler_requests_total[5m]))`, ""},
	} {
		_, err := chk.Check(tc.expr)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.expr, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: error %v, want one saying %q", tc.expr, err, tc.want)
		}
	}

	// Labels of results, for legends and annotations.
	for expr, want := range map[string][]string{
		`sum by (iface) (rate(xsyn_syn_received_total[1m]))`:                                        {"iface"},
		`rate(xsyn_syn_received_total[1m])`:                                                         {"family", "iface", "instance", "job"},
		`sum without (family) (rate(xsyn_syn_received_total[1m]))`:                                  {"iface", "instance", "job"},
		`xsyn_attached == 1 unless on (instance) xsyn_services`:                                     {"iface", "instance", "job", "mode"},
		`sum by (iface) (rate(xsyn_syn_received_total[1m])) or vector(0)`:                           {"iface"},
		`xsyn_services * on (job, instance, iface) group_left (mode) xsyn_attached`:                 {"iface", "instance", "job", "mode", "path"},
		`sum(rate(xsyn_syn_received_total[1m])) / on () sum(rate(xsyn_ack_cookie_valid_total[1m]))`: nil,
	} {
		res, err := chk.Check(expr)
		if err != nil || !slices.Equal(res.Labels, want) {
			t.Errorf("%s: labels %v, %v; want %v", expr, res.Labels, err, want)
		}
	}

	for _, expr := range docExamples(t, "../../docs/metrics.md") {
		if _, err := chk.Check(expr); err != nil {
			t.Errorf("docs/metrics.md example %q: %v", expr, err)
		}
	}
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// docExamples returns the expressions of a Markdown file's promql blocks: one a line, indented
// lines continuing the one before.
func docExamples(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var exprs []string
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "```promql"):
			in = true
		case strings.HasPrefix(line, "```"):
			in = false
		case !in || strings.TrimSpace(line) == "":
		case strings.HasPrefix(line, " ") && len(exprs) > 0:
			exprs[len(exprs)-1] += "\n" + line
		default:
			exprs = append(exprs, line)
		}
	}
	if len(exprs) == 0 {
		t.Fatalf("%s: no promql examples found", path)
	}
	return exprs
}

// TestRunbookAnchors checks the runbook links land on a heading of their page in docs/.
func TestRunbookAnchors(t *testing.T) {
	for file, anchors := range runbookAnchors {
		b, err := os.ReadFile("../../docs/" + file)
		if os.IsNotExist(err) {
			t.Errorf("docs/%s is not written yet: the runbook links cannot be followed", file)
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		slugs := map[string]bool{}
		for line := range strings.Lines(string(b)) {
			if h, ok := strings.CutPrefix(strings.TrimLeft(line, "#"), " "); ok && strings.HasPrefix(line, "#") {
				slugs[githubSlug(h)] = true
			}
			// An explicit anchor, <a id="..."> or <a name="...">, works too.
			for _, m := range htmlAnchor.FindAllStringSubmatch(line, -1) {
				slugs[m[1]] = true
			}
		}
		for _, a := range anchors {
			if !slugs[a] {
				t.Errorf("docs/%s has no heading or anchor #%s", file, a)
			}
		}
	}
}

var htmlAnchor = regexp.MustCompile(`<a (?:id|name)="([^"]+)"`)

// githubSlug is GitHub's anchor for a heading: lower case, punctuation dropped, spaces to dashes.
func githubSlug(h string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(h)) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || ('a' <= r && r <= 'z') || ('0' <= r && r <= '9'):
			b.WriteRune(r)
		}
	}
	return b.String()
}

// The synthetic host the alerts are run against: scraped every 15 s, the rules evaluated
// every 30 s, as a Prometheus server would.
const evalInterval = 30 * time.Second

// quietHost is a protected eth0 on a normal day: 250 SYNs/s, nearly all completing.
func quietHost(until time.Duration) History {
	return History{
		Target:   map[string]string{"job": "xsyn", "instance": "edge1:9377"},
		Interval: 15 * time.Second,
		Until:    until,
		Series: []Series{
			{Sel: `up`, Phases: []Phase{Value(0, 1)}},
			{Sel: `xsyn_attached{iface="eth0",mode="native"}`, Phases: []Phase{Value(0, 1)}},
			{Sel: `xsyn_services{iface="eth0",path="handoff"}`, Phases: []Phase{Value(0, 2)}},
			{Sel: `xsyn_services{iface="eth0",path="synproxy"}`, Phases: []Phase{Value(0, 0)}},
			{Sel: `xsyn_netfilter_rules_complete{iface="eth0"}`, Phases: []Phase{Value(0, 1)}},
			{Sel: `xsyn_collection_errors_total`, Counter: true, Phases: []Phase{Rate(0, 0)}},
			{Sel: `xsyn_syn_received_total{iface="eth0",family="ipv4"}`, Counter: true, Phases: []Phase{Rate(0, 200)}},
			{Sel: `xsyn_syn_received_total{iface="eth0",family="ipv6"}`, Counter: true, Phases: []Phase{Rate(0, 50)}},
			{Sel: `xsyn_ack_cookie_valid_total{iface="eth0",family="ipv4"}`, Counter: true, Phases: []Phase{Rate(0, 196)}},
			{Sel: `xsyn_ack_cookie_valid_total{iface="eth0",family="ipv6"}`, Counter: true, Phases: []Phase{Rate(0, 49)}},
			{Sel: `xsyn_ack_cookie_invalid_total{iface="eth0",family="ipv4"}`, Counter: true, Phases: []Phase{Rate(0, 2)}},
			{Sel: `xsyn_ack_cookie_invalid_total{iface="eth0",family="ipv6"}`, Counter: true, Phases: []Phase{Rate(0, 1)}},
			{Sel: `xsyn_netfilter_synproxy_syn_received_total`, Counter: true, Phases: []Phase{Rate(0, 0.1)}},
			{Sel: `xsyn_netfilter_synproxy_cookie_valid_total`, Counter: true, Phases: []Phase{Rate(0, 245)}},
			{Sel: `xsyn_netfilter_synproxy_cookie_invalid_total`, Counter: true, Phases: []Phase{Rate(0, 0)}},
			// The kernel's listeners see no SYN of the flood, nor any real client that
			// completes a handshake with xsyn; a few resets of stale ACKs, a slow server now
			// and then.
			{Sel: `xsyn_kernel_syncookies_sent_total`, Counter: true, Phases: []Phase{Rate(0, 0)}},
			{Sel: `xsyn_kernel_syncookies_recv_total`, Counter: true, Phases: []Phase{Rate(0, 0)}},
			{Sel: `xsyn_kernel_syncookies_failed_total`, Counter: true, Phases: []Phase{Rate(0, 0)}},
			{Sel: `xsyn_kernel_listen_overflows_total`, Counter: true, Phases: []Phase{Rate(0, 0.01)}},
			{Sel: `xsyn_kernel_listen_drops_total`, Counter: true, Phases: []Phase{Rate(0, 0.01)}},
			{Sel: `xsyn_kernel_reqq_full_drop_total`, Counter: true, Phases: []Phase{Rate(0, 0)}},
			{Sel: `xsyn_kernel_tsecr_rejected_total`, Counter: true, Phases: []Phase{Rate(0, 0)}},
		},
	}
}

// expect says which alerts fire at a time: alertname{label=value,...} with the labels other
// than job, instance and severity; every other alert of the file must not fire then.
type expect struct {
	at     time.Duration
	firing []string
}

func TestAlertsOnSyntheticSeries(t *testing.T) {
	m := time.Minute
	scrape := quietHost(0).Interval
	for _, tc := range []struct {
		name    string
		history History
		expect  []expect
	}{{
		name:    "quiet day",
		history: quietHost(90 * m),
		expect:  []expect{{at: 30 * m}, {at: 60 * m}, {at: 90 * m}},
	}, {
		name: "busy hour of real clients: 30000 SYNs/s, 1500/s never complete (retransmits, scanners)",
		history: quietHost(60*m).With(
			Series{Sel: `xsyn_syn_received_total{iface="eth0",family="ipv4"}`, Counter: true, Phases: []Phase{Rate(0, 200), Rate(30*m, 30000)}},
			Series{Sel: `xsyn_ack_cookie_valid_total{iface="eth0",family="ipv4"}`, Counter: true, Phases: []Phase{Rate(0, 196), Rate(30*m, 28500)}},
			Series{Sel: `xsyn_netfilter_synproxy_cookie_valid_total`, Counter: true, Phases: []Phase{Rate(0, 245), Rate(30*m, 28549)}}),
		expect: []expect{{at: 40 * m}, {at: 60 * m}},
	}, {
		name: "scanner on a quiet host: 600 SYNs/s more, none completing",
		history: quietHost(60 * m).With(
			Series{Sel: `xsyn_syn_received_total{iface="eth0",family="ipv4"}`, Counter: true, Phases: []Phase{Rate(0, 200), Rate(30*m, 800)}}),
		expect: []expect{{at: 40 * m}, {at: 60 * m}},
	}, {
		name: "SYN flood of 50000/s on eth0 from 30m to 50m, real clients unchanged",
		history: quietHost(70*m).With(
			Series{Sel: `xsyn_syn_received_total{iface="eth0",family="ipv4"}`, Counter: true, Phases: []Phase{Rate(0, 200), Rate(30*m, 50200), Rate(50*m, 200)}},
			Series{Sel: `xsyn_synack_sent_total{iface="eth0",family="ipv4"}`, Counter: true, Phases: []Phase{Rate(0, 200), Rate(30*m, 50200), Rate(50*m, 200)}}),
		expect: []expect{
			{at: 31 * m}, // pending: for 2m
			{at: 35 * m, firing: []string{`XsynUnderAttack{iface="eth0"}`}},
			{at: 49 * m, firing: []string{`XsynUnderAttack{iface="eth0"}`}},
			{at: 55 * m},
		},
	}, {
		name: "ACK flood of 20000/s on eth0 from 30m to 50m",
		history: quietHost(70 * m).With(
			Series{Sel: `xsyn_ack_cookie_invalid_total{iface="eth0",family="ipv6"}`, Counter: true, Phases: []Phase{Rate(0, 1), Rate(30*m, 20000), Rate(50*m, 1)}}),
		expect: []expect{
			{at: 31 * m},
			{at: 35 * m, firing: []string{`XsynForgedAcks{iface="eth0"}`}},
			{at: 55 * m},
		},
	}, {
		name: "netfilter-only eth1 under a 40000/s SYN flood from 30m",
		history: quietHost(60*m).With(
			Series{Sel: `xsyn_attached{iface="eth1",mode="netfilter-only"}`, Phases: []Phase{Value(0, 1)}},
			Series{Sel: `xsyn_netfilter_synproxy_syn_received_total`, Counter: true, Phases: []Phase{Rate(0, 100), Rate(30*m, 40100)}},
			Series{Sel: `xsyn_netfilter_synproxy_cookie_valid_total`, Counter: true, Phases: []Phase{Rate(0, 340)}}),
		expect: []expect{
			{at: 4 * m}, // pending: for 5m
			{at: 10 * m, firing: []string{`XsynFallbackActive{iface="eth1",mode="netfilter-only"}`}},
			{at: 40 * m, firing: []string{`XsynFallbackActive{iface="eth1",mode="netfilter-only"}`, `XsynUnderAttack{}`}},
		},
	}, {
		name: "SYNPROXY rejects ACK cookies with XDP in front",
		history: quietHost(40*m).With(
			Series{Sel: `xsyn_netfilter_synproxy_cookie_valid_total`, Counter: true, Phases: []Phase{Rate(0, 245), Rate(30*m, 0)}},
			Series{Sel: `xsyn_netfilter_synproxy_cookie_invalid_total`, Counter: true, Phases: []Phase{Rate(0, 0), Rate(30*m, 245)}}),
		expect: []expect{{at: 29 * m}, {at: 40 * m, firing: []string{`XsynForgedAcks{}`}}},
	}, {
		name: "eth1 detached at 30m, eth0 stays",
		history: quietHost(100 * m).With(
			Series{Sel: `xsyn_attached{iface="eth1",mode="native"}`, Phases: []Phase{Value(0, 1), Gone(30 * m)}}),
		expect: []expect{
			{at: 29 * m},
			{at: 31 * m}, // pending: for 2m
			{at: 33 * m, firing: []string{`XsynInterfaceUnprotected{iface="eth1"}`}},
			{at: 85 * m, firing: []string{`XsynInterfaceUnprotected{iface="eth1"}`}},
			{at: 95 * m}, // an hour later: resolved by itself
		},
	}, {
		name: "eth0 falls back from native XDP to netfilter-only at 30m",
		history: quietHost(50*m).With(
			Series{Sel: `xsyn_attached{iface="eth0",mode="native"}`, Phases: []Phase{Value(0, 1), Gone(30 * m)}},
			Series{Sel: `xsyn_attached{iface="eth0",mode="netfilter-only"}`, Phases: []Phase{Gone(0), Value(30*m, 1)}}),
		expect: []expect{
			{at: 33 * m}, // no XsynInterfaceUnprotected: eth0 is still protected
			{at: 40 * m, firing: []string{`XsynFallbackActive{iface="eth0",mode="netfilter-only"}`}},
		},
	}, {
		name: "eth1 in generic XDP mode",
		history: quietHost(30 * m).With(
			Series{Sel: `xsyn_attached{iface="eth1",mode="generic"}`, Phases: []Phase{Value(0, 1)}}),
		expect: []expect{{at: 10 * m}, {at: 20 * m, firing: []string{`XsynXDPGenericMode{iface="eth1",mode="generic"}`}}},
	}, {
		name: "firewall reload at 30m takes eth0's netfilter chains, xsyn attach again at 40m",
		history: quietHost(50 * m).With(
			Series{Sel: `xsyn_netfilter_rules_complete{iface="eth0"}`, Phases: []Phase{Value(0, 1), Value(30*m, 0), Value(40*m, 1)}}),
		expect: []expect{
			{at: 29 * m},
			{at: 30*m + 30*time.Second}, // pending: for 1m
			{at: 32 * m, firing: []string{`XsynNetfilterRulesIncomplete{iface="eth0"}`}},
			{at: 39 * m, firing: []string{`XsynNetfilterRulesIncomplete{iface="eth0"}`}},
			{at: 41 * m},
		},
	}, {
		name: "netfilter-only eth1 loses its netfilter chains at 30m",
		history: quietHost(40*m).With(
			Series{Sel: `xsyn_attached{iface="eth1",mode="netfilter-only"}`, Phases: []Phase{Value(0, 1)}},
			Series{Sel: `xsyn_netfilter_rules_complete{iface="eth1"}`, Phases: []Phase{Value(0, 1), Value(30*m, 0)}}),
		expect: []expect{
			{at: 29 * m, firing: []string{`XsynFallbackActive{iface="eth1",mode="netfilter-only"}`}},
			{at: 35 * m, firing: []string{`XsynFallbackActive{iface="eth1",mode="netfilter-only"}`, `XsynNetfilterRulesIncomplete{iface="eth1"}`}},
		},
	}, {
		name: "xsyn attach replaces eth0's rules: one scrape reads 0",
		history: quietHost(50 * m).With(
			Series{Sel: `xsyn_netfilter_rules_complete{iface="eth0"}`, Phases: []Phase{Value(0, 1), Value(30*m, 0), Value(30*m+scrape, 1)}}),
		expect: []expect{{at: 30 * m}, {at: 31 * m}, {at: 32 * m}, {at: 40 * m}},
	}, {
		name: "handoff path on a quiet day: 50 handoffs/s, none refused, a server restart at 30m",
		history: quietHost(60*m).With(
			Series{Sel: `xsyn_handoff_assigned_total{iface="eth0",family="ipv4"}`, Counter: true, Phases: []Phase{Rate(0, 50)}},
			Series{Sel: `xsyn_handoff_refused_total{iface="eth0",family="ipv4"}`, Counter: true, Phases: []Phase{Rate(0, 0)}},
			// Valid cookies for the port while nothing listens on it: reset, as without xsyn.
			Series{Sel: `xsyn_passed_total{iface="eth0",family="ipv4",reason="no_listener"}`, Counter: true,
				Phases: []Phase{Rate(0, 0), Rate(30*m, 50), Rate(30*m+2*scrape, 0)}}),
		expect: []expect{{at: 30 * m}, {at: 31 * m}, {at: 35 * m}, {at: 60 * m}},
	}, {
		name: "the server comes back with MPTCP at 30m: every handoff refused",
		history: quietHost(60*m).With(
			Series{Sel: `xsyn_handoff_assigned_total{iface="eth0",family="ipv4"}`, Counter: true, Phases: []Phase{Rate(0, 50), Rate(30*m, 0)}},
			Series{Sel: `xsyn_handoff_refused_total{iface="eth0",family="ipv4"}`, Counter: true, Phases: []Phase{Rate(0, 0), Rate(30*m, 50)}},
			Series{Sel: `xsyn_handoff_refused_total{iface="eth0",family="ipv6"}`, Counter: true, Phases: []Phase{Rate(0, 0), Rate(30*m, 10)}}),
		expect: []expect{
			{at: 29 * m},
			{at: 30*m + 30*time.Second, firing: []string{`XsynHandoffRefused{iface="eth0"}`}}, // no for: at once
			{at: 59 * m, firing: []string{`XsynHandoffRefused{iface="eth0"}`}},
		},
	}, {
		name: "one client refused at 30m",
		history: quietHost(60*m).With(
			Series{Sel: `xsyn_handoff_assigned_total{iface="eth0",family="ipv4"}`, Counter: true, Phases: []Phase{Rate(0, 50)}},
			Series{Sel: `xsyn_handoff_refused_total{iface="eth0",family="ipv4"}`, Counter: true,
				Phases: []Phase{Rate(0, 0), Rate(30*m, 1/scrape.Seconds()), Rate(30*m+scrape, 0)}}),
		expect: []expect{
			{at: 29 * m},
			{at: 31 * m, firing: []string{`XsynHandoffRefused{iface="eth0"}`}},
			{at: 34 * m, firing: []string{`XsynHandoffRefused{iface="eth0"}`}},
			{at: 36 * m}, // 5 minutes later: resolved by itself
		},
	}, {
		name: "SYN flood of 20000/s from 30m to 50m to a port xsyn does not protect: the kernel sends cookies",
		history: quietHost(70 * m).With(
			Series{Sel: `xsyn_kernel_syncookies_sent_total`, Counter: true, Phases: []Phase{Rate(0, 0), Rate(30*m, 20000), Rate(50*m, 0)}}),
		expect: []expect{
			{at: 29 * m},
			{at: 33 * m}, // pending: for 5m
			{at: 36 * m, firing: []string{`XsynSynFloodReachesStack{}`}},
			{at: 49 * m, firing: []string{`XsynSynFloodReachesStack{}`}},
			{at: 53 * m},
		},
	}, {
		name: "the same flood with net.ipv4.tcp_syncookies=0: the kernel drops SYNs",
		history: quietHost(50 * m).With(
			Series{Sel: `xsyn_kernel_reqq_full_drop_total`, Counter: true, Phases: []Phase{Rate(0, 0), Rate(30*m, 20000)}}),
		expect: []expect{{at: 33 * m}, {at: 36 * m, firing: []string{`XsynSynFloodReachesStack{}`}}},
	}, {
		name: "a burst of real clients overflows a small SYN queue for a minute at 30m",
		history: quietHost(50 * m).With(
			Series{Sel: `xsyn_kernel_syncookies_sent_total`, Counter: true, Phases: []Phase{Rate(0, 0), Rate(30*m, 50), Rate(31*m, 0)}}),
		expect: []expect{{at: 31 * m}, {at: 34 * m}, {at: 37 * m}, {at: 45 * m}},
	}, {
		name: "kernel cookies on a host where xsyn is not attached: not xsyn's business",
		history: func() History {
			h := quietHost(50 * m).With(
				Series{Sel: `xsyn_kernel_syncookies_sent_total`, Counter: true, Phases: []Phase{Rate(0, 20000)}})
			h.Series = slices.DeleteFunc(h.Series, func(s Series) bool {
				return strings.HasPrefix(s.Sel, "xsyn_attached") || strings.HasPrefix(s.Sel, "xsyn_services") ||
					strings.HasPrefix(s.Sel, "xsyn_netfilter_rules_complete")
			})
			return h
		}(),
		expect: []expect{{at: 20 * m}, {at: 45 * m}},
	}, {
		name: "SYNPROXY path with timestamps on Linux 6.15+: 40 connections/s stall from 30m",
		history: quietHost(70*m).With(
			Series{Sel: `xsyn_services{iface="eth0",path="synproxy"}`, Phases: []Phase{Value(0, 1)}},
			Series{Sel: `xsyn_kernel_tsecr_rejected_total`, Counter: true, Phases: []Phase{Rate(0, 0), Rate(30*m, 40)}}),
		expect: []expect{
			{at: 40 * m}, // pending: for 15m
			{at: 46 * m, firing: []string{`XsynSynproxyTimestampStall{}`}},
			{at: 70 * m, firing: []string{`XsynSynproxyTimestampStall{}`}},
		},
	}, {
		name: "netfilter-only eth1 with timestamps on Linux 6.15+",
		history: quietHost(40*m).With(
			Series{Sel: `xsyn_attached{iface="eth1",mode="netfilter-only"}`, Phases: []Phase{Value(0, 1)}},
			Series{Sel: `xsyn_kernel_tsecr_rejected_total`, Counter: true, Phases: []Phase{Rate(0, 5)}}),
		expect: []expect{{at: 30 * m, firing: []string{
			`XsynFallbackActive{iface="eth1",mode="netfilter-only"}`, `XsynSynproxyTimestampStall{}`}}},
	}, {
		name: "TSEcrRejected where every service takes the handoff path: not SYNPROXY's stall",
		history: quietHost(40 * m).With(
			Series{Sel: `xsyn_kernel_tsecr_rejected_total`, Counter: true, Phases: []Phase{Rate(0, 5)}}),
		expect: []expect{{at: 30 * m}},
	}, {
		name: "a kernel before 6.15: no TSEcrRejected series",
		history: func() History {
			h := quietHost(40 * m).With(Series{Sel: `xsyn_services{iface="eth0",path="synproxy"}`, Phases: []Phase{Value(0, 1)}})
			h.Series = slices.DeleteFunc(h.Series, func(s Series) bool { return s.Sel == `xsyn_kernel_tsecr_rejected_total` })
			return h
		}(),
		expect: []expect{{at: 30 * m}},
	}, {
		name: "exporter down from 30m: every xsyn series gone, up 0",
		history: func() History {
			h := quietHost(50 * m)
			h.Series = slices.Clone(h.Series)
			for i, s := range h.Series {
				h.Series[i].Phases = append(slices.Clone(s.Phases), Gone(30*m))
				if s.Sel == "up" {
					h.Series[i].Phases = []Phase{Value(0, 1), Value(30*m, 0)}
				}
			}
			return h
		}(),
		expect: []expect{
			{at: 33 * m}, // no XsynInterfaceUnprotected: the exporter, not eth0, is gone
			{at: 40 * m, firing: []string{`XsynExporterDown{}`}},
		},
	}, {
		name: "exporter fails to read a source at every scrape from 30m",
		history: quietHost(50 * m).With(
			Series{Sel: `xsyn_collection_errors_total`, Counter: true, Phases: []Phase{Rate(0, 0), Rate(30*m, 1/scrape.Seconds())}}),
		expect: []expect{
			{at: 35 * m}, // pending: for 10m
			{at: 45 * m, firing: []string{`XsynExporterCollectionErrors{}`}},
		},
	}, {
		name: "exporter fails to read a source once",
		history: quietHost(50 * m).With(
			Series{Sel: `xsyn_collection_errors_total`, Counter: true, Phases: []Phase{Rate(0, 0), Rate(30*m, 1/scrape.Seconds()), Rate(30*m+scrape, 0)}}),
		expect: []expect{{at: 31 * m}, {at: 36 * m}, {at: 41 * m}, {at: 46 * m}},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			rules := loadRules(t)
			st, err := tc.history.Storage()
			if err != nil {
				t.Fatal(err)
			}
			eng := NewEngine()
			defer eng.Close()
			for _, e := range tc.expect {
				var got []string
				for _, r := range rules {
					for _, a := range firingAt(t, eng, st, r, e.at) {
						got = append(got, a.key())
						checkAnnotations(t, r, a, e.at)
					}
				}
				slices.Sort(got)
				if want := sorted(e.firing); !slices.Equal(got, want) {
					t.Errorf("at %v: firing %v, want %v", e.at, got, want)
				}
			}
		})
	}
}

// alert is one firing alert: the labels of the expression's series and the rule's, and its value.
type alert struct {
	labels labels.Labels
	value  float64
}

func (a alert) key() string {
	var parts []string
	a.labels.Range(func(l labels.Label) {
		switch l.Name {
		case "alertname", "job", "instance", "severity":
		default:
			parts = append(parts, fmt.Sprintf("%s=%q", l.Name, l.Value))
		}
	})
	return a.labels.Get("alertname") + "{" + strings.Join(parts, ",") + "}"
}

// firingAt is what Prometheus' rule manager does to an alerting rule evaluated every
// evalInterval: an alert fires at ts when its expression has returned the series at every
// evaluation of the last `for` (pending until then, reset by one evaluation without it).
func firingAt(t *testing.T, eng *promql.Engine, st storage.Queryable, r rulefmt.Rule, ts time.Duration) []alert {
	t.Helper()
	mat, err := Range(eng, st, r.Expr, ts-time.Duration(r.For), ts, evalInterval)
	if err != nil {
		t.Fatalf("%s at %v: %v", r.Alert, ts, err)
	}
	steps := int(time.Duration(r.For)/evalInterval) + 1
	var out []alert
	for _, s := range mat {
		if len(s.Floats) != steps {
			continue // pending, or not at ts
		}
		b := labels.NewBuilder(s.Metric)
		b.Del(labels.MetricName)
		for k, v := range r.Labels {
			b.Set(k, v)
		}
		b.Set("alertname", r.Alert)
		out = append(out, alert{labels: b.Labels(), value: s.Floats[len(s.Floats)-1].F})
	}
	return out
}

// checkAnnotations expands the rule's annotations for a firing alert as Prometheus does.
func checkAnnotations(t *testing.T, r rulefmt.Rule, a alert, ts time.Duration) {
	t.Helper()
	data := template.AlertTemplateData(a.labels.Map(), nil, "", promql.Sample{F: a.value})
	defs := "{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}{{$externalURL := .ExternalURL}}{{$value := .Value}}"
	for _, name := range []string{"summary", "description"} {
		exp := template.NewTemplateExpander(context.Background(), defs+r.Annotations[name], "__alert_"+r.Alert,
			data, model.Time(ts.Milliseconds()), nil, nil, nil)
		text, err := exp.Expand()
		if err != nil {
			t.Errorf("%s %s: %v", r.Alert, name, err)
			continue
		}
		if strings.Contains(text, "<no value>") || strings.Contains(text, "  ") {
			t.Errorf("%s %s renders badly: %q", r.Alert, name, text)
		}
		if name == "summary" {
			t.Logf("at %v %s: %s", ts, a.key(), text)
		}
	}
}
