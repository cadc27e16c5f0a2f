package protect

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/xsyn-project/xsyn/internal/host"
	"github.com/xsyn-project/xsyn/internal/netlab"
	"github.com/xsyn-project/xsyn/internal/packet"
	"github.com/xsyn-project/xsyn/internal/testutil"
	"github.com/xsyn-project/xsyn/loader"
	"github.com/xsyn-project/xsyn/rules"
	"github.com/xsyn-project/xsyn/spec"
)

// Every action of the configuration language, in real namespaces, with real connections:
//
//	client (c0) ---- (f0) firewall (f1) ---- (b0) backend
//
// xsyn protects f0 of the firewall; servers run on the firewall or on the backend, as each
// statement's type and action say.

// labNet is one family's addressing of the lab (documentation prefixes only).
type labNet struct {
	cli, fw, fwBack, be netip.Prefix
	virt                netip.Addr   // routed by the firewall towards the backend, owned by no one
	virtNet             netip.Prefix // the prefix virt is routed in
	spoof               netip.Prefix // sources of the floods, routed back towards the client
	loopback            netip.Addr
}

var nets = map[spec.Family]labNet{
	spec.IPv4: {
		cli: netip.MustParsePrefix("192.0.2.1/24"), fw: netip.MustParsePrefix("192.0.2.2/24"),
		fwBack: netip.MustParsePrefix("198.51.100.1/24"), be: netip.MustParsePrefix("198.51.100.2/24"),
		virt: netip.MustParseAddr("203.0.113.10"), virtNet: netip.MustParsePrefix("203.0.113.0/24"),
		spoof: netip.MustParsePrefix("198.18.0.0/15"), loopback: netip.MustParseAddr("127.0.0.1"),
	},
	spec.IPv6: {
		cli: netip.MustParsePrefix("2001:db8:1::1/64"), fw: netip.MustParsePrefix("2001:db8:1::2/64"),
		fwBack: netip.MustParsePrefix("2001:db8:2::1/64"), be: netip.MustParsePrefix("2001:db8:2::2/64"),
		virt: netip.MustParseAddr("2001:db8:3::10"), virtNet: netip.MustParsePrefix("2001:db8:3::/64"),
		spoof: netip.MustParsePrefix("2001:db8:ff::/48"), loopback: netip.MustParseAddr("::1"),
	},
}

var families = []spec.Family{spec.IPv4, spec.IPv6}

// modes: XDP in front of SYNPROXY (auto, which must pick native on a veth), and SYNPROXY alone.
// modeCase is a mode to protect in, and the mode Apply reports.
type modeCase struct {
	name string
	mode loader.Mode
	want string
}

var modes = []modeCase{
	{"xdp", "auto", "native"},
	{"netfilter", ModeNetfilter, ModeNetfilterOnly},
}

type actionLab struct {
	fam          spec.Family
	net          labNet
	cli, fw, be  *netlab.Host
	cliL, fwL    *netlab.Link
	prot         *Protector
	iptablesSave string // iptables-save or ip6tables-save
}

// newActionLab builds the three namespaces and their routes; forward turns routing on in the
// firewall. Everything is removed when the test ends, xsyn first.
func newActionLab(t *testing.T, fam spec.Family, forward bool) *actionLab {
	t.Helper()
	testutil.RequireRoot(t, "network namespaces, netfilter, XDP")
	n := nets[fam]
	l := &actionLab{fam: fam, net: n, iptablesSave: "iptables-save"}
	if fam == spec.IPv6 {
		l.iptablesSave = "ip6tables-save"
	}
	// One prefix per process: two runs of this test at once must not share namespaces.
	lab := testutil.Lab(t, fmt.Sprintf("xsynact%d", os.Getpid()))
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	var err error
	l.cli, err = lab.Host("cli")
	must(err)
	l.fw, err = lab.Host("fw")
	must(err)
	l.be, err = lab.Host("be")
	must(err)
	all := func(f func(labNet) netip.Prefix) []netip.Prefix {
		return []netip.Prefix{f(nets[spec.IPv4]), f(nets[spec.IPv6])}
	}
	l.cliL, l.fwL, err = netlab.Veth(l.cli, "c0", all(func(n labNet) netip.Prefix { return n.cli }),
		l.fw, "f0", all(func(n labNet) netip.Prefix { return n.fw }))
	must(err)
	_, _, err = netlab.Veth(l.fw, "f1", all(func(n labNet) netip.Prefix { return n.fwBack }),
		l.be, "b0", all(func(n labNet) netip.Prefix { return n.be }))
	must(err)
	// Frames XDP sends back out of f0 (XDP_TX) only arrive where c0 runs an XDP program.
	must(l.cliL.AttachPass())

	for _, fn := range nets {
		route := func(h *netlab.Host, to netip.Prefix, via netip.Prefix) {
			t.Helper()
			_, err := h.Run("ip", "route", "add", to.String(), "via", via.Addr().String())
			must(err)
		}
		route(l.cli, fn.fwBack.Masked(), fn.fw)
		route(l.cli, fn.virtNet, fn.fw)
		route(l.be, fn.cli.Masked(), fn.fwBack)
		route(l.fw, fn.virtNet, fn.be)
		route(l.fw, fn.spoof, fn.cli) // SYNPROXY's SYN-ACKs to flood sources leave towards the client
	}
	if forward {
		_, err := l.fw.Run("sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")
		must(err)
	}

	must(l.fw.Do(func() error {
		a, err := rules.NewApplier()
		l.prot = &Protector{Rules: a, Loader: loader.Options{Locks: t.TempDir()}}
		return err
	}))
	t.Cleanup(func() {
		// Pins live in the host's bpffs: take them away before the namespace goes.
		if err := l.fw.Do(func() error { return l.prot.Remove("f0") }); err != nil && !errors.Is(err, ErrNotProtected) {
			t.Errorf("remove xsyn from f0: %v", err)
		}
	})
	t.Cleanup(func() {
		if t.Failed() {
			l.evidence(t)
		}
	})
	return l
}

// config parses a configuration written for the lab, with the firewall's stack defaults.
func (l *actionLab) config(t *testing.T, src string) spec.Spec {
	t.Helper()
	var s spec.Spec
	err := l.fw.Do(func() error {
		stack, err := host.LocalStack("f0")
		if err != nil {
			return err
		}
		cfg, err := spec.ParseConfig("actions.conf", []byte(src), &stack)
		if err != nil {
			return err
		}
		s, err = cfg.For("f0")
		return err
	})
	if err != nil {
		t.Fatalf("config:\n%s\n%v", src, err)
	}
	return s
}

func (l *actionLab) apply(t *testing.T, s spec.Spec, mode loader.Mode) *Result {
	t.Helper()
	var res *Result
	err := l.fw.Do(func() (err error) {
		res, err = l.prot.Apply("f0", s, mode)
		return err
	})
	if err != nil {
		t.Fatalf("apply (mode %s): %v", mode, err)
	}
	return res
}

// xdp returns the lab family's XDP counters of f0, or nil when no XDP program protects it.
func (l *actionLab) xdp(t *testing.T) *loader.Counters {
	t.Helper()
	st := l.status(t)
	if st.Counters == nil {
		return nil
	}
	c := st.Counters.IPv4
	if l.fam == spec.IPv6 {
		c = st.Counters.IPv6
	}
	return &c
}

// status is what protect reports of f0.
func (l *actionLab) status(t *testing.T) Status {
	t.Helper()
	var sts []Status
	err := l.fw.Do(func() (err error) {
		sts, err = l.prot.Statuses("f0")
		return err
	})
	if err != nil || len(sts) != 1 {
		t.Fatalf("status of f0: %+v, %v", sts, err)
	}
	return sts[0]
}

// synproxyStats are the firewall namespace's SYNPROXY counters, summed over CPUs.
type synproxyStats struct{ SynReceived, CookieInvalid, CookieValid, CookieRetrans, ConnReopened uint64 }

func (l *actionLab) synproxy(t *testing.T) synproxyStats {
	t.Helper()
	out, err := l.fw.Run("cat", "/proc/net/stat/synproxy")
	if err != nil {
		t.Fatal(err)
	}
	var s synproxyStats
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for _, line := range lines[1:] {
		f := strings.Fields(line)
		if len(f) != 6 {
			t.Fatalf("/proc/net/stat/synproxy: unexpected line %q", line)
		}
		var v [6]uint64
		for i := range f {
			if v[i], err = strconv.ParseUint(f[i], 16, 64); err != nil {
				t.Fatalf("/proc/net/stat/synproxy: %q: %v", line, err)
			}
		}
		s.SynReceived += v[1]
		s.CookieInvalid += v[2]
		s.CookieValid += v[3]
		s.CookieRetrans += v[4]
		s.ConnReopened += v[5]
	}
	return s
}

// snmp reads one counter of /proc/net/snmp (Tcp: PassiveOpens, ...) in h.
func snmp(t *testing.T, h *netlab.Host, proto, name string) uint64 {
	t.Helper()
	return procNetCounter(t, h, "/proc/net/snmp", proto, name)
}

// procNetCounter reads counter name of proto ("Tcp", "TcpExt") from file, /proc/net/snmp or
// /proc/net/netstat of h: a line of names, then a line of values.
func procNetCounter(t *testing.T, h *netlab.Host, file, proto, name string) uint64 {
	t.Helper()
	out, err := h.Run("cat", file)
	if err != nil {
		t.Fatal(err)
	}
	var hdr []string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != proto+":" {
			continue
		}
		if hdr == nil {
			hdr = f
			continue
		}
		for i, k := range hdr {
			if k == name && i < len(f) {
				v, _ := strconv.ParseUint(f[i], 10, 64)
				return v
			}
		}
	}
	t.Fatalf("%s %s not in %s of %s", proto, name, file, h.Name)
	return 0
}

func conntrackCount(t *testing.T, h *netlab.Host) int {
	t.Helper()
	out, err := h.Run("cat", "/proc/sys/net/netfilter/nf_conntrack_count")
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

var counted = regexp.MustCompile(`^\[(\d+):(\d+)\] (-A (\S+) .*)$`)

// ruleCounters returns the packet counter of every rule of the lab family's chains whose name
// starts with one of prefixes.
func (l *actionLab) ruleCounters(t *testing.T, prefixes ...string) map[string]uint64 {
	t.Helper()
	out, err := l.fw.Run(l.iptablesSave, "-c")
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]uint64{}
	for _, line := range strings.Split(out, "\n") {
		sm := counted.FindStringSubmatch(line)
		if sm == nil {
			continue
		}
		for _, p := range prefixes {
			if strings.HasPrefix(sm[4], p) {
				n, _ := strconv.ParseUint(sm[1], 10, 64)
				m[sm[3]] += n
			}
		}
	}
	return m
}

// evidence logs what the firewall's netfilter saw, for a failed test.
func (l *actionLab) evidence(t *testing.T) {
	for _, cmd := range [][]string{
		{"sh", "-c", l.iptablesSave + " -c | grep -vE '^(#|:)'"},
		{"cat", "/proc/net/stat/synproxy"},
		{"conntrack", "-L", "-f", map[spec.Family]string{spec.IPv4: "ipv4", spec.IPv6: "ipv6"}[l.fam]},
		{"nstat", "-as", "Tcp*", "Ip*", "Ip6*"}, // the non-zero ones: where the kernel dropped packets
	} {
		out, err := l.fw.Run(cmd[0], cmd[1:]...)
		t.Logf("firewall: %s (%v)\n%s", strings.Join(cmd, " "), err, out)
	}
	for _, h := range []*netlab.Host{l.cli, l.be} {
		out, err := h.Run("nstat", "-asz", "TcpPassiveOpens", "TcpActiveOpens", "TcpAttemptFails", "TcpEstabResets", "TcpExtTCPACKSkipped*", "TcpExtTCPChallengeACK", "TcpOutRsts", "TcpRetransSegs")
		t.Logf("%s: nstat (%v)\n%s", h.Name, err, out)
	}
}

// eventually polls cond until it holds, for at most 5 s (counters move asynchronously).
func eventually(cond func() bool) bool {
	return testutil.Wait(5*time.Second, func() error {
		if !cond() {
			return errors.New("not yet")
		}
		return nil
	}) == nil
}

// blob is the payload of one direction of exchange number i.
func blob(i int, dir byte, n int) []byte {
	b := make([]byte, n)
	for k := range b {
		b[k] = byte(k*7+i*13) ^ dir
	}
	return b
}

const blobSize = 48 << 10 // more than a window without scaling, many segments each way

// echoServer is a real server: it reads a line and a blob from each client, checks the blob,
// and answers with the addresses it sees, the line, and a blob of its own.
type echoServer struct {
	ln      net.Listener
	accepts atomic.Int64
	mu      sync.Mutex
	remotes []netip.Addr
	errs    []error
}

func serve(t *testing.T, h *netlab.Host, at netip.AddrPort) *echoServer {
	t.Helper()
	s := &echoServer{}
	err := h.Do(func() (err error) {
		s.ln, err = net.Listen("tcp", at.String())
		return err
	})
	if err != nil {
		t.Fatalf("listen on %s in %s: %v", at, h.Name, err)
	}
	t.Cleanup(func() { s.ln.Close() })
	go func() {
		for {
			c, err := s.ln.Accept()
			if err != nil {
				return
			}
			s.accepts.Add(1)
			go s.handle(c)
		}
	}()
	return s
}

func (s *echoServer) handle(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	remote := c.RemoteAddr().(*net.TCPAddr).AddrPort()
	s.mu.Lock()
	s.remotes = append(s.remotes, remote.Addr().Unmap())
	s.mu.Unlock()
	fail := func(err error) {
		s.mu.Lock()
		s.errs = append(s.errs, fmt.Errorf("server, connection from %s: %w", remote, err))
		s.mu.Unlock()
	}
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil {
		fail(err)
		return
	}
	var i int
	if _, err := fmt.Sscanf(line, "hello %d", &i); err != nil {
		fail(fmt.Errorf("line %q: %w", line, err))
		return
	}
	got := make([]byte, blobSize)
	if _, err := io.ReadFull(r, got); err != nil {
		fail(fmt.Errorf("read the client's data: %w", err))
		return
	}
	if !bytes.Equal(got, blob(i, 'c', blobSize)) {
		fail(errors.New("the client's data arrived corrupted"))
		return
	}
	local := c.LocalAddr().(*net.TCPAddr).AddrPort()
	fmt.Fprintf(c, "%s %s %d\n", netip.AddrPortFrom(remote.Addr().Unmap(), remote.Port()), netip.AddrPortFrom(local.Addr().Unmap(), local.Port()), i)
	if _, err := c.Write(blob(i, 's', blobSize)); err != nil {
		fail(err)
	}
}

func (s *echoServer) seen() ([]netip.Addr, []error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]netip.Addr(nil), s.remotes...), append([]error(nil), s.errs...)
}

// reply is what a client learnt from one exchange.
type reply struct {
	local          netip.AddrPort // the client's own end
	remote, server netip.AddrPort // the client's end and the server's end, as the server sees them
}

// exchange connects from h to addr, sends a line and a blob, and reads the server's answer and
// blob back, checking every byte.
func exchange(h *netlab.Host, addr netip.AddrPort, i int) (reply, error) {
	return exchangeFrom(h, 0, addr, i)
}

// exchangeFrom is exchange from source port from (0: the kernel's choice).
func exchangeFrom(h *netlab.Host, from uint16, addr netip.AddrPort, i int) (reply, error) {
	var rep reply
	err := h.Do(func() error {
		d := net.Dialer{Timeout: 5 * time.Second}
		if from != 0 {
			d.LocalAddr = &net.TCPAddr{Port: int(from)}
		}
		c, err := d.Dial("tcp", addr.String())
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		rep.local = c.LocalAddr().(*net.TCPAddr).AddrPort()
		if _, err := c.Write(append([]byte(fmt.Sprintf("hello %d\n", i)), blob(i, 'c', blobSize)...)); err != nil {
			return fmt.Errorf("send: %w", err)
		}
		r := bufio.NewReader(c)
		line, err := r.ReadString('\n')
		if err != nil {
			return fmt.Errorf("read the server's answer: %w", err)
		}
		var remote, server string
		var j int
		if _, err := fmt.Sscanf(line, "%s %s %d", &remote, &server, &j); err != nil || j != i {
			return fmt.Errorf("server answered %q (%v)", line, err)
		}
		if rep.remote, err = netip.ParseAddrPort(remote); err != nil {
			return err
		}
		if rep.server, err = netip.ParseAddrPort(server); err != nil {
			return err
		}
		got := make([]byte, blobSize)
		if _, err := io.ReadFull(r, got); err != nil {
			return fmt.Errorf("read the server's data: %w", err)
		}
		if !bytes.Equal(got, blob(i, 's', blobSize)) {
			return errors.New("the server's data arrived corrupted")
		}
		if n, err := r.Read(make([]byte, 1)); n != 0 || err != io.EOF {
			return fmt.Errorf("after the server's data: %d bytes, %v; want EOF", n, err)
		}
		return nil
	})
	return rep, err
}

// actionCase is one action of the configuration language.
type actionCase struct {
	name    string
	forward bool
	// stmt is the statement after synproxy4/synproxy6; dial where the client connects; server
	// where the real server listens.
	stmt   func(n labNet) string
	dial   func(n labNet) netip.AddrPort
	server func(l *actionLab) (*netlab.Host, netip.AddrPort)
	chain  bool // the statement jumps to MYCHAIN, which the test creates
	reject bool // the client completes the handshake with the proxy, then is reset
}

var actionCases = []actionCase{
	{
		name: "input-accept",
		stmt: func(n labNet) string { return fmt.Sprintf("input inface f0 dst %s dport 80 accept", n.fw.Addr()) },
		dial: func(n labNet) netip.AddrPort { return netip.AddrPortFrom(n.fw.Addr(), 80) },
		server: func(l *actionLab) (*netlab.Host, netip.AddrPort) {
			return l.fw, netip.AddrPortFrom(l.net.fw.Addr(), 80)
		},
	},
	{
		name: "input-redirect",
		stmt: func(n labNet) string {
			return fmt.Sprintf("input inface f0 dst %s dport 2200 redirect to 22", n.fw.Addr())
		},
		dial: func(n labNet) netip.AddrPort { return netip.AddrPortFrom(n.fw.Addr(), 2200) },
		// A service on every address of the firewall, as sshd usually is. (REDIRECT of a
		// locally generated packet, SYNPROXY's SYN, takes it to the loopback address.)
		server: func(l *actionLab) (*netlab.Host, netip.AddrPort) {
			if l.fam == spec.IPv6 {
				return l.fw, netip.AddrPortFrom(netip.IPv6Unspecified(), 22)
			}
			return l.fw, netip.AddrPortFrom(netip.IPv4Unspecified(), 22)
		},
	},
	{
		name:    "forward-dnat",
		forward: true,
		stmt: func(n labNet) string {
			return fmt.Sprintf("forward inface f0 dst %s dport 80 dnat to %s", n.virt, netip.AddrPortFrom(n.be.Addr(), 8080))
		},
		dial: func(n labNet) netip.AddrPort { return netip.AddrPortFrom(n.virt, 80) },
		server: func(l *actionLab) (*netlab.Host, netip.AddrPort) {
			return l.be, netip.AddrPortFrom(l.net.be.Addr(), 8080)
		},
	},
	{
		// FireHOL's DMZ form: the address the client asks for is the firewall's own, the
		// server is behind it. The client's packets pass INPUT, not FORWARD.
		name:    "forward-dnat-local",
		forward: true,
		stmt: func(n labNet) string {
			return fmt.Sprintf("forward inface f0 dst %s dport 80 dnat to %s", n.fw.Addr(), dnatAddr(n.be.Addr()))
		},
		dial: func(n labNet) netip.AddrPort { return netip.AddrPortFrom(n.fw.Addr(), 80) },
		server: func(l *actionLab) (*netlab.Host, netip.AddrPort) {
			return l.be, netip.AddrPortFrom(l.net.be.Addr(), 80)
		},
	},
	{
		// The same with redirect: the server is the firewall itself, which needs no routing.
		name: "forward-redirect-local",
		stmt: func(n labNet) string {
			return fmt.Sprintf("forward inface f0 dst %s dport 2200 redirect to 22", n.fw.Addr())
		},
		dial: func(n labNet) netip.AddrPort { return netip.AddrPortFrom(n.fw.Addr(), 2200) },
		server: func(l *actionLab) (*netlab.Host, netip.AddrPort) {
			if l.fam == spec.IPv6 {
				return l.fw, netip.AddrPortFrom(netip.IPv6Unspecified(), 22)
			}
			return l.fw, netip.AddrPortFrom(netip.IPv4Unspecified(), 22)
		},
	},
	{
		name:    "forward-accept",
		forward: true,
		stmt:    func(n labNet) string { return fmt.Sprintf("forward inface f0 dst %s dport 80 accept", n.be.Addr()) },
		dial:    func(n labNet) netip.AddrPort { return netip.AddrPortFrom(n.be.Addr(), 80) },
		server: func(l *actionLab) (*netlab.Host, netip.AddrPort) {
			return l.be, netip.AddrPortFrom(l.net.be.Addr(), 80)
		},
	},
	{
		name:  "input-chain",
		chain: true,
		stmt: func(n labNet) string {
			return fmt.Sprintf("input inface f0 dst %s dport 80 action MYCHAIN", n.fw.Addr())
		},
		dial: func(n labNet) netip.AddrPort { return netip.AddrPortFrom(n.fw.Addr(), 80) },
		server: func(l *actionLab) (*netlab.Host, netip.AddrPort) {
			return l.fw, netip.AddrPortFrom(l.net.fw.Addr(), 80)
		},
	},
	{
		name:   "input-reject",
		reject: true,
		stmt:   func(n labNet) string { return fmt.Sprintf("input inface f0 dst %s dport 80 reject", n.fw.Addr()) },
		dial:   func(n labNet) netip.AddrPort { return netip.AddrPortFrom(n.fw.Addr(), 80) },
		server: func(l *actionLab) (*netlab.Host, netip.AddrPort) {
			return l.fw, netip.AddrPortFrom(l.net.fw.Addr(), 80)
		},
	},
}

// dnatAddr is an address as "dnat to" takes it: IPv6 in brackets.
func dnatAddr(a netip.Addr) string {
	if a.Is6() {
		return "[" + a.String() + "]"
	}
	return a.String()
}

func famNum(f spec.Family) int {
	if f == spec.IPv6 {
		return 6
	}
	return 4
}

// TestActions runs every statement action, for both families, with XDP in front of SYNPROXY and
// with SYNPROXY alone.
func TestActions(t *testing.T) {
	for _, c := range actionCases {
		for _, fam := range families {
			for _, m := range modes {
				t.Run(fmt.Sprintf("%s/%s/%s", c.name, fam, m.name), func(t *testing.T) {
					testAction(t, c, fam, m.mode, m.want)
				})
			}
		}
	}
}

const clients = 5

func testAction(t *testing.T, c actionCase, fam spec.Family, mode loader.Mode, wantMode string) {
	l := newActionLab(t, fam, c.forward)
	n := l.net
	srvHost, srvAddr := c.server(l)
	srv := serve(t, srvHost, srvAddr)
	other := serve(t, l.fw, netip.AddrPortFrom(n.fw.Addr(), 9000)) // no statement names it
	ipt := map[spec.Family]string{spec.IPv4: "iptables", spec.IPv6: "ip6tables"}[fam]
	if c.chain {
		for _, args := range [][]string{{"-N", "MYCHAIN"}, {"-A", "MYCHAIN", "-j", "ACCEPT"}} {
			if _, err := l.fw.Run(ipt, append([]string{"-t", "filter"}, args...)...); err != nil {
				t.Fatal(err)
			}
		}
	}

	src := fmt.Sprintf("options notimestamps\nloopback strict\nsynproxy%d %s\n", famNum(fam), c.stmt(n))
	res := l.apply(t, l.config(t, src), mode)
	if res.Mode != wantMode {
		t.Fatalf("apply --mode %s: protecting in mode %q (%v), want %q", mode, res.Mode, res.Warnings, wantMode)
	}
	xdpOn := mode != ModeNetfilter

	sp0, xdp0 := l.synproxy(t), l.xdp(t)
	if xdpOn != (xdp0 != nil) {
		t.Fatalf("XDP counters %v in mode %s", xdp0, mode)
	}
	passive0 := snmp(t, srvHost, "Tcp", "PassiveOpens")

	if c.reject {
		testReject(t, l, c, srv)
		if d := snmp(t, srvHost, "Tcp", "PassiveOpens") - passive0; d != 0 {
			t.Errorf("reject: the server's TcpPassiveOpens +%d, want +0", d)
		}
	} else {
		for i := range clients {
			rep, err := exchange(l.cli, c.dial(n), i)
			if err != nil {
				t.Fatalf("client %d to %s: %v", i, c.dial(n), err)
			}
			serverOK := rep.server == srvAddr
			if srvAddr.Addr().IsUnspecified() { // a wildcard listener: a local address, the right port
				serverOK = rep.server.Port() == srvAddr.Port() && (rep.server.Addr() == n.loopback || rep.server.Addr() == n.fw.Addr())
			}
			if rep.remote != netip.AddrPortFrom(n.cli.Addr(), rep.local.Port()) || !serverOK {
				t.Errorf("client %d (%s) to %s: the server saw %s -> %s; want %s -> %s", i, rep.local, c.dial(n),
					rep.remote, rep.server, rep.local, srvAddr)
			}
		}
		if got := srv.accepts.Load(); got != clients {
			t.Errorf("server accepted %d connections, want %d", got, clients)
		}
		remotes, errs := srv.seen()
		for _, r := range remotes {
			if r != n.cli.Addr() {
				t.Errorf("server saw a connection from %s, want only the client %s", r, n.cli.Addr())
			}
		}
		for _, err := range errs {
			t.Error(err)
		}
		if d := snmp(t, srvHost, "Tcp", "PassiveOpens") - passive0; d != clients {
			t.Errorf("server's TcpPassiveOpens +%d, want +%d", d, clients)
		}
	}

	// Who answered the SYNs: XDP, or SYNPROXY itself. SYNPROXY validates every ACK either way.
	sp1 := l.synproxy(t)
	if xdpOn {
		var x1 *loader.Counters
		ok := eventually(func() bool {
			x1 = l.xdp(t)
			return x1.AckCookieValid-xdp0.AckCookieValid >= clients
		})
		if !ok || x1.SynackSent-xdp0.SynackSent != clients || x1.SynReceived-xdp0.SynReceived != clients {
			t.Errorf("XDP after %d connections: syn_received +%d, synack_sent +%d, ack_cookie_valid +%d; want +%d each",
				clients, x1.SynReceived-xdp0.SynReceived, x1.SynackSent-xdp0.SynackSent, x1.AckCookieValid-xdp0.AckCookieValid, clients)
		}
		if d := sp1.SynReceived - sp0.SynReceived; d != 0 {
			t.Errorf("SYNPROXY answered %d SYNs itself; with XDP in front it should answer none", d)
		}
	} else {
		if x := l.xdp(t); x != nil {
			t.Errorf("XDP counters in netfilter mode: %+v", *x)
		}
		if d := sp1.SynReceived - sp0.SynReceived; d != clients {
			t.Errorf("SYNPROXY answered %d SYNs, want %d (one per client)", d, clients)
		}
	}
	// A client's first data segments can reach SYNPROXY while it is still opening the server
	// side; it validates them again and counts them as retransmissions too.
	// (reject answers the client's ACK itself, without SYNPROXY: XDP checked the cookie above.)
	if d := (sp1.CookieValid - sp0.CookieValid) - (sp1.CookieRetrans - sp0.CookieRetrans); !c.reject && d != clients {
		t.Errorf("SYNPROXY validated %d cookies (%+v -> %+v), want %d (one per client)", d, sp0, sp1, clients)
	}
	if c.chain {
		got := l.ruleCounters(t, "MYCHAIN")
		if len(got) != 1 || got["-A MYCHAIN -j ACCEPT"] != clients {
			t.Errorf("MYCHAIN counters %v; want its one rule to have seen the %d SYNs SYNPROXY sent", got, clients)
		}
	}

	testUntouched(t, l, other, xdpOn)
	testFloods(t, l, c, srv, srvHost, xdpOn)
	if c.chain {
		if got := l.ruleCounters(t, "MYCHAIN")["-A MYCHAIN -j ACCEPT"]; got != clients {
			t.Errorf("MYCHAIN saw %d packets after the floods, want still %d", got, clients)
		}
	}
}

// testReject: each client completes its handshake with the proxy, then its connection is reset
// (the reset may arrive before connect returns, or on the first read) and never reaches the
// server, which accepts nothing. The reset must be one the client takes: its sequence number
// is the one after the proxy's SYN-ACK.
func testReject(t *testing.T, l *actionLab, c actionCase, srv *echoServer) {
	capt, err := l.cliL.Capture()
	if err != nil {
		t.Fatal(err)
	}
	defer capt.Close()
	type outcome struct {
		dialErr, readErr error
		n                int
		elapsed          time.Duration
	}
	const firstPort = 41000
	outs := make([]outcome, clients)
	var wg sync.WaitGroup
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o := &outs[i]
			start := time.Now()
			o.dialErr = l.cli.Do(func() error {
				d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{Port: firstPort + i}}
				conn, err := d.Dial("tcp", c.dial(l.net).String())
				if err != nil {
					return err
				}
				defer conn.Close()
				conn.SetDeadline(time.Now().Add(5 * time.Second))
				if _, err := fmt.Fprintf(conn, "hello %d\n", i); err != nil {
					o.readErr = err
				} else {
					o.n, o.readErr = conn.Read(make([]byte, 64))
				}
				return nil
			})
			o.elapsed = time.Since(start)
		}()
	}
	wg.Wait()
	for i, o := range outs {
		reset := errors.Is(o.dialErr, syscall.ECONNRESET) ||
			o.dialErr == nil && o.n == 0 && (errors.Is(o.readErr, syscall.ECONNRESET) || o.readErr == io.EOF)
		if !reset {
			t.Errorf("reject: client %d (port %d): connect: %v; read %d bytes: %v, after %v; want a reset (ECONNRESET or EOF)",
				i, firstPort+i, o.dialErr, o.n, o.readErr, o.elapsed.Round(time.Millisecond))
		}
	}
	if got := srv.accepts.Load(); got != 0 {
		t.Errorf("reject: the server accepted %d connections, want none", got)
	}

	// On the wire: a SYN-ACK from the proxy for every client, then a reset in its window.
	synack := map[uint16]uint32{}
	resets := map[uint16][]uint32{}
	for len(synack) < clients || len(resets) < clients {
		f, err := capt.Next(time.Second, func(b []byte) bool {
			p, err := packet.Parse(b)
			return err == nil && p.TCP != nil && p.TCP.DstPort >= firstPort && p.TCP.DstPort < firstPort+clients &&
				(p.TCP.Flags&packet.RST != 0 || p.TCP.Flags == packet.SYN|packet.ACK)
		})
		if err != nil {
			break
		}
		p, _ := packet.Parse(f)
		if p.TCP.Flags&packet.RST != 0 {
			resets[p.TCP.DstPort] = append(resets[p.TCP.DstPort], p.TCP.Seq)
		} else {
			synack[p.TCP.DstPort] = p.TCP.Seq
		}
	}
	for port := uint16(firstPort); port < firstPort+clients; port++ {
		isn, ok := synack[port]
		if !ok {
			t.Errorf("reject: client port %d got no SYN-ACK from the proxy", port)
			continue
		}
		if !slices.Contains(resets[port], isn+1) {
			t.Errorf("reject: client port %d: resets with sequence numbers %v; want one with %d, right after the proxy's SYN-ACK (%d)",
				port, resets[port], isn+1, isn)
		}
	}
}

func src(p *packet.Packet) netip.Addr {
	if p.IPv4 != nil {
		return p.IPv4.Src
	}
	return p.IPv6.Src
}

func dst(p *packet.Packet) netip.Addr {
	if p.IPv4 != nil {
		return p.IPv4.Dst
	}
	return p.IPv6.Dst
}

// testUntouched: a connection to a port no statement names works as without xsyn, and never
// touches xsyn's rules or SYNPROXY.
func testUntouched(t *testing.T, l *actionLab, other *echoServer, xdpOn bool) {
	rules0, sp0, xdp0 := l.ruleCounters(t, rules.ChainPrefix), l.synproxy(t), l.xdp(t)
	to := netip.AddrPortFrom(l.net.fw.Addr(), 9000)
	rep, err := exchange(l.cli, to, 100)
	if err != nil {
		t.Fatalf("unprotected port %s: %v", to, err)
	}
	if rep.remote.Addr() != l.net.cli.Addr() || other.accepts.Load() != 1 {
		t.Errorf("unprotected port: server saw %s, %d accepts", rep.remote, other.accepts.Load())
	}
	rules1, sp1 := l.ruleCounters(t, rules.ChainPrefix), l.synproxy(t)
	for r, n := range rules1 {
		if rules0[r] != n {
			t.Errorf("a connection to unprotected port 9000 hit xsyn's rule %d times: %s", n-rules0[r], r)
		}
	}
	if sp1 != sp0 {
		t.Errorf("a connection to unprotected port 9000 went through SYNPROXY: %+v -> %+v", sp0, sp1)
	}
	if xdpOn {
		var x1 *loader.Counters
		eventually(func() bool { x1 = l.xdp(t); return x1.PassNotProtected > xdp0.PassNotProtected })
		if x1.PassNotProtected == xdp0.PassNotProtected || x1.SynReceived != xdp0.SynReceived || x1.SynackSent != xdp0.SynackSent {
			t.Errorf("XDP for a connection to unprotected port 9000: pass_not_protected +%d, syn_received +%d, synack_sent +%d; want passed, not answered",
				x1.PassNotProtected-xdp0.PassNotProtected, x1.SynReceived-xdp0.SynReceived, x1.SynackSent-xdp0.SynackSent)
		}
	}
}

// floodFrames are n SYNs and n ACKs from random sources of the spoof prefix to addr.
func (l *actionLab) floodFrames(t *testing.T, to netip.AddrPort, n int, seed uint64) (syns, acks [][]byte) {
	t.Helper()
	fwMAC, cliMAC := mac(t, l.fwL.MAC), mac(t, l.cliL.MAC)
	rng := rand.New(rand.NewPCG(seed, 7))
	base := l.net.spoof.Addr().AsSlice()
	for i := range 2 * n {
		a := append([]byte(nil), base...)
		for j := l.net.spoof.Bits() / 8; j < len(a); j++ {
			a[j] |= byte(rng.IntN(256))
		}
		from, _ := netip.AddrFromSlice(a)
		tcp := &packet.TCP{SrcPort: uint16(1024 + rng.IntN(60000)), DstPort: to.Port(), Seq: rng.Uint32(), Ack: rng.Uint32(), Window: 64240}
		if i < n {
			tcp.Flags = packet.SYN
			if i%2 == 1 { // every other SYN Linux-like, the rest bare
				tcp.Options = packet.Options(packet.MSS(1460), packet.SACKPerm(), packet.Timestamp(rng.Uint32(), 0), packet.NOP(), packet.WScale(7))
			}
		} else {
			tcp.Flags = packet.ACK
		}
		f := packet.Frame{Dst: fwMAC, Src: cliMAC, TCP: tcp}
		if l.fam == spec.IPv4 {
			f.IPv4 = &packet.IPv4{Src: from, Dst: to.Addr(), TTL: 64, DF: true}
		} else {
			f.IPv6 = &packet.IPv6{Src: from, Dst: to.Addr(), HopLimit: 64}
		}
		if i < n {
			syns = append(syns, f.Bytes())
		} else {
			acks = append(acks, f.Bytes())
		}
	}
	return syns, acks
}

// ackVerdicts sums the packet counters of the rules in xsyn's SYNPROXY chains that answer an
// ACK with a reset, and of those that drop what conntrack does not know.
func (l *actionLab) ackVerdicts(t *testing.T) (rejects, drops uint64) {
	t.Helper()
	for r, n := range l.ruleCounters(t, rules.ChainPrefix+"IN-", rules.ChainPrefix+"FWD-") {
		switch {
		case strings.HasSuffix(r, "-j REJECT --reject-with tcp-reset"):
			rejects += n
		case strings.Contains(r, "--ctstate INVALID -m comment") && strings.HasSuffix(r, "-j DROP"):
			drops += n
		}
	}
	return rejects, drops
}

func mac(t *testing.T, s string) packet.MAC {
	t.Helper()
	m, err := packet.ParseMAC(s)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// testFloods: spoofed SYNs are all answered with cookies and forged ACKs all dropped, while the
// server accepts nothing and the firewall's conntrack table does not grow.
func testFloods(t *testing.T, l *actionLab, c actionCase, srv *echoServer, srvHost *netlab.Host, xdpOn bool) {
	const n = 3000
	syns, acks := l.floodFrames(t, c.dial(l.net), n, uint64(len(c.name)))
	accepts0, passive0 := srv.accepts.Load(), snmp(t, srvHost, "Tcp", "PassiveOpens")
	ct0 := conntrackCount(t, l.fw)
	sp0, xdp0 := l.synproxy(t), l.xdp(t)

	if _, err := l.cliL.Send(syns); err != nil {
		t.Fatal(err)
	}
	if xdpOn {
		var x *loader.Counters
		eventually(func() bool { x = l.xdp(t); return x.SynackSent-xdp0.SynackSent >= n })
		if d := x.SynackSent - xdp0.SynackSent; d != n {
			t.Errorf("SYN flood of %d: XDP sent %d cookie SYN-ACKs; want one per SYN", n, d)
		}
		if d := l.synproxy(t).SynReceived - sp0.SynReceived; d != 0 {
			t.Errorf("SYN flood: %d SYNs got past XDP to SYNPROXY", d)
		}
	} else {
		var sp synproxyStats
		eventually(func() bool { sp = l.synproxy(t); return sp.SynReceived-sp0.SynReceived >= n })
		if d := sp.SynReceived - sp0.SynReceived; d != n {
			t.Errorf("SYN flood of %d: SYNPROXY answered %d; want every one", n, d)
		}
	}
	sp1, xdp1 := l.synproxy(t), l.xdp(t)
	rejects0, drops0 := l.ackVerdicts(t)
	sent := time.Now()
	if _, err := l.cliL.Send(acks); err != nil {
		t.Fatal(err)
	}
	if !xdpOn && c.reject {
		// Without XDP nothing checks the cookie of an ACK before reject answers it: forged ACKs
		// get resets, as many as the rate limit lets out, and the rest are dropped.
		var rejects, drops uint64
		eventually(func() bool {
			rejects, drops = l.ackVerdicts(t)
			return rejects-rejects0+drops-drops0 >= n
		})
		limit := 200 + 100*uint64(time.Since(sent).Seconds()+1) // --limit-burst 200, --limit 100/sec
		if rejects-rejects0+drops-drops0 != n || rejects-rejects0 > limit {
			t.Errorf("forged-ACK flood of %d on reject: %d resets, %d dropped; want all %d accounted for, at most %d resets",
				n, rejects-rejects0, drops-drops0, n, limit)
		}
		t.Logf("forged-ACK flood of %d on reject without XDP: %d resets, %d dropped", n, rejects-rejects0, drops-drops0)
	} else if xdpOn {
		var x *loader.Counters
		eventually(func() bool { x = l.xdp(t); return x.AckCookieInvalid-xdp1.AckCookieInvalid >= n })
		if d := x.AckCookieInvalid - xdp1.AckCookieInvalid; d != n {
			t.Errorf("forged-ACK flood of %d: XDP dropped %d as bad cookies", n, d)
		}
		if sp := l.synproxy(t); sp.CookieInvalid != sp1.CookieInvalid || sp.CookieValid != sp1.CookieValid {
			t.Errorf("forged-ACK flood reached SYNPROXY past XDP: %+v -> %+v", sp1, sp)
		}
	} else {
		var sp synproxyStats
		eventually(func() bool { sp = l.synproxy(t); return sp.CookieInvalid-sp1.CookieInvalid >= n })
		if d := sp.CookieInvalid - sp1.CookieInvalid; d != n || sp.CookieValid != sp1.CookieValid {
			t.Errorf("forged-ACK flood of %d: SYNPROXY found %d bad and %d good cookies; want all bad", n, d, sp.CookieValid-sp1.CookieValid)
		}
	}

	if d := srv.accepts.Load() - accepts0; d != 0 {
		t.Errorf("floods: the server accepted %d connections", d)
	}
	if d := snmp(t, srvHost, "Tcp", "PassiveOpens") - passive0; d != 0 {
		t.Errorf("floods: the server's TcpPassiveOpens grew by %d", d)
	}
	if ct := conntrackCount(t, l.fw); ct > ct0+5 {
		t.Errorf("floods: the firewall's conntrack table grew from %d to %d entries", ct0, ct)
	}
}

// TestReload re-applies a changed configuration three times while clients connect without a
// pause; not one connection may fail, and the last configuration must be the one in force.
func TestReload(t *testing.T) {
	for _, fam := range families {
		for _, m := range modes {
			t.Run(fmt.Sprintf("%s/%s", fam, m.name), func(t *testing.T) { testReload(t, fam, m.mode, m.want) })
		}
	}
}

// reloadWorker connects to one port again and again until stopped.
type reloadWorker struct {
	port     uint16
	attempts atomic.Int64
	fails    atomic.Int64
}

func testReload(t *testing.T, fam spec.Family, mode loader.Mode, wantMode string) {
	l := newActionLab(t, fam, false)
	a := l.net.fw.Addr()
	for _, port := range []uint16{80, 81} {
		serve(t, l.fw, netip.AddrPortFrom(a, port))
	}
	conf := func(ports string, mss int) spec.Spec {
		return l.config(t, fmt.Sprintf("options mss %d notimestamps\nsynproxy%d input inface f0 dst %s dport %s accept\n",
			mss, famNum(fam), a, ports))
	}
	if res := l.apply(t, conf("80", 1400), mode); res.Mode != wantMode {
		t.Fatalf("apply --mode %s: mode %q (%v), want %q", mode, res.Mode, res.Warnings, wantMode)
	}
	prog := l.status(t).ProgID
	sp0 := l.synproxy(t)
	// Count SYNPROXY's (marked) SYNs to the server where they pass filter OUTPUT and where they
	// arrive, through lo: a SYN lost in between leaves its client hanging (its window is 0).
	mark := spec.DefaultSettings().MarkString()
	ipt := map[spec.Family]string{spec.IPv4: "iptables", spec.IPv6: "ip6tables"}[fam]
	for _, r := range [][]string{
		{"-I", "OUTPUT", "1", "-p", "tcp", "--tcp-flags", "FIN,SYN,RST,ACK", "SYN", "-m", "mark", "--mark", mark, "-m", "comment", "--comment", "test: marked SYN leaving"},
		{"-I", "INPUT", "1", "-i", "lo", "-p", "tcp", "--tcp-flags", "FIN,SYN,RST,ACK", "SYN", "-m", "mark", "--mark", mark, "-m", "comment", "--comment", "test: marked SYN arriving"},
	} {
		if _, err := l.fw.Run(ipt, r...); err != nil {
			t.Fatal(err)
		}
	}

	workers := []*reloadWorker{{port: 80}, {port: 81}}
	// Every connection from a source port of its own, below the ephemeral range: a reused
	// 4-tuple fails for a reason of its own (TestActionPortReuse), not because of a reload.
	var nextPort atomic.Uint32
	nextPort.Store(1024)
	var mu sync.Mutex
	var errs []error
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				from := nextPort.Add(1)
				if from >= 32768 {
					t.Errorf("more than %d connections: source ports would be reused", 32768-1024)
					return
				}
				rep, err := exchangeFrom(l.cli, uint16(from), netip.AddrPortFrom(a, w.port), i)
				if err == nil && rep.remote.Addr() != l.net.cli.Addr() {
					err = fmt.Errorf("the server saw %s", rep.remote)
				}
				w.attempts.Add(1)
				if err != nil {
					w.fails.Add(1)
					mu.Lock()
					errs = append(errs, fmt.Errorf("port %d, connection %d: %w", w.port, i, err))
					mu.Unlock()
				}
			}
		}()
	}
	stopped := false
	stopWorkers := func() {
		if !stopped {
			stopped = true
			close(stop)
			wg.Wait()
		}
	}
	defer stopWorkers()
	// progress waits until every worker has finished k more connections.
	progress := func(k int64) {
		t.Helper()
		for _, w := range workers {
			want := w.attempts.Load() + k
			deadline := time.Now().Add(30 * time.Second)
			for w.attempts.Load() < want {
				if time.Now().After(deadline) {
					t.Fatalf("clients of port %d stuck at %d connections", w.port, w.attempts.Load())
				}
				time.Sleep(5 * time.Millisecond)
			}
		}
	}

	progress(3)
	mss := []int{1300, 1250, 1200}
	for _, m := range mss {
		res := l.apply(t, conf("80,81", m), mode)
		if mode != ModeNetfilter && (!res.Reconfigured || res.Mode != wantMode) {
			t.Errorf("reload to mss %d: %+v; want the attached program reconfigured in place", m, res)
		}
		progress(3)
	}
	progress(5)
	stopWorkers()

	total := int64(0)
	for _, w := range workers {
		total += w.attempts.Load()
		if f := w.fails.Load(); f != 0 {
			t.Errorf("port %d: %d of %d connections failed during the reloads", w.port, f, w.attempts.Load())
		}
	}
	for i, err := range errs {
		if i == 5 {
			t.Errorf("... and %d more", len(errs)-5)
			break
		}
		t.Error(err)
	}
	t.Logf("%d connections during 3 reloads, %d failed", total, len(errs))
	var leaving, arriving uint64
	for r, n := range l.ruleCounters(t, "OUTPUT", "INPUT") {
		switch {
		case strings.Contains(r, "test: marked SYN leaving"):
			leaving = n
		case strings.Contains(r, "test: marked SYN arriving"):
			arriving = n
		}
	}
	if leaving != arriving {
		t.Errorf("%d of SYNPROXY's %d SYNs to the server passed filter OUTPUT's first rule but never reached the server "+
			"(dropped further down OUTPUT; xsyn's orphan rule drops a marked SYN that no action rule claims)",
			leaving-arriving, leaving)
	}

	// The last configuration is in force: XDP services, rules, and the SYN-ACK on the wire.
	last := uint16(mss[len(mss)-1])
	st := l.status(t)
	if mode != ModeNetfilter {
		if st.ProgID != prog {
			t.Errorf("program %d replaced by %d during reloads; want maps updated in place", prog, st.ProgID)
		}
		ports := map[uint16]uint16{}
		for _, svc := range st.Services {
			if svc.Family == fam {
				ports[svc.Port] = svc.Options.MSS
			}
		}
		if len(ports) != 2 || ports[80] != last || ports[81] != last {
			t.Errorf("XDP services after the reloads: port -> MSS %v; want 80 and 81 with MSS %d", ports, last)
		}
	} else if st.Counters != nil {
		t.Errorf("XDP attached in netfilter mode: %+v", st)
	}
	saved, err := l.fw.Run(l.iptablesSave)
	if err != nil {
		t.Fatal(err)
	}
	var synproxyRules []string
	for _, line := range strings.Split(saved, "\n") {
		if strings.Contains(line, "-j SYNPROXY") {
			synproxyRules = append(synproxyRules, line)
		}
	}
	if len(synproxyRules) != 1 || !bothPorts.MatchString(synproxyRules[0]) || !strings.Contains(synproxyRules[0]+" ", fmt.Sprintf(" --mss %d ", last)) {
		t.Errorf("SYNPROXY rules after the reloads:\n%s\nwant one, for ports 80,81 with --mss %d", strings.Join(synproxyRules, "\n"), last)
	}
	if got := l.synackMSS(t, netip.AddrPortFrom(a, 81)); got != last {
		t.Errorf("SYN-ACK for port 81 after the reloads announces MSS %d, want %d", got, last)
	}
	if d := l.synproxy(t).CookieValid - sp0.CookieValid; d == 0 {
		t.Errorf("SYNPROXY validated no cookie during %d connections to protected ports", total)
	}
}

// bothPorts: iptables writes ports 80 and 81 as a range, or a list.
var bothPorts = regexp.MustCompile(`--dports? 80[:,]81 `)

// synackMSS sends one SYN (from a flood source) to addr and returns the MSS option of the
// SYN-ACK that comes back to the client's link.
func (l *actionLab) synackMSS(t *testing.T, to netip.AddrPort) uint16 {
	t.Helper()
	capt, err := l.cliL.Capture()
	if err != nil {
		t.Fatal(err)
	}
	defer capt.Close()
	from := l.net.spoof.Addr().Next()
	f := packet.Frame{Dst: mac(t, l.fwL.MAC), Src: mac(t, l.cliL.MAC),
		TCP: &packet.TCP{SrcPort: 40000, DstPort: to.Port(), Seq: 1, Flags: packet.SYN, Window: 64240, Options: packet.MSS(1460)}}
	if l.fam == spec.IPv4 {
		f.IPv4 = &packet.IPv4{Src: from, Dst: to.Addr(), TTL: 64}
	} else {
		f.IPv6 = &packet.IPv6{Src: from, Dst: to.Addr(), HopLimit: 64}
	}
	if _, err := l.cliL.Send([][]byte{f.Bytes()}); err != nil {
		t.Fatal(err)
	}
	var mss uint16
	_, err = capt.Next(3*time.Second, func(b []byte) bool {
		p, err := packet.Parse(b)
		if err != nil || p.TCP == nil || p.TCP.DstPort != 40000 || p.TCP.Flags != packet.SYN|packet.ACK {
			return false
		}
		if o, ok := packet.LastOption(p.Options, packet.OptMSS); ok && len(o.Data) == 2 {
			mss = uint16(o.Data[0])<<8 | uint16(o.Data[1])
		}
		return true
	})
	if err != nil {
		t.Fatalf("SYN-ACK for %s: %v", to, err)
	}
	return mss
}

// TestLoopbackPolicy: redirect is only safe with the strict loopback policy. Any other policy is
// refused by the parser, by Compile and by Apply, and nothing is changed.
func TestLoopbackPolicy(t *testing.T) {
	for _, pol := range []spec.LoopbackPolicy{spec.LoopbackLoose, spec.LoopbackNone} {
		for _, m := range modes {
			t.Run(fmt.Sprintf("%s/%s", pol, m.name), func(t *testing.T) { testLoopbackPolicy(t, pol, m.mode) })
		}
	}
}

var netfilterCounters = regexp.MustCompile(`\[\d+:\d+\]`)

// netfilterState is everything xsyn could change in the firewall: both families' rules, the
// sysctls it sets, the XDP program of f0.
func (l *actionLab) netfilterState(t *testing.T) string {
	t.Helper()
	out, err := l.fw.Run("sh", "-c", "iptables-save; ip6tables-save; sysctl net.ipv4.conf.f0.route_localnet net.netfilter.nf_conntrack_tcp_loose net.ipv4.tcp_syncookies; ip -d link show f0")
	if err != nil {
		t.Fatal(err)
	}
	var keep []string
	for _, line := range strings.Split(out, "\n") {
		if !strings.HasPrefix(line, "#") {
			keep = append(keep, netfilterCounters.ReplaceAllString(line, "[-]"))
		}
	}
	return strings.Join(keep, "\n")
}

func testLoopbackPolicy(t *testing.T, pol spec.LoopbackPolicy, mode loader.Mode) {
	l := newActionLab(t, spec.IPv4, false)
	stmts := fmt.Sprintf("synproxy4 input inface f0 dst %s dport 2200 redirect to 22\nsynproxy6 input inface f0 dst %s dport 2200 redirect to 22\n",
		nets[spec.IPv4].fw.Addr(), nets[spec.IPv6].fw.Addr())
	names := func(err error) bool {
		return err != nil && errors.Is(err, spec.ErrInvalid) && strings.Contains(err.Error(), "loopback strict") && strings.Contains(err.Error(), pol.String())
	}
	before := l.netfilterState(t)

	// The parser refuses the combination, naming both policies.
	_, err := spec.ParseConfig("lo.conf", []byte("options notimestamps\nloopback "+pol.String()+"\n"+stmts), nil)
	if !names(err) {
		t.Errorf("ParseConfig with redirect and loopback %s: %v; want an error naming the policy", pol, err)
	}

	// So does Compile, for statements that did not come through the parser.
	cfg, err := spec.ParseConfig("lo.conf", []byte("options notimestamps\nloopback strict\n"+stmts), nil)
	if err != nil {
		t.Fatal(err)
	}
	set := cfg.Settings
	set.Loopback = pol
	if _, err := spec.Compile("f0", set, cfg.Statements); !names(err) {
		t.Errorf("Compile with redirect and loopback %s: %v; want an error naming the policy", pol, err)
	}

	// And Apply, for a Spec whose settings were changed after it was compiled.
	s, err := cfg.For("f0")
	if err != nil {
		t.Fatal(err)
	}
	s.Settings.Loopback = pol
	var res *Result
	err = l.fw.Do(func() (err error) {
		res, err = l.prot.Apply("f0", s, mode)
		return err
	})
	if !names(err) {
		t.Errorf("Apply (mode %s) with redirect and loopback %s: result %+v, error %v; want an error naming the policy", mode, pol, res, err)
	}
	if after := l.netfilterState(t); after != before {
		t.Errorf("a refused configuration changed the firewall:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// TestActionPortReuse: a client that connects again from the same source port while the
// server's side of its previous connection is in TIME_WAIT (the server closed first) must get
// through, as it does without xsyn: the kernel reopens a TIME_WAIT connection on a new SYN. In
// netfilter-only mode, conntrack's TIME_WAIT entry of the first connection must not rewrite
// SYNPROXY's cookie SYN-ACK (rules' XSYN-SAK chain; TestSynproxyPortReuse in rules).
func TestActionPortReuse(t *testing.T) {
	for _, fam := range families {
		for _, m := range append([]modeCase{{"without-xsyn", "", ""}}, modes...) {
			t.Run(fmt.Sprintf("%s/%s", fam, m.name), func(t *testing.T) { testPortReuse(t, fam, m.mode) })
		}
	}
}

func testPortReuse(t *testing.T, fam spec.Family, mode loader.Mode) {
	l := newActionLab(t, fam, false)
	to := netip.AddrPortFrom(l.net.fw.Addr(), 80)
	srv := serve(t, l.fw, to)
	if mode != "" {
		l.apply(t, l.config(t, fmt.Sprintf("options notimestamps\nsynproxy%d input inface f0 dst %s dport 80 accept\n", famNum(fam), to.Addr())), mode)
	}
	const from = 40000
	for i := range 2 {
		var rep reply
		var err error
		// The client's end of the previous connection may still be closing (LAST_ACK): wait
		// until the port can be bound again.
		eventually(func() bool {
			rep, err = exchangeFrom(l.cli, from, to, i)
			return !errors.Is(err, syscall.EADDRINUSE) && !errors.Is(err, syscall.EADDRNOTAVAIL)
		})
		if err != nil {
			t.Fatalf("connection %d from port %d: %v", i+1, from, err)
		}
		if rep.local.Port() != from || rep.remote.Addr() != l.net.cli.Addr() {
			t.Errorf("connection %d: from %s, the server saw %s", i+1, rep.local, rep.remote)
		}
		if i == 0 {
			if ss, err := l.fw.Run("ss", "-tan", "state", "time-wait", "sport", "= :80"); err != nil || !strings.Contains(ss, strconv.Itoa(from)) {
				t.Fatalf("the server's end of the first connection is not in TIME_WAIT (%v):\n%s", err, ss)
			}
		}
	}
	if got := srv.accepts.Load(); got != 2 {
		t.Errorf("server accepted %d connections, want 2", got)
	}
}
