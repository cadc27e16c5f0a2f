package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"math"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/xsyn-project/xsyn/internal/protect"
	"github.com/xsyn-project/xsyn/loader"
	"github.com/xsyn-project/xsyn/spec"
)

// fakeKernel hands out one status list per read, and a clock that each wait moves forward.
type fakeKernel struct {
	reads [][]protect.Status
	err   error // returned once the reads run out
	now   time.Time
	n     int
}

func (k *fakeKernel) view(o statusOpts, terminal bool, out *strings.Builder) statusView {
	return statusView{opts: o, out: out, terminal: terminal,
		read: func() ([]protect.Status, error) {
			if k.n >= len(k.reads) {
				return nil, k.err
			}
			k.n++
			return k.reads[k.n-1], nil
		},
		now:  func() time.Time { return k.now },
		wait: func(_ context.Context, d time.Duration) bool { k.now = k.now.Add(d); return true },
	}
}

func d0(syn, synack, valid, drops uint64) []protect.Status {
	c := &loader.FamilyCounters{
		IPv4: loader.Counters{SynReceived: syn, SynackSent: synack, AckCookieValid: valid, DropNoConn: drops},
		IPv6: loader.Counters{SynReceived: syn / 2, SynackSent: synack / 2},
	}
	return []protect.Status{{Iface: "d0", Mode: "native", Holder: loader.HolderLink, ProgID: 7, Rules: true, Counters: c}}
}

func TestRatesBetween(t *testing.T) {
	prev, cur := d0(100, 100, 1, 0)[0].Counters, d0(2100, 2100, 5, 30)[0].Counters
	r, ok := ratesBetween(prev, cur, 2*time.Second)
	if !ok {
		t.Fatal("no rates between two growing samples")
	}
	for _, c := range []struct {
		fam, name string
		want      float64
	}{
		{"ipv4", "syn_received", 1000}, {"ipv4", "ack_cookie_valid", 2}, {"ipv4", "drop__no_conn", 15},
		{"ipv6", "synack_sent", 500}, {"other", "pass__not_ip", 0},
	} {
		if got := r[c.fam][c.name]; got != c.want {
			t.Errorf("%s %s: %v/s, want %v", c.fam, c.name, got, c.want)
		}
	}
	if _, ok := ratesBetween(cur, prev, time.Second); ok {
		t.Error("rates across a counter reset (attached afresh): want none")
	}
	if _, ok := ratesBetween(nil, cur, time.Second); ok {
		t.Error("rates without a previous sample (netfilter-only has no counters): want none")
	}
}

// --watch --json: one JSON document per line, the first without rates, then rates per second
// over the measured interval, so rate x interval is exactly what the counter moved by.
func TestStatusWatchJSONLines(t *testing.T) {
	k := &fakeKernel{reads: [][]protect.Status{d0(10, 10, 0, 0), d0(510, 510, 3, 0), d0(510, 510, 3, 40)}, now: time.Unix(1e9, 0)}
	var out strings.Builder
	if err := k.view(statusOpts{json: true, watch: true, interval: 500 * time.Millisecond, count: 3}, false, &out).watch(context.Background()); err != nil {
		t.Fatal(err)
	}
	var frames []statusJSON
	sc := bufio.NewScanner(strings.NewReader(out.String()))
	for sc.Scan() {
		var f statusJSON
		if err := json.Unmarshal(sc.Bytes(), &f); err != nil {
			t.Fatalf("line %d is not a JSON document: %v\n%s", len(frames)+1, err, sc.Text())
		}
		frames = append(frames, f)
	}
	if len(frames) != 3 {
		t.Fatalf("%d lines, want 3 (--count 3):\n%s", len(frames), out.String())
	}
	if f := frames[0].Interfaces[0]; f.Rates != nil || f.RatesInterval != 0 {
		t.Errorf("first frame has rates %v over %v; nothing to compare it with yet", f.Rates, f.RatesInterval)
	}
	for i, want := range []map[string]float64{
		{"syn_received": 1000, "ack_cookie_valid": 6, "drop__no_conn": 0},
		{"syn_received": 0, "ack_cookie_valid": 0, "drop__no_conn": 80},
	} {
		f := frames[i+1].Interfaces[0]
		if f.RatesInterval != 0.5 {
			t.Errorf("frame %d: rates_interval_seconds %v, want 0.5", i+2, f.RatesInterval)
		}
		for name, v := range want {
			if got := f.Rates["ipv4"][name]; got != v {
				t.Errorf("frame %d: ipv4 %s %v/s, want %v", i+2, name, got, v)
			}
		}
		if len(f.Rates["ipv6"]) != len(f.Counters["ipv6"]) {
			t.Errorf("frame %d: rates have %d ipv6 keys, counters %d; want the same keys", i+2, len(f.Rates["ipv6"]), len(f.Counters["ipv6"]))
		}
	}
}

// On a terminal each frame redraws the screen from the top; piped, frames follow each other.
func TestStatusWatchText(t *testing.T) {
	for _, terminal := range []bool{true, false} {
		k := &fakeKernel{reads: [][]protect.Status{d0(10, 10, 0, 0), d0(1010, 1010, 2, 0)}, now: time.Unix(1e9, 0)}
		var out strings.Builder
		if err := k.view(statusOpts{watch: true, interval: time.Second, count: 2}, terminal, &out).watch(context.Background()); err != nil {
			t.Fatal(err)
		}
		s := out.String()
		frames := strings.Count(s, "xsyn status, every 1s,")
		homes := strings.Count(s, "\x1b[H")
		if frames != 2 || (terminal && homes != 2) || (!terminal && homes != 0) {
			t.Errorf("terminal=%v: %d frames, %d cursor-home sequences:\n%q", terminal, frames, homes, s)
		}
		if !strings.Contains(s, "per second: SYN 1500, SYN-ACK 1500, ACK cookie valid 2.0, invalid 0, established 0, dropped 0") {
			t.Errorf("terminal=%v: second frame lacks the per-second summary:\n%s", terminal, s)
		}
	}
}

// Without --watch: two reads an interval apart, or one with --interval 0.
func TestStatusOnce(t *testing.T) {
	k := &fakeKernel{reads: [][]protect.Status{d0(0, 0, 0, 0), d0(300, 300, 0, 0)}, now: time.Unix(1e9, 0)}
	var out strings.Builder
	if err := k.view(statusOpts{interval: 3 * time.Second}, false, &out).once(context.Background()); err != nil {
		t.Fatal(err)
	}
	if k.n != 2 || !strings.Contains(out.String(), "per second: SYN 150, SYN-ACK 150,") || !strings.Contains(strings.Join(strings.Fields(out.String()), " "), "COUNTER IPV4 /s IPV6 /s OTHER /s syn_received 300 100 150 50 0 0") {
		t.Errorf("%d reads; want 2 and rates:\n%s", k.n, out.String())
	}

	k = &fakeKernel{reads: [][]protect.Status{d0(300, 300, 0, 0)}}
	out.Reset()
	if err := k.view(statusOpts{}, false, &out).once(context.Background()); err != nil {
		t.Fatal(err)
	}
	if k.n != 1 || strings.Contains(out.String(), "per second") || strings.Contains(out.String(), "/s") {
		t.Errorf("--interval 0: %d reads, want 1 and no rates:\n%s", k.n, out.String())
	}

	// Counters reset between the reads: say so rather than print nonsense.
	k = &fakeKernel{reads: [][]protect.Status{d0(300, 300, 0, 0), d0(5, 5, 0, 0)}}
	out.Reset()
	if err := k.view(statusOpts{interval: time.Second}, false, &out).once(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "per second: unknown, the counters were reset") {
		t.Errorf("reset between reads not reported:\n%s", out.String())
	}
}

// A read that fails ends the watch with its error (the interface was detached meanwhile).
func TestStatusWatchEndsOnError(t *testing.T) {
	gone := errors.New("xsyn does not protect this interface: d0")
	k := &fakeKernel{reads: [][]protect.Status{d0(1, 1, 0, 0)}, err: gone}
	var out strings.Builder
	err := k.view(statusOpts{watch: true, interval: time.Second}, false, &out).watch(context.Background())
	if !errors.Is(err, gone) || strings.Count(out.String(), "xsyn status, every") != 1 {
		t.Errorf("watch after the interface went: %v, output:\n%s", err, out.String())
	}
}

// The built binary watching a real attachment: a flood sent between the first and the last
// frame shows up in the rates exactly, as rate x interval summed over the frames.
func TestStatusWatchRealAttach(t *testing.T) {
	requireRootForTest(t)
	l := newE2ELab(t, "xsynwat", enterers["nsenter"])
	l.echoServer(t, 8080)
	l.mustXsyn(t, "attach", "d0", "--port", "8080")

	argv := append(l.enter(l.dut), xsynBin, "status", "d0", "--watch", "--json", "--interval", "500ms", "--count", "3")
	cmd := exec.Command(argv[0], argv[1:]...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	lines := bufio.NewScanner(stdout)
	frame := func() ifaceJSON {
		t.Helper()
		if !lines.Scan() {
			t.Fatalf("status --watch ended early: %v\n%s", lines.Err(), stderr.String())
		}
		var st statusJSON
		if err := json.Unmarshal(lines.Bytes(), &st); err != nil || len(st.Interfaces) != 1 {
			t.Fatalf("frame %q: %v", lines.Text(), err)
		}
		return st.Interfaces[0]
	}
	first := frame()
	const n = 300
	if _, err := l.cliL.Send(l.synFlood(t, n, 3)); err != nil {
		t.Fatal(err)
	}
	var seen float64
	last := first
	for range 2 {
		last = frame()
		seen += last.Rates["ipv4"]["synack_sent"] * last.RatesInterval
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("status --watch --count 3: %v\n%s", err, stderr.String())
	}
	moved := counter(last, "ipv4", "synack_sent") - counter(first, "ipv4", "synack_sent")
	if moved != n || math.Abs(seen-n) > 1e-6 {
		t.Errorf("%d SYNs: synack_sent moved by %d, rates x intervals sum to %v; want %d both", n, moved, seen, n)
	}
	if first.Rates != nil || last.Mode != "native" || last.ProgramID != first.ProgramID {
		t.Errorf("first frame rates %v (want none); last frame mode %q program %d (first %d)", first.Rates, last.Mode, last.ProgramID, first.ProgramID)
	}
}

// status shows each service's path, in the table and in --json; handoff counters join the
// per-second summary where there are handoff services; an interface whose every service takes
// the handoff needs no netfilter rules and is not reported as missing them.
func TestStatusPaths(t *testing.T) {
	st := d0(10, 10, 2, 0)[0]
	st.Rules = false
	st.Services = []spec.Service{
		{Family: spec.IPv4, Dst: spec.IPv4.AnyAddr(), Port: 443, Options: spec.DefaultOptions(spec.IPv4), TTL: 64, Handoff: true},
	}
	st.Counters.IPv4.HandoffAssigned, st.Counters.IPv4.PassNoListener = 2, 1
	var b strings.Builder
	writeText(&b, st, familyRates{"ipv4": {"handoff_assigned": 4, "handoff_refused": 0, "pass__no_listener": 1}}, true)
	text := b.String()
	for _, want := range []string{"netfilter rules none needed (every service takes the handoff path)", "TTL  PATH", "64   handoff",
		"; handed off 4.0, refused 0, no listener 1.0", "handoff_assigned", "pass__no_listener"} {
		if !strings.Contains(text, want) {
			t.Errorf("status text lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "MISSING") {
		t.Errorf("status says the rules an all-handoff interface does not need are missing:\n%s", text)
	}

	mixed := st
	mixed.Rules = true
	mixed.Services = append([]spec.Service{{Family: spec.IPv4, Dst: spec.IPv4.AnyAddr(), Port: 22, Options: spec.DefaultOptions(spec.IPv4), TTL: 64}}, st.Services...)
	var out strings.Builder
	if err := writeJSON(&out, []protect.Status{st, mixed, d0(1, 1, 0, 0)[0]}, nil, false); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Interfaces []struct {
			NetfilterRules bool `json:"netfilter_rules"`
			Services       []struct {
				Port uint16 `json:"port"`
				Path string `json:"path"`
			} `json:"services"`
		} `json:"interfaces"`
	}
	if err := json.Unmarshal([]byte(out.String()), &doc); err != nil {
		t.Fatal(err)
	}
	got := doc.Interfaces
	if len(got) != 3 || !got[0].NetfilterRules || got[0].Services[0].Path != "handoff" ||
		got[1].Services[0].Path != "synproxy" || got[1].Services[1].Path != "handoff" || !got[2].NetfilterRules {
		t.Errorf("--json: %s", out.String())
	}
}
