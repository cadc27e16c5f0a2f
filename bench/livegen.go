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

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/xsyn-project/xsyn/internal/netlab"
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

// liveGen runs bench_gen with BPF_PROG_RUN in live-frame mode "on" the attacker's veth: the
// context's ingress ifindex names it, and XDP_TX from BPF_PROG_RUN becomes a redirect out of
// that interface, i.e. into the DUT's veth ring.
type liveGen struct {
	progs   *benchprogsObjects
	host    *netlab.Host // the attacker
	ifindex int          // the attacker's veth
	cpu     int
}

// liveCall is one BPF_PROG_RUN call of an XDP program in live-frame mode on the attacker's veth.
type liveCall struct {
	attr      progRunAttr
	frame, md []byte // what attr points to
}

func newLiveCall(prog int, frame []byte, ifindex int, repeat, batch uint32) *liveCall {
	// data_end must equal the frame's length.
	md, _ := binary.Append(nil, binary.NativeEndian, xdpMD{DataEnd: uint32(len(frame)), IngressIfindex: uint32(ifindex)})
	return &liveCall{frame: frame, md: md, attr: progRunAttr{
		progFD:     uint32(prog),
		dataSizeIn: uint32(len(frame)),
		dataIn:     uint64(uintptr(unsafe.Pointer(&frame[0]))),
		repeat:     repeat,
		ctxSizeIn:  uint32(len(md)),
		ctxIn:      uint64(uintptr(unsafe.Pointer(&md[0]))),
		flags:      unix.BPF_F_TEST_XDP_LIVE_FRAMES,
		batchSize:  batch,
	}}
}

// do makes the call and returns its errno (0: none).
func (c *liveCall) do() unix.Errno {
	_, _, errno := unix.Syscall(unix.SYS_BPF, unix.BPF_PROG_RUN, uintptr(unsafe.Pointer(&c.attr)), unsafe.Sizeof(c.attr))
	runtime.KeepAlive(c)
	return errno
}

// probeLive tries live frames once in the attacker's namespace: one run of bench_drop (the frame
// goes nowhere) on the attacker's veth.
func probeLive(progs *benchprogsObjects, host *netlab.Host, ifindex int) error {
	return host.Do(func() error {
		frame := make([]byte, 64)
		binary.BigEndian.PutUint16(frame[12:], 0x0800)
		if errno := newLiveCall(progs.BenchDrop.FD(), frame, ifindex, 1, 1).do(); errno != 0 {
			return fmt.Errorf("BPF_PROG_RUN with BPF_F_TEST_XDP_LIVE_FRAMES: %w", errno)
		}
		return nil
	})
}

// run floods the DUT with fl for d, or until ctx ends, and returns how long the flood lasted
// (floodTime).
//
// The calling thread is pinned to the generator's CPU (BPF_PROG_RUN's own cpu field is not
// supported for XDP) and runs SCHED_FIFO below the sink, so only the sink (and the legit
// client) preempt it; a paced generator runs as an ordinary task instead (placePaced).
//
// The whole run is one BPF_PROG_RUN call with the largest repeat count, ended by a signal: every
// call swaps the program into the kernel's XDP dispatcher and out again, two synchronize_rcu()
// that took 10-20 ms each here, so chunked calls would leave gaps in the flood. The syscall is
// made directly because cilium/ebpf's Program.Run restarts the whole run when it returns EINTR.
func (g *liveGen) run(ctx context.Context, fl flood, batch uint32, d time.Duration) (time.Duration, error) {
	cfg, err := genConfig(fl, batch)
	if err != nil {
		return 0, err
	}
	if err := g.progs.BenchGenConfig.Put(uint32(0), &cfg); err != nil {
		return 0, fmt.Errorf("configure generator: %w", err)
	}
	if err := g.progs.BenchGenState.Put(uint32(0), &benchprogsGenState{}); err != nil {
		return 0, fmt.Errorf("reset the generator's schedule: %w", err)
	}
	frame := cfg.Frame[:cfg.Len]
	var elapsed time.Duration
	err = g.host.Do(func() error {
		// netlab's Do ends this thread afterwards, so its policy and affinity die with it.
		if err := placeGenerator(fl, g.cpu); err != nil {
			return err
		}
		var stopped atomic.Bool
		done := make(chan struct{})
		defer close(done)
		go interrupt(ctx, d, unix.Gettid(), &stopped, done)
		call := newLiveCall(g.progs.BenchGen.FD(), frame, g.ifindex, math.MaxUint32, batch)
		start := time.Now()
		for !stopped.Load() {
			// EINTR is the stop signal, or a stray signal: the loop condition tells which. A
			// return without error means 2^32-1 runs (frames sent or, paced, skipped); go on.
			if errno := call.do(); errno != 0 && errno != unix.EINTR {
				return fmt.Errorf("run generator (BPF_PROG_RUN, live frames): %w", errno)
			}
		}
		elapsed = time.Since(start)
		return nil
	})
	if err != nil {
		return elapsed, err
	}
	var st benchprogsGenState
	if err := g.progs.BenchGenState.Lookup(uint32(0), &st); err != nil {
		return elapsed, fmt.Errorf("read the generator's clock: %w", err)
	}
	return floodTime(st, elapsed), nil
}

// sent reads bench_gen's per-CPU counters.
func (g *liveGen) sent() (frames, acks uint64, err error) {
	var gen []benchprogsGenCounters
	if err := g.progs.BenchGenCounters.Lookup(uint32(0), &gen); err != nil {
		return 0, 0, err
	}
	for _, c := range gen {
		frames += c.Sent
		acks += c.Acks
	}
	return frames, acks, nil
}

// ringDropped: a live frame goes into the DUT's ring by ndo_xdp_xmit, and a veth counts the
// frames that did not fit on the receiving end, in the DUT's rx_dropped.
func (g *liveGen) ringDropped(dut, _ netlink.LinkStatistics) uint64 { return dut.RxDropped }

func (g *liveGen) close() error { return nil }

// floodTime is how long the flood of a run lasted: by the generator's own clock, its frames
// times their average gap; the wall-clock time of the whole call for a run too short to tell.
func floodTime(st benchprogsGenState, wall time.Duration) time.Duration {
	if st.Stamped == 0 || st.LastNs <= st.FirstNs {
		return wall
	}
	return time.Duration(float64(st.LastNs-st.FirstNs) * float64(st.Sent) / float64(st.Stamped))
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
