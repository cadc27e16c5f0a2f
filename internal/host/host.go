// Package host is what xsyn reads about the host it runs on, in the caller's network namespace:
// its interfaces and their addresses, the sockets listening and the connections established
// (sock_diag), whether conntrack tracks a connection, and what the local TCP stack offers
// (the interface MTU, the sysctls). It reads and never changes anything; the decisions made on
// these facts are the callers' (protect, intent, loader).
package host

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// ErrNoInterface: no such network interface in this network namespace. loader.ErrNoInterface is
// the same error.
var ErrNoInterface = errors.New("no such interface")

// Link looks iface up in this network namespace. A missing interface is ErrNoInterface, with
// what to do about it.
func Link(iface string) (netlink.Link, error) {
	l, err := netlink.LinkByName(iface)
	if err != nil {
		if errors.As(err, new(netlink.LinkNotFoundError)) || errors.Is(err, unix.ENODEV) {
			return nil, fmt.Errorf("%w: %q in this network namespace (see `ip link`)", ErrNoInterface, iface)
		}
		return nil, fmt.Errorf("look up interface %q: %w", iface, err)
	}
	return l, nil
}

// Addrs are the addresses of iface, IPv4 ones unmapped.
func Addrs(iface string) ([]netip.Addr, error) {
	l, err := Link(iface)
	if err != nil {
		return nil, err
	}
	addrs, err := netlink.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("read addresses of %s: %w", iface, err)
	}
	var out []netip.Addr
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP); ok {
			out = append(out, ip.Unmap())
		}
	}
	return out, nil
}
