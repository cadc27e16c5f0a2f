package main

// The legit scenario: real clients connecting to the DUT's server while a SYN flood hits the same
// port, at several flood rates, per mode. The client lives in its own namespace behind the
// attacker's, which routes it: its SYNs reach the DUT through the same veth, ring and NAPI
// thread as the flood (as through one NIC queue), and the DUT's answers come back through the
// sink's ring, which passes them to the attacker's stack to route on.
//
// The client is one thread on the generator's CPU at a real-time priority above the generator,
// driving non-blocking sockets with epoll: it starts a connection every 1/-legit-rate seconds
// for -legit-duration, and for each one records
//
//   - connect: from just before connect(2), which sends the SYN, to the socket becoming
//     writable, i.e. the SYN-ACK received and the handshake complete at the client. This is
//     the latency the targets are about, and what xsyn (or whatever answers the SYN) decides.
//   - first byte: from the same start to the server's line (the client address it saw). With
//     SYNPROXY and TCP timestamps on this kernel the server only accepts after about 1 s (see
//     the top-level README, Known issues), so this shows the stall without hiding connect.
//
// A connection that is not established within clientConnectTimeout has failed (the kernel
// retransmits a lost SYN after 1 s and 3 s, so a connection that needed one retransmission still
// counts, with its latency); one established but without its line within clientDataTimeout has
// connected but failed its first byte (that timeout leaves room for the server's second SYN-ACK
// retransmission behind SYNPROXY, 3 s after its first SYN-ACK). The flood runs until every
// connection has finished.

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xsyn-project/xsyn/spec"
)

const (
	clientConnectTimeout = 3 * time.Second
	clientDataTimeout    = 5 * time.Second
	// calibrateFor is how long the generator runs against XDP_DROP to find the rig's maximum.
	calibrateFor = time.Second
	// floodStartTimeout bounds the wait for the generator's first frame.
	floodStartTimeout = 5 * time.Second
)

// legitResult is one (mode, family, flood level) of the legit scenario.
type legitResult struct {
	Mode   string `json:"mode"`
	Family string `json:"family"`
	// Level is the flood rate in percent of the rig's maximum (100: unpaced, as fast as the
	// generator can in this mode); TargetPPS the paced rate asked for (0: none or unpaced).
	Level     int     `json:"flood_level_percent"`
	TargetPPS float64 `json:"flood_target_pps"`
	// Flood is the flood's own measurement, nil at level 0.
	Flood   *result     `json:"flood,omitempty"`
	Clients clientStats `json:"clients"`
}

// OfferedPPS is the flood's measured rate, 0 without one.
func (l legitResult) OfferedPPS() float64 {
	if l.Flood == nil {
		return 0
	}
	return l.Flood.OfferedPPS
}

// clientStats is what the legit client saw.
type clientStats struct {
	Attempted int `json:"attempted"`
	Connected int `json:"connected"`  // handshake complete within clientConnectTimeout
	FirstByte int `json:"first_byte"` // and the server's line within clientDataTimeout
	WrongAddr int `json:"wrong_client_address"`
	Refused   int `json:"refused"`   // connect failed with a RST
	TimedOut  int `json:"timed_out"` // no handshake within clientConnectTimeout
	Failed    int `json:"failed"`    // anything else
	// Latencies of the connections that got that far, from connect(2).
	ConnectMs   latency `json:"connect_ms"`
	FirstByteMs latency `json:"first_byte_ms"`
	Seconds     float64 `json:"seconds"` // from the first connection's start to the last one's end
}

// Success is the share of connections that completed their handshake.
func (c clientStats) Success() float64 {
	if c.Attempted == 0 {
		return 0
	}
	return float64(c.Connected) / float64(c.Attempted)
}

type latency struct {
	N   int     `json:"n"`
	P50 float64 `json:"p50"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

// newLatency summarises samples (milliseconds) with nearest-rank percentiles.
func newLatency(ms []float64) latency {
	if len(ms) == 0 {
		return latency{}
	}
	s := slices.Sorted(slices.Values(ms))
	rank := func(p float64) float64 { return s[max(int(math.Ceil(p/100*float64(len(s))))-1, 0)] }
	return latency{N: len(s), P50: rank(50), P99: rank(99), Max: s[len(s)-1]}
}

// legit runs the clients under every level of flood, per mode and family.
func (r *rig) legit(ctx context.Context, c config, s spec.Spec, rep *report, prog *progress) error {
	rep.RigMaxPPS = map[string]float64{}
	for _, f := range c.legitFamilies {
		if ctx.Err() != nil {
			return nil
		}
		pps, err := r.rigMax(ctx, c, f, rep, s)
		if err != nil {
			return fmt.Errorf("calibrate %s: %w", f, err)
		}
		rep.RigMaxPPS[f.String()] = pps
		prog.logf("bench: legit %s: the rig's maximum (74 B SYNs against XDP_DROP) is %s Mpps", f, mpps(pps))
	}
	for _, mode := range modesFor(scenarioLegit, c.modes) {
		for _, f := range c.legitFamilies {
			if ctx.Err() != nil {
				return nil
			}
			if err := r.legitMode(ctx, c, s, mode, f, rep, prog); err != nil {
				return fmt.Errorf("%s %s: %w", mode, f, err)
			}
		}
	}
	return nil
}

// rigMax is the generator's rate for the legit scenario's SYNs with XDP_DROP on the DUT: taken
// from this run's flood scenario when it measured it, measured for calibrateFor otherwise.
func (r *rig) rigMax(ctx context.Context, c config, f family, rep *report, s spec.Spec) (float64, error) {
	for _, res := range rep.Results {
		if res.Scenario == scenarioFlood && res.Mode == modeDrop && res.Family == f.String() && res.Shape == string(shapeLinux) && res.TargetPPS == 0 {
			return res.OfferedPPS, nil
		}
	}
	d, teardown, err := r.setUp(modeDrop, s)
	if err != nil {
		return 0, err
	}
	before, err := r.sample(d)
	if err == nil {
		var el time.Duration
		el, err = r.generate(ctx, flood{syn: synFrame(f, shapeLinux, r.atkMAC, r.dutMAC, dutAddr(f), c.port)}, c.batch, calibrateFor)
		if err == nil {
			var after sample
			after, err = r.settle(d, time.Second)
			if err == nil && el > 0 {
				return float64(after.sent-before.sent) / el.Seconds(), teardown()
			}
		}
	}
	return 0, errors.Join(err, teardown())
}

func (r *rig) legitMode(ctx context.Context, c config, s spec.Spec, mode string, f family, rep *report, prog *progress) (err error) {
	d, teardown, err := r.setUp(mode, s)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, teardown()) }()
	for _, level := range c.legitLevels {
		if ctx.Err() != nil {
			return nil
		}
		res, err := r.legitRun(ctx, c, d, mode, f, level, rep.RigMaxPPS[f.String()], prog)
		if err != nil {
			return fmt.Errorf("flood at %d%%: %w", level, err)
		}
		if ctx.Err() != nil {
			return nil // cut short
		}
		cl := res.Clients
		prog.logf("bench: legit  %-12s %s flood %3d%% (%s Mpps): %d/%d connected, connect p50 %.2f p99 %.2f max %.1f ms; first byte p50 %.0f p99 %.0f ms",
			mode, f, level, mpps(res.OfferedPPS()), cl.Connected, cl.Attempted, cl.ConnectMs.P50, cl.ConnectMs.P99, cl.ConnectMs.Max, cl.FirstByteMs.P50, cl.FirstByteMs.P99)
		rep.Legit = append(rep.Legit, res)
	}
	return nil
}

// clientPlan is what the client thread does.
type clientPlan struct {
	domain int
	dst    unix.Sockaddr
	n      int
	gap    time.Duration
	want   string // the line the server should send: the client's address
}

// legitRun runs the client once, under a flood at level percent of rigMax.
func (r *rig) legitRun(ctx context.Context, c config, d *deployment, mode string, f family, level int, rigMax float64, prog *progress) (legitResult, error) {
	res := legitResult{Mode: mode, Family: f.String(), Level: level}
	// A fresh listener per level: in the mode without protection the flood fills its SYN queue,
	// and the next level would start with a full one.
	if err := r.restartServer(); err != nil {
		return res, err
	}
	fl := flood{syn: synFrame(f, shapeLinux, r.atkMAC, r.dutMAC, dutAddr(f), c.port)}
	if level > 0 && level < 100 {
		fl.pps = rigMax * float64(level) / 100
		res.TargetPPS = fl.pps
	}
	plan := clientPlan{domain: unix.AF_INET, dst: &unix.SockaddrInet4{Addr: dutAddr4.Addr().As4(), Port: int(c.port)},
		n: max(1, int(c.legitDuration.Seconds()*float64(c.legitRate))), gap: time.Second / time.Duration(c.legitRate), want: cliAddr4.Addr().String() + "\n"}
	if f == 6 {
		plan.domain, plan.dst, plan.want = unix.AF_INET6, &unix.SockaddrInet6{Addr: dutAddr6.Addr().As16(), Port: int(c.port)}, cliAddr6.Addr().String()+"\n"
	}

	// No garbage collection while the client measures: its pauses would land in the latencies
	// (and see noGC).
	defer noGC()()

	cl, err := r.startClient(plan)
	if err != nil {
		return res, err
	}
	label := fmt.Sprintf("legit %s %s flood %d%%", mode, f, level)
	before, err := r.sample(d)
	if err != nil {
		return res, errors.Join(err, cl.abort())
	}
	gctx, stopFlood := context.WithCancel(ctx)
	defer stopFlood()
	genDone := make(chan genOut, 1)
	if level > 0 {
		// The flood's time limit is only a backstop: the flood stops when the clients are done.
		limit := c.legitDuration + clientConnectTimeout + clientDataTimeout + 10*time.Second
		go func() {
			el, err := r.generate(gctx, fl, c.batch, limit)
			genDone <- genOut{el, err}
		}()
		if err := r.waitFlood(before.sent, genDone); err != nil {
			stopFlood()
			return res, errors.Join(err, cl.abort())
		}
	}
	start := time.Now()
	done := prog.run(label, c.legitDuration, r.counts)
	stats, err := cl.release()
	stopFlood()
	done()
	elapsed := time.Since(start)
	if level > 0 {
		g := <-genDone
		if err == nil {
			err = g.err
		}
		elapsed = g.elapsed
	}
	if err != nil {
		return res, err
	}
	res.Clients = stats
	if level > 0 {
		after, err := r.settle(d, time.Second)
		if err != nil {
			return res, err
		}
		ct, err := r.conntrackCount()
		if err != nil {
			return res, err
		}
		fr := newResult(scenarioLegit, mode, f, shapeLinux, fl.frameLen(), elapsed, before, after, ct)
		fr.TargetPPS = fl.pps
		res.Flood = &fr
	}
	return res, nil
}

// genOut is how a generator run ended.
type genOut struct {
	elapsed time.Duration
	err     error
}

// waitFlood waits for the generator's first frames (or its failure).
func (r *rig) waitFlood(sentBefore uint64, genDone <-chan genOut) error {
	deadline := time.Now().Add(floodStartTimeout)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for time.Now().Before(deadline) {
		select {
		case g := <-genDone:
			if g.err != nil {
				return fmt.Errorf("the flood did not start: %w", g.err)
			}
			return errors.New("the flood ended before it started")
		case <-tick.C:
		}
		if n, err := r.sent(); err == nil && n > sentBefore {
			return nil
		}
	}
	return fmt.Errorf("no flood frame within %v", floodStartTimeout)
}

// client is the client's thread, placed and waiting for the start.
type client struct {
	start int // eventfd: 1 starts the connections, 2 ends the thread without any
	done  chan clientOutcome
}

type clientOutcome struct {
	stats clientStats
	err   error
}

// startClient starts the client's thread in its namespace, on the generator's CPU at prioClient,
// and returns once it waits for release. Its setup (thread, namespace, policy) happens before the
// flood, while ordinary threads still get the CPU.
func (r *rig) startClient(p clientPlan) (*client, error) {
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	cl := &client{start: efd, done: make(chan clientOutcome, 1)}
	ready := make(chan error, 1)
	go func() {
		var st clientStats
		err := r.cli.Do(func() error {
			if err := placeTask(0, r.genCPU, prioClient); err != nil {
				err = fmt.Errorf("place the client on CPU %d: %w", r.genCPU, err)
				ready <- err
				return err
			}
			ready <- nil
			started, err := waitStart(efd)
			if err != nil || !started {
				return err
			}
			st, err = runClient(p)
			return err
		})
		cl.done <- clientOutcome{st, err}
	}()
	if err := <-ready; err != nil {
		<-cl.done
		unix.Close(efd)
		return nil, err
	}
	return cl, nil
}

func waitStart(efd int) (bool, error) {
	var b [8]byte
	for {
		_, err := unix.Read(efd, b[:])
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return false, fmt.Errorf("client: wait for the start: %w", err)
		}
		return b[0] == 1, nil
	}
}

func (cl *client) signal(v byte) error {
	_, err := unix.Write(cl.start, []byte{v, 0, 0, 0, 0, 0, 0, 0})
	return err
}

// release starts the connections and waits for all of them.
func (cl *client) release() (clientStats, error) {
	defer unix.Close(cl.start)
	if err := cl.signal(1); err != nil {
		return clientStats{}, err
	}
	out := <-cl.done
	return out.stats, out.err
}

// abort ends the thread without a connection.
func (cl *client) abort() error {
	defer unix.Close(cl.start)
	if err := cl.signal(2); err != nil {
		return err
	}
	return (<-cl.done).err
}

// Connection states of the client.
const (
	connConnecting = iota
	connReading
	connDone
)

type clientConn struct {
	fd                    int
	state                 int
	start, connected, end time.Time
	gotLine               bool
	err                   error // why it failed, nil if it did not
}

// runClient makes p.n connections, one every p.gap, and waits for all of them. It allocates
// nothing in its loop.
func runClient(p clientPlan) (clientStats, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return clientStats{}, fmt.Errorf("client: epoll: %w", err)
	}
	defer unix.Close(epfd)
	conns := make([]clientConn, p.n)
	events := make([]unix.EpollEvent, 64)
	buf := make([]byte, 128)
	begin := time.Now()
	launched, open := 0, 0
	nextCheck := begin
	for launched < p.n || open > 0 {
		now := time.Now()
		timeout := 10 // ms, for the timeout checks
		if launched < p.n {
			due := begin.Add(time.Duration(launched) * p.gap)
			if wait := due.Sub(now); wait <= 0 {
				if launch(epfd, &conns[launched], launched, p) {
					open++
				}
				launched++
				continue
			} else {
				timeout = min(timeout, int((wait+time.Millisecond-1)/time.Millisecond))
			}
		}
		n, err := unix.EpollWait(epfd, events, timeout)
		if err != nil && !errors.Is(err, unix.EINTR) {
			return clientStats{}, fmt.Errorf("client: epoll_wait: %w", err)
		}
		t := time.Now()
		for _, ev := range events[:max(n, 0)] {
			c := &conns[ev.Fd]
			if c.state == connDone {
				continue
			}
			if step(epfd, c, int(ev.Fd), buf, p.want, t) {
				open--
			}
		}
		if !t.Before(nextCheck) {
			nextCheck = t.Add(10 * time.Millisecond)
			for i := range conns[:launched] {
				c := &conns[i]
				switch {
				case c.state == connConnecting && t.Sub(c.start) > clientConnectTimeout:
					finish(epfd, c, t, unix.ETIMEDOUT)
					open--
				case c.state == connReading && t.Sub(c.connected) > clientDataTimeout:
					finish(epfd, c, t, unix.ETIMEDOUT)
					open--
				}
			}
		}
	}
	return clientSummary(conns, time.Since(begin)), nil
}

// launch opens connection i; false if it failed at once.
func launch(epfd int, c *clientConn, i int, p clientPlan) bool {
	fd, err := unix.Socket(p.domain, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	c.start = time.Now()
	if err != nil {
		c.state, c.err, c.fd, c.end = connDone, err, -1, c.start
		return false
	}
	c.fd = fd
	err = unix.Connect(fd, p.dst)
	events := uint32(unix.EPOLLOUT)
	switch {
	case errors.Is(err, unix.EINPROGRESS):
		c.state = connConnecting
	case err == nil:
		c.state, c.connected, events = connReading, time.Now(), unix.EPOLLIN|unix.EPOLLRDHUP
	default:
		finish(-1, c, time.Now(), err)
		return false
	}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: events, Fd: int32(i)}); err != nil {
		finish(-1, c, time.Now(), err)
		return false
	}
	return true
}

// step advances connection i on an event at t; true when it is done.
func step(epfd int, c *clientConn, i int, buf []byte, want string, t time.Time) bool {
	if c.state == connConnecting {
		soerr, err := unix.GetsockoptInt(c.fd, unix.SOL_SOCKET, unix.SO_ERROR)
		if err == nil && soerr != 0 {
			err = unix.Errno(soerr)
		}
		if err != nil {
			finish(epfd, c, t, err)
			return true
		}
		c.state, c.connected = connReading, t
		if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_MOD, c.fd, &unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP, Fd: int32(i)}); err != nil {
			finish(epfd, c, t, err)
			return true
		}
		return false
	}
	n, err := unix.Read(c.fd, buf)
	switch {
	case errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR):
		return false
	case n > 0:
		c.gotLine = string(buf[:n]) == want
		finish(epfd, c, t, nil)
	case err == nil:
		finish(epfd, c, t, errors.New("closed without a line"))
	default:
		finish(epfd, c, t, err)
	}
	return true
}

// finish closes a connection with a RST (SO_LINGER 0). The server closes first, and a FIN
// would leave its side in TIME_WAIT for a minute; over a run the client's ports wrap around
// (tens of thousands of connections to one port), and a new connection whose 4-tuple met a
// TIME_WAIT socket on the DUT got its handshake but, behind SYNPROXY, often never its first
// byte. The RST ends both sides at once.
func finish(epfd int, c *clientConn, t time.Time, err error) {
	if epfd >= 0 {
		unix.EpollCtl(epfd, unix.EPOLL_CTL_DEL, c.fd, nil)
	}
	unix.SetsockoptLinger(c.fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
	unix.Close(c.fd)
	c.state, c.end, c.err = connDone, t, err
}

// firstByte says whether the connection got data from the server.
func (c *clientConn) firstByte() bool { return !c.connected.IsZero() && c.err == nil }

func clientSummary(conns []clientConn, elapsed time.Duration) clientStats {
	st := clientStats{Attempted: len(conns), Seconds: elapsed.Seconds()}
	var connect, first []float64
	for i := range conns {
		c := &conns[i]
		if !c.connected.IsZero() {
			st.Connected++
			connect = append(connect, ms(c.connected.Sub(c.start)))
		}
		switch {
		case c.firstByte():
			st.FirstByte++
			first = append(first, ms(c.end.Sub(c.start)))
			if !c.gotLine {
				st.WrongAddr++
			}
		case c.connected.IsZero() && errors.Is(c.err, unix.ECONNREFUSED):
			st.Refused++
		case c.connected.IsZero() && errors.Is(c.err, unix.ETIMEDOUT):
			st.TimedOut++
		case c.connected.IsZero():
			st.Failed++
		}
	}
	st.ConnectMs, st.FirstByteMs = newLatency(connect), newLatency(first)
	return st
}
