package protect

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"syscall"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/xsyn-project/xsyn/loader"
	"github.com/xsyn-project/xsyn/spec"
)

// Listener is a TCP socket in LISTEN state.
type Listener struct {
	Addr      netip.Addr // unspecified for a wildcard listener
	Port      uint16
	DualStack bool // an IPv6 wildcard socket that also takes IPv4 (IPV6_V6ONLY off)
}

// ErrNoListeners: zero-config attach found nothing to protect.
var ErrNoListeners = errors.New("no TCP listener reachable on the interface")

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

const (
	sockDiagByFamily = 20 // SOCK_DIAG_BY_FAMILY
	inetDiagV6Only   = 11 // INET_DIAG_SKV6ONLY
	tcpListen        = 10 // TCP_LISTEN
	inetDiagMsgLen   = 72 // struct inet_diag_msg
	// INET_DIAG_REQ_PROTOCOL: the request attribute for protocols that do not fit its byte.
	inetDiagReqProtocol = 3
)

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

// coversListener reports whether st's SYNs can reach listener l: its family, its port, its
// address. An IPv6 wildcard is taken to take IPv4 too (dual-stack, as Go's [::] listeners are):
// wrongly so, it costs a statement the handoff, not a client its connection.
func coversListener(st spec.Statement, l Listener) bool {
	if !slices.ContainsFunc(st.Match.Dport.Positive(), func(r spec.PortRange) bool { return r.Lo <= l.Port && l.Port <= r.Hi }) {
		return false
	}
	if l.Addr.IsUnspecified() {
		return (st.Family == spec.IPv4) == l.Addr.Is4() || st.Family == spec.IPv4
	}
	if (st.Family == spec.IPv4) != l.Addr.Is4() {
		return false
	}
	return slices.ContainsFunc(st.Match.Dst.Positive(st.Family), func(p netip.Prefix) bool { return p.Contains(l.Addr) })
}

// dumpSockets hands each struct inet_diag_msg of the sockets of family and protocol (TCP, or
// MPTCP) in one of states (a bit mask of TCP states) to fn.
func dumpSockets(fd int, family uint8, protocol int, states uint32, fn func([]byte) error) error {
	// nlmsghdr + struct inet_diag_req_v2 {family, protocol, ext, pad, states, inet_diag_sockid},
	// and for protocols above 255 (MPTCP) the attribute INET_DIAG_REQ_PROTOCOL carrying it.
	size := unix.NLMSG_HDRLEN + 56
	if protocol > 0xff {
		size += 8
	}
	req := make([]byte, size)
	binary.NativeEndian.PutUint32(req[0:], uint32(len(req)))
	binary.NativeEndian.PutUint16(req[4:], sockDiagByFamily)
	binary.NativeEndian.PutUint16(req[6:], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	r := req[unix.NLMSG_HDRLEN:]
	r[0], r[1] = family, byte(protocol)
	if protocol > 0xff {
		r[1] = 0 // in the attribute only: a kernel that ignores it then dumps nothing rather than TCP
	}
	binary.NativeEndian.PutUint32(r[4:], states)
	if protocol > 0xff {
		a := r[56:]
		binary.NativeEndian.PutUint16(a[0:], 8)
		binary.NativeEndian.PutUint16(a[2:], inetDiagReqProtocol)
		binary.NativeEndian.PutUint32(a[4:], uint32(protocol))
	}
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return err
	}
	buf := make([]byte, 1<<16)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return err
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return err
		}
		for _, m := range msgs {
			switch m.Header.Type {
			case unix.NLMSG_DONE:
				return nil
			case unix.NLMSG_ERROR:
				if len(m.Data) >= 4 {
					if errno := -int32(binary.NativeEndian.Uint32(m.Data)); errno != 0 {
						return unix.Errno(errno)
					}
				}
				return nil
			}
			if err := fn(m.Data); err != nil {
				return err
			}
		}
	}
}

// diagSocket is what xsyn reads of a struct inet_diag_msg.
type diagSocket struct {
	local, remote netip.AddrPort
	dualStack     bool // an IPv6 wildcard listener that also takes IPv4
}

// parseDiagMsg reads a struct inet_diag_msg and its attributes.
func parseDiagMsg(b []byte) (diagSocket, error) {
	if len(b) < inetDiagMsgLen {
		return diagSocket{}, fmt.Errorf("short inet_diag_msg (%d bytes)", len(b))
	}
	// struct inet_diag_sockid from byte 4: sport, dport (big endian), src[16], dst[16].
	var src, dst netip.Addr
	if b[0] == unix.AF_INET {
		src, dst = netip.AddrFrom4([4]byte(b[8:12])), netip.AddrFrom4([4]byte(b[24:28]))
	} else {
		src, dst = netip.AddrFrom16([16]byte(b[8:24])).Unmap(), netip.AddrFrom16([16]byte(b[24:40])).Unmap()
	}
	d := diagSocket{local: netip.AddrPortFrom(src, binary.BigEndian.Uint16(b[4:])),
		remote: netip.AddrPortFrom(dst, binary.BigEndian.Uint16(b[6:]))}
	for attrs := b[inetDiagMsgLen:]; len(attrs) >= 4; {
		alen := int(binary.NativeEndian.Uint16(attrs))
		if alen < 4 || alen > len(attrs) {
			break
		}
		if binary.NativeEndian.Uint16(attrs[2:]) == inetDiagV6Only && alen >= 5 {
			d.dualStack = attrs[4] == 0 && src == netip.IPv6Unspecified()
		}
		attrs = attrs[min((alen+3)&^3, len(attrs)):]
	}
	return d, nil
}

// ListeningServices is what zero-config attach protects on iface: every TCP port listening on one
// of the interface's addresses or on a wildcard, as one service per (address of iface, port), with
// the options of the local stack. Listeners on other addresses (loopback included) are left
// alone. An IPv6 wildcard listener also covers IPv4 addresses when it is dual-stack.
func ListeningServices(ifaceAddrs []netip.Addr, ls []Listener, st spec.Stack) []spec.Service {
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
	l, err := netlink.LinkByName(iface)
	if err != nil {
		if errors.As(err, new(netlink.LinkNotFoundError)) {
			return spec.Spec{}, fmt.Errorf("%w: %q in this network namespace (see `ip link`)", loader.ErrNoInterface, iface)
		}
		return spec.Spec{}, fmt.Errorf("look up %s: %w", iface, err)
	}
	addrs, err := netlink.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		return spec.Spec{}, fmt.Errorf("read addresses of %s: %w", iface, err)
	}
	var ifaceAddrs []netip.Addr
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP); ok {
			ifaceAddrs = append(ifaceAddrs, ip.Unmap())
		}
	}
	if len(ifaceAddrs) == 0 {
		return spec.Spec{}, fmt.Errorf("%w: %s has no addresses; give --port (and --dst)", ErrNoListeners, iface)
	}
	ls, err := Listeners()
	if err != nil {
		return spec.Spec{}, err
	}
	st, err := LocalStack(iface)
	if err != nil {
		return spec.Spec{}, err
	}
	svcs := ListeningServices(ifaceAddrs, ls, st)
	if len(svcs) == 0 {
		return spec.Spec{}, fmt.Errorf("%w: nothing listens on the addresses of %s (%d listeners elsewhere, e.g. loopback); give --port", ErrNoListeners, iface, len(ls))
	}
	return spec.FromServices(spec.DefaultSettings(), iface, svcs)
}
