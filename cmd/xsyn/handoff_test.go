package main

import (
	"bufio"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/xsyn-project/xsyn/internal/host"
	"github.com/xsyn-project/xsyn/internal/testutil"
	"github.com/xsyn-project/xsyn/loader"
)

// The default path from the operator's side: `xsyn attach IFACE --port P` takes the socket
// handoff for a server that listens with plain TCP, and keeps one that listens with MPTCP (as
// Go programs do by default) on SYNPROXY, saying why. Either way the clients get through.

// requireHandoff skips where the kernel lacks the socket handoff (before Linux 6.9), saying so.
func requireHandoff(t *testing.T) {
	t.Helper()
	requireRootForTest(t)
	testutil.RequireFeature(t, loader.ProbeHandoff(), loader.ErrFeatureMissing)
}

// serveTCP listens on port at the DUT's addresses, with MPTCP or with plain TCP whatever Go's
// default, and answers each connection with the client address it sees (one line, as
// echoServer does), then echoes lines until the client closes: l.connect works, and a
// connection can stay open across attach.
func (l *e2eLab) serveTCP(t *testing.T, port int, mptcp bool) {
	t.Helper()
	var lc net.ListenConfig
	lc.SetMultipathTCP(mptcp)
	for _, a := range []netip.Addr{dut4.Addr(), dut6.Addr()} {
		l.listen(t, lc, "tcp", netip.AddrPortFrom(a, uint16(port)).String(), func(c net.Conn) {
			defer c.Close()
			fmt.Fprintf(c, "%s\n", c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr())
			sc := bufio.NewScanner(c)
			for sc.Scan() {
				fmt.Fprintln(c, sc.Text())
			}
		})
	}
	if !mptcp {
		return
	}
	var mp []host.Listener
	if err := l.dut.Do(func() (err error) { mp, err = host.MPTCPListeners(); return err }); err != nil {
		t.Fatal(err)
	}
	if len(mp) == 0 {
		t.Skip("the kernel has no MPTCP (CONFIG_MPTCP, or net.mptcp.enabled=0): the listener fell back to plain TCP")
	}
}

// openConn dials addr from the client, reads the server's first line and returns the open
// connection and a function that sends a line and checks it comes back.
func (l *e2eLab) openConn(t *testing.T, addr string) (net.Conn, func(string) error) {
	t.Helper()
	var c net.Conn
	if err := l.cli.Do(func() (err error) { c, err = net.DialTimeout("tcp", addr, 3*time.Second); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	r := bufio.NewReader(c)
	c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := r.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	return c, func(msg string) error {
		c.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := fmt.Fprintln(c, msg); err != nil {
			return err
		}
		got, err := r.ReadString('\n')
		if err == nil && got != msg+"\n" {
			err = fmt.Errorf("echo %q, want %q", got, msg)
		}
		return err
	}
}

// A plain-TCP server: attach --port takes the handoff for both families, installs no netfilter
// rule and no sysctl, cuts no open connection, and clients are handed to the server; explain
// said so beforehand.
func TestAttachHandoffByDefault(t *testing.T) {
	requireHandoff(t)
	l := newE2ELab(t, "xsynho", enterers["ip-netns-exec"])
	l.serveTCP(t, 8080, false)
	_, echo := l.openConn(t, "192.0.2.2:8080") // open before attach; conntrack does not track it
	before, err := l.dut.Run(netfilterState[0], netfilterState[1:]...)
	if err != nil {
		t.Fatal(err)
	}

	out := l.mustXsyn(t, "explain", "d0", "--port", "8080")
	for _, want := range []string{"2 statements on the handoff path, 0 on the SYNPROXY path.",
		"Kernel: it has the socket handoff (Linux 6.9+), and no server of a statement on the handoff path listens with MPTCP.",
		"Netfilter rules: none"} {
		if !strings.Contains(out, want) {
			t.Errorf("explain lacks %q:\n%s", want, out)
		}
	}

	out, errOut, code := l.xsyn(t, "attach", "d0", "--port", "8080")
	t.Cleanup(func() { l.xsyn(t, "detach", "d0") })
	if code != 0 || errOut != "" || !strings.Contains(out, "2 statements on the handoff path, 0 on the SYNPROXY path\n") ||
		strings.Count(out, "     path: handoff: xsyn cookie, handed to the listening socket; no netfilter rules") != 2 {
		t.Fatalf("attach --port 8080 to a plain-TCP server: exit %d, want 0 taking the handoff for both statements, without a word on stderr\nstdout: %s\nstderr: %s",
			code, out, errOut)
	}
	st := l.status(t)
	if st.Mode != "native" || len(st.Services) != 2 || st.Services[0].Path != "handoff" || st.Services[1].Path != "handoff" {
		t.Errorf("status --json after attach: %+v; want native XDP, both services on the handoff path", st)
	}
	text := l.mustXsyn(t, "status", "d0", "--interval", "0")
	if !strings.Contains(text, "netfilter rules none needed (every service takes the handoff path)") ||
		strings.Count(text, "  64   handoff\n") != 2 || !strings.Contains(text, "TTL  PATH") {
		t.Errorf("status after attach does not show the handoff path:\n%s", text)
	}
	if after, err := l.dut.Run(netfilterState[0], netfilterState[1:]...); err != nil || after != before {
		t.Errorf("attach on the handoff path changed netfilter or the sysctls (%v):\nbefore:\n%s\nafter:\n%s", err, before, after)
	}
	if saved, err := l.dut.Run("sh", "-c", "iptables-save; ip6tables-save"); err != nil || strings.Contains(saved, "XSYN") {
		t.Errorf("iptables-save after attach on the handoff path (%v):\n%s", err, saved)
	}

	// The connection open since before attach finds its socket: the handoff cuts nothing.
	if err := echo("after attach"); err != nil {
		t.Errorf("a connection open before attach: %v", err)
	}
	// A client per family: XDP's SYN-ACK, the ACK handed to the listener, the server sees the
	// client's own address.
	for _, c := range []struct{ fam, addr, client string }{
		{"ipv4", "192.0.2.2:8080", cli4.Addr().String()},
		{"ipv6", "[2001:db8::2]:8080", cli6.Addr().String()},
	} {
		if seen, err := l.connect(c.addr); err != nil || seen != c.client {
			t.Errorf("%s client on the handoff path: server saw %q, %v; want %s", c.fam, seen, err, c.client)
		}
	}
	st1 := l.waitStatus(t, func(s ifaceJSON) bool {
		return counter(s, "ipv4", "handoff_assigned") > 0 && counter(s, "ipv6", "handoff_assigned") > 0
	})
	for _, fam := range []string{"ipv4", "ipv6"} {
		for _, c := range []struct {
			name string
			want uint64
		}{{"synack_sent", 1}, {"handoff_assigned", 1}, {"handoff_refused", 0}} {
			if got := counter(st1, fam, c.name) - counter(st, fam, c.name); got != c.want {
				t.Errorf("one %s client moved %s by %d, want %d (%v)", fam, c.name, got, c.want, st1.Counters[fam])
			}
		}
	}

	l.mustXsyn(t, "detach", "d0")
	if after, err := l.dut.Run(netfilterState[0], netfilterState[1:]...); err != nil || after != before {
		t.Errorf("state after detach differs from before attach (%v):\nbefore:\n%s\nafter:\n%s", err, before, after)
	}
}

// A server that listens with MPTCP, which the kernel cannot hand connections to: explain and
// attach both say so, naming the server; attach keeps its statements on SYNPROXY, which serves
// the clients; and an open connection that SYNPROXY's path would cut makes attach refuse, as it
// does for any statement on that path.
func TestAttachMPTCPServerKeepsSynproxy(t *testing.T) {
	requireHandoff(t)
	l := newE2ELab(t, "xsynmp", enterers["ip-netns-exec"])
	l.serveTCP(t, 8080, true)
	const why = "listens with MPTCP, which the kernel cannot hand connections to (Go's net.Listen does by default; turn MPTCP off in the server to use the handoff)"
	warn4 := "synproxy4 input dport 8080 accept: SYNPROXY path: the server on 192.0.2.2:8080 " + why
	warn6 := "synproxy6 input dport 8080 accept: SYNPROXY path: the server on [2001:db8::2]:8080 " + why

	out := l.mustXsyn(t, "explain", "d0", "--port", "8080")
	for _, want := range []string{"0 statements on the handoff path, 2 on the SYNPROXY path.",
		"  attach would warn: " + warn4 + "\n", "  attach would warn: " + warn6 + "\n",
		"     path: synproxy: the server on 192.0.2.2:8080 " + why + "\n     XDP answers its SYNs with cookies; SYNPROXY completes the handshake",
		"-j SYNPROXY"} {
		if !strings.Contains(out, want) {
			t.Errorf("explain lacks %q:\n%s", want, out)
		}
	}

	out, errOut, code := l.xsyn(t, "attach", "d0", "--port", "8080")
	t.Cleanup(func() { l.xsyn(t, "detach", "d0") })
	if code != 0 || errOut != "xsyn attach: warning: "+warn4+"\nxsyn attach: warning: "+warn6+"\n" ||
		!strings.Contains(out, "0 statements on the handoff path, 2 on the SYNPROXY path\n") {
		t.Fatalf("attach --port 8080 to an MPTCP server: exit %d, want 0 on the SYNPROXY path, warning for each family\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	st := l.status(t)
	if !st.NetfilterRules || len(st.Services) != 2 || st.Services[0].Path != "synproxy" || st.Services[1].Path != "synproxy" {
		t.Errorf("status --json after attach: %+v; want both services on the SYNPROXY path, with its rules", st)
	}
	for _, c := range []struct{ fam, addr, client string }{
		{"ipv4", "192.0.2.2:8080", cli4.Addr().String()},
		{"ipv6", "[2001:db8::2]:8080", cli6.Addr().String()},
	} {
		if seen, err := l.connect(c.addr); err != nil || seen != c.client {
			t.Errorf("%s client of the MPTCP server: server saw %q, %v; want %s", c.fam, seen, err, c.client)
		}
	}
	st1 := l.waitStatus(t, func(s ifaceJSON) bool {
		return counter(s, "ipv4", "ack_cookie_valid") > 0 && counter(s, "ipv6", "ack_cookie_valid") > 0
	})
	for _, fam := range []string{"ipv4", "ipv6"} {
		if counter(st1, fam, "ack_cookie_valid") != 1 || counter(st1, fam, "handoff_assigned") != 0 {
			t.Errorf("one %s client: %v; want ack_cookie_valid 1 (SYNPROXY's path), handoff_assigned 0", fam, st1.Counters[fam])
		}
	}
	l.mustXsyn(t, "detach", "d0")

	// The paths are chosen before attach looks for connections it would cut: on the handoff
	// path this one would live on, on SYNPROXY's it would not.
	c, echo := l.openConn(t, "192.0.2.2:8080")
	before := l.nsState(t)
	out, errOut, code = l.xsyn(t, "attach", "d0", "--port", "8080")
	if code != exitError || out != "" || !strings.Contains(errOut, "xsyn attach: refusing to cut 1 established connection(s)") ||
		!strings.Contains(errOut, c.LocalAddr().String()+" -> 192.0.2.2:8080") {
		t.Errorf("attach with an untracked connection to the MPTCP server: exit %d, want 1 refusing to cut it\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	if after := l.nsState(t); after != before {
		t.Errorf("the refused attach changed the namespace:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if err := echo("still open"); err != nil {
		t.Errorf("the connection attach refused to cut: %v", err)
	}
}
