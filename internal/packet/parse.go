package packet

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
)

// ErrChecksum is returned by Parse for a frame whose IPv4 header or TCP checksum is wrong.
var ErrChecksum = errors.New("bad checksum")

// Parse decodes a frame like Decode and then verifies it: the IPv4 header checksum, the TCP
// checksum over pseudo header and segment, and that the TCP options are well formed.
func Parse(b []byte) (*Packet, error) {
	p, err := Decode(b)
	if err != nil {
		return nil, err
	}
	if p.IPv4 != nil {
		if c := Checksum(b[p.L3Off : p.L3Off+p.IHL]); c != 0 {
			return nil, fmt.Errorf("ipv4 header: %w (0x%04x, off by 0x%04x)", ErrChecksum, p.IPv4Checksum, c)
		}
	}
	if p.TCP != nil {
		src, dst := p.addrs()
		if !validTCP(src, dst, b[p.L4Off:p.L3Off+p.TotalLen]) {
			return nil, fmt.Errorf("tcp: %w (0x%04x)", ErrChecksum, p.TCPChecksum)
		}
		if p.optErr != nil {
			return nil, p.optErr
		}
	}
	return p, nil
}

// Decode reads a frame into a Packet without looking at checksums. It fails on a frame shorter
// than the headers it announces or with impossible length fields. The Packet does not share
// memory with b.
func Decode(b []byte) (*Packet, error) {
	b = slices.Clone(b)
	if len(b) < 14 {
		return nil, fmt.Errorf("ethernet: %d bytes", len(b))
	}
	p := &Packet{}
	copy(p.Dst[:], b)
	copy(p.Src[:], b[6:])
	off := 12
	et := be16(b[off:])
	for et == TPID8021Q || et == TPID8021AD {
		if len(b) < off+6 {
			return nil, fmt.Errorf("vlan tag %d: frame ends", len(p.VLANs)+1)
		}
		p.VLANs = append(p.VLANs, VLAN{TPID: et, TCI: be16(b[off+2:])})
		off += 4
		et = be16(b[off:])
	}
	p.EtherType = et
	p.L3Off = off + 2

	var l4 []byte
	var err error
	switch et {
	case EtherTypeIPv4:
		l4, err = p.decodeIPv4(b)
	case EtherTypeIPv6:
		l4, err = p.decodeIPv6(b)
	default:
		p.Payload = nilIfEmpty(b[p.L3Off:])
		return p, nil
	}
	if err != nil {
		return nil, err
	}
	p.Trailer = nilIfEmpty(b[p.L3Off+p.TotalLen:])
	if p.Proto != ProtoTCP {
		p.Payload = nilIfEmpty(l4)
		return p, nil
	}
	return p, p.decodeTCP(l4)
}

func (p *Packet) decodeIPv4(b []byte) ([]byte, error) {
	h := b[p.L3Off:]
	if len(h) < 20 {
		return nil, fmt.Errorf("ipv4: %d bytes", len(h))
	}
	if h[0]>>4 != 4 {
		return nil, fmt.Errorf("ipv4: version %d", h[0]>>4)
	}
	p.IHL = int(h[0]&0xf) * 4
	p.TotalLen = int(be16(h[2:]))
	if p.IHL < 20 || p.TotalLen < p.IHL || p.TotalLen > len(h) {
		return nil, fmt.Errorf("ipv4: header length %d, total length %d, %d bytes", p.IHL, p.TotalLen, len(h))
	}
	frag := be16(h[6:])
	p.IPv4 = &IPv4{
		Src:        netip.AddrFrom4([4]byte(h[12:16])),
		Dst:        netip.AddrFrom4([4]byte(h[16:20])),
		TOS:        h[1],
		ID:         be16(h[4:]),
		DF:         frag&0x4000 != 0,
		MF:         frag&0x2000 != 0,
		FragOffset: frag & 0x1fff,
		TTL:        h[8],
		Options:    nilIfEmpty(h[20:p.IHL]),
	}
	p.Proto = h[9]
	p.IPv4Checksum = be16(h[10:])
	p.L4Off = p.L3Off + p.IHL
	return h[p.IHL:p.TotalLen], nil
}

func (p *Packet) decodeIPv6(b []byte) ([]byte, error) {
	h := b[p.L3Off:]
	if len(h) < 40 {
		return nil, fmt.Errorf("ipv6: %d bytes", len(h))
	}
	vtf := binary.BigEndian.Uint32(h)
	if vtf>>28 != 6 {
		return nil, fmt.Errorf("ipv6: version %d", vtf>>28)
	}
	p.TotalLen = 40 + int(be16(h[4:]))
	if p.TotalLen > len(h) {
		return nil, fmt.Errorf("ipv6: payload length %d, %d bytes", p.TotalLen-40, len(h)-40)
	}
	p.IPv6 = &IPv6{
		Src:          netip.AddrFrom16([16]byte(h[8:24])),
		Dst:          netip.AddrFrom16([16]byte(h[24:40])),
		TrafficClass: uint8(vtf >> 20),
		FlowLabel:    vtf & 0xfffff,
		HopLimit:     h[7],
	}
	nh, off := h[6], 40
	for isExtHeader(nh) {
		n := 8
		if off+2 <= p.TotalLen && nh != ProtoFragment {
			n = (int(h[off+1]) + 1) * 8
		}
		if off+n > p.TotalLen {
			return nil, fmt.Errorf("ipv6: extension header %d at %d runs past the payload", nh, off)
		}
		p.IPv6.ExtHeaders = append(p.IPv6.ExtHeaders, ExtHeader{Type: nh, Data: h[off+2 : off+n]})
		nh, off = h[off], off+n
	}
	p.Proto = nh
	p.L4Off = p.L3Off + off
	return h[off:p.TotalLen], nil
}

func isExtHeader(nh uint8) bool {
	return nh == ProtoHopByHop || nh == ProtoRouting || nh == ProtoDstOpts || nh == ProtoFragment
}

func (p *Packet) decodeTCP(seg []byte) error {
	if len(seg) < 20 {
		return fmt.Errorf("tcp: %d bytes", len(seg))
	}
	p.DataOffset = int(seg[12]>>4) * 4
	if p.DataOffset < 20 || p.DataOffset > len(seg) {
		return fmt.Errorf("tcp: data offset %d, %d bytes", p.DataOffset, len(seg))
	}
	p.TCP = &TCP{
		SrcPort: be16(seg),
		DstPort: be16(seg[2:]),
		Seq:     binary.BigEndian.Uint32(seg[4:]),
		Ack:     binary.BigEndian.Uint32(seg[8:]),
		Flags:   seg[13],
		Window:  be16(seg[14:]),
		Urgent:  be16(seg[18:]),
		Options: nilIfEmpty(seg[20:p.DataOffset]),
	}
	p.TCPChecksum = be16(seg[16:])
	p.Payload = nilIfEmpty(seg[p.DataOffset:])
	p.Options, p.optErr = ParseOptions(p.TCP.Options)
	return nil
}

// addrs are the addresses of the pseudo header.
func (p *Packet) addrs() (src, dst netip.Addr) {
	if p.IPv4 != nil {
		return p.IPv4.Src, p.IPv4.Dst
	}
	return p.IPv6.Src, p.IPv6.Dst
}

func be16(b []byte) uint16 { return binary.BigEndian.Uint16(b) }

func nilIfEmpty(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}
