package main

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
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

// bench_gen's offsets and its flood sources' networks (bench/bpf/bench.c).
const (
	genEthLen   = 14
	genSrc4Net  = 0xc6120000 // 198.18.0.0/15
	genSrc4Mask = 0x1ffff
)

// frameDraw is what bench_gen draws for one frame: the random parts of its source address, its
// source port, sequence number and, in a forged ACK, acknowledgement number.
type frameDraw struct {
	src        uint32 // IPv4: the source's host part (low 17 bits); IPv6: bits 48-63 (low 16 bits)
	src2, src3 uint32 // IPv6: the source's last 64 bits, as the program stores them
	sport      uint16 // 1024-65535
	seq, ack   uint32 // as the program stores them; ack only in a forged ACK
}

// writeFloodFrame writes one flood frame into dst as bench_gen does: the template, then the drawn
// source address, port, sequence and (ACK) acknowledgement numbers, with the IPv4 and TCP
// checksums updated incrementally (RFC 1624). It is the program's arithmetic step by step (sums
// of the template's and the new words as the little-endian machine loads them, folded by
// csum_fold), so for the same draw it writes the same bytes, checksums included.
func writeFloodFrame(dst, tmpl []byte, ipv6, ack bool, d frameDraw) {
	le := binary.LittleEndian
	copy(dst, tmpl)
	if !ipv6 {
		const l4 = genEthLen + 20
		var saddr [4]byte
		binary.BigEndian.PutUint32(saddr[:], genSrc4Net|d.src&genSrc4Mask)
		oldS, newS := le.Uint32(tmpl[genEthLen+12:]), le.Uint32(saddr[:])
		sum := uint64(^le.Uint16(tmpl[genEthLen+10:])) + csumReplace32(oldS, newS)
		copy(dst[genEthLen+12:], saddr[:])
		le.PutUint16(dst[genEthLen+10:], csumFold(sum))
		sum = writeTCPDraw(dst, tmpl, l4, ack, d) + csumReplace32(oldS, newS)
		le.PutUint16(dst[l4+16:], csumFold(sum))
		return
	}
	const l4 = genEthLen + 40
	const saddr = genEthLen + 8
	// 2001:2:0:ssss:iiii:iiii:iiii:iiii, the first 48 bits from the template.
	var w1 [4]byte
	binary.BigEndian.PutUint32(w1[:], d.src&0xffff)
	sum := writeTCPDraw(dst, tmpl, l4, ack, d) +
		csumReplace32(le.Uint32(tmpl[saddr+4:]), le.Uint32(w1[:])) +
		csumReplace32(le.Uint32(tmpl[saddr+8:]), d.src2) +
		csumReplace32(le.Uint32(tmpl[saddr+12:]), d.src3)
	copy(dst[saddr+4:], w1[:])
	le.PutUint32(dst[saddr+8:], d.src2)
	le.PutUint32(dst[saddr+12:], d.src3)
	le.PutUint16(dst[l4+16:], csumFold(sum))
}

// writeTCPDraw writes the drawn port, sequence and acknowledgement numbers (a SYN keeps the
// template's) and returns their part of the TCP checksum's update, bench_gen's tcp_delta.
func writeTCPDraw(dst, tmpl []byte, l4 int, ack bool, d frameDraw) uint64 {
	le := binary.LittleEndian
	t := tmpl[l4:]
	var sport [2]byte
	binary.BigEndian.PutUint16(sport[:], d.sport)
	ackSeq := le.Uint32(t[8:])
	if ack {
		ackSeq = d.ack
	}
	sum := csumReplace16(le.Uint16(t[0:]), le.Uint16(sport[:])) + csumReplace32(le.Uint32(t[4:]), d.seq) +
		csumReplace32(le.Uint32(t[8:]), ackSeq) + uint64(^le.Uint16(t[16:]))
	copy(dst[l4:], sport[:])
	le.PutUint32(dst[l4+4:], d.seq)
	le.PutUint32(dst[l4+8:], ackSeq)
	return sum
}

func csumReplace32(old, new uint32) uint64 { return uint64(^old) + uint64(new) }

func csumReplace16(old, new uint16) uint64 { return uint64(^old) + uint64(new) }

// csumFold is bpf/csum.h's csum_fold.
func csumFold(sum uint64) uint16 {
	sum = sum&0xffffffff + sum>>32
	sum = sum&0xffffffff + sum>>32
	sum = sum&0xffff + sum>>16
	sum = sum&0xffff + sum>>16
	return ^uint16(sum)
}

// frameWriter writes a flood's frames the way bench_gen does, drawing from its own generator of
// random numbers (bench_gen's is the kernel's bpf_get_prandom_u32; neither needs to be more than
// uniform).
type frameWriter struct {
	syn, ack    []byte // the templates, both the frames' length
	ipv6        bool
	ackPermille uint32
	rng         *rand.PCG
}

func newFrameWriter(cfg benchprogsGenConfig, seed uint64) *frameWriter {
	return &frameWriter{
		syn: cfg.Frame[:cfg.Len], ack: cfg.AckFrame[:cfg.Len], ipv6: cfg.Ipv6 != 0,
		ackPermille: cfg.AckPermille, rng: rand.NewPCG(seed, seed^0x9e3779b97f4a7c15),
	}
}

func (w *frameWriter) u32() uint32 { return uint32(w.rng.Uint64() >> 32) }

// write writes the next frame into dst (at least the frames' length) and says whether it is a
// forged ACK.
func (w *frameWriter) write(dst []byte) (ack bool) {
	ack = w.ackPermille >= 1000 || (w.ackPermille > 0 && w.u32()%1000 < w.ackPermille)
	d := frameDraw{src: w.u32(), sport: uint16(1024 + w.u32()%(65536-1024)), seq: w.u32()}
	if w.ipv6 {
		d.src2, d.src3 = w.u32(), w.u32()
	}
	tmpl := w.syn
	if ack {
		d.ack = w.u32()
		tmpl = w.ack
	}
	writeFloodFrame(dst, tmpl, w.ipv6, ack, d)
	return ack
}
