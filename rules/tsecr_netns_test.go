package rules

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// tsecrConf sends clients through SYNPROXY, with timestamps, to a server that speaks first: on
// another host (the backend namespace) by forwarding and by DNAT from this host's address, and
// on this host by redirect.
const tsecrConf = `synproxy4 forward inface s0 dst 10.9.1.2 dport 22 accept
synproxy6 forward inface s0 dst fd0a::2 dport 22 accept
synproxy4 forward inface s0 dst 10.9.0.1 dport 2200 dnat to 10.9.1.2:22
synproxy6 forward inface s0 dst fd09::1 dport 2200 dnat to [fd0a::2]:22
synproxy input inface s0 dport 2222 redirect to 22
`

// TestSynproxyTimestampEcho: SYNPROXY's own ACK to the server must not carry the timestamp echo
// the kernel double-shifts (docs/synproxy-timestamps.md), which Linux 6.15 and later reject,
// so that the server's banner is not held back until it retransmits its SYN-ACK. Each client
// gets the banner, no server counts a rejected echo (TcpExtTSEcrRejected), the handshake ACK the
// server receives has no timestamp option, and the connection still has timestamps at both
// ends.
func TestSynproxyTimestampEcho(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			inBackendNS(t, b)
			testTimestampEcho(t, b)
		})
	}
}

func testTimestampEcho(t *testing.T, b backend) {
	c, back := newRoutedLab(t)
	var backendTS, localTS chan bool
	back.do(t, func() { backendTS = serveBanner(t, 22, "backend") })
	localTS = serveBanner(t, 22, "firewall")
	mustApply(t, b.applier(t), mustConfig(t, "s0", tsecrConf))

	rejected := func() (fw, be int) {
		fw = tcpExtCounter(t, "TSEcrRejected")
		back.do(t, func() { be = tcpExtCounter(t, "TSEcrRejected") })
		return fw, be
	}
	for _, tc := range []struct {
		name, addr, banner string
		capture            bool // the server is in the backend namespace: capture what it receives
	}{
		{"ipv4 forward", "10.9.1.2:22", "backend 22", true},
		{"ipv6 forward", "[fd0a::2]:22", "backend 22", true},
		{"ipv4 dnat from this host's address", "10.9.0.1:2200", "backend 22", true},
		{"ipv6 dnat from this host's address", "[fd09::1]:2200", "backend 22", true},
		{"ipv4 redirect", "10.9.0.1:2222", "firewall 22", false},
		{"ipv6 redirect", "[fd09::1]:2222", "firewall 22", false},
	} {
		fw0, be0 := rejected()
		var capt *l3Capture
		if tc.capture {
			back.do(t, func() { capt = newL3Capture(t, "b1") })
		}
		var conn net.Conn
		var err error
		c.do(t, func() { conn, err = net.DialTimeout("tcp", tc.addr, ioLimit) })
		if err != nil {
			t.Errorf("%s: dial: %v", tc.name, err)
			continue
		}
		banner, clientTS := readBanner(t, conn)
		if banner != tc.banner {
			t.Errorf("%s: got banner %q, want %q", tc.name, banner, tc.banner)
		}
		serverTS := localTS
		if tc.capture {
			serverTS = backendTS
		}
		var serverOn bool
		select {
		case serverOn = <-serverTS:
		case <-time.After(ioLimit):
		}
		if !clientTS || !serverOn {
			t.Errorf("%s: timestamps on at the client %v, at the server %v; want both: the connection lost them", tc.name, clientTS, serverOn)
		}
		if fw1, be1 := rejected(); fw1 != fw0 || be1 != be0 {
			t.Errorf("%s: TcpExtTSEcrRejected moved by %d here, %d in the backend: the server rejected SYNPROXY's timestamp echo", tc.name, fw1-fw0, be1-be0)
		}
		if capt != nil {
			_, port, _ := net.SplitHostPort(conn.LocalAddr().String())
			sport, _ := strconv.Atoi(port)
			if opts, err := capt.handshakeACK(uint16(sport)); err != nil {
				t.Errorf("%s: %v", tc.name, err)
			} else if hasTCPOption(opts, 8) {
				t.Errorf("%s: SYNPROXY's ACK reached the server with a timestamp option (% x)", tc.name, opts)
			}
		}
		conn.Close()
	}
}

// newBackendNS makes a namespace routed through the test's (the current) one by a veth pair:
// b0 10.9.1.1/24 fd0a::1/64 here, b1 10.9.1.2/24 fd0a::2/64 there, its default route via b0.
func newBackendNS(t *testing.T) clientNS {
	t.Helper()
	n := linkedNS(t, [2]string{"b0", "b1"}, [2]string{"10.9.1.1/24", "fd0a::1/64"}, [2]string{"10.9.1.2/24", "fd0a::2/64"})
	n.do(t, func() {
		run(t, "ip", "route", "add", "default", "via", "10.9.1.1")
		run(t, "ip", "-6", "route", "add", "default", "via", "fd0a::1")
	})
	return n
}

// newRoutedLab is a client namespace and a backend namespace on either side of the current
// one, which routes between them.
func newRoutedLab(t *testing.T) (cli, back clientNS) {
	t.Helper()
	cli, back = newClientNS(t), newBackendNS(t)
	for _, cmd := range [][]string{{"ip", "route", "add", "10.9.1.0/24", "via", "10.9.0.1"}, {"ip", "-6", "route", "add", "fd0a::/64", "via", "fd09::1"}} {
		cli.do(t, func() { run(t, cmd[0], cmd[1:]...) })
	}
	for _, k := range []string{"net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"} {
		if err := (ProcSys{Root: "/proc/sys"}).Set(k, "1"); err != nil {
			t.Fatal(err)
		}
	}
	return cli, back
}

// serveBanner listens on port, both families, in the current namespace, and greets every
// connection first with "NAME PORT", as SSH or SMTP servers do. For each connection it sends on
// the returned channel whether the connection has timestamps (TCP_INFO).
func serveBanner(t *testing.T, port int, name string) chan bool {
	t.Helper()
	ts := make(chan bool, 16)
	listenBoth(t, port, func(c net.Conn) {
		fmt.Fprintf(c, "%s %d\n", name, port)
		ts <- timestampsOn(c)
	})
	return ts
}

// readBanner reads the server's first line and reports whether the connection has timestamps.
func readBanner(t *testing.T, c net.Conn) (string, bool) {
	t.Helper()
	if err := c.SetDeadline(time.Now().Add(ioLimit)); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Errorf("read the banner from %s: %v", c.RemoteAddr(), err)
	}
	return strings.TrimSpace(line), timestampsOn(c)
}

// tcpiOptTimestamps is TCPI_OPT_TIMESTAMPS of linux/tcp.h.
const tcpiOptTimestamps = 1

// timestampsOn reports whether TCP_INFO of the connection says it uses timestamps.
func timestampsOn(c net.Conn) bool {
	rc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		return false
	}
	var on bool
	_ = rc.Control(func(fd uintptr) {
		if info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO); err == nil {
			on = info.Options&tcpiOptTimestamps != 0
		}
	})
	return on
}

// tcpExtCounter reads one TcpExt counter of the thread's network namespace.
func tcpExtCounter(t *testing.T, name string) int {
	t.Helper()
	b, err := os.ReadFile("/proc/thread-self/net/netstat")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	for i := 0; i+1 < len(lines); i += 2 {
		names, values := strings.Fields(lines[i]), strings.Fields(lines[i+1])
		if len(names) == 0 || names[0] != "TcpExt:" {
			continue
		}
		for j, n := range names {
			if n == name && j < len(values) {
				v, err := strconv.Atoi(values[j])
				if err != nil {
					t.Fatal(err)
				}
				return v
			}
		}
	}
	t.Skipf("kernel without TcpExt%s (before Linux 6.15): it accepts any echo", name)
	return 0
}

// l3Capture reads the IP packets arriving on an interface (AF_PACKET, SOCK_DGRAM).
type l3Capture struct {
	fd int
}

func newL3Capture(t *testing.T, dev string) *l3Capture {
	t.Helper()
	ifi, err := net.InterfaceByName(dev)
	if err != nil {
		t.Fatal(err)
	}
	proto := int(binary.BigEndian.Uint16(binary.NativeEndian.AppendUint16(nil, unix.ETH_P_ALL)))
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: uint16(proto), Ifindex: ifi.Index}); err != nil {
		t.Fatal(err)
	}
	return &l3Capture{fd: fd}
}

// handshakeACK returns the TCP options of the first segment carrying only ACK from the client's
// port sport: SYNPROXY's ACK completing the server's handshake.
func (c *l3Capture) handshakeACK(sport uint16) ([]byte, error) {
	deadline := time.Now().Add(ioLimit)
	buf := make([]byte, 65536)
	for time.Now().Before(deadline) {
		tv := unix.NsecToTimeval(time.Until(deadline).Nanoseconds())
		if err := unix.SetsockoptTimeval(c.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			return nil, err
		}
		n, from, err := unix.Recvfrom(c.fd, buf, 0)
		if err == syscall.EAGAIN || err == syscall.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
			continue
		}
		tcp := tcpSegment(buf[:n])
		if len(tcp) < 20 || binary.BigEndian.Uint16(tcp) != sport || tcp[13] != 0x10 {
			continue
		}
		off := int(tcp[12]>>4) * 4
		if off < 20 || off > len(tcp) {
			return nil, fmt.Errorf("malformed TCP header in % x", tcp)
		}
		return tcp[20:off], nil
	}
	return nil, fmt.Errorf("no ACK from client port %d reached the server", sport)
}

// tcpSegment is the TCP header and payload of an IPv4 or IPv6 packet (without extension
// headers), or nil.
func tcpSegment(p []byte) []byte {
	switch {
	case len(p) >= 20 && p[0]>>4 == 4 && p[9] == unix.IPPROTO_TCP:
		return p[int(p[0]&0xf)*4:]
	case len(p) >= 40 && p[0]>>4 == 6 && p[6] == unix.IPPROTO_TCP:
		return p[40:]
	}
	return nil
}

// hasTCPOption reports whether the options hold one of the kind.
func hasTCPOption(opts []byte, kind byte) bool {
	for i := 0; i < len(opts); {
		switch opts[i] {
		case 0:
			return false
		case 1:
			i++
			continue
		case kind:
			return true
		}
		if i+1 >= len(opts) || opts[i+1] < 2 {
			return false
		}
		i += int(opts[i+1])
	}
	return false
}
