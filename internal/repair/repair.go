package repair

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xsyn-project/xsyn/loader"
	"github.com/xsyn-project/xsyn/rules"
)

// Rules is what a Repairer needs of the netfilter side (a Recorder).
type Rules interface {
	// Drift says what of want is no longer in place (rules.Applier.Drift).
	Drift(want rules.Plan) ([]string, error)
	// Repair applies a record again, and records it anew.
	Repair(rec Record) error
}

// Records is where a Repairer finds what each interface had applied (a Store).
type Records interface {
	Interfaces() ([]string, error)
	Load(iface string) (Record, bool, error)
}

// Repairer puts back the rules of every interface with a record whose live chains are no longer
// what attach installed. It changes nothing else: an interface without a record (detached, or
// whose statements all take the handoff path) is left alone, and so is one deleted since, or
// made again under the same name.
type Repairer struct {
	Rules   Rules
	Records Records
	// Lock takes the writers' lock of the namespace: a repair never interleaves with attach or
	// detach, and looks at the record again once it holds it.
	Lock func() (unlock func(), err error)
	// Ifindex is the index of an interface; default net.InterfaceByName's.
	Ifindex func(iface string) (int, error)
	// Metrics, when set, counts the checks, the repairs and the failures.
	Metrics *Metrics
	// Exclusive, when set, is held during each check by Run: a scrape that takes it never reads
	// rules half-way through a repair.
	Exclusive sync.Locker
}

// New returns the Repairer of this network namespace's rules, acting through rec.
func New(rec *Recorder, opts loader.Options) *Repairer {
	return &Repairer{
		Rules:   rec,
		Records: rec.Store,
		Lock: func() (func(), error) {
			w, err := loader.Lock(opts)
			if err != nil {
				return nil, err
			}
			return w.Unlock, nil
		},
	}
}

// Result is what a check found of one interface whose rules were not as attach left them.
type Result struct {
	Iface string
	// Missing says what was gone, as rules.Applier.Drift words it.
	Missing []string
	// Err is why the check or the repair failed; nil when the rules were put back.
	Err error
}

// Check compares every recorded interface's rules with its record, and repairs those that
// differ. It returns a Result for each interface it repaired or could not check or repair, and
// counts them, and the check, in Metrics.
func (r *Repairer) Check() []Result {
	ifaces, err := r.Records.Interfaces()
	if err != nil {
		res := Result{Err: err}
		r.Metrics.count(res)
		return []Result{res}
	}
	var out []Result
	for _, iface := range ifaces {
		if r.Metrics != nil {
			r.Metrics.Touch(iface)
		}
		if res, ok := r.check(iface); ok {
			r.Metrics.count(res)
			out = append(out, res)
		}
	}
	r.Metrics.checked()
	return out
}

// check looks at one interface without the lock, which it takes only to repair; ok is false when
// there was nothing to do.
func (r *Repairer) check(iface string) (Result, bool) {
	res := Result{Iface: iface}
	rec, missing, err := r.drift(iface)
	if err != nil || len(missing) == 0 {
		res.Err = err
		return res, err != nil
	}
	unlock, err := r.Lock()
	if err != nil {
		res.Missing, res.Err = missing, err
		return res, true
	}
	defer unlock()
	// An attach or detach may have run since: the record says what is wanted now.
	if rec, missing, err = r.drift(iface); err != nil || len(missing) == 0 {
		res.Err = err
		return res, err != nil
	}
	res.Missing, res.Err = missing, r.Rules.Repair(rec)
	return res, true
}

// drift reads iface's record and what of it is gone; nothing when there is no record or the
// interface is not the one it was recorded for.
func (r *Repairer) drift(iface string) (Record, []string, error) {
	rec, ok, err := r.Records.Load(iface)
	if err != nil || !ok {
		return rec, nil, err
	}
	ifindex := r.Ifindex
	if ifindex == nil {
		ifindex = Ifindex
	}
	idx, err := ifindex(iface)
	if err != nil || (rec.Ifindex != 0 && idx != rec.Ifindex) {
		return rec, nil, nil // gone, or another interface of that name: attach protects it
	}
	want := rec.Live
	want.Sysctls = rec.Plan.Sysctls // as planned: a snapshot infers them from the rules
	missing, err := r.Rules.Drift(want)
	return rec, missing, err
}

// Run checks at every tick until ctx is done, and reports each Result.
func (r *Repairer) Run(ctx context.Context, ticks <-chan time.Time, report func(Result)) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticks:
		}
		if r.Exclusive != nil {
			r.Exclusive.Lock()
		}
		results := r.Check()
		if r.Exclusive != nil {
			r.Exclusive.Unlock()
		}
		for _, res := range results {
			report(res)
		}
	}
}

// Metrics counts what a Repairer did.
type Metrics struct {
	checks   prometheus.Counter
	repairs  *prometheus.CounterVec
	failures *prometheus.CounterVec
}

// NewMetrics returns the repair's metrics, to register beside the collector's.
func NewMetrics() *Metrics {
	return &Metrics{
		checks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "xsyn_rules_checks_total",
			Help: "Times xsyn serve compared the netfilter rules of every attached interface with what attach installed (each second).",
		}),
		repairs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "xsyn_rules_repairs_total",
			Help: "Times xsyn serve put an interface's netfilter rules back after something (a firewall reload) took some of them; its log names what was missing.",
		}, []string{"iface"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "xsyn_rules_repair_failures_total",
			Help: "Checks or repairs of an interface's netfilter rules that failed; its log says why. The rules may be incomplete: xsyn status IFACE says what is missing.",
		}, []string{"iface"}),
	}
}

// Collectors are the metrics to register.
func (m *Metrics) Collectors() []prometheus.Collector {
	return []prometheus.Collector{m.checks, m.repairs, m.failures}
}

// Touch makes the series of iface exist at 0, so that a first repair is an increase.
func (m *Metrics) Touch(iface string) {
	m.repairs.WithLabelValues(iface)
	m.failures.WithLabelValues(iface)
}

func (m *Metrics) count(res Result) {
	if m == nil {
		return
	}
	if res.Err != nil {
		m.failures.WithLabelValues(res.Iface).Inc()
	} else {
		m.repairs.WithLabelValues(res.Iface).Inc()
	}
}

func (m *Metrics) checked() {
	if m != nil {
		m.checks.Inc()
	}
}
