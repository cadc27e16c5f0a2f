package main

// The legit scenario: real clients connecting to the DUT's server while a SYN flood hits the same
// port, at several flood rates, per mode. The client lives in its own namespace behind the
// attacker's, which routes it: its SYNs reach the DUT through the same veth, ring and NAPI
// thread as the flood (as through one NIC queue), and the DUT's answers come back through the
// sink's ring, which passes them to the attacker's stack to route on.
//
// The client is one thread on the generator's CPU at a real-time priority above the generator,
// driving non-blocking sockets with epoll: it starts a connection every 1/-legit-rate seconds
// for -legit-duration, and for each one records
//
//   - connect: from just before connect(2), which sends the SYN, to the socket becoming
//     writable, i.e. the SYN-ACK received and the handshake complete at the client. This is
//     the latency the targets are about, and what xsyn (or whatever answers the SYN) decides.
//   - first byte: from the same start to the server's line (the client address it saw). With
//     SYNPROXY and TCP timestamps on this kernel the server only accepts after about 1 s (see
//     the top-level README, Known issues), so this shows the stall without hiding connect.
//
// A connection that is not established within clientConnectTimeout has failed (the kernel
// retransmits a lost SYN after 1 s and 3 s, so a connection that needed one retransmission still
// counts, with its latency); one established but without its line within clientDataTimeout has
// connected but failed its first byte (that timeout leaves room for the server's second SYN-ACK
// retransmission behind SYNPROXY, 3 s after its first SYN-ACK). The flood runs until every
// connection has finished.

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xsyn-project/xsyn/spec"
)

const (
	clientConnectTimeout = 3 * time.Second
	clientDataTimeout    = 5 * time.Second
	// calibrateFor is how long the generator runs against XDP_DROP to find the rig's maximum.
	calibrateFor = time.Second
	// floodStartTimeout bounds the wait for the generator's first frame.
	floodStartTimeout = 5 * time.Second
)

// legitResult is one (mode, family, flood level) of the legit scenario.
type legitResult struct {
	Mode   string `json:"mode"`
	Family string `json:"family"`
	// Level is the flood rate in percent of the rig's maximum (100: unpaced, as fast as the
	// generator can in this mode); TargetPPS the paced rate asked for (0: none or unpaced).
	Level     int     `json:"flood_level_percent"`
	TargetPPS float64 `json:"flood_target_pps"`
	// Flood is the flood's own measurement, nil at level 0.
	Flood   *result     `json:"flood,omitempty"`
	Clients clientStats `json:"clients"`
}

// OfferedPPS is the flood's measured rate, 0 without one.
func (l legitResult) OfferedPPS() float64 {
	if l.Flood == nil {
		return 0
	}
	return l.Flood.OfferedPPS
}

// clientStats is what the legit client saw.
type clientStats struct {
	Attempted int `json:"attempted"`
	Connected int `json:"connected"`  // handshake complete within clientConnectTimeout
	FirstByte int `json:"first_byte"` // and the server's line within clientDataTimeout
	WrongAddr int `json:"wrong_client_address"`
	Refused   int `json:"refused"`   // connect failed with a RST
	TimedOut  int `json:"timed_out"` // no handshake within clientConnectTimeout
	Failed    int `json:"failed"`    // anything else
	// Latencies of the connections that got that far, from connect(2).
	ConnectMs   latency `json:"connect_ms"`
	FirstByteMs latency `json:"first_byte_ms"`
	Seconds     float64 `json:"seconds"` // from the first connection's start to the last one's end
}

// Success is the share of connections that completed their handshake.
func (c clientStats) Success() float64 {
	if c.Attempted == 0 {
		return 0
	}
	return float64(c.Connected) / float64(c.Attempted)
}

type latency struct {
	N   int     `json:"n"`
	P50 float64 `json:"p50"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

// newLatency summarises samples (milliseconds) with nearest-rank percentiles.
func newLatency(ms []float64) latency {
	if len(ms) == 0 {
		return latency{}
	}
	s := slices.Sorted(slices.Values(ms))
	rank := func(p float64) float64 { return s[max(int(math.Ceil(p/100*float64(len(s))))-1, 0)] }
	return latency{N: len(s), P50: rank(50), P99: rank(99), Max: s[len(s)-1]}
}

// legit runs the clients under every level of flood, per mode and family.
func (r *rig) legit(ctx context.Context, c config, s spec.Spec, rep *report, prog *progress) error {
	rep.RigMaxPPS = map[string]float64{}
	for _, f := range c.legitFamilies {
		if ctx.Err() != nil {
			return nil
		}
		pps, err := r.rigMax(ctx, c, f, rep, s)
		if err != nil {
			return fmt.Errorf("calibrate %s: %w", f, err)
		}
		rep.RigMaxPPS[f.String()] = pps
		prog.logf("bench: legit %s: the rig's maximum (74 B SYNs against XDP_DROP) is %s Mpps", f, mpps(pps))
	}
	for _, mode := range modesFor(scenarioLegit, c.modes) {
		for _, f := range c.legitFamilies {
			if ctx.Err() != nil {
				return nil
			}
			if err := r.legitMode(ctx, c, s, mode, f, rep, prog); err != nil {
				return fmt.Errorf("%s %s: %w", mode, f, err)
			}
		}
	}
	return nil
}

// rigMax is the generator's rate for the legit scenario's SYNs with XDP_DROP on the DUT: taken
// from this run's flood scenario when it measured it, measured for calibrateFor otherwise.
func (r *rig) rigMax(ctx context.Context, c config, f family, rep *report, s spec.Spec) (float64, error) {
	for _, res := range rep.Results {
		if res.Scenario == scenarioFlood && res.Mode == modeDrop && res.Family == f.String() && res.Shape == string(shapeLinux) && res.TargetPPS == 0 {
			return res.OfferedPPS, nil
		}
	}
	d, teardown, err := r.setUp(modeDrop, s)
	if err != nil {
		return 0, err
	}
	before, err := r.sample(d)
	if err == nil {
		var el time.Duration
		el, err = r.generate(ctx, flood{syn: synFrame(f, shapeLinux, r.atkMAC, r.dutMAC, dutAddr(f), c.port)}, c.batch, calibrateFor)
		if err == nil {
			var after sample
			after, err = r.settle(d, time.Second)
			if err == nil && el > 0 {
				return float64(after.sent-before.sent) / el.Seconds(), teardown()
			}
		}
	}
	return 0, errors.Join(err, teardown())
}

func (r *rig) legitMode(ctx context.Context, c config, s spec.Spec, mode string, f family, rep *report, prog *progress) (err error) {
	d, teardown, err := r.setUp(mode, s)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, teardown()) }()
	for _, level := range c.legitLevels {
		if ctx.Err() != nil {
			return nil
		}
		res, err := r.legitRun(ctx, c, d, mode, f, level, rep.RigMaxPPS[f.String()], prog)
		if err != nil {
			return fmt.Errorf("flood at %d%%: %w", level, err)
		}
		if ctx.Err() != nil {
			return nil // cut short
		}
		cl := res.Clients
		prog.logf("bench: legit  %-12s %s flood %3d%% (%s Mpps): %d/%d connected, connect p50 %.2f p99 %.2f max %.1f ms; first byte p50 %.0f p99 %.0f ms",
			mode, f, level, mpps(res.OfferedPPS()), cl.Connected, cl.Attempted, cl.ConnectMs.P50, cl.ConnectMs.P99, cl.ConnectMs.Max, cl.FirstByteMs.P50, cl.FirstByteMs.P99)
		rep.Legit = append(rep.Legit, res)
	}
	return nil
}

// clientPlan is what the client thread does.
type clientPlan struct {
	domain int
	dst    unix.Sockaddr
	n      int
	gap    time.Duration
	want   string // the line the server should send: the client's address
}

// legitRun runs the client once, under a flood at level percent of rigMax.
func (r *rig) legitRun(ctx context.Context, c config, d *deployment, mode string, f family, level int, rigMax float64, prog *progress) (legitResult, error) {
	res := legitResult{Mode: mode, Family: f.String(), Level: level}
	// A fresh listener per level: in the mode without protection the flood fills its SYN queue,
	// and the next level would start with a full one.
	if err := r.restartServer(); err != nil {
		return res, err
	}
	fl := flood{syn: synFrame(f, shapeLinux, r.atkMAC, r.dutMAC, dutAddr(f), c.port)}
	if level > 0 && level < 100 {
		fl.pps = rigMax * float64(level) / 100
		res.TargetPPS = fl.pps
	}
	plan := clientPlan{domain: unix.AF_INET, dst: &unix.SockaddrInet4{Addr: dutAddr4.Addr().As4(), Port: int(c.port)},
		n: max(1, int(c.legitDuration.Seconds()*float64(c.legitRate))), gap: time.Second / time.Duration(c.legitRate), want: cliAddr4.Addr().String() + "\n"}
	if f == 6 {
		plan.domain, plan.dst, plan.want = unix.AF_INET6, &unix.SockaddrInet6{Addr: dutAddr6.Addr().As16(), Port: int(c.port)}, cliAddr6.Addr().String()+"\n"
	}

	// No garbage collection while the client measures: its pauses would land in the latencies
	// (and see noGC).
	defer noGC()()

	cl, err := r.startClient(plan)
	if err != nil {
		return res, err
	}
	label := fmt.Sprintf("legit %s %s flood %d%%", mode, f, level)
	before, err := r.sample(d)
	if err != nil {
		return res, errors.Join(err, cl.abort())
	}
	gctx, stopFlood := context.WithCancel(ctx)
	defer stopFlood()
	genDone := make(chan genOut, 1)
	if level > 0 {
		// The flood's time limit is only a backstop: the flood stops when the clients are done.
		limit := c.legitDuration + clientConnectTimeout + clientDataTimeout + 10*time.Second
		go func() {
			el, err := r.generate(gctx, fl, c.batch, limit)
			genDone <- genOut{el, err}
		}()
		if err := r.waitFlood(before.sent, genDone); err != nil {
			stopFlood()
			return res, errors.Join(err, cl.abort())
		}
	}
	start := time.Now()
	done := prog.run(label, c.legitDuration, r.counts)
	stats, err := cl.release()
	stopFlood()
	done()
	elapsed := time.Since(start)
	if level > 0 {
		g := <-genDone
		if err == nil {
			err = g.err
		}
		elapsed = g.elapsed
	}
	if err != nil {
		return res, err
	}
	res.Clients = stats
	if level > 0 {
		after, err := r.settle(d, time.Second)
		if err != nil {
			return res, err
		}
		ct, err := r.conntrackCount()
		if err != nil {
			return res, err
		}
		fr := newResult(scenarioLegit, mode, f, shapeLinux, fl.frameLen(), elapsed, before, after, ct)
		fr.TargetPPS = fl.pps
		res.Flood = &fr
	}
	return res, nil
}

// genOut is how a generator run ended.
type genOut struct {
	elapsed time.Duration
	err     error
}

// waitFlood waits for the generator's first frames (or its failure).
func (r *rig) waitFlood(sentBefore uint64, genDone <-chan genOut) error {
	deadline := time.Now().Add(floodStartTimeout)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for time.Now().Before(deadline) {
		select {
		case g := <-genDone:
			if g.err != nil {
				return fmt.Errorf("the flood did not start: %w", g.err)
			}
			return errors.New("the flood ended before it started")
		case <-tick.C:
		}
		if n, err := r.sent(); err == nil && n > sentBefore {
			return nil
		}
	}
	return fmt.Errorf("no flood frame within %v", floodStartTimeout)
}
