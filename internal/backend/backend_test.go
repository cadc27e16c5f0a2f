package backend

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xsyn-project/xsyn/internal/netlab"
	"github.com/xsyn-project/xsyn/internal/testutil"
	"github.com/xsyn-project/xsyn/spec"
)

var (
	clientAddrs = []netip.Prefix{netip.MustParsePrefix("192.0.2.1/24"), netip.MustParsePrefix("2001:db8::1/64")}
	serverAddrs = []netip.Prefix{netip.MustParsePrefix("192.0.2.2/24"), netip.MustParsePrefix("2001:db8::2/64")}
)

// lab builds a client and a server namespace joined by one veth, with the given MTU on each
// end. Everything the tests send stays inside these two namespaces.
func lab(t *testing.T, prefix string, clientMTU, serverMTU int) *netlab.Pair {
	t.Helper()
	testutil.RequireRoot(t, "network namespaces")
	p := testutil.Pair(t, prefix, "bkc", clientAddrs, "bks", serverAddrs)
	for _, l := range []struct {
		link *netlab.Link
		mtu  int
	}{{p.ClientLink, clientMTU}, {p.ServerLink, serverMTU}} {
		if _, err := l.link.Host.Run("ip", "link", "set", "dev", l.link.Name, "mtu", strconv.Itoa(l.mtu)); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// sysctl sets net.* sysctls, which are per namespace, in h.
func sysctl(t *testing.T, h *netlab.Host, kv map[string]string) {
	t.Helper()
	for k, v := range kv {
		if _, err := h.Run("sysctl", "-w", k+"="+v); err != nil {
			t.Fatal(err)
		}
	}
}

// listen starts a server on addr (port 0: any) in h. Each connection it accepts is sent on the
// returned channel once the client has closed it: the read returns what the close did.
func listen(t *testing.T, h *netlab.Host, addr netip.Addr) (netip.AddrPort, <-chan error) {
	t.Helper()
	var ln net.Listener
	if err := h.Do(func() (err error) {
		ln, err = net.Listen("tcp", netip.AddrPortFrom(addr, 0).String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	closed := make(chan error, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				// A hang guard only: the probe closes at once.
				c.SetReadDeadline(time.Now().Add(time.Minute))
				_, err := c.Read(make([]byte, 1))
				closed <- err
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr).AddrPort(), closed
}

func probe(t *testing.T, h *netlab.Host, ctx context.Context, addr netip.AddrPort) (Offer, error) {
	t.Helper()
	var o Offer
	err := h.Do(func() (err error) {
		o, err = Probe(ctx, addr)
		return err
	})
	return o, err
}

// probeUnprivileged probes as a caller without CAP_NET_ADMIN, which gets the computed MSS.
// Capabilities belong to a thread: the one Do runs on drops the capability and ends with fn.
func probeUnprivileged(t *testing.T, h *netlab.Host, addr netip.AddrPort) Offer {
	t.Helper()
	var o Offer
	err := h.Do(func() error {
		hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
		var data [2]unix.CapUserData
		if err := unix.Capget(&hdr, &data[0]); err != nil {
			return fmt.Errorf("capget: %w", err)
		}
		data[0].Effective &^= 1 << unix.CAP_NET_ADMIN
		if err := unix.Capset(&hdr, &data[0]); err != nil {
			return fmt.Errorf("drop CAP_NET_ADMIN: %w", err)
		}
		var err error
		o, err = Probe(context.Background(), addr)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func hostRmemMax(t *testing.T) int {
	t.Helper()
	// net.core.rmem_max is not per namespace: read, never written, by these tests.
	b, err := os.ReadFile("/proc/sys/net/core/rmem_max")
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// The probe reads every option a server in another namespace offers, behind a 1400-byte link,
// with its stack set to values that differ from Linux's defaults.
func TestProbeReadsServerOffer(t *testing.T) {
	p := lab(t, "xbkoffer", 1400, 1400)
	// Our stack asks for ECN only with tcp_ecn=1 (the default, 2, only answers).
	sysctl(t, p.Client, map[string]string{"net.ipv4.tcp_ecn": "1"})
	rmemMax := hostRmemMax(t)

	for _, tc := range []struct {
		name   string
		server map[string]string
		want   Offer // Addr and MSS filled in per family
		tsOpt  int   // timestamp option bytes the used MSS leaves room for
	}{{
		name: "no SACK, large buffers",
		server: map[string]string{"net.ipv4.tcp_sack": "0", "net.ipv4.tcp_timestamps": "1", "net.ipv4.tcp_window_scaling": "1",
			"net.ipv4.tcp_ecn": "2", "net.ipv4.tcp_rmem": "4096 131072 134217728"},
		want: Offer{WScale: spec.WScaleForBuffer(max(134217728, rmemMax)), WScaleOK: true, Timestamps: true, ECN: true},
	}, {
		name: "no timestamps, no ECN, small buffers",
		server: map[string]string{"net.ipv4.tcp_sack": "1", "net.ipv4.tcp_timestamps": "0", "net.ipv4.tcp_window_scaling": "1",
			"net.ipv4.tcp_ecn": "0", "net.ipv4.tcp_rmem": "4096 131072 1048576"},
		want: Offer{WScale: spec.WScaleForBuffer(max(1048576, rmemMax)), WScaleOK: true, SACK: true},
	}, {
		name: "no window scaling",
		server: map[string]string{"net.ipv4.tcp_sack": "1", "net.ipv4.tcp_timestamps": "1", "net.ipv4.tcp_window_scaling": "0",
			"net.ipv4.tcp_ecn": "1", "net.ipv4.tcp_rmem": "4096 131072 134217728"},
		want: Offer{SACK: true, Timestamps: true, ECN: true},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			sysctl(t, p.Server, tc.server)
			for _, srv := range serverAddrs {
				addr, closed := listen(t, p.Server, srv.Addr())
				want := tc.want
				want.Addr = addr
				want.MSS = 1400 - 40 // IPv4 + TCP headers
				if addr.Addr().Is6() {
					want.MSS = 1400 - 60
				}
				got, err := probe(t, p.Client, context.Background(), addr)
				if err != nil {
					t.Fatal(err)
				}
				if got != want {
					t.Errorf("Probe(%s) =\n\t%+v, want\n\t%+v", addr, got, want)
				}
				if err := <-closed; err != io.EOF {
					t.Errorf("the server read %v after the probe closed; want EOF (a FIN)", err)
				}
				// With equal MTUs on both ends, the MSS computed without repair mode is exact too.
				if got := probeUnprivileged(t, p.Client, addr); got != want {
					t.Errorf("Probe(%s) without CAP_NET_ADMIN =\n\t%+v, want\n\t%+v", addr, got, want)
				}
				<-closed
				if t.Failed() {
					return
				}
			}
		})
	}
}

// Our own route bounds the MSS the connection uses, but not the one the probe reports.
func TestProbeMSSAboveOurRoute(t *testing.T) {
	p := lab(t, "xbkmss", 1400, 1500)
	for _, srv := range serverAddrs {
		addr, closed := listen(t, p.Server, srv.Addr())
		hdr := 40
		if addr.Addr().Is6() {
			hdr = 60
		}
		got, err := probe(t, p.Client, context.Background(), addr)
		if err != nil {
			t.Fatal(err)
		}
		<-closed
		if int(got.MSS) != 1500-hdr {
			t.Errorf("Probe(%s).MSS = %d; want the server's %d, not our route's %d", addr, got.MSS, 1500-hdr, 1400-hdr)
		}
		// Without repair mode, the MSS in use is all there is to read.
		if got := probeUnprivileged(t, p.Client, addr); int(got.MSS) != 1400-hdr {
			t.Errorf("Probe(%s).MSS without CAP_NET_ADMIN = %d; want %d, bounded by our route", addr, got.MSS, 1400-hdr)
		}
		<-closed
	}
}

// A probe that stays on this host goes over lo: its MSS is lo's, and Apply keeps ours.
func TestProbeLoopback(t *testing.T) {
	p := lab(t, "xbklo", 1400, 1400)
	addrs := []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.IPv6Loopback()}
	for _, a := range serverAddrs {
		addrs = append(addrs, a.Addr()) // our own address: routed through lo as well
	}
	for _, a := range addrs {
		addr, closed := listen(t, p.Server, a)
		got, err := probe(t, p.Server, context.Background(), addr)
		if err != nil {
			t.Fatal(err)
		}
		<-closed
		if !got.Loopback || got.MSS <= 1400 {
			t.Errorf("Probe(%s) = %+v; want Loopback with lo's MSS", addr, got)
		}
		opts := spec.DefaultOptions(spec.IPv4)
		if a := got.Apply(opts); a.MSS != opts.MSS {
			t.Errorf("Apply of a loopback probe changed the MSS from %d to %d", opts.MSS, a.MSS)
		}
		for _, m := range got.Mismatches(opts) {
			if strings.HasPrefix(m, "mss") {
				t.Errorf("Mismatches of a loopback probe: %q", m)
			}
		}
	}
}

func TestProbeNotListening(t *testing.T) {
	p := lab(t, "xbkrefuse", 1400, 1400)
	for _, srv := range serverAddrs {
		addr := netip.AddrPortFrom(srv.Addr(), 9)
		_, err := probe(t, p.Client, context.Background(), addr)
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("Probe(%s) with nothing listening: %v; want ECONNREFUSED", addr, err)
		}
		want := "probe backend " + addr.String() + ": connect: connection refused: is the server listening?"
		if err.Error() != want {
			t.Errorf("error %q; want %q", err, want)
		}
	}
}

// A server whose namespace drops the SYN never answers: the probe gives up when ctx ends.
func TestProbeTimeout(t *testing.T) {
	p := lab(t, "xbkdrop", 1400, 1400)
	for _, cmd := range []string{"iptables", "ip6tables"} {
		if _, err := p.Server.Run(cmd, "-A", "INPUT", "-p", "tcp", "--dport", "9", "-j", "DROP"); err != nil {
			t.Fatal(err)
		}
	}
	for _, srv := range serverAddrs {
		addr := netip.AddrPortFrom(srv.Addr(), 9)
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		_, err := probe(t, p.Client, ctx, addr)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Probe(%s) of a blackholed server: %v; want the context's deadline", addr, err)
		}
		want := "probe backend " + addr.String() + ": connect: context deadline exceeded: no answer, is the address reachable and not filtered?"
		if err.Error() != want {
			t.Errorf("error %q; want %q", err, want)
		}
	}
}

func TestIsLoopback(t *testing.T) {
	for _, tc := range []struct {
		local, remote string
		want          bool
	}{
		{"127.0.0.1", "127.0.0.1", true},
		{"127.0.0.1", "127.0.0.53", true},
		{"::1", "::1", true},
		{"::ffff:127.0.0.1", "::ffff:127.0.0.1", true},
		{"192.0.2.2", "192.0.2.2", true},
		{"::ffff:192.0.2.2", "192.0.2.2", true},
		{"2001:db8::2", "2001:db8::2", true},
		{"192.0.2.1", "192.0.2.2", false},
		{"2001:db8::1", "2001:db8::2", false},
	} {
		if got := isLoopback(netip.MustParseAddr(tc.local), netip.MustParseAddr(tc.remote)); got != tc.want {
			t.Errorf("isLoopback(%s, %s) = %v, want %v", tc.local, tc.remote, got, tc.want)
		}
	}
}
