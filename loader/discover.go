package loader

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"

	"github.com/xsyn-project/xsyn/internal/host"
	"github.com/xsyn-project/xsyn/spec"
)

// Open finds xsyn's program on iface and its maps. The interface is the source of truth: the
// program id comes from netlink, so Open works from any mount namespace.
//
// The pins come first: when the interface's state directory holds a link whose program is the one
// on the interface (ids are unique, so that program is xsyn's), the maps come from the pins,
// read-only if readOnly. That needs no CAP_SYS_ADMIN. Otherwise (held by netlink, as under
// `ip netns exec`; pinned in a bpffs this mount namespace cannot see; a map pin missing) the
// program and its maps are opened by id, which the kernel allows CAP_SYS_ADMIN only: a process
// without it gets ErrUnknownProgram, never a guess (see unknownProgram).
func Open(iface string, readOnly bool, opts Options) (*Attachment, error) {
	opts = opts.withDefaults()
	l, err := host.Link(iface)
	if err != nil {
		return nil, err
	}
	xdp := l.Attrs().Xdp
	if xdp == nil || xdp.ProgId == 0 {
		return nil, fmt.Errorf("%w to %s", ErrNotAttached, iface)
	}
	a := &Attachment{Iface: iface, Ifindex: l.Attrs().Index, ProgID: ebpf.ProgramID(xdp.ProgId), Mode: attachedMode(xdp.AttachMode)}
	dir, where := pinDir(opts.BPFFS, iface)
	if lnk := pinnedLink(dir, a.ProgID); lnk != nil {
		a.lnk, a.Dir, a.Holder = lnk, dir, HolderLink
		if tc, err := link.LoadPinnedLink(filepath.Join(dir, tcLinkPin), nil); err == nil {
			a.tcLnk, a.Handoff = tc, true
		}
		if a.openPinnedMaps(dir, readOnly); a.maps.complete() {
			return a, nil
		}
	}

	// By id: the program, to tell whose it is and find its maps.
	p, info, err := programByID(iface, a.ProgID)
	switch {
	case errors.Is(err, os.ErrPermission) && a.lnk != nil:
		err = fmt.Errorf("open maps of %s: %s lacks some of xsyn's map pins, and opening the maps by id needs CAP_SYS_ADMIN: %w", iface, dir, err)
	case errors.Is(err, os.ErrPermission):
		err = unknownProgram(iface, a.ProgID, where, err)
	}
	if err != nil {
		a.Close()
		return nil, err
	}
	a.prog = p
	if a.lnk == nil {
		// Not pinned here: a link pinned in a bpffs this mount namespace cannot see, or netlink.
		a.Holder = HolderNetlink
		if lnk := findLink(a.ProgID); lnk != nil {
			a.lnk, a.Holder = lnk, HolderLink
		}
	}
	if err := a.openMapsByID(info); err != nil {
		a.Close()
		return nil, err
	}
	if a.tcLnk == nil {
		a.tcProg = handoffByID(a.Ifindex)
		a.Handoff = a.tcProg != nil
	}
	return a, nil
}

// handoffByID finds xsyn's handoff program among the programs attached to the interface's tcx
// ingress without a link (the netlink-held state), by name. Opening a program by id needs
// CAP_SYS_ADMIN, as the XDP program's does in that state.
func handoffByID(ifindex int) *ebpf.Program {
	res, err := link.QueryPrograms(link.QueryOptions{Target: ifindex, Attach: ebpf.AttachTCXIngress})
	if err != nil {
		return nil
	}
	for _, ap := range res.Programs {
		if _, viaLink := ap.LinkID(); viaLink {
			continue
		}
		p, err := ebpf.NewProgramFromID(ap.ID)
		if err != nil {
			continue
		}
		if info, err := p.Info(); err == nil && info.Name == handoffProgName {
			return p
		}
		p.Close()
	}
	return nil
}

// pinDir is the state directory of iface, "" when nothing can be pinned here (no bpffs at
// fsRoot, or no netns cookie). where says, for errors, where a pinned link was looked for.
func pinDir(fsRoot, iface string) (dir, where string) {
	root, ok, err := stateDirs(fsRoot)
	switch {
	case err != nil:
		return "", fmt.Sprintf("%s (%v)", fsRoot, err)
	case !ok:
		return "", fmt.Sprintf("%s (no bpffs mounted there)", fsRoot)
	}
	dir = filepath.Join(root, pinName(iface))
	return dir, dir
}

// pinnedLink returns the link pinned in dir if it holds program id, nil otherwise. A link holds
// exactly one program and program ids are never reused while the kernel runs, so a match proves
// the program on the interface is xsyn's without opening it by id. Links take no read-only open
// flag (EINVAL); reading their info needs none.
func pinnedLink(dir string, id ebpf.ProgramID) link.Link {
	if dir == "" {
		return nil
	}
	lnk, err := link.LoadPinnedLink(filepath.Join(dir, linkPin), nil)
	if err != nil {
		return nil
	}
	if info, err := lnk.Info(); err == nil && info.Program == id {
		return lnk
	}
	lnk.Close()
	return nil
}

// programByID opens program id on iface and checks that it is xsyn's (ErrForeignProgram if not).
// BPF_PROG_GET_FD_BY_ID is allowed to CAP_SYS_ADMIN only: without it the error wraps
// os.ErrPermission.
func programByID(iface string, id ebpf.ProgramID) (*ebpf.Program, *ebpf.ProgramInfo, error) {
	p, err := ebpf.NewProgramFromID(id)
	if err != nil {
		return nil, nil, fmt.Errorf("open program %d on %s: %w", id, iface, err)
	}
	info, err := p.Info()
	if err != nil {
		p.Close()
		return nil, nil, fmt.Errorf("read program %d on %s: %w", id, iface, err)
	}
	if info.Name != progName {
		p.Close()
		return nil, nil, foreignProgram(iface, uint32(id), info.Name)
	}
	return p, info, nil
}

// identify tells whether program id on iface is xsyn's: nil if it is, an error wrapping
// ErrForeignProgram if it is another tool's, ErrUnknownProgram if this process cannot tell, or
// the error that kept it from looking.
func identify(iface string, id ebpf.ProgramID, fsRoot string) error {
	dir, where := pinDir(fsRoot, iface)
	if lnk := pinnedLink(dir, id); lnk != nil {
		lnk.Close()
		return nil
	}
	p, _, err := programByID(iface, id)
	if errors.Is(err, os.ErrPermission) {
		return unknownProgram(iface, id, where, err)
	}
	if err != nil {
		return err
	}
	p.Close()
	return nil
}

// unknownProgram is the error for a program that no pinned link of xsyn holds, when this process
// may not open it by id (CAP_SYS_ADMIN). It could be xsyn's, attached through netlink or pinned in
// a bpffs this mount namespace cannot see, or another tool's, and nothing else tells which: the
// error says so rather than guess either way.
func unknownProgram(iface string, id ebpf.ProgramID, where string, err error) error {
	return fmt.Errorf("%w to %s: program id %d is not held by a link xsyn pinned in %s: it is xsyn's, attached through netlink "+
		"(as under `ip netns exec`), or another tool's, and telling which means opening it by id, which needs CAP_SYS_ADMIN: %w",
		ErrUnknownProgram, iface, id, where, err)
}

func attachedMode(m uint32) Mode {
	switch m {
	case 1: // XDP_ATTACHED_DRV
		return ModeNative
	case 2: // XDP_ATTACHED_SKB
		return ModeGeneric
	case 3: // XDP_ATTACHED_HW
		return ModeOffload
	}
	return Mode(fmt.Sprintf("unknown(%d)", m))
}

func (a *Attachment) openPinnedMaps(dir string, readOnly bool) {
	for _, name := range mapNames {
		if m, err := ebpf.LoadPinnedMap(filepath.Join(dir, name), &ebpf.LoadPinOptions{ReadOnly: readOnly}); err == nil {
			*a.maps.slot(name) = m
		}
	}
}

// openMapsByID finds the maps through the program. Kernel map names are cut at 15 characters;
// all of xsyn's fit.
func (a *Attachment) openMapsByID(info *ebpf.ProgramInfo) error {
	ids, _ := info.MapIDs()
	for _, id := range ids {
		m, err := ebpf.NewMapFromID(id)
		if err != nil {
			return fmt.Errorf("open map %d of program %d: %w", id, a.ProgID, err)
		}
		mi, err := m.Info()
		if err != nil {
			m.Close()
			return fmt.Errorf("read map %d of program %d: %w", id, a.ProgID, err)
		}
		if slot := a.maps.slot(mi.Name); slot != nil && *slot == nil {
			*slot = m
		} else {
			m.Close()
		}
	}
	if !a.maps.complete() {
		return fmt.Errorf("program %d on %s lacks xsyn's maps: built by another xsyn version? detach and attach again", a.ProgID, a.Iface)
	}
	return nil
}

// findLink returns the XDP link that holds program id, wherever it is pinned.
func findLink(id ebpf.ProgramID) link.Link {
	it := new(link.Iterator)
	defer it.Close()
	for it.Next() {
		l := it.Take()
		if info, err := l.Info(); err == nil && info.Type == link.XDPType && info.Program == id {
			return l
		}
		l.Close()
	}
	return nil
}

// Reconfigure makes the program protect exactly s, by map updates: the program stays attached
// and services that remain are never missing.
func (a *Attachment) Reconfigure(s spec.Spec) error {
	if err := a.maps.apply(s); err != nil {
		return fmt.Errorf("reconfigure %s: %w", a.Iface, err)
	}
	// The interface's address again, in case it changed (a bond that failed over, say): the
	// program answers only SYNs sent to it. Only from the interface's own namespace, where its
	// index names it (the maps can be updated from anywhere).
	if l, err := netlink.LinkByIndex(a.Ifindex); err == nil && l.Attrs().Name == a.Iface {
		if err := a.maps.setInterface(l.Attrs().HardwareAddr); err != nil {
			return fmt.Errorf("reconfigure %s: %w", a.Iface, err)
		}
	}
	return nil
}

// Upgrade replaces the attached program with the one built into this binary, keeping the maps
// (configuration and counters). A pinned link swaps it atomically (link.Update); a netlink
// attachment is replaced in one netlink call.
func (a *Attachment) Upgrade() error {
	p, err := loadProgram(a.maps.byName(), a.Handoff)
	if err != nil {
		return err
	}
	defer p.Close()
	if a.Handoff {
		if err := a.upgradeHandoff(p.objs.XsynHandoff); err != nil {
			return err
		}
	}
	if a.lnk != nil {
		if err := a.lnk.Update(p.objs.Xsyn); err != nil {
			return fmt.Errorf("upgrade program on %s: %w", a.Iface, err)
		}
	} else {
		l, err := netlink.LinkByIndex(a.Ifindex)
		if err != nil {
			return fmt.Errorf("upgrade program on %s: %w", a.Iface, err)
		}
		if err := netlink.LinkSetXdpFdWithFlags(l, p.objs.Xsyn.FD(), modeFlags(a.Mode)); err != nil {
			return fmt.Errorf("upgrade program on %s: %w", a.Iface, err)
		}
	}
	if info, err := p.objs.Xsyn.Info(); err == nil {
		a.ProgID, _ = info.ID()
	}
	return nil
}

// upgradeHandoff swaps the handoff program for tc in place.
func (a *Attachment) upgradeHandoff(tc *ebpf.Program) error {
	var err error
	switch {
	case a.tcLnk != nil:
		err = a.tcLnk.Update(tc)
	case a.tcProg != nil:
		err = link.RawAttachProgram(link.RawAttachProgramOptions{Target: a.Ifindex, Program: tc,
			Attach: ebpf.AttachTCXIngress, Anchor: link.ReplaceProgram(a.tcProg)})
	}
	if err != nil {
		return fmt.Errorf("upgrade the handoff program on %s: %w", a.Iface, err)
	}
	return nil
}

// Detach takes the lock, detaches (see NetnsLock.Detach) and releases it.
func Detach(iface string, opts Options) error {
	w, err := Lock(opts)
	if err != nil {
		return err
	}
	defer w.Unlock()
	return w.Detach(iface)
}

// Detach removes xsyn from iface: the program, its link and pins. Detaching an interface xsyn is
// not on returns ErrNotAttached (after removing any stale pins).
func (w *NetnsLock) Detach(iface string) error {
	var staleDir string
	if root, ok, err := stateDirs(w.opts.BPFFS); err == nil && ok {
		staleDir = filepath.Join(root, pinName(iface))
	}
	a, err := Open(iface, false, w.opts)
	if err != nil {
		if errors.Is(err, ErrNotAttached) || errors.Is(err, ErrNoInterface) {
			if staleDir != "" {
				if _, statErr := os.Stat(staleDir); statErr == nil {
					err := removePins(staleDir)
					removeIfEmpty(filepath.Dir(staleDir))
					return err
				}
			}
		}
		return err
	}
	defer a.Close()
	// The handoff first: without the XDP program in front it would still hand over ACKs, which
	// only XDP's cookies make valid, so nothing is lost either way, but no half stays behind.
	if err := a.detachHandoff(); err != nil {
		return err
	}
	if a.lnk != nil {
		// Detach explicitly: another process (an exporter) may still hold the link open.
		if raw, ok := a.lnk.(interface{ Detach() error }); ok {
			if err := raw.Detach(); err != nil {
				return fmt.Errorf("detach link from %s: %w", iface, err)
			}
		}
	} else {
		l, err := netlink.LinkByIndex(a.Ifindex)
		if err == nil {
			err = netlink.LinkSetXdpFdWithFlags(l, -1, modeFlags(a.Mode))
		}
		if err != nil {
			return fmt.Errorf("detach program from %s: %w", iface, err)
		}
	}
	if staleDir != "" {
		if err := removePins(staleDir); err != nil {
			return err
		}
		removeIfEmpty(filepath.Dir(staleDir))
	}
	return nil
}

// List returns the interfaces of this network namespace that carry xsyn's program: those whose
// program a link pinned in their state directory holds, and (opened by id, which needs
// CAP_SYS_ADMIN) those whose program is named xsyn. Without CAP_SYS_ADMIN, an XDP program that no
// pinned link holds is taken for another tool's where a bpffs is mounted (xsyn pins there);
// without a bpffs it cannot be told apart, and List returns the interfaces it did identify and
// an error wrapping ErrUnknownProgram that names the others.
func List(opts Options) ([]string, error) {
	opts = opts.withDefaults()
	links, err := netlink.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list interfaces: %w", err)
	}
	var out []string
	var unknown []error
	for _, l := range links {
		xdp := l.Attrs().Xdp
		if xdp == nil || xdp.ProgId == 0 {
			continue
		}
		name := l.Attrs().Name
		err := identify(name, ebpf.ProgramID(xdp.ProgId), opts.BPFFS)
		switch {
		case err == nil:
			out = append(out, name)
		case errors.Is(err, ErrUnknownProgram):
			// Where a bpffs is mounted xsyn always pins its link, so a program no pin of ours
			// holds is another tool's (Cilium's XDP on another NIC, say): an exporter without
			// CAP_SYS_ADMIN must not count it as an error at every scrape. Only without a
			// bpffs can it be xsyn's, attached through netlink.
			if dir, _ := pinDir(opts.BPFFS, name); dir == "" {
				unknown = append(unknown, err)
			}
		}
		// Anything else (another tool's program, one gone meanwhile) is not xsyn's.
	}
	if len(unknown) > 0 {
		return out, fmt.Errorf("list interfaces carrying xsyn: %w", errors.Join(unknown...))
	}
	return out, nil
}

// Counters reads the attachment's verdict counters, summed over CPUs.
func (a *Attachment) Counters() (FamilyCounters, error) { return readCounters(a.maps.counters) }

// ServiceCounters reads the counters of service id (see Services, ordered by id).
func (a *Attachment) ServiceCounters(id int) (ServiceCounters, error) {
	return readServiceCounters(a.maps.svcCounts, id)
}

// Services reads back what the program protects, ordered by service id.
func (a *Attachment) Services() ([]spec.Service, error) { return a.maps.services() }

// String is a one-line description for logs and errors.
func (a *Attachment) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: program %d, %s mode, held by %s", a.Iface, a.ProgID, a.Mode, a.Holder)
	if a.Dir != "" {
		fmt.Fprintf(&b, " (%s)", a.Dir)
	}
	return b.String()
}
