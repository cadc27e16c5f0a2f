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

// generate floods the DUT with frame for d, or until ctx ends, and returns how long it ran.
//
// The generator runs in live-frame mode "on" the attacker's veth: the context's ingress ifindex
// names it, and XDP_TX from BPF_PROG_RUN becomes a redirect out of that interface, i.e. to the
// DUT. The calling thread is pinned to genCPU (BPF_PROG_RUN's own cpu field is not supported
// for XDP) and runs SCHED_FIFO below the sink, so only the sink and the DUT preempt it.
//
// The whole run is one BPF_PROG_RUN call with the largest repeat count, ended by a signal: every
// call swaps the program into the kernel's XDP dispatcher and out again, two synchronize_rcu()
// that took 10-20 ms each here, so chunked calls would leave gaps in the flood. The syscall is
// made directly because cilium/ebpf's Program.Run restarts the whole run when it returns EINTR.
func (r *rig) generate(ctx context.Context, frame []byte, batch uint32, d time.Duration) (time.Duration, error) {
	cfg := benchprogsGenConfig{Len: uint32(len(frame))}
	copy(cfg.Frame[:], frame)
	if binary.BigEndian.Uint16(frame[12:]) == 0x86dd {
		cfg.Ipv6 = 1
	}
	if err := r.progs.BenchGenConfig.Put(uint32(0), &cfg); err != nil {
		return 0, fmt.Errorf("configure generator: %w", err)
	}
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
		if err := placeTask(0, r.genCPU, prioGenerator); err != nil {
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
			// return without error means 2^32-1 frames went out; go on.
			if errno != 0 && errno != unix.EINTR {
				return fmt.Errorf("run generator (BPF_PROG_RUN, live frames): %w", errno)
			}
		}
		elapsed = time.Since(start)
		return nil
	})
	runtime.KeepAlive(frame)
	runtime.KeepAlive(md)
	return elapsed, err
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
