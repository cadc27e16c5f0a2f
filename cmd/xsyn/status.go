package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/xsyn-project/xsyn/internal/protect"
	"github.com/xsyn-project/xsyn/internal/term"
	"github.com/xsyn-project/xsyn/loader"
	"github.com/xsyn-project/xsyn/spec"
)

const statusHelp = `Shows, for IFACE or every protected interface of this network namespace: the mode (native or
generic XDP, or netfilter-only), what holds the program attached, the protected services with
their SYN-ACK options and path (handoff: xsyn's cookie, the ACK handed to the listening socket;
synproxy: the kernel's cookie, netfilter's SYNPROXY), the XDP counters by family, and their
rates per second.

xsyn keeps no daemon and no history: the rates are measured by reading the counters twice,
--interval apart, so status takes that long (--interval 0: counters only, at once). --watch
keeps reading and refreshes the screen in place like top, one frame per interval, until
Ctrl-C; with --json it prints one JSON document per line instead (JSON Lines). A failed read
(e.g. the interface was detached) ends the watch with that error.

Reads the kernel's state only; changes nothing. The --json output is stable; its fields are
documented in docs/status-json.md.

Examples:
  xsyn status
  xsyn status eth0 --watch
  xsyn status eth0 --json --interval 0
  xsyn status eth0 --watch --json --interval 5s --count 12 > eth0.jsonl
`

// minInterval keeps --watch from spinning: counters are summed over every CPU per read.
const minInterval = 100 * time.Millisecond

type statusOpts struct {
	iface    string
	json     bool
	watch    bool
	interval time.Duration
	count    int
}

func runStatus(args []string, stdout, _ io.Writer) error {
	fs := newFlags("status", "status [IFACE] [--json] [--watch] [--interval DURATION] [--count N]", statusHelp, stdout)
	o := statusOpts{}
	fs.BoolVar(&o.json, "json", false, "print JSON (stable format; JSON Lines with --watch)")
	fs.BoolVar(&o.watch, "watch", false, "refresh every --interval until Ctrl-C")
	fs.DurationVar(&o.interval, "interval", time.Second, "`duration` over which rates are measured, and between --watch frames; 0: no rates")
	fs.IntVar(&o.count, "count", 0, "with --watch: stop after `N` frames (0: until Ctrl-C)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 1 {
		return usagef("at most one interface, got %d", len(pos))
	}
	if len(pos) == 1 {
		o.iface = pos[0]
	}
	switch {
	case o.interval < 0:
		return usagef("--interval %s: want a duration of 0 or more, e.g. 1s", o.interval)
	case o.interval != 0 && o.interval < minInterval:
		return usagef("--interval %s: want 0 (no rates) or at least %s", o.interval, minInterval)
	case o.watch && o.interval == 0:
		return usagef("--watch needs an --interval above 0, e.g. 1s")
	case o.count < 0:
		return usagef("--count %d: want 0 (until Ctrl-C) or more", o.count)
	case o.count != 0 && !o.watch:
		return usagef("--count only applies to --watch")
	}
	if err := requireRoot(); err != nil {
		return err
	}
	p, err := protect.New()
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	v := statusView{opts: o, read: func() ([]protect.Status, error) { return p.Statuses(o.iface) },
		now: time.Now, wait: waitCtx, out: stdout, terminal: term.IsTerminal(stdout)}
	if o.watch {
		return v.watch(ctx)
	}
	return v.once(ctx)
}

// statusView reads statuses and renders them; the clock and the wait are parameters so the
// rendering and the rates can be tested without a kernel.
type statusView struct {
	opts     statusOpts
	read     func() ([]protect.Status, error)
	now      func() time.Time
	wait     func(ctx context.Context, d time.Duration) bool // false: ctx ended first
	out      io.Writer
	terminal bool // --watch redraws in place
}

// sample is one read of the kernel's state, and when it was taken.
type sample struct {
	at  time.Time
	sts []protect.Status
}

func (v statusView) sample() (sample, error) {
	at := v.now()
	sts, err := v.read()
	return sample{at: at, sts: sts}, err
}

// once reads, waits an interval and reads again for the rates. Interrupted while waiting, it
// prints nothing: the operator asked it to stop.
func (v statusView) once(ctx context.Context) error {
	cur, err := v.sample()
	if err != nil {
		return err
	}
	var prev *sample
	if v.opts.interval > 0 {
		if !v.wait(ctx, v.opts.interval) {
			return nil
		}
		first := cur
		if cur, err = v.sample(); err != nil {
			return err
		}
		prev = &first
	}
	return v.render(prev, cur)
}

// watch renders a frame at once (counters only) and then one per interval with the rates since
// the previous frame.
func (v statusView) watch(ctx context.Context) error {
	var prev *sample
	for frame := 1; ; frame++ {
		cur, err := v.sample()
		if err != nil {
			return err
		}
		if err := v.render(prev, cur); err != nil {
			return err
		}
		if v.opts.count != 0 && frame >= v.opts.count {
			return nil
		}
		if !v.wait(ctx, v.opts.interval) {
			return nil
		}
		prev = &cur
	}
}

func (v statusView) render(prev *sample, cur sample) error {
	rates := map[string]measured{}
	if prev != nil {
		dt := cur.at.Sub(prev.at)
		for _, st := range cur.sts {
			for _, old := range prev.sts {
				if old.Iface == st.Iface {
					if r, ok := ratesBetween(old.Counters, st.Counters, dt); ok {
						rates[st.Iface] = measured{r, dt}
					}
				}
			}
		}
	}
	if v.opts.json {
		return writeJSON(v.out, cur.sts, rates, !v.opts.watch)
	}
	var b strings.Builder
	if v.opts.watch {
		fmt.Fprintf(&b, "xsyn status, every %s, %s (Ctrl-C quits)\n\n", v.opts.interval, cur.at.Format("2006-01-02 15:04:05"))
	}
	if len(cur.sts) == 0 {
		fmt.Fprintln(&b, "no interface is protected by xsyn in this network namespace")
	}
	for i, st := range cur.sts {
		if i > 0 {
			fmt.Fprintln(&b)
		}
		r, ok := rates[st.Iface]
		writeText(&b, st, r.perSecond, ok || prev == nil)
	}
	frame := b.String()
	switch {
	case v.opts.watch && v.terminal:
		// Home, each line cleared to its end, then the rest of the screen: no flicker.
		frame = "\x1b[H" + strings.ReplaceAll(frame, "\n", "\x1b[K\n") + "\x1b[J"
	case v.opts.watch:
		frame += "\n"
	}
	_, err := io.WriteString(v.out, frame)
	return err
}

func waitCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// familyRates are counters per second by family ("ipv4", "ipv6", "other") and counter name.
type familyRates map[string]map[string]float64

// measured is an interface's rates and the time they were measured over.
type measured struct {
	perSecond familyRates
	over      time.Duration
}

// families names the counters of each family the way --json and the metrics do.
func families(c *loader.FamilyCounters) map[string][]loader.CounterField {
	return map[string][]loader.CounterField{
		"ipv4": loader.Fields(c.IPv4), "ipv6": loader.Fields(c.IPv6), "other": loader.Fields(c.Other),
	}
}

// ratesBetween is the change of every counter from prev to cur, per second. False when there is
// nothing to compare (netfilter-only has no counters) or a counter went down: the program was
// attached afresh in between (detach, then attach), and the difference means nothing.
func ratesBetween(prev, cur *loader.FamilyCounters, dt time.Duration) (familyRates, bool) {
	if prev == nil || cur == nil || dt <= 0 {
		return nil, false
	}
	out, now := familyRates{}, families(cur)
	for fam, before := range families(prev) {
		m := map[string]float64{}
		for i, f := range before {
			after := now[fam][i]
			if after.Value < f.Value {
				return nil, false
			}
			m[f.Name] = float64(after.Value-f.Value) / dt.Seconds()
		}
		out[fam] = m
	}
	return out, true
}

func describeMode(mode string, holder loader.Holder, dir string) string {
	switch {
	case mode == protect.ModeNetfilterOnly:
		return "netfilter-only: SYNPROXY rules without the XDP fast path"
	case holder == loader.HolderLink && dir != "":
		return fmt.Sprintf("%s XDP; held by a bpf link pinned in %s", mode, dir)
	case holder == loader.HolderLink:
		return fmt.Sprintf("%s XDP; held by a bpf link pinned outside this mount namespace", mode)
	default:
		return fmt.Sprintf("%s XDP; held by the interface through netlink, no bpffs mounted here", mode)
	}
}

// printServices shows what the SYN-ACK offers, and the path of the ACKs that come back. On the
// SYNPROXY path, without timestamps there is nowhere to keep the client's window scale, SACK or
// ECN in the kernel's cookie, so none of them is offered (shown as -); the handoff's cookie
// carries them in the sequence number itself.
func printServices(w io.Writer, svcs []spec.Service) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  FAMILY\tDESTINATION\tPORT\tMSS\tWSCALE\tSACK\tTIMESTAMPS\tECN\tTTL\tPATH")
	for _, s := range svcs {
		o := s.Options
		wscale, sack, ecn := strconv.Itoa(int(o.WScale)), onOff(o.SACK), onOff(o.ECN)
		if !o.Timestamps && !s.Handoff {
			wscale, sack, ecn = "-", "-", "-"
		}
		path := servicePath(s)
		if s.OnDemand != 0 {
			path += fmt.Sprintf(", on-demand %d/s", s.OnDemand)
		}
		fmt.Fprintf(tw, "  %s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\t%d\t%s\n", s.Family, s.Dst, s.Port, o.MSS, wscale, sack, onOff(o.Timestamps), ecn, s.TTL, path)
	}
	tw.Flush()
}

// servicePath names the path of a service's ACKs, as status and --json show it.
func servicePath(s spec.Service) string {
	if s.Handoff {
		return spec.PathHandoff.String()
	}
	return spec.PathSynproxy.String()
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

// writeText prints one interface. rates is nil when none were measured; fresh says why: false
// when the counters were reset between the two reads.
func writeText(w io.Writer, st protect.Status, rates familyRates, fresh bool) {
	fmt.Fprintf(w, "%s: %s\n", st.Iface, describeMode(st.Mode, st.Holder, st.StateDir))
	if st.ProgID != 0 {
		fmt.Fprintf(w, "  program id %d; netfilter rules %s\n", st.ProgID, rulesState(st))
	} else if !st.RulesComplete() {
		fmt.Fprintf(w, "  netfilter rules %s\n", rulesState(st))
	}
	if st.Rules && !st.RulesComplete() {
		for _, m := range st.RulesMissing {
			fmt.Fprintf(w, "    %s\n", m)
		}
	}
	if len(st.Services) > 0 {
		printServices(w, st.Services)
	}
	writeOnDemand(w, st)
	if st.Counters == nil {
		return
	}
	switch {
	case rates != nil:
		fmt.Fprintf(w, "  per second: %s\n", summary(rates, slices.ContainsFunc(st.Services, func(s spec.Service) bool { return s.Handoff })))
	case !fresh:
		fmt.Fprintln(w, "  per second: unknown, the counters were reset (attached afresh) between reads")
	}
	fams := families(st.Counters)
	order := []string{"ipv4", "ipv6", "other"}
	var rows []string
	for i, f := range fams["ipv4"] {
		if f.Value+fams["ipv6"][i].Value+fams["other"][i].Value == 0 {
			continue
		}
		row := "  " + f.Name + "\t"
		for _, fam := range order {
			row += strconv.FormatUint(fams[fam][i].Value, 10) + "\t"
			if rates != nil {
				row += formatRate(rates[fam][f.Name]) + "\t"
			}
		}
		rows = append(rows, row)
	}
	if len(rows) == 0 {
		fmt.Fprintln(w, "  counters: no packets yet")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	header := "  COUNTER\t"
	for _, fam := range order {
		header += strings.ToUpper(fam) + "\t"
		if rates != nil {
			header += "/s\t"
		}
	}
	fmt.Fprintln(tw, header)
	for _, r := range rows {
		fmt.Fprintln(tw, r)
	}
	tw.Flush()
}

// rulesState says whether the interface has all its netfilter rules, and what to do when not:
// without them the valid ACKs XDP passes on (every ACK, netfilter-only) may meet no SYNPROXY and
// clients fail, e.g. after a firewall reload replaced the filter table. writeText lists what is
// gone below it.
func rulesState(st protect.Status) string {
	again := fmt.Sprintf("run attach again (systemctl reload xsyn@%s)", st.Iface)
	switch {
	case st.RulesComplete():
		return "installed"
	case st.RulesOK():
		return "none needed (every service takes the handoff path)"
	case !st.Rules:
		return "MISSING; " + again
	}
	return "INCOMPLETE; " + again
}

// summary is the line to read first during an attack: SYNs in and cookies out, ACKs that came
// back valid or forged, established traffic, and everything XDP dropped; with handoff services,
// also the ACKs handed to a listener and those the kernel refused.
func summary(r familyRates, handoff bool) string {
	total := func(match func(string) bool) float64 {
		var sum float64
		for _, m := range r {
			for name, v := range m {
				if match(name) {
					sum += v
				}
			}
		}
		return sum
	}
	is := func(n string) func(string) bool { return func(s string) bool { return s == n } }
	line := fmt.Sprintf("SYN %s, SYN-ACK %s, ACK cookie valid %s, invalid %s, established %s, dropped %s",
		formatRate(total(is("syn_received"))), formatRate(total(is("synack_sent"))),
		formatRate(total(is("ack_cookie_valid"))), formatRate(total(is("ack_cookie_invalid"))),
		formatRate(total(is("established_passed"))),
		formatRate(total(func(s string) bool { return strings.HasPrefix(s, "drop__") })))
	if handoff {
		line += fmt.Sprintf("; handed off %s, refused %s, no listener %s",
			formatRate(total(is("handoff_assigned"))), formatRate(total(is("handoff_refused"))), formatRate(total(is("pass__no_listener"))))
	}
	return line
}

func formatRate(v float64) string {
	switch {
	case v == 0:
		return "0"
	case v < 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	default:
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
}

// The --json format (docs/status-json.md). Fields are only ever added.
type statusJSON struct {
	Interfaces []ifaceJSON `json:"interfaces"`
}

type ifaceJSON struct {
	Interface      string                        `json:"interface"`
	Mode           string                        `json:"mode"`
	HeldBy         string                        `json:"held_by,omitempty"`
	StateDir       string                        `json:"state_dir,omitempty"`
	ProgramID      uint32                        `json:"program_id,omitempty"`
	NetfilterRules bool                          `json:"netfilter_rules"`
	RulesMissing   []string                      `json:"netfilter_rules_missing,omitempty"`
	Services       []serviceJSON                 `json:"services"`
	Counters       map[string]map[string]uint64  `json:"counters,omitempty"`
	Rates          map[string]map[string]float64 `json:"rates,omitempty"`
	RatesInterval  float64                       `json:"rates_interval_seconds,omitempty"`
}

type serviceJSON struct {
	Family      string `json:"family"`
	Destination string `json:"destination"`
	Port        uint16 `json:"port"`
	MSS         uint16 `json:"mss"`
	WScale      uint8  `json:"wscale"`
	SACK        bool   `json:"sack"`
	Timestamps  bool   `json:"timestamps"`
	ECN         bool   `json:"ecn"`
	TTL         uint8  `json:"ttl"`
	Path        string `json:"path"`
	// OnDemand: absent unless the service is on-demand (status_ondemand.go).
	OnDemand *onDemandJSON `json:"on_demand,omitempty"`
}

// writeJSON prints one document: indented for a single status, one line per frame with --watch.
func writeJSON(w io.Writer, sts []protect.Status, rates map[string]measured, indent bool) error {
	out := statusJSON{Interfaces: []ifaceJSON{}}
	for _, st := range sts {
		j := ifaceJSON{Interface: st.Iface, Mode: st.Mode, HeldBy: string(st.Holder), StateDir: st.StateDir,
			ProgramID: st.ProgID, NetfilterRules: st.RulesOK(), RulesMissing: st.RulesMissing, Services: []serviceJSON{}}
		for _, s := range st.Services {
			o := s.Options
			j.Services = append(j.Services, serviceJSON{Family: s.Family.String(), Destination: s.Dst.String(),
				Port: s.Port, MSS: o.MSS, WScale: o.WScale, SACK: o.SACK, Timestamps: o.Timestamps, ECN: o.ECN, TTL: s.TTL, Path: servicePath(s),
				OnDemand: onDemandToJSON(onDemandOf(st, s))})
		}
		if st.Counters != nil {
			j.Counters = map[string]map[string]uint64{}
			for fam, fields := range families(st.Counters) {
				m := map[string]uint64{}
				for _, f := range fields {
					m[f.Name] = f.Value
				}
				j.Counters[fam] = m
			}
		}
		if r, ok := rates[st.Iface]; ok {
			j.Rates, j.RatesInterval = r.perSecond, r.over.Seconds()
		}
		out.Interfaces = append(out.Interfaces, j)
	}
	enc := json.NewEncoder(w)
	if indent {
		enc.SetIndent("", "  ")
	}
	return enc.Encode(out)
}
