package loader

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// BPFFS is where xsyn pins its state when a bpffs is mounted there.
const BPFFS = "/sys/fs/bpf"

// LockDir holds the per-network-namespace lock files. /run is shared by `ip netns exec` (which
// only remounts /sys), so two commands for the same namespace meet there whichever way they
// entered it.
const LockDir = "/run/xsyn"

// Names of the pins in an interface's state directory. The map pins carry the map names.
const (
	linkPin   = "link"
	tcLinkPin = "tc-link" // the handoff program's tcx link
)

// netnsCookie identifies the network namespace this process runs in. Unlike an inode number, a
// cookie is never reused while the kernel runs, so state of a deleted namespace can never be
// mistaken for a new one's.
func netnsCookie() (uint64, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("open socket for netns cookie: %w", err)
	}
	defer unix.Close(fd)
	c, err := unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_NETNS_COOKIE)
	if err != nil {
		return 0, fmt.Errorf("read netns cookie (needs Linux 5.14): %w", err)
	}
	return c, nil
}

// isBPFFS tells whether path is a mounted bpffs.
func isBPFFS(path string) bool {
	var st unix.Statfs_t
	return unix.Statfs(path, &st) == nil && uint32(st.Type) == unix.BPF_FS_MAGIC
}

// stateDirs says where this namespace's interface state lives: <bpffs>/xsyn/netns-<cookie>/.
// ok is false when no bpffs is mounted at fsRoot (for example under `ip netns exec`, which mounts
// a fresh /sys): then nothing is pinned and the netlink attachment itself holds the program.
func stateDirs(fsRoot string) (dir string, ok bool, err error) {
	cookie, err := netnsCookie()
	if err != nil {
		return "", false, err
	}
	if !isBPFFS(fsRoot) {
		return "", false, nil
	}
	return filepath.Join(fsRoot, "xsyn", fmt.Sprintf("netns-%d", cookie)), true, nil
}

// lockNetns takes the writers' lock of this network namespace; unlock releases it.
func lockNetns(lockDir string) (unlock func(), err error) {
	cookie, err := netnsCookie()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(lockDir, 0o700); err != nil {
		return nil, fmt.Errorf("create lock directory: %w", err)
	}
	path := filepath.Join(lockDir, fmt.Sprintf("netns-%d.lock", cookie))
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock %s: %w", path, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}

// pinName is the state directory name for an interface. bpffs refuses names containing '.', which
// VLAN interfaces have (eth0.100); ':' can never be part of an interface name, so it stands in.
func pinName(iface string) string { return strings.ReplaceAll(iface, ".", ":") }

// sweepStale removes the state of interfaces whose link no longer holds a program on a device:
// the device or its namespace was deleted without a detach, which leaves the pinned link (and
// the maps it references) alive but useless. Directories of live links, and anything that
// cannot be read as xsyn state, are left alone.
func sweepStale(fsRoot string) {
	dirs, _ := filepath.Glob(filepath.Join(fsRoot, "xsyn", "netns-*", "*"))
	for _, dir := range dirs {
		if strings.HasPrefix(filepath.Base(dir), "tmp:") {
			continue // being built by a writer of that namespace
		}
		l, err := link.LoadPinnedLink(filepath.Join(dir, linkPin), nil)
		if err != nil {
			continue
		}
		info, err := l.Info()
		l.Close()
		if err == nil && info.XDP() != nil && info.XDP().Ifindex == 0 {
			removePins(dir)
			removeIfEmpty(filepath.Dir(dir))
		}
	}
}

// removeIfEmpty removes a namespace's state directory once its last interface is gone.
func removeIfEmpty(dir string) {
	if entries, err := os.ReadDir(dir); err == nil && len(entries) == 0 {
		os.Remove(dir)
	}
}

// removePins deletes a state directory and the pins in it (a pin is a file to unlink; the objects
// go when their last reference does).
func removePins(dir string) error {
	if err := os.RemoveAll(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove pins %s: %w", dir, err)
	}
	return nil
}
