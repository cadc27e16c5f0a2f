package protect

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/xsyn-project/xsyn/rules"
	"github.com/xsyn-project/xsyn/spec"
)

// Conn is an established TCP connection of a socket of this network namespace.
type Conn struct {
	Local, Remote netip.AddrPort
}

func (c Conn) String() string { return c.Remote.String() + " -> " + c.Local.String() }

// Untracked lists the connections that protecting iface as s says would cut: established
// connections to a server of this host that a statement covers and that conntrack does not
// track. Their next segment has no conntrack entry and no valid cookie, so XDP (or SYNPROXY)
// takes it for a forged ACK and drops it: on a host without a stateful firewall, the SSH
// session of the operator running attach. An interface with xsyn's rules has none (they made
// conntrack track every connection since). Handoff statements cut nothing.
func (p *Protector) Untracked(iface string, s spec.Spec) ([]Conn, error) {
	// Rules of xsyn's on the interface have made conntrack track every connection since they
	// went in. An attachment without them (every statement on the handoff path) has not.
	if on, err := p.Rules.Installed(iface); err != nil || on {
		return nil, err
	}
	link, err := netlink.LinkByName(iface)
	if err != nil {
		return nil, fmt.Errorf("look up %s: %w", iface, err)
	}
	conns, err := establishedConns()
	if err != nil {
		return nil, err
	}
	// Handoff statements judge segments by their socket, which an established connection has:
	// they cut nothing, where the kernel has the handoff (else they will take SYNPROXY's path).
	handoff := p.probeHandoff() == nil
	covers := func(st spec.Statement, c Conn) bool {
		return !(handoff && st.Path == spec.PathHandoff) && coversLocal(st, c)
	}
	var out []Conn
	for _, c := range conns {
		if !slices.ContainsFunc(s.Statements, func(st spec.Statement) bool { return covers(st, c) }) {
			continue
		}
		// Only a connection whose peer is reached through iface meets XDP and the rules there
		// (-i iface): one to this host's own address runs over lo.
		if routes, err := netlink.RouteGet(c.Remote.Addr().AsSlice()); err == nil && len(routes) > 0 && routes[0].LinkIndex != link.Attrs().Index {
			continue
		}
		tracked, err := conntrackHas(c)
		if err != nil {
			return nil, err
		}
		if !tracked {
			out = append(out, c)
		}
	}
	return out, nil
}

// coversLocal reports whether st's SYNPROXY rules in INPUT, and so XDP, see c's packets.
func coversLocal(st spec.Statement, c Conn) bool {
	if st.Family == spec.IPv4 != c.Local.Addr().Is4() || !rules.ProxiesLocal(st) {
		return false
	}
	m := st.Match
	inPorts := func(ps spec.PortSet, port uint16) bool {
		return slices.ContainsFunc(ps.Positive(), func(r spec.PortRange) bool { return r.Lo <= port && port <= r.Hi })
	}
	inAddrs := func(as spec.AddrSet, a netip.Addr) bool {
		return slices.ContainsFunc(as.Positive(st.Family), func(p netip.Prefix) bool { return p.Contains(a) })
	}
	return inAddrs(m.Dst, c.Local.Addr()) && inPorts(m.Dport, c.Local.Port()) &&
		inAddrs(m.Src, c.Remote.Addr()) && inPorts(m.Sport, c.Remote.Port())
}

// TCP_ESTABLISHED (include/net/tcp_states.h): a connection both sides still use. One that is
// closing (attach's own server probes, say) loses at most its last segments.
const connStates = 1 << 1

// establishedConns asks sock_diag for the connected TCP sockets of this network namespace.
func establishedConns() ([]Conn, error) {
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

// conntrackHas asks conntrack for c, under either direction's tuple: a connection picked up in
// the middle may have the server's side as its original direction, and a translated one is
// found by its reply tuple.
func conntrackHas(c Conn) (bool, error) {
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
