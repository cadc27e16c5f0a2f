package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/xsyn-project/xsyn/loader"
)

// result is one run of a flood scenario: (scenario, mode, family, shape).
type result struct {
	Scenario   string  `json:"scenario"` // flood (SYNs), ack (forged ACKs) or mix
	Mode       string  `json:"mode"`
	Family     string  `json:"family"`
	Shape      string  `json:"shape"` // of the SYNs; forged ACKs carry no options
	FrameBytes int     `json:"frame_bytes"`
	Seconds    float64 `json:"seconds"`
	TargetPPS  float64 `json:"target_pps"` // 0: as fast as possible

	Sent     uint64 `json:"frames_sent"`      // generator
	AcksSent uint64 `json:"forged_acks_sent"` // of which forged ACKs
	DUTRx    uint64 `json:"dut_rx"`           // reached the DUT's NAPI
	// RingDropped is the frames that found the DUT's veth ring full (DUT too slow), lost: counted
	// in DUTRxDropped for live frames, in AtkTxDropped for the packet generator's skbs.
	RingDropped  uint64 `json:"ring_dropped"`
	DUTRxDropped uint64 `json:"dut_rx_dropped"`      // DUT veth rx_dropped
	AtkTxDropped uint64 `json:"attacker_tx_dropped"` // attacker veth tx_dropped
	DUTTxDropped uint64 `json:"dut_tx_dropped"`      // answers lost in the attacker's ring
	SynAcks      uint64 `json:"synacks_received"`    // counted at the attacker
	Rsts         uint64 `json:"rsts_received"`       // counted at the attacker: the stack's answer to forged ACKs

	OfferedPPS float64 `json:"offered_pps"`
	DUTRxPPS   float64 `json:"dut_rx_pps"`
	SynAckPPS  float64 `json:"synack_pps"`
	RstPPS     float64 `json:"rst_pps"`
	// Answered is SYN-ACKs received / SYNs sent; AnsweredOfRx is per SYN that reached the DUT.
	Answered     float64 `json:"answered"`
	AnsweredOfRx float64 `json:"answered_of_dut_rx"`

	// XDPNsPerPacket is the DUT program's run_time_ns / run_cnt (bpf_stats); 0 without one.
	XDPRuns        uint64  `json:"xdp_runs,omitempty"`
	XDPNsPerPacket float64 `json:"xdp_ns_per_packet,omitempty"`
	// DUTCPUNsPerPacket is the CPU time of the DUT's NAPI thread per frame it handled: driver,
	// XDP and (modes without native XDP) the stack, everything the DUT spends on a frame.
	DUTCPUNsPerPacket float64 `json:"dut_cpu_ns_per_packet"`
	DUTCPUUtil        float64 `json:"dut_cpu_util"`
	// DUTCorePPS projects the DUT's rate at 100% of its core: DUTRxPPS / DUTCPUUtil. Below
	// saturation it is pessimistic (each wake-up is spread over fewer frames).
	DUTCorePPS   float64 `json:"dut_core_pps_projected"`
	AtkRxCPUUtil float64 `json:"attacker_rx_cpu_util"`
	Conntrack    int     `json:"conntrack_entries"`

	Xsyn *xsynCounts `json:"xsyn,omitempty"`
}

type xsynCounts struct {
	SynReceived      uint64 `json:"syn_received"`
	SynackSent       uint64 `json:"synack_sent"`
	AckCookieValid   uint64 `json:"ack_cookie_valid"`
	AckCookieInvalid uint64 `json:"ack_cookie_invalid"`
	DropNoConn       uint64 `json:"drop_no_conn"`
	DropMalformed    uint64 `json:"drop_malformed"`
	// Passed counts segments xsyn handed to the stack for any reason (pass__*, established).
	Passed uint64 `json:"passed"`
}

// Dropped is what xsyn dropped in XDP.
func (x *xsynCounts) Dropped() uint64 { return x.AckCookieInvalid + x.DropNoConn + x.DropMalformed }

func newResult(sc, mode string, f family, s shape, frameLen int, elapsed time.Duration, a, b sample, ct int) result {
	sec := elapsed.Seconds()
	r := result{
		Scenario: sc, Mode: mode, Family: f.String(), Shape: string(s), FrameBytes: frameLen, Seconds: sec,
		Sent:         b.sent - a.sent,
		AcksSent:     b.acksSent - a.acksSent,
		DUTRx:        b.dutRx - a.dutRx,
		RingDropped:  b.ringDrop - a.ringDrop,
		DUTRxDropped: b.dutDropped - a.dutDropped,
		AtkTxDropped: b.atkTxDrop - a.atkTxDrop,
		DUTTxDropped: b.dutTxErr - a.dutTxErr,
		SynAcks:      b.synacks - a.synacks,
		Rsts:         b.rsts - a.rsts,
		Conntrack:    ct,
	}
	r.OfferedPPS = float64(r.Sent) / sec
	r.DUTRxPPS = float64(r.DUTRx) / sec
	r.SynAckPPS = float64(r.SynAcks) / sec
	r.RstPPS = float64(r.Rsts) / sec
	syns := r.Sent - r.AcksSent
	r.Answered = ratio(r.SynAcks, syns)
	r.AnsweredOfRx = ratio(r.SynAcks, r.DUTRx*syns/max(r.Sent, 1))
	if runs := b.progRuns - a.progRuns; runs > 0 {
		r.XDPRuns = runs
		r.XDPNsPerPacket = float64(b.progTime-a.progTime) / float64(runs)
	}
	r.DUTCPUNsPerPacket = float64(b.dutCPU-a.dutCPU) / float64(max(r.DUTRx, 1))
	r.DUTCPUUtil = float64(b.dutCPU-a.dutCPU) / float64(elapsed)
	r.AtkRxCPUUtil = float64(b.atkCPU-a.atkCPU) / float64(elapsed)
	if r.DUTCPUUtil > 0 {
		r.DUTCorePPS = r.DUTRxPPS / r.DUTCPUUtil
	}
	if isXsyn(mode) {
		r.Xsyn = xsynDelta(a.xsyn, b.xsyn)
	}
	return r
}

func xsynDelta(a, b loader.Counters) *xsynCounts {
	passed := func(c loader.Counters) uint64 {
		return c.AckCookieValid + c.EstablishedPassed + c.PassNotIp + c.PassNotTcp + c.PassNotProtected + c.PassFragment +
			c.PassVlanDepth + c.PassMalformed + c.PassNoRoom + c.PassCookieError
	}
	return &xsynCounts{
		SynReceived:      b.SynReceived - a.SynReceived,
		SynackSent:       b.SynackSent - a.SynackSent,
		AckCookieValid:   b.AckCookieValid - a.AckCookieValid,
		AckCookieInvalid: b.AckCookieInvalid - a.AckCookieInvalid,
		DropNoConn:       b.DropNoConn - a.DropNoConn,
		DropMalformed:    b.DropMalformed - a.DropMalformed,
		Passed:           passed(b) - passed(a),
	}
}

func ratio(a, b uint64) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// report is what bench/out/results.json holds.
type report struct {
	Started   time.Time `json:"started"`
	Elapsed   string    `json:"elapsed"`
	Command   string    `json:"command"`
	Kernel    string    `json:"kernel"`
	CPUs      int       `json:"cpus"`
	GenCPU    int       `json:"generator_cpu"`
	DUTCPU    int       `json:"dut_cpu"`
	Duration  string    `json:"duration_per_run"`
	TargetPPS float64   `json:"target_pps"` // -rate; 0: as fast as possible
	// Generator is the flood generator that ran (genLive or genPacket), GeneratorNote why, when
	// the choice was not the one asked for or was made automatically.
	Generator     string   `json:"generator"`
	GeneratorNote string   `json:"generator_note,omitempty"`
	BatchSize     uint32   `json:"generator_batch_size"`
	LoadAvg       string   `json:"loadavg_at_start"`
	LoadAvgEnd    string   `json:"loadavg_at_end"`
	Cores         string   `json:"cores"`
	AckShare      int      `json:"mix_ack_percent,omitempty"`
	Results       []result `json:"results"`

	// The legit scenario. RigMaxPPS is the generator's rate against XDP_DROP per family, the
	// 100% its levels are fractions of.
	LegitDuration string             `json:"legit_duration,omitempty"`
	LegitRate     int                `json:"legit_connections_per_second,omitempty"`
	RigMaxPPS     map[string]float64 `json:"legit_rig_max_pps,omitempty"`
	Legit         []legitResult      `json:"legit,omitempty"`

	// The established scenario. DUTWScale is the window scale the DUT's stack offers,
	// StreamWScale the one xsyn and SYNPROXY offered.
	StreamDuration     string          `json:"stream_duration,omitempty"`
	Rounds             int             `json:"rounds,omitempty"`
	StreamQdisc        string          `json:"stream_client_qdisc,omitempty"`
	DUTWScale          int             `json:"dut_wscale,omitempty"`
	StreamWScale       int             `json:"stream_wscale,omitempty"`
	Established        []streamResult  `json:"established,omitempty"`
	EstablishedSummary []streamSummary `json:"established_summary,omitempty"`

	// The listener scenario (listener.go).
	ListenerDuration string         `json:"listener_duration,omitempty"`
	ListenerBacklog  int            `json:"listener_backlog,omitempty"`
	Listener         []listenerStep `json:"listener,omitempty"`
}

func (r report) hasResults() bool {
	return len(r.Results) > 0 || len(r.Legit) > 0 || len(r.Established) > 0 || len(r.Listener) > 0
}

// Output files, next to the JSON file.
const (
	reportFile     = "report.md"
	synackPlotFile = "synack-rate.svg"
	legitPlotFile  = "legit-p99.svg"
)

// writeOutputs writes the JSON results to path, and the Markdown report and the plots next to
// it. It returns the files written.
func writeOutputs(path string, rep report) ([]string, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return nil, err
	}
	written := []string{path}
	var md bytes.Buffer
	writeReport(&md, rep)
	files := []struct {
		name string
		data []byte
	}{{reportFile, md.Bytes()}, {synackPlotFile, synackPlot(rep.Results)}, {legitPlotFile, legitPlot(rep.Legit)}}
	for _, f := range files {
		if f.data == nil {
			continue
		}
		p := filepath.Join(dir, f.name)
		if err := os.WriteFile(p, f.data, 0o644); err != nil {
			return written, err
		}
		written = append(written, p)
	}
	return written, nil
}

func mpps(v float64) string { return fmt.Sprintf("%.3f", v/1e6) }

func pct(v float64) string { return fmt.Sprintf("%.1f%%", 100*v) }

func orDash(ok bool, s string) string {
	if !ok {
		return "-"
	}
	return s
}
