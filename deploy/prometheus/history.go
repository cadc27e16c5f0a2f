package prometheus

import (
	"context"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/util/annotations"
)

// Epoch is time 0 of a History.
var Epoch = time.Unix(0, 0).UTC()

// Phase is a stretch of a series' life from From on: a rate per second for counters, a value
// for gauges, NaN for no series at all (see Gone).
type Phase struct {
	From  time.Duration
	Value float64
}

// Rate, Value and Gone make phases.
func Rate(from time.Duration, perSecond float64) Phase { return Phase{from, perSecond} }
func Value(from time.Duration, v float64) Phase        { return Phase{from, v} }
func Gone(from time.Duration) Phase                    { return Phase{from, math.NaN()} }

// Series is one synthetic series: scraped while a phase other than Gone is in force, its
// value integrated from the rates when Counter.
type Series struct {
	Sel     string // name{labels}, without the target's labels
	Counter bool
	Phases  []Phase
}

// at returns the phase value in force at t, and whether the series exists then.
func (s Series) at(t time.Duration) (float64, bool) {
	v, ok := 0.0, false
	for _, p := range s.Phases {
		if t >= p.From {
			v, ok = p.Value, !math.IsNaN(p.Value)
		}
	}
	return v, ok
}

// History is what a Prometheus server stores from scraping one target every Interval from
// Epoch to Until: each series' samples, and a staleness marker when a series stops, as a scrape
// that no longer finds it writes.
type History struct {
	Target   map[string]string // added to every series: job, instance
	Interval time.Duration
	Until    time.Duration
	Series   []Series
}

// With returns a copy of h with the series of the same selector replaced, or added.
func (h History) With(changes ...Series) History {
	h.Series = slices.Clone(h.Series)
	for _, c := range changes {
		i := slices.IndexFunc(h.Series, func(s Series) bool { return s.Sel == c.Sel })
		if i < 0 {
			h.Series = append(h.Series, c)
		} else {
			h.Series[i] = c
		}
	}
	return h
}

// Storage returns the history as a queryable storage.
func (h History) Storage() (storage.Queryable, error) {
	p := parser.NewParser(parser.Options{})
	var st memStorage
	for _, s := range h.Series {
		ls, err := p.ParseMetric(s.Sel)
		if err != nil {
			return nil, fmt.Errorf("series %s: %w", s.Sel, err)
		}
		b := labels.NewBuilder(ls)
		for k, v := range h.Target {
			b.Set(k, v)
		}
		var samples []chunks.Sample
		total, present := 0.0, false
		for t := time.Duration(0); t <= h.Until; t += h.Interval {
			v, ok := s.at(t)
			switch {
			case !ok && present:
				samples = append(samples, sample{t.Milliseconds(), math.Float64frombits(value.StaleNaN)})
			case !ok:
			case s.Counter:
				if present {
					total += v * h.Interval.Seconds()
				}
				samples = append(samples, sample{t.Milliseconds(), total})
			default:
				samples = append(samples, sample{t.Milliseconds(), v})
			}
			present = ok
		}
		st = append(st, storage.NewListSeries(b.Labels(), samples))
	}
	slices.SortFunc(st, func(a, b storage.Series) int { return labels.Compare(a.Labels(), b.Labels()) })
	return st, nil
}

// NewEngine returns a PromQL engine with a default Prometheus server's settings (5m lookback,
// no experimental functions).
func NewEngine() *promql.Engine {
	return promql.NewEngine(promql.EngineOpts{
		MaxSamples:               50_000_000,
		Timeout:                  time.Minute,
		NoStepSubqueryIntervalFn: func(int64) int64 { return time.Minute.Milliseconds() },
		Parser:                   parser.NewParser(parser.Options{}),
	})
}

// Instant evaluates expr at Epoch+at.
func Instant(eng *promql.Engine, st storage.Queryable, expr string, at time.Duration) (promql.Vector, error) {
	q, err := eng.NewInstantQuery(context.Background(), st, nil, expr, Epoch.Add(at))
	if err != nil {
		return nil, err
	}
	defer q.Close()
	return q.Exec(context.Background()).Vector()
}

// Range evaluates expr every step from Epoch+from to Epoch+to, as a rule evaluated every step
// would be.
func Range(eng *promql.Engine, st storage.Queryable, expr string, from, to, step time.Duration) (promql.Matrix, error) {
	q, err := eng.NewRangeQuery(context.Background(), st, nil, expr, Epoch.Add(from), Epoch.Add(to), step)
	if err != nil {
		return nil, err
	}
	defer q.Close()
	return q.Exec(context.Background()).Matrix()
}

// sample is a float sample.
type sample struct {
	t int64
	f float64
}

func (s sample) T() int64                      { return s.t }
func (s sample) ST() int64                     { return 0 }
func (s sample) F() float64                    { return s.f }
func (s sample) H() *histogram.Histogram       { return nil }
func (s sample) FH() *histogram.FloatHistogram { return nil }
func (s sample) Type() chunkenc.ValueType      { return chunkenc.ValFloat }
func (s sample) Copy() chunks.Sample           { return s }

// memStorage is a few series in memory, sorted by labels: a storage.Queryable and its Querier.
type memStorage []storage.Series

func (m memStorage) Querier(int64, int64) (storage.Querier, error) { return m, nil }

func (m memStorage) Select(_ context.Context, _ bool, _ *storage.SelectHints, ms ...*labels.Matcher) storage.SeriesSet {
	out := &memSeriesSet{}
	for _, s := range m {
		if matchAll(s.Labels(), ms) {
			out.series = append(out.series, s)
		}
	}
	return out
}

func matchAll(ls labels.Labels, ms []*labels.Matcher) bool {
	for _, m := range ms {
		if !m.Matches(ls.Get(m.Name)) {
			return false
		}
	}
	return true
}

func (m memStorage) LabelValues(_ context.Context, name string, _ *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	var vals []string
	for _, s := range m {
		if v := s.Labels().Get(name); v != "" && matchAll(s.Labels(), ms) && !slices.Contains(vals, v) {
			vals = append(vals, v)
		}
	}
	slices.Sort(vals)
	return vals, nil, nil
}

func (m memStorage) LabelNames(_ context.Context, _ *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	var names []string
	for _, s := range m {
		if matchAll(s.Labels(), ms) {
			s.Labels().Range(func(l labels.Label) {
				if !slices.Contains(names, l.Name) {
					names = append(names, l.Name)
				}
			})
		}
	}
	slices.Sort(names)
	return names, nil, nil
}

func (memStorage) Close() error { return nil }

// memSeriesSet iterates series already selected.
type memSeriesSet struct {
	series []storage.Series
	next   int
}

func (s *memSeriesSet) Next() bool {
	s.next++
	return s.next <= len(s.series)
}

func (s *memSeriesSet) At() storage.Series              { return s.series[s.next-1] }
func (*memSeriesSet) Err() error                        { return nil }
func (*memSeriesSet) Warnings() annotations.Annotations { return nil }
