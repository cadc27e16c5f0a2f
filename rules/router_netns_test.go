package rules

import (
	"net"
	"net/netip"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/xsyn-project/xsyn/spec"
)

// routerConf protects the router's own port 80, with no dst: a statement for this host.
const routerConf = "synproxy input inface s0 dport 80 accept\n"

// TestNetfilterRouter: on a router, an input statement without dst untracks and proxies only
// the SYNs for the router's own addresses. A client's SYN to the same port of a host behind the
// router is forwarded and tracked as before, so that a stateful FORWARD chain (NEW,
// ESTABLISHED) lets the connection through and conntrack holds it.
func TestNetfilterRouter(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			inBackendNS(t, b)
			testRouter(t, b)
		})
	}
}

// newPeerNS links a new namespace to the current one by a veth pair, here (in the current
// namespace) and there (in the new one), with the addresses given; the new namespace routes
// everything through the current one's addresses.
func newPeerNS(t *testing.T, here, there string, hereAddrs, thereAddrs []string) clientNS {
	t.Helper()
	cur, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	peer, err := netns.New()
	if err != nil {
		t.Fatal(err)
	}
	if err := netns.Set(cur); err != nil {
		t.Fatal(err)
	}
	c := clientNS{srv: cur, cli: peer}
	t.Cleanup(func() { peer.Close(); cur.Close() })
	run(t, "ip", "link", "add", here, "type", "veth", "peer", "name", there)
	l, err := netlink.LinkByName(there)
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetNsFd(l, int(peer)); err != nil {
		t.Fatalf("move %s to its namespace: %v", there, err)
	}
	setup := func(dev string, addrs []string) {
		run(t, "ip", "link", "set", "lo", "up")
		for _, a := range addrs {
			args := []string{"addr", "add", a, "dev", dev}
			if netip.MustParsePrefix(a).Addr().Is6() {
				args = append(args, "nodad")
			}
			run(t, "ip", args...)
		}
		run(t, "ip", "link", "set", dev, "up")
	}
	setup(here, hereAddrs)
	c.do(t, func() {
		setup(there, thereAddrs)
		for _, a := range hereAddrs {
			gw := netip.MustParsePrefix(a).Addr()
			if gw.Is6() {
				run(t, "ip", "-6", "route", "add", "default", "via", gw.String())
			} else {
				run(t, "ip", "route", "add", "default", "via", gw.String())
			}
		}
	})
	return c
}

func testRouter(t *testing.T, b backend) {
	cli := newPeerNS(t, "s0", "c0", []string{"10.9.0.1/24", "fd09::1/64"}, []string{"10.9.0.2/24", "fd09::2/64"})
	srv := newPeerNS(t, "r1", "b0", []string{"10.8.0.1/24", "fd08::1/64"}, []string{"10.8.0.2/24", "fd08::2/64"})
	for _, k := range []string{"net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"} {
		if err := (ProcSys{Root: "/proc/sys"}).Set(k, "1"); err != nil {
			t.Fatal(err)
		}
	}
	// A stateful FORWARD: new and established connections pass, the rest (INVALID, UNTRACKED)
	// does not.
	for _, f := range families {
		run(t, b.bin(f), "-P", "FORWARD", "DROP")
		run(t, b.bin(f), "-A", "FORWARD", "-m", "conntrack", "--ctstate", "NEW,RELATED,ESTABLISHED", "-j", "ACCEPT")
	}
	var onRouter, behind atomic.Int32
	serve(t, 80, &onRouter)
	srv.do(t, func() { serve(t, 80, &behind) })

	a := b.applier(t)
	mustApply(t, a, mustConfig(t, "s0", routerConf))
	cookies := synproxyCookies(t)

	dial := func(addr string) (string, error) { return cli.line(t, "", addr, ioLimit) }
	for _, f := range families {
		router, host := "10.9.0.1", "10.8.0.2"
		if f == spec.IPv6 {
			router, host = "fd09::1", "fd08::2"
		}
		// Through the router to the host behind it: forwarded, tracked, served.
		addr := net.JoinHostPort(host, "80")
		if got, err := dial(addr); err != nil || got != "hello 80" {
			t.Errorf("%s through the router: got %q, %v; want hello 80 from the host behind", addr, got, err)
		}
		if !tracked(t, f, host, 80) {
			t.Errorf("%s: the router's conntrack has no entry for the forwarded connection: its SYN was untracked", addr)
		}
		// To the router itself: proxied.
		before := synproxyCookies(t)
		addr = net.JoinHostPort(router, "80")
		if got, err := dial(addr); err != nil || got != "hello 80" {
			t.Errorf("%s on the router: got %q, %v; want hello 80", addr, got, err)
		}
		if n := synproxyCookies(t) - before; n != 1 {
			t.Errorf("%s: SYNPROXY validated %d cookies for a connection to the router, want 1", addr, n)
		}
	}
	if n, m := behind.Load(), onRouter.Load(); n != 2 || m != 2 {
		t.Errorf("served %d connections behind the router and %d on it, want 2 and 2", n, m)
	}
	if n := synproxyCookies(t) - cookies; n != 2 {
		t.Errorf("SYNPROXY validated %d cookies, want 2 (the connections to the router only)", n)
	}
}

// tracked reports whether the namespace's conntrack table holds a connection of family f to
// host:port.
func tracked(t *testing.T, f spec.Family, host string, port uint16) bool {
	t.Helper()
	fam := netlink.InetFamily(netlink.FAMILY_V4)
	if f == spec.IPv6 {
		fam = netlink.FAMILY_V6
	}
	flows, err := netlink.ConntrackTableList(netlink.ConntrackTable, fam)
	if err != nil {
		t.Fatalf("list conntrack: %v", err)
	}
	want := net.ParseIP(host)
	for _, fl := range flows {
		if fl.Forward.Protocol == 6 && fl.Forward.DstIP.Equal(want) && fl.Forward.DstPort == port {
			return true
		}
	}
	t.Logf("conntrack %s: %d flows, none to %s", f, len(flows), net.JoinHostPort(host, strconv.Itoa(int(port))))
	return false
}
