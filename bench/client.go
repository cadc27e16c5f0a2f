package main

// The legit scenario's client (legit.go): its thread, its connections, and what they came to.

import (
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

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
