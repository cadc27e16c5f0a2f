package main

// The listener scenario: the kernel's own listener, unprotected (mode none), under a SYN flood
// stepped up in rate, to find where it starts sending its own SYN cookies (its SYN queue is
// full) and where it starts dropping SYNs. On-demand protection (docs/config.md) leaves a
// quiet service's SYNs to that listener; this is the measurement its recommended threshold is
// chosen from.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/xsyn-project/xsyn/metrics"
	"github.com/xsyn-project/xsyn/spec"
)

const scenarioListener = "listener"

// listenerStep is one rate of the stepped flood.
type listenerStep struct {
	TargetPPS  float64 `json:"target_pps"` // 0: as fast as the generator can
	Seconds    float64 `json:"seconds"`
	OfferedPPS float64 `json:"offered_pps"`
	DUTRxPPS   float64 `json:"dut_rx_pps"`
	SynAckPPS  float64 `json:"synack_pps"` // the listener's SYN-ACKs (cookies or not) at the attacker
	// RingDropped is the SYNs that found the DUT's ring full: the DUT's core was saturated.
	RingDropped uint64  `json:"ring_dropped"`
	DUTCPUUtil  float64 `json:"dut_cpu_util"`
	// The DUT's TcpExt counters, moved during the step.
	SyncookiesSent  uint64 `json:"syncookies_sent"`
	ListenDrops     uint64 `json:"listen_drops"`
	ListenOverflows uint64 `json:"listen_overflows"`
	ReqQFullDrop    uint64 `json:"reqq_full_drop"`
	// FirstCookie is when in the step the listener sent its first cookie (polled every 20 ms),
	// and QueuedBefore the SYNs that reached it by then: the SYN queue it filled.
	FirstCookieSeconds float64 `json:"first_cookie_seconds,omitempty"`
	QueuedBefore       uint64  `json:"syns_before_first_cookie,omitempty"`
}

// cookies reports whether the listener sent its own cookies in the step; drops whether it, or
// the DUT's ring in front of it, lost SYNs.
func (s listenerStep) cookies() bool { return s.SyncookiesSent > 0 }
func (s listenerStep) drops() bool {
	return s.ListenDrops > 0 || s.ReqQFullDrop > 0 || s.RingDropped > s.uint(0.001)
}

// uint is a share of the SYNs sent in the step.
func (s listenerStep) uint(share float64) uint64 { return uint64(s.OfferedPPS * s.Seconds * share) }

// parseRates reads -listener-rates: SYNs a second, ascending, 0 (as fast as the generator can)
// last if at all.
func parseRates(v string) ([]float64, error) {
	var out []float64
	for _, f := range strings.Split(v, ",") {
		n, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil || n < 0 || n > 100e6 {
			return nil, fmt.Errorf("-listener-rates: %q is not a rate 0-100000000 (0: as fast as the generator can)", f)
		}
		if len(out) > 0 && (out[len(out)-1] == 0 || n != 0 && n <= out[len(out)-1]) {
			return nil, fmt.Errorf("-listener-rates: %q: rates must rise, with 0 (as fast as possible) last", v)
		}
		out = append(out, n)
	}
	return out, nil
}

// listener runs the stepped flood against the unprotected listener, IPv4, Linux-like SYNs, each
// step with a fresh listener (an empty SYN queue).
func (r *rig) listener(ctx context.Context, c config, rep *report, prog *progress) (err error) {
	s, err := spec.Simple{Ports: []uint16{c.port}, WScale: -1}.Build()
	if err != nil {
		return err
	}
	d, err := r.deploy(modeNone, s)
	if err != nil {
		return err
	}
	defer func() {
		if terr := d.teardown(); terr != nil {
			err = errors.Join(err, fmt.Errorf("tear down %s: %w", modeNone, terr))
		}
	}()
	if err := r.pinNAPI(); err != nil {
		return err
	}
	rep.ListenerDuration, rep.ListenerBacklog = c.listenerDur.String(), listenBacklog
	for _, rate := range c.listenerRates {
		if ctx.Err() != nil {
			return nil
		}
		if err := r.restartServer(); err != nil {
			return err
		}
		fl := flood{syn: synFrame(4, shapeLinux, r.atkMAC, r.dutMAC, dutAddr(4), c.port), pps: rate}
		label := fmt.Sprintf("listener %s SYN/s", rateName(rate))
		st, err := r.listenerStep(ctx, d, c, fl, prog.run(label, c.listenerDur, r.counts))
		if err != nil {
			return fmt.Errorf("%s SYN/s: %w", rateName(rate), err)
		}
		if ctx.Err() != nil {
			return nil
		}
		prog.logf("bench: listener %8s SYN/s: offered %.0f, cookies %d, listen drops %d, ring drops %d",
			rateName(rate), st.OfferedPPS, st.SyncookiesSent, st.ListenDrops, st.RingDropped)
		rep.Listener = append(rep.Listener, st)
	}
	return nil
}

func rateName(r float64) string {
	if r == 0 {
		return "max"
	}
	return strconv.FormatFloat(r, 'f', 0, 64)
}

// dutNetstat reads the DUT's TcpExt counters (the DUT namespace's /proc/net of this thread).
func (r *rig) dutNetstat() (map[string]uint64, error) {
	var m map[string]uint64
	err := r.dut.Do(func() (err error) {
		m, err = metrics.ReadNetstat("/proc/thread-self/net/netstat")
		return err
	})
	return m, err
}

func (r *rig) listenerStep(ctx context.Context, d *deployment, c config, fl flood, done func()) (listenerStep, error) {
	st := listenerStep{TargetPPS: fl.pps}
	before, err := r.sample(d)
	if err != nil {
		done()
		return st, err
	}
	ns0, err := r.dutNetstat()
	if err != nil {
		done()
		return st, err
	}
	// Poll for the first cookie while the flood runs.
	start := time.Now()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			ns, err := r.dutNetstat()
			if err != nil || ns["TcpExtSyncookiesSent"] == ns0["TcpExtSyncookiesSent"] {
				continue
			}
			cur, err := r.sample(d)
			if err == nil {
				st.FirstCookieSeconds = time.Since(start).Seconds()
				st.QueuedBefore = cur.dutRx - before.dutRx
			}
			return
		}
	}()
	elapsed, err := r.generate(ctx, fl, c.batch, c.listenerDur)
	close(stop)
	wg.Wait()
	done()
	if err != nil {
		return st, err
	}
	after, err := r.settle(d, time.Second)
	if err != nil {
		return st, err
	}
	ns1, err := r.dutNetstat()
	if err != nil {
		return st, err
	}
	secs := elapsed.Seconds()
	st.Seconds = secs
	st.OfferedPPS = float64(after.sent-before.sent) / secs
	st.DUTRxPPS = float64(after.dutRx-before.dutRx) / secs
	st.SynAckPPS = float64(after.synacks-before.synacks) / secs
	st.RingDropped = after.ringDrop - before.ringDrop
	st.DUTCPUUtil = (after.dutCPU - before.dutCPU).Seconds() / secs
	delta := func(k string) uint64 { return ns1["TcpExt"+k] - ns0["TcpExt"+k] }
	st.SyncookiesSent, st.ListenDrops, st.ListenOverflows, st.ReqQFullDrop =
		delta("SyncookiesSent"), delta("ListenDrops"), delta("ListenOverflows"), delta("TCPReqQFullDrop")
	return st, nil
}

// listenerFindings are the first rates at which the listener sent cookies and dropped SYNs.
type listenerFindings struct {
	cleanBelow   float64 // the highest rate with neither cookies nor drops (0: none)
	firstCookies float64 // offered rate of the first step with cookies (0: none)
	firstDrops   float64
}

func findListener(steps []listenerStep) listenerFindings {
	var f listenerFindings
	for _, s := range steps {
		switch {
		case !s.cookies() && !s.drops() && f.firstCookies == 0 && f.firstDrops == 0:
			f.cleanBelow = s.OfferedPPS
		case s.cookies() && f.firstCookies == 0:
			f.firstCookies = s.OfferedPPS
		}
		if s.drops() && f.firstDrops == 0 {
			f.firstDrops = s.OfferedPPS
		}
	}
	return f
}

// writeListener is the report's section on the listener scenario.
func writeListener(w io.Writer, rep report) {
	if len(rep.Listener) == 0 {
		return
	}
	fmt.Fprintf(w, "\n## The kernel's own listener (on-demand's threshold)\n\n")
	fmt.Fprintf(w, "Mode `none`: no XDP, no rules; one listener (backlog %d, `tcp_syncookies=1`), made afresh for each step; "+
		"IPv4 Linux-like SYNs from random sources, %s per step. `cookies`, `listen drops`, `reqq full drops`: the DUT's "+
		"TcpExtSyncookiesSent, ListenDrops and TCPReqQFullDrop during the step; `first cookie`: when in the step the listener "+
		"sent its first cookie (polled every 20 ms), and how many SYNs had reached it by then.\n\n",
		rep.ListenerBacklog, rep.ListenerDuration)
	fmt.Fprintln(w, "| target SYN/s | offered SYN/s | DUT handled SYN/s | SYN-ACK/s | ring drops | DUT CPU | cookies | listen drops | reqq full drops | first cookie |")
	fmt.Fprintln(w, "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
	for _, s := range rep.Listener {
		first := "-"
		if s.cookies() && s.FirstCookieSeconds > 0 {
			first = fmt.Sprintf("%.2f s, after %d SYNs", s.FirstCookieSeconds, s.QueuedBefore)
		}
		fmt.Fprintf(w, "| %s | %.0f | %.0f | %.0f | %d | %.1f%% | %d | %d | %d | %s |\n", rateName(s.TargetPPS), s.OfferedPPS,
			s.DUTRxPPS, s.SynAckPPS, s.RingDropped, 100*s.DUTCPUUtil, s.SyncookiesSent, s.ListenDrops, s.ReqQFullDrop, first)
	}
	f := findListener(rep.Listener)
	fmt.Fprintln(w)
	say := func(format string, v float64, none string) {
		if v == 0 {
			fmt.Fprintln(w, "- "+none)
			return
		}
		fmt.Fprintf(w, "- "+format+"\n", v)
	}
	say("highest rate with neither cookies nor drops: %.0f SYN/s", f.cleanBelow, "every step had cookies or drops")
	say("the listener's own cookies from: %.0f SYN/s", f.firstCookies, "the listener sent no cookie in any step")
	say("SYNs lost (the listener's drops, or the DUT's ring full) from: %.0f SYN/s", f.firstDrops, "no SYN was lost in any step")
}

// listenerRatesDefault are the steps of -listener-rates.
var listenerRatesDefault = []float64{500, 1000, 2000, 5000, 10000, 20000, 50000, 100000, 0}

func ratesString(rs []float64) string {
	out := make([]string, len(rs))
	for i, r := range slices.Clone(rs) {
		out[i] = strconv.FormatFloat(r, 'f', -1, 64)
	}
	return strings.Join(out, ",")
}
