package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"runtime"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

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
