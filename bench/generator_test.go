package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/xsyn-project/xsyn/internal/netlab"
	"github.com/xsyn-project/xsyn/internal/packet"
	"github.com/xsyn-project/xsyn/internal/testutil"
)

// needRoot skips a test that needs root (BPF programs, namespaces); every other test runs
// everywhere.
func needRoot(tb testing.TB) {
	tb.Helper()
	testutil.RequireRoot(tb, "loads BPF programs or builds network namespaces")
}

func TestChooseGenerator(t *testing.T) {
	refused := fmt.Errorf("BPF_PROG_RUN with BPF_F_TEST_XDP_LIVE_FRAMES: %w", unix.EPERM)
	for _, tc := range []struct {
		want     string
		probe    error
		kind     string
		why      string // part of it
		err      bool
		noProbes bool
	}{
		{want: genAuto, probe: nil, kind: genLive},
		{want: genAuto, probe: refused, kind: genPacket, why: "operation not permitted"},
		{want: genAuto, probe: unix.EINVAL, kind: genPacket, why: "the kernel runs no live frames"}, // before 5.18
		{want: genAuto, probe: unix.Errno(524), kind: genPacket, why: "the kernel runs no live frames"},
		{want: genAuto, probe: unix.ENODEV, err: true}, // the rig is broken: no fallback hides that
		{want: genLive, probe: nil, kind: genLive},
		{want: genLive, probe: refused, err: true},
		{want: genPacket, kind: genPacket, why: "asked for", noProbes: true},
		{want: "pktgen", err: true, noProbes: true},
	} {
		probes := 0
		kind, why, err := chooseGenerator(tc.want, func() error { probes++; return tc.probe })
		name := fmt.Sprintf("%s, probe %v", tc.want, tc.probe)
		if tc.err {
			if err == nil {
				t.Errorf("%s: %s, want an error", name, kind)
			}
		} else if err != nil || kind != tc.kind || !strings.Contains(why, tc.why) || (tc.why == "" && why != "") {
			t.Errorf("%s: %q (%q), %v; want %q (%q)", name, kind, why, err, tc.kind, tc.why)
		}
		if tc.noProbes && probes != 0 {
			t.Errorf("%s: probed live frames %d times", name, probes)
		}
	}
}

func TestPacer(t *testing.T) {
	const gap = 1000 << 10 // 1 µs
	p := pacer{gap: gap, burst: 4 * gap}
	sent := func(from, to, step uint64) (n int) {
		for now := from; now < to; now += step {
			if p.ready(now) {
				n++
			}
		}
		return n
	}
	// On schedule: one frame per µs, asked every 100 ns.
	if n := sent(0, 10_000, 100); n != 10 {
		t.Errorf("10 µs at 1 Mpps: %d frames", n)
	}
	// After a stall of 100 µs, at most the burst (4 frames) and the one due back to back, then
	// the schedule again: the next one a gap later.
	n := 0
	for range 10 {
		if p.ready(110_000) {
			n++
		}
	}
	if n != 5 {
		t.Errorf("after a stall: %d frames at once, want the burst and the one due", n)
	}
	if n := sent(110_001, 120_000, 100); n != 9 {
		t.Errorf("10 µs after the stall: %d frames, want 9 (from 111 µs on)", n)
	}
	unpaced := pacer{}
	for i := range 100 {
		if !unpaced.ready(0) {
			t.Fatalf("unpaced: frame %d held back", i)
		}
	}
}

// floodTemplates are the flood's templates in every shape the bench sends.
func floodTemplates() map[string]flood {
	src, dst := packet.MAC{2, 0, 0, 0, 0, 1}, packet.MAC{2, 0, 0, 0, 0, 2}
	d4, d6 := dutAddr4.Addr(), dutAddr6.Addr()
	return map[string]flood{
		"syn4-54": {syn: synFrame(4, shapeBare, src, dst, d4, 8080)},
		"syn4-74": {syn: synFrame(4, shapeLinux, src, dst, d4, 8080)},
		"syn6-74": {syn: synFrame(6, shapeBare, src, dst, d6, 8080)},
		"syn6-94": {syn: synFrame(6, shapeLinux, src, dst, d6, 8080)},
		"ack4":    {ack: ackFrame(4, src, dst, d4, 8080), ackPermille: 1000},
		"ack6":    {ack: ackFrame(6, src, dst, d6, 8080), ackPermille: 1000},
		"mix4":    {syn: synFrame(4, shapeBare, src, dst, d4, 8080), ack: ackFrame(4, src, dst, d4, 8080), ackPermille: 500},
		"mix6":    {syn: synFrame(6, shapeBare, src, dst, d6, 8080), ack: ackFrame(6, src, dst, d6, 8080), ackPermille: 500},
	}
}

// checkFloodFrame checks a generated frame on its own: checksums right, a source in the flood's
// network, a port of 1024 or more, everything else the template's; it returns whether it is a
// forged ACK.
func checkFloodFrame(t *testing.T, name string, fl flood, b []byte) (ack bool) {
	t.Helper()
	p, err := packet.Parse(b)
	if err != nil || p.TCP == nil {
		t.Fatalf("%s: %v", name, err)
	}
	var src netip.Addr
	if p.IPv4 != nil {
		src = p.IPv4.Src
	} else {
		src = p.IPv6.Src
	}
	if !floodNet4.Contains(src) && !floodNet6.Contains(src) {
		t.Errorf("%s: source %v outside the flood's networks", name, src)
	}
	if p.TCP.SrcPort < 1024 {
		t.Errorf("%s: source port %d", name, p.TCP.SrcPort)
	}
	ack = p.TCP.Flags&packet.ACK != 0
	tmpl := fl.syn
	if ack {
		tmpl = fl.ack
	}
	// Outside the source, port, sequence and acknowledgement numbers and the checksums, the
	// template's bytes.
	l3, l4 := 14, 34
	if p.IPv6 != nil {
		l4 = 54
	}
	masked := func(f []byte) []byte {
		f = bytes.Clone(f)
		if p.IPv4 != nil {
			clear(f[l3+10 : l3+16]) // checksum, source
		} else {
			clear(f[l3+8 : l3+24])
		}
		clear(f[l4 : l4+2])   // source port
		clear(f[l4+4 : l4+8]) // sequence number
		if ack {
			clear(f[l4+8 : l4+12])
		}
		clear(f[l4+16 : l4+18]) // checksum
		return f
	}
	if !bytes.Equal(masked(b), masked(tmpl)) {
		t.Errorf("%s: differs from its template elsewhere\n got %x\nwant %x", name, b, tmpl)
	}
	return ack
}

func TestWriteFloodFrame(t *testing.T) {
	for name, fl := range floodTemplates() {
		cfg, err := genConfig(fl, 64)
		if err != nil {
			t.Fatal(err)
		}
		w := newFrameWriter(cfg, 1)
		acks := 0
		const n = 2000
		for i := range n {
			b := make([]byte, cfg.Len)
			ack := w.write(b)
			if got := checkFloodFrame(t, fmt.Sprintf("%s #%d", name, i), fl, b); got != ack {
				t.Fatalf("%s #%d: written as ACK %v, is ACK %v", name, i, ack, got)
			}
			if ack {
				acks++
			}
		}
		want := int(fl.ackPermille) * n / 1000
		if acks < want-n/10 || acks > want+n/10 {
			t.Errorf("%s: %d forged ACKs in %d frames, want about %d", name, acks, n, want)
		}
	}
}

// TestWriteFloodFrameIsBenchGens runs bench_gen itself (BPF_PROG_RUN, not live: one frame per
// call, returned to us) and has writeFloodFrame write a frame with the numbers the program drew:
// the two must be the same bytes, checksums included.
func TestWriteFloodFrameIsBenchGens(t *testing.T) {
	needRoot(t)
	var objs benchprogsObjects
	if err := loadBenchprogsObjects(&objs, nil); err != nil {
		t.Fatal(err)
	}
	defer objs.Close()
	le := binary.LittleEndian
	for name, fl := range floodTemplates() {
		cfg, err := genConfig(fl, 64)
		if err != nil {
			t.Fatal(err)
		}
		if err := objs.BenchGenConfig.Put(uint32(0), &cfg); err != nil {
			t.Fatal(err)
		}
		ipv6 := cfg.Ipv6 != 0
		l4 := 34
		if ipv6 {
			l4 = 54
		}
		in := cfg.Frame[:cfg.Len]
		if fl.ackPermille >= 1000 {
			in = cfg.AckFrame[:cfg.Len]
		}
		for i := range 200 {
			out := make([]byte, cfg.Len)
			ret, err := objs.BenchGen.Run(&ebpf.RunOptions{Data: in, DataOut: out, Repeat: 1})
			if err != nil || ret != xdpTX {
				t.Fatalf("%s: bench_gen: verdict %d, %v", name, ret, err)
			}
			ack := checkFloodFrame(t, name, fl, out)
			tmpl := fl.syn
			if ack {
				tmpl = fl.ack
			}
			// What the program drew, read back from where it wrote it.
			d := frameDraw{sport: binary.BigEndian.Uint16(out[l4:]), seq: le.Uint32(out[l4+4:]), ack: le.Uint32(out[l4+8:])}
			if ipv6 {
				d.src, d.src2, d.src3 = binary.BigEndian.Uint32(out[26:]), le.Uint32(out[30:]), le.Uint32(out[34:])
			} else {
				d.src = binary.BigEndian.Uint32(out[26:]) - genSrc4Net
			}
			mine := make([]byte, cfg.Len)
			writeFloodFrame(mine, tmpl, ipv6, ack, d)
			if !bytes.Equal(mine, out) {
				t.Fatalf("%s #%d: bench_gen wrote\n%x\nwriteFloodFrame wrote\n%x", name, i, out, mine)
			}
		}
	}
}

// fakeKernel stands in for tpacket_snd: it takes the requested slots in order from its own head,
// skips those of length 0 (PACKET_LOSS), and lets room frames into the DUT's ring per call; the
// next one finds the ring full, goes back to SEND_REQUEST and the call fails with ENOBUFS. It
// records the frames that went out (by their first data byte) and the ones it lost.
type fakeKernel struct {
	t       *txRing
	head    int
	room    func(call int) int
	calls   int
	out     []byte
	refused int
}

func (k *fakeKernel) sendto() error {
	k.calls++
	room := k.room(k.calls)
	for {
		st := k.t.status(k.head)
		if atomic.LoadUint32(st) != unix.TP_STATUS_SEND_REQUEST {
			return nil
		}
		s := k.t.slot(k.head)
		if binary.NativeEndian.Uint32(s[4:]) == 0 {
			atomic.StoreUint32(st, unix.TP_STATUS_AVAILABLE)
			k.head = (k.head + 1) % k.t.n
			continue
		}
		if room == 0 {
			k.refused++
			return unix.ENOBUFS // the slot stays SEND_REQUEST, the head where it is
		}
		room--
		k.out = append(k.out, s[txDataOff+vnetHdrLen])
		atomic.StoreUint32(st, unix.TP_STATUS_AVAILABLE) // sent, skb already freed
		k.head = (k.head + 1) % k.t.n
	}
}

func TestTXRingCounting(t *testing.T) {
	var frames, acks atomic.Uint64
	const n = 16
	tr := newTXRing(make([]byte, n*txFrameSize), n, &frames, &acks)
	k := &fakeKernel{t: tr, room: func(call int) int { return []int{3, 0, 100, 1, 0, 0, 100}[(call-1)%7] }}
	tr.sendto = k.sendto
	var wrote []byte
	seq := byte(0)
	for batch := range 6 {
		for i := range 5 {
			slot := tr.free()
			if slot == nil {
				t.Fatalf("batch %d, frame %d: no free slot", batch, i)
			}
			seq++
			slot[0] = seq
			tr.request(54, seq%3 == 0)
			wrote = append(wrote, seq)
		}
		if err := tr.send(nil); err != nil {
			t.Fatal(err)
		}
		if tr.pending != 0 {
			t.Fatalf("batch %d: %d frames left", batch, tr.pending)
		}
	}
	if got, want := frames.Load(), uint64(len(wrote)); got != want {
		t.Errorf("%d frames counted, %d written", got, want)
	}
	var wantAcks uint64
	for _, s := range wrote {
		if s%3 == 0 {
			wantAcks++
		}
	}
	if acks.Load() != wantAcks {
		t.Errorf("%d forged ACKs counted, %d written", acks.Load(), wantAcks)
	}
	// Every frame went out or was lost once, in order; none twice.
	if len(k.out)+k.refused != len(wrote) {
		t.Errorf("%d out and %d lost of %d written", len(k.out), k.refused, len(wrote))
	}
	for i := 1; i < len(k.out); i++ {
		if k.out[i] <= k.out[i-1] {
			t.Fatalf("sent out of order or twice: %v", k.out)
		}
	}
	if k.refused == 0 {
		t.Error("the fake kernel lost nothing: the test tests nothing")
	}
}

// TestPacketGenerator floods a veth with the packet generator, paced, and checks what the peer
// got: the frames on the wire are bench_gen's (checksums, sources), and every frame counted as
// sent arrived or was counted as lost in the sender's tx_dropped.
func TestPacketGenerator(t *testing.T) {
	needRoot(t)
	p, err := netlab.NewPair("xsynpgt", "pgtc0", []netip.Prefix{atkAddr4}, "pgts0", []netip.Prefix{dutAddr4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	var ifindex int
	if err := p.Client.Do(func() error {
		l, err := netlink.LinkByName("pgtc0")
		if err == nil {
			ifindex = l.Attrs().Index
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	src, err := packet.ParseMAC(p.ClientLink.MAC)
	if err != nil {
		t.Fatal(err)
	}
	dst, err := packet.ParseMAC(p.ServerLink.MAC)
	if err != nil {
		t.Fatal(err)
	}
	fl := flood{syn: synFrame(4, shapeBare, src, dst, dutAddr4.Addr(), 8080), ack: ackFrame(4, src, dst, dutAddr4.Addr(), 8080), ackPermille: 300, pps: 20000}
	capture, err := p.ServerLink.Capture()
	if err != nil {
		t.Fatal(err)
	}
	defer capture.Close()
	before, err := linkStats(p.Server, "pgts0")
	if err != nil {
		t.Fatal(err)
	}
	atkBefore, err := linkStats(p.Client, "pgtc0")
	if err != nil {
		t.Fatal(err)
	}
	g := &packetGen{host: p.Client, ifindex: ifindex, cpu: 0}
	const d = 100 * time.Millisecond
	elapsed, err := g.run(context.Background(), fl, 64, d)
	if err != nil {
		t.Fatal(err)
	}
	sent, acks, _ := g.sent()
	if elapsed <= 0 {
		t.Errorf("flood time %v", elapsed)
	}
	// Paced (TestPacer checks the schedule): never more than the rate allows, plus one batch.
	if limit := uint64(fl.pps*elapsed.Seconds()*1.05) + 64 + 1; sent < 50 || sent > limit {
		t.Errorf("%d frames in %v at %.0f/s", sent, elapsed, fl.pps)
	}
	if acks == 0 || acks == sent {
		t.Errorf("%d forged ACKs of %d frames, want about 30%%", acks, sent)
	}
	var got uint64
	for range 50 {
		b, err := capture.Next(time.Second, func(b []byte) bool { return len(b) >= 14 && binary.BigEndian.Uint16(b[12:]) == 0x0800 })
		if err != nil {
			t.Fatalf("frame %d: %v", got, err)
		}
		checkFloodFrame(t, fmt.Sprintf("captured frame %d", got), fl, b)
		got++
	}
	after, err := linkStats(p.Server, "pgts0")
	if err != nil {
		t.Fatal(err)
	}
	atkAfter, err := linkStats(p.Client, "pgtc0")
	if err != nil {
		t.Fatal(err)
	}
	arrived := after.RxPackets - before.RxPackets
	lost := g.ringDropped(after, atkAfter) - g.ringDropped(before, atkBefore)
	// The stack may send a frame or two of its own meanwhile (router solicitations and the like).
	if arrived+lost < sent || arrived+lost > sent+5 {
		t.Errorf("sent %d, arrived %d, lost %d", sent, arrived, lost)
	}
}

func TestPacketGeneratorStops(t *testing.T) {
	// A cancelled flood stops before its time: floodRing checks between batches.
	var frames, acks atomic.Uint64
	tr := newTXRing(make([]byte, 64*txFrameSize), 64, &frames, &acks)
	k := &fakeKernel{t: tr, room: func(int) int { return 1 << 30 }}
	tr.sendto = k.sendto
	cfg, err := genConfig(floodTemplates()["syn4-74"], 8)
	if err != nil {
		t.Fatal(err)
	}
	var stopped atomic.Bool
	go func() { time.Sleep(20 * time.Millisecond); stopped.Store(true) }()
	start := time.Now()
	if _, err := floodRing(tr, newFrameWriter(cfg, 1), int(cfg.Len), pacer{}, 8, time.Minute, &stopped); err != nil {
		t.Fatal(err)
	}
	if time.Since(start) > 10*time.Second {
		t.Errorf("stopped after %v", time.Since(start))
	}
	if frames.Load() == 0 || frames.Load() != uint64(len(k.out)) {
		t.Errorf("%d frames counted, %d out", frames.Load(), len(k.out))
	}
}

// TestPacketGeneratorStopsInASend: a flood ends when it is stopped even while the kernel holds
// every frame (a DUT too swamped to drain its ring). The send used to retry until the kernel
// took a frame, up to txStuck slow calls, and outlast the flood, holding the CPU the legit client
// shares with it; it ended the run with "takes none" instead of the flood's result.
func TestPacketGeneratorStopsInASend(t *testing.T) {
	var frames, acks atomic.Uint64
	tr := newTXRing(make([]byte, 64*txFrameSize), 64, &frames, &acks)
	var calls atomic.Int64
	var stopped atomic.Bool
	tr.sendto = func() error {
		if calls.Add(1) == 10 {
			stopped.Store(true)
		}
		time.Sleep(100 * time.Microsecond) // a syscall on a busy CPU; every frame stays in flight
		return nil
	}
	cfg, err := genConfig(floodTemplates()["syn4-74"], 8)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := floodRing(tr, newFrameWriter(cfg, 1), int(cfg.Len), pacer{}, 8, time.Minute, &stopped); err != nil {
		t.Fatalf("a stopped flood whose frames the kernel holds: %v; want it to end", err)
	}
	if n := calls.Load(); n >= txStuck {
		t.Errorf("%d sendto calls: the send outlasted the stop", n)
	}
}
