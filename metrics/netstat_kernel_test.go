package metrics

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"golang.org/x/sys/unix"

	"github.com/xsyn-project/xsyn/internal/netlab"
	"github.com/xsyn-project/xsyn/internal/packet"
	"github.com/xsyn-project/xsyn/internal/protect"
	"github.com/xsyn-project/xsyn/internal/testutil"
	"github.com/xsyn-project/xsyn/loader"
	"github.com/xsyn-project/xsyn/spec"
)

// kernelMetrics are the exported kernel counters: the series of each TcpExt counter, by its
// nstat name without TcpExt. Written out, not taken from tcpExtCounters, which they check.
var kernelMetrics = map[string]string{
	"SyncookiesSent":   "xsyn_kernel_syncookies_sent_total",
	"SyncookiesRecv":   "xsyn_kernel_syncookies_recv_total",
	"SyncookiesFailed": "xsyn_kernel_syncookies_failed_total",
	"ListenOverflows":  "xsyn_kernel_listen_overflows_total",
	"ListenDrops":      "xsyn_kernel_listen_drops_total",
	"TCPReqQFullDrop":  "xsyn_kernel_reqq_full_drop_total",
	"TSEcrRejected":    "xsyn_kernel_tsecr_rejected_total",
}

// The kernel's TCP counters, exported, under floods against one listener: with nothing in front
// of it they move by exactly what reaches it; with XDP, and then SYNPROXY, answering the same
// flood, they do not move at all. The listener on port 8080 never accepts and has a backlog of
// 0: one request socket fills its SYN queue (so every later SYN gets a cookie, as under a real
// flood) and one connection its accept queue.
func TestKernelCountersUnderFlood(t *testing.T) {
	l := newStackLab(t, "xsynmtf")
	l.listenNoAccept(8080)

	// Fill the SYN queue: the first SYN makes a request socket, the rest get cookies.
	l.flood("fill the SYN queue", l.frames(packet.SYN, 4, 8), packet.SYN|packet.ACK)
	syn := append(l.frames(packet.SYN, 4, 300), l.frames(packet.SYN, 6, 200)...)
	l.phase("SYN flood reaching the listener", map[string]float64{"SyncookiesSent": 500}, func() {
		l.flood("SYN flood", syn, packet.SYN|packet.ACK)
	})
	// Within 2 minutes of a cookie, the listener checks every ACK without a connection as one,
	// and resets it.
	l.phase("forged ACKs reaching the listener", map[string]float64{"SyncookiesFailed": 200}, func() {
		l.flood("forged ACKs", l.frames(packet.ACK, 4, 200), packet.RST)
	})
	// A real client's SYN gets a cookie too; its ACK opens the connection, which fills the
	// accept queue.
	l.phase("a client through the listener's cookie", map[string]float64{"SyncookiesSent": 1, "SyncookiesRecv": 1}, func() {
		l.dialAndHold(netip.AddrPortFrom(dut4.Addr(), 8080))
		l.waitKernel("SyncookiesRecv", 1)
	})
	// With the accept queue full, SYNs are dropped before any cookie.
	l.phase("SYN flood against a full accept queue", map[string]float64{"ListenOverflows": 100, "ListenDrops": 100}, func() {
		l.send(l.frames(packet.SYN, 4, 100))
		l.waitKernel("ListenOverflows", 100)
	})
	l.sysctl("net.ipv4.tcp_syncookies", "0")
	l.phase("SYN flood without cookies", map[string]float64{"TCPReqQFullDrop": 100, "ListenDrops": 100}, func() {
		l.send(l.frames(packet.SYN, 6, 100))
		l.waitKernel("TCPReqQFullDrop", 100)
	})
	l.sysctl("net.ipv4.tcp_syncookies", "1")

	// The same floods with xsyn in front: XDP answers the SYNs and drops the forged ACKs, then
	// SYNPROXY (netfilter-only mode) does.
	prot, err := protect.New()
	if err != nil {
		t.Fatal(err)
	}
	s, err := spec.Simple{Ports: []uint16{8080}, WScale: -1}.Build()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		mode                loader.Mode
		answeredBy, dropped string
	}{
		{"native", "XDP", "xsyn_ack_cookie_invalid_total"},
		{protect.ModeNetfilter, "SYNPROXY", "xsyn_netfilter_synproxy_cookie_invalid_total"},
	} {
		if err := l.srv.Do(func() error { _, err := prot.Apply("d0", s, tc.mode); return err }); err != nil {
			t.Fatal(err)
		}
		l.phase(fmt.Sprintf("SYN flood answered by %s (--mode %s)", tc.answeredBy, tc.mode), nil, func() {
			l.flood("SYN flood", syn, packet.SYN|packet.ACK)
		})
		l.phase(fmt.Sprintf("forged ACKs dropped by %s (--mode %s)", tc.answeredBy, tc.mode), nil, func() {
			before := l.sum(tc.dropped)
			l.send(l.frames(packet.ACK, 4, 200))
			l.waitFor(tc.dropped, before+200)
		})
	}
	if err := l.srv.Do(func() error { return prot.Remove("d0") }); err != nil {
		t.Error(err)
	}
}

// TSEcrRejected stays at 0 for connections through SYNPROXY with timestamps, behind XDP and in
// netfilter-only mode: xsyn strips the timestamp option of SYNPROXY's ACK to the server, whose
// echo Linux 6.15 and later would reject (a 1 s stall per connection; the rules package's
// TestSynproxyTimestampEcho covers the other actions, docs/synproxy-timestamps.md the kernel).
func TestKernelTSEcrRejectedThroughSynproxy(t *testing.T) {
	l := newStackLab(t, "xsynmts")
	if _, ok := l.kernel()["TSEcrRejected"]; !ok {
		t.Skip("kernel before 6.15: no TcpExtTSEcrRejected, and none exported")
	}
	stop, err := l.srv.ServeClientAddrTCP(8080, dut4.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	prot, err := protect.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.srv.Do(func() error { return prot.Remove("d0") }); err != nil {
			t.Error(err)
		}
	})
	// The ACK's cookie is checked by XDP, or by SYNPROXY alone; SYNPROXY opens the connection.
	for _, tc := range []struct {
		mode      loader.Mode
		checkedBy string
	}{
		{"native", "xsyn_ack_cookie_valid_total"},
		{protect.ModeNetfilter, "xsyn_netfilter_synproxy_cookie_valid_total"},
	} {
		mode := tc.mode
		for _, noTimestamps := range []bool{false, true} {
			s, err := spec.Simple{Ports: []uint16{8080}, WScale: -1, NoTimestamps: noTimestamps, Via: spec.ViaSynproxy}.Build()
			if err != nil {
				t.Fatal(err)
			}
			if err := l.srv.Do(func() error { _, err := prot.Apply("d0", s, mode); return err }); err != nil {
				t.Fatal(err)
			}
			l.phase(fmt.Sprintf("a connection through SYNPROXY, --mode %s, notimestamps %v", mode, noTimestamps), nil, func() {
				checked := l.sum(tc.checkedBy)
				start := time.Now()
				if seen, err := l.lab.Client.ClientAddrSeen("192.0.2.2:8080", 5*time.Second); err != nil {
					t.Fatalf("client through SYNPROXY: %v", err)
				} else if seen != cli4.Addr().String() {
					t.Fatalf("server saw %s, want %s", seen, cli4.Addr())
				}
				t.Logf("--mode %s, notimestamps %v: first byte after %v", mode, noTimestamps, time.Since(start).Round(time.Millisecond))
				if n := l.sum(tc.checkedBy) - checked; n != 1 {
					t.Errorf("--mode %s: %s moved by %v, want 1", mode, tc.checkedBy, n)
				}
			})
		}
	}
}

// stackLab is a client and a server namespace (d0, the addresses of kernel_test.go) with the
// exporter's collector in the server: spoofed frames from the client reach d0, and the server's
// answers to their sources are routed back to the client, where a capture sees them.
type stackLab struct {
	t    *testing.T
	lab  *netlab.Pair
	srv  *netlab.Host
	reg  *prometheus.Registry
	next int // sources used so far: every frame comes from a source of its own

	before map[string]float64 // the kernel counters as the phase running began
}

func newStackLab(t *testing.T, prefix string) *stackLab {
	t.Helper()
	testutil.RequireRoot(t, "network namespaces, XDP, netfilter")
	lab := testutil.Pair(t, prefix, "c0", []netip.Prefix{cli4, cli6}, "d0", []netip.Prefix{dut4, dut6})
	l := &stackLab{t: t, lab: lab, srv: lab.Server, reg: prometheus.NewPedanticRegistry()}
	prot, err := protect.New()
	if err != nil {
		t.Fatal(err)
	}
	l.reg.MustRegister(inNetns{l.srv, New(ProtectorSource(prot), Options{Version: "test"})})

	// The spoofed sources (below) are behind the client, as on the Internet.
	for _, cmd := range [][]string{
		{"ip", "route", "add", "198.18.0.0/15", "via", cli4.Addr().String()},
		{"ip", "-6", "route", "add", "2001:2::/48", "via", cli6.Addr().String()},
	} {
		if _, err := l.srv.Run(cmd[0], cmd[1:]...); err != nil {
			t.Fatal(err)
		}
	}
	for _, a := range []netip.Addr{cli4.Addr(), cli6.Addr()} {
		if err := lab.ServerLink.Neighbor(a, lab.ClientLink.MAC); err != nil {
			t.Fatal(err)
		}
	}
	// Request sockets outlive the test: the SYN queue stays full.
	l.sysctl("net.ipv4.tcp_synack_retries", "10")
	return l
}

func (l *stackLab) sysctl(key, value string) {
	l.t.Helper()
	if _, err := l.srv.Run("sysctl", "-qw", key+"="+value); err != nil {
		l.t.Fatal(err)
	}
}

// listenNoAccept listens on port of both families with a backlog of 0, and never accepts.
func (l *stackLab) listenNoAccept(port int) {
	l.t.Helper()
	var fd int
	err := l.srv.Do(func() (err error) {
		if fd, err = unix.Socket(unix.AF_INET6, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0); err != nil {
			return err
		}
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 0); err != nil {
			return err
		}
		if err := unix.Bind(fd, &unix.SockaddrInet6{Port: port}); err != nil {
			return err
		}
		return unix.Listen(fd, 0)
	})
	if err != nil {
		l.t.Fatalf("listen on port %d: %v", port, err)
	}
	l.t.Cleanup(func() { unix.Close(fd) })
}

// dialAndHold connects from the client and keeps the connection open until the test ends.
func (l *stackLab) dialAndHold(to netip.AddrPort) {
	l.t.Helper()
	err := l.lab.Client.Do(func() error {
		c, err := net.DialTimeout("tcp", to.String(), 5*time.Second)
		if err == nil {
			l.t.Cleanup(func() { c.Close() })
		}
		return err
	})
	if err != nil {
		l.t.Fatalf("client to %s: %v", to, err)
	}
}

// frames builds n TCP segments with the given flags to port 8080 of the server, each from a
// source address never used before in the lab, so that none meets a request socket of an
// earlier one.
func (l *stackLab) frames(flags uint8, ipVersion, n int) [][]byte {
	dst, src := mac(l.t, l.lab.ServerLink.MAC), mac(l.t, l.lab.ClientLink.MAC)
	var out [][]byte
	for range n {
		l.next++
		f := packet.Frame{Dst: dst, Src: src, TCP: &packet.TCP{SrcPort: uint16(1024 + l.next%60000), DstPort: 8080,
			Seq: uint32(l.next) * 2654435761, Ack: uint32(l.next) * 40503, Flags: flags, Window: 64240}}
		if ipVersion == 4 {
			f.IPv4 = &packet.IPv4{Src: netip.AddrFrom4([4]byte{198, 18, byte(l.next >> 8), byte(l.next)}), Dst: dut4.Addr(), TTL: 64}
		} else {
			a := [16]byte{0x20, 0x01, 0, 2, 14: byte(l.next >> 8), 15: byte(l.next)}
			f.IPv6 = &packet.IPv6{Src: netip.AddrFrom16(a), Dst: dut6.Addr(), HopLimit: 64}
		}
		out = append(out, f.Bytes())
	}
	return out
}

func (l *stackLab) send(frames [][]byte) {
	l.t.Helper()
	if _, err := l.lab.ClientLink.Send(frames); err != nil {
		l.t.Fatal(err)
	}
}

// flood sends frames in batches and waits, batch by batch, for an answer with flags to each
// source, seen on the wire at the client: by then the server has counted whatever it counts for
// them. Batches keep the frames sent and answered within the capture's socket buffer, where a
// frame that XDP sent takes a page.
func (l *stackLab) flood(what string, frames [][]byte, answer uint8) {
	l.t.Helper()
	const batch = 25
	capt, err := l.lab.ClientLink.Capture()
	if err != nil {
		l.t.Fatal(err)
	}
	defer capt.Close()
	for len(frames) > 0 {
		n := min(batch, len(frames))
		waiting := map[netip.AddrPort]bool{}
		for _, f := range frames[:n] {
			p, err := packet.Decode(f)
			if err != nil {
				l.t.Fatal(err)
			}
			waiting[source(p)] = true
		}
		l.send(frames[:n])
		for len(waiting) > 0 {
			_, err := capt.Next(5*time.Second, func(b []byte) bool {
				p, err := packet.Decode(b)
				if err != nil || p.TCP == nil || p.TCP.Flags&(packet.SYN|packet.ACK|packet.RST) != answer {
					return false
				}
				to := destination(p)
				if !waiting[to] {
					return false
				}
				delete(waiting, to)
				return true
			})
			if err != nil {
				l.t.Fatalf("%s: %d of %d sources got no answer: %v", what, len(waiting), n, err)
			}
		}
		frames = frames[n:]
	}
}

func source(p *packet.Packet) netip.AddrPort {
	if p.IPv4 != nil {
		return netip.AddrPortFrom(p.IPv4.Src, p.TCP.SrcPort)
	}
	return netip.AddrPortFrom(p.IPv6.Src, p.TCP.SrcPort)
}

func destination(p *packet.Packet) netip.AddrPort {
	if p.IPv4 != nil {
		return netip.AddrPortFrom(p.IPv4.Dst, p.TCP.DstPort)
	}
	return netip.AddrPortFrom(p.IPv6.Dst, p.TCP.DstPort)
}

// phase runs fn and checks that each exported kernel counter moved by what want says for it
// (by nstat name, without TcpExt), and every other one not at all.
func (l *stackLab) phase(name string, want map[string]float64, fn func()) {
	l.t.Helper()
	before := l.kernel()
	l.before = before
	fn()
	after := l.kernel()
	for counter, metric := range kernelMetrics {
		b, bok := before[counter]
		a, aok := after[counter]
		if !bok && !aok && counter == "TSEcrRejected" {
			continue // a kernel before 6.15
		}
		if !bok || !aok {
			l.t.Errorf("%s: %s missing (before %v, after %v)", name, metric, bok, aok)
			continue
		}
		if a-b != want[counter] {
			l.t.Errorf("%s: %s moved by %v, want %v", name, metric, a-b, want[counter])
		}
	}
}

// kernel scrapes the exporter and returns its kernel counters by nstat name, without TcpExt.
func (l *stackLab) kernel() map[string]float64 {
	l.t.Helper()
	out := map[string]float64{}
	mfs := l.gather()
	for counter, metric := range kernelMetrics {
		if v, ok := find(mfs, metric, nil); ok {
			out[counter] = v
		}
	}
	return out
}

// gather scrapes the exporter. The one error it accepts is SYNPROXY's statistics missing
// before anything loaded nf_synproxy; the kernel counters must always be there.
func (l *stackLab) gather() []*dto.MetricFamily {
	l.t.Helper()
	mfs, err := l.reg.Gather()
	var errs prometheus.MultiError
	if errors.As(err, &errs) {
		for _, e := range errs {
			if !strings.Contains(e.Error(), "read synproxy statistics") {
				l.t.Fatalf("scrape: %v", e)
			}
		}
	} else if err != nil {
		l.t.Fatalf("scrape: %v", err)
	}
	return mfs
}

// sum is the sum of every series of name.
func (l *stackLab) sum(name string) float64 {
	l.t.Helper()
	total := 0.0
	for _, mf := range l.gather() {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				total += m.GetCounter().GetValue()
			}
		}
	}
	return total
}

// waitKernel waits until the kernel counter has moved by at least delta since the phase began,
// as the exporter sees it.
func (l *stackLab) waitKernel(counter string, delta float64) {
	l.t.Helper()
	l.waitFor(kernelMetrics[counter], l.before[counter]+delta)
}

// waitFor waits until the sum of name's series reaches at least want. The kernel counts
// asynchronously to the frames being sent; gives up after 10s.
func (l *stackLab) waitFor(name string, want float64) {
	l.t.Helper()
	testutil.Eventually(l.t, 10*time.Second, name+" reaching "+fmt.Sprint(want), func() error {
		if got := l.sum(name); got < want {
			return fmt.Errorf("at %v", got)
		}
		return nil
	})
}
