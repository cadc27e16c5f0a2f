package host

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"syscall"

	"golang.org/x/sys/unix"
)

const (
	sockDiagByFamily = 20 // SOCK_DIAG_BY_FAMILY
	inetDiagV6Only   = 11 // INET_DIAG_SKV6ONLY
	tcpListen        = 10 // TCP_LISTEN
	inetDiagMsgLen   = 72 // struct inet_diag_msg
	// INET_DIAG_REQ_PROTOCOL: the request attribute for protocols that do not fit its byte.
	inetDiagReqProtocol = 3
)

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
