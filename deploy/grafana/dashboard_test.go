package grafana

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"

	xprom "github.com/xsyn-project/xsyn/deploy/prometheus"
)

const dashboardFile = "xsyn.json"

// The parts of Grafana's dashboard JSON model the checks rely on; the rest is Grafana's.
type dashboard struct {
	UID           string `json:"uid"`
	Title         string `json:"title"`
	SchemaVersion int    `json:"schemaVersion"`
	Refresh       string `json:"refresh"`
	Time          struct {
		From string `json:"from"`
		To   string `json:"to"`
	} `json:"time"`
	Templating struct {
		List []variable `json:"list"`
	} `json:"templating"`
	Panels []panel `json:"panels"`
}

type datasourceRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type variable struct {
	Name       string          `json:"name"`
	Type       string          `json:"type"`
	Query      json.RawMessage `json:"query"` // a string, or an object with a query field
	Datasource *datasourceRef  `json:"datasource"`
	IncludeAll bool            `json:"includeAll"`
	AllValue   string          `json:"allValue"`
}

type panel struct {
	ID          int            `json:"id"`
	Type        string         `json:"type"`
	Title       string         `json:"title"`
	Description string         `json:"description"`
	Datasource  *datasourceRef `json:"datasource"`
	GridPos     gridPos        `json:"gridPos"`
	Targets     []target       `json:"targets"`
	Panels      []panel        `json:"panels"` // of a collapsed row
	FieldConfig struct {
		Defaults struct {
			Mappings   []mapping `json:"mappings"`
			Thresholds struct {
				Steps []struct {
					Color string   `json:"color"`
					Value *float64 `json:"value"`
				} `json:"steps"`
			} `json:"thresholds"`
		} `json:"defaults"`
	} `json:"fieldConfig"`
}

type gridPos struct{ X, Y, W, H int }

type target struct {
	RefID        string         `json:"refId"`
	Expr         string         `json:"expr"`
	LegendFormat string         `json:"legendFormat"`
	Datasource   *datasourceRef `json:"datasource"`
	Instant      bool           `json:"instant"`
}

type mapping struct {
	Type    string `json:"type"`
	Options map[string]struct {
		Text  string `json:"text"`
		Color string `json:"color"`
	} `json:"options"`
}

// The data source every query goes through: the dashboard's data source variable.
var wantDatasource = datasourceRef{Type: "prometheus", UID: "${DS_PROMETHEUS}"}

func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	return d
}

// allPanels flattens rows, collapsed ones included.
func allPanels(ps []panel) []panel {
	var out []panel
	for _, p := range ps {
		out = append(out, p)
		out = append(out, allPanels(p.Panels)...)
	}
	return out
}

// What Grafana puts in place of the variables, for the checks: one interface and host, the
// rate interval of a 15 s scrape, the default time range.
var substitutions = map[string]string{
	"$__rate_interval": "1m",
	"$__interval":      "15s",
	"$__range":         "1h",
	"$instance":        "edge1:9377",
	"$iface":           "eth0",
}

var leftoverVariable = regexp.MustCompile(`\$\{?[A-Za-z_][A-Za-z0-9_]*\}?|\[\[[^\]]*\]\]`)

// expand substitutes the variables of a query, and fails on one it does not know.
func expand(expr string) (string, error) {
	keys := make([]string, 0, len(substitutions))
	for k := range substitutions {
		keys = append(keys, k)
	}
	// Longest first: $__range must not eat the start of $__rate_interval.
	slices.SortFunc(keys, func(a, b string) int { return len(b) - len(a) })
	for _, k := range keys {
		expr = strings.ReplaceAll(expr, "${"+k[1:]+"}", substitutions[k])
		expr = strings.ReplaceAll(expr, k, substitutions[k])
	}
	if v := leftoverVariable.FindString(expr); v != "" {
		return "", fmt.Errorf("unknown variable %s", v)
	}
	return expr, nil
}

func TestDashboardModel(t *testing.T) {
	d := loadDashboard(t)
	if d.UID == "" || d.Title == "" {
		t.Errorf("uid %q, title %q: both are needed for provisioning and links", d.UID, d.Title)
	}
	if d.SchemaVersion < 36 {
		t.Errorf("schemaVersion %d: Grafana before 9 cannot reference a data source by uid", d.SchemaVersion)
	}
	if d.Refresh != "10s" || d.Time.From != "now-1h" || d.Time.To != "now" {
		t.Errorf("refresh %q, time %s to %s; want 10s, now-1h to now", d.Refresh, d.Time.From, d.Time.To)
	}

	ids := map[int]string{}
	var boxes []panel
	for _, p := range allPanels(d.Panels) {
		if other, ok := ids[p.ID]; ok || p.ID <= 0 {
			t.Errorf("panel %q: id %d, already used by %q (or not positive)", p.Title, p.ID, other)
		}
		ids[p.ID] = p.Title
		g := p.GridPos
		if g.X < 0 || g.Y < 0 || g.W <= 0 || g.H <= 0 || g.X+g.W > 24 {
			t.Errorf("panel %q: gridPos %+v outside the 24 columns", p.Title, g)
		}
		for _, o := range boxes {
			if overlap(g, o.GridPos) {
				t.Errorf("panels %q %+v and %q %+v overlap", p.Title, g, o.Title, o.GridPos)
			}
		}
		boxes = append(boxes, p)

		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || *p.Datasource != wantDatasource {
			t.Errorf("panel %q: datasource %+v, want %+v", p.Title, p.Datasource, wantDatasource)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		refs := map[string]bool{}
		for _, tg := range p.Targets {
			if tg.Datasource != nil && *tg.Datasource != wantDatasource {
				t.Errorf("panel %q query %s: datasource %+v, want %+v", p.Title, tg.RefID, tg.Datasource, wantDatasource)
			}
			if tg.RefID == "" || refs[tg.RefID] {
				t.Errorf("panel %q: refId %q empty or repeated", p.Title, tg.RefID)
			}
			refs[tg.RefID] = true
		}
		// At 3 a.m. the description is the runbook of the panel.
		if len(p.Description) < 80 {
			t.Errorf("panel %q: description %q too short to tell an operator what it means", p.Title, p.Description)
		}
	}
}

func overlap(a, b gridPos) bool {
	return a.X < b.X+b.W && b.X < a.X+a.W && a.Y < b.Y+b.H && b.Y < a.Y+a.H
}

var labelValues = regexp.MustCompile(`^label_values\((.+),\s*([A-Za-z_][A-Za-z0-9_]*)\)$`)

func TestDashboardVariables(t *testing.T) {
	d := loadDashboard(t)
	cat, err := xprom.NewCatalog()
	if err != nil {
		t.Fatal(err)
	}
	chk := xprom.NewChecker(cat)
	vars := map[string]variable{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v
	}
	if ds := vars["DS_PROMETHEUS"]; ds.Type != "datasource" || string(ds.Query) != `"prometheus"` {
		t.Errorf("DS_PROMETHEUS: type %q, query %s; want a datasource variable of Prometheus data sources", ds.Type, ds.Query)
	}
	for _, name := range []string{"instance", "iface"} {
		v, ok := vars[name]
		if !ok {
			t.Errorf("no %s variable", name)
			continue
		}
		if v.Type != "query" || v.Datasource == nil || *v.Datasource != wantDatasource {
			t.Errorf("%s: type %q, datasource %+v; want a query through %+v", name, v.Type, v.Datasource, wantDatasource)
		}
		// All must match interfaces that are gone too, so the protection panel can show them.
		if !v.IncludeAll || v.AllValue != ".*" {
			t.Errorf("%s: includeAll %v, allValue %q; want All as .*", name, v.IncludeAll, v.AllValue)
		}
		var q string
		if err := json.Unmarshal(v.Query, &q); err != nil {
			var obj struct{ Query string }
			if err := json.Unmarshal(v.Query, &obj); err != nil {
				t.Errorf("%s: query %s", name, v.Query)
			}
			q = obj.Query
		}
		m := labelValues.FindStringSubmatch(q)
		if m == nil {
			t.Errorf("%s: query %q, want label_values(selector, label)", name, q)
			continue
		}
		sel, err := expand(m[1])
		if err == nil {
			var res xprom.Result
			res, err = chk.Check(sel)
			if err == nil && !res.HasLabel(m[2]) {
				err = fmt.Errorf("%s has no label %s", sel, m[2])
			}
		}
		if err != nil {
			t.Errorf("%s: %s: %v", name, q, err)
		}
	}
}

var legendLabel = regexp.MustCompile(`\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}`)

// omitted lists xsyn's metrics deliberately left out of the dashboard, with why. Every other
// metric xsyn's collector exports must appear in a panel, so that a new one is not forgotten.
var omitted = map[string]string{}

func TestDashboardQueries(t *testing.T) {
	d := loadDashboard(t)
	cat, err := xprom.NewCatalog()
	if err != nil {
		t.Fatal(err)
	}
	chk := xprom.NewChecker(cat)
	used := map[string]bool{}
	for _, p := range allPanels(d.Panels) {
		for _, tg := range p.Targets {
			expr, err := expand(tg.Expr)
			if err != nil {
				t.Errorf("panel %q query %s: %v", p.Title, tg.RefID, err)
				continue
			}
			res, err := chk.Check(expr)
			if err != nil {
				t.Errorf("panel %q query %s: %v", p.Title, tg.RefID, err)
				continue
			}
			for _, m := range res.Metrics {
				used[m] = true
			}
			for _, m := range legendLabel.FindAllStringSubmatch(tg.LegendFormat, -1) {
				if !res.HasLabel(m[1]) {
					t.Errorf("panel %q query %s: legend reads {{%s}}, which the result never carries (it has %v)", p.Title, tg.RefID, m[1], res.Labels)
				}
			}
		}
	}
	for _, m := range cat.Xsyn() {
		if !used[m] && omitted[m] == "" {
			t.Errorf("%s is in no panel: add one, or list it in omitted with the reason", m)
		}
	}
	for m := range omitted {
		if used[m] {
			t.Errorf("%s is listed as omitted but a panel shows it", m)
		}
	}
}

var alertName = regexp.MustCompile(`\bXsyn[A-Z][A-Za-z]+\b`)

// TestDashboardNamesRealAlerts: a panel that tells the operator which alert fires on it names an
// alert of deploy/prometheus/xsyn-rules.yml, so that a renamed alert cannot leave it behind.
func TestDashboardNamesRealAlerts(t *testing.T) {
	groups, errs := rulefmt.ParseFile("../prometheus/xsyn-rules.yml", false, model.LegacyValidation,
		parser.NewParser(parser.Options{}), slog.New(slog.DiscardHandler))
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	var alerts []string
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			alerts = append(alerts, r.Alert)
		}
	}
	named := 0
	for _, p := range allPanels(loadDashboard(t).Panels) {
		for _, a := range alertName.FindAllString(p.Description, -1) {
			named++
			if !slices.Contains(alerts, a) {
				t.Errorf("panel %q names alert %s, which xsyn-rules.yml does not have (it has %v)", p.Title, a, alerts)
			}
		}
	}
	if named == 0 {
		t.Error("no panel names an alert: the pattern no longer matches how descriptions name them")
	}
}

// busyHost has a series of every xsyn metric: eth0 native XDP, eth1 netfilter-only.
func busyHost(until time.Duration) xprom.History {
	r := func(v float64) []xprom.Phase { return []xprom.Phase{xprom.Rate(0, v)} }
	g := func(v float64) []xprom.Phase { return []xprom.Phase{xprom.Value(0, v)} }
	h := xprom.History{
		Target:   map[string]string{"job": "xsyn", "instance": "edge1:9377"},
		Interval: 15 * time.Second,
		Until:    until,
		Series: []xprom.Series{
			{Sel: `up`, Phases: g(1)},
			{Sel: `scrape_duration_seconds`, Phases: g(0.01)},
			{Sel: `xsyn_build_info{version="1.0.0",goversion="go1.26.8"}`, Phases: g(1)},
			{Sel: `xsyn_attached{iface="eth0",mode="native"}`, Phases: g(1)},
			{Sel: `xsyn_attached{iface="eth1",mode="netfilter-only"}`, Phases: g(1)},
			{Sel: `xsyn_services{iface="eth0"}`, Phases: g(2)},
			{Sel: `xsyn_netfilter_rules_complete{iface="eth0"}`, Phases: g(1)},
			{Sel: `xsyn_netfilter_rules_complete{iface="eth1"}`, Phases: g(1)},
			{Sel: `xsyn_collection_errors_total`, Counter: true, Phases: r(0)},
			{Sel: `xsyn_rules_checks_total`, Counter: true, Phases: r(1)},
			{Sel: `xsyn_rules_repairs_total{iface="eth0"}`, Counter: true, Phases: r(0)},
			{Sel: `xsyn_rules_repair_failures_total{iface="eth0"}`, Counter: true, Phases: r(0)},
			{Sel: `xsyn_passed_total{iface="eth0",family="ipv4",reason="no_room"}`, Counter: true, Phases: r(1)},
			{Sel: `xsyn_passed_total{iface="eth0",family="other",reason="not_ip"}`, Counter: true, Phases: r(3)},
			{Sel: `xsyn_passed_total{iface="eth0",family="ipv4",reason="no_listener"}`, Counter: true, Phases: r(1)},
			{Sel: `xsyn_dropped_total{iface="eth0",family="ipv4",reason="no_conn"}`, Counter: true, Phases: r(2)},
			{Sel: `xsyn_on_demand_cookies{iface="eth0",family="ipv4",destination="0.0.0.0/0",port="443"}`, Phases: g(1)},
			{Sel: `xsyn_on_demand_switches_total{iface="eth0",family="ipv4",destination="0.0.0.0/0",port="443"}`, Counter: true, Phases: r(0.01)},
			{Sel: `xsyn_on_demand_threshold_syns_per_second{iface="eth0",family="ipv4",destination="0.0.0.0/0",port="443"}`, Phases: g(20000)},
		},
	}
	for _, name := range []string{"syn_received", "synack_sent", "ack_cookie_valid", "ack_cookie_invalid", "established_passed",
		"handoff_assigned", "handoff_refused"} {
		h.Series = append(h.Series, xprom.Series{Sel: `xsyn_` + name + `_total{iface="eth0",family="ipv4"}`, Counter: true, Phases: r(100)})
	}
	for _, name := range []string{"syn_received", "cookie_valid", "cookie_invalid", "cookie_retrans", "conn_reopened"} {
		h.Series = append(h.Series, xprom.Series{Sel: `xsyn_netfilter_synproxy_` + name + `_total`, Counter: true, Phases: r(10)})
	}
	for _, name := range []string{"syncookies_sent", "syncookies_recv", "syncookies_failed", "listen_overflows", "listen_drops",
		"reqq_full_drop", "tsecr_rejected"} {
		h.Series = append(h.Series, xprom.Series{Sel: `xsyn_kernel_` + name + `_total`, Counter: true, Phases: r(5)})
	}
	return h
}

// TestDashboardQueriesReturnData runs every query on a host with every metric: a query that
// passes the checks but selects nothing (a wrong matching, a filter that never holds) shows
// up as an empty panel here rather than during an attack. The variables are set to All.
func TestDashboardQueriesReturnData(t *testing.T) {
	d := loadDashboard(t)
	st, err := busyHost(time.Hour).Storage()
	if err != nil {
		t.Fatal(err)
	}
	eng := xprom.NewEngine()
	defer eng.Close()
	for _, p := range allPanels(d.Panels) {
		for _, tg := range p.Targets {
			expr, err := expandAll(tg.Expr)
			if err != nil {
				t.Fatal(err)
			}
			vec, err := xprom.Instant(eng, st, expr, time.Hour)
			if err != nil {
				t.Errorf("panel %q query %s: %v", p.Title, tg.RefID, err)
			} else if len(vec) == 0 {
				t.Errorf("panel %q query %s returns nothing on a host with every metric", p.Title, tg.RefID)
			}
		}
	}
}

// expandAll substitutes the variables with their All value.
func expandAll(expr string) (string, error) {
	expr = strings.NewReplacer(`"$instance"`, `".*"`, `"$iface"`, `".*"`).Replace(expr)
	return expand(expr)
}

// TestProtectionPanel runs the protection panel's query on synthetic hosts and reads the
// answer through the panel's own value mappings: the fallback and a vanished interface must be
// red, an exporter that is down must not be mistaken for either.
func TestProtectionPanel(t *testing.T) {
	m := time.Minute
	attached := func(iface, mode string, phases ...xprom.Phase) xprom.Series {
		return xprom.Series{Sel: fmt.Sprintf(`xsyn_attached{iface=%q,mode=%q}`, iface, mode), Phases: phases}
	}
	base := xprom.History{
		Target:   map[string]string{"job": "xsyn", "instance": "edge1:9377"},
		Interval: 15 * time.Second,
		Until:    50 * m,
		Series: []xprom.Series{
			{Sel: "up", Phases: []xprom.Phase{xprom.Value(0, 1)}},
			attached("eth0", "native", xprom.Value(0, 1)),
			attached("eth1", "generic", xprom.Value(0, 1)),
			attached("eth2", "netfilter-only", xprom.Value(0, 1)),
			attached("eth3", "native", xprom.Value(0, 1), xprom.Gone(30*m)),
			attached("eth4", "native", xprom.Value(0, 1), xprom.Gone(30*m)),
			attached("eth4", "netfilter-only", xprom.Gone(0), xprom.Value(30*m, 1)),
		},
	}
	down := base
	down.Series = []xprom.Series{
		{Sel: "up", Phases: []xprom.Phase{xprom.Value(0, 1), xprom.Value(30*m, 0)}},
		attached("eth0", "native", xprom.Value(0, 1), xprom.Gone(30*m)),
	}
	for _, tc := range []struct {
		name    string
		history xprom.History
		want    map[string]string
	}{{
		name:    "one interface in each state",
		history: base,
		want: map[string]string{
			"eth0": "XDP native/green",
			"eth1": "XDP generic/yellow",
			"eth2": "NETFILTER-ONLY (fallback)/red",
			"eth3": "GONE: unprotected/red",
			"eth4": "NETFILTER-ONLY (fallback)/red", // fell back: protected, not gone
		},
	}, {
		name:    "exporter down",
		history: down,
		want:    map[string]string{"eth0": "UNKNOWN: exporter down/orange"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			got := shownByIface(t, "Protection", tc.history, 40*m)
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("shown:\n got %v\nwant %v", got, tc.want)
			}
		})
	}
}

// TestNetfilterRulesPanel reads the netfilter rules panel's answer through its value mappings:
// an interface whose rules are gone must be red, in either mode.
func TestNetfilterRulesPanel(t *testing.T) {
	m := time.Minute
	gauge := func(iface string, phases ...xprom.Phase) xprom.Series {
		return xprom.Series{Sel: fmt.Sprintf(`xsyn_netfilter_rules_complete{iface=%q}`, iface), Phases: phases}
	}
	h := xprom.History{
		Target:   map[string]string{"job": "xsyn", "instance": "edge1:9377"},
		Interval: 15 * time.Second,
		Until:    50 * m,
		Series: []xprom.Series{
			gauge("eth0", xprom.Value(0, 1)),
			gauge("eth1", xprom.Value(0, 1), xprom.Value(30*m, 0)), // a firewall reload at 30m
		},
	}
	got := shownByIface(t, "Netfilter rules", h, 40*m)
	want := map[string]string{"eth0": "complete/green", "eth1": "INCOMPLETE: xsyn attach again/red"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("shown:\n got %v\nwant %v", got, want)
	}
}

// TestAgreementPanel: valid ACKs of the handoff path never reach SYNPROXY, so the agreement
// panel takes them out, and reads 0 on a healthy host with both paths; an exporter older than
// the handoff path, without its counters, must still draw the line.
func TestAgreementPanel(t *testing.T) {
	m := time.Minute
	rate := func(sel string, v float64) xprom.Series {
		return xprom.Series{Sel: sel, Counter: true, Phases: []xprom.Phase{xprom.Rate(0, v)}}
	}
	host := func(series ...xprom.Series) xprom.History {
		return xprom.History{Target: map[string]string{"job": "xsyn", "instance": "edge1:9377"},
			Interval: 15 * time.Second, Until: 30 * m, Series: series}
	}
	for _, tc := range []struct {
		name    string
		history xprom.History
		want    float64
	}{{
		name: "both paths, all well: 200 ACKs/s to SYNPROXY, 90 handed off, 10 refused",
		history: host(
			rate(`xsyn_ack_cookie_valid_total{iface="eth0",family="ipv4"}`, 250),
			rate(`xsyn_ack_cookie_valid_total{iface="eth0",family="ipv6"}`, 50),
			rate(`xsyn_handoff_assigned_total{iface="eth0",family="ipv4"}`, 60),
			rate(`xsyn_handoff_assigned_total{iface="eth0",family="ipv6"}`, 30),
			rate(`xsyn_handoff_refused_total{iface="eth0",family="ipv4"}`, 10),
			rate(`xsyn_handoff_refused_total{iface="eth0",family="ipv6"}`, 0),
			rate(`xsyn_netfilter_synproxy_cookie_valid_total`, 200)),
		want: 0,
	}, {
		name: "SYNPROXY path only, 40 valid ACKs/s that no SYNPROXY rule takes",
		history: host(
			rate(`xsyn_ack_cookie_valid_total{iface="eth0",family="ipv4"}`, 240),
			rate(`xsyn_handoff_assigned_total{iface="eth0",family="ipv4"}`, 0),
			rate(`xsyn_handoff_refused_total{iface="eth0",family="ipv4"}`, 0),
			rate(`xsyn_netfilter_synproxy_cookie_valid_total`, 200)),
		want: 40,
	}, {
		name: "an exporter without the handoff counters",
		history: host(
			rate(`xsyn_ack_cookie_valid_total{iface="eth0",family="ipv4"}`, 240),
			rate(`xsyn_netfilter_synproxy_cookie_valid_total`, 200)),
		want: 40,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			vec := instantOfPanel(t, "XDP and SYNPROXY agreement", tc.history, 20*m)
			if len(vec) != 1 || math.Abs(vec[0].F-tc.want) > 0.01 {
				t.Errorf("panel reads %v, want one series at %v", vec, tc.want)
			}
		})
	}
}

// instantOfPanel evaluates the one query of the panel titled title on history at time at, with
// the variables set to All.
func instantOfPanel(t *testing.T, title string, history xprom.History, at time.Duration) promql.Vector {
	t.Helper()
	d := loadDashboard(t)
	ps := allPanels(d.Panels)
	i := slices.IndexFunc(ps, func(p panel) bool { return p.Title == title })
	if i < 0 || len(ps[i].Targets) != 1 {
		t.Fatalf("no %s panel with one query", title)
	}
	return evalAt(t, ps[i].Targets[0].Expr, history, at)
}

// evalAt evaluates a panel's query, its variables set to All, on history at time at.
func evalAt(t *testing.T, query string, history xprom.History, at time.Duration) promql.Vector {
	t.Helper()
	expr, err := expandAll(query)
	if err != nil {
		t.Fatal(err)
	}
	st, err := history.Storage()
	if err != nil {
		t.Fatal(err)
	}
	eng := xprom.NewEngine()
	defer eng.Close()
	vec, err := xprom.Instant(eng, st, expr, at)
	if err != nil {
		t.Fatal(err)
	}
	return vec
}

// shownByIface evaluates the one instant query of the stat panel titled title on history at
// time at, and reads each interface's value through the panel's own value mappings, as
// "TEXT/COLOR".
func shownByIface(t *testing.T, title string, history xprom.History, at time.Duration) map[string]string {
	t.Helper()
	d := loadDashboard(t)
	i := slices.IndexFunc(d.Panels, func(p panel) bool { return p.Title == title })
	if i < 0 {
		t.Fatalf("no %s panel", title)
	}
	p := d.Panels[i]
	if p.Type != "stat" || len(p.Targets) != 1 || !p.Targets[0].Instant {
		t.Fatalf("%s: want a stat panel with one instant query", title)
	}
	vec := evalAt(t, p.Targets[0].Expr, history, at)
	got := map[string]string{}
	for _, s := range vec {
		iface := s.Metric.Get("iface")
		got[iface] = fmt.Sprintf("unmapped %v", s.F)
		for _, m := range p.FieldConfig.Defaults.Mappings {
			if o, ok := m.Options[fmt.Sprint(s.F)]; ok && m.Type == "value" {
				got[iface] = o.Text + "/" + o.Color
			}
		}
	}
	return got
}
