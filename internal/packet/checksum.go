package packet

import (
	"encoding/binary"
	"net/netip"
)

// sum adds b to acc as big-endian 16-bit words, the one's-complement way (RFC 1071): carries
// are folded back in at the end. An odd last byte is padded with a zero, so only the last slice
// of a multi-part sum may have an odd length.
func sum(acc uint64, b []byte) uint64 {
	for len(b) >= 2 {
		acc += uint64(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		acc += uint64(b[0]) << 8
	}
	return acc
}

// fold reduces a sum to 16 bits with end-around carry.
func fold(acc uint64) uint16 {
	for acc > 0xffff {
		acc = acc&0xffff + acc>>16
	}
	return uint16(acc)
}

// Checksum is the Internet checksum of the concatenated parts.
func Checksum(parts ...[]byte) uint16 {
	var acc uint64
	for _, p := range parts {
		acc = sum(acc, p)
	}
	return ^fold(acc)
}

// pseudoHeader is the IPv4 or IPv6 pseudo header of a TCP segment of length n.
func pseudoHeader(src, dst netip.Addr, n int) []byte {
	if src.Is4() {
		b := append(src.AsSlice(), dst.AsSlice()...)
		return append(b, 0, ProtoTCP, byte(n>>8), byte(n))
	}
	b := append(src.AsSlice(), dst.AsSlice()...)
	b = binary.BigEndian.AppendUint32(b, uint32(n))
	return append(b, 0, 0, 0, ProtoTCP)
}

// TCPChecksum is the checksum field value for a TCP segment whose checksum field is zero.
func TCPChecksum(src, dst netip.Addr, segment []byte) uint16 {
	return Checksum(pseudoHeader(src, dst, len(segment)), segment)
}

// validTCP reports whether a TCP segment, checksum field included, sums to all ones.
func validTCP(src, dst netip.Addr, segment []byte) bool {
	return Checksum(pseudoHeader(src, dst, len(segment)), segment) == 0
}
