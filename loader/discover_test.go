package loader

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/xsyn-project/xsyn/internal/netlab"
)

// withoutSysAdmin runs fn in h's namespace on a thread whose effective capabilities lack
// CAP_SYS_ADMIN, as a unit or container without it would (capabilities are per thread; the
// thread dies with Do's goroutine). It first checks that the kernel then refuses to open a
// program by id, so that what fn sees is what such a process sees.
func withoutSysAdmin(t *testing.T, h *netlab.Host, id ebpf.ProgramID, fn func() error) {
	t.Helper()
	err := h.Do(func() error {
		hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
		var data [2]unix.CapUserData
		if err := unix.Capget(&hdr, &data[0]); err != nil {
			return err
		}
		data[unix.CAP_SYS_ADMIN/32].Effective &^= 1 << (unix.CAP_SYS_ADMIN % 32)
		if err := unix.Capset(&hdr, &data[0]); err != nil {
			return err
		}
		if p, err := ebpf.NewProgramFromID(id); err == nil {
			p.Close()
			t.Errorf("program %d opened by id without CAP_SYS_ADMIN: the test proves nothing", id)
		} else if !errors.Is(err, os.ErrPermission) {
			t.Errorf("open program %d by id without CAP_SYS_ADMIN: %v, want a permission error", id, err)
		}
		return fn()
	})
	if err != nil {
		t.Fatal(err)
	}
}

// Held by a pinned link, the program and its maps are found through the pins: Open (read-only
// and for writing), Reconfigure, List and Detach work without CAP_SYS_ADMIN.
func TestOpenWithoutSysAdminPinned(t *testing.T) {
	l := newLab(t, "xsynca")
	opts := Options{BPFFS: bpffsForTest(t), Locks: t.TempDir()}
	a := inNS(t, l.dut, func() (*Attachment, error) { return Attach("d0", webSpec(t, 8080, 1400), opts) })
	a.Close()
	t.Cleanup(func() { l.dut.Do(func() error { return Detach("d0", opts) }) })

	withoutSysAdmin(t, l.dut, a.ProgID, func() error {
		for _, readOnly := range []bool{true, false} {
			o, err := Open("d0", readOnly, opts)
			if err != nil {
				t.Errorf("Open(readOnly=%v) without CAP_SYS_ADMIN: %v", readOnly, err)
				continue
			}
			if o.ProgID != a.ProgID || o.Holder != HolderLink || o.Dir != a.Dir || o.Mode != ModeNative {
				t.Errorf("Open(readOnly=%v) found %s; want program %d, native, held by the link in %s", readOnly, o, a.ProgID, a.Dir)
			}
			if svcs, err := o.Services(); err != nil || len(svcs) != 2 || svcs[0].Options.MSS != 1400 {
				t.Errorf("Services through the pins: %+v, %v; want the two attached services", svcs, err)
			}
			if _, err := o.Counters(); err != nil {
				t.Errorf("Counters through the pins: %v", err)
			}
			if !readOnly {
				if err := o.Reconfigure(webSpec(t, 8080, 1300)); err != nil {
					t.Errorf("Reconfigure through the pins: %v", err)
				}
			}
			o.Close()
		}
		if got, err := List(opts); err != nil || !slices.Equal(got, []string{"d0"}) {
			t.Errorf("List without CAP_SYS_ADMIN: %q, %v; want [d0]", got, err)
		}
		return nil
	})
	// Another tool's program where a bpffs is mounted (the client's pass program on c0) is not
	// xsyn's, which pins there: List leaves it out without an error, so an exporter without
	// CAP_SYS_ADMIN next to another XDP user does not fail every scrape.
	foreign := ebpf.ProgramID(xdpProgID(t, l.cli, "c0"))
	withoutSysAdmin(t, l.cli, foreign, func() error {
		if got, err := List(opts); err != nil || len(got) != 0 {
			t.Errorf("List beside another tool's program, without CAP_SYS_ADMIN: %q, %v; want none, no error", got, err)
		}
		return nil
	})
	if got := synackMSS(t, l, "192.0.2.2:8080"); got != 1300 {
		t.Errorf("after Reconfigure without CAP_SYS_ADMIN, SYN-ACK MSS = %d, want 1300", got)
	}

	withoutSysAdmin(t, l.dut, a.ProgID, func() error { return Detach("d0", opts) })
	if id := xdpProgID(t, l.dut, "d0"); id != 0 {
		t.Errorf("XDP program %d still on d0 after a detach without CAP_SYS_ADMIN", id)
	}
	if _, err := os.Stat(a.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state directory %s still there after a detach without CAP_SYS_ADMIN", a.Dir)
	}
}

// A program no pinned link holds may be xsyn's (held by netlink, as under `ip netns exec`) or
// another tool's. Without CAP_SYS_ADMIN that cannot be told, and every caller hears so
// (ErrUnknownProgram, naming the capability) instead of a wrong answer; nothing is changed.
// With it, the answer is the right one.
func TestOpenWithoutSysAdminUnpinned(t *testing.T) {
	l := newLab(t, "xsyncu")
	opts := Options{BPFFS: t.TempDir(), Locks: t.TempDir()} // not a bpffs: netlink holds it
	a := inNS(t, l.dut, func() (*Attachment, error) { return Attach("d0", webSpec(t, 8080, 0), opts) })
	a.Close()
	t.Cleanup(func() { l.dut.Do(func() error { return Detach("d0", opts) }) })
	foreign := ebpf.ProgramID(xdpProgID(t, l.cli, "c0")) // the client's pass program

	unknown := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, ErrUnknownProgram) || !errors.Is(err, os.ErrPermission) ||
			errors.Is(err, ErrForeignProgram) || errors.Is(err, ErrNotAttached) {
			t.Errorf("%s without CAP_SYS_ADMIN: %v; want ErrUnknownProgram (and a permission error), neither foreign nor not attached", what, err)
		}
	}
	withoutSysAdmin(t, l.dut, a.ProgID, func() error {
		_, err := Open("d0", true, opts)
		unknown("Open of xsyn's program held by netlink", err)
		got, err := List(opts)
		unknown("List", err)
		if len(got) != 0 {
			t.Errorf("List without CAP_SYS_ADMIN: %q; want none identified", got)
		}
		unknown("Detach", Detach("d0", opts))
		_, err = Attach("d0", webSpec(t, 8080, 0), opts)
		unknown("Attach over xsyn's program held by netlink", err)
		return nil
	})
	withoutSysAdmin(t, l.cli, foreign, func() error {
		_, err := Open("c0", true, opts)
		unknown("Open of another tool's program", err)
		_, err = Attach("c0", webSpec(t, 80, 0), opts)
		unknown("Attach over another tool's program", err)
		return nil
	})
	if id := xdpProgID(t, l.dut, "d0"); id != uint32(a.ProgID) {
		t.Errorf("d0 carries program %d after the refusals, want xsyn's %d", id, a.ProgID)
	}
	if id := xdpProgID(t, l.cli, "c0"); id != uint32(foreign) {
		t.Errorf("c0 carries program %d after the refusals, want the pass program %d", id, foreign)
	}

	// With CAP_SYS_ADMIN, each is told apart.
	o := inNS(t, l.dut, func() (*Attachment, error) { return Open("d0", true, opts) })
	if o.Holder != HolderNetlink || o.ProgID != a.ProgID {
		t.Errorf("Open found %s; want program %d held by netlink", o, a.ProgID)
	}
	o.Close()
	if got := inNS(t, l.dut, func() ([]string, error) { return List(opts) }); !slices.Equal(got, []string{"d0"}) {
		t.Errorf("List: %q, want [d0]", got)
	}
	if _, err := inNSErr(l.cli, func() (*Attachment, error) { return Open("c0", true, opts) }); !errors.Is(err, ErrForeignProgram) {
		t.Errorf("Open of another tool's program: %v, want ErrForeignProgram", err)
	}
	if got := inNS(t, l.cli, func() ([]string, error) { return List(opts) }); len(got) != 0 {
		t.Errorf("List in the client namespace: %q, want none (the pass program is not xsyn's)", got)
	}
}

// A state directory that lost a map pin: the link still proves the program is xsyn's, the
// missing map is opened by id (CAP_SYS_ADMIN), and without that capability the error says what
// is missing rather than calling the program unknown.
func TestOpenMissingMapPin(t *testing.T) {
	l := newLab(t, "xsyncm")
	opts := Options{BPFFS: bpffsForTest(t), Locks: t.TempDir()}
	a := inNS(t, l.dut, func() (*Attachment, error) { return Attach("d0", webSpec(t, 8080, 0), opts) })
	a.Close()
	t.Cleanup(func() { l.dut.Do(func() error { return Detach("d0", opts) }) })
	if err := os.Remove(filepath.Join(a.Dir, xsynMapXsynCounters)); err != nil {
		t.Fatal(err)
	}
	o := inNS(t, l.dut, func() (*Attachment, error) { return Open("d0", true, opts) })
	if o.Holder != HolderLink || o.Dir != a.Dir {
		t.Errorf("Open found %s; want the pinned link in %s", o, a.Dir)
	}
	if _, err := o.Counters(); err != nil {
		t.Errorf("Counters of the map opened by id: %v", err)
	}
	o.Close()
	withoutSysAdmin(t, l.dut, a.ProgID, func() error {
		_, err := Open("d0", true, opts)
		if !errors.Is(err, os.ErrPermission) || errors.Is(err, ErrUnknownProgram) {
			t.Errorf("Open without CAP_SYS_ADMIN and a map pin missing: %v; want a permission error naming the missing pins", err)
		}
		return nil
	})
}
