package loader

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"

	"github.com/xsyn-project/xsyn/internal/host"
	"github.com/xsyn-project/xsyn/spec"
)

// Mode is how the program is attached: in the driver (native), or after the stack has built an
// skb (generic: works everywhere, much slower).
type Mode string

// Attach modes.
const (
	ModeAuto    Mode = "auto" // native if the driver supports it, else generic
	ModeNative  Mode = "native"
	ModeGeneric Mode = "generic"
	ModeOffload Mode = "offload" // reported only: xsyn never offloads
)

// ParseMode accepts auto, native and generic.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case ModeAuto, ModeNative, ModeGeneric:
		return m, nil
	}
	return "", fmt.Errorf("%w: mode %q: want auto, native or generic", ErrModeUnsupported, s)
}

// Holder says what keeps the program attached once the command that attached it has exited.
type Holder string

// Holders.
const (
	// HolderLink: a BPF link pinned in bpffs (<bpffs>/xsyn/netns-<cookie>/<iface>/link). Nothing
	// else can replace the program while the link exists, and upgrades swap it atomically.
	HolderLink Holder = "bpf-link"
	// HolderNetlink: the interface itself (classic netlink attachment), used when no bpffs is
	// mounted, e.g. under `ip netns exec`.
	HolderNetlink Holder = "netlink"
)

// progName is the name the kernel knows the program by (the function name in bpf/xsyn.c);
// handoffProgName the TC program's (the kernel keeps 15 characters).
const (
	progName        = "xsyn"
	handoffProgName = "xsyn_handoff"
)

// Options tune Attach.
type Options struct {
	Mode  Mode   // default ModeAuto
	BPFFS string // default BPFFS
	Locks string // default LockDir
	// Probe checks the kernel before attaching; default Probe. Tests stand in a kernel that
	// lacks a feature.
	Probe func() error
	// ProbeHandoff checks the kernel for the socket handoff; default ProbeHandoff.
	ProbeHandoff func() error
}

func (o Options) withDefaults() Options {
	if o.Mode == "" {
		o.Mode = ModeAuto
	}
	if o.BPFFS == "" {
		o.BPFFS = BPFFS
	}
	if o.Locks == "" {
		o.Locks = LockDir
	}
	if o.Probe == nil {
		o.Probe = Probe
	}
	if o.ProbeHandoff == nil {
		o.ProbeHandoff = ProbeHandoff
	}
	return o
}

// Attachment is xsyn's program on one interface, found from the interface itself.
type Attachment struct {
	Iface   string
	Ifindex int
	Mode    Mode   // native, generic (or offload)
	Holder  Holder // what keeps it attached
	Dir     string // pin directory, "" when held by netlink
	ProgID  ebpf.ProgramID
	Warning string // set when auto fell back to generic mode
	// Handoff: the TC program of the socket handoff is on the interface's ingress (tcx), beside
	// the XDP program. Attached wherever the kernel has the handoff.
	Handoff bool

	prog   *ebpf.Program
	maps   attachedMaps
	lnk    link.Link     // nil when held by netlink or not visible from here
	tcLnk  link.Link     // the handoff's tcx link, when held by a link
	tcProg *ebpf.Program // the handoff program, when attached without a link (netlink-held state)
}

type attachedMaps struct {
	configMaps
	counters *ebpf.Map
}

// mapNames are the program's maps, as pinned and as the kernel names them (all fit in the
// kernel's 15 characters).
var mapNames = []string{xsynMapXsynPorts, xsynMapXsynSvcs, xsynMapXsynServices4, xsynMapXsynServices6, xsynMapXsynCounters, xsynMapXsynSvcCounts, xsynMapXsynSecret, xsynMapXsynIface, xsynMapXsynOdRate, xsynMapXsynOdState}

func (m *attachedMaps) slot(name string) **ebpf.Map {
	switch name {
	case xsynMapXsynPorts:
		return &m.ports
	case xsynMapXsynSvcs:
		return &m.svcs
	case xsynMapXsynServices4:
		return &m.services4
	case xsynMapXsynServices6:
		return &m.services6
	case xsynMapXsynCounters:
		return &m.counters
	case xsynMapXsynSvcCounts:
		return &m.svcCounts
	case xsynMapXsynSecret:
		return &m.secret
	case xsynMapXsynIface:
		return &m.iface
	case xsynMapXsynOdRate:
		return &m.odRate
	case xsynMapXsynOdState:
		return &m.odState
	}
	return nil
}

func (m *attachedMaps) byName() map[string]*ebpf.Map {
	out := map[string]*ebpf.Map{}
	for _, n := range mapNames {
		out[n] = *m.slot(n)
	}
	return out
}

func (m *attachedMaps) complete() bool {
	for _, n := range mapNames {
		if *m.slot(n) == nil {
			return false
		}
	}
	return true
}

// Close releases this process's references; the attachment stays in the kernel.
func (a *Attachment) Close() error {
	var errs []error
	if a.lnk != nil {
		errs = append(errs, a.lnk.Close())
	}
	if a.tcLnk != nil {
		errs = append(errs, a.tcLnk.Close())
	}
	if a.tcProg != nil {
		errs = append(errs, a.tcProg.Close())
	}
	if a.prog != nil {
		errs = append(errs, a.prog.Close())
	}
	for _, m := range a.maps.byName() {
		if m != nil {
			errs = append(errs, m.Close())
		}
	}
	return errors.Join(errs...)
}

// NetnsLock is this network namespace's writers' lock, held: changes made through it never
// interleave with another xsyn process's. Callers that change more than the XDP side (rules,
// then XDP) hold one across all of it.
type NetnsLock struct {
	opts   Options
	unlock func()
}

// Lock waits for and takes the writers' lock of this network namespace.
func Lock(opts Options) (*NetnsLock, error) {
	opts = opts.withDefaults()
	unlock, err := lockNetns(opts.Locks)
	if err != nil {
		return nil, err
	}
	return &NetnsLock{opts: opts, unlock: unlock}, nil
}

// Unlock releases the lock.
func (w *NetnsLock) Unlock() { w.unlock() }

// Attach takes the lock, attaches (see NetnsLock.Attach) and releases it.
func Attach(iface string, s spec.Spec, opts Options) (*Attachment, error) {
	w, err := Lock(opts)
	if err != nil {
		return nil, err
	}
	defer w.Unlock()
	return w.Attach(iface, s, opts.Mode)
}

// Attach loads the program configured for s and attaches it to iface in the given mode, and
// where the kernel has the socket handoff, the TC program beside it (tcx ingress). It fails
// with ErrAlreadyAttached if xsyn is there already (use Open and Reconfigure), with
// ErrForeignProgram if another XDP program is, and with a *FeatureError if the kernel cannot run
// the XDP path, or s has handoff services and the kernel lacks the handoff. On any failure
// nothing is left attached or pinned.
func (w *NetnsLock) Attach(iface string, s spec.Spec, mode Mode) (*Attachment, error) {
	if mode == "" {
		mode = ModeAuto
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	// The SYNPROXY path's services need the kernel's cookie helpers and conntrack kfuncs; a spec
	// on the handoff path alone needs only what ProbeHandoff checks below (which implies every
	// XDP feature before 6.9), and no conntrack at all.
	// XXX: where nf_conntrack is a module nobody had loaded at this attach, the program's
	// conntrack kfuncs stay unresolved (weak); a later reconfiguration that adds SYNPROXY
	// statements then needs a detach and attach (or Upgrade) to resolve them.
	if !hasHandoff(s) || hasSynproxy(s) {
		if err := w.opts.Probe(); err != nil {
			return nil, err
		}
	}
	nlink, err := host.Link(iface)
	if err != nil {
		return nil, err
	}
	root, pinnable, err := stateDirs(w.opts.BPFFS)
	if err != nil {
		return nil, err
	}
	if err := checkFree(nlink, w.opts.BPFFS); err != nil {
		return nil, err
	}
	handoffErr := w.opts.ProbeHandoff()
	if handoffErr != nil && !errors.Is(handoffErr, ErrFeatureMissing) {
		return nil, handoffErr
	}
	if handoffErr != nil && hasHandoff(s) {
		return nil, fmt.Errorf("protect %s with the socket handoff: %w", iface, handoffErr)
	}
	if pinnable {
		sweepStale(w.opts.BPFFS)
	}

	p, err := loadProgram(nil, handoffErr == nil)
	if err != nil {
		return nil, err
	}
	a := &Attachment{Iface: iface, Ifindex: nlink.Attrs().Index, prog: p.objs.Xsyn}
	a.maps = attachedMaps{configMaps: p.configMaps(), counters: p.objs.XsynCounters}
	if p.handoff {
		a.tcProg = p.objs.XsynHandoff // the attachment's from here on (Close)
		p.objs.XsynHandoff = nil
	}
	fail := func(err error) (*Attachment, error) {
		a.detachHere()
		a.Close()
		return nil, err
	}
	if err := a.maps.apply(s); err != nil {
		return fail(fmt.Errorf("configure program: %w", err))
	}
	if err := a.maps.setInterface(nlink.Attrs().HardwareAddr); err != nil {
		return fail(err)
	}

	if err := a.attach(nlink, mode, pinnable); err != nil {
		return fail(err)
	}
	if a.tcProg != nil {
		if err := a.attachHandoff(pinnable); err != nil {
			return fail(err)
		}
	}
	if pinnable {
		a.Holder = HolderLink
		dir := filepath.Join(root, pinName(iface))
		if err := a.pin(root, dir); err != nil {
			return fail(err)
		}
		a.Dir = dir
	} else {
		a.Holder = HolderNetlink
	}
	if info, err := a.prog.Info(); err == nil {
		a.ProgID, _ = info.ID()
	}
	return a, nil
}

// checkFree fails if any XDP program, ours or another, is on the interface. Ours is recognised
// by its pinned link first, as Open does; any other program is opened by id (CAP_SYS_ADMIN).
func checkFree(l netlink.Link, fsRoot string) error {
	xdp := l.Attrs().Xdp
	if xdp == nil || xdp.ProgId == 0 {
		return nil
	}
	iface, id := l.Attrs().Name, xdp.ProgId
	err := identify(iface, ebpf.ProgramID(id), fsRoot)
	switch {
	case err == nil:
		return fmt.Errorf("%w to %s (program id %d)", ErrAlreadyAttached, iface, id)
	case errors.Is(err, ErrForeignProgram) || errors.Is(err, ErrUnknownProgram):
		return err
	}
	// Gone meanwhile, or unreadable: not known to be xsyn's, so not to be replaced.
	return foreignProgram(iface, id, "?")
}

func foreignProgram(iface string, id uint32, name string) error {
	return fmt.Errorf("%w to %s: program id %d (%q); xsyn will not replace it: remove it first (ip link set dev %s xdp off) or protect another interface",
		ErrForeignProgram, iface, id, name, iface)
}

// attach tries the modes the caller allows, native first.
func (a *Attachment) attach(l netlink.Link, mode Mode, viaLink bool) error {
	try := []Mode{mode}
	if mode == ModeAuto {
		try = []Mode{ModeNative, ModeGeneric}
	}
	var errs []error
	for _, m := range try {
		var err error
		if viaLink {
			flags := link.XDPDriverMode
			if m == ModeGeneric {
				flags = link.XDPGenericMode
			}
			a.lnk, err = link.AttachXDP(link.XDPOptions{Program: a.prog, Interface: a.Ifindex, Flags: flags})
		} else {
			flags := nl.XDP_FLAGS_UPDATE_IF_NOEXIST | nl.XDP_FLAGS_DRV_MODE
			if m == ModeGeneric {
				flags = nl.XDP_FLAGS_UPDATE_IF_NOEXIST | nl.XDP_FLAGS_SKB_MODE
			}
			err = netlink.LinkSetXdpFdWithFlags(l, a.prog.FD(), flags)
		}
		if err == nil {
			a.Mode = m
			if mode == ModeAuto && m == ModeGeneric {
				a.Warning = fmt.Sprintf("driver of %s has no native XDP (%v); attached in generic mode, which is much slower", a.Iface, errs[0])
			}
			return nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", m, err))
	}
	return fmt.Errorf("attach XDP to %s: %w", a.Iface, errors.Join(errs...))
}

// pin writes the link and maps into a temporary directory and renames it into place, so the
// state directory either does not exist or is complete.
func (a *Attachment) pin(root, dir string) error {
	if err := os.MkdirAll(root, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", root, err)
	}
	// A directory left by an interface that was deleted, or a namespace view that lost it.
	if err := removePins(dir); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(root, "tmp:"+pinName(a.Iface)+":") // no dots: bpffs refuses them
	if err != nil {
		return fmt.Errorf("create temporary state directory: %w", err)
	}
	defer removePins(tmp) // a no-op once renamed
	if err := a.lnk.Pin(filepath.Join(tmp, linkPin)); err != nil {
		return fmt.Errorf("pin link: %w", err)
	}
	if a.tcLnk != nil {
		if err := a.tcLnk.Pin(filepath.Join(tmp, tcLinkPin)); err != nil {
			return fmt.Errorf("pin tcx link: %w", err)
		}
	}
	for name, m := range a.maps.byName() {
		if err := m.Pin(filepath.Join(tmp, name)); err != nil {
			return fmt.Errorf("pin map %s: %w", name, err)
		}
	}
	if err := os.Rename(tmp, dir); err != nil {
		return fmt.Errorf("move state into %s: %w", dir, err)
	}
	return nil
}

// attachHandoff puts the handoff program on the interface's tcx ingress: through a link, pinned
// beside the XDP link, or (no bpffs) attached to the device itself, which then holds it as
// netlink holds the XDP program.
func (a *Attachment) attachHandoff(viaLink bool) error {
	if viaLink {
		l, err := link.AttachTCX(link.TCXOptions{Interface: a.Ifindex, Program: a.tcProg, Attach: ebpf.AttachTCXIngress})
		if err != nil {
			return fmt.Errorf("attach the handoff program to %s (tcx ingress): %w", a.Iface, err)
		}
		a.tcLnk = l
	} else {
		err := link.RawAttachProgram(link.RawAttachProgramOptions{Target: a.Ifindex, Program: a.tcProg, Attach: ebpf.AttachTCXIngress})
		if err != nil {
			return fmt.Errorf("attach the handoff program to %s (tcx ingress): %w", a.Iface, err)
		}
	}
	a.Handoff = true
	return nil
}

// detachHandoff takes the handoff program off the interface.
func (a *Attachment) detachHandoff() error {
	switch {
	case a.tcLnk != nil:
		if raw, ok := a.tcLnk.(interface{ Detach() error }); ok {
			if err := raw.Detach(); err != nil {
				return fmt.Errorf("detach the handoff program from %s: %w", a.Iface, err)
			}
		}
	case a.tcProg != nil && a.Handoff:
		err := link.RawDetachProgram(link.RawDetachProgramOptions{Target: a.Ifindex, Program: a.tcProg, Attach: ebpf.AttachTCXIngress})
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("detach the handoff program from %s: %w", a.Iface, err)
		}
	}
	a.Handoff = false
	return nil
}

func hasSynproxy(s spec.Spec) bool {
	for _, svc := range s.Services {
		if !svc.Handoff {
			return true
		}
	}
	return false
}

func hasHandoff(s spec.Spec) bool {
	for _, svc := range s.Services {
		if svc.Handoff {
			return true
		}
	}
	return false
}

// detachHere undoes this process's own attachment (used on failure paths).
func (a *Attachment) detachHere() {
	if a.Handoff {
		if a.tcLnk != nil {
			a.tcLnk.Unpin()
		}
		a.detachHandoff()
	}
	if a.lnk != nil {
		a.lnk.Unpin()
		a.lnk.Close()
		a.lnk = nil
		return
	}
	if a.Mode != "" {
		if l, err := netlink.LinkByIndex(a.Ifindex); err == nil {
			netlink.LinkSetXdpFdWithFlags(l, -1, modeFlags(a.Mode))
		}
	}
}

func modeFlags(m Mode) int {
	if m == ModeGeneric {
		return nl.XDP_FLAGS_SKB_MODE
	}
	return nl.XDP_FLAGS_DRV_MODE
}
