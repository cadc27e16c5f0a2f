package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xsyn-project/xsyn/internal/netlab"
	"github.com/xsyn-project/xsyn/internal/packet"
	"github.com/xsyn-project/xsyn/internal/testutil"
	"github.com/xsyn-project/xsyn/spec"
)

// End-to-end: the built xsyn binary, run the way an operator runs it inside a namespace, in front
// of a real TCP server; real clients in another namespace; real floods.

var xsynBin string

func TestMain(m *testing.M) {
	if os.Geteuid() == 0 {
		dir, err := os.MkdirTemp("", "xsyn-e2e")
		if err != nil {
			panic(err)
		}
		xsynBin = filepath.Join(dir, "xsyn")
		if out, err := exec.Command("go", "build", "-o", xsynBin, ".").CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "build xsyn: %v\n%s", err, out)
			os.Exit(1)
		}
		defer os.RemoveAll(dir)
	}
	code := m.Run()
	os.Exit(code)
}

type e2eLab struct {
	cli, dut   *netlab.Host
	cliL, dutL *netlab.Link
	enter      func(h *netlab.Host) []string // how xsyn is started inside a namespace
}

var (
	cli4 = netip.MustParsePrefix("192.0.2.1/24")
	dut4 = netip.MustParsePrefix("192.0.2.2/24")
	cli6 = netip.MustParsePrefix("2001:db8::1/64")
	dut6 = netip.MustParsePrefix("2001:db8::2/64")
)

// Two ways into a namespace: `ip netns exec` mounts a private /sys (no bpffs: netlink holds the
// program); nsenter keeps the host's mounts (a pinned bpf link holds it).
var enterers = map[string]func(h *netlab.Host) []string{
	"ip-netns-exec": func(h *netlab.Host) []string { return []string{"ip", "netns", "exec", h.Name} },
	"nsenter":       func(h *netlab.Host) []string { return []string{"nsenter", "--net=/run/netns/" + h.Name} },
}

func newE2ELab(t *testing.T, prefix string, enter func(*netlab.Host) []string) *e2eLab {
	t.Helper()
	testutil.RequireRoot(t, "network namespaces, XDP, netfilter")
	p := testutil.Pair(t, prefix, "c0", []netip.Prefix{cli4, cli6}, "d0", []netip.Prefix{dut4, dut6})
	return &e2eLab{cli: p.Client, dut: p.Server, cliL: p.ClientLink, dutL: p.ServerLink, enter: enter}
}

// xsyn runs the binary inside the DUT namespace and returns stdout, stderr and the exit code.
func (l *e2eLab) xsyn(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	argv := append(l.enter(l.dut), append([]string{xsynBin}, args...)...)
	cmd := exec.Command(argv[0], argv[1:]...)
	var so, se strings.Builder
	cmd.Stdout, cmd.Stderr = &so, &se
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run xsyn %v: %v", args, err)
	}
	return so.String(), se.String(), code
}

func (l *e2eLab) mustXsyn(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, code := l.xsyn(t, args...)
	if code != 0 {
		t.Fatalf("xsyn %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

func (l *e2eLab) status(t *testing.T) ifaceJSON {
	t.Helper()
	var st statusJSON
	if err := json.Unmarshal([]byte(l.mustXsyn(t, "status", "d0", "--json", "--interval", "0")), &st); err != nil {
		t.Fatal(err)
	}
	if len(st.Interfaces) != 1 {
		t.Fatalf("status: %d interfaces, want 1", len(st.Interfaces))
	}
	return st.Interfaces[0]
}

// waitStatus polls status until cond holds (the counters move asynchronously), for at most 5s.
func (l *e2eLab) waitStatus(t *testing.T, cond func(ifaceJSON) bool) ifaceJSON {
	t.Helper()
	var st ifaceJSON
	// Not Eventually: the caller checks the status it gets and says what is wrong with it.
	_ = testutil.Wait(5*time.Second, func() error {
		if st = l.status(t); !cond(st) {
			return errors.New("not yet")
		}
		return nil
	})
	return st
}

// echoServer answers on both families in the DUT with the client address it sees.
func (l *e2eLab) echoServer(t *testing.T, port int) {
	t.Helper()
	stop, err := l.dut.ServeClientAddr(port, dut4.Addr(), dut6.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
}

// connect dials from the client and returns the address the server saw.
func (l *e2eLab) connect(addr string) (string, error) {
	return l.cli.ClientAddrSeen(addr, 3*time.Second)
}

// netfilterState is every rule and user chain of both families plus the sysctls xsyn changes.
// XXX: empty built-in tables are left out: with the nf_tables backend, iptables creates the raw and
// filter tables on first use and xsyn leaves them (empty, policy ACCEPT) when it removes its rules.
var netfilterState = []string{"sh", "-c", "(iptables-save; ip6tables-save) | grep -E '^(-A|:XSYN)' ; sysctl net.netfilter.nf_conntrack_tcp_loose net.ipv4.tcp_syncookies"}

func counter(st ifaceJSON, fam, name string) uint64 { return st.Counters[fam][name] }

func TestE2E(t *testing.T) {
	for name, enter := range enterers {
		t.Run(name, func(t *testing.T) { testE2E(t, enter) })
	}
}

func testE2E(t *testing.T, enter func(*netlab.Host) []string) {
	l := newE2ELab(t, "xsyne2e", enter)
	l.echoServer(t, 8080)
	before, err := l.dut.Run(netfilterState[0], netfilterState[1:]...)
	if err != nil {
		t.Fatal(err)
	}

	// The default path, for the server a Go program is: it listens with MPTCP, which the
	// handoff cannot serve, so attach keeps both statements on SYNPROXY and says why
	// (the handoff end to end: TestAttachHandoffByDefault).
	out, errOut, code := l.xsyn(t, "attach", "d0", "--port", "8080", "--mss", "1400")
	if code != 0 || !strings.Contains(out, "d0: protecting") || !strings.Contains(out, "0 statements on the handoff path, 2 on the SYNPROXY path") {
		t.Errorf("attach: exit %d; want it to say what it protects, on the SYNPROXY path:\n%s%s", code, out, errOut)
	}
	for _, fam := range []string{"synproxy4", "synproxy6"} {
		if want := "xsyn attach: warning: " + fam + " input dport 8080 accept: SYNPROXY path: the server on "; !strings.Contains(errOut, want) {
			t.Errorf("attach stderr lacks %q:\n%s", want, errOut)
		}
	}
	st := l.status(t)
	if st.Mode != "native" || !st.NetfilterRules || len(st.Services) != 2 || st.Services[0].Path != "synproxy" || st.Services[1].Path != "synproxy" {
		t.Fatalf("status after attach: %+v", st)
	}
	stateDir := st.StateDir // pinned state, when a bpffs is visible
	if pinned := l.enter(l.dut)[0] == "nsenter"; pinned != (st.HeldBy == "bpf-link" && stateDir != "") {
		t.Errorf("status: held by %q, state dir %q; want a pinned bpf link exactly when the host's bpffs is visible", st.HeldBy, stateDir)
	}
	if want := l.stackWScale(t); st.Services[0].WScale != want {
		t.Errorf("default window scale %d, want %d: what the server's own stack offers", st.Services[0].WScale, want)
	}

	// Real clients complete the handshake through XDP + SYNPROXY; the server sees their address.
	for _, tc := range []struct{ fam, addr, client string }{
		{"ipv4", "192.0.2.2:8080", cli4.Addr().String()},
		{"ipv6", "[2001:db8::2]:8080", cli6.Addr().String()},
	} {
		seen, err := l.connect(tc.addr)
		if err != nil {
			t.Fatalf("%s client: %v", tc.fam, err)
		}
		if seen != tc.client {
			t.Errorf("%s: server saw client %s, want %s", tc.fam, seen, tc.client)
		}
	}
	st = l.waitStatus(t, func(s ifaceJSON) bool {
		return counter(s, "ipv4", "established_passed") > 0 && counter(s, "ipv6", "established_passed") > 0
	})
	for _, fam := range []string{"ipv4", "ipv6"} {
		// The SYN-ACK came from XDP, not the stack; the ACK's cookie was valid; the rest of the
		// connection passed as established.
		if counter(st, fam, "synack_sent") != 1 || counter(st, fam, "ack_cookie_valid") != 1 || counter(st, fam, "established_passed") == 0 {
			t.Errorf("%s counters after one connection: %v", fam, st.Counters[fam])
		}
	}

	l.floods(t)

	// A second attach with other options changes the next SYN-ACK without detaching.
	prog := st.ProgramID
	l.mustXsyn(t, "attach", "d0", "--port", "8080", "--mss", "1300")
	if st := l.status(t); st.ProgramID != prog || st.Services[0].MSS != 1300 {
		t.Errorf("re-attach: program %d -> %d, services %+v; want same program, MSS 1300", prog, st.ProgramID, st.Services)
	}
	if mss := l.synackMSS(t); mss != 1300 {
		t.Errorf("SYN-ACK after re-attach announces MSS %d, want 1300", mss)
	}
	if _, err := l.connect("192.0.2.2:8080"); err != nil {
		t.Errorf("client after re-attach: %v", err)
	}

	// detach leaves nothing behind: rules, sysctls, program, pins.
	l.mustXsyn(t, "detach", "d0")
	after, err := l.dut.Run(netfilterState[0], netfilterState[1:]...)
	if err != nil {
		t.Fatal(err)
	}
	if after != before {
		t.Errorf("netfilter/sysctl state after detach differs from before attach:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if link, _ := l.dut.Run("ip", "link", "show", "d0"); strings.Contains(link, "xdp") {
		t.Errorf("XDP program still on d0 after detach:\n%s", link)
	}
	if stateDir != "" {
		if _, err := os.Stat(stateDir); !os.IsNotExist(err) {
			t.Errorf("pins left after detach in %s (%v)", stateDir, err)
		}
	}
	if _, _, code := l.xsyn(t, "status", "d0"); code != 1 {
		t.Errorf("status of a detached interface: exit %d, want 1", code)
	}
}

// floods sends spoofed SYNs (both frame shapes, random sources) and forged ACKs, and checks that
// XDP answered or dropped every one while the DUT's stack and conntrack saw none of them.
func (l *e2eLab) floods(t *testing.T) {
	t.Helper()
	const n = 4000
	dutMAC, cliMAC := mustMAC(t, l.dutL.MAC), mustMAC(t, l.cliL.MAC)
	rng := rand.New(rand.NewPCG(1, 2))
	var syns, acks [][]byte
	for i := range n {
		src4 := netip.AddrFrom4([4]byte{198, 18, byte(rng.IntN(256)), byte(rng.IntN(256))})
		var src6 [16]byte
		copy(src6[:], []byte{0x20, 0x01, 0, 2})
		for j := 6; j < 16; j++ {
			src6[j] = byte(rng.IntN(256))
		}
		tcp := func(flags uint8) *packet.TCP {
			t := &packet.TCP{SrcPort: uint16(1024 + rng.IntN(60000)), DstPort: 8080, Seq: rng.Uint32(), Ack: rng.Uint32(), Flags: flags, Window: 64240}
			if flags == 0x02 && i%2 == 1 { // every other SYN Linux-like (74 bytes), the rest bare (54)
				t.Options = packet.Options(packet.MSS(1460), packet.SACKPerm(), packet.Timestamp(rng.Uint32(), 0), packet.NOP(), packet.WScale(7))
			}
			return t
		}
		f4 := packet.Frame{Dst: dutMAC, Src: cliMAC, IPv4: &packet.IPv4{Src: src4, Dst: dut4.Addr(), TTL: 64, DF: true}}
		f6 := packet.Frame{Dst: dutMAC, Src: cliMAC, IPv6: &packet.IPv6{Src: netip.AddrFrom16(src6), Dst: dut6.Addr(), HopLimit: 64}}
		f4.TCP, f6.TCP = tcp(0x02), tcp(0x02)
		syns = append(syns, f4.Bytes(), f6.Bytes())
		f4.TCP, f6.TCP = tcp(0x10), tcp(0x10)
		acks = append(acks, f4.Bytes(), f6.Bytes())
	}

	st0 := l.status(t)
	nstat0 := l.nstat(t)
	ct0 := l.conntrackCount(t)
	if _, err := l.cliL.Send(syns); err != nil {
		t.Fatal(err)
	}
	if _, err := l.cliL.Send(acks); err != nil {
		t.Fatal(err)
	}
	st := l.waitStatus(t, func(s ifaceJSON) bool {
		return counter(s, "ipv6", "ack_cookie_invalid")-counter(st0, "ipv6", "ack_cookie_invalid") >= n
	})
	for _, fam := range []string{"ipv4", "ipv6"} {
		d := func(name string) uint64 { return counter(st, fam, name) - counter(st0, fam, name) }
		if d("syn_received") != n || d("synack_sent") != n {
			t.Errorf("%s SYN flood of %d: syn_received +%d, synack_sent +%d; want every SYN answered from XDP", fam, n, d("syn_received"), d("synack_sent"))
		}
		if d("ack_cookie_invalid") != n {
			t.Errorf("%s forged-ACK flood of %d: ack_cookie_invalid +%d", fam, n, d("ack_cookie_invalid"))
		}
	}
	nstat1 := l.nstat(t)
	for _, k := range []string{"TcpPassiveOpens", "TcpExtSyncookiesSent", "TcpExtSyncookiesFailed", "TcpExtListenDrops", "TcpInSegs"} {
		if nstat1[k] != nstat0[k] {
			t.Errorf("the DUT's TCP stack saw the flood: %s %d -> %d", k, nstat0[k], nstat1[k])
		}
	}
	if ct := l.conntrackCount(t); ct > ct0 {
		t.Errorf("conntrack entries on the DUT grew from %d to %d during the flood", ct0, ct)
	}
}

// stackWScale is the window scale the DUT's stack offers, from its buffer limits.
func (l *e2eLab) stackWScale(t *testing.T) uint8 {
	t.Helper()
	out, err := l.dut.Run("sh", "-c", "cut -f3 /proc/sys/net/ipv4/tcp_rmem; cat /proc/sys/net/core/rmem_max")
	if err != nil {
		t.Fatal(err)
	}
	biggest := 0
	for _, f := range strings.Fields(out) {
		n, _ := strconv.Atoi(f)
		biggest = max(biggest, n)
	}
	return spec.WScaleForBuffer(biggest)
}

func (l *e2eLab) nstat(t *testing.T) map[string]uint64 {
	t.Helper()
	out, err := l.dut.Run("nstat", "-az")
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]uint64{}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 {
			v, _ := strconv.ParseUint(f[1], 10, 64)
			m[f[0]] = v
		}
	}
	return m
}

func (l *e2eLab) conntrackCount(t *testing.T) int {
	t.Helper()
	out, err := l.dut.Run("cat", "/proc/sys/net/netfilter/nf_conntrack_count")
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(strings.TrimSpace(out))
	return n
}

// synackMSS sends one SYN from the client and returns the MSS option of the SYN-ACK that comes
// back, read on the wire.
func (l *e2eLab) synackMSS(t *testing.T) uint16 {
	t.Helper()
	capt, err := l.cliL.Capture()
	if err != nil {
		t.Fatal(err)
	}
	defer capt.Close()
	syn := packet.Frame{Dst: mustMAC(t, l.dutL.MAC), Src: mustMAC(t, l.cliL.MAC),
		IPv4: &packet.IPv4{Src: netip.MustParseAddr("198.18.0.1"), Dst: dut4.Addr(), TTL: 64},
		TCP:  &packet.TCP{SrcPort: 40000, DstPort: 8080, Seq: 1, Flags: 0x02, Options: packet.MSS(1460)}}
	if _, err := l.cliL.Send([][]byte{syn.Bytes()}); err != nil {
		t.Fatal(err)
	}
	var mss uint16
	_, err = capt.Next(3*time.Second, func(b []byte) bool {
		p, err := packet.Parse(b)
		if err != nil || p.TCP == nil || p.TCP.DstPort != 40000 || p.TCP.Flags != 0x12 {
			return false
		}
		if o, ok := packet.LastOption(p.Options, packet.OptMSS); ok && len(o.Data) == 2 {
			mss = uint16(o.Data[0])<<8 | uint16(o.Data[1])
		}
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	return mss
}

func mustMAC(t *testing.T, s string) packet.MAC {
	t.Helper()
	m, err := packet.ParseMAC(s)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func requireRootForTest(t *testing.T) {
	t.Helper()
	testutil.RequireRoot(t, "touches netfilter and XDP") // TestMain builds xsynBin as root
}

// listen opens a listener in the DUT with lc and serves each connection it accepts with handle,
// on a goroutine of its own, until the test ends.
func (l *e2eLab) listen(t *testing.T, lc net.ListenConfig, network, addr string, handle func(net.Conn)) {
	t.Helper()
	var ln net.Listener
	if err := l.dut.Do(func() (err error) { ln, err = lc.Listen(context.Background(), network, addr); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go handle(c)
		}
	}()
}
