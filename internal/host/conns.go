package host

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// Conn is an established TCP connection of a socket of this network namespace.
type Conn struct {
	Local, Remote netip.AddrPort
}

func (c Conn) String() string { return c.Remote.String() + " -> " + c.Local.String() }

// TCP_ESTABLISHED (include/net/tcp_states.h): a connection both sides still use. One that is
// closing (attach's own server probes, say) loses at most its last segments.
const connStates = 1 << 1

// EstablishedConns asks sock_diag for the connected TCP sockets of this network namespace.
func EstablishedConns() ([]Conn, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return nil, fmt.Errorf("list established connections: open sock_diag: %w", err)
	}
	defer unix.Close(fd)
	var out []Conn
	for _, fam := range []uint8{unix.AF_INET, unix.AF_INET6} {
		err := dumpSockets(fd, fam, unix.IPPROTO_TCP, connStates, func(b []byte) error {
			d, err := parseDiagMsg(b)
			out = append(out, Conn{Local: d.local, Remote: d.remote})
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("list established connections: %w", err)
		}
	}
	return out, nil
}

// Conntracked asks conntrack for c, under either direction's tuple: a connection picked up in
// the middle may have the server's side as its original direction, and a translated one is
// found by its reply tuple.
func Conntracked(c Conn) (bool, error) {
	for _, t := range [][2]netip.AddrPort{{c.Remote, c.Local}, {c.Local, c.Remote}} {
		family := uint8(unix.AF_INET6)
		srcAttr, dstAttr := nl.CTA_IP_V6_SRC, nl.CTA_IP_V6_DST
		src, dst := t[0].Addr().As16(), t[1].Addr().As16()
		srcIP, dstIP := src[:], dst[:]
		if t[0].Addr().Is4() {
			family, srcAttr, dstAttr = unix.AF_INET, nl.CTA_IP_V4_SRC, nl.CTA_IP_V4_DST
			s4, d4 := t[0].Addr().As4(), t[1].Addr().As4()
			srcIP, dstIP = s4[:], d4[:]
		}
		req := nl.NewNetlinkRequest(int(netlink.ConntrackTable)<<8|nl.IPCTNL_MSG_CT_GET, unix.NLM_F_ACK)
		req.AddData(&nl.Nfgenmsg{NfgenFamily: family, Version: nl.NFNETLINK_V0})
		tuple := nl.NewRtAttr(unix.NLA_F_NESTED|nl.CTA_TUPLE_ORIG, nil)
		ip := tuple.AddRtAttr(unix.NLA_F_NESTED|nl.CTA_TUPLE_IP, nil)
		ip.AddRtAttr(srcAttr, srcIP)
		ip.AddRtAttr(dstAttr, dstIP)
		proto := tuple.AddRtAttr(unix.NLA_F_NESTED|nl.CTA_TUPLE_PROTO, nil)
		proto.AddRtAttr(nl.CTA_PROTO_NUM, []byte{unix.IPPROTO_TCP})
		proto.AddRtAttr(nl.CTA_PROTO_SRC_PORT, binary.BigEndian.AppendUint16(nil, t[0].Port()))
		proto.AddRtAttr(nl.CTA_PROTO_DST_PORT, binary.BigEndian.AppendUint16(nil, t[1].Port()))
		req.AddData(tuple)
		_, err := req.Execute(unix.NETLINK_NETFILTER, 0)
		switch {
		case err == nil:
			return true, nil
		case errors.Is(err, unix.ENOENT), errors.Is(err, unix.EOPNOTSUPP):
			continue // not in the table; or no conntrack at all, which tracks nothing
		default:
			return false, fmt.Errorf("look up %s in conntrack: %w", c, err)
		}
	}
	return false, nil
}

// RouteIndex is the index of the interface this namespace routes to addr through; false when
// no route says.
func RouteIndex(addr netip.Addr) (int, bool) {
	routes, err := netlink.RouteGet(addr.AsSlice())
	if err != nil || len(routes) == 0 {
		return 0, false
	}
	return routes[0].LinkIndex, true
}
