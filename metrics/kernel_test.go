package metrics

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/xsyn-project/xsyn/internal/host"
	"github.com/xsyn-project/xsyn/internal/netlab"
	"github.com/xsyn-project/xsyn/internal/packet"
	"github.com/xsyn-project/xsyn/internal/protect"
	xtest "github.com/xsyn-project/xsyn/internal/testutil"
	"github.com/xsyn-project/xsyn/loader"
	"github.com/xsyn-project/xsyn/spec"
)

var (
	cli4 = netip.MustParsePrefix("192.0.2.1/24")
	dut4 = netip.MustParsePrefix("192.0.2.2/24")
	cli6 = netip.MustParsePrefix("2001:db8::1/64")
	dut6 = netip.MustParsePrefix("2001:db8::2/64")
)

// inNetns collects c inside h's network namespace. A registry calls Collect from goroutines of
// its own, which run in the test process's namespace, so calling Gather inside h is not enough.
type inNetns struct {
	h *netlab.Host
	prometheus.Collector
}

func (n inNetns) Collect(ch chan<- prometheus.Metric) {
	n.h.Do(func() error { n.Collector.Collect(ch); return nil })
}

// The collector against the real program: xsyn protects port 8080 on d0 (native XDP) and on lo
// (netfilter rules only), a known flood arrives on d0, and the metrics move by exactly what it
// holds.
func TestCollectorAgainstAttachedProgram(t *testing.T) {
	xtest.RequireRoot(t, "network namespaces, XDP, netfilter")
	lab := xtest.Pair(t, "xsynmet", "c0", []netip.Prefix{cli4, cli6}, "d0", []netip.Prefix{dut4, dut6})
	srv := lab.Server

	prot, err := protect.New()
	if err != nil {
		t.Fatal(err)
	}
	// The SYNPROXY path, whatever auto would choose: this test is about SYNPROXY's counters too.
	s, err := spec.Simple{Ports: []uint16{8080}, WScale: -1, Via: spec.ViaSynproxy}.Build()
	if err != nil {
		t.Fatal(err)
	}
	// d0 with XDP; lo with netfilter rules only, as the fallback leaves an interface.
	for iface, mode := range map[string]loader.Mode{"d0": "native", "lo": protect.ModeNetfilter} {
		if err := srv.Do(func() error { _, err := prot.Apply(iface, s, mode); return err }); err != nil {
			t.Fatal(err)
		}
		// Runs before the lab goes: the pins live in the host's bpffs, not in the namespace.
		t.Cleanup(func() {
			if err := srv.Do(func() error { return prot.Remove(iface) }); err != nil {
				t.Error(err)
			}
		})
	}
	stop, err := srv.ServeClientAddr(8080, dut4.Addr(), dut6.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)

	reg := prometheus.NewPedanticRegistry()
	col := inNetns{srv, New(ProtectorSource(prot), Options{Version: "test"})}
	reg.MustRegister(col)

	const syn4, ack4, syn6 = 500, 300, 200
	var frames [][]byte
	frames = append(frames, spoofed(t, lab, 4, 0x02, syn4)...)
	frames = append(frames, spoofed(t, lab, 4, 0x10, ack4)...)
	frames = append(frames, spoofed(t, lab, 6, 0x02, syn6)...)
	if _, err := lab.ClientLink.Send(frames); err != nil {
		t.Fatal(err)
	}
	waitCounters(t, srv, func(c loader.FamilyCounters) bool {
		return c.IPv4.SynReceived >= syn4 && c.IPv4.AckCookieInvalid >= ack4 && c.IPv6.SynReceived >= syn6
	})

	// Fresh program and namespace: every counter started at 0. Nothing else reaches the
	// protected port, so the flood is all there is.
	want := `
# HELP xsyn_syn_received_total SYNs to a protected service, whatever their verdict. Summed over CPUs.
# TYPE xsyn_syn_received_total counter
xsyn_syn_received_total{family="ipv4",iface="d0"} 500
xsyn_syn_received_total{family="ipv6",iface="d0"} 200
# HELP xsyn_synack_sent_total SYNs answered from XDP with a SYN cookie SYN-ACK. Summed over CPUs.
# TYPE xsyn_synack_sent_total counter
xsyn_synack_sent_total{family="ipv4",iface="d0"} 500
xsyn_synack_sent_total{family="ipv6",iface="d0"} 200
# HELP xsyn_ack_cookie_invalid_total ACKs to a protected service with neither a connection nor a valid cookie, dropped in XDP. Summed over CPUs.
# TYPE xsyn_ack_cookie_invalid_total counter
xsyn_ack_cookie_invalid_total{family="ipv4",iface="d0"} 300
xsyn_ack_cookie_invalid_total{family="ipv6",iface="d0"} 0
# HELP xsyn_ack_cookie_valid_total ACKs that carried a valid xsyn cookie, passed on to netfilter SYNPROXY (on the handoff path, to the TC program that hands them to the listening socket). Summed over CPUs.
# TYPE xsyn_ack_cookie_valid_total counter
xsyn_ack_cookie_valid_total{family="ipv4",iface="d0"} 0
xsyn_ack_cookie_valid_total{family="ipv6",iface="d0"} 0
# HELP xsyn_established_passed_total Packets of connections that exist (a confirmed conntrack entry, or on the handoff path a socket), passed to the kernel. Summed over CPUs.
# TYPE xsyn_established_passed_total counter
xsyn_established_passed_total{family="ipv4",iface="d0"} 0
xsyn_established_passed_total{family="ipv6",iface="d0"} 0
# HELP xsyn_handoff_assigned_total Handoff path: ACKs with a valid cookie the TC program handed to the listening socket, each a new connection without netfilter. Summed over CPUs.
# TYPE xsyn_handoff_assigned_total counter
xsyn_handoff_assigned_total{family="ipv4",iface="d0"} 0
xsyn_handoff_assigned_total{family="ipv6",iface="d0"} 0
# HELP xsyn_handoff_refused_total Handoff path: ACKs with a valid cookie the kernel refused to hand to the listening socket; the stack resets those clients. Should stay 0: usually an MPTCP listener, or tcp_sack, tcp_timestamps or tcp_window_scaling turned off after the attach. Summed over CPUs.
# TYPE xsyn_handoff_refused_total counter
xsyn_handoff_refused_total{family="ipv4",iface="d0"} 0
xsyn_handoff_refused_total{family="ipv6",iface="d0"} 0
# HELP xsyn_attached 1 for each interface xsyn protects, labelled with how: native or generic XDP (in front of netfilter SYNPROXY), or netfilter-only (the fallback without XDP).
# TYPE xsyn_attached gauge
xsyn_attached{iface="d0",mode="native"} 1
xsyn_attached{iface="lo",mode="netfilter-only"} 1
# HELP xsyn_services Services (family, destination, port) the XDP program protects on the interface, by the path their valid ACKs take: handoff (xsyn's cookie, handed to the listening socket) or synproxy (the kernel's cookie, netfilter SYNPROXY); absent in netfilter-only mode.
# TYPE xsyn_services gauge
xsyn_services{iface="d0",path="handoff"} 0
xsyn_services{iface="d0",path="synproxy"} 2
# HELP xsyn_collection_errors_total Sources (an interface, the SYNPROXY statistics, the kernel's TCP counters, the list of interfaces) that could not be read during a scrape; the scrape returns everything else.
# TYPE xsyn_collection_errors_total counter
xsyn_collection_errors_total 0
# HELP xsyn_netfilter_synproxy_cookie_valid_total ACKs whose cookie SYNPROXY accepted, opening the connection to the server, summed over CPUs.
# TYPE xsyn_netfilter_synproxy_cookie_valid_total counter
xsyn_netfilter_synproxy_cookie_valid_total 0
# HELP xsyn_netfilter_synproxy_cookie_invalid_total ACKs whose cookie SYNPROXY rejected, summed over CPUs.
# TYPE xsyn_netfilter_synproxy_cookie_invalid_total counter
xsyn_netfilter_synproxy_cookie_invalid_total 0
`
	names := []string{"xsyn_syn_received_total", "xsyn_synack_sent_total", "xsyn_ack_cookie_invalid_total",
		"xsyn_ack_cookie_valid_total", "xsyn_established_passed_total", "xsyn_handoff_assigned_total", "xsyn_handoff_refused_total",
		"xsyn_attached", "xsyn_services",
		"xsyn_collection_errors_total", "xsyn_netfilter_synproxy_cookie_valid_total", "xsyn_netfilter_synproxy_cookie_invalid_total"}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), names...); err != nil {
		t.Error(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, reason := range []string{"no_conn", "malformed", "internal"} {
		if v, ok := find(mfs, "xsyn_dropped_total", map[string]string{"iface": "d0", "family": "ipv4", "reason": reason}); !ok || v != 0 {
			t.Errorf("xsyn_dropped_total{reason=%q} = %v (found %v), want 0: forged ACKs count as ack_cookie_invalid", reason, v, ok)
		}
	}
	// The SYNPROXY path never consults a socket: a valid-looking ACK without a listener is not
	// its business.
	if v, ok := find(mfs, "xsyn_passed_total", map[string]string{"iface": "d0", "family": "ipv4", "reason": "no_listener"}); !ok || v != 0 {
		t.Errorf(`xsyn_passed_total{reason="no_listener"} = %v (found %v), want 0 on the SYNPROXY path`, v, ok)
	}

	// One real connection: XDP answers the SYN, SYNPROXY accepts the cookie. SYNPROXY's
	// statistics are this namespace's, not the test process's.
	if err := lab.Client.Do(func() error {
		c, err := net.DialTimeout("tcp", "192.0.2.2:8080", 5*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		_, err = bufio.NewReader(c).ReadString('\n')
		return err
	}); err != nil {
		t.Fatalf("client through XDP and SYNPROXY: %v", err)
	}
	waitCounters(t, srv, func(c loader.FamilyCounters) bool { return c.IPv4.AckCookieValid >= 1 })
	mfs, err = reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"xsyn_synack_sent_total", map[string]string{"iface": "d0", "family": "ipv4"}, syn4 + 1},
		{"xsyn_ack_cookie_valid_total", map[string]string{"iface": "d0", "family": "ipv4"}, 1},
		{"xsyn_handoff_assigned_total", map[string]string{"iface": "d0", "family": "ipv4"}, 0}, // SYNPROXY's, not a handoff
		{"xsyn_netfilter_synproxy_cookie_valid_total", nil, 1},
		{"xsyn_netfilter_synproxy_syn_received_total", nil, 0}, // XDP answered every SYN
	} {
		if v, ok := find(mfs, tc.name, tc.labels); !ok || v != tc.want {
			t.Errorf("after one connection: %s%v = %v (found %v), want %v", tc.name, tc.labels, v, ok, tc.want)
		}
	}

	// A firewall reload that replaces the filter table takes the SYNPROXY rules of both
	// interfaces: the gauge says so for both (lo still listed, by its raw rules), and attach
	// again puts it back to 1.
	rulesComplete := func(d0, lo int) {
		t.Helper()
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for iface, want := range map[string]int{"d0": d0, "lo": lo} {
			if v, ok := find(mfs, "xsyn_netfilter_rules_complete", map[string]string{"iface": iface}); !ok || v != float64(want) {
				t.Errorf("xsyn_netfilter_rules_complete{iface=%q} = %v (found %v), want %d", iface, v, ok, want)
			}
		}
		if _, ok := find(mfs, "xsyn_attached", map[string]string{"iface": "lo", "mode": "netfilter-only"}); !ok {
			t.Error("lo, with some of its rules left, is not listed as attached")
		}
	}
	rulesComplete(1, 1)
	if out, err := srv.Run("sh", "-c", `printf '*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n' | iptables-restore`); err != nil {
		t.Fatalf("iptables-restore: %v\n%s", err, out)
	}
	rulesComplete(0, 0)
	for iface, mode := range map[string]loader.Mode{"d0": "native", "lo": protect.ModeNetfilter} {
		if err := srv.Do(func() error { _, err := prot.Apply(iface, s, mode); return err }); err != nil {
			t.Fatal(err)
		}
	}
	rulesComplete(1, 1)

	problems, err := testutil.CollectAndLint(col)
	if err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %+v", err, problems)
	}
}

// The handoff path's counters against the real program: a connection handed to a plain TCP
// listener is one xsyn_handoff_assigned_total; after the server comes back listening with MPTCP
// (Go's default), which the kernel cannot hand connections to, the next client is refused and
// xsyn_handoff_refused_total says so: what XsynHandoffRefused alerts on.
func TestHandoffCountersAgainstAttachedProgram(t *testing.T) {
	xtest.RequireRoot(t, "network namespaces, XDP, TC")
	xtest.RequireFeature(t, loader.ProbeHandoff(), loader.ErrFeatureMissing)
	lab := xtest.Pair(t, "xsynmho", "c0", []netip.Prefix{cli4, cli6}, "d0", []netip.Prefix{dut4, dut6})
	srv := lab.Server

	// A server answering each connection with a line, on a listener with or without MPTCP.
	serve := func(mptcp bool) (stop func()) {
		t.Helper()
		var ln net.Listener
		if err := srv.Do(func() (err error) {
			var lc net.ListenConfig
			lc.SetMultipathTCP(mptcp)
			ln, err = lc.Listen(context.Background(), "tcp", netip.AddrPortFrom(dut4.Addr(), 8080).String())
			return err
		}); err != nil {
			t.Fatal(err)
		}
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				fmt.Fprintln(c, "hello")
				c.Close()
			}
		}()
		return func() { ln.Close() }
	}
	stop := serve(false)
	defer func() { stop() }()

	prot, err := protect.New()
	if err != nil {
		t.Fatal(err)
	}
	s, err := spec.Simple{Ports: []uint16{8080}, WScale: -1, Via: spec.ViaHandoff}.Build()
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Do(func() error { _, err := prot.Apply("d0", s, "native"); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Do(func() error { return prot.Remove("d0") }); err != nil {
			t.Error(err)
		}
	})
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(inNetns{srv, New(ProtectorSource(prot), Options{Version: "test"})})

	dial := func(timeout time.Duration) error {
		return lab.Client.Do(func() error {
			c, err := net.DialTimeout("tcp", netip.AddrPortFrom(dut4.Addr(), 8080).String(), timeout)
			if err != nil {
				return err
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(timeout))
			_, err = bufio.NewReader(c).ReadString('\n')
			return err
		})
	}
	expect := func(when string, want map[string]float64) {
		t.Helper()
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for name, w := range want {
			if v, ok := find(mfs, name, map[string]string{"iface": "d0", "family": "ipv4"}); !ok || v != w {
				t.Errorf("%s: %s = %v (found %v), want %v", when, name, v, ok, w)
			}
		}
		if v, ok := find(mfs, "xsyn_netfilter_rules_complete", map[string]string{"iface": "d0"}); !ok || v != 1 {
			t.Errorf("%s: xsyn_netfilter_rules_complete = %v (found %v), want 1: the handoff needs no rules", when, v, ok)
		}
	}

	if err := dial(5 * time.Second); err != nil {
		t.Fatalf("client through the handoff: %v", err)
	}
	waitCounters(t, srv, func(c loader.FamilyCounters) bool { return c.IPv4.HandoffAssigned >= 1 })
	expect("after one connection", map[string]float64{
		"xsyn_ack_cookie_valid_total": 1, "xsyn_handoff_assigned_total": 1, "xsyn_handoff_refused_total": 0})

	stop()
	stop = serve(true)
	var mptcp []host.Listener
	if err := srv.Do(func() (err error) { mptcp, err = host.MPTCPListeners(); return err }); err != nil || len(mptcp) == 0 {
		t.Skipf("this kernel lists no MPTCP listener (%v): MPTCP off?", err)
	}
	if err := dial(2 * time.Second); err == nil {
		t.Skip("this kernel hands connections to an MPTCP listener: nothing to refuse")
	} else {
		t.Logf("client to the MPTCP listener: %v", err)
	}
	waitCounters(t, srv, func(c loader.FamilyCounters) bool { return c.IPv4.HandoffRefused >= 1 })
	expect("after the server came back with MPTCP", map[string]float64{
		"xsyn_ack_cookie_valid_total": 2, "xsyn_handoff_assigned_total": 1, "xsyn_handoff_refused_total": 1})
}

// spoofed builds n TCP segments with the given flags to port 8080 of the server, from random
// sources of the given IP version.
func spoofed(t *testing.T, lab *netlab.Pair, ipVersion int, flags uint8, n int) [][]byte {
	t.Helper()
	dst, src := mac(t, lab.ServerLink.MAC), mac(t, lab.ClientLink.MAC)
	rng := rand.New(rand.NewPCG(uint64(ipVersion), uint64(flags)))
	var out [][]byte
	for range n {
		f := packet.Frame{Dst: dst, Src: src,
			TCP: &packet.TCP{SrcPort: uint16(1024 + rng.IntN(60000)), DstPort: 8080, Seq: rng.Uint32(), Ack: rng.Uint32(), Flags: flags, Window: 64240}}
		if ipVersion == 4 {
			f.IPv4 = &packet.IPv4{Src: netip.AddrFrom4([4]byte{198, 18, byte(rng.IntN(256)), byte(rng.IntN(256))}), Dst: dut4.Addr(), TTL: 64}
		} else {
			a := [16]byte{0x20, 0x01, 0, 2}
			for i := 6; i < 16; i++ {
				a[i] = byte(rng.IntN(256))
			}
			f.IPv6 = &packet.IPv6{Src: netip.AddrFrom16(a), Dst: dut6.Addr(), HopLimit: 64}
		}
		out = append(out, f.Bytes())
	}
	return out
}

func mac(t *testing.T, s string) packet.MAC {
	t.Helper()
	m, err := packet.ParseMAC(s)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// waitCounters polls d0's XDP counters inside h until cond holds: the program counts on the
// receiving CPU, asynchronously to Send returning. Gives up after 10s.
func waitCounters(t *testing.T, h *netlab.Host, cond func(loader.FamilyCounters) bool) {
	t.Helper()
	xtest.Eventually(t, 10*time.Second, "the counters reaching the expected state", func() error {
		var c loader.FamilyCounters
		err := h.Do(func() error {
			a, err := loader.Open("d0", true, loader.Options{})
			if err != nil {
				return err
			}
			defer a.Close()
			c, err = a.Counters()
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if !cond(c) {
			return fmt.Errorf("at %+v", c)
		}
		return nil
	})
}
