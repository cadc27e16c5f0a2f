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

	"github.com/xsyn-project/xsyn/spec"
)

// Open finds xsyn's program on iface and its maps. The interface is the source of truth: the
// program id comes from netlink, so Open works from any mount namespace, whether the program is
// held by a pinned link (maps then come from the pins, read-only if readOnly) or by netlink (maps
// come from the program's map ids).
func Open(iface string, readOnly bool, opts Options) (*Attachment, error) {
	opts = opts.withDefaults()
	l, err := lookupInterface(iface)
	if err != nil {
		return nil, err
	}
	xdp := l.Attrs().Xdp
	if xdp == nil || xdp.ProgId == 0 {
		return nil, fmt.Errorf("%w to %s", ErrNotAttached, iface)
	}
	a := &Attachment{Iface: iface, Ifindex: l.Attrs().Index, ProgID: ebpf.ProgramID(xdp.ProgId), Mode: attachedMode(xdp.AttachMode)}
	a.prog, err = ebpf.NewProgramFromID(a.ProgID)
	if err != nil {
		return nil, fmt.Errorf("open program %d on %s: %w", a.ProgID, iface, err)
	}
	info, err := a.prog.Info()
	if err != nil {
		a.Close()
		return nil, fmt.Errorf("read program %d on %s: %w", a.ProgID, iface, err)
	}
	if info.Name != progName {
		a.Close()
		return nil, foreignProgram(iface, uint32(a.ProgID), info.Name)
	}

	a.Holder = HolderNetlink
	if root, ok, err := stateDirs(opts.BPFFS); err == nil && ok {
		dir := filepath.Join(root, pinName(iface))
		// Links take no read-only open flag (EINVAL); reading their info needs none.
		if lnk, err := link.LoadPinnedLink(filepath.Join(dir, linkPin), nil); err == nil {
			if li, err := lnk.Info(); err == nil && li.Program == a.ProgID {
				a.lnk, a.Dir, a.Holder = lnk, dir, HolderLink
				a.openPinnedMaps(dir, readOnly)
			} else {
				lnk.Close()
			}
		}
	}
	if a.lnk == nil {
		// Not pinned here: a link pinned in a bpffs this mount namespace cannot see, or netlink.
		if lnk := findLink(a.ProgID); lnk != nil {
			a.lnk, a.Holder = lnk, HolderLink
		}
	}
	if !a.maps.complete() {
		if err := a.openMapsByID(info); err != nil {
			a.Close()
			return nil, err
		}
	}
	return a, nil
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
	return nil
}

// Upgrade replaces the attached program with the one built into this binary, keeping the maps
// (configuration and counters). A pinned link swaps it atomically (link.Update); a netlink
// attachment is replaced in one netlink call.
func (a *Attachment) Upgrade() error {
	p, err := loadProgram(a.maps.byName())
	if err != nil {
		return err
	}
	defer p.Close()
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

// Detach takes the lock, detaches (see Writer.Detach) and releases it.
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
func (w *Writer) Detach(iface string) error {
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

// List returns the interfaces of this network namespace that carry xsyn's program.
func List() ([]string, error) {
	links, err := netlink.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list interfaces: %w", err)
	}
	var out []string
	for _, l := range links {
		xdp := l.Attrs().Xdp
		if xdp == nil || xdp.ProgId == 0 {
			continue
		}
		p, err := ebpf.NewProgramFromID(ebpf.ProgramID(xdp.ProgId))
		if err != nil {
			continue
		}
		if info, err := p.Info(); err == nil && info.Name == progName {
			out = append(out, l.Attrs().Name)
		}
		p.Close()
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
