package protect

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/xsyn-project/xsyn/internal/host"
	"github.com/xsyn-project/xsyn/internal/netlab"
	"github.com/xsyn-project/xsyn/internal/testutil"
	"github.com/xsyn-project/xsyn/loader"
	"github.com/xsyn-project/xsyn/spec"
)

// The socket-handoff path end to end: a server-speaks-first server (an SSH-like banner) on the
// firewall host of the action lab, protected by zero-netfilter xsyn, real clients, real floods.

const bannerPort = 2222

// bannerServer writes a banner as soon as it accepts, as sshd, SMTP or MySQL do, and keeps the
// TCP_INFO of every accepted connection and the address it came from.
type bannerServer struct {
	ln    net.Listener
	mu    sync.Mutex
	infos []acceptedConn
}

type acceptedConn struct {
	remote netip.Addr
	info   *unix.TCPInfo
}

// serveBanner listens on every address of both families, as sshd does, with plain TCP (Go
// listens with MPTCP by default, which the handoff cannot serve: TestHandoffMPTCPListener), or
// with MPTCP when mptcp.
func serveBanner(t *testing.T, h *netlab.Host, port int, mptcp bool) *bannerServer {
	t.Helper()
	s := &bannerServer{}
	if err := h.Do(func() (err error) {
		var lc net.ListenConfig
		lc.SetMultipathTCP(mptcp)
		s.ln, err = lc.Listen(context.Background(), "tcp", fmt.Sprintf("[::]:%d", port))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.ln.Close() })
	go func() {
		for {
			c, err := s.ln.Accept()
			if err != nil {
				return
			}
			go s.handle(c)
		}
	}()
	return s
}

func (s *bannerServer) handle(c net.Conn) {
	defer c.Close()
	info, _ := tcpInfo(c)
	remote := c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap()
	s.mu.Lock()
	s.infos = append(s.infos, acceptedConn{remote, info})
	s.mu.Unlock()
	c.Write([]byte("SSH-2.0-xsyn-test\r\n"))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	io.Copy(io.Discard, c) // until the client closes
}

func (s *bannerServer) accepted() []acceptedConn {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.infos)
}

func tcpInfo(c net.Conn) (*unix.TCPInfo, error) {
	raw, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		return nil, err
	}
	var info *unix.TCPInfo
	var ierr error
	err = raw.Control(func(fd uintptr) { info, ierr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO) })
	return info, errors.Join(err, ierr)
}

// banner dials from h (from the address src when valid), reads the banner and returns how long
// it took from the start of the dial, and the client's TCP_INFO.
func banner(h *netlab.Host, src netip.Addr, to netip.AddrPort) (time.Duration, *unix.TCPInfo, error) {
	var took time.Duration
	var info *unix.TCPInfo
	err := h.Do(func() error {
		d := net.Dialer{Timeout: 3 * time.Second}
		if src.IsValid() {
			d.LocalAddr = &net.TCPAddr{IP: src.AsSlice()}
		}
		start := time.Now()
		c, err := d.Dial("tcp", to.String())
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(3 * time.Second))
		buf := make([]byte, 64)
		n, err := io.ReadAtLeast(c, buf, len("SSH-2.0-"))
		if err != nil {
			return fmt.Errorf("read the banner: %w", err)
		}
		took = time.Since(start)
		if !strings.HasPrefix(string(buf[:n]), "SSH-2.0-xsyn-test") {
			return fmt.Errorf("banner %q", buf[:n])
		}
		info, err = tcpInfo(c)
		return err
	})
	return took, info, err
}

func handoffOrSkip(t *testing.T) {
	t.Helper()
	testutil.RequireFeature(t, loader.ProbeHandoff(), loader.ErrFeatureMissing)
}

// handoffLab is the action lab with the firewall protected on the handoff path.
func handoffLab(t *testing.T, fam spec.Family, mode loader.Mode) (*actionLab, *bannerServer, netip.AddrPort) {
	t.Helper()
	l := newActionLab(t, fam, false)
	handoffOrSkip(t)
	srv := serveBanner(t, l.fw, bannerPort, false)
	s := l.config(t, fmt.Sprintf("synproxy%d input inface f0 dport %d path handoff accept\n", famNum(fam), bannerPort))
	res := l.apply(t, s, mode)
	if res.Spec.Statements[0].Path != spec.PathHandoff || len(res.Warnings) != 0 {
		t.Fatalf("applied %+v, warnings %q; want the handoff path and no warning", res.Spec.Statements, res.Warnings)
	}
	return l, srv, netip.AddrPortFrom(l.net.fw.Addr(), bannerPort)
}

// TestHandoff: every banner arrives at once (no 1-second stall), under a spoofed SYN flood, with
// no netfilter rule and no sysctl of xsyn's; the accepted sockets carry the options both ends
// agreed on; the kernel never rejects a timestamp echo.
func TestHandoff(t *testing.T) {
	for _, fam := range families {
		for _, m := range []struct {
			mode loader.Mode
			want string
		}{{"native", "native"}, {"generic", "generic"}} {
			t.Run(fmt.Sprintf("%s-%s", fam, m.mode), func(t *testing.T) { testHandoff(t, fam, m.mode, m.want) })
		}
	}
}

func testHandoff(t *testing.T, fam spec.Family, mode loader.Mode, wantMode string) {
	l, srv, to := handoffLab(t, fam, mode)
	if st := l.status(t); st.Mode != wantMode || st.Rules {
		t.Fatalf("status %+v; want %s XDP and no netfilter rules", st, wantMode)
	}
	for _, cmd := range [][]string{{l.iptablesSave}, {"nft", "list", "ruleset"}} {
		if out, err := l.fw.Run(cmd[0], cmd[1:]...); err != nil || strings.Contains(out, "XSYN") || strings.Contains(out, "SYNPROXY") {
			t.Errorf("%s after a handoff-only attach (%v):\n%s", cmd[0], err, out)
		}
	}
	if out, err := l.fw.Run("sysctl", "-n", "net.netfilter.nf_conntrack_tcp_loose"); err == nil && strings.TrimSpace(out) != "1" {
		t.Errorf("nf_conntrack_tcp_loose = %s; the handoff path changes no sysctl", out)
	}
	rejected := tcpExt(t, l.fw, "TSEcrRejected")

	// A spoofed SYN flood in the background while real clients connect one after another.
	syns, _ := l.floodFrames(t, to, 2000, 7)
	stop := make(chan struct{})
	var flooded sync.WaitGroup
	flooded.Add(1)
	go func() {
		defer flooded.Done()
		// Bursts the size of the veth's ring, a breath between them: a flood, not a link
		// saturated to the point of losing the real clients' ACKs (a lost third ACK strands a
		// server-speaks-first client under any SYN cookie, kernel's or xsyn's).
		for {
			for i := 0; i < len(syns); i += 200 {
				select {
				case <-stop:
					return
				default:
				}
				l.cliL.Send(syns[i:min(i+200, len(syns))])
				time.Sleep(200 * time.Microsecond)
			}
		}
	}()
	const clients = 50
	var took []time.Duration
	for i := range clients {
		d, info, err := banner(l.cli, netip.Addr{}, to)
		if err != nil {
			close(stop)
			flooded.Wait()
			t.Fatalf("client %d: %v", i, err)
		}
		took = append(took, d)
		checkAgreed(t, fmt.Sprintf("client %d", i), info, true)
	}
	close(stop)
	flooded.Wait()

	sort.Slice(took, func(i, j int) bool { return took[i] < took[j] })
	t.Logf("%s %s: first byte of %d banners under a SYN flood: p50 %v, p99 %v, max %v", fam, mode, clients,
		took[clients/2], took[clients*99/100], took[clients-1])
	if n := tcpExt(t, l.fw, "TSEcrRejected") - rejected; n != 0 {
		t.Errorf("TcpExtTSEcrRejected moved by %d: the server refused timestamp echoes", n)
	}
	c := l.xdp(t)
	if c.HandoffAssigned < clients || c.HandoffRefused != 0 || c.SynackSent < c.HandoffAssigned {
		t.Errorf("counters %+v; want >= %d handoffs, none refused", c, clients)
	}
	// The server accepted exactly the real clients, each with the options they agreed on.
	acc := srv.accepted()
	if len(acc) != clients {
		t.Errorf("server accepted %d connections; want the %d real clients only", len(acc), clients)
	}
	for i, a := range acc {
		checkAgreed(t, fmt.Sprintf("server side %d", i), a.info, true)
		if a.remote != l.net.cli.Addr() {
			t.Errorf("server accepted a connection from %s", a.remote)
		}
	}
	// Window scales agree across the two ends: one's send scale is the other's receive scale.
	if len(acc) > 0 {
		_, cli, err := banner(l.cli, netip.Addr{}, to)
		if err != nil {
			t.Fatal(err)
		}
		srvInfo := srv.accepted()[len(acc)].info
		if snd(cli) != rcv(srvInfo) || rcv(cli) != snd(srvInfo) {
			t.Errorf("window scales: client snd %d rcv %d, server snd %d rcv %d; want them crossed equal",
				snd(cli), rcv(cli), snd(srvInfo), rcv(srvInfo))
		}
	}
}

// snd and rcv are tcpi_snd_wscale and tcpi_rcv_wscale, the 4-bit fields in the byte after
// tcpi_options that x/sys/unix leaves as padding (little-endian bit order).
func snd(i *unix.TCPInfo) uint8 { return wscaleByte(i) & 0xf }
func rcv(i *unix.TCPInfo) uint8 { return wscaleByte(i) >> 4 }

func wscaleByte(i *unix.TCPInfo) byte {
	return *(*byte)(unsafe.Add(unsafe.Pointer(i), unsafe.Offsetof(i.Options)+1))
}

// checkAgreed: SACK and window scaling always, timestamps when ts.
func checkAgreed(t *testing.T, who string, info *unix.TCPInfo, ts bool) {
	t.Helper()
	const optTS, optSACK, optWS = 1, 2, 4
	if info == nil {
		t.Errorf("%s: no TCP_INFO", who)
		return
	}
	if info.Options&optSACK == 0 || info.Options&optWS == 0 || (info.Options&optTS != 0) != ts {
		t.Errorf("%s: TCP options %#x; want SACK, window scaling, timestamps %v", who, info.Options, ts)
	}
}

// TestHandoffWithoutTimestamps: a client whose stack sends no timestamps still gets SACK and
// window scaling, which ride in the cookie itself.
func TestHandoffWithoutTimestamps(t *testing.T) {
	l, srv, to := handoffLab(t, spec.IPv4, "auto")
	if _, err := l.cli.Run("sysctl", "-qw", "net.ipv4.tcp_timestamps=0"); err != nil {
		t.Fatal(err)
	}
	_, info, err := banner(l.cli, netip.Addr{}, to)
	if err != nil {
		t.Fatal(err)
	}
	checkAgreed(t, "client without timestamps", info, false)
	if !eventually(func() bool { return len(srv.accepted()) == 1 }) {
		t.Fatal("the server accepted nothing")
	}
	checkAgreed(t, "server side", srv.accepted()[0].info, false)
	if c := l.xdp(t); c.HandoffAssigned != 1 {
		t.Errorf("handoff_assigned %d; want 1", c.HandoffAssigned)
	}
}

// TestHandoffKeepsTheFirewall: the host's INPUT rules still decide who gets in, and a firewall
// flushed during a flood takes nothing of xsyn's with it.
func TestHandoffKeepsTheFirewall(t *testing.T) {
	for _, fam := range families {
		t.Run(fam.String(), func(t *testing.T) {
			l, srv, to := handoffLab(t, fam, "auto")
			// A second client address; INPUT drops it.
			banned := nets[fam].cli.Addr().Next().Next()
			if _, err := l.cli.Run("ip", "addr", "add", netip.PrefixFrom(banned, nets[fam].cli.Bits()).String(), "dev", "c0", "nodad"); err != nil {
				t.Fatal(err)
			}
			iptables := strings.TrimSuffix(l.iptablesSave, "-save")
			if _, err := l.fw.Run(iptables, "-A", "INPUT", "-s", banned.String(), "-p", "tcp", "--dport", fmt.Sprint(bannerPort), "-j", "DROP"); err != nil {
				t.Fatal(err)
			}
			if _, _, err := banner(l.cli, banned, to); err == nil {
				t.Errorf("%s connected although the host's INPUT drops it", banned)
			}
			if _, _, err := banner(l.cli, nets[fam].cli.Addr(), to); err != nil {
				t.Errorf("the allowed client: %v", err)
			}
			for _, a := range srv.accepted() {
				if a.remote == banned {
					t.Errorf("the server accepted %s, which the firewall drops", banned)
				}
			}
			if c := l.xdp(t); c.AckCookieValid < 1 || c.HandoffAssigned < 1 {
				t.Errorf("counters %+v; want the banned client's valid ACK passed by XDP (the firewall, not xsyn, refused it)", c)
			}

			// Flush everything during a flood: clients keep connecting, XDP keeps answering.
			syns, _ := l.floodFrames(t, to, 500, 11)
			before := l.xdp(t).SynackSent
			for _, cmd := range [][]string{{iptables, "-F"}, {iptables, "-t", "raw", "-F"}, {iptables, "-t", "nat", "-F"}, {iptables, "-t", "mangle", "-F"}, {"nft", "flush", "ruleset"}} {
				if _, err := l.cliL.Send(syns); err != nil {
					t.Fatal(err)
				}
				if _, err := l.fw.Run(cmd[0], cmd[1:]...); err != nil {
					t.Fatalf("%s: %v", cmd, err)
				}
				if _, _, err := banner(l.cli, banned, to); err != nil {
					t.Errorf("after %s: %v", strings.Join(cmd, " "), err)
				}
			}
			// 5 x 500 flood SYNs + 5 clients: every one answered in XDP.
			if n := l.xdp(t).SynackSent - before; n < 5*500+5 {
				t.Errorf("XDP answered %d SYNs during the flushes; want all %d", n, 5*500+5)
			}
			if n := synRecv(t, l.fw); n != 0 {
				t.Errorf("%d connections in SYN_RECV on the server: the flood reached its stack", n)
			}
		})
	}
}

// tcpExt reads a TcpExt counter of h (/proc/net/netstat).
func tcpExt(t *testing.T, h *netlab.Host, name string) uint64 {
	t.Helper()
	return procNetCounter(t, h, "/proc/net/netstat", "TcpExt", name)
}

// synRecv counts the server's half-open connections.
func synRecv(t *testing.T, h *netlab.Host) int {
	t.Helper()
	out, err := h.Run("ss", "-Htn", "state", "syn-recv")
	if err != nil {
		t.Fatal(err)
	}
	return len(strings.Fields(out)) / 4
}

// TestHandoffDetach: detach takes the TC program and every pin away, nothing is left.
func TestHandoffDetach(t *testing.T) {
	l, _, to := handoffLab(t, spec.IPv4, "auto")
	if _, _, err := banner(l.cli, netip.Addr{}, to); err != nil {
		t.Fatal(err)
	}
	var dir string
	err := l.fw.Do(func() error {
		st, err := l.prot.Statuses("f0")
		if err != nil {
			return err
		}
		dir = st[0].StateDir
		if n := tcxPrograms(t, "f0"); n != 1 {
			t.Errorf("%d programs on f0's tcx ingress; want the handoff's", n)
		}
		if dir != "" {
			if _, err := os.Stat(filepath.Join(dir, "tc-link")); err != nil {
				t.Errorf("the handoff's link is not pinned: %v", err)
			}
		}
		if err := l.prot.Remove("f0"); err != nil {
			return err
		}
		if n := tcxPrograms(t, "f0"); n != 0 {
			t.Errorf("%d programs left on f0's tcx ingress after detach", n)
		}
		lk, err := netlink.LinkByName("f0")
		if err != nil {
			return err
		}
		if x := lk.Attrs().Xdp; x != nil && x.ProgId != 0 {
			t.Errorf("XDP program %d left on f0", x.ProgId)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if dir != "" {
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("state directory %s left after detach (%v)", dir, err)
		}
	}
	// Unprotected now: the kernel's own listener answers.
	if _, _, err := banner(l.cli, netip.Addr{}, to); err != nil {
		t.Errorf("after detach: %v", err)
	}
}

func tcxPrograms(t *testing.T, iface string) int {
	t.Helper()
	lk, err := netlink.LinkByName(iface)
	if err != nil {
		t.Fatal(err)
	}
	res, err := link.QueryPrograms(link.QueryOptions{Target: lk.Attrs().Index, Attach: ebpf.AttachTCXIngress})
	if err != nil {
		t.Fatal(err)
	}
	return len(res.Programs)
}

// TestHandoffMPTCPListener: the kernel cannot hand a connection to an MPTCP listener (Go's
// default), so a statement whose server listens with MPTCP takes the SYNPROXY path and says why;
// one that demands the handoff is refused with nothing changed. Clients connect either way.
func TestHandoffMPTCPListener(t *testing.T) {
	l := newActionLab(t, spec.IPv4, false)
	handoffOrSkip(t)
	serveBanner(t, l.fw, bannerPort, true)
	to := netip.AddrPortFrom(l.net.fw.Addr(), bannerPort)
	var mptcp []host.Listener
	if err := l.fw.Do(func() (err error) { mptcp, err = host.MPTCPListeners(); return err }); err != nil || len(mptcp) == 0 {
		t.Skipf("this kernel lists no MPTCP listener (%v): MPTCP off?", err)
	}

	demand := l.config(t, fmt.Sprintf("synproxy4 input inface f0 dport %d path handoff accept\n", bannerPort))
	err := l.fw.Do(func() error { _, err := l.prot.Apply("f0", demand, "auto"); return err })
	if !errors.Is(err, spec.ErrHandoffUnavailable) || !strings.Contains(err.Error(), "MPTCP") {
		t.Errorf("path handoff to an MPTCP listener: %v; want ErrHandoffUnavailable naming MPTCP", err)
	}
	if out, _ := l.fw.Run(l.iptablesSave); strings.Contains(out, "XSYN") {
		t.Errorf("a refused apply left rules:\n%s", out)
	}

	auto := l.config(t, fmt.Sprintf("synproxy4 input inface f0 dport %d path auto accept\n", bannerPort))
	if auto.Statements[0].Path != spec.PathHandoff {
		t.Skipf("path auto does not choose the handoff here (%s)", auto.Statements[0].PathReason)
	}
	res := l.apply(t, auto, "auto")
	if st := res.Spec.Statements[0]; st.Path != spec.PathSynproxy || !strings.Contains(st.PathReason, "MPTCP") ||
		len(res.Warnings) != 1 || !strings.Contains(res.Warnings[0], "MPTCP") {
		t.Errorf("applied %+v, warnings %q; want the SYNPROXY path, saying the listener is MPTCP", res.Spec.Statements, res.Warnings)
	}
	for i := range 3 {
		if _, _, err := banner(l.cli, netip.Addr{}, to); err != nil {
			t.Errorf("client %d: %v", i, err)
		}
	}
	if c := l.xdp(t); c.HandoffAssigned != 0 || c.HandoffRefused != 0 || c.AckCookieValid < 3 {
		t.Errorf("counters %+v; want 3 valid ACKs on the SYNPROXY path and no handoff", c)
	}
}

// TestBothPathsBehindAFirewall: one configuration with a statement of each path, on a host whose
// firewall drops INVALID (as ufw and firewalld do). The SYNPROXY path makes conntrack strict
// (nf_conntrack_tcp_loose=0), which would call a handed-off connection INVALID; xsyn keeps
// conntrack off the handoff's flows instead, and both kinds of client get in.
func TestBothPathsBehindAFirewall(t *testing.T) {
	for _, fam := range families {
		t.Run(fam.String(), func(t *testing.T) {
			l := newActionLab(t, fam, false)
			handoffOrSkip(t)
			srv := serveBanner(t, l.fw, bannerPort, false)
			proxied := serve(t, l.fw, netip.AddrPortFrom(l.net.fw.Addr(), 80))
			iptables := strings.TrimSuffix(l.iptablesSave, "-save")
			for _, rule := range [][]string{
				{"-A", "INPUT", "-m", "conntrack", "--ctstate", "INVALID", "-j", "DROP"},
				{"-A", "OUTPUT", "-m", "conntrack", "--ctstate", "INVALID", "-j", "DROP"},
			} {
				if _, err := l.fw.Run(iptables, rule...); err != nil {
					t.Fatal(err)
				}
			}
			s := l.config(t, fmt.Sprintf("synproxy%[1]d input inface f0 dport %[2]d path handoff accept\n"+
				"synproxy%[1]d input inface f0 dst %[3]s dport 80 path synproxy accept\n", famNum(fam), bannerPort, l.net.fw.Addr()))
			res := l.apply(t, s, "auto")
			if p0, p1 := res.Spec.Statements[0].Path, res.Spec.Statements[1].Path; p0 != spec.PathHandoff || p1 != spec.PathSynproxy {
				t.Fatalf("paths %s, %s; want handoff, synproxy", p0, p1)
			}
			if out, err := l.fw.Run("sysctl", "-n", "net.netfilter.nf_conntrack_tcp_loose"); err != nil || strings.TrimSpace(out) != "0" {
				t.Fatalf("nf_conntrack_tcp_loose = %q (%v); the SYNPROXY statement needs 0", out, err)
			}
			for i := range 3 {
				if _, _, err := banner(l.cli, netip.Addr{}, netip.AddrPortFrom(l.net.fw.Addr(), bannerPort)); err != nil {
					t.Errorf("handoff client %d: %v", i, err)
				}
				if _, err := exchange(l.cli, netip.AddrPortFrom(l.net.fw.Addr(), 80), i); err != nil {
					t.Errorf("SYNPROXY client %d: %v", i, err)
				}
			}
			if n := len(srv.accepted()); n != 3 {
				t.Errorf("the handoff's server accepted %d connections; want 3", n)
			}
			if n := proxied.accepts.Load(); n != 3 {
				t.Errorf("the SYNPROXY statement's server accepted %d connections; want 3", n)
			}
			if c := l.xdp(t); c.HandoffAssigned != 3 || c.HandoffRefused != 0 {
				t.Errorf("counters %+v; want 3 handoffs", c)
			}
		})
	}
}

// TestHandoffStackSysctls: a TCP sysctl that would make the kernel refuse or ignore the handoff
// (every client reset) keeps the statement on SYNPROXY, saying which; clients get in.
func TestHandoffStackSysctls(t *testing.T) {
	for _, tc := range []struct{ sysctl, warn string }{
		{"net.ipv4.tcp_sack", "tcp_sack=0"},
		{"net.ipv4.tcp_syncookies", "tcp_syncookies=0"},
		{"net.ipv4.tcp_window_scaling", "tcp_window_scaling=0"},
	} {
		t.Run(tc.sysctl, func(t *testing.T) {
			l := newActionLab(t, spec.IPv4, false)
			handoffOrSkip(t)
			srv := serveBanner(t, l.fw, bannerPort, false)
			if _, err := l.fw.Run("sysctl", "-qw", tc.sysctl+"=0"); err != nil {
				t.Fatal(err)
			}
			s := l.config(t, fmt.Sprintf("synproxy4 input inface f0 dport %d accept\n", bannerPort))
			res := l.apply(t, s, "auto")
			if st := res.Spec.Statements[0]; st.Path != spec.PathSynproxy || !strings.Contains(st.PathReason, tc.warn) ||
				len(res.Warnings) != 1 || !strings.Contains(res.Warnings[0], tc.warn) {
				t.Fatalf("applied %+v (%q), warnings %q; want SYNPROXY, naming %s", st, st.PathReason, res.Warnings, tc.warn)
			}
			if _, _, err := banner(l.cli, netip.Addr{}, netip.AddrPortFrom(l.net.fw.Addr(), bannerPort)); err != nil {
				t.Errorf("client: %v", err)
			}
			if n := len(srv.accepted()); n != 1 {
				t.Errorf("server accepted %d connections; want 1", n)
			}
			if c := l.xdp(t); c.HandoffAssigned != 0 || c.HandoffRefused != 0 {
				t.Errorf("counters %+v; want no handoff", c)
			}
			demand := l.config(t, fmt.Sprintf("synproxy4 input inface f0 dport %d path handoff accept\n", bannerPort))
			err := l.fw.Do(func() error { _, err := l.prot.Apply("f0", demand, "auto"); return err })
			if !errors.Is(err, spec.ErrHandoffUnavailable) || !strings.Contains(err.Error(), tc.warn) {
				t.Errorf("path handoff with %s: %v; want ErrHandoffUnavailable naming it", tc.warn, err)
			}
		})
	}
}

// TestHandoffTimeWaitReuse: a server that closes first leaves its side in TIME_WAIT; a client
// reconnecting from the same port gets a new connection at once, as without xsyn (the kernel
// reuses the port for a new SYN; a cookie's ACK would only meet the TIME_WAIT socket).
func TestHandoffTimeWaitReuse(t *testing.T) {
	l := newActionLab(t, spec.IPv4, false)
	handoffOrSkip(t)
	var ln net.Listener
	if err := l.fw.Do(func() (err error) {
		var lc net.ListenConfig
		lc.SetMultipathTCP(false)
		ln, err = lc.Listen(context.Background(), "tcp", fmt.Sprintf("0.0.0.0:%d", bannerPort))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("SSH-2.0-xsyn-test\r\n"))
			c.Close() // the server closes first: its side goes to TIME_WAIT
		}
	}()
	s := l.config(t, fmt.Sprintf("synproxy4 input inface f0 dport %d path handoff accept\n", bannerPort))
	l.apply(t, s, "auto")
	to := netip.AddrPortFrom(l.net.fw.Addr(), bannerPort)
	dial := func() error {
		return l.cli.Do(func() error {
			d := net.Dialer{Timeout: 3 * time.Second, LocalAddr: &net.TCPAddr{Port: 40404}}
			c, err := d.Dial("tcp", to.String())
			if err != nil {
				return err
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(3 * time.Second))
			b, err := io.ReadAll(c)
			if err != nil || !strings.HasPrefix(string(b), "SSH-2.0-") {
				return fmt.Errorf("banner %q: %v", b, err)
			}
			return nil
		})
	}
	if err := dial(); err != nil {
		t.Fatalf("first connection: %v", err)
	}
	if !eventually(func() bool {
		out, _ := l.fw.Run("ss", "-Htn", "state", "time-wait", "sport", "= :"+fmt.Sprint(bannerPort))
		return strings.Contains(out, ":40404")
	}) {
		t.Fatal("the server's side never reached TIME_WAIT")
	}
	if err := dial(); err != nil {
		t.Errorf("reconnecting from the same port while the server's side is in TIME_WAIT: %v", err)
	}
	if c := l.xdp(t); c.PassTimeWait != 1 || c.HandoffAssigned != 1 {
		t.Errorf("counters %+v; want the first connection handed off and the second SYN passed (time_wait)", c)
	}
}
