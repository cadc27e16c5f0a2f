// Package netlab builds small labs of network namespaces joined by veth pairs, for xsyn's
// integration tests, demo and benchmarks. Everything it creates is named with a per-lab prefix
// and removed by Close, also after a failed setup.
package netlab

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Lab is a set of namespaces created together.
type Lab struct {
	prefix string
	mu     sync.Mutex
	hosts  []*Host
}

// Host is one network namespace of a lab.
type Host struct {
	Name string // namespace name, usable with `ip netns exec`
	ns   netns.NsHandle
}

// New starts a lab whose namespaces are named prefix-<host>. Names are short: interface and
// namespace names are limited (IFNAMSIZ 16). XSYN_LAB_TAG, when set, goes in front of every
// prefix, so that test runs of the same package from two checkouts at once (say, two worktrees)
// never take, or delete, each other's namespaces.
func New(prefix string) *Lab { return &Lab{prefix: os.Getenv("XSYN_LAB_TAG") + prefix} }

// Host creates a namespace with loopback up.
func (l *Lab) Host(name string) (*Host, error) {
	full := l.prefix + "-" + name
	if netns.DeleteNamed(full) != nil { // left over from a killed run
		// Still there, held in another mount namespace (a run killed under `ip netns exec`,
		// say): a name of this process's own, so a leftover never fails a later run.
		if _, err := os.Stat(filepath.Join("/run/netns", full)); err == nil {
			full = fmt.Sprintf("%s-%d-%s", l.prefix, os.Getpid(), name)
		}
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return nil, fmt.Errorf("get current netns: %w", err)
	}
	defer orig.Close()
	ns, err := netns.NewNamed(full) // also switches this thread into it
	if err != nil {
		return nil, fmt.Errorf("create netns %s: %w", full, err)
	}
	if err := netns.Set(orig); err != nil {
		return nil, fmt.Errorf("return to original netns: %w", err)
	}
	h := &Host{Name: full, ns: ns}
	l.mu.Lock()
	l.hosts = append(l.hosts, h)
	l.mu.Unlock()
	if err := h.Do(func() error {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		return netlink.LinkSetUp(lo)
	}); err != nil {
		return nil, fmt.Errorf("bring up lo in %s: %w", full, err)
	}
	return h, nil
}

// Close deletes every namespace of the lab (and with them their veths, rules and XDP programs).
func (l *Lab) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	var errs []error
	for _, h := range l.hosts {
		h.ns.Close()
		if err := netns.DeleteNamed(h.Name); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("delete netns %s: %w", h.Name, err))
		}
	}
	l.hosts = nil
	return errors.Join(errs...)
}

// Do runs fn on an OS thread switched into the host's namespace. Commands fn starts with
// os/exec inherit the namespace.
func (h *Host) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// The thread is not unlocked: it dies with the goroutine instead of returning to the
		// pool in a foreign namespace.
		if err := netns.Set(h.ns); err != nil {
			errc <- fmt.Errorf("enter netns %s: %w", h.Name, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// Run runs a command inside the namespace with `ip netns exec` and returns its combined output.
func (h *Host) Run(name string, args ...string) (string, error) {
	cmd := exec.Command("ip", append([]string{"netns", "exec", h.Name, name}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s in %s: %w: %s", name, strings.Join(args, " "), h.Name, err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// Link describes one end of a veth pair.
type Link struct {
	Host  *Host
	Name  string
	MAC   string
	Addrs []netip.Prefix
}

// Veth joins a and b with a veth pair named aName / bName, assigns the addresses and brings both
// ends up. Checksum offload is turned off on both ends so locally generated TCP leaves with a
// finished checksum (XDP sees packets as they are on the wire).
func Veth(a *Host, aName string, aAddrs []netip.Prefix, b *Host, bName string, bAddrs []netip.Prefix) (*Link, *Link, error) {
	err := a.Do(func() error {
		v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: aName}, PeerName: bName, PeerNamespace: netlink.NsFd(b.ns)}
		return netlink.LinkAdd(v)
	})
	if err != nil {
		return nil, nil, fmt.Errorf("create veth %s/%s: %w", aName, bName, err)
	}
	la, err := a.setupLink(aName, aAddrs)
	if err != nil {
		return nil, nil, err
	}
	lb, err := b.setupLink(bName, bAddrs)
	if err != nil {
		return nil, nil, err
	}
	return la, lb, nil
}

func (h *Host) setupLink(name string, addrs []netip.Prefix) (*Link, error) {
	out := &Link{Host: h, Name: name, Addrs: addrs}
	err := h.Do(func() error {
		l, err := netlink.LinkByName(name)
		if err != nil {
			return err
		}
		// No duplicate address detection for the link-local address either: until it is done
		// the link cannot send neighbour solicitations, and the first IPv6 packet routed out
		// of it waits about a second for its neighbour.
		if err := os.WriteFile("/proc/sys/net/ipv6/conf/"+name+"/accept_dad", []byte("0"), 0); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("turn off DAD on %s: %w", name, err)
		}
		for _, p := range addrs {
			a := &netlink.Addr{IPNet: prefixToIPNet(p)}
			if p.Addr().Is6() {
				a.Flags = unix.IFA_F_NODAD // usable at once, no duplicate address detection wait
			}
			if err := netlink.AddrAdd(l, a); err != nil {
				return fmt.Errorf("add %s: %w", p, err)
			}
		}
		if err := netlink.LinkSetUp(l); err != nil {
			return err
		}
		out.MAC = l.Attrs().HardwareAddr.String()
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("set up %s in %s: %w", name, h.Name, err)
	}
	if _, err := h.Run("ethtool", "-K", name, "tx", "off", "rx", "off"); err != nil {
		return nil, err
	}
	return out, nil
}

// Neighbor adds a permanent neighbour entry on l for addr -> mac, so floods need no ARP/ND.
func (l *Link) Neighbor(addr netip.Addr, mac string) error {
	_, err := l.Host.Run("ip", "neigh", "replace", addr.String(), "lladdr", mac, "dev", l.Name, "nud", "permanent")
	return err
}

// AttachPass attaches a minimal XDP program that passes everything. On a veth, frames sent with
// XDP_TX by the peer only arrive where the receiving end has an XDP program.
func (l *Link) AttachPass() error {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: "netlab_pass", Type: ebpf.XDP, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 2 /* XDP_PASS */), asm.Return()},
	})
	if err != nil {
		return fmt.Errorf("load pass program: %w", err)
	}
	defer prog.Close() // the interface keeps its own reference
	return l.Host.Do(func() error {
		nlink, err := netlink.LinkByName(l.Name)
		if err != nil {
			return err
		}
		return netlink.LinkSetXdpFdWithFlags(nlink, prog.FD(), nl.XDP_FLAGS_DRV_MODE)
	})
}

func prefixToIPNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}
