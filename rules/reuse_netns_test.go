package rules

import (
	"errors"
	"net"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestSynproxyPortReuse: a client that connects again from the source port of a connection the
// server just closed is served, in netfilter-only mode. The first connection leaves a
// conntrack entry in TIME_WAIT for its addresses and ports; SYNPROXY's cookie SYN-ACK to the
// second must not be taken for a packet of it, whose sequence adjustment would rewrite the
// cookie: the client's ACK would fail SYNPROXY's check and the client would hang.
func TestSynproxyPortReuse(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			inBackendNS(t, b)
			testPortReuse(t, b)
		})
	}
}

func testPortReuse(t *testing.T, b backend) {
	c, back := newRoutedLab(t)
	back.do(t, func() { serveBanner(t, 22, "backend") })
	serveBanner(t, 22, "firewall")
	serveBanner(t, 80, "firewall")
	mustApply(t, b.applier(t), mustConfig(t, "s0", tsecrConf+"synproxy input inface s0 dport 80 accept\n"))

	for i, tc := range []struct {
		name, addr, banner string
	}{
		{"ipv4 forward", "10.9.1.2:22", "backend 22"},
		{"ipv6 forward", "[fd0a::2]:22", "backend 22"},
		{"ipv4 dnat from this host's address", "10.9.0.1:2200", "backend 22"},
		{"ipv6 redirect", "[fd09::1]:2222", "firewall 22"},
		{"ipv4 accept", "10.9.0.1:80", "firewall 80"},
		{"ipv6 accept", "[fd09::1]:80", "firewall 80"},
	} {
		port := 40000 + i
		before := synproxyCookies(t)
		for round := 1; round <= 2; round++ {
			var conn net.Conn
			var err error
			c.do(t, func() { conn, err = dialFrom(port, tc.addr) })
			if err != nil {
				t.Errorf("%s, connection %d from port %d: dial: %v", tc.name, round, port, err)
				break
			}
			banner, _ := readBanner(t, conn)
			conn.Close()
			if banner != tc.banner {
				t.Errorf("%s, connection %d from port %d: got banner %q, want %q", tc.name, round, port, banner, tc.banner)
				break
			}
		}
		if n := synproxyCookies(t) - before; n != 2 {
			t.Errorf("%s: SYNPROXY validated %d cookies for 2 connections", tc.name, n)
		}
	}

	// A server on this host that answers SYNPROXY's SYN with a syncookie of its own (its SYN
	// queue full, as a local client flooding it over lo could make it; tcp_syncookies=2 makes
	// every SYN-ACK one) sends a SYN-ACK without a socket, as SYNPROXY does: it must stay
	// tracked, or SYNPROXY never sees it and the client hangs.
	if err := (ProcSys{Root: "/proc/sys"}).Set("net.ipv4.tcp_syncookies", "2"); err != nil {
		t.Fatal(err)
	}
	for _, addr := range []string{"10.9.0.1:80", "[fd09::1]:80", "10.9.0.1:2222"} {
		var conn net.Conn
		var err error
		c.do(t, func() { conn, err = net.DialTimeout("tcp", addr, ioLimit) })
		if err != nil {
			t.Errorf("%s with the server's own syncookies: dial: %v", addr, err)
			continue
		}
		if banner, _ := readBanner(t, conn); banner == "" {
			t.Errorf("%s with the server's own syncookies: no banner", addr)
		}
		conn.Close()
	}
}

// dialFrom connects to addr from the given local port, as a client reusing its port does. Until
// the client's side of the previous connection is gone (LAST_ACK, waiting for the server's ACK
// of its FIN) connect refuses the port at once, sending nothing: it is tried again.
func dialFrom(port int, addr string) (net.Conn, error) {
	deadline := time.Now().Add(ioLimit)
	for {
		conn, err := dialOnceFrom(port, addr)
		if !errors.Is(err, unix.EADDRNOTAVAIL) || time.Now().After(deadline) {
			return conn, err
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func dialOnceFrom(port int, addr string) (net.Conn, error) {
	d := net.Dialer{
		Timeout:   ioLimit,
		LocalAddr: &net.TCPAddr{Port: port},
		Control: func(_, _ string, rc syscall.RawConn) error {
			var serr error
			if err := rc.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
			}); err != nil {
				return err
			}
			return serr
		},
	}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	return conn, conn.SetDeadline(time.Now().Add(ioLimit))
}
