package intent

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/xsyn-project/xsyn/internal/host"
	"github.com/xsyn-project/xsyn/spec"
)

// ErrNoListeners: zero-config attach found nothing to protect.
var ErrNoListeners = errors.New("no TCP listener reachable on the interface")

// ListeningServices is what zero-config attach protects on iface: every TCP port listening on one
// of the interface's addresses or on a wildcard, as one service per (address of iface, port), with
// the options of the local stack. Listeners on other addresses (loopback included) are left
// alone. An IPv6 wildcard listener also covers IPv4 addresses when it is dual-stack.
func ListeningServices(ifaceAddrs []netip.Addr, ls []host.Listener, st spec.Stack) []spec.Service {
	type key struct {
		addr netip.Addr
		port uint16
	}
	seen := map[key]bool{}
	var out []spec.Service
	add := func(a netip.Addr, port uint16) {
		if seen[key{a, port}] {
			return
		}
		seen[key{a, port}] = true
		fam := spec.IPv4
		if a.Is6() {
			fam = spec.IPv6
		}
		out = append(out, spec.Service{Family: fam, Dst: netip.PrefixFrom(a, a.BitLen()), Port: port, Options: st.Options(fam), TTL: spec.DefaultTTL})
	}
	for _, l := range ls {
		for _, a := range ifaceAddrs {
			switch {
			case l.Addr == a:
			case l.Addr == netip.IPv4Unspecified() && a.Is4():
			case l.Addr == netip.IPv6Unspecified() && (a.Is6() || l.DualStack):
			default:
				continue
			}
			add(a, l.Port)
		}
	}
	slices.SortFunc(out, func(x, y spec.Service) int {
		if c := x.Dst.Addr().Compare(y.Dst.Addr()); c != 0 {
			return c
		}
		return int(x.Port) - int(y.Port)
	})
	return out
}

// ListeningSpec is ListeningServices for an interface of this namespace, read from the kernel,
// as `input accept` statements.
func ListeningSpec(iface string) (spec.Spec, error) {
	ifaceAddrs, err := host.Addrs(iface)
	if err != nil {
		return spec.Spec{}, err
	}
	if len(ifaceAddrs) == 0 {
		return spec.Spec{}, fmt.Errorf("%w: %s has no addresses; give --port (and --dst)", ErrNoListeners, iface)
	}
	ls, err := host.Listeners()
	if err != nil {
		return spec.Spec{}, err
	}
	st, err := host.LocalStack(iface)
	if err != nil {
		return spec.Spec{}, err
	}
	svcs := ListeningServices(ifaceAddrs, ls, st)
	if len(svcs) == 0 {
		return spec.Spec{}, fmt.Errorf("%w: nothing listens on the addresses of %s (%d listeners elsewhere, e.g. loopback); give --port", ErrNoListeners, iface, len(ls))
	}
	return spec.FromServices(spec.DefaultSettings(), iface, svcs)
}
