package host

import (
	"errors"
	"fmt"
	"net/netip"

	"golang.org/x/sys/unix"
)

// Listener is a TCP socket in LISTEN state.
type Listener struct {
	Addr      netip.Addr // unspecified for a wildcard listener
	Port      uint16
	DualStack bool // an IPv6 wildcard socket that also takes IPv4 (IPV6_V6ONLY off)
}

// Listeners asks the kernel (sock_diag) for the TCP sockets in LISTEN state of the calling
// thread's network namespace. Unlike /proc/net/tcp6, sock_diag says whether an IPv6 socket is
// IPv6-only, so a [::] listener is known to take IPv4 or not.
func Listeners() ([]Listener, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return nil, fmt.Errorf("list listening sockets: open sock_diag: %w", err)
	}
	defer unix.Close(fd)
	var out []Listener
	for _, fam := range []uint8{unix.AF_INET, unix.AF_INET6} {
		err := dumpSockets(fd, fam, unix.IPPROTO_TCP, 1<<tcpListen, func(b []byte) error {
			d, err := parseDiagMsg(b)
			out = append(out, Listener{Addr: d.local.Addr(), Port: d.local.Port(), DualStack: d.dualStack})
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("list listening sockets: %w", err)
		}
	}
	return out, nil
}

// MPTCPListeners lists the MPTCP sockets in LISTEN state (Linux 5.11+ can say; older kernels and
// kernels without MPTCP have none to report, and get nil). The kernel cannot hand a connection
// to an MPTCP listener (bpf_sk_assign_tcp_reqsk refuses it), and Go's net.Listen, among others,
// listens with MPTCP by default where the kernel has it.
func MPTCPListeners() ([]Listener, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return nil, fmt.Errorf("list MPTCP listeners: open sock_diag: %w", err)
	}
	defer unix.Close(fd)
	var out []Listener
	for _, fam := range []uint8{unix.AF_INET, unix.AF_INET6} {
		err := dumpSockets(fd, fam, unix.IPPROTO_MPTCP, 1<<tcpListen, func(b []byte) error {
			d, err := parseDiagMsg(b)
			out = append(out, Listener{Addr: d.local.Addr(), Port: d.local.Port(), DualStack: d.dualStack})
			return err
		})
		switch {
		case errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP):
			return nil, nil // no MPTCP diag in this kernel: no MPTCP listeners to tell of
		case err != nil:
			return nil, fmt.Errorf("list MPTCP listeners: %w", err)
		}
	}
	return out, nil
}
