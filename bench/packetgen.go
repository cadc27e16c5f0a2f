package main

// The packet generator: bench_gen's frames, written by Go (frameWriter) into an AF_PACKET TX ring
// on the attacker's veth and sent with one sendto per batch. With PACKET_QDISC_BYPASS the kernel
// hands each frame straight to the veth's xmit, which puts it in the DUT's ring (the DUT's veth
// has NAPI: GRO or an XDP program) or, when that ring is full, drops it and counts it in the
// attacker's tx_dropped. What differs from live frames is what the DUT gets: an skb with the
// frame in its linear part instead of an XDP frame, which a veth with an XDP program copies into
// a page first (as it does every skb it cannot write in place), so the DUT's CPU per frame is
// higher than with live frames in the modes with native XDP. The programs' own run time (XDP
// ns/pkt) is not affected.
//
// A frame that finds the DUT's ring full is lost, as a live frame is: the kernel gives it back
// (the ring slot returns to SEND_REQUEST and sendto fails with ENOBUFS), and the generator counts
// it as sent and marks it for the kernel to skip (a zero length, with PACKET_LOSS) instead of
// sending it again.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/xsyn-project/xsyn/internal/netlab"
)

// The TX ring: TPACKET_V2 slots of txFrameSize bytes, txFramesPerBlock to a page-sized block.
const (
	txFrameSize      = 256
	txBlockSize      = 4096
	txFramesPerBlock = txBlockSize / txFrameSize
	txFrames         = 8192
	// txDataOff is where a slot's data starts: TPACKET2_HDRLEN - sizeof(struct sockaddr_ll),
	// the kernel's offset for a TX ring without PACKET_TX_HAS_OFF.
	txDataOff = 32
	// vnetHdrLen is struct virtio_net_hdr, before every frame (PACKET_VNET_HDR). Its hdr_len is
	// the whole frame, so the kernel copies the frame into the skb's linear part, as a NIC's
	// driver does with a small frame, instead of attaching the ring's page to it.
	vnetHdrLen = 10
	// txSndBuf bounds the memory of the skbs in flight; far more than the DUT's ring holds.
	txSndBuf = 64 << 20
)

// packetGen is the packet generator.
type packetGen struct {
	host    *netlab.Host // the attacker
	ifindex int          // the attacker's veth
	cpu     int
	seed    uint64
	frames  atomic.Uint64
	acks    atomic.Uint64
}

func (g *packetGen) sent() (frames, acks uint64, err error) {
	return g.frames.Load(), g.acks.Load(), nil
}

// ringDropped: an skb goes into the DUT's ring from the attacker's veth_xmit, and a veth counts
// the ones that did not fit on the sending end, in the attacker's tx_dropped.
func (g *packetGen) ringDropped(_, atk netlink.LinkStatistics) uint64 { return atk.TxDropped }

func (g *packetGen) close() error { return nil }

// run floods the DUT with fl for d, or until ctx ends, and returns how long the flood lasted: from
// the first frame written to the return of the last sendto. The thread is placed as the live
// generator's (placeGenerator).
func (g *packetGen) run(ctx context.Context, fl flood, batch uint32, d time.Duration) (time.Duration, error) {
	cfg, err := genConfig(fl, batch)
	if err != nil {
		return 0, err
	}
	g.seed++
	fw := newFrameWriter(cfg, g.seed)
	var elapsed time.Duration
	err = g.host.Do(func() (err error) {
		// netlab's Do ends this thread afterwards, so its policy and affinity die with it.
		if err := placeGenerator(fl, g.cpu); err != nil {
			return err
		}
		t, err := openTXRing(g.ifindex, &g.frames, &g.acks)
		if err != nil {
			return err
		}
		defer func() { err = errors.Join(err, t.close()) }()
		var stopped atomic.Bool
		defer context.AfterFunc(ctx, func() { stopped.Store(true) })()
		elapsed, err = floodRing(t, fw, int(cfg.Len), pacer{gap: cfg.Gap, burst: cfg.Burst}, int(batch), d, &stopped)
		return err
	})
	return elapsed, err
}

// floodRing is the generator's loop: batches of batch runs, each of which, like a run of
// bench_gen, writes a frame unless the schedule says it is too early; then one sendto for the
// batch. It stops after d or when stopped is set, sends what is left, and returns the flood's
// time.
func floodRing(t *txRing, fw *frameWriter, frameLen int, p pacer, batch int, d time.Duration, stopped *atomic.Bool) (time.Duration, error) {
	start := time.Now()
	first := time.Duration(-1)
	for time.Since(start) < d && !stopped.Load() {
		for range batch {
			slot := t.free()
			if slot == nil {
				break // every slot is in flight: send what there is first
			}
			if p.gap != 0 && !p.ready(uint64(time.Since(start))) {
				continue // too early: like bench_gen's XDP_DROP, a run without a frame
			}
			ack := fw.write(slot[:frameLen])
			t.request(frameLen, ack)
			if first < 0 {
				first = time.Since(start)
			}
		}
		// The flood's end is checked inside a send too: on a DUT so swamped that its ring
		// takes a frame now and then, one send could otherwise outlast the flood, holding the
		// CPU the legit client shares with it (SCHED_FIFO), and the run never ended.
		if err := t.send(func() bool { return time.Since(start) >= d || stopped.Load() }); err != nil {
			return 0, err
		}
	}
	// What is left gets a second to go; the rest is discarded with the ring.
	flushEnd := time.Now().Add(time.Second)
	if err := t.send(func() bool { return time.Now().After(flushEnd) }); err != nil {
		return 0, err
	}
	end := time.Since(start)
	if first < 0 {
		return end, nil
	}
	return end - first, nil
}

// txRing is an AF_PACKET TX ring and the generator's bookkeeping of its slots: head is the next
// slot to write, tail the oldest one requested that the kernel has not taken yet (it takes them
// in order). The kernel side is reached through sendto and the slots' status words, so a test
// can stand in for it.
type txRing struct {
	mem     []byte
	n       int
	head    int
	tail    int
	pending int    // slots requested, from tail on, that the kernel has not taken
	ack     []bool // per slot: a forged ACK
	sendto  func() error
	closeFn func() error

	frames, acks *atomic.Uint64 // counts of frames sent, for the generator
}

// openTXRing opens an AF_PACKET socket with a TX ring on the interface ifindex (of the calling
// thread's namespace), which bypasses the interface's qdisc. The socket's protocol is 0: it
// receives nothing.
func openTXRing(ifindex int, frames, acks *atomic.Uint64) (*txRing, error) {
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("AF_PACKET socket: %w", err)
	}
	fail := func(what string, err error) (*txRing, error) {
		unix.Close(fd)
		return nil, fmt.Errorf("AF_PACKET TX ring: %s: %w", what, err)
	}
	for _, o := range []struct {
		name       string
		level, opt int
		v          int
	}{
		{"PACKET_VERSION", unix.SOL_PACKET, unix.PACKET_VERSION, unix.TPACKET_V2},
		{"PACKET_VNET_HDR", unix.SOL_PACKET, unix.PACKET_VNET_HDR, 1},
		{"PACKET_QDISC_BYPASS", unix.SOL_PACKET, unix.PACKET_QDISC_BYPASS, 1},
		{"PACKET_LOSS", unix.SOL_PACKET, unix.PACKET_LOSS, 1},
		{"SO_SNDBUFFORCE", unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, txSndBuf},
	} {
		if err := unix.SetsockoptInt(fd, o.level, o.opt, o.v); err != nil {
			return fail(o.name, err)
		}
	}
	req := unix.TpacketReq{Block_size: txBlockSize, Block_nr: txFrames / txFramesPerBlock, Frame_size: txFrameSize, Frame_nr: txFrames}
	if err := unix.SetsockoptTpacketReq(fd, unix.SOL_PACKET, unix.PACKET_TX_RING, &req); err != nil {
		return fail("PACKET_TX_RING", err)
	}
	mem, err := unix.Mmap(fd, 0, txFrames*txFrameSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return fail("mmap", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Ifindex: ifindex}); err != nil {
		unix.Munmap(mem)
		return fail("bind", err)
	}
	t := newTXRing(mem, txFrames, frames, acks)
	t.sendto = func() error {
		_, _, errno := unix.Syscall6(unix.SYS_SENDTO, uintptr(fd), 0, 0, unix.MSG_DONTWAIT, 0, 0)
		if errno != 0 {
			return errno
		}
		return nil
	}
	t.closeFn = func() error { return errors.Join(unix.Munmap(mem), unix.Close(fd)) }
	return t, nil
}

func newTXRing(mem []byte, n int, frames, acks *atomic.Uint64) *txRing {
	return &txRing{mem: mem, n: n, ack: make([]bool, n), frames: frames, acks: acks}
}

func (t *txRing) slot(i int) []byte { return t.mem[i*txFrameSize : (i+1)*txFrameSize] }

func (t *txRing) status(i int) *uint32 { return (*uint32)(unsafe.Pointer(&t.slot(i)[0])) }

// free is the data area of the next slot to write, nil while that slot is still in the kernel's
// hands (requested, or an skb made from it still in flight).
func (t *txRing) free() []byte {
	if t.pending == t.n || atomic.LoadUint32(t.status(t.head)) != unix.TP_STATUS_AVAILABLE {
		return nil
	}
	return t.slot(t.head)[txDataOff+vnetHdrLen:]
}

// request hands the slot just written (a frame of n bytes) to the kernel.
func (t *txRing) request(n int, ack bool) {
	s := t.slot(t.head)
	binary.NativeEndian.PutUint32(s[4:], uint32(vnetHdrLen+n)) // tp_len
	vnet := s[txDataOff : txDataOff+vnetHdrLen]
	clear(vnet)
	// hdr_len: copy it all. A legacy virtio header is in the machine's byte order.
	binary.NativeEndian.PutUint16(vnet[2:], uint16(n))
	t.ack[t.head] = ack
	atomic.StoreUint32(t.status(t.head), unix.TP_STATUS_SEND_REQUEST)
	t.head = (t.head + 1) % t.n
	t.pending++
}

// txStuck is how many sendto calls in a row may take no frame before the generator gives up.
const txStuck = 100000

// send makes the kernel take every slot requested: each frame is sent once, into the DUT's ring
// or, if that is full, nowhere. It returns early, frames still pending, once stop (when not nil)
// says so.
func (t *txRing) send(stop func() bool) error {
	stuck := 0
	for t.pending > 0 {
		if stop != nil && stop() {
			return nil
		}
		before := t.pending
		err := t.sendto()
		if cerr := t.collect(); cerr != nil {
			return cerr
		}
		switch {
		case err == nil, errors.Is(err, unix.EAGAIN), errors.Is(err, unix.EINTR):
			// All taken, or the kernel stopped early without losing a frame (EAGAIN: no room
			// for another skb in the socket's send buffer, which it counts against): again.
			if t.pending == before {
				if stuck++; stuck == txStuck {
					return fmt.Errorf("AF_PACKET TX ring: the kernel takes none of %d frames (%v)", t.pending, err)
				}
			} else {
				stuck = 0
			}
		case errors.Is(err, unix.ENOBUFS):
			// The frame at tail found the DUT's ring full, and the kernel gave its slot back
			// to send again. It was sent, and lost; the kernel skips a slot of length 0.
			if t.pending == 0 {
				return errors.New("AF_PACKET TX ring: ENOBUFS without a frame left")
			}
			binary.NativeEndian.PutUint32(t.slot(t.tail)[4:], 0)
			t.count()
			stuck = 0
		default:
			return fmt.Errorf("AF_PACKET TX ring: sendto: %w", err)
		}
	}
	return nil
}

// collect counts the slots the kernel took since the last call: from tail on, those no longer
// SEND_REQUEST.
func (t *txRing) collect() error {
	for t.pending > 0 {
		switch atomic.LoadUint32(t.status(t.tail)) {
		case unix.TP_STATUS_SEND_REQUEST:
			return nil
		case unix.TP_STATUS_WRONG_FORMAT:
			return fmt.Errorf("AF_PACKET TX ring: the kernel refused the frame in slot %d", t.tail)
		}
		t.count()
	}
	return nil
}

// count counts the frame at tail as sent and moves past it.
func (t *txRing) count() {
	t.frames.Add(1)
	if t.ack[t.tail] {
		t.acks.Add(1)
	}
	t.tail = (t.tail + 1) % t.n
	t.pending--
}

// close waits (a little) until no skb made from the ring is in flight, whose release writes its
// slot's status, and then unmaps the ring and closes the socket.
func (t *txRing) close() error {
	deadline := time.Now().Add(time.Second)
	for i := 0; i < t.n && time.Now().Before(deadline); {
		if atomic.LoadUint32(t.status(i)) == unix.TP_STATUS_SENDING {
			time.Sleep(time.Millisecond)
			continue
		}
		i++
	}
	if t.closeFn == nil {
		return nil
	}
	return t.closeFn()
}
