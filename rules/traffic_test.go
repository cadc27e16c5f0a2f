package rules

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/xsyn-project/xsyn/spec"
)

// trafficConf protects services of the server namespace with every local action.
const trafficConf = `synproxy input inface s0 dport 80 accept
synproxy input inface s0 dport 2222 redirect to 22
synproxy input inface s0 dport 8443 dnat to :443
synproxy input inface s0 dport 23 reject
synproxy input inface s0 dport 24 action TRAP
`

// ioLimit bounds every dial and read, so that a broken rule fails the test instead of hanging
// it. It is no measure of speed.
const ioLimit = 10 * time.Second

// TestNetfilterTraffic dials, from a client namespace, the services of a server namespace (the
// test's own) protected by the rules, through a veth pair: each statement's action decides what
// the client gets, and SYNPROXY must have validated every handshake.
func TestNetfilterTraffic(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			inBackendNS(t, b)
			testTraffic(t, b)
		})
	}
}

// clientNS is a second network namespace the test's locked thread can visit.
type clientNS struct {
	srv, cli netns.NsHandle
}

// do runs f with the thread in the client namespace: sockets f creates and processes it starts
// belong to that namespace.
func (c clientNS) do(t *testing.T, f func()) {
	t.Helper()
	if err := netns.Set(c.cli); err != nil {
		t.Fatalf("enter the client namespace: %v", err)
	}
	defer func() {
		if err := netns.Set(c.srv); err != nil {
			panic(fmt.Sprintf("return to the server namespace: %v", err)) // the thread is unusable
		}
	}()
	f()
}

// newClientNS makes a namespace linked to the server's (the current one) by a veth pair:
// s0 10.9.0.1/24 fd09::1/64 here, c0 10.9.0.2/24 fd09::2/64 there.
func newClientNS(t *testing.T) clientNS {
	t.Helper()
	return linkedNS(t, [2]string{"s0", "c0"}, [2]string{"10.9.0.1/24", "fd09::1/64"}, [2]string{"10.9.0.2/24", "fd09::2/64"})
}

// linkedNS makes a namespace linked to the current one by a veth pair: dev[0] with the
// addresses here (IPv4, IPv6), dev[1] with there in the new namespace.
func linkedNS(t *testing.T, dev, here, there [2]string) clientNS {
	t.Helper()
	srv, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	cli, err := netns.New() // and the thread is in it
	if err != nil {
		t.Fatal(err)
	}
	if err := netns.Set(srv); err != nil {
		t.Fatal(err)
	}
	c := clientNS{srv: srv, cli: cli}
	t.Cleanup(func() { cli.Close(); srv.Close() })

	run(t, "ip", "link", "add", dev[0], "type", "veth", "peer", "name", dev[1])
	peer, err := netlink.LinkByName(dev[1])
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetNsFd(peer, int(cli)); err != nil {
		t.Fatalf("move %s to the new namespace: %v", dev[1], err)
	}
	setup := func(dev, v4, v6 string) {
		run(t, "ip", "link", "set", "lo", "up")
		run(t, "ip", "addr", "add", v4, "dev", dev)
		run(t, "ip", "addr", "add", v6, "dev", dev, "nodad") // usable at once
		run(t, "ip", "link", "set", dev, "up")
	}
	setup(dev[0], here[0], here[1])
	c.do(t, func() { setup(dev[1], there[0], there[1]) })
	return c
}

// line connects from the client namespace to addr (from the address from, unless empty), within
// limit, and returns the first line the server says, without its newline.
func (c clientNS) line(t *testing.T, from, addr string, limit time.Duration) (string, error) {
	t.Helper()
	d := net.Dialer{Timeout: limit}
	if from != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(from)}
	}
	var conn net.Conn
	var err error
	c.do(t, func() { conn, err = d.Dial("tcp", addr) })
	if err != nil {
		return "", err
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(ioLimit)); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	return strings.TrimSpace(line), err
}

// serve answers every connection to port with "hello PORT" on both families, and counts them.
func serve(t *testing.T, port int, accepted *atomic.Int32) {
	t.Helper()
	listenBoth(t, port, func(c net.Conn) {
		accepted.Add(1)
		fmt.Fprintf(c, "hello %d\n", port)
	})
}

// listenBoth listens on port of every address of both families in the current namespace, and
// hands each connection to handle, one after another, closing it afterwards.
func listenBoth(t *testing.T, port int, handle func(net.Conn)) {
	t.Helper()
	for _, network := range []string{"tcp4", "tcp6"} {
		l, err := net.Listen(network, ":"+strconv.Itoa(port))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				handle(c)
				c.Close()
			}
		}()
	}
}

// synproxyCookies sums the valid cookies of the namespace's /proc/net/stat/synproxy over
// CPUs.
func synproxyCookies(t *testing.T) int {
	t.Helper()
	f, err := os.Open("/proc/thread-self/net/stat/synproxy") // /proc/net is the main thread's
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	col, sum := -1, 0
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if col < 0 {
			for i, name := range fields {
				if name == "cookie_valid" {
					col = i
				}
			}
			if col < 0 {
				t.Fatalf("/proc/net/stat/synproxy has no cookie_valid column: %q", sc.Text())
			}
			continue
		}
		n, err := strconv.ParseUint(fields[col], 16, 64)
		if err != nil {
			t.Fatal(err)
		}
		sum += int(n)
	}
	return sum
}

// ruleCount is how many packets the rules of chain (filter table) with target have matched.
func ruleCount(t *testing.T, b backend, f spec.Family, chain, target string) int {
	t.Helper()
	n := 0
	for _, l := range strings.Split(run(t, b.bin(f), "-L", chain, "-v", "-x", "-n"), "\n") {
		if fields := strings.Fields(l); len(fields) > 2 && fields[2] == target {
			c, err := strconv.Atoi(fields[0])
			if err != nil {
				t.Fatalf("%s -L %s: %q", b.bin(f), chain, l)
			}
			n += c
		}
	}
	return n
}

func testTraffic(t *testing.T, b backend) {
	c := newClientNS(t)
	accepted := map[int]*atomic.Int32{}
	for _, port := range []int{80, 22, 443, 23, 24} {
		accepted[port] = &atomic.Int32{}
		serve(t, port, accepted[port])
	}
	for _, f := range families {
		run(t, b.bin(f), "-N", "TRAP")
		run(t, b.bin(f), "-A", "TRAP", "-j", "ACCEPT")
	}
	a := b.applier(t)
	mustApply(t, a, mustConfig(t, "s0", trafficConf))
	before := synproxyCookies(t)

	dial := func(addr string) (string, error) { return c.line(t, "", addr, ioLimit) }
	served := 0 // connections that reach a server
	for _, f := range families {
		host := map[spec.Family]string{spec.IPv4: "10.9.0.1", spec.IPv6: "fd09::1"}[f]
		for _, tc := range []struct {
			port int
			want string
		}{
			{80, "hello 80"},
			{2222, "hello 22"}, // redirect
			{8443, "hello 443"},
			{24, "hello 24"}, // the user chain accepts
		} {
			addr := net.JoinHostPort(host, strconv.Itoa(tc.port))
			got, err := dial(addr)
			served++
			if err != nil || got != tc.want {
				t.Errorf("%s: got %q, %v; want %q", addr, got, err, tc.want)
			}
		}

		// Reject: the client's connection is reset, and the server never sees it.
		addr := net.JoinHostPort(host, "23")
		if got, err := dial(addr); !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("%s: got %q, %v; want the connection reset", addr, got, err)
		}
	}
	if n := accepted[23].Load(); n != 0 {
		t.Errorf("the server accepted %d rejected connections", n)
	}
	if n := synproxyCookies(t) - before; n < served {
		t.Errorf("SYNPROXY validated %d cookies for %d served connections: the rules let some pass without it", n, served)
	}
	for _, f := range families {
		if n := ruleCount(t, b, f, "XSYN-ORP-s0", "DROP"); n != 0 {
			t.Errorf("%s: %d orphan SYNs dropped", f, n)
		}
	}
}
