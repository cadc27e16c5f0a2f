package main

// Micro-benchmarks of xsyn's XDP program through BPF_PROG_RUN, one path at a time:
//
//	sudo go test -run '^$' -bench . ./bench/...
//
// Every path gets a "run1" benchmark: one BPF_PROG_RUN call per iteration with Repeat 1. The
// kernel copies data_in into a new buffer on every call, so every run starts from the original
// frame. Repeat N would not do: the kernel runs the program N times on the same buffer, so from
// the second run on a SYN has already been rewritten into a SYN-ACK (which xsyn drops as a
// segment without a connection) and the benchmark would time the wrong path.
//
// run1 reports three numbers per path:
//   - ns/op: wall time of the whole syscall; the syscall and the kernel's test setup (buffer
//     allocation, copies) dominate it.
//   - kernel-ns/op: the duration BPF_PROG_RUN itself reports for the one run, from two
//     ktime_get_ns() around the program, whose own cost it includes.
//   - stats-ns/op: run_time_ns / run_cnt from BPF statistics (what bench's live runs report),
//     which also includes the cost of the two clock reads around each run. Statistics are on
//     only during run1 benchmarks.
//
// Paths that leave the frame as it was (not protected: XDP_PASS; ACKs: XDP_PASS or XDP_DROP) also
// get a "repeat" benchmark: one call with Repeat b.N, where the kernel's per-run average
// amortises its timer and is the most accurate figure. The SYN path rewrites the frame, so its
// cost under load is measured live instead: `go run ./bench` (XDP ns/pkt from bpf_stats).

import (
	"net/netip"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/xsyn-project/xsyn/internal/packet"
	"github.com/xsyn-project/xsyn/internal/testutil"
	"github.com/xsyn-project/xsyn/loader"
	"github.com/xsyn-project/xsyn/spec"
)

const (
	xdpDrop = 1
	xdpPass = 2
	xdpTX   = 3

	benchPort = 8080
)

var (
	benchCliMAC = packet.MAC{0x02, 0, 0, 0, 0, 1}
	benchSrvMAC = packet.MAC{0x02, 0, 0, 0, 0, 2}
)

type xdpCase struct {
	name     string
	frame    []byte
	verdict  uint32
	rewrites bool // the program changes the frame: no Repeat benchmark
}

// BenchmarkXDP runs every path of both of xsyn's cookies (the handoff path's SipHash cookie and
// the SYNPROXY path's kernel helper), and the SYNs through the reflect ceiling (bench.c: swap and
// XDP_TX, no cookie), on the same frames, so that their costs compare within one run.
func BenchmarkXDP(b *testing.B) {
	testutil.RequireRoot(b, "loads an XDP program and runs it with BPF_PROG_RUN")
	s, err := spec.Simple{Ports: []uint16{benchPort}, WScale: -1}.Build()
	if err != nil {
		b.Fatal(err)
	}
	synproxy, err := s.WithoutHandoff("the kernel helper's cookie, for comparison")
	if err != nil {
		b.Fatal(err)
	}
	for _, path := range []struct {
		name string
		s    spec.Spec
	}{{"handoff", s}, {"synproxy", synproxy}} {
		if path.s.Services[0].Handoff && loader.ProbeHandoff() != nil {
			b.Logf("%s: kernel lacks the socket handoff: %v", path.name, loader.ProbeHandoff())
			continue
		}
		p, err := loader.LoadProgram(path.s)
		if err != nil {
			b.Fatal(err)
		}
		defer p.Close()
		for _, c := range xdpCases(b, p.XDP()) {
			b.Run(path.name+"/"+c.name+"/run1", func(b *testing.B) { benchRun1(b, p.XDP(), c) })
			if !c.rewrites {
				b.Run(path.name+"/"+c.name+"/repeat", func(b *testing.B) { benchRepeat(b, p.XDP(), c) })
			}
		}
	}

	var objs benchprogsObjects
	if err := loadBenchprogsObjects(&objs, nil); err != nil {
		b.Fatal(err)
	}
	defer objs.Close()
	for _, c := range synCases() {
		b.Run("reflect/"+c.name+"/run1", func(b *testing.B) { benchRun1(b, objs.BenchReflect, c) })
	}
}

func benchRun1(b *testing.B, prog *ebpf.Program, c xdpCase) {
	// Statistics only here: they add two clock reads to every run, which would also slow the
	// repeat benchmarks down.
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		b.Fatalf("enable BPF statistics: %v", err)
	}
	defer stats.Close()
	before, err := prog.Stats()
	if err != nil {
		b.Fatal(err)
	}
	var kernel time.Duration
	for b.Loop() {
		ret, d, err := prog.Benchmark(c.frame, 1, nil)
		if err != nil {
			b.Fatal(err)
		}
		if ret != c.verdict {
			b.Fatalf("verdict %d, want %d", ret, c.verdict)
		}
		kernel += d
	}
	after, err := prog.Stats()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(kernel.Nanoseconds())/float64(b.N), "kernel-ns/op")
	if runs := after.RunCount - before.RunCount; runs > 0 {
		b.ReportMetric(float64(after.Runtime-before.Runtime)/float64(runs), "stats-ns/op")
	}
}

func benchRepeat(b *testing.B, prog *ebpf.Program, c xdpCase) {
	ret, d, err := prog.Benchmark(c.frame, b.N, b.ResetTimer)
	if err != nil {
		b.Fatal(err)
	}
	if ret != c.verdict {
		b.Fatalf("verdict %d, want %d", ret, c.verdict)
	}
	b.ReportMetric(float64(d.Nanoseconds()), "kernel-ns/op")
}

// xdpCases builds one frame per path. The valid ACK answers the SYN-ACK the program itself sends
// for the option-less IPv4 SYN, so it carries a real cookie.
func xdpCases(b *testing.B, prog *ebpf.Program) []xdpCase {
	dst4 := netip.MustParseAddr("192.0.2.2")
	syn4 := synFrame(4, shapeBare, benchCliMAC, benchSrvMAC, dst4, benchPort)

	out := make([]byte, len(syn4)+256)
	ret, err := prog.Run(&ebpf.RunOptions{Data: syn4, DataOut: out, Repeat: 1})
	if err != nil || ret != xdpTX {
		b.Fatalf("SYN: verdict %d, %v; want XDP_TX", ret, err)
	}
	synack, err := packet.Parse(out)
	if err != nil || synack.TCP == nil {
		b.Fatalf("parse SYN-ACK: %v", err)
	}
	ack := func(ackSeq uint32) []byte {
		return packet.Frame{
			Dst: benchSrvMAC, Src: benchCliMAC,
			IPv4: &packet.IPv4{Src: synack.IPv4.Dst, Dst: synack.IPv4.Src, DF: true, TTL: 64},
			TCP: &packet.TCP{SrcPort: synack.TCP.DstPort, DstPort: synack.TCP.SrcPort,
				Seq: synack.TCP.Ack, Ack: ackSeq, Flags: packet.ACK, Window: 502},
		}.Bytes()
	}
	return append(synCases(),
		xdpCase{"ack4-valid", ack(synack.TCP.Seq + 1), xdpPass, false},
		xdpCase{"ack4-invalid", ack(synack.TCP.Seq + 12345), xdpDrop, false},
		xdpCase{"syn4-not-protected", synFrame(4, shapeLinux, benchCliMAC, benchSrvMAC, dst4, benchPort+1), xdpPass, false},
	)
}

// synCases are the SYN frames: both families, without options and with Linux's.
func synCases() []xdpCase {
	dst4 := netip.MustParseAddr("192.0.2.2")
	dst6 := netip.MustParseAddr("2001:db8::2")
	return []xdpCase{
		{"syn4-54B", synFrame(4, shapeBare, benchCliMAC, benchSrvMAC, dst4, benchPort), xdpTX, true},
		{"syn4-74B", synFrame(4, shapeLinux, benchCliMAC, benchSrvMAC, dst4, benchPort), xdpTX, true},
		{"syn6-74B", synFrame(6, shapeBare, benchCliMAC, benchSrvMAC, dst6, benchPort), xdpTX, true},
		{"syn6-94B", synFrame(6, shapeLinux, benchCliMAC, benchSrvMAC, dst6, benchPort), xdpTX, true},
	}
}
