// Package cookie is a reference of xsyn's own SYN cookie, the one the XDP program makes and
// checks on the socket-handoff path. It mirrors bpf/cookie.h and bpf/siphash.h bit for bit, so
// tests and tools can predict the SYN-ACK the program sends, or forge the ACK an attacker would.
//
// The ISN of a handoff SYN-ACK is the low 32 bits of a SipHash-2-4 with the low byte replaced by
// the option byte (OptByte); when timestamps are negotiated, the low byte of our TSval carries
// hash bits 32-39. The hash covers the connection's addresses and ports, the client's ISN, the
// time slot (one minute of CLOCK_TAI, SlotOf) and the option byte.
package cookie

import (
	"encoding/binary"
	"math/bits"
	"net/netip"
	"time"

	"github.com/xsyn-project/xsyn/spec"
)

// SlotLength is the lifetime unit of a cookie (COOKIE_SLOT_NS): an ACK is checked against the
// slot it arrives in and the one before.
const SlotLength = time.Minute

// SlotOf is the slot of a CLOCK_TAI time, as the program computes it before adding slot_shift.
func SlotOf(tai time.Time) uint32 { return uint32(tai.UnixNano() / int64(SlotLength)) }

// Hash is the SipHash of one connection, exactly as cookie_msg() and siphash24() compute it.
// src, dst, sport and dport are the client's SYN's (the client is the source); clientISN is the
// SYN's sequence number. src and dst are both IPv4 or both IPv6; an IPv4-mapped IPv6 address
// counts as IPv6, as it does on the wire.
//
// The program loads the addresses and ports as the network-order values they are on a
// little-endian machine, so each appears here as the little-endian reading of its bytes; the
// ISN and slot are host-order numbers. Each word is hashed as its little-endian bytes.
func Hash(key spec.CookieKey, src, dst netip.Addr, sport, dport uint16, clientISN, slot uint32, optByte uint8) uint64 {
	le32 := binary.LittleEndian.Uint32
	ports := uint64(bits.ReverseBytes16(sport))<<48 | uint64(bits.ReverseBytes16(dport))<<32 | uint64(clientISN)
	tail := uint64(slot)<<8 | uint64(optByte)

	var words []uint64
	if src.Is4() && dst.Is4() {
		s, d := src.As4(), dst.As4()
		words = []uint64{uint64(le32(s[:]))<<32 | uint64(le32(d[:])), ports, tail}
	} else if src.Is6() && dst.Is6() {
		s, d := src.As16(), dst.As16()
		words = []uint64{
			uint64(le32(s[0:]))<<32 | uint64(le32(s[4:])),
			uint64(le32(s[8:]))<<32 | uint64(le32(s[12:])),
			uint64(le32(d[0:]))<<32 | uint64(le32(d[4:])),
			uint64(le32(d[8:]))<<32 | uint64(le32(d[12:])),
			ports, tail,
		}
	} else {
		panic("cookie: source and destination of different families: " + src.String() + ", " + dst.String())
	}
	msg := make([]byte, 0, 8*len(words))
	for _, w := range words {
		msg = binary.LittleEndian.AppendUint64(msg, w)
	}
	return SipHash24(key, msg)
}

// Make is the cookie the program answers a SYN with (cookie_make): the ISN of its SYN-ACK, and
// the low byte of its TSval when timestamps are negotiated.
func Make(key spec.CookieKey, src, dst netip.Addr, sport, dport uint16, clientISN, slot uint32, optByte uint8) (isn uint32, tsBits uint8) {
	h := Hash(key, src, dst, sport, dport, clientISN, slot, optByte)
	return uint32(h)&^0xff | uint32(optByte), uint8(h >> 32)
}

// NoWScale is the window scale of a client that offered none (OptByte, Options.WScale).
const NoWScale = -1

// maxWScale is the largest shift TCP allows (RFC 7323); larger offers are clamped to it.
const maxWScale = 14

// Bits of the option byte.
const (
	wscaleNone = 0xf
	sackBit    = 1 << 4
	ecnBit     = 1 << 5
	mssShift   = 6
)

// The kernel's MSS tables (net/ipv4/syncookies.c, net/ipv6/syncookies.c), smallest first.
var (
	mssTable4 = [4]uint16{536, 1300, 1440, 1460}
	mssTable6 = [4]uint16{1220, 1420, 1440, 8940}
)

// MSSTable is the table the client's MSS is rounded down into: the option byte keeps the index.
func MSSTable(ipv6 bool) [4]uint16 {
	if ipv6 {
		return mssTable6
	}
	return mssTable4
}

// Options are what an option byte says of a connection: what was negotiated in the handshake.
type Options struct {
	MSS    uint16 // an entry of MSSTable: the largest not above the client's
	WScale int    // the client's window scale shift, or NoWScale
	SACK   bool
	ECN    bool
}

// OptByte encodes what the SYN-ACK negotiated: the client's MSS (0: it sent none), its window
// scale (NoWScale: none, or not accepted; above 14 it is clamped as the parser does), SACK and
// ECN as accepted. ipv6 chooses the MSS table.
func OptByte(mss uint16, wscale int, sack, ecn, ipv6 bool) uint8 {
	idx := 0
	for i, m := range MSSTable(ipv6) {
		if mss >= m {
			idx = i
		}
	}
	b := uint8(idx) << mssShift
	switch {
	case wscale < 0:
		b |= wscaleNone
	default:
		b |= uint8(min(wscale, maxWScale))
	}
	if sack {
		b |= sackBit
	}
	if ecn {
		b |= ecnBit
	}
	return b
}

// Decode reads an option byte back, as cookie_attrs() does for the handed-off connection.
func Decode(optByte uint8, ipv6 bool) Options {
	o := Options{
		MSS:    MSSTable(ipv6)[optByte>>mssShift],
		WScale: int(optByte & wscaleNone),
		SACK:   optByte&sackBit != 0,
		ECN:    optByte&ecnBit != 0,
	}
	if o.WScale == wscaleNone {
		o.WScale = NoWScale
	}
	return o
}
