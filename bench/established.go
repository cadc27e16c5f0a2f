package main

// The established scenario: what xsyn costs the traffic it protects. For every segment to a
// protected service that is not a SYN, xsyn's program looks the connection up: on its default
// path (the socket handoff) in the socket table, on its SYNPROXY path in conntrack. This
// scenario measures one bulk TCP stream from the attacker's namespace (here: a client) to the
// DUT's protected port, with five things on the DUT:
//
//	none           no XDP program, no rules: the reference
//	pass           an XDP program that returns XDP_PASS, no rules: what any XDP program costs a
//	               veth (the veth then handles skbs in its XDP path, copying each one into a page)
//	synproxy       the netfilter rules alone: handshake by SYNPROXY, conntrack and its sequence
//	               number translation on every segment
//	xsyn           xsyn as deployed by default: the SYN-ACK comes from XDP, the handshake's ACK
//	               is handed to the listener, every segment is looked up in the socket table
//	xsyn-synproxy  xsyn on its SYNPROXY path: the SYN-ACK comes from XDP, SYNPROXY completes the
//	               handshake, every segment is looked up in conntrack from XDP and then by netfilter
//
// The stream is payload received per second. The clock starts when the receiver has its first
// byte, so whatever delays the start of a proxied connection is not counted (it is reported on
// its own: connect time, first byte, and when the server's first byte reached the client).

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/xsyn-project/xsyn/spec"
)

// What the DUT runs in the established scenario.
const (
	streamNone     = "none"          // no XDP program, no rules
	streamPass     = "pass"          // XDP_PASS only, no rules
	streamSynproxy = "synproxy"      // netfilter rules alone
	streamXsyn     = "xsyn"          // xsyn as deployed by default: handoff path, a socket lookup per segment
	streamXsynNF   = "xsyn-synproxy" // xsyn on the SYNPROXY path: rules, a conntrack lookup per segment
)

var streamModes = []string{streamNone, streamPass, streamSynproxy, streamXsyn, streamXsynNF}

// streamWrite is the size of the sender's writes and the receiver's reads.
const streamWrite = 256 << 10

// Limits for a stream that does not get going; none of them is part of a measurement.
const (
	streamConnectTimeout = 5 * time.Second
	streamStartTimeout   = 10 * time.Second
	streamStopTimeout    = 10 * time.Second
)

// streamQdisc goes on the client's veth for the established scenario. With a qdisc, a veth
// stops its queue while the peer's 256-slot ring is full (Linux 6.16 and later) instead of
// dropping, as a NIC with a qdisc does; without one, a stream into a slower DUT loses segments
// there all the time, and its rate then depends on how the congestion control takes the losses.
var streamQdisc = []string{"pfifo", "limit", "1000"}

// established measures one stream per (round, family, mode). The modes take turns within a
// round, so that anything else the machine does spreads over all of them.
func (r *rig) established(ctx context.Context, c config, rep *report, prog *progress) (err error) {
	// The sink drops every SYN-ACK, and the client needs xsyn's. A pass program keeps the
	// attacker's veth in NAPI mode (frames the DUT sends with XDP_TX arrive only then) and hands
	// everything to the attacker's stack.
	if err := r.atkL.AttachPass(); err != nil {
		return fmt.Errorf("replace the sink with a pass program: %w", err)
	}
	defer func() {
		if serr := r.setXDP(r.atk, atkIface, r.progs.BenchSink); serr != nil {
			err = errors.Join(err, fmt.Errorf("restore the sink: %w", serr))
		}
	}()
	if _, err := r.atk.Run("tc", append([]string{"qdisc", "replace", "dev", atkIface, "root"}, streamQdisc...)...); err != nil {
		return err
	}
	defer func() {
		if _, qerr := r.atk.Run("tc", "qdisc", "del", "dev", atkIface, "root"); qerr != nil {
			err = errors.Join(err, qerr)
		}
	}()
	rep.StreamQdisc = strings.Join(streamQdisc, " ")
	s, err := r.streamSpec(c, rep)
	if err != nil {
		return err
	}
	rep.StreamWScale = int(s.Services[0].Options.WScale)
	// No garbage collection while the streams run: see noGC.
	defer noGC()()
	prog.logf("bench: established: the DUT's stack offers window scale %d; xsyn and SYNPROXY offer %d", rep.DUTWScale, rep.StreamWScale)
	for round := 1; round <= c.rounds; round++ {
		for _, f := range c.streamFamilies {
			for _, mode := range streamModes {
				if ctx.Err() != nil {
					return nil
				}
				done := prog.run(fmt.Sprintf("established %s %s round %d", mode, f, round), c.streamDuration, nil)
				res, err := r.streamMode(ctx, c, mode, f, s)
				done()
				if err != nil {
					return fmt.Errorf("%s %s, round %d: %w", mode, f, round, err)
				}
				if ctx.Err() != nil {
					return nil // cut short: not comparable with the others
				}
				res.Round = round
				prog.logf("bench: established %-8s %s round %d: %.2f Gbit/s, DUT CPU %s, first byte after %.0f ms, %d retransmits (%d spurious)",
					mode, f, round, res.Gbps, pct(res.DUTNAPIUtil+res.ReceiverUtil), res.FirstByteMs, res.Retransmits, res.SpuriousRetransmits)
				rep.Established = append(rep.Established, res)
			}
		}
	}
	return nil
}

// streamSpec is the spec the established scenario protects the port with. SYNPROXY does not
// translate window scaling: the client scales the server's windows by the shift it got in the
// SYN-ACK (xsyn's or SYNPROXY's), so that shift has to be the one the server's own stack would
// offer. Unless -stream-wscale says otherwise, it is: a probe connection, with nothing on the
// DUT, reads the shift the DUT's stack offers.
func (r *rig) streamSpec(c config, rep *report) (spec.Spec, error) {
	ws, err := r.probeWScale()
	if err != nil {
		return spec.Spec{}, fmt.Errorf("probe the DUT's window scale: %w", err)
	}
	rep.DUTWScale = ws
	if c.streamWScale >= 0 {
		ws = c.streamWScale
	}
	return spec.Simple{Ports: []uint16{c.port}, WScale: ws}.Build()
}

// probeWScale connects to the DUT's port and returns the window scale its SYN-ACK offered.
func (r *rig) probeWScale() (int, error) {
	drainAccepted(r.accepted)
	var cli net.Conn
	if err := r.atk.Do(func() (err error) {
		cli, err = (&net.Dialer{Timeout: streamConnectTimeout}).Dial("tcp", netip.AddrPortFrom(dutAddr4.Addr(), r.port).String())
		return err
	}); err != nil {
		return 0, err
	}
	defer cli.Close()
	select {
	case srv := <-r.accepted:
		srv.Close()
	case <-time.After(streamConnectTimeout):
		return 0, fmt.Errorf("the DUT accepted no connection within %v", streamConnectTimeout)
	}
	rc, err := cli.(*net.TCPConn).SyscallConn()
	if err != nil {
		return 0, err
	}
	ws := -1
	var serr error
	if err := rc.Control(func(fd uintptr) { ws, serr = sendWScale(int(fd)) }); err != nil {
		return 0, err
	}
	return ws, serr
}

// sendWScale reads the window scale the peer offered (tcpi_snd_wscale) from TCP_INFO. x/sys's
// TCPInfo leaves the bit field out, so the first bytes of struct tcp_info are read as they are:
// tcpi_options in byte 5, tcpi_snd_wscale in the low 4 bits of byte 6.
func sendWScale(fd int) (int, error) {
	var info [8]byte
	n := uint32(len(info))
	if _, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.IPPROTO_TCP, unix.TCP_INFO,
		uintptr(unsafe.Pointer(&info[0])), uintptr(unsafe.Pointer(&n)), 0); errno != 0 {
		return 0, fmt.Errorf("getsockopt TCP_INFO: %w", errno)
	}
	if n < uint32(len(info)) {
		return 0, fmt.Errorf("getsockopt TCP_INFO: %d bytes", n)
	}
	const tcpiOptWScale = 4 // TCPI_OPT_WSCALE, linux/tcp.h
	if info[5]&tcpiOptWScale == 0 {
		return 0, errors.New("the DUT did not offer window scaling")
	}
	return int(info[6] & 0x0f), nil
}

// retransmits reads a connection's retransmitted segments so far, and how many of them the
// peer reported as duplicates (D-SACK): sent again although they had not been lost.
func retransmits(c net.Conn) (total, spurious uint32, err error) {
	rc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		return 0, 0, err
	}
	var info *unix.TCPInfo
	var ierr error
	if err := rc.Control(func(fd uintptr) { info, ierr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO) }); err != nil {
		return 0, 0, err
	}
	if ierr != nil {
		return 0, 0, fmt.Errorf("getsockopt TCP_INFO: %w", ierr)
	}
	return info.Total_retrans, info.Dsack_dups, nil
}

// drainAccepted closes a connection left from a run cut short.
func drainAccepted(ch chan net.Conn) {
	for {
		select {
		case c := <-ch:
			c.Close()
		default:
			return
		}
	}
}

func (r *rig) streamMode(ctx context.Context, c config, mode string, f family, s spec.Spec) (res streamResult, err error) {
	d, err := r.deployStream(mode, s)
	if err != nil {
		return res, err
	}
	defer func() {
		if terr := d.teardown(); terr != nil {
			err = errors.Join(err, fmt.Errorf("tear down: %w", terr))
		}
	}()
	if err := r.pinNAPI(); err != nil {
		return res, err
	}
	res, err = r.stream(ctx, d, mode, f, c.streamDuration)
	if err == nil && res.Xsyn != nil && (res.Xsyn.SynackSent == 0 || res.Xsyn.AckCookieValid == 0) {
		err = fmt.Errorf("the handshake did not go through xsyn (SYN-ACKs sent %d, valid cookies %d)", res.Xsyn.SynackSent, res.Xsyn.AckCookieValid)
	}
	return res, err
}

// deployStream sets an established-scenario mode up on the DUT.
func (r *rig) deployStream(mode string, s spec.Spec) (*deployment, error) {
	switch mode {
	case streamNone:
		return &deployment{teardown: func() error { return nil }}, nil
	case streamPass:
		if err := r.dutL.AttachPass(); err != nil {
			return nil, err
		}
		detach := func() error { return r.setXDP(r.dut, dutIface, nil) }
		p, err := r.dutXDP()
		if err != nil {
			return nil, errors.Join(err, detach())
		}
		return &deployment{prog: p, teardown: func() error { return errors.Join(p.Close(), detach()) }}, nil
	case streamSynproxy:
		return r.deploy(modeSynproxy, s)
	case streamXsyn:
		return r.deploy(modeXsyn, s)
	case streamXsynNF:
		return r.deploy(modeXsynNF, s)
	}
	return nil, fmt.Errorf("unknown established mode %q (want one of %v)", mode, streamModes)
}

// dutXDP opens the program attached to the DUT's veth, for its bpf_stats.
func (r *rig) dutXDP() (*ebpf.Program, error) {
	var id uint32
	if err := r.dut.Do(func() error {
		l, err := netlink.LinkByName(dutIface)
		if err != nil {
			return err
		}
		if x := l.Attrs().Xdp; x != nil {
			id = x.ProgId
		}
		return nil
	}); err != nil {
		return nil, err
	}
	if id == 0 {
		return nil, fmt.Errorf("no XDP program on %s", dutIface)
	}
	p, err := ebpf.NewProgramFromID(ebpf.ProgramID(id))
	if err != nil {
		return nil, fmt.Errorf("open XDP program %d of %s: %w", id, dutIface, err)
	}
	return p, nil
}

// streamEnd is one side of the stream: its thread, how much it moved, how it ended.
type streamEnd struct {
	tid   chan int
	bytes atomic.Uint64
	first chan time.Time // the receiver's first byte
	done  chan error
}

func newStreamEnd() *streamEnd {
	return &streamEnd{tid: make(chan int, 1), first: make(chan time.Time, 1), done: make(chan error, 1)}
}

// stream connects from the attacker's namespace to the DUT's protected port, sends as fast as it
// can, and measures the payload the DUT receives in dur, counted from its first byte.
func (r *rig) stream(ctx context.Context, d *deployment, mode string, f family, dur time.Duration) (streamResult, error) {
	res := streamResult{Mode: mode, Family: f.String(), ServerDataMs: -1}
	drainAccepted(r.accepted)
	dst := netip.AddrPortFrom(dutAddr4.Addr(), r.port)
	if f == 6 {
		dst = netip.AddrPortFrom(dutAddr6.Addr(), r.port)
	}
	var cli net.Conn
	dialed := time.Now()
	if err := r.atk.Do(func() (err error) {
		cli, err = (&net.Dialer{Timeout: streamConnectTimeout}).Dial("tcp", dst.String())
		return err
	}); err != nil {
		return res, fmt.Errorf("connect to %s: %w", dst, err)
	}
	connected := time.Now()
	defer cli.Close()
	res.ConnectMs = ms(connected.Sub(dialed))

	var srv net.Conn
	select {
	case srv = <-r.accepted:
	case <-time.After(streamConnectTimeout):
		return res, fmt.Errorf("the DUT accepted no connection within %v", streamConnectTimeout)
	case <-ctx.Done():
		return res, nil
	}
	defer srv.Close()
	res.AcceptMs = ms(time.Since(connected))
	if srv.RemoteAddr().String() != cli.LocalAddr().String() {
		return res, fmt.Errorf("the DUT accepted %s, not the client %s", srv.RemoteAddr(), cli.LocalAddr())
	}
	// Whatever happens, neither side waits for ever.
	deadline := time.Now().Add(dur + streamStartTimeout + streamStopTimeout)
	cli.SetDeadline(deadline)
	srv.SetDeadline(deadline)

	// One byte from the server, to see when server-to-client data gets through (SYNPROXY with
	// timestamps delays it on some kernels); it does not hold the stream up.
	if _, err := srv.Write([]byte{1}); err != nil {
		return res, fmt.Errorf("server's first byte: %w", err)
	}
	var serverData atomic.Int64
	serverData.Store(-1)
	greeted := make(chan struct{})
	go func() {
		defer close(greeted)
		if _, err := io.ReadFull(cli, make([]byte, 1)); err == nil {
			serverData.Store(int64(time.Since(connected)))
		}
	}()

	send, recv := newStreamEnd(), newStreamEnd()
	stop := make(chan struct{})
	go sendStream(cli, r.genCPU, send, stop)
	go receiveStream(srv, r.dutCPU, recv)
	senderTid, receiverTid := <-send.tid, <-recv.tid

	res, err := r.streamWindow(ctx, d, res, dur, connected, senderTid, receiverTid, send, recv)
	if err == nil {
		res.Retransmits, res.SpuriousRetransmits, err = retransmits(cli)
	}
	close(stop)
	if serr := waitStream(send, recv); serr != nil && err == nil && ctx.Err() == nil {
		err = serr
	}
	cli.Close()
	<-greeted
	if v := serverData.Load(); v >= 0 {
		res.ServerDataMs = ms(time.Duration(v))
	}
	return res, err
}

// streamWindow waits for the receiver's first byte, then samples everything, waits dur and
// samples again.
func (r *rig) streamWindow(ctx context.Context, d *deployment, res streamResult, dur time.Duration, connected time.Time, senderTid, receiverTid int, send, recv *streamEnd) (streamResult, error) {
	select {
	case t := <-recv.first:
		res.FirstByteMs = ms(t.Sub(connected))
	case err := <-recv.done:
		recv.done <- err // for waitStream
		return res, fmt.Errorf("the stream ended before its first byte: %v", err)
	case <-time.After(streamStartTimeout):
		return res, fmt.Errorf("no payload reached the DUT within %v", streamStartTimeout)
	case <-ctx.Done():
		return res, nil
	}
	a, err := r.streamSample(d, senderTid, receiverTid, recv)
	if err != nil {
		return res, streamError(err, send, recv)
	}
	t := time.NewTimer(dur)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
		return res, nil
	}
	b, err := r.streamSample(d, senderTid, receiverTid, recv)
	if err != nil {
		return res, streamError(err, send, recv)
	}
	res.fill(a, b)
	return res, nil
}

// streamError is what to report when sampling a stream failed: if one of its ends has already
// stopped, its thread is gone (a stream end's thread ends with it) and so are its CPU times, and
// what stopped it is the error that matters.
func streamError(err error, ends ...*streamEnd) error {
	for _, e := range ends {
		select {
		case eerr := <-e.done:
			e.done <- eerr // for waitStream
			if eerr == nil {
				eerr = errors.New("the stream ended")
			}
			return fmt.Errorf("%w (then: %v)", eerr, err)
		default:
		}
	}
	return err
}

// waitStream waits until both ends have stopped: the sender after its current write, the
// receiver at the sender's end of stream.
func waitStream(send, recv *streamEnd) error {
	t := time.NewTimer(streamStopTimeout)
	defer t.Stop()
	var errs []error
	for _, e := range []*streamEnd{send, recv} {
		select {
		case err := <-e.done:
			errs = append(errs, err)
		case <-t.C:
			return fmt.Errorf("the stream did not stop within %v", streamStopTimeout)
		}
	}
	return errors.Join(errs...)
}

// sendStream writes as fast as it can until stop, then ends the stream. It runs on its own
// thread on cpu (the attacker's), SCHED_FIFO below the NAPI threads like the flood generator.
func sendStream(c net.Conn, cpu int, e *streamEnd, stop <-chan struct{}) {
	// The thread is not unlocked: it ends with the goroutine instead of going back to the
	// pool with a real-time policy.
	runtime.LockOSThread()
	err := placeTask(0, cpu, prioGenerator)
	e.tid <- unix.Gettid()
	if err != nil {
		e.done <- fmt.Errorf("place sender on CPU %d: %w", cpu, err)
		return
	}
	buf := make([]byte, streamWrite)
	for {
		select {
		case <-stop:
			e.done <- c.(*net.TCPConn).CloseWrite()
			return
		default:
		}
		n, err := c.Write(buf)
		e.bytes.Add(uint64(n))
		if err != nil {
			e.done <- fmt.Errorf("send: %w", err)
			return
		}
	}
}

// receiveStream reads and discards until the end of the stream. It runs on its own thread on
// cpu (the DUT's), SCHED_FIFO below the DUT's NAPI thread: the DUT's core does all of the DUT's
// work, driver, XDP, stack and the copy to the application.
func receiveStream(c net.Conn, cpu int, e *streamEnd) {
	runtime.LockOSThread() // not unlocked, as in sendStream
	err := placeTask(0, cpu, prioGenerator)
	e.tid <- unix.Gettid()
	if err != nil {
		e.done <- fmt.Errorf("place receiver on CPU %d: %w", cpu, err)
		return
	}
	buf := make([]byte, streamWrite)
	first := true
	for {
		n, err := c.Read(buf)
		if n > 0 {
			e.bytes.Add(uint64(n))
			if first {
				first = false
				e.first <- time.Now()
			}
		}
		if errors.Is(err, io.EOF) {
			e.done <- nil
			return
		}
		if err != nil {
			e.done <- fmt.Errorf("receive: %w", err)
			return
		}
	}
}

// streamSample is the rig's counters and the stream's at one moment.
type streamSample struct {
	at          time.Time
	received    uint64
	rig         sample
	senderCPU   time.Duration
	receiverCPU time.Duration
}

func (r *rig) streamSample(d *deployment, senderTid, receiverTid int, recv *streamEnd) (streamSample, error) {
	s := streamSample{at: time.Now(), received: recv.bytes.Load()}
	var errs [3]error
	s.rig, errs[0] = r.sample(d)
	var ns uint64
	ns, errs[1] = threadRuntime(senderTid)
	s.senderCPU = time.Duration(ns)
	ns, errs[2] = threadRuntime(receiverTid)
	s.receiverCPU = time.Duration(ns)
	return s, errors.Join(errs[:]...)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
