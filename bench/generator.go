package main

// The flood generator. There are two ways to send bench_gen's frames (bench/bpf/bench.c), and
// every run of a report uses the same one:
//
//	live    bench_gen itself, run by BPF_PROG_RUN in live-frame mode "on" the attacker's veth:
//	        every run writes a frame and XDP_TX sends it to the DUT (livegen.go). The fastest,
//	        and the frames reach the DUT's ring as XDP frames, as from a NIC's driver.
//	packet  the same frames written by Go into an AF_PACKET TX ring on the attacker's veth,
//	        bypassing its qdisc (packetgen.go). For kernels that refuse live frames: some
//	        kernel builds answer BPF_F_TEST_XDP_LIVE_FRAMES with EPERM, whatever the
//	        program, its arguments or the caller's capabilities, and kernels before 5.18 do
//	        not know the flag.
//
// Both draw each frame's source, port and sequence numbers the same way and update the
// checksums with the same arithmetic (writeFloodFrame mirrors bench_gen byte for byte), pace
// with the same schedule (pacer mirrors bench_gen's pace()), send in batches of -batch and count
// a frame as sent when it was handed to the veth, whether or not the DUT's ring had room for it.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// flood is what the generator sends: SYNs, forged ACKs or a mix of both, at a target rate.
type flood struct {
	syn []byte // the template SYN
	// ack is the template forged ACK, as long as syn; ackPermille of the frames are ACKs
	// (0: a SYN flood, 1000: an ACK flood).
	ack         []byte
	ackPermille uint32
	// pps is the target rate, 0 as fast as possible.
	pps float64
}

// frameLen is the length of the flood's frames.
func (fl flood) frameLen() int {
	if fl.ackPermille >= 1000 {
		return len(fl.ack)
	}
	return len(fl.syn)
}

// genConfig is the generator's configuration for fl. Pacing is by schedule, in 1/1024 ns: the
// generator may catch up on at most one batch of frames it owes.
func genConfig(fl flood, batch uint32) (benchprogsGenConfig, error) {
	cfg := benchprogsGenConfig{Len: uint32(fl.frameLen()), AckPermille: min(fl.ackPermille, 1000)}
	if fl.ackPermille > 0 && (fl.ack == nil || (fl.ackPermille < 1000 && len(fl.ack) != len(fl.syn))) {
		return cfg, fmt.Errorf("a flood with forged ACKs needs an ACK template as long as the SYN (%d and %d bytes)", len(fl.ack), len(fl.syn))
	}
	if fl.syn != nil {
		copy(cfg.Frame[:], fl.syn)
	}
	if fl.ack != nil {
		copy(cfg.AckFrame[:], fl.ack)
	}
	tmpl := fl.syn
	if tmpl == nil {
		tmpl = fl.ack
	}
	if binary.BigEndian.Uint16(tmpl[12:]) == 0x86dd {
		cfg.Ipv6 = 1
	}
	if fl.pps > 0 {
		cfg.Gap = uint64(math.Round(1e9 * 1024 / fl.pps))
		cfg.Burst = cfg.Gap * uint64(batch)
	}
	return cfg, nil
}

// generator sends floods from the attacker's namespace to the DUT.
type generator interface {
	// run floods the DUT with fl for d, or until ctx ends, and returns how long the flood
	// lasted: from its first frame to its last, by the generator's own clock.
	run(ctx context.Context, fl flood, batch uint32, d time.Duration) (time.Duration, error)
	// sent is the frames sent so far (over all runs), and of those the forged ACKs.
	sent() (frames, acks uint64, err error)
	// ringDropped is, of the frames sent, those the DUT's veth ring had no room for, from the
	// counters of the two veth ends: which end counts them depends on how they were sent.
	ringDropped(dut, atk netlink.LinkStatistics) uint64
	close() error
}

// Generators (-generator).
const (
	genAuto   = "auto"   // live frames if the kernel runs them, the packet generator otherwise
	genLive   = "live"   // BPF_PROG_RUN in live-frame mode
	genPacket = "packet" // AF_PACKET TX ring
)

var generatorKinds = []string{genAuto, genLive, genPacket}

// generatorName is how the report names a generator.
func generatorName(kind string) string {
	switch kind {
	case genLive:
		return "live frames (bench_gen run by BPF_PROG_RUN with BPF_F_TEST_XDP_LIVE_FRAMES, XDP_TX out of the attacker's veth)"
	case genPacket:
		return "AF_PACKET TX ring (bench_gen's frames written by Go into a PACKET_TX_RING on the attacker's veth, PACKET_QDISC_BYPASS; " +
			"the DUT receives skbs, which its veth copies into a page before an XDP program runs, so the DUT's CPU per frame is higher than with live frames)"
	}
	return kind
}

// chooseGenerator decides which generator runs, given what -generator asked for and a probe
// of live frames (run only when it matters). It returns the kind and, when it is not what was
// asked for or the choice was automatic, why.
func chooseGenerator(want string, probeLive func() error) (kind, why string, err error) {
	switch want {
	case genPacket:
		return genPacket, "asked for (-generator packet)", nil
	case genLive:
		if err := probeLive(); err != nil {
			return "", "", fmt.Errorf("live frames: %w", err)
		}
		return genLive, "", nil
	case genAuto:
		err := probeLive()
		if err == nil {
			return genLive, "", nil
		}
		if liveUnavailable(err) {
			return genPacket, fmt.Sprintf("the kernel runs no live frames: %v", err), nil
		}
		return "", "", fmt.Errorf("live frames: %w", err)
	}
	return "", "", fmt.Errorf("unknown generator %q (want one of %v)", want, generatorKinds)
}

// liveUnavailable says whether a live-frame probe failed because this kernel does not run live
// frames (rather than because something is wrong with the rig): refused (EPERM, which some
// kernel builds answer to BPF_F_TEST_XDP_LIVE_FRAMES before looking at anything else), or not
// known (EINVAL before Linux 5.18, ENOTSUPP/EOPNOTSUPP).
func liveUnavailable(err error) bool {
	const enotsupp = unix.Errno(524) // the kernel's internal ENOTSUPP, which BPF_PROG_RUN can leak
	return errors.Is(err, unix.EPERM) || errors.Is(err, unix.EINVAL) ||
		errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, enotsupp)
}

// generate floods the DUT with fl for d, or until ctx ends, with the rig's generator, and returns
// how long the flood lasted. The collector is off meanwhile (noGC): the packet generator runs Go
// code all the time below the process's other threads on its CPU.
func (r *rig) generate(ctx context.Context, fl flood, batch uint32, d time.Duration) (time.Duration, error) {
	defer noGC()()
	return r.gen.run(ctx, fl, batch, d)
}

// pacer is bench_gen's pace() (bench/bpf/bench.c) in Go, with the same arithmetic: a frame
// goes when the clock has reached the next slot, which then moves one gap on; a generator that
// fell behind sends what it owes back to back, but at most burst's worth. Times are in 1/1024 ns.
type pacer struct {
	gap, burst uint64 // from genConfig; gap 0: as fast as possible
	next       uint64
}

// ready says whether a frame may go at nowNs (ns on a monotonic clock).
func (p *pacer) ready(nowNs uint64) bool {
	if p.gap == 0 {
		return true
	}
	now := nowNs << 10
	next := p.next
	if now < next {
		return false
	}
	if next+p.burst < now {
		next = now - p.burst
	}
	p.next = next + p.gap
	return true
}

// placePaced pins a paced generator's thread to cpu as an ordinary task of the highest weight
// (nice -20), not a real-time one. A paced generator spins between its frames, and a real-time
// task that never sleeps starves ordinary tasks until the kernel's fair server gives them their
// share in one piece: 50 ms of every second, in which the generator sends nothing (4-5% short of
// the target, measured). As an ordinary task it yields them short slices instead, and catches up
// on a batch of frames after each.
func placePaced(tid, cpu, _ int) error {
	if err := pinTask(tid, cpu); err != nil {
		return err
	}
	attr := unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_NORMAL, Nice: -20}
	if err := unix.SchedSetAttr(tid, &attr, 0); err != nil {
		return fmt.Errorf("set nice -20: %w", err)
	}
	return nil
}

// placeGenerator places the calling thread as a generator of fl: real-time below the sink
// unpaced, an ordinary task at nice -20 paced (placePaced).
func placeGenerator(fl flood, cpu int) error {
	place := placeTask
	if fl.pps > 0 {
		place = placePaced
	}
	if err := place(0, cpu, prioGenerator); err != nil {
		return fmt.Errorf("place generator on CPU %d: %w", cpu, err)
	}
	return nil
}
