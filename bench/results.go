package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"
)

// result is one (mode, family, shape) run.
type result struct {
	Mode       string  `json:"mode"`
	Family     string  `json:"family"`
	Shape      string  `json:"shape"`
	FrameBytes int     `json:"frame_bytes"`
	Seconds    float64 `json:"seconds"`

	Sent         uint64 `json:"syn_sent"`         // generator
	DUTRx        uint64 `json:"dut_rx"`           // reached the DUT's NAPI
	DUTRxDropped uint64 `json:"dut_rx_dropped"`   // lost in the DUT's veth ring (DUT too slow)
	DUTTxDropped uint64 `json:"dut_tx_dropped"`   // answers lost in the attacker's ring
	SynAcks      uint64 `json:"synacks_received"` // counted at the attacker

	OfferedPPS float64 `json:"offered_pps"`
	DUTRxPPS   float64 `json:"dut_rx_pps"`
	SynAckPPS  float64 `json:"synack_pps"`
	// Answered is SYN-ACKs received / SYNs sent; AnsweredOfRx is per SYN that reached the DUT.
	Answered     float64 `json:"answered"`
	AnsweredOfRx float64 `json:"answered_of_dut_rx"`

	// XDPNsPerPacket is the DUT program's run_time_ns / run_cnt (bpf_stats); 0 without one.
	XDPRuns        uint64  `json:"xdp_runs,omitempty"`
	XDPNsPerPacket float64 `json:"xdp_ns_per_packet,omitempty"`
	// DUTCPUNsPerPacket is the CPU time of the DUT's NAPI thread per frame it handled: driver,
	// XDP and (netfilter mode) the stack, everything the DUT spends on a SYN.
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
	SynReceived uint64 `json:"syn_received"`
	SynackSent  uint64 `json:"synack_sent"`
}

func newResult(mode string, f family, s shape, frameLen int, elapsed time.Duration, a, b sample, ct int) result {
	sec := elapsed.Seconds()
	r := result{
		Mode: mode, Family: f.String(), Shape: string(s), FrameBytes: frameLen, Seconds: sec,
		Sent:         b.sent - a.sent,
		DUTRx:        b.dutRx - a.dutRx,
		DUTRxDropped: b.dutDropped - a.dutDropped,
		DUTTxDropped: b.dutTxErr - a.dutTxErr,
		SynAcks:      b.synacks - a.synacks,
		Conntrack:    ct,
	}
	r.OfferedPPS = float64(r.Sent) / sec
	r.DUTRxPPS = float64(r.DUTRx) / sec
	r.SynAckPPS = float64(r.SynAcks) / sec
	r.Answered = ratio(r.SynAcks, r.Sent)
	r.AnsweredOfRx = ratio(r.SynAcks, r.DUTRx)
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
	if mode == modeXsyn {
		r.Xsyn = &xsynCounts{
			SynReceived: b.xsyn.SynReceived - a.xsyn.SynReceived,
			SynackSent:  b.xsyn.SynackSent - a.xsyn.SynackSent,
		}
	}
	return r
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
	Kernel    string    `json:"kernel"`
	CPUs      int       `json:"cpus"`
	GenCPU    int       `json:"generator_cpu"`
	DUTCPU    int       `json:"dut_cpu"`
	Duration  string    `json:"duration_per_run"`
	BatchSize uint32    `json:"live_frames_batch_size"`
	LoadAvg   string    `json:"loadavg_at_start"`
	Cores     string    `json:"cores"`
	Results   []result  `json:"results"`

	// The established scenario. DUTWScale is the window scale the DUT's stack offers,
	// StreamWScale the one xsyn and SYNPROXY offered.
	StreamDuration     string          `json:"stream_duration,omitempty"`
	Rounds             int             `json:"rounds,omitempty"`
	StreamQdisc        string          `json:"stream_client_qdisc,omitempty"`
	DUTWScale          int             `json:"dut_wscale,omitempty"`
	StreamWScale       int             `json:"stream_wscale,omitempty"`
	Established        []streamResult  `json:"established,omitempty"`
	EstablishedSummary []streamSummary `json:"established_summary,omitempty"`
}

func writeJSON(path string, rep report) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

func mpps(v float64) string { return fmt.Sprintf("%.3f", v/1e6) }

func pct(v float64) string { return fmt.Sprintf("%.1f%%", 100*v) }

func orDash(ok bool, s string) string {
	if !ok {
		return "-"
	}
	return s
}

// printTable writes the results as an aligned table.
func printTable(w io.Writer, rs []result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "mode\tfamily\tframe\toffered Mpps\tDUT rx Mpps\tring drop\tSYN-ACK Mpps\tanswered\tXDP ns/pkt\tDUT CPU ns/pkt\tDUT CPU\tDUT Mpps/core\tsink CPU\tconntrack\t")
	for _, r := range rs {
		answers := r.Mode != modeDrop
		fmt.Fprintf(tw, "%s\t%s\t%d B %s\t%s\t%s\t%s\t%s\t%s\t%s\t%.0f\t%s\t%s\t%s\t%s\t\n",
			r.Mode, r.Family, r.FrameBytes, r.Shape,
			mpps(r.OfferedPPS), mpps(r.DUTRxPPS), pct(ratio(r.DUTRxDropped, r.Sent)),
			orDash(answers, mpps(r.SynAckPPS)), orDash(answers, pct(r.Answered)),
			orDash(r.XDPRuns > 0, fmt.Sprintf("%.1f", r.XDPNsPerPacket)),
			r.DUTCPUNsPerPacket, pct(r.DUTCPUUtil), mpps(r.DUTCorePPS), pct(r.AtkRxCPUUtil), orDash(r.Conntrack >= 0, fmt.Sprint(r.Conntrack)))
	}
	tw.Flush()
}

// printTargets compares xsyn with the ceilings and netfilter, per family and shape. It states
// what was measured; it asserts nothing.
func printTargets(w io.Writer, rs []result) {
	find := func(mode, fam, sh string) *result {
		for i := range rs {
			if rs[i].Mode == mode && rs[i].Family == fam && rs[i].Shape == sh {
				return &rs[i]
			}
		}
		return nil
	}
	var lines []string
	for _, x := range rs {
		if x.Mode != modeXsyn {
			continue
		}
		l := fmt.Sprintf("xsyn %s %d B %s: XDP %.1f ns/SYN", x.Family, x.FrameBytes, x.Shape, x.XDPNsPerPacket)
		if drop := find(modeDrop, x.Family, x.Shape); drop != nil && drop.XDPRuns > 0 {
			l += fmt.Sprintf(" (%.1f above the empty drop program)", x.XDPNsPerPacket-drop.XDPNsPerPacket)
		}
		if x.Xsyn != nil {
			l += fmt.Sprintf("; answered %s of SYNs sent, %d of %d SYNs seen by XDP", pct(x.Answered), x.Xsyn.SynackSent, x.Xsyn.SynReceived)
		}
		if ref := find(modeReflect, x.Family, x.Shape); ref != nil && ref.SynAckPPS > 0 && ref.DUTCorePPS > 0 {
			l += fmt.Sprintf("; SYN-ACK rate %s of reflect's (per DUT core, projected: %s)",
				pct(x.SynAckPPS/ref.SynAckPPS), pct(x.DUTCorePPS/ref.DUTCorePPS))
		}
		if nf := find(modeSynproxy, x.Family, x.Shape); nf != nil && nf.SynAckPPS > 0 && nf.DUTCorePPS > 0 {
			l += fmt.Sprintf("; %.1fx netfilter SYNPROXY's rate (per core: %.1fx)", x.SynAckPPS/nf.SynAckPPS, x.DUTCorePPS/nf.DUTCorePPS)
		}
		lines = append(lines, l)
	}
	if len(lines) > 0 {
		fmt.Fprintln(w, "\n"+strings.Join(lines, "\n"))
	}
}
