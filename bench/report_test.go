package main

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"math"
	"strings"
	"testing"
	"time"
)

// floodRun is a SYN flood result with the figures the targets read.
func floodRun(mode string, synackMpps, util, coreMpps float64) result {
	return result{
		Scenario: scenarioFlood, Mode: mode, Family: "ipv4", Shape: string(shapeLinux), FrameBytes: 74,
		Sent: 1000, OfferedPPS: 2e6, DUTRxPPS: synackMpps * 1e6, SynAckPPS: synackMpps * 1e6, DUTCPUUtil: util, DUTCorePPS: coreMpps * 1e6,
	}
}

func legitRun(mode string, level, connected, attempted int, p99 float64) legitResult {
	return legitResult{Mode: mode, Family: "ipv4", Level: level, Flood: &result{OfferedPPS: 1.5e6},
		Clients: clientStats{Attempted: attempted, Connected: connected, ConnectMs: latency{N: connected, P50: 0.1, P99: p99, Max: p99 * 2}}}
}

func TestTargets(t *testing.T) {
	rep := report{
		Results: []result{
			floodRun(modeReflect, 1.9, 0.5, 3.8),
			floodRun(modeXsyn, 1.85, 0.6, 3.1),
			floodRun(modeSynproxy, 0.24, 0.97, 0.25),
		},
		Legit: []legitResult{legitRun(modeXsyn, 0, 200, 200, 0.2), legitRun(modeXsyn, 100, 200, 200, 0.3), legitRun(modeGeneric, 100, 199, 200, 1000)},
	}
	got := targets(rep)
	want := []string{verdictMet, verdictUndecided, verdictMet, verdictMet}
	for i, w := range want {
		if got[i].Verdict != w {
			t.Errorf("target %d (%s): %s (%s), want %s", i, got[i].Name, got[i].Verdict, got[i].Measured, w)
		}
	}
	if !strings.Contains(got[0].Measured, "7.7x") {
		t.Errorf("SYNPROXY ratio: %q", got[0].Measured)
	}
	if !strings.Contains(got[2].Measured, "xsyn-generic: ipv4 199 of 200") {
		t.Errorf("legit success: %q", got[2].Measured)
	}

	// The DUT saturated in reflect mode: the ratio decides; a lost client or a slow p99 fails.
	rep.Results[0] = floodRun(modeReflect, 2.2, 0.95, 2.3)
	rep.Legit[1] = legitRun(modeXsyn, 100, 199, 200, 2.5)
	got = targets(rep)
	for i, w := range []string{verdictMet, verdictNotMet, verdictNotMet, verdictNotMet} {
		if got[i].Verdict != w {
			t.Errorf("second run, target %d: %s (%s), want %s", i, got[i].Verdict, got[i].Measured, w)
		}
	}

	for i, tg := range targets(report{}) {
		if tg.Verdict != verdictNotMeasure {
			t.Errorf("empty report, target %d: %s", i, tg.Verdict)
		}
	}
}

func TestNewLatency(t *testing.T) {
	var ms []float64
	for i := 100; i >= 1; i-- {
		ms = append(ms, float64(i))
	}
	if l := newLatency(ms); l != (latency{N: 100, P50: 50, P99: 99, Max: 100}) {
		t.Errorf("1..100: %+v", l)
	}
	if l := newLatency([]float64{3}); l != (latency{N: 1, P50: 3, P99: 3, Max: 3}) {
		t.Errorf("one sample: %+v", l)
	}
	if l := newLatency(nil); l != (latency{}) {
		t.Errorf("none: %+v", l)
	}
}

// wellFormed parses an SVG document to its end.
func wellFormed(t *testing.T, name string, b []byte) {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(b))
	root := ""
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v\n%s", name, err, b)
		}
		if se, ok := tok.(xml.StartElement); ok && root == "" {
			root = se.Name.Local
		}
	}
	if root != "svg" {
		t.Errorf("%s: root element %q", name, root)
	}
}

func TestPlots(t *testing.T) {
	if synackPlot(nil) != nil || legitPlot(nil) != nil {
		t.Error("plots without data")
	}
	rs := []result{floodRun(modeNone, 0.27, 0.97, 0.28), floodRun(modeDrop, 0, 0.7, 4.6), floodRun(modeXsyn, 1.9, 0.6, 3.1), floodRun(modeSynproxy, 0.24, 0.97, 0.25)}
	v6 := floodRun(modeXsyn, 1.7, 0.6, 2.9)
	v6.Family = "ipv6"
	rs = append(rs, v6)
	svg := synackPlot(rs)
	wellFormed(t, "synack", svg)
	if !strings.Contains(string(svg), "xsyn ipv6 linux: 1.700 Mpps") || strings.Contains(string(svg), ">drop<") {
		t.Errorf("synack plot: bars or legend wrong:\n%s", svg)
	}
	none := legitRun(modeSynproxy, 100, 0, 200, 0)
	none.Clients.ConnectMs = latency{}
	svg = legitPlot([]legitResult{legitRun(modeXsyn, 0, 200, 200, 0.2), legitRun(modeXsyn, 100, 200, 200, 0.3), legitRun(modeNone, 100, 150, 200, 2000), none})
	wellFormed(t, "legit", svg)
	for _, s := range []string{"target: 2 ms", "75.0% connected", "none connected", "<polyline"} {
		if !strings.Contains(string(svg), s) {
			t.Errorf("legit plot lacks %q", s)
		}
	}
}

func TestWriteReport(t *testing.T) {
	ack := floodRun(modeXsyn, 0, 0.9, 2.5)
	ack.Scenario, ack.Shape, ack.Xsyn = scenarioAck, string(shapeBare), &xsynCounts{AckCookieInvalid: 900}
	ack.DUTRx = 1000
	rep := report{
		Results:            []result{floodRun(modeXsyn, 1.9, 0.6, 3.1), ack},
		Legit:              []legitResult{legitRun(modeXsyn, 100, 200, 200, 0.3)},
		RigMaxPPS:          map[string]float64{"ipv4": 3.5e6},
		EstablishedSummary: []streamSummary{{Mode: streamNone, Family: "ipv4", Gbps: []float64{10}, Median: 10}},
	}
	var b bytes.Buffer
	writeReport(&b, rep)
	for _, s := range []string{"## Targets", "## SYN flood", "### ipv4, linux SYNs", "## Forged-ACK flood", "| xsyn | 2.000 |", "90.0%",
		"## Legit clients under a SYN flood", "ipv4 3.500 Mpps", "200/200 (100.0%)", "## Established throughput", synackPlotFile, legitPlotFile} {
		if !strings.Contains(b.String(), s) {
			t.Errorf("report lacks %q:\n%s", s, b.String())
		}
	}
}

func TestGenConfig(t *testing.T) {
	syn := synFrame(4, shapeBare, benchCliMAC, benchSrvMAC, dutAddr4.Addr(), 8080)
	ack := ackFrame(4, benchCliMAC, benchSrvMAC, dutAddr4.Addr(), 8080)
	if len(syn) != len(ack) {
		t.Fatalf("SYN %d bytes, ACK %d", len(syn), len(ack))
	}
	cfg, err := genConfig(flood{syn: syn, ack: ack, ackPermille: 500, pps: 1e6}, 64)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Len != 54 || cfg.Ipv6 != 0 || cfg.AckPermille != 500 || cfg.Gap != 1024000 || cfg.Burst != 64*1024000 {
		t.Errorf("config %+v", cfg)
	}
	cfg, err = genConfig(flood{ack: ackFrame(6, benchCliMAC, benchSrvMAC, dutAddr6.Addr(), 8080), ackPermille: 1000}, 64)
	if err != nil || cfg.Len != 74 || cfg.Ipv6 != 1 || cfg.Gap != 0 {
		t.Errorf("IPv6 ACK flood: %+v, %v", cfg, err)
	}
	linux := synFrame(4, shapeLinux, benchCliMAC, benchSrvMAC, dutAddr4.Addr(), 8080)
	if _, err := genConfig(flood{syn: linux, ack: ack, ackPermille: 500}, 64); err == nil {
		t.Error("a mix of 74 B SYNs and 54 B ACKs: no error")
	}
}

func TestFloodTime(t *testing.T) {
	wall := 5 * time.Second
	if d := floodTime(benchprogsGenState{}, wall); d != wall {
		t.Errorf("no stamps: %v", d)
	}
	// 129 frames, the 128th stamped 127 ms after the first: 1 ms apart.
	d := floodTime(benchprogsGenState{Sent: 129, FirstNs: 1e9, LastNs: 1e9 + 127e6, Stamped: 127}, wall)
	if math.Abs(float64(d-129*time.Millisecond)) > float64(time.Microsecond) {
		t.Errorf("stamped: %v, want 129ms", d)
	}
}

func TestProgressPlain(t *testing.T) {
	var b bytes.Buffer
	p := newProgress(&b, 3)
	if p.tty {
		t.Fatal("a buffer is no terminal")
	}
	p.every = time.Millisecond
	var n uint64
	done := p.run("flood xsyn ipv4 74 B", time.Second, func() (uint64, uint64, error) { n += 1000; return n, n / 2, nil })
	for !strings.Contains(p.snapshot(), "Mpps answered") {
		time.Sleep(time.Millisecond)
	}
	done()
	p.logf("result")
	out := b.String()
	if !strings.HasPrefix(out, "[1/3, ") || !strings.Contains(out, "flood xsyn ipv4 74 B: ") || strings.Contains(out, "\r") || !strings.HasSuffix(out, "result\n") {
		t.Errorf("progress:\n%q", out)
	}
}

// snapshot is what the progress has written so far.
func (p *progress) snapshot() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.w.(*bytes.Buffer).String()
}

func TestPlanRuns(t *testing.T) {
	c, err := parseFlags([]string{"-family", "4", "-shape", "74", "-legit-levels", "0,100", "-rounds", "1"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	// flood 7 modes, ack 6, mix 6, legit 5 modes x 2 levels, established 5 modes.
	if n := planRuns(c); n != 7+6+6+10+5 {
		t.Errorf("%d runs", n)
	}
	if m := modesFor(scenarioLegit, []string{modeDrop, modeXsyn, modeNone}); len(m) != 2 || m[0] != modeXsyn || m[1] != modeNone {
		t.Errorf("legit modes %v", m)
	}
}
