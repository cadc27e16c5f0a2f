package main

import (
	"fmt"
	"io"
	"slices"
	"text/tabwriter"
	"time"
)

// streamResult is one stream of the established scenario.
type streamResult struct {
	Mode    string  `json:"mode"`
	Family  string  `json:"family"`
	Round   int     `json:"round"`
	Seconds float64 `json:"seconds"`
	Bytes   uint64  `json:"payload_bytes"` // received by the DUT's application in Seconds
	Gbps    float64 `json:"gbit_per_s"`

	// ConnectMs is the client's connect(): SYN out to SYN-ACK in. The others run from the end of
	// connect(): AcceptMs to accept() on the DUT (give or take a millisecond: the accepted
	// connection is handed over by a goroutine); FirstByteMs to the DUT application's first
	// byte of payload (the clock starts there); ServerDataMs to the client's receiving the one
	// byte the DUT writes at once after accept(), -1 if it had not arrived when the stream ended.
	ConnectMs    float64 `json:"connect_ms"`
	AcceptMs     float64 `json:"accept_ms"`
	FirstByteMs  float64 `json:"first_byte_ms"`
	ServerDataMs float64 `json:"server_first_data_ms"`

	// Retransmits is the client's retransmitted segments over the whole connection, of which
	// SpuriousRetransmits the DUT reported as duplicates (segments that had not been lost).
	Retransmits         uint32 `json:"client_retransmits"`
	SpuriousRetransmits uint32 `json:"client_retransmits_spurious"`

	// DUTRx is the frames the DUT veth handled (segments as sent, before GRO).
	DUTRx          uint64  `json:"dut_rx"`
	XDPRuns        uint64  `json:"xdp_runs,omitempty"`
	XDPNsPerPacket float64 `json:"xdp_ns_per_packet,omitempty"`
	// CPU time / Seconds of: the DUT's NAPI thread (driver, XDP, stack up to the socket), the
	// receiving thread (copy to the application), the sending thread, the attacker's NAPI thread.
	DUTNAPIUtil  float64 `json:"dut_napi_cpu_util"`
	ReceiverUtil float64 `json:"receiver_cpu_util"`
	SenderUtil   float64 `json:"sender_cpu_util"`
	AtkNAPIUtil  float64 `json:"attacker_napi_cpu_util"`
	// DUTNsPerPacket is the DUT's CPU time (NAPI and receiver) per frame it handled.
	DUTNsPerPacket float64 `json:"dut_cpu_ns_per_packet"`
	// DUTCoreGbps projects the rate at 100% of the DUT's core: Gbps / (NAPI + receiver).
	DUTCoreGbps float64 `json:"dut_core_gbit_per_s_projected"`

	Xsyn *xsynStreamCounts `json:"xsyn,omitempty"`
}

// xsynStreamCounts are xsyn's verdicts during the measured window and over the whole
// connection: its handshake went through XDP if the SYN was answered and the cookie checked.
type xsynStreamCounts struct {
	SynReceived       uint64 `json:"syn_received"`
	SynackSent        uint64 `json:"synack_sent"`
	AckCookieValid    uint64 `json:"ack_cookie_valid"`
	EstablishedPassed uint64 `json:"established_passed"`
	DropNoConn        uint64 `json:"drop_no_conn"`
}

func (res *streamResult) fill(a, b streamSample) {
	el := b.at.Sub(a.at)
	sec := el.Seconds()
	res.Seconds = sec
	res.Bytes = b.received - a.received
	res.Gbps = float64(res.Bytes) * 8 / sec / 1e9
	res.DUTRx = b.rig.dutRx - a.rig.dutRx
	if runs := b.rig.progRuns - a.rig.progRuns; runs > 0 {
		res.XDPRuns = runs
		res.XDPNsPerPacket = float64(b.rig.progTime-a.rig.progTime) / float64(runs)
	}
	util := func(x, y time.Duration) float64 { return float64(y-x) / float64(el) }
	res.DUTNAPIUtil = util(a.rig.dutCPU, b.rig.dutCPU)
	res.ReceiverUtil = util(a.receiverCPU, b.receiverCPU)
	res.SenderUtil = util(a.senderCPU, b.senderCPU)
	res.AtkNAPIUtil = util(a.rig.atkCPU, b.rig.atkCPU)
	dut := (b.rig.dutCPU - a.rig.dutCPU) + (b.receiverCPU - a.receiverCPU)
	res.DUTNsPerPacket = float64(dut) / float64(max(res.DUTRx, 1))
	if u := res.DUTNAPIUtil + res.ReceiverUtil; u > 0 {
		res.DUTCoreGbps = res.Gbps / u
	}
	if res.Mode == streamXsyn || res.Mode == streamXsynNF {
		// The handshake happened before the window: count it from the deployment on (a is
		// later than the attachment, b.xsyn holds everything since).
		res.Xsyn = &xsynStreamCounts{
			SynReceived:       b.rig.xsyn.SynReceived,
			SynackSent:        b.rig.xsyn.SynackSent,
			AckCookieValid:    b.rig.xsyn.AckCookieValid,
			EstablishedPassed: b.rig.xsyn.EstablishedPassed - a.rig.xsyn.EstablishedPassed,
			DropNoConn:        b.rig.xsyn.DropNoConn - a.rig.xsyn.DropNoConn,
		}
	}
}

// streamSummary is the median of one mode's streams, next to the references.
type streamSummary struct {
	Mode   string    `json:"mode"`
	Family string    `json:"family"`
	Gbps   []float64 `json:"gbit_per_s"` // every round, in order
	// Median Gbit/s; Spread is (max - min) / median.
	Median float64 `json:"median_gbit_per_s"`
	Spread float64 `json:"spread"`
	// Ratios of the medians to the "none" and "pass" modes'.
	OfNone float64 `json:"of_none,omitempty"`
	OfPass float64 `json:"of_pass,omitempty"`
	// Medians of the per-round figures.
	DUTUtil        float64 `json:"dut_cpu_util"` // NAPI and receiver
	DUTNsPerPacket float64 `json:"dut_cpu_ns_per_packet"`
	DUTCoreGbps    float64 `json:"dut_core_gbit_per_s_projected"`
	XDPNsPerPacket float64 `json:"xdp_ns_per_packet,omitempty"`
	FirstByteMs    float64 `json:"first_byte_ms"`
	ServerDataMs   float64 `json:"server_first_data_ms"`
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(v))
	if n := len(s); n%2 == 0 {
		return (s[n/2-1] + s[n/2]) / 2
	}
	return s[len(s)/2]
}

// summarize groups the streams by family and mode, in the order they were measured.
func summarize(rs []streamResult) []streamSummary {
	var out []streamSummary
	find := func(mode, fam string) *streamSummary {
		for i := range out {
			if out[i].Mode == mode && out[i].Family == fam {
				return &out[i]
			}
		}
		return nil
	}
	type perRun struct{ util, ns, core, xdp, first, server []float64 }
	runs := map[[2]string]*perRun{}
	for _, r := range rs {
		s := find(r.Mode, r.Family)
		if s == nil {
			out = append(out, streamSummary{Mode: r.Mode, Family: r.Family})
			s = &out[len(out)-1]
			runs[[2]string{r.Mode, r.Family}] = &perRun{}
		}
		s.Gbps = append(s.Gbps, r.Gbps)
		p := runs[[2]string{r.Mode, r.Family}]
		p.util = append(p.util, r.DUTNAPIUtil+r.ReceiverUtil)
		p.ns = append(p.ns, r.DUTNsPerPacket)
		p.core = append(p.core, r.DUTCoreGbps)
		p.xdp = append(p.xdp, r.XDPNsPerPacket)
		p.first = append(p.first, r.FirstByteMs)
		p.server = append(p.server, r.ServerDataMs)
	}
	for i := range out {
		s := &out[i]
		p := runs[[2]string{s.Mode, s.Family}]
		s.Median = median(s.Gbps)
		if s.Median > 0 {
			s.Spread = (slices.Max(s.Gbps) - slices.Min(s.Gbps)) / s.Median
		}
		s.DUTUtil, s.DUTNsPerPacket, s.DUTCoreGbps, s.XDPNsPerPacket = median(p.util), median(p.ns), median(p.core), median(p.xdp)
		s.FirstByteMs, s.ServerDataMs = median(p.first), median(p.server)
	}
	for i := range out {
		s := &out[i]
		if ref := find(streamNone, s.Family); ref != nil && ref.Median > 0 {
			s.OfNone = s.Median / ref.Median
		}
		if ref := find(streamPass, s.Family); ref != nil && ref.Median > 0 {
			s.OfPass = s.Median / ref.Median
		}
	}
	return out
}

// printStreams writes the established scenario's summary and every stream.
func printStreams(w io.Writer, rs []streamResult) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "established\tfamily\tGbit/s (median)\trounds\tspread\tof none\tof pass\tDUT CPU\tDUT CPU ns/pkt\tDUT Gbit/s/core\tXDP ns/pkt\tfirst byte ms\tserver data ms\t")
	for _, s := range summarize(rs) {
		rounds := ""
		for i, g := range s.Gbps {
			if i > 0 {
				rounds += " "
			}
			rounds += fmt.Sprintf("%.2f", g)
		}
		fmt.Fprintf(tw, "%s\t%s\t%.2f\t%s\t%s\t%s\t%s\t%s\t%.0f\t%.2f\t%s\t%.0f\t%s\t\n",
			s.Mode, s.Family, s.Median, rounds, pct(s.Spread),
			orDash(s.OfNone > 0, pct(s.OfNone)), orDash(s.OfPass > 0, pct(s.OfPass)),
			pct(s.DUTUtil), s.DUTNsPerPacket, s.DUTCoreGbps,
			orDash(s.XDPNsPerPacket > 0, fmt.Sprintf("%.1f", s.XDPNsPerPacket)),
			s.FirstByteMs, orDash(s.ServerDataMs >= 0, fmt.Sprintf("%.0f", s.ServerDataMs)))
	}
	tw.Flush()
}
