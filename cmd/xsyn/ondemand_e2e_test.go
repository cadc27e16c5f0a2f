package main

import (
	"bufio"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// On-demand protection end to end (issue 13's must-show), in two namespaces joined by a veth:
// below the threshold a real client's SYN-ACK comes from the kernel, so TCP Fast Open works; a
// spoofed flood above it switches the service to cookies and the server's stack stops seeing
// the flood; when the flood stops it switches back; and real clients connecting all along,
// across both switches, never fail.

// tcpiOptSynData is TCPI_OPT_SYN_DATA (linux/tcp.h): the SYN's data was acknowledged.
const tcpiOptSynData = 32

const (
	odE2EPort      = 8080
	odE2EThreshold = 2000 // SYNs a second; the clients make far fewer, the flood far more
)

// tfoServer listens on the DUT with plain TCP (the handoff path: no MPTCP) and TCP Fast Open,
// and answers each connection's first line with "ok LINE".
func (l *e2eLab) tfoServer(t *testing.T) {
	t.Helper()
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_FASTOPEN, 64)
		}); err != nil {
			return err
		}
		return serr
	}}
	lc.SetMultipathTCP(false)
	l.listen(t, lc, "tcp4", netip.AddrPortFrom(dut4.Addr(), odE2EPort).String(), func(c net.Conn) {
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		if err == nil {
			fmt.Fprintf(c, "ok %s", line)
		}
	})
}

// request connects from the client, sends one line and reads the answer. With tfo the line
// goes in the SYN when the client holds a Fast Open cookie for the server (TCP_FASTOPEN_CONNECT);
// synData then says whether the server accepted it there.
func (l *e2eLab) request(tfo bool) (synData bool, err error) {
	err = l.cli.Do(func() error {
		d := net.Dialer{Timeout: 3 * time.Second}
		if tfo {
			d.Control = func(_, _ string, c syscall.RawConn) error {
				var serr error
				if err := c.Control(func(fd uintptr) {
					serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_FASTOPEN_CONNECT, 1)
				}); err != nil {
					return err
				}
				return serr
			}
		}
		c, err := d.Dial("tcp4", netip.AddrPortFrom(dut4.Addr(), odE2EPort).String())
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(3 * time.Second))
		if _, err := fmt.Fprintln(c, "hello"); err != nil {
			return err
		}
		got, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			return err
		}
		if got != "ok hello\n" {
			return fmt.Errorf("answer %q", got)
		}
		raw, err := c.(*net.TCPConn).SyscallConn()
		if err != nil {
			return err
		}
		var info *unix.TCPInfo
		var ierr error
		if err := raw.Control(func(fd uintptr) { info, ierr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO) }); err != nil {
			return err
		}
		if ierr != nil {
			return ierr
		}
		synData = info.Options&tcpiOptSynData != 0
		return nil
	})
	return synData, err
}

// onDemandOf8080 is the status of the IPv4 service of the port.
func onDemandOf8080(t *testing.T, st ifaceJSON) onDemandJSON {
	t.Helper()
	for _, s := range st.Services {
		if s.Family == "ipv4" && s.Port == odE2EPort {
			if s.OnDemand == nil {
				t.Fatalf("status: service %+v has no on_demand", s)
			}
			return *s.OnDemand
		}
	}
	t.Fatalf("status: no ipv4 service on port %d", odE2EPort)
	return onDemandJSON{}
}

// waitFor polls status until cond holds, failing the test at the deadline.
func (l *e2eLab) waitFor(t *testing.T, what string, deadline time.Duration, cond func(ifaceJSON) bool) ifaceJSON {
	t.Helper()
	end := time.Now().Add(deadline)
	for {
		st := l.status(t)
		if cond(st) {
			return st
		}
		if time.Now().After(end) {
			t.Fatalf("waited %s for %s; status: %+v", deadline, what, onDemandOf8080(t, st))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stackSaw sums the DUT's kernel counters that a spoofed SYN reaching a listener moves: the
// spoofed sources have no route back, so each is a listen drop (or, with a full SYN queue, a
// cookie of the kernel's or a drop without one).
func (l *e2eLab) stackSaw(t *testing.T) uint64 {
	n := l.nstat(t)
	return n["TcpExtListenDrops"] + n["TcpExtSyncookiesSent"] + n["TcpExtTCPReqQFullDrop"]
}

// clientLoop connects again and again until stop is closed, counting successes and failures.
type clientLoop struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	errs       []string
	stop, done chan struct{}
	once       sync.Once
}

// halt stops the loop and waits for its last client.
func (c *clientLoop) halt() {
	c.once.Do(func() { close(c.stop); <-c.done })
}

func (l *e2eLab) startClients() *clientLoop {
	c := &clientLoop{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(c.done)
		for {
			select {
			case <-c.stop:
				return
			default:
			}
			if _, err := l.request(false); err != nil {
				c.failed.Add(1)
				c.mu.Lock()
				c.errs = append(c.errs, err.Error())
				c.mu.Unlock()
			} else {
				c.ok.Add(1)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	return c
}

// waitMore waits until n more clients than now have connected.
func (c *clientLoop) waitMore(t *testing.T, n int64, what string) {
	t.Helper()
	want := c.ok.Load() + n
	end := time.Now().Add(20 * time.Second)
	for c.ok.Load() < want {
		if time.Now().After(end) {
			t.Fatalf("%s: %d clients connected in 20s, want %d more (%d failed)", what, c.ok.Load(), n, c.failed.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// flood sends the spoofed SYNs of frames, in batches, until stop is closed: some 20,000 a
// second, ten times the threshold.
func (l *e2eLab) flood(t *testing.T, frames [][]byte) (stop func()) {
	t.Helper()
	s, err := l.cliL.Sender()
	if err != nil {
		t.Fatal(err)
	}
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(25 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i = (i + 500) % len(frames) {
			select {
			case <-quit:
				return
			case <-tick.C:
			}
			s.Send(frames[i:min(i+500, len(frames))])
		}
	}()
	var once sync.Once
	stop = func() { once.Do(func() { close(quit); <-done; s.Close() }) }
	t.Cleanup(stop)
	return stop
}

func TestOnDemandE2E(t *testing.T) {
	requireHandoff(t)
	l := newE2ELab(t, "xsynode", enterers["ip-netns-exec"])
	for _, h := range []string{"client", "dut"} {
		host := l.cli
		if h == "dut" {
			host = l.dut
		}
		if _, err := host.Run("sysctl", "-qw", "net.ipv4.tcp_fastopen=3"); err != nil {
			t.Fatal(err)
		}
	}
	l.tfoServer(t)
	out := l.mustXsyn(t, "attach", "d0", "--port", fmt.Sprint(odE2EPort), "--on-demand", fmt.Sprint(odE2EThreshold))
	if !strings.Contains(out, "on-demand") {
		t.Errorf("attach does not mention on-demand:\n%s", out)
	}
	st0 := l.status(t)
	if od := onDemandOf8080(t, st0); od.State != "listener" || od.Threshold != odE2EThreshold {
		t.Fatalf("after attach: %+v, want the listener answering below %d", od, odE2EThreshold)
	}

	// Quiet: the kernel answers. The first Fast Open connection gets a cookie, the second
	// sends its data in the SYN and the server takes it there.
	tfo0 := l.nstat(t)["TcpExtTCPFastOpenPassive"]
	if _, err := l.request(true); err != nil {
		t.Fatalf("first Fast Open client: %v", err)
	}
	if synData, err := l.request(true); err != nil || !synData {
		t.Fatalf("Fast Open client with a cookie: data in the SYN accepted %v, %v; want true", synData, err)
	}
	if got := l.nstat(t)["TcpExtTCPFastOpenPassive"]; got <= tfo0 {
		t.Errorf("the server accepted no Fast Open SYN (TcpExtTCPFastOpenPassive %d -> %d)", tfo0, got)
	}
	st := l.status(t)
	if d := counter(st, "ipv4", "pass__on_demand_idle") - counter(st0, "ipv4", "pass__on_demand_idle"); d < 2 {
		t.Errorf("pass__on_demand_idle +%d after two clients, want at least 2", d)
	}
	if n := counter(st, "ipv4", "synack_sent"); n != 0 {
		t.Errorf("XDP sent %d SYN-ACKs while the service was quiet", n)
	}

	clients := l.startClients()
	defer clients.halt()
	clients.waitMore(t, 5, "quiet")

	// Flood: the service switches to cookies, and the stack stops seeing the flood.
	saw0 := l.stackSaw(t)
	stopFlood := l.flood(t, l.synFlood(t, 20000, 13))
	st = l.waitFor(t, "the switch to cookies", 15*time.Second, func(s ifaceJSON) bool { return onDemandOf8080(t, s).State == "cookies" })
	if od := onDemandOf8080(t, st); od.Switches != 1 {
		t.Errorf("flooded: %d switches, want 1", od.Switches)
	}
	if saw := l.stackSaw(t); saw <= saw0 {
		t.Errorf("the stack saw none of the flood before the switch (%d -> %d): did the flood pass to the listener at all?", saw0, saw)
	}
	quietStack := false
	for end := time.Now().Add(15 * time.Second); time.Now().Before(end) && !quietStack; {
		saw1, sent1 := l.stackSaw(t), counter(l.status(t), "ipv4", "synack_sent")
		l.waitFor(t, "the flood to go on", 10*time.Second, func(s ifaceJSON) bool { return counter(s, "ipv4", "synack_sent") >= sent1+2000 })
		quietStack = l.stackSaw(t) == saw1
	}
	if !quietStack {
		t.Fatal("the DUT's stack went on seeing the flood while XDP answered it with cookies")
	}
	t.Logf("the stack saw %d flood SYNs before the switch, none while XDP answered %d with cookies",
		l.stackSaw(t)-saw0, counter(l.status(t), "ipv4", "synack_sent"))
	clients.waitMore(t, 5, "flooded")

	// The flood ends: back to the listener, with the next SYN after a quiet second.
	stopFlood()
	st = l.waitFor(t, "the switch back to the listener", 15*time.Second, func(s ifaceJSON) bool { return onDemandOf8080(t, s).State == "listener" })
	if od := onDemandOf8080(t, st); od.Switches != 2 {
		t.Errorf("after the flood: %d switches, want 2", od.Switches)
	}
	clients.waitMore(t, 5, "quiet again")
	if synData, err := l.request(true); err != nil || !synData {
		t.Errorf("Fast Open after the flood: data in the SYN accepted %v, %v; want true", synData, err)
	}

	clients.halt()
	if f := clients.failed.Load(); f != 0 {
		t.Errorf("%d of %d clients failed across the switches: %v", f, f+clients.ok.Load(), clients.errs)
	}
	t.Logf("%d clients connected across both switches", clients.ok.Load())
}
