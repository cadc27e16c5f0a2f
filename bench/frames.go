package main

import (
	"fmt"
	"net/netip"

	"github.com/xsyn-project/xsyn/internal/packet"
)

// shape is the kind of SYN the flood is made of.
type shape string

const (
	// shapeBare is a SYN without options: 54 bytes over IPv4, 74 over IPv6. The cheapest SYN for
	// an attacker to send; xsyn grows it by 4 bytes for its MSS option.
	shapeBare shape = "bare"
	// shapeLinux is the SYN Linux sends (MSS, SACK_PERM, TS, NOP, WS): 74 bytes over IPv4, 94
	// over IPv6. xsyn answers it with timestamps, SACK and window scale, its most costly path.
	shapeLinux shape = "linux"
)

// family is an IP version, 4 or 6.
type family int

func (f family) String() string { return fmt.Sprintf("ipv%d", int(f)) }

// Template source addresses: the generator replaces the low 17 bits (IPv4) or the low 80 bits
// (IPv6) per packet, keeping every source in 198.18.0.0/15 or 2001:2::/48.
var (
	floodSrc4 = netip.MustParseAddr("198.18.0.1")
	floodSrc6 = netip.MustParseAddr("2001:2::1")
	floodNet4 = netip.MustParsePrefix("198.18.0.0/15")
	floodNet6 = netip.MustParsePrefix("2001:2::/48")
)

// synFrame builds the template SYN from the attacker to the DUT's service, checksums included.
func synFrame(f family, s shape, src, dst packet.MAC, dstAddr netip.Addr, port uint16) []byte {
	tcp := &packet.TCP{SrcPort: 1024, DstPort: port, Seq: 1, Flags: packet.SYN, Window: 64240}
	if s == shapeLinux {
		mss := uint16(1460)
		if f == 6 {
			mss = 1440
		}
		tcp.Options = packet.Options(packet.MSS(mss), packet.SACKPerm(), packet.Timestamp(1, 0), packet.NOP(), packet.WScale(7))
	}
	fr := packet.Frame{Dst: dst, Src: src, TCP: tcp}
	if f == 4 {
		fr.IPv4 = &packet.IPv4{Src: floodSrc4, Dst: dstAddr, DF: true, TTL: 64}
	} else {
		fr.IPv6 = &packet.IPv6{Src: floodSrc6, Dst: dstAddr, HopLimit: 64}
	}
	return fr.Bytes()
}

// ackFrame builds the template forged ACK: no options, as long as the option-less SYN (54 bytes
// over IPv4, 74 over IPv6), so that a mixed flood's two templates fit the same live frame. The
// generator gives every ACK a random source, port, sequence and acknowledgement number: it
// belongs to no connection and carries no valid cookie.
func ackFrame(f family, src, dst packet.MAC, dstAddr netip.Addr, port uint16) []byte {
	tcp := &packet.TCP{SrcPort: 1024, DstPort: port, Seq: 1, Ack: 1, Flags: packet.ACK, Window: 502}
	fr := packet.Frame{Dst: dst, Src: src, TCP: tcp}
	if f == 4 {
		fr.IPv4 = &packet.IPv4{Src: floodSrc4, Dst: dstAddr, DF: true, TTL: 64}
	} else {
		fr.IPv6 = &packet.IPv6{Src: floodSrc6, Dst: dstAddr, HopLimit: 64}
	}
	return fr.Bytes()
}
