package loader

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/xsyn-project/xsyn/internal/netlab"
	"github.com/xsyn-project/xsyn/internal/packet"
	"github.com/xsyn-project/xsyn/internal/testutil"
	"github.com/xsyn-project/xsyn/spec"
)

// lab is a client and a device under test joined by one veth, both families.
type lab struct {
	cli, dut   *netlab.Host
	cliL, dutL *netlab.Link
}

var (
	cliAddr4 = netip.MustParsePrefix("192.0.2.1/24")
	dutAddr4 = netip.MustParsePrefix("192.0.2.2/24")
	cliAddr6 = netip.MustParsePrefix("2001:db8::1/64")
	dutAddr6 = netip.MustParsePrefix("2001:db8::2/64")
)

func requireRoot(t *testing.T) {
	t.Helper()
	testutil.RequireRoot(t, "network namespaces, XDP and bpffs")
}

func newLab(t *testing.T, prefix string) *lab {
	t.Helper()
	requireRoot(t)
	p := testutil.Pair(t, prefix, "c0", []netip.Prefix{cliAddr4, cliAddr6}, "d0", []netip.Prefix{dutAddr4, dutAddr6})
	return &lab{cli: p.Client, dut: p.Server, cliL: p.ClientLink, dutL: p.ServerLink}
}

func webSpec(t *testing.T, port uint16, mss int) spec.Spec {
	t.Helper()
	s, err := spec.Simple{Ports: []uint16{port}, MSS: mss, WScale: -1}.Build()
	if err == nil {
		// The SYNPROXY path: these tests have no netfilter and count the valid ACKs XDP passes.
		s, err = s.WithoutHandoff("loader tests of the SYNPROXY path")
	}
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// inNS runs fn in h's namespace and fails the test on error.
func inNS[T any](t *testing.T, h *netlab.Host, fn func() (T, error)) T {
	t.Helper()
	var out T
	if err := h.Do(func() (err error) { out, err = fn(); return err }); err != nil {
		t.Fatal(err)
	}
	return out
}

// synackMSS dials from the client and returns the MSS announced by the SYN-ACK it received, read
// off the wire at the client (checksums verified). No netfilter rules are installed at this level,
// so the server's stack resets the connection after the cookie ACK passes; that is expected here.
func synackMSS(t *testing.T, l *lab, addr string) uint16 {
	t.Helper()
	capt, err := l.cliL.Capture()
	if err != nil {
		t.Fatal(err)
	}
	defer capt.Close()
	ap := netip.MustParseAddrPort(addr)
	dialed := make(chan struct{})
	go l.cli.Do(func() error {
		defer close(dialed)
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err == nil {
			c.Close()
		}
		return nil
	})
	defer func() { <-dialed }()
	var got *packet.Packet
	_, err = capt.Next(3*time.Second, func(b []byte) bool {
		p, err := packet.Parse(b)
		if err != nil || p.TCP == nil || p.TCP.SrcPort != ap.Port() || p.TCP.Flags&0x12 != 0x12 {
			return false
		}
		got = p
		return true
	})
	if err != nil {
		t.Fatalf("SYN-ACK from %s: %v", addr, err)
	}
	mss, ok := packet.LastOption(got.Options, packet.OptMSS)
	if !ok || len(mss.Data) != 2 {
		t.Fatalf("SYN-ACK from %s has no MSS option: %+v", addr, got.Options)
	}
	return uint16(mss.Data[0])<<8 | uint16(mss.Data[1])
}

func TestAttachLifecycle(t *testing.T) {
	l := newLab(t, "xsynld")
	fsRoot := bpffsForTest(t)
	opts := Options{BPFFS: fsRoot, Locks: t.TempDir()}

	a := inNS(t, l.dut, func() (*Attachment, error) { return Attach("d0", webSpec(t, 8080, 1400), opts) })
	defer a.Close()
	if a.Mode != ModeNative || a.Holder != HolderLink {
		t.Fatalf("attached %s; want native mode held by a bpf link", a)
	}
	for _, pin := range append([]string{linkPin}, mapNames...) {
		if _, err := os.Stat(filepath.Join(a.Dir, pin)); err != nil {
			t.Errorf("pin %s missing: %v", pin, err)
		}
	}
	if _, err := inNSErr(l.dut, func() (*Attachment, error) { return Attach("d0", webSpec(t, 8080, 1400), opts) }); !errors.Is(err, ErrAlreadyAttached) {
		t.Fatalf("second Attach: got %v, want ErrAlreadyAttached", err)
	}

	if got := synackMSS(t, l, "192.0.2.2:8080"); got != 1400 {
		t.Errorf("IPv4 SYN-ACK MSS = %d, want 1400", got)
	}
	if got := synackMSS(t, l, "[2001:db8::2]:8080"); got != 1400 {
		t.Errorf("IPv6 SYN-ACK MSS = %d, want 1400", got)
	}
	// The client's ACK crosses the veth asynchronously: wait for it to be counted.
	c := waitCounters(t, a, func(c FamilyCounters) bool { return c.IPv4.AckCookieValid+c.IPv6.AckCookieValid >= 2 })
	for fam, fc := range map[string]Counters{"ipv4": c.IPv4, "ipv6": c.IPv6} {
		if fc.SynackSent != 1 || fc.SynReceived != 1 || fc.AckCookieValid != 1 {
			t.Errorf("%s counters = %+v; want exactly one SYN answered and one valid ACK", fam, fc)
		}
	}

	// Reconfigure in place: the next SYN-ACK carries the new MSS, the program id stays.
	re := inNS(t, l.dut, func() (*Attachment, error) { return Open("d0", false, opts) })
	defer re.Close()
	if re.ProgID != a.ProgID || re.Holder != HolderLink {
		t.Fatalf("Open found %s; want program %d held by the link", re, a.ProgID)
	}
	if err := re.Reconfigure(webSpec(t, 8080, 1300)); err != nil {
		t.Fatal(err)
	}
	if got := synackMSS(t, l, "192.0.2.2:8080"); got != 1300 {
		t.Errorf("after reconfigure, SYN-ACK MSS = %d, want 1300", got)
	}
	svcs, err := re.Services()
	if err != nil || len(svcs) != 2 || svcs[0].Options.MSS != 1300 {
		t.Errorf("Services() = %+v, %v; want the two reconfigured services", svcs, err)
	}

	// Upgrade swaps the program through the link; maps, and so counters, carry over.
	old := re.ProgID
	if err := re.Upgrade(); err != nil {
		t.Fatal(err)
	}
	up := inNS(t, l.dut, func() (*Attachment, error) { return Open("d0", true, opts) })
	defer up.Close()
	if up.Holder != HolderLink || up.Dir != a.Dir {
		t.Errorf("read-only Open found %s; want the pinned link in %s", up, a.Dir)
	}
	if up.ProgID == old {
		t.Errorf("program id still %d after upgrade", old)
	}
	if c2, _ := up.Counters(); c2.IPv4.SynackSent != 2 {
		t.Errorf("counters after upgrade: %+v; want the 2 IPv4 SYN-ACKs so far", c2.IPv4)
	}

	if err := l.dut.Do(func() error { return Detach("d0", opts) }); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(a.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state directory %s still there after detach", a.Dir)
	}
	if id := xdpProgID(t, l.dut, "d0"); id != 0 {
		t.Errorf("XDP program %d still on d0 after detach", id)
	}
	if err := l.dut.Do(func() error { return Detach("d0", opts) }); !errors.Is(err, ErrNotAttached) {
		t.Errorf("second Detach: %v, want ErrNotAttached", err)
	}
}

// Without a bpffs (as under `ip netns exec`), netlink holds the program and every command still
// finds it from the interface.
func TestAttachWithoutBPFFS(t *testing.T) {
	l := newLab(t, "xsynnl")
	opts := Options{BPFFS: t.TempDir(), Locks: t.TempDir()} // a plain directory: not a bpffs
	a := inNS(t, l.dut, func() (*Attachment, error) { return Attach("d0", webSpec(t, 8080, 0), opts) })
	a.Close() // the command exits: protection must stay
	if got := synackMSS(t, l, "192.0.2.2:8080"); got != 1460 {
		t.Errorf("SYN-ACK MSS = %d, want 1460", got)
	}
	o := inNS(t, l.dut, func() (*Attachment, error) { return Open("d0", true, opts) })
	defer o.Close()
	if o.Holder != HolderNetlink || o.Mode != ModeNative {
		t.Fatalf("Open found %s; want native, held by netlink", o)
	}
	if err := l.dut.Do(func() error { return Detach("d0", opts) }); err != nil {
		t.Fatal(err)
	}
	if id := xdpProgID(t, l.dut, "d0"); id != 0 {
		t.Errorf("XDP program %d still on d0", id)
	}
}

// Two namespaces with the same interface name keep separate state.
func TestAttachSameNameTwoNamespaces(t *testing.T) {
	l1 := newLab(t, "xsyn2a")
	l2 := newLab(t, "xsyn2b")
	opts := Options{BPFFS: bpffsForTest(t), Locks: t.TempDir()}
	a1 := inNS(t, l1.dut, func() (*Attachment, error) { return Attach("d0", webSpec(t, 8080, 1400), opts) })
	defer a1.Close()
	a2 := inNS(t, l2.dut, func() (*Attachment, error) { return Attach("d0", webSpec(t, 8080, 1300), opts) })
	defer a2.Close()
	if a1.Dir == a2.Dir {
		t.Fatalf("both namespaces pinned into %s", a1.Dir)
	}
	if err := l1.dut.Do(func() error { return Detach("d0", opts) }); err != nil {
		t.Fatal(err)
	}
	if got := synackMSS(t, l2, "192.0.2.2:8080"); got != 1300 {
		t.Errorf("second namespace lost its protection: SYN-ACK MSS %d", got)
	}
	if _, err := os.Stat(a2.Dir); err != nil {
		t.Errorf("second namespace's state gone: %v", err)
	}
}

func TestAttachRefusals(t *testing.T) {
	l := newLab(t, "xsynrf")
	opts := Options{BPFFS: bpffsForTest(t), Locks: t.TempDir()}
	_, err := inNSErr(l.dut, func() (*Attachment, error) { return Attach("nosuch0", webSpec(t, 80, 0), opts) })
	if !errors.Is(err, ErrNoInterface) {
		t.Errorf("unknown interface: %v, want ErrNoInterface", err)
	}
	// c0 carries the pass program: xsyn must neither replace it nor leave pins behind.
	_, err = inNSErr(l.cli, func() (*Attachment, error) { return Attach("c0", webSpec(t, 80, 0), opts) })
	if !errors.Is(err, ErrForeignProgram) {
		t.Errorf("foreign program: %v, want ErrForeignProgram", err)
	}
	if id := xdpProgID(t, l.cli, "c0"); id == 0 {
		t.Error("the foreign program was removed")
	}
	if _, err := inNSErr(l.dut, func() (*Attachment, error) { return Attach("d0", spec.Spec{}, opts) }); !errors.Is(err, spec.ErrNoServices) {
		t.Errorf("empty spec: %v, want spec.ErrNoServices", err)
	}
	if id := xdpProgID(t, l.dut, "d0"); id != 0 {
		t.Error("a refused attach left a program on d0")
	}
}

// waitCounters polls the counters until done says so (the readiness signal), for at most 5s.
func waitCounters(t *testing.T, a *Attachment, done func(FamilyCounters) bool) FamilyCounters {
	t.Helper()
	var c FamilyCounters
	// The caller checks the counters it gets and says what is wrong with them.
	_ = testutil.Wait(5*time.Second, func() error {
		var err error
		if c, err = a.Counters(); err != nil {
			t.Fatal(err)
		}
		if !done(c) {
			return errors.New("not yet")
		}
		return nil
	})
	return c
}

func inNSErr[T any](h *netlab.Host, fn func() (T, error)) (T, error) {
	var out T
	err := h.Do(func() (err error) { out, err = fn(); return err })
	return out, err
}

func xdpProgID(t *testing.T, h *netlab.Host, iface string) uint32 {
	t.Helper()
	return inNS(t, h, func() (uint32, error) {
		nl, err := netlink.LinkByName(iface)
		if err != nil || nl.Attrs().Xdp == nil {
			return 0, err
		}
		return nl.Attrs().Xdp.ProgId, nil
	})
}

// bpffsForTest mounts a private bpffs for one test, so tests never touch the host's pins.
func bpffsForTest(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := unix.Mount("bpf", dir, "bpf", 0, ""); err != nil {
		t.Fatalf("mount bpffs on %s: %v", dir, err)
	}
	t.Cleanup(func() { unix.Unmount(dir, syscall.MNT_DETACH) })
	return dir
}

// State left by a namespace deleted without a detach (its link now holds no device) is swept by
// the next attach; a detach removes the namespace's directory with its last interface.
func TestStaleStateSwept(t *testing.T) {
	requireRoot(t)
	opts := Options{BPFFS: bpffsForTest(t), Locks: t.TempDir()}
	gone, err := netlab.NewPair("xsynsw1", "c0", nil, "d0", nil)
	if err != nil {
		t.Fatal(err)
	}
	a := inNS(t, gone.Server, func() (*Attachment, error) { return Attach("d0", webSpec(t, 8080, 0), opts) })
	a.Close()
	staleDir := a.Dir
	gone.Close() // the namespace goes, without a detach
	if _, err := os.Stat(staleDir); err != nil {
		t.Fatalf("precondition: the dead namespace's state should still be there: %v", err)
	}
	// Namespaces are torn down asynchronously: wait until the device is gone from the link.
	testutil.Eventually(t, 10*time.Second, "the deleted namespace's link letting its device go", func() error {
		l, err := link.LoadPinnedLink(filepath.Join(staleDir, linkPin), nil)
		if err != nil {
			t.Fatal(err)
		}
		info, err := l.Info()
		l.Close()
		if err != nil {
			return err
		}
		if ifindex := info.XDP().Ifindex; ifindex != 0 {
			return fmt.Errorf("it holds ifindex %d", ifindex)
		}
		return nil
	})

	live := newLab(t, "xsynsw2")
	b := inNS(t, live.dut, func() (*Attachment, error) { return Attach("d0", webSpec(t, 8080, 0), opts) })
	defer b.Close()
	if _, err := os.Stat(filepath.Dir(staleDir)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state of a deleted namespace not swept: %s (%v)", staleDir, err)
	}
	if err := live.dut.Do(func() error { return Detach("d0", opts) }); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Dir(b.Dir)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("namespace directory %s left after its last detach", filepath.Dir(b.Dir))
	}
}
