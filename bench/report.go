package main

// The Markdown report: the run, the targets of the benchmark issue with what was measured, and a
// table per scenario with ratios to netfilter SYNPROXY and to both ceilings. It states what was
// measured; it asserts nothing.

import (
	"fmt"
	"io"
	"slices"
	"strings"
)

func writeReport(w io.Writer, rep report) {
	fmt.Fprintf(w, "# xsyn benchmark report\n\n")
	fmt.Fprintf(w, "- started %s, took %s: `%s`\n", rep.Started.Format("2006-01-02 15:04 MST"), rep.Elapsed, rep.Command)
	fmt.Fprintf(w, "- kernel %s, %d CPUs; load average at start `%s`, at end `%s`\n", rep.Kernel, rep.CPUs, rep.LoadAvg, rep.LoadAvgEnd)
	rate := "as fast as the generator can"
	if rep.TargetPPS > 0 {
		rate = fmt.Sprintf("paced to %s Mpps", mpps(rep.TargetPPS))
	}
	fmt.Fprintf(w, "- floods: %s per run, %s, in batches of %d\n", rep.Duration, rate, rep.BatchSize)
	gen := generatorName(rep.Generator)
	if rep.GeneratorNote != "" {
		gen += "; " + rep.GeneratorNote
	}
	fmt.Fprintf(w, "- generator: %s\n", gen)
	fmt.Fprintf(w, "- cores: %s\n", rep.Cores)

	writeTargets(w, targets(rep))
	writeFloods(w, rep)
	writeLegit(w, rep)
	writeEstablished(w, rep)
	writeListener(w, rep)
	if len(floodResults(rep.Results, scenarioFlood)) > 0 || len(rep.Legit) > 0 {
		fmt.Fprintf(w, "\n## Plots\n\n")
		if len(floodResults(rep.Results, scenarioFlood)) > 0 {
			fmt.Fprintf(w, "![SYN-ACK rate per mode](%s)\n\n", synackPlotFile)
		}
		if len(rep.Legit) > 0 {
			fmt.Fprintf(w, "![legit p99 connect latency versus flood rate](%s)\n", legitPlotFile)
		}
	}
}

// Verdicts.
const (
	verdictMet        = "met"
	verdictNotMet     = "not met"
	verdictUndecided  = "not decidable on this rig"
	verdictNotMeasure = "not measured in this run"
)

// target is one target of the benchmark issue, with what this run measured.
type target struct {
	Name     string `json:"name"`
	Measured string `json:"measured"`
	Verdict  string `json:"verdict"`
	Why      string `json:"why,omitempty"`
}

// saturated says whether a run was limited by the DUT: its core (nearly) full. Otherwise the
// generator's CPU set the rate. Frames lost in the ring alone do not count: with the core half
// idle they are bursts the NAPI thread woke up too late for (1-2% in short runs), not capacity.
func saturated(r result) bool {
	return r.DUTCPUUtil >= 0.9
}

func findResult(rs []result, sc, mode, fam, sh string) *result {
	for i := range rs {
		if rs[i].Scenario == sc && rs[i].Mode == mode && rs[i].Family == fam && rs[i].Shape == sh {
			return &rs[i]
		}
	}
	return nil
}

func floodResults(rs []result, sc string) []result {
	var out []result
	for _, r := range rs {
		if r.Scenario == sc {
			out = append(out, r)
		}
	}
	return out
}

func runName(r result) string { return fmt.Sprintf("%s %d B", r.Family, r.FrameBytes) }

// span writes "lo-hi" of values formatted with f, or the one value.
func span(v []float64, f func(float64) string) string {
	lo, hi := f(slices.Min(v)), f(slices.Max(v))
	if lo == hi {
		return lo
	}
	return lo + "-" + hi
}

func times(v float64) string { return fmt.Sprintf("%.1fx", v) }
func pct0(v float64) string  { return fmt.Sprintf("%.0f%%", 100*v) }

// targets evaluates the targets on rep.
func targets(rep report) []target {
	return []target{targetSynproxy(rep), targetReflect(rep), targetLegitSuccess(rep), targetLegitP99(rep)}
}

func targetSynproxy(rep report) target {
	t := target{Name: "xsyn answers at least twice the SYN rate of netfilter SYNPROXY alone (same rig, same run)"}
	var ratios []float64
	var parts []string
	for _, x := range floodResults(rep.Results, scenarioFlood) {
		nf := findResult(rep.Results, scenarioFlood, modeSynproxy, x.Family, x.Shape)
		if x.Mode != modeXsyn || nf == nil || nf.SynAckPPS == 0 {
			continue
		}
		v := x.SynAckPPS / nf.SynAckPPS
		ratios = append(ratios, v)
		parts = append(parts, fmt.Sprintf("%s %s", runName(x), times(v)))
	}
	if len(ratios) == 0 {
		t.Verdict, t.Measured = verdictNotMeasure, "-"
		t.Why = "needs the flood scenario with the modes xsyn and synproxy"
		return t
	}
	t.Measured = fmt.Sprintf("%s SYN-ACKs per second (%s)", span(ratios, times), strings.Join(parts, ", "))
	t.Verdict = verdictMet
	if slices.Min(ratios) < 2 {
		t.Verdict = verdictNotMet
	}
	return t
}

func targetReflect(rep report) target {
	t := target{Name: "xsyn answers at 90% or more of the reflect ceiling"}
	var measured, core []float64
	var parts []string
	var limited, ceilingLimited bool
	for _, x := range floodResults(rep.Results, scenarioFlood) {
		ref := findResult(rep.Results, scenarioFlood, modeReflect, x.Family, x.Shape)
		if x.Mode != modeXsyn || ref == nil || ref.SynAckPPS == 0 || ref.DUTCorePPS == 0 {
			continue
		}
		v := x.SynAckPPS / ref.SynAckPPS
		measured = append(measured, v)
		core = append(core, x.DUTCorePPS/ref.DUTCorePPS)
		parts = append(parts, fmt.Sprintf("%s %s", runName(x), pct0(v)))
		limited = limited || saturated(x)
		ceilingLimited = ceilingLimited || saturated(*ref)
	}
	if len(measured) == 0 {
		t.Verdict, t.Measured = verdictNotMeasure, "-"
		t.Why = "needs the flood scenario with the modes xsyn and reflect"
		return t
	}
	t.Measured = fmt.Sprintf("%s of reflect's SYN-ACK rate (%s); per DUT core, projected, %s", span(measured, pct0), strings.Join(parts, ", "), span(core, pct0))
	switch {
	case ceilingLimited || limited:
		t.Verdict = verdictMet
		if slices.Min(measured) < 0.9 {
			t.Verdict = verdictNotMet
		}
		t.Why = "the DUT's core was 90% busy or more in at least one of the two, so the measured rates compare the DUT's work"
	default:
		t.Verdict = verdictUndecided
		t.Why = "neither xsyn nor reflect saturated the DUT's core (under 90% busy): both answered what the generator, " +
			"sharing its CPU with the sink that counts the answers, could send, so the measured ratio is the generator's rate in each run. " +
			"The per-core projection (handled rate / DUT CPU share) is the better estimate, but below saturation it is pessimistic for the mode that is less busy"
	}
	return t
}

// legitAtMax is the legit results of mode at the rig's maximum flood rate.
func legitAtMax(rep report, mode string) []legitResult {
	var out []legitResult
	for _, l := range rep.Legit {
		if l.Mode == mode && l.Level == 100 {
			out = append(out, l)
		}
	}
	return out
}

func targetLegitSuccess(rep report) target {
	return legitTarget(rep, "100% of legit clients connect under a SYN flood at the rig's maximum rate",
		func(l legitResult) (string, bool) {
			c := l.Clients
			return fmt.Sprintf("%s: %d of %d (%s) under %s Mpps", l.Family, c.Connected, c.Attempted, pct(c.Success()), mpps(l.OfferedPPS())),
				c.Connected == c.Attempted && c.Attempted > 0
		},
		func(c clientStats) string { return fmt.Sprintf("%d of %d", c.Connected, c.Attempted) })
}

func targetLegitP99(rep report) target {
	t := legitTarget(rep, "their p99 connect latency is under 2 ms",
		func(l legitResult) (string, bool) {
			ms := l.Clients.ConnectMs
			return fmt.Sprintf("%s: p99 %.2f ms (p50 %.2f, max %.2f)", l.Family, ms.P99, ms.P50, ms.Max), ms.N > 0 && ms.P99 < 2
		},
		func(c clientStats) string { return fmt.Sprintf("p99 %.2f ms", c.ConnectMs.P99) })
	if t.Verdict != verdictNotMeasure {
		t.Why = "connect is the handshake at the client (SYN out, SYN-ACK in); the time to the server's first byte, which also counts the server side of the handshake, is in the legit table"
	}
	return t
}

// legitTarget judges the legit clients of xsyn at the maximum rate, one family at a time: each
// gives a line and whether it meets the target; generic is xsyn-generic's figure, for comparison.
func legitTarget(rep report, name string, judge func(legitResult) (string, bool), generic func(clientStats) string) target {
	t := target{Name: name}
	rs := legitAtMax(rep, modeXsyn)
	if len(rs) == 0 {
		t.Verdict, t.Measured = verdictNotMeasure, "-"
		t.Why = "needs the legit scenario with the mode xsyn and the level 100"
		return t
	}
	t.Verdict = verdictMet
	var parts []string
	for _, l := range rs {
		line, met := judge(l)
		parts = append(parts, line)
		if !met {
			t.Verdict = verdictNotMet
		}
	}
	t.Measured = strings.Join(parts, "; ") + genericNote(rep, generic)
	return t
}

// genericNote adds xsyn-generic's figure at the maximum rate, for comparison.
func genericNote(rep report, f func(clientStats) string) string {
	var parts []string
	for _, l := range legitAtMax(rep, modeGeneric) {
		parts = append(parts, fmt.Sprintf("%s %s", l.Family, f(l.Clients)))
	}
	if len(parts) == 0 {
		return ""
	}
	return "; xsyn-generic: " + strings.Join(parts, ", ")
}

func writeTargets(w io.Writer, ts []target) {
	fmt.Fprintf(w, "\n## Targets\n\nMeasured in this run, not asserted anywhere.\n\n| target | measured | result |\n| --- | --- | --- |\n")
	for _, t := range ts {
		v := "**" + t.Verdict + "**"
		if t.Why != "" {
			v += ": " + t.Why
		}
		fmt.Fprintf(w, "| %s | %s | %s |\n", t.Name, t.Measured, v)
	}
}

// groups returns the distinct (family, shape) pairs of rs in the order they ran.
func groups(rs []result) [][2]string {
	var out [][2]string
	for _, r := range rs {
		g := [2]string{r.Family, r.Shape}
		if !slices.Contains(out, g) {
			out = append(out, g)
		}
	}
	return out
}

// ratioTo formats v(x) / v(ref), "-" without a reference.
func ratioTo(x, ref *result, v func(*result) float64, f func(float64) string) string {
	if ref == nil || v(ref) == 0 {
		return "-"
	}
	return f(v(x) / v(ref))
}

func synacks(r *result) float64 { return r.SynAckPPS }
func handled(r *result) float64 { return r.DUTRxPPS }
func perCore(r *result) float64 { return r.DUTCorePPS }

func xdpNs(r result) string {
	return orDash(r.XDPRuns > 0, fmt.Sprintf("%.0f", r.XDPNsPerPacket))
}

func ringDrops(r result) string { return pct(ratio(r.RingDropped, r.Sent)) }

func conntrack(r result) string { return orDash(r.Conntrack >= 0, fmt.Sprint(r.Conntrack)) }

// droppedInXDP is the share of the frames the DUT handled that its XDP program dropped.
func droppedInXDP(r result) string {
	switch {
	case r.Mode == modeDrop:
		return pct(ratio(r.XDPRuns, r.DUTRx))
	case r.Xsyn != nil:
		return pct(ratio(r.Xsyn.Dropped(), r.DUTRx))
	}
	return "-"
}

func writeFloods(w io.Writer, rep report) {
	rs := rep.Results
	if syn := floodResults(rs, scenarioFlood); len(syn) > 0 {
		fmt.Fprintf(w, "\n## SYN flood\n\nRandom sources, ports and sequence numbers. `× SYNPROXY`, `of reflect`: SYN-ACK rate against those modes'; "+
			"`of drop`: SYN-ACK rate against the frames the drop ceiling handled. `per core`: the same ratios of the rates projected to a full DUT core "+
			"(handled rate / DUT CPU share), × SYNPROXY / of reflect / of drop.\n")
		for _, g := range groups(syn) {
			fmt.Fprintf(w, "\n### %s, %s SYNs\n\n", g[0], g[1])
			fmt.Fprintf(w, "| mode | offered Mpps | DUT handled Mpps | ring drops | SYN-ACK Mpps | answered | × SYNPROXY | of reflect | of drop | XDP ns/pkt | DUT CPU | DUT CPU ns/pkt | DUT Mpps/core | per core | conntrack |\n")
			fmt.Fprintf(w, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
			nf, ref, drop := findResult(rs, scenarioFlood, modeSynproxy, g[0], g[1]), findResult(rs, scenarioFlood, modeReflect, g[0], g[1]), findResult(rs, scenarioFlood, modeDrop, g[0], g[1])
			for _, r := range syn {
				if r.Family != g[0] || r.Shape != g[1] {
					continue
				}
				answers := r.Mode != modeDrop
				fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %.0f | %s | %s | %s |\n",
					r.Mode, mpps(r.OfferedPPS), mpps(r.DUTRxPPS), ringDrops(r),
					orDash(answers, mpps(r.SynAckPPS)), orDash(answers, pct(r.Answered)),
					orDash(answers, ratioTo(&r, nf, synacks, times)), orDash(answers, ratioTo(&r, ref, synacks, pct0)),
					orDash(answers, ratioToOther(&r, drop, synacks, handled, pct0)),
					xdpNs(r), pct(r.DUTCPUUtil), r.DUTCPUNsPerPacket, mpps(r.DUTCorePPS),
					ratioTo(&r, nf, perCore, times)+" / "+ratioTo(&r, ref, perCore, pct0)+" / "+ratioTo(&r, drop, perCore, pct0),
					conntrack(r))
			}
		}
	}
	for _, sc := range []string{scenarioAck, scenarioMix} {
		frs := floodResults(rs, sc)
		if len(frs) == 0 {
			continue
		}
		if sc == scenarioAck {
			fmt.Fprintf(w, "\n## Forged-ACK flood\n\nACKs without options from random sources, ports, sequence and acknowledgement numbers: "+
				"no connection, no valid cookie. The right answer is to drop them cheaply. `dropped in XDP`: of the frames the DUT handled, "+
				"those its XDP program dropped (xsyn: `ack_cookie_invalid` + `drop__no_conn` + `drop__malformed`). `RSTs`: the stack's answers, counted at the attacker. "+
				"`per core`: rate projected to a full DUT core, × SYNPROXY / of drop.\n")
		} else {
			fmt.Fprintf(w, "\n## Mixed flood: %d%% forged ACKs, %d%% option-less SYNs\n\nAs above; `answered` is SYN-ACKs per SYN sent.\n", rep.AckShare, 100-rep.AckShare)
		}
		for _, fam := range []string{"ipv4", "ipv6"} {
			var rows []result
			for _, r := range frs {
				if r.Family == fam {
					rows = append(rows, r)
				}
			}
			if len(rows) == 0 {
				continue
			}
			fmt.Fprintf(w, "\n### %s, %d B frames\n\n", fam, rows[0].FrameBytes)
			fmt.Fprintf(w, "| mode | offered Mpps | DUT handled Mpps | ring drops | dropped in XDP | SYN-ACK Mpps | answered | RSTs Mpps | XDP ns/pkt | DUT CPU | DUT CPU ns/pkt | DUT Mpps/core | per core | conntrack |\n")
			fmt.Fprintf(w, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
			nf, drop := findResult(rs, sc, modeSynproxy, fam, string(shapeBare)), findResult(rs, sc, modeDrop, fam, string(shapeBare))
			for _, r := range rows {
				syns := sc == scenarioMix && r.Mode != modeDrop
				fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %.0f | %s | %s | %s |\n",
					r.Mode, mpps(r.OfferedPPS), mpps(r.DUTRxPPS), ringDrops(r), droppedInXDP(r),
					orDash(syns, mpps(r.SynAckPPS)), orDash(syns, pct(r.Answered)), mpps(r.RstPPS),
					xdpNs(r), pct(r.DUTCPUUtil), r.DUTCPUNsPerPacket, mpps(r.DUTCorePPS),
					ratioTo(&r, nf, perCore, times)+" / "+ratioTo(&r, drop, perCore, pct0), conntrack(r))
			}
		}
	}
}

// ratioToOther is v(x) / u(ref).
func ratioToOther(x, ref *result, v, u func(*result) float64, f func(float64) string) string {
	if ref == nil || u(ref) == 0 {
		return "-"
	}
	return f(v(x) / u(ref))
}

func writeLegit(w io.Writer, rep report) {
	if len(rep.Legit) == 0 {
		return
	}
	fmt.Fprintf(w, "\n## Legit clients under a SYN flood\n\n")
	fmt.Fprintf(w, "A client in its own namespace, routed through the attacker's, starts %d connections per second for %s per row to the DUT's server, "+
		"while the generator floods the same port with 74 B Linux-like SYNs at a share of the rig's maximum (", rep.LegitRate, rep.LegitDuration)
	var maxes []string
	for _, f := range []string{"ipv4", "ipv6"} {
		if v, ok := rep.RigMaxPPS[f]; ok {
			maxes = append(maxes, fmt.Sprintf("%s %s Mpps", f, mpps(v)))
		}
	}
	fmt.Fprintf(w, "%s, the generator's rate against XDP_DROP; 100%%: unpaced, as fast as it can in that mode). ", strings.Join(maxes, ", "))
	fmt.Fprintf(w, "`connect`: SYN out to SYN-ACK in, at the client; a connection not established within %v failed. `first byte`: connect(2) to the server's line, "+
		"within %v of the handshake. Latencies are of the connections that got that far.\n", clientConnectTimeout, clientDataTimeout)
	for _, fam := range []string{"ipv4", "ipv6"} {
		var rows []legitResult
		for _, l := range rep.Legit {
			if l.Family == fam {
				rows = append(rows, l)
			}
		}
		if len(rows) == 0 {
			continue
		}
		fmt.Fprintf(w, "\n### %s\n\n", fam)
		fmt.Fprintf(w, "| mode | flood | offered Mpps | flood answered Mpps | ring drops | DUT CPU | connected | connect p50 / p99 / max ms | first byte | first byte p50 / p99 / max ms |\n")
		fmt.Fprintf(w, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
		for _, l := range rows {
			c := l.Clients
			level := fmt.Sprintf("%d%%", l.Level)
			offered, answered, drops, cpu := "0", "-", "-", "-"
			if f := l.Flood; f != nil {
				offered, answered, drops, cpu = mpps(f.OfferedPPS), mpps(f.SynAckPPS), ringDrops(*f), pct(f.DUTCPUUtil)
			}
			fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %d/%d (%s) | %s | %d/%d | %s |\n",
				l.Mode, level, offered, answered, drops, cpu, c.Connected, c.Attempted, pct(c.Success()), latencies(c.ConnectMs, "%.2f"),
				c.FirstByte, c.Attempted, latencies(c.FirstByteMs, "%.1f"))
		}
	}
}

func latencies(l latency, f string) string {
	if l.N == 0 {
		return "-"
	}
	return fmt.Sprintf(f+" / "+f+" / "+f, l.P50, l.P99, l.Max)
}

func writeEstablished(w io.Writer, rep report) {
	sums := rep.EstablishedSummary
	if len(sums) == 0 {
		return
	}
	fmt.Fprintf(w, "\n## Established throughput\n\nOne bulk TCP stream from the attacker's namespace to the protected port, %s measured per stream from its first byte, "+
		"%d rounds, the median reported. The DUT's stack offered window scale %d, xsyn and SYNPROXY %d. "+
		"`none`: no XDP, no rules; `pass`: an XDP program that returns XDP_PASS; `synproxy`: the rules alone; `xsyn`: xsyn as deployed by default, "+
		"the socket handoff (its rules and program, a socket lookup per segment); `xsyn-synproxy`: xsyn on its SYNPROXY path (SYNPROXY rules and the program, a conntrack lookup per segment).\n\n",
		rep.StreamDuration, rep.Rounds, rep.DUTWScale, rep.StreamWScale)
	fmt.Fprintf(w, "| mode | family | Gbit/s (median) | rounds | spread | of none | of pass | DUT CPU | DUT CPU ns/pkt | DUT Gbit/s/core | XDP ns/pkt | first byte ms | server data ms |\n")
	fmt.Fprintf(w, "| --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for _, s := range sums {
		var rounds []string
		for _, g := range s.Gbps {
			rounds = append(rounds, fmt.Sprintf("%.2f", g))
		}
		fmt.Fprintf(w, "| %s | %s | %.2f | %s | %s | %s | %s | %s | %.0f | %.2f | %s | %.0f | %s |\n",
			s.Mode, s.Family, s.Median, strings.Join(rounds, " "), pct(s.Spread),
			orDash(s.OfNone > 0, pct(s.OfNone)), orDash(s.OfPass > 0, pct(s.OfPass)),
			pct(s.DUTUtil), s.DUTNsPerPacket, s.DUTCoreGbps,
			orDash(s.XDPNsPerPacket > 0, fmt.Sprintf("%.1f", s.XDPNsPerPacket)),
			s.FirstByteMs, orDash(s.ServerDataMs >= 0, fmt.Sprintf("%.0f", s.ServerDataMs)))
	}
}
