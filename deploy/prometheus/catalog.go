// Package prometheus holds xsyn's Prometheus rules (xsyn-rules.yml) and what keeps PromQL written
// for xsyn honest: a Catalog of the series a Prometheus server scraping `xsyn serve` stores, taken
// from xsyn's real collector, and a Checker that rejects expressions selecting a metric or a
// label that does not exist. The rules' tests and the Grafana dashboard's tests use both.
package prometheus

import (
	"fmt"
	"path/filepath"
	"runtime"
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"

	"github.com/xsyn-project/xsyn/internal/protect"
	"github.com/xsyn-project/xsyn/internal/repair"
	"github.com/xsyn-project/xsyn/loader"
	"github.com/xsyn-project/xsyn/metrics"
	"github.com/xsyn-project/xsyn/spec"
)

// Metric types as the Catalog records them.
const (
	Counter = "counter"
	Gauge   = "gauge"
)

// TargetLabels are the labels Prometheus adds to every series it scrapes.
var TargetLabels = []string{"job", "instance"}

// closedLabels are xsyn's labels whose values come from xsyn's own vocabulary (bpf/counters.h,
// the attach modes), so that a selector naming another value is a typo that selects nothing.
var closedLabels = []string{"reason", "family", "mode"}

// Metric is one series name as Prometheus stores it.
type Metric struct {
	Name   string
	Type   string              // Counter or Gauge
	Labels []string            // sorted, with TargetLabels
	Values map[string][]string // the values of its closed labels (reason, family, mode)
	Xsyn   bool                // exported by xsyn's collector, not the Go/process/promhttp ones or Prometheus
}

// HasLabel reports whether series of m carry label l.
func (m *Metric) HasLabel(l string) bool { return slices.Contains(m.Labels, l) }

// Catalog is every series name a Prometheus server scraping `xsyn serve` stores, by name.
type Catalog map[string]*Metric

// Xsyn lists the names xsyn's own collector exports, sorted.
func (c Catalog) Xsyn() []string {
	var names []string
	for n, m := range c {
		if m.Xsyn {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	return names
}

// Interfaces the fake source reports, one in each mode, so that every metric xsyn can export is
// exported and every mode is seen.
var fakeModes = map[string]string{
	"eth0": string(loader.ModeNative),
	"eth1": string(loader.ModeGeneric),
	"eth2": protect.ModeNetfilterOnly,
}

// fakeSource stands in for the kernel: xsyn's collector asks it what is protected.
type fakeSource struct{}

func (fakeSource) Interfaces() ([]string, error) {
	var ifaces []string
	for iface := range fakeModes {
		ifaces = append(ifaces, iface)
	}
	slices.Sort(ifaces)
	return ifaces, nil
}

func (fakeSource) Status(iface string) (protect.Status, error) {
	st := protect.Status{Iface: iface, Mode: fakeModes[iface], Rules: true}
	if st.Mode != protect.ModeNetfilterOnly {
		st.Counters = &loader.FamilyCounters{}
		// An on-demand service, so that its series are exported too.
		svc := spec.Service{Family: spec.IPv4, Dst: spec.IPv4.AnyAddr(), Port: 443, Handoff: true, OnDemand: 20000}
		st.Services = []spec.Service{svc}
		st.OnDemand = []loader.ServiceOnDemand{{Service: svc, OnDemandState: loader.OnDemandState{Threshold: svc.OnDemand}}}
	}
	return st, nil
}

// fixture is the metrics package's copy of a kernel file (testdata/synproxy for
// /proc/net/stat/synproxy, testdata/netstat for /proc/net/netstat), in the kernel's format.
func fixture(name string) (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", fmt.Errorf("find the source tree: no caller information")
	}
	return filepath.Join(filepath.Dir(file), "..", "..", "metrics", "testdata", name), nil
}

// NewCatalog builds the Catalog the way `xsyn serve` builds its registry (xsyn's collector, the
// Go and process collectors, the instrumented metrics handler), gathers it once from a fake
// source protecting one interface in each mode, and adds what Prometheus itself records per
// target (up, scrape_*). It fails when xsyn's collector describes a metric the gathering did not
// produce, so a metric added later cannot escape the checks.
func NewCatalog() (Catalog, error) {
	synproxy, err := fixture("synproxy")
	if err != nil {
		return nil, err
	}
	netstat, err := fixture("netstat")
	if err != nil {
		return nil, err
	}
	xsyn := metrics.New(fakeSource{}, metrics.Options{Version: "catalog", SynproxyStats: synproxy, Netstat: netstat})
	described := describe(xsyn)

	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(xsyn)
	// What cmd/xsyn/serve.go registers besides xsyn's collector: the Go and process collectors,
	// and the repair's counters, with a series for each interface.
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	rm := repair.NewMetrics()
	reg.MustRegister(rm.Collectors()...)
	for _, c := range rm.Collectors() {
		described += describe(c)
	}
	for iface := range fakeModes {
		rm.Touch(iface)
	}
	promhttp.InstrumentMetricHandler(reg, promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	families, err := reg.Gather()
	if err != nil {
		return nil, fmt.Errorf("gather from a fake source: %w", err)
	}

	cat := Catalog{}
	gotXsyn := 0
	for _, mf := range families {
		isXsyn := strings.HasPrefix(mf.GetName(), "xsyn_")
		if isXsyn {
			gotXsyn++
		}
		cat.addFamily(mf, isXsyn)
	}
	if gotXsyn != described {
		return nil, fmt.Errorf("xsyn's collector describes %d metrics but a scrape of the fake source has %d: teach fakeSource about the missing ones", described, gotXsyn)
	}
	// Prometheus records these for every target it scrapes.
	for _, name := range []string{"up", "scrape_duration_seconds", "scrape_samples_scraped",
		"scrape_samples_post_metric_relabeling", "scrape_series_added"} {
		cat[name] = &Metric{Name: name, Type: Gauge, Labels: slices.Clone(TargetLabels)}
		slices.Sort(cat[name].Labels)
	}
	return cat, nil
}

func describe(c prometheus.Collector) int {
	ch := make(chan *prometheus.Desc)
	go func() {
		c.Describe(ch)
		close(ch)
	}()
	n := 0
	for range ch {
		n++
	}
	return n
}

// addFamily records a gathered family under the names Prometheus stores: summaries and
// histograms become several series names.
func (c Catalog) addFamily(mf *dto.MetricFamily, isXsyn bool) {
	labels := map[string]bool{}
	values := map[string][]string{}
	for _, l := range TargetLabels {
		labels[l] = true
	}
	for _, m := range mf.GetMetric() {
		for _, lp := range m.GetLabel() {
			labels[lp.GetName()] = true
			if isXsyn && slices.Contains(closedLabels, lp.GetName()) && !slices.Contains(values[lp.GetName()], lp.GetValue()) {
				values[lp.GetName()] = append(values[lp.GetName()], lp.GetValue())
			}
		}
	}
	add := func(name, typ string, extra ...string) {
		m := &Metric{Name: name, Type: typ, Values: values, Xsyn: isXsyn}
		for l := range labels {
			m.Labels = append(m.Labels, l)
		}
		m.Labels = append(m.Labels, extra...)
		slices.Sort(m.Labels)
		c[name] = m
	}
	name := mf.GetName()
	switch mf.GetType() {
	case dto.MetricType_COUNTER:
		add(name, Counter)
	case dto.MetricType_SUMMARY:
		add(name, Gauge, "quantile")
		add(name+"_sum", Counter)
		add(name+"_count", Counter)
	case dto.MetricType_HISTOGRAM:
		add(name+"_bucket", Counter, "le")
		add(name+"_sum", Counter)
		add(name+"_count", Counter)
	default: // gauges, and untyped metrics treated as gauges
		add(name, Gauge)
	}
}
