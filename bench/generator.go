package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"runtime"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// xdpMD is struct xdp_md, the context BPF_PROG_RUN takes for XDP programs.
type xdpMD struct {
	Data, DataEnd, DataMeta, IngressIfindex, RxQueueIndex, EgressIfindex uint32
}

// progRunAttr is the BPF_PROG_RUN member of union bpf_attr.
type progRunAttr struct {
	progFD, retval, dataSizeIn, dataSizeOut uint32
	dataIn, dataOut                         uint64
	repeat, duration, ctxSizeIn, ctxSizeOut uint32
	ctxIn, ctxOut                           uint64
	flags, cpu, batchSize                   uint32
	_                                       uint32
}

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

// generate floods the DUT with fl for d, or until ctx ends, and returns how long the flood lasted
// (floodTime).
//
// The generator runs in live-frame mode "on" the attacker's veth: the context's ingress ifindex
// names it, and XDP_TX from BPF_PROG_RUN becomes a redirect out of that interface, i.e. to the
// DUT. The calling thread is pinned to genCPU (BPF_PROG_RUN's own cpu field is not supported
// for XDP) and runs SCHED_FIFO below the sink, so only the sink (and the legit client) preempt
// it; a paced generator runs as an ordinary task instead (placePaced).
//
// The whole run is one BPF_PROG_RUN call with the largest repeat count, ended by a signal: every
// call swaps the program into the kernel's XDP dispatcher and out again, two synchronize_rcu()
// that took 10-20 ms each here, so chunked calls would leave gaps in the flood. The syscall is
// made directly because cilium/ebpf's Program.Run restarts the whole run when it returns EINTR.
func (r *rig) generate(ctx context.Context, fl flood, batch uint32, d time.Duration) (time.Duration, error) {
	cfg, err := genConfig(fl, batch)
	if err != nil {
		return 0, err
	}
	if err := r.progs.BenchGenConfig.Put(uint32(0), &cfg); err != nil {
		return 0, fmt.Errorf("configure generator: %w", err)
	}
	if err := r.progs.BenchGenState.Put(uint32(0), &benchprogsGenState{}); err != nil {
		return 0, fmt.Errorf("reset the generator's schedule: %w", err)
	}
	frame := cfg.Frame[:cfg.Len]
	// data_end must equal the frame's length.
	md, err := binary.Append(nil, binary.NativeEndian, xdpMD{DataEnd: uint32(len(frame)), IngressIfindex: uint32(r.atkIfindex)})
	if err != nil {
		return 0, err
	}
	attr := progRunAttr{
		progFD:     uint32(r.progs.BenchGen.FD()),
		dataSizeIn: uint32(len(frame)),
		dataIn:     uint64(uintptr(unsafe.Pointer(&frame[0]))),
		repeat:     math.MaxUint32,
		ctxSizeIn:  uint32(len(md)),
		ctxIn:      uint64(uintptr(unsafe.Pointer(&md[0]))),
		flags:      unix.BPF_F_TEST_XDP_LIVE_FRAMES,
		batchSize:  batch,
	}
	var elapsed time.Duration
	err = r.atk.Do(func() error {
		// netlab's Do ends this thread afterwards, so its policy and affinity die with it.
		place := placeTask
		if fl.pps > 0 {
			place = placePaced
		}
		if err := place(0, r.genCPU, prioGenerator); err != nil {
			return fmt.Errorf("place generator on CPU %d: %w", r.genCPU, err)
		}
		var stopped atomic.Bool
		done := make(chan struct{})
		defer close(done)
		go interrupt(ctx, d, unix.Gettid(), &stopped, done)
		start := time.Now()
		for !stopped.Load() {
			_, _, errno := unix.Syscall(unix.SYS_BPF, unix.BPF_PROG_RUN, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr))
			// EINTR is the stop signal, or a stray signal: the loop condition tells which. A
			// return without error means 2^32-1 runs (frames sent or, paced, skipped); go on.
			if errno != 0 && errno != unix.EINTR {
				return fmt.Errorf("run generator (BPF_PROG_RUN, live frames): %w", errno)
			}
		}
		elapsed = time.Since(start)
		return nil
	})
	runtime.KeepAlive(frame)
	runtime.KeepAlive(md)
	if err != nil {
		return elapsed, err
	}
	var st benchprogsGenState
	if err := r.progs.BenchGenState.Lookup(uint32(0), &st); err != nil {
		return elapsed, fmt.Errorf("read the generator's clock: %w", err)
	}
	return floodTime(st, elapsed), nil
}

// floodTime is how long the flood of a run lasted: by the generator's own clock, its frames
// times their average gap; the wall-clock time of the whole call for a run too short to tell.
func floodTime(st benchprogsGenState, wall time.Duration) time.Duration {
	if st.Stamped == 0 || st.LastNs <= st.FirstNs {
		return wall
	}
	return time.Duration(float64(st.LastNs-st.FirstNs) * float64(st.Sent) / float64(st.Stamped))
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

// interrupt ends the generator's BPF_PROG_RUN after d (or when ctx ends): it sets stopped and
// signals the generator's thread until done. The kernel checks for signals between batches and
// returns EINTR. SIGURG is the signal the Go runtime already uses to preempt threads and ignores
// when there is nothing to preempt; it is repeated because a signal that arrives while the call
// is still setting up is consumed without ending it.
func interrupt(ctx context.Context, d time.Duration, tid int, stopped *atomic.Bool, done <-chan struct{}) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	case <-done:
		return
	}
	stopped.Store(true)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		unix.Tgkill(os.Getpid(), tid, unix.SIGURG)
		select {
		case <-done:
			return
		case <-tick.C:
		}
	}
}
