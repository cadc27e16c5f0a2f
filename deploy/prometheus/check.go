package prometheus

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

// Checker checks PromQL expressions against a Catalog.
type Checker struct {
	Catalog Catalog
	parser  parser.Parser
}

// NewChecker returns a Checker accepting the stable PromQL of a default Prometheus server: no
// experimental functions.
func NewChecker(cat Catalog) *Checker {
	return &Checker{Catalog: cat, parser: parser.NewParser(parser.Options{})}
}

// Result is what an expression that passed the checks selects and returns.
type Result struct {
	Metrics []string // the series names it selects, sorted
	Labels  []string // the labels its result series may carry, sorted
}

// HasLabel reports whether the result's series may carry label l.
func (r Result) HasLabel(l string) bool { return slices.Contains(r.Labels, l) }

// Check parses expr and checks that every selected series name is in the catalog, every label
// it matches, groups by, or matches vectors on is one that the series involved carry, every
// value matched of a closed label (reason, family, mode) is one xsyn uses, and counters are only
// read through rate, irate, increase or resets (and gauges never are).
func (c *Checker) Check(expr string) (Result, error) {
	e, err := c.parser.ParseExpr(expr)
	if err != nil {
		return Result{}, fmt.Errorf("parse: %w", err)
	}
	w := walker{cat: c.Catalog, selected: map[string]bool{}}
	ls := w.labels(e, ctxNone)
	if err := errors.Join(w.errs...); err != nil {
		return Result{}, err
	}
	var res Result
	for n := range w.selected {
		res.Metrics = append(res.Metrics, n)
	}
	slices.Sort(res.Metrics)
	res.Labels = ls.sorted()
	return res, nil
}

// labelSet is the set of labels a vector's series may carry.
type labelSet map[string]bool

func setOf(ls ...string) labelSet {
	s := labelSet{}
	for _, l := range ls {
		s[l] = true
	}
	return s
}

func (s labelSet) sorted() []string {
	var out []string
	for l := range s {
		out = append(out, l)
	}
	slices.Sort(out)
	return out
}

func (s labelSet) union(o labelSet) labelSet {
	u := labelSet{}
	for l := range s {
		u[l] = true
	}
	for l := range o {
		u[l] = true
	}
	return u
}

// reading tells a selector how it is read.
type reading int

const (
	ctxNone      reading = iota
	ctxCounterFn         // the range argument of rate, irate, increase, resets
	ctxAbsent            // the argument of absent or absent_over_time: any type goes
)

// counterFuncs read counters; everything else that takes a range vector reads gauges.
var counterFuncs = []string{"rate", "irate", "increase", "resets"}

type walker struct {
	cat      Catalog
	selected map[string]bool
	errs     []error
}

func (w *walker) errorf(n parser.Node, format string, args ...any) {
	w.errs = append(w.errs, fmt.Errorf("%s: %s", n, fmt.Sprintf(format, args...)))
}

// labels checks node and returns the labels its result may carry.
func (w *walker) labels(node parser.Node, ctx reading) labelSet {
	switch n := node.(type) {
	case *parser.VectorSelector:
		return w.selector(n, false, ctx)
	case *parser.MatrixSelector:
		return w.selector(n.VectorSelector.(*parser.VectorSelector), true, ctx)
	case *parser.SubqueryExpr:
		return w.labels(n.Expr, ctxNone)
	case *parser.ParenExpr:
		return w.labels(n.Expr, ctx)
	case *parser.UnaryExpr:
		return w.labels(n.Expr, ctx)
	case *parser.StepInvariantExpr:
		return w.labels(n.Expr, ctx)
	case *parser.NumberLiteral, *parser.StringLiteral:
		return labelSet{}
	case *parser.Call:
		return w.call(n)
	case *parser.AggregateExpr:
		return w.aggregate(n)
	case *parser.BinaryExpr:
		return w.binary(n)
	default:
		w.errorf(node, "unexpected expression %T", node)
		return labelSet{}
	}
}

func (w *walker) selector(vs *parser.VectorSelector, isRange bool, ctx reading) labelSet {
	name := vs.Name
	for _, m := range vs.LabelMatchers {
		if m.Name == labels.MetricName && m.Type != labels.MatchEqual {
			w.errorf(vs, "select series by their exact name, not by a %s matcher on it", m.Type)
			return labelSet{}
		}
		if m.Name == labels.MetricName {
			name = m.Value
		}
	}
	if name == "" {
		w.errorf(vs, "no series name")
		return labelSet{}
	}
	m, ok := w.cat[name]
	if !ok {
		w.errorf(vs, "%s is not a metric a scrape of xsyn serve has", name)
		return labelSet{}
	}
	w.selected[name] = true
	switch {
	case ctx == ctxAbsent:
	case ctx == ctxCounterFn && m.Type != Counter:
		w.errorf(vs, "%s is a %s: rate, irate, increase and resets are for counters", name, m.Type)
	case ctx != ctxCounterFn && m.Type == Counter && isRange:
		w.errorf(vs, "%s is a counter: read its range through rate, irate, increase or resets", name)
	case ctx != ctxCounterFn && m.Type == Counter:
		w.errorf(vs, "%s is a counter: its raw value means nothing, use rate or increase", name)
	}
	for _, lm := range vs.LabelMatchers {
		if lm.Name == labels.MetricName {
			continue
		}
		if !m.HasLabel(lm.Name) {
			w.errorf(vs, "%s has no label %q (it has %s)", name, lm.Name, strings.Join(m.Labels, ", "))
			continue
		}
		if known, closed := m.Values[lm.Name]; closed {
			if err := matchesKnown(lm, known); err != nil {
				w.errorf(vs, "%s: %v", name, err)
			}
		}
	}
	return setOf(m.Labels...)
}

// literalAlternation matches a regular expression that is only literal values separated by |.
var literalAlternation = regexp.MustCompile(`^[A-Za-z0-9_:.-]+(\|[A-Za-z0-9_:.-]+)*$`)

// matchesKnown reports a matcher on a closed label that names a value xsyn never uses, or a
// regular expression that matches none of them.
func matchesKnown(lm *labels.Matcher, known []string) error {
	switch lm.Type {
	case labels.MatchEqual, labels.MatchNotEqual:
		if !slices.Contains(known, lm.Value) {
			return fmt.Errorf("%s=%q is not a value xsyn uses (%s)", lm.Name, lm.Value, strings.Join(known, ", "))
		}
	default:
		if literalAlternation.MatchString(lm.Value) {
			for _, v := range strings.Split(lm.Value, "|") {
				if !slices.Contains(known, v) {
					return fmt.Errorf("%s=~%q: %q is not a value xsyn uses (%s)", lm.Name, lm.Value, v, strings.Join(known, ", "))
				}
			}
			return nil
		}
		if !slices.ContainsFunc(known, lm.Matches) {
			return fmt.Errorf("%s %s %q matches no value xsyn uses (%s)", lm.Name, lm.Type, lm.Value, strings.Join(known, ", "))
		}
	}
	return nil
}

func (w *walker) call(c *parser.Call) labelSet {
	name := c.Func.Name
	argLabels := make([]labelSet, len(c.Args))
	for i, a := range c.Args {
		ctx := ctxNone
		switch {
		case slices.Contains(counterFuncs, name):
			ctx = ctxCounterFn
		case name == "absent" || name == "absent_over_time":
			ctx = ctxAbsent
		}
		argLabels[i] = w.labels(a, ctx)
	}
	switch name {
	case "vector", "scalar", "time", "pi":
		return labelSet{}
	case "absent", "absent_over_time":
		// The result carries the labels of the selector's equality matchers.
		out := labelSet{}
		parser.Inspect(c.Args[0], func(n parser.Node, _ []parser.Node) error {
			if vs, ok := n.(*parser.VectorSelector); ok {
				for _, m := range vs.LabelMatchers {
					if m.Type == labels.MatchEqual && m.Name != labels.MetricName {
						out[m.Name] = true
					}
				}
			}
			return nil
		})
		return out
	case "label_replace", "label_join":
		out := argLabels[0].union(setOf(stringArg(c.Args[1])))
		src := c.Args[2:]
		if name == "label_replace" {
			src = c.Args[3:4]
		}
		for _, a := range src {
			if l := stringArg(a); l != "" && !argLabels[0][l] {
				w.errorf(c, "%s reads label %q, which its argument does not carry", name, l)
			}
		}
		return out
	case "histogram_quantile":
		out := argLabels[1].union(nil)
		delete(out, "le")
		return out
	}
	// Everything else returns the labels of its vector argument.
	for i, a := range c.Args {
		if t := a.Type(); t == parser.ValueTypeVector || t == parser.ValueTypeMatrix {
			return argLabels[i]
		}
	}
	return labelSet{}
}

func stringArg(e parser.Expr) string {
	if s, ok := e.(*parser.StringLiteral); ok {
		return s.Val
	}
	return ""
}

func (w *walker) aggregate(a *parser.AggregateExpr) labelSet {
	in := w.labels(a.Expr, ctxNone)
	if a.Param != nil {
		w.labels(a.Param, ctxNone)
	}
	for _, g := range a.Grouping {
		if !in[g] {
			w.errorf(a, "groups by %q, which the aggregated series do not carry (they have %s)", g, strings.Join(in.sorted(), ", "))
		}
	}
	var out labelSet
	switch {
	case a.Op == parser.TOPK || a.Op == parser.BOTTOMK || a.Op == parser.LIMITK || a.Op == parser.LIMIT_RATIO:
		out = in
	case a.Without:
		out = in.union(nil)
		for _, g := range a.Grouping {
			delete(out, g)
		}
	default:
		out = setOf(a.Grouping...)
	}
	if a.Op == parser.COUNT_VALUES {
		out[stringArg(a.Param)] = true
	}
	return out
}

func (w *walker) binary(b *parser.BinaryExpr) labelSet {
	l := w.labels(b.LHS, ctxNone)
	r := w.labels(b.RHS, ctxNone)
	lv := b.LHS.Type() == parser.ValueTypeVector
	rv := b.RHS.Type() == parser.ValueTypeVector
	switch {
	case lv && !rv:
		return l
	case rv && !lv:
		return r
	case !lv && !rv:
		return labelSet{}
	}
	vm := b.VectorMatching
	if vm == nil {
		vm = &parser.VectorMatching{Card: parser.CardOneToOne}
	}
	for _, m := range vm.MatchingLabels {
		switch {
		case vm.On && (!l[m] || !r[m]):
			w.errorf(b, "matches on %q, which the series of both sides do not carry (left: %s; right: %s)",
				m, strings.Join(l.sorted(), ", "), strings.Join(r.sorted(), ", "))
		case !vm.On && !l[m] && !r[m]:
			w.errorf(b, "ignores %q, which neither side carries", m)
		}
	}
	one := r // the side whose labels group_left/group_right copies
	if vm.Card == parser.CardOneToMany {
		one = l
	}
	for _, inc := range vm.Include {
		if !one[inc] {
			w.errorf(b, "copies label %q from a side that does not carry it", inc)
		}
	}
	switch {
	case b.Op == parser.LOR:
		return l.union(r)
	case b.Op == parser.LAND || b.Op == parser.LUNLESS:
		return l
	case vm.Card == parser.CardManyToOne:
		return l.union(setOf(vm.Include...))
	case vm.Card == parser.CardOneToMany:
		return r.union(setOf(vm.Include...))
	case vm.On:
		return setOf(vm.MatchingLabels...)
	default:
		out := l.union(nil)
		for _, m := range vm.MatchingLabels {
			delete(out, m)
		}
		return out
	}
}
