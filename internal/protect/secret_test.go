package protect

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/xsyn-project/xsyn/internal/cookie"
	"github.com/xsyn-project/xsyn/internal/host"
	"github.com/xsyn-project/xsyn/internal/netlab"
	"github.com/xsyn-project/xsyn/internal/packet"
	"github.com/xsyn-project/xsyn/internal/testutil"
	"github.com/xsyn-project/xsyn/loader"
	"github.com/xsyn-project/xsyn/rules"
	"github.com/xsyn-project/xsyn/spec"
)

// The handoff path's cookie secret end to end: hosts that share a key file serve one address
// between them, a rotation fails no handshake in flight, and a reload keeps the key that a
// re-attach replaces. Real namespaces, real listeners and clients, the XDP and TC programs as
// attach installs them.

// anycastNet is one family's addressing of the anycast lab (documentation prefixes only).
type anycastNet struct {
	client  netip.Addr   // on the client's loopback, reached over either link
	service netip.Addr   // owned by A and by B
	ca, a0  netip.Prefix // the client's link to A
	cb, b0  netip.Prefix // the client's link to B
}

var anycastNets = map[spec.Family]anycastNet{
	spec.IPv4: {
		client: netip.MustParseAddr("192.0.2.1"), service: netip.MustParseAddr("203.0.113.10"),
		ca: netip.MustParsePrefix("198.51.100.1/28"), a0: netip.MustParsePrefix("198.51.100.2/28"),
		cb: netip.MustParsePrefix("198.51.100.17/28"), b0: netip.MustParsePrefix("198.51.100.18/28"),
	},
	spec.IPv6: {
		client: netip.MustParseAddr("2001:db8:c::1"), service: netip.MustParseAddr("2001:db8:10::10"),
		ca: netip.MustParsePrefix("2001:db8:a::1/64"), a0: netip.MustParsePrefix("2001:db8:a::2/64"),
		cb: netip.MustParsePrefix("2001:db8:b::1/64"), b0: netip.MustParsePrefix("2001:db8:b::2/64"),
	},
}

// anycastLab: one client, two servers that own the same service address.
//
//	        (ca) ---- (a0) A   203.0.113.10, 2001:db8:10::10
//	client
//	        (cb) ---- (b0) B   203.0.113.10, 2001:db8:10::10
//
// The client's SYNs go to A and everything else it sends goes to B (a mark on pure SYNs, and a
// routing rule for the mark), as when a load balancer or ECMP moves a flow between its SYN and
// its ACK. A's SYN-ACK comes back over A's link.
type anycastLab struct {
	cli, a, b    *netlab.Host
	caL          *netlab.Link
	protA, protB *Protector
	keys         string // directory of the key files
}

func newAnycastLab(t *testing.T) *anycastLab {
	t.Helper()
	testutil.RequireRoot(t, "network namespaces, netfilter, XDP")
	handoffOrSkip(t)
	lab := testutil.Lab(t, fmt.Sprintf("xsynsec%d", os.Getpid()))
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	l := &anycastLab{keys: t.TempDir()}
	var err error
	l.cli, err = lab.Host("cli")
	must(err)
	l.a, err = lab.Host("a")
	must(err)
	l.b, err = lab.Host("b")
	must(err)
	addrs := func(f func(anycastNet) netip.Prefix, service bool) []netip.Prefix {
		var out []netip.Prefix
		for _, fam := range families {
			n := anycastNets[fam]
			out = append(out, f(n))
			if service {
				out = append(out, netip.PrefixFrom(n.service, n.service.BitLen()))
			}
		}
		return out
	}
	var cbL *netlab.Link
	l.caL, _, err = netlab.Veth(l.cli, "ca", addrs(func(n anycastNet) netip.Prefix { return n.ca }, false),
		l.a, "a0", addrs(func(n anycastNet) netip.Prefix { return n.a0 }, true))
	must(err)
	cbL, _, err = netlab.Veth(l.cli, "cb", addrs(func(n anycastNet) netip.Prefix { return n.cb }, false),
		l.b, "b0", addrs(func(n anycastNet) netip.Prefix { return n.b0 }, true))
	must(err)
	// A's SYN-ACKs leave a0 with XDP_TX: they only arrive where ca runs an XDP program.
	must(l.caL.AttachPass())
	must(cbL.AttachPass())

	run := func(h *netlab.Host, args ...string) {
		t.Helper()
		_, err := h.Run(args[0], args[1:]...)
		must(err)
	}
	// The SYN-ACK for a connection routed out of cb comes in on ca: no reverse-path filter.
	run(l.cli, "sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0",
		"net.ipv4.conf.ca.rp_filter=0", "net.ipv4.conf.cb.rp_filter=0")
	for _, fam := range families {
		n := anycastNets[fam]
		ip, iptables, bits := "-4", "iptables", "/32"
		if fam == spec.IPv6 {
			ip, iptables, bits = "-6", "ip6tables", "/128"
		}
		run(l.cli, "ip", ip, "addr", "add", n.client.String()+bits, "dev", "lo")
		run(l.cli, "ip", ip, "route", "add", n.service.String()+bits, "via", n.b0.Addr().String())
		run(l.cli, "ip", ip, "route", "add", n.service.String()+bits, "via", n.a0.Addr().String(), "table", "100")
		run(l.cli, "ip", ip, "rule", "add", "fwmark", "1", "table", "100")
		// ip rule cannot match TCP flags: mark the SYNs (retransmissions too), and mangle
		// OUTPUT routes them again by the mark.
		run(l.cli, iptables, "-t", "mangle", "-A", "OUTPUT", "-p", "tcp", "-d", n.service.String(),
			"--dport", strconv.Itoa(bannerPort), "--tcp-flags", "SYN,ACK,FIN,RST", "SYN", "-j", "MARK", "--set-mark", "1")
		run(l.a, "ip", ip, "route", "add", n.client.String()+bits, "via", n.ca.Addr().String())
		run(l.b, "ip", ip, "route", "add", n.client.String()+bits, "via", n.cb.Addr().String())
	}

	for _, s := range []struct {
		h     *netlab.Host
		p     **Protector
		iface string
	}{{l.a, &l.protA, "a0"}, {l.b, &l.protB, "b0"}} {
		must(s.h.Do(func() error {
			a, err := rules.NewApplier()
			*s.p = &Protector{Rules: a, Loader: loader.Options{Locks: t.TempDir()}}
			return err
		}))
		p := *s.p
		t.Cleanup(func() {
			// Pins live in the host's bpffs: take them away before the namespace goes.
			if err := s.h.Do(func() error { return p.Remove(s.iface) }); err != nil && !errors.Is(err, ErrNotProtected) {
				t.Errorf("remove xsyn from %s: %v", s.iface, err)
			}
		})
	}
	return l
}

// protect protects iface of h with the handoff for the service address, with the key of
// keyFile, as `xsyn attach IFACE --config FILE` does with a configuration that names it.
func (l *anycastLab) protect(t *testing.T, h *netlab.Host, p *Protector, iface, keyFile string) {
	t.Helper()
	v4, v6 := anycastNets[spec.IPv4].service, anycastNets[spec.IPv6].service
	conf := fmt.Sprintf("cookie-secret-file %s\nsynproxy in inface %s dst %s,%s dport %d path handoff accept\n",
		keyFile, iface, v4, v6, bannerPort)
	var res *Result
	err := h.Do(func() error {
		stack, err := host.LocalStack(iface)
		if err != nil {
			return err
		}
		cfg, err := spec.ParseConfig(iface+".conf", []byte(conf), &stack)
		if err != nil {
			return err
		}
		s, err := cfg.For(iface)
		if err != nil {
			return err
		}
		res, err = p.Apply(iface, withKeyFile(t, s), "native")
		return err
	})
	if err != nil {
		t.Fatalf("protect %s of %s:\n%s%v", iface, h.Name, conf, err)
	}
	for _, st := range res.Spec.Statements {
		if st.Path != spec.PathHandoff {
			t.Fatalf("%s: statement on the %s path (%s); want the handoff", iface, st.Path, st.PathReason)
		}
	}
	if len(res.Warnings) != 0 {
		t.Fatalf("%s: warnings %q", iface, res.Warnings)
	}
}

// hostCounters are fam's XDP counters of iface in h.
func hostCounters(t *testing.T, h *netlab.Host, p *Protector, iface string, fam spec.Family) loader.Counters {
	t.Helper()
	var sts []Status
	err := h.Do(func() (err error) { sts, err = p.Statuses(iface); return err })
	if err != nil || len(sts) != 1 || sts[0].Counters == nil {
		t.Fatalf("status of %s in %s: %+v, %v", iface, h.Name, sts, err)
	}
	if fam == spec.IPv6 {
		return sts[0].Counters.IPv6
	}
	return sts[0].Counters.IPv4
}

// TestCookieSecretShared: two hosts that share a secret file serve one address. The client's
// SYN goes to host A and everything else to host B; B's server accepts the connection, whose
// SYN-ACK A made with the shared key. With different secrets, B drops the ACK and counts it, and
// the client gets silence, not a reset.
func TestCookieSecretShared(t *testing.T) {
	l := newAnycastLab(t)
	shared := writeKeyFile(t, l.keys, "shared.key", randomKey(t))
	key, err := spec.ReadCookieKey(shared)
	if err != nil {
		t.Fatal(err)
	}
	srvA := serveBanner(t, l.a, bannerPort, false)
	srvB := serveBanner(t, l.b, bannerPort, false)
	l.protect(t, l.a, l.protA, "a0", shared)
	l.protect(t, l.b, l.protB, "b0", shared)
	synacks := captureOn(t, l.caL)

	for _, fam := range families {
		n := anycastNets[fam]
		to := netip.AddrPortFrom(n.service, bannerPort)
		a0 := hostCounters(t, l.a, l.protA, "a0", fam)
		b0 := hostCounters(t, l.b, l.protB, "b0", fam)
		accepted := len(srvB.accepted())

		if _, _, err := banner(l.cli, n.client, to); err != nil {
			t.Errorf("%s: a client of the shared address: %v", fam, err)
		}
		if sa := nextSynack(t, synacks, to); keyOf(sa, key) != 0 {
			t.Errorf("%s: A's SYN-ACK (ISN %#x) was not made with the shared key", fam, sa.TCP.Seq)
		}
		a := hostCounters(t, l.a, l.protA, "a0", fam)
		b := hostCounters(t, l.b, l.protB, "b0", fam)
		if d := a.SynackSent - a0.SynackSent; d != 1 || a.AckCookieValid != a0.AckCookieValid {
			t.Errorf("%s: A sent %d SYN-ACKs and saw %d ACKs; want the SYN-ACK only", fam, d, a.AckCookieValid-a0.AckCookieValid)
		}
		if b.SynReceived != b0.SynReceived || b.AckCookieValid-b0.AckCookieValid != 1 ||
			b.HandoffAssigned-b0.HandoffAssigned != 1 || b.AckCookieInvalid != b0.AckCookieInvalid || b.HandoffRefused != 0 {
			t.Errorf("%s: B's counters went from %+v to %+v; want no SYN, one valid ACK handed to the listener", fam, b0, b)
		}
		acc := srvB.accepted()
		if len(acc) != accepted+1 || acc[len(acc)-1].remote != n.client {
			t.Errorf("%s: B's server accepted %+v; want one more connection, from %s", fam, acc[accepted:], n.client)
		}
	}
	if acc := srvA.accepted(); len(acc) != 0 {
		t.Errorf("A's server accepted %d connections; A only ever sees SYNs", len(acc))
	}

	// B with a key of its own: a fresh attach, so no previous key is accepted beside it.
	if err := l.b.Do(func() error { return l.protB.Remove("b0") }); err != nil {
		t.Fatal(err)
	}
	l.protect(t, l.b, l.protB, "b0", writeKeyFile(t, l.keys, "other.key", randomKey(t)))
	for _, fam := range families {
		n := anycastNets[fam]
		to := netip.AddrPortFrom(n.service, bannerPort)
		b0 := hostCounters(t, l.b, l.protB, "b0", fam)
		accepted := len(srvB.accepted())

		_, _, err := banner(l.cli, n.client, to)
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("%s: a client of hosts with different keys: %v; want no banner and no reset", fam, err)
		}
		if sa := nextSynack(t, synacks, to); keyOf(sa, key) != 0 {
			t.Errorf("%s: A's SYN-ACK (ISN %#x) was not made with the shared key", fam, sa.TCP.Seq)
		}
		b := hostCounters(t, l.b, l.protB, "b0", fam)
		if b.AckCookieInvalid-b0.AckCookieInvalid != 1 || b.AckCookieValid != b0.AckCookieValid || b.HandoffAssigned != b0.HandoffAssigned {
			t.Errorf("%s: B's counters went from %+v to %+v; want the ACK counted invalid and nothing handed over", fam, b0, b)
		}
		if acc := srvB.accepted(); len(acc) != accepted {
			t.Errorf("%s: B's server accepted %+v with a key A does not have", fam, acc[accepted:])
		}
	}
	if acc := srvA.accepted(); len(acc) != 0 {
		t.Errorf("A's server accepted %d connections; A only ever sees SYNs", len(acc))
	}
}

// TestCookieSecretRotation: a handshake whose SYN-ACK carries the old key's cookie completes
// after a rotation, and a new connection gets the new key's. A key rotated out twice is not
// accepted any more: keys do not pile up.
func TestCookieSecretRotation(t *testing.T) {
	for _, fam := range families {
		t.Run(fam.String(), func(t *testing.T) { testCookieSecretRotation(t, fam) })
	}
}

func testCookieSecretRotation(t *testing.T, fam spec.Family) {
	l := newActionLab(t, fam, false)
	handoffOrSkip(t)
	srv := serveBanner(t, l.fw, bannerPort, false)
	to := netip.AddrPortFrom(l.net.fw.Addr(), bannerPort)
	dir := t.TempDir()
	var keys []spec.CookieKey
	apply := func(i int) {
		t.Helper()
		for len(keys) <= i {
			keys = append(keys, randomKey(t))
		}
		file := writeKeyFile(t, dir, fmt.Sprintf("k%d.key", i), keys[i])
		s := l.config(t, fmt.Sprintf("cookie-secret-file %s\nsynproxy%d input inface f0 dport %d path handoff accept\n", file, famNum(fam), bannerPort))
		res := l.apply(t, withKeyFile(t, s), "native")
		if res.Spec.Statements[0].Path != spec.PathHandoff || (i > 0) != res.Reconfigured {
			t.Fatalf("key %d applied %+v (reconfigured %v); want the handoff path, reconfigured after the first", i, res.Spec.Statements, res.Reconfigured)
		}
	}
	apply(0)

	held := holdHandshake(t, l.cli, l.cliL, fam, to)
	if k := keyOf(held.synack, keys[0]); k != 0 {
		t.Fatalf("the held handshake's SYN-ACK (ISN %#x) was not made with the first key", held.synack.TCP.Seq)
	}
	c0 := l.xdp(t)
	apply(1)
	if cur, prev := programSecret(t, l.status(t)); cur != keys[1] || prev != keys[0] {
		t.Errorf("after the rotation the program has key %x, previous %x; want %x, %x", cur, prev, keys[1], keys[0])
	}
	held.release()
	if err := held.finish(); err != nil {
		t.Errorf("the handshake in flight across the rotation: %v", err)
	}
	c := l.xdp(t)
	if c.AckCookieValid-c0.AckCookieValid != 1 || c.HandoffAssigned-c0.HandoffAssigned != 1 || c.AckCookieInvalid != c0.AckCookieInvalid {
		t.Errorf("counters went from %+v to %+v; want one valid ACK (the old key's) handed over", c0, c)
	}
	if !eventually(func() bool { return len(srv.accepted()) == 1 }) {
		t.Fatalf("the server accepted %d connections; want the held one", len(srv.accepted()))
	}

	// A new connection gets the new key's cookie.
	synacks := captureOn(t, l.cliL)
	if _, _, err := banner(l.cli, netip.Addr{}, to); err != nil {
		t.Errorf("a new connection after the rotation: %v", err)
	}
	if k := keyOf(nextSynack(t, synacks, to), keys[0], keys[1]); k != 1 {
		t.Errorf("a new connection's SYN-ACK was made with key %d; want the new key (1)", k)
	}
	if n := len(srv.accepted()); n != 2 {
		t.Errorf("the server accepted %d connections; want 2", n)
	}

	// Two rotations while a handshake with the second key is held: the second key is out of the
	// program, and its cookie, valid a moment ago, is an invalid one now.
	held = holdHandshake(t, l.cli, l.cliL, fam, to)
	if k := keyOf(held.synack, keys[0], keys[1]); k != 1 {
		t.Fatalf("the held handshake's SYN-ACK was made with key %d; want 1", k)
	}
	apply(2)
	apply(3)
	if cur, prev := programSecret(t, l.status(t)); cur != keys[3] || prev != keys[2] {
		t.Errorf("after two rotations the program has key %x, previous %x; want %x, %x", cur, prev, keys[3], keys[2])
	}
	c0 = l.xdp(t)
	held.release()
	if _, err := held.conn.Write([]byte("hello\n")); err != nil {
		t.Fatal(err)
	}
	if !eventually(func() bool { return l.xdp(t).AckCookieInvalid > c0.AckCookieInvalid }) {
		t.Errorf("counters went from %+v to %+v; want the ACK of a key rotated out twice counted invalid", c0, l.xdp(t))
	}
	if c := l.xdp(t); c.HandoffAssigned != c0.HandoffAssigned || c.AckCookieValid != c0.AckCookieValid {
		t.Errorf("counters went from %+v to %+v; a key rotated out twice handed a connection over", c0, c)
	}
	if n := len(srv.accepted()); n != 2 {
		t.Errorf("the server accepted %d connections; want the 2 before, not the one with a key rotated out", n)
	}
}

// TestCookieSecretKept: a reload without a key keeps the program's (random, or the one a file
// gave it), so the cookies already sent stay valid; a detach and attach makes a new one.
func TestCookieSecretKept(t *testing.T) {
	l, _, to := handoffLab(t, spec.IPv4, "native")
	conf := fmt.Sprintf("synproxy4 input inface f0 dport %d path handoff accept\n", bannerPort)
	var zero spec.CookieKey
	k0, prev := programSecret(t, l.status(t))
	if k0 == zero || prev != zero {
		t.Fatalf("a fresh program has key %x, previous %x; want a random one and none before it", k0, prev)
	}
	l.servedWith(t, to, k0)

	reload := func(s spec.Spec) {
		t.Helper()
		if res := l.apply(t, s, "native"); !res.Reconfigured {
			t.Fatalf("the reload attached again: %+v", res)
		}
	}
	reload(l.config(t, conf))
	if k, p := programSecret(t, l.status(t)); k != k0 || p != zero {
		t.Errorf("after a reload without a key the program has key %x, previous %x; want %x kept, no rotation", k, p, k0)
	}
	l.servedWith(t, to, k0)

	// A key from a file, then a configuration that names none: the file's key stays.
	named := randomKey(t)
	file := writeKeyFile(t, t.TempDir(), "named.key", named)
	reload(withKeyFile(t, l.config(t, "cookie-secret-file "+file+"\n"+conf)))
	reload(l.config(t, conf))
	if k, p := programSecret(t, l.status(t)); k != named || p != k0 {
		t.Errorf("after a key file and a reload without one the program has key %x, previous %x; want %x, %x", k, p, named, k0)
	}
	l.servedWith(t, to, named)

	if err := l.fw.Do(func() error { return l.prot.Remove("f0") }); err != nil {
		t.Fatal(err)
	}
	if res := l.apply(t, l.config(t, conf), "native"); res.Reconfigured {
		t.Fatalf("attach after detach reconfigured: %+v", res)
	}
	k1, p1 := programSecret(t, l.status(t))
	if k1 == zero || k1 == k0 || k1 == named || p1 != zero {
		t.Errorf("after detach and attach the program has key %x, previous %x; want a new random one (not %x or %x) and none before it", k1, p1, k0, named)
	}
	l.servedWith(t, to, k1)
}

// servedWith: a client of to gets the banner, over a SYN-ACK made with key.
func (l *actionLab) servedWith(t *testing.T, to netip.AddrPort, key spec.CookieKey) {
	t.Helper()
	synacks := captureOn(t, l.cliL)
	if _, _, err := banner(l.cli, netip.Addr{}, to); err != nil {
		t.Errorf("client: %v", err)
	}
	if sa := nextSynack(t, synacks, to); keyOf(sa, key) != 0 {
		t.Errorf("the SYN-ACK (ISN %#x) was not made with key %x", sa.TCP.Seq, key)
	}
}

// programSecret reads the cookie secret of the XDP program st reports, through the program's
// own maps (whether pinned or held by netlink): the key and the one it replaced. struct
// cookie_secret (bpf/maps.h) begins with both, each as SipHash's 16 key bytes in order; keyOf
// checks a SYN-ACK against what this returns, so a wrong reading cannot pass unnoticed.
func programSecret(t *testing.T, st Status) (key, prev spec.CookieKey) {
	t.Helper()
	prog, err := ebpf.NewProgramFromID(ebpf.ProgramID(st.ProgID))
	if err != nil {
		t.Fatalf("open program %d of %s: %v", st.ProgID, st.Iface, err)
	}
	defer prog.Close()
	info, err := prog.Info()
	if err != nil {
		t.Fatal(err)
	}
	ids, ok := info.MapIDs()
	if !ok {
		t.Fatal("the kernel does not list the program's maps")
	}
	for _, id := range ids {
		m, err := ebpf.NewMapFromID(id)
		if err != nil {
			t.Fatal(err)
		}
		mi, err := m.Info()
		if err != nil || mi.Name != "xsyn_secret" {
			m.Close()
			continue
		}
		defer m.Close()
		val := make([]byte, m.ValueSize())
		if len(val) < 32 {
			t.Fatalf("xsyn_secret values are %d bytes; want a key and a previous key", len(val))
		}
		if err := m.Lookup(uint32(0), val); err != nil {
			t.Fatal(err)
		}
		copy(key[:], val[:16])
		copy(prev[:], val[16:32])
		return key, prev
	}
	t.Fatalf("program %d has no map xsyn_secret", st.ProgID)
	return key, prev
}

// heldHandshake is a connection the client believes established while the server has seen its
// SYN only: the client's ACKs are dropped on their way out until release.
type heldHandshake struct {
	conn    net.Conn
	synack  *packet.Packet
	release func()
}

func holdHandshake(t *testing.T, h *netlab.Host, link *netlab.Link, fam spec.Family, to netip.AddrPort) *heldHandshake {
	t.Helper()
	iptables := "iptables"
	if fam == spec.IPv6 {
		iptables = "ip6tables"
	}
	rule := []string{"OUTPUT", "-p", "tcp", "-d", to.Addr().String(), "--dport", strconv.Itoa(int(to.Port())),
		"--tcp-flags", "SYN,ACK,FIN,RST", "ACK", "-j", "DROP"}
	if _, err := h.Run(iptables, append([]string{"-I"}, rule...)...); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	hs := &heldHandshake{release: func() {
		once.Do(func() {
			if _, err := h.Run(iptables, append([]string{"-D"}, rule...)...); err != nil {
				t.Error(err)
			}
		})
	}}
	t.Cleanup(hs.release)
	synacks := captureOn(t, link)
	err := h.Do(func() (err error) {
		d := net.Dialer{Timeout: 3 * time.Second}
		hs.conn, err = d.Dial("tcp", to.String())
		return err
	})
	if err != nil {
		t.Fatalf("dial %s with the ACKs held: %v", to, err)
	}
	t.Cleanup(func() { hs.conn.Close() })
	hs.synack = nextSynack(t, synacks, to)
	// The client answered the SYN-ACK before connect returned: its ACK is in the rule's count.
	if n := droppedBy(t, h, iptables, rule); n == 0 {
		t.Fatalf("the client's ACK did not meet the rule that holds it")
	}
	return hs
}

// finish sends the client's first data, which carries the ACK of the handshake (the one held
// was dropped), and reads the banner.
func (hs *heldHandshake) finish() error {
	if _, err := hs.conn.Write([]byte("hello\n")); err != nil {
		return err
	}
	hs.conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 64)
	n, err := io.ReadAtLeast(hs.conn, buf, len("SSH-2.0-"))
	if err != nil {
		return fmt.Errorf("read the banner: %w", err)
	}
	if !strings.HasPrefix(string(buf[:n]), "SSH-2.0-xsyn-test") {
		return fmt.Errorf("banner %q", buf[:n])
	}
	return nil
}

// droppedBy is the packet count of rule in h's filter table.
func droppedBy(t *testing.T, h *netlab.Host, iptables string, rule []string) uint64 {
	t.Helper()
	out, err := h.Run(iptables, "-t", "filter", "-L", rule[0], "-n", "-v", "-x")
	if err != nil {
		t.Fatal(err)
	}
	var n uint64
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) > 2 && f[2] == "DROP" && strings.Contains(line, "dpt:"+rule[6]) {
			v, err := strconv.ParseUint(f[0], 10, 64)
			if err != nil {
				t.Fatalf("%s -L: %q: %v", iptables, line, err)
			}
			n += v
		}
	}
	return n
}

func captureOn(t *testing.T, link *netlab.Link) *netlab.Capture {
	t.Helper()
	c, err := link.Capture()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// nextSynack is the next SYN-ACK from the server at from the capture holds.
func nextSynack(t *testing.T, c *netlab.Capture, from netip.AddrPort) *packet.Packet {
	t.Helper()
	var p *packet.Packet
	_, err := c.Next(3*time.Second, func(b []byte) bool {
		q, err := packet.Parse(b)
		if err != nil || q.TCP == nil || q.TCP.Flags&(packet.SYN|packet.ACK) != packet.SYN|packet.ACK ||
			src(q) != from.Addr() || q.TCP.SrcPort != from.Port() {
			return false
		}
		p = q
		return true
	})
	if err != nil {
		t.Fatalf("the SYN-ACK from %s: %v", from, err)
	}
	return p
}

// keyOf is the index of the key of keys that made the cookie of synack (its ISN, and its TSval
// when it carries timestamps), in this time slot or the one before, as internal/cookie predicts
// it; -1 when none did.
func keyOf(synack *packet.Packet, keys ...spec.CookieKey) int {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_TAI, &ts); err != nil {
		return -1
	}
	now := cookie.SlotOf(time.Unix(ts.Unix()))
	tcp := synack.TCP
	tsOpt, hasTS := packet.LastOption(synack.Options, packet.OptTimestamp)
	for i, k := range keys {
		for _, slot := range []uint32{now, now - 1} {
			// The client is the SYN's source: the SYN-ACK's destination.
			isn, tsBits := cookie.Make(k, dst(synack), src(synack), tcp.DstPort, tcp.SrcPort, tcp.Ack-1, slot, uint8(tcp.Seq))
			if isn == tcp.Seq && (!hasTS || len(tsOpt.Data) != 8 || tsOpt.Data[3] == tsBits) {
				return i
			}
		}
	}
	return -1
}

func randomKey(t *testing.T) spec.CookieKey {
	t.Helper()
	var k spec.CookieKey
	if _, err := rand.Read(k[:]); err != nil {
		t.Fatal(err)
	}
	return k
}

// writeKeyFile writes key into dir/name as an operator makes it: 32 hexadecimal digits and a
// newline, readable by root only.
func writeKeyFile(t *testing.T, dir, name string, key spec.CookieKey) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(hex.EncodeToString(key[:])+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// withKeyFile is s with the key of the file its configuration names, read as attach reads it
// (spec.ReadCookieKey).
func withKeyFile(t *testing.T, s spec.Spec) spec.Spec {
	t.Helper()
	if s.Settings.CookieSecretFile == "" {
		t.Fatal("the configuration names no cookie-secret-file")
	}
	k, err := spec.ReadCookieKey(s.Settings.CookieSecretFile)
	if err != nil {
		t.Fatal(err)
	}
	s.CookieKey = &k
	return s
}
