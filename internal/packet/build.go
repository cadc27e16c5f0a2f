package packet

import (
	"encoding/binary"
	"net/netip"
)

// Bytes builds the frame with correct lengths and checksums. The IPv6 pseudo header uses Dst as
// the final destination (routing headers are carried, not followed).
func (f Frame) Bytes() []byte {
	proto := f.Proto
	var l4 []byte
	switch {
	case f.TCP != nil:
		proto = ProtoTCP
		l4 = f.TCP.bytes(f.Payload)
	default:
		l4 = f.Payload
	}

	b := append(append([]byte(nil), f.Dst[:]...), f.Src[:]...)
	for _, v := range f.VLANs {
		b = binary.BigEndian.AppendUint16(b, v.TPID)
		b = binary.BigEndian.AppendUint16(b, v.TCI)
	}
	et := f.EtherType
	switch {
	case f.IPv4 != nil:
		b = binary.BigEndian.AppendUint16(b, or(et, EtherTypeIPv4))
		b = f.IPv4.append(b, proto, l4)
	case f.IPv6 != nil:
		b = binary.BigEndian.AppendUint16(b, or(et, EtherTypeIPv6))
		b = f.IPv6.append(b, proto, l4)
	default:
		b = binary.BigEndian.AppendUint16(b, et)
		b = append(b, f.Payload...)
	}
	for len(b) < f.MinLen {
		b = append(b, 0)
	}
	return b
}

func or(v, dflt uint16) uint16 {
	if v != 0 {
		return v
	}
	return dflt
}

// pad4 pads raw options with zeros (EOL) to a multiple of 4 bytes.
func pad4(opts []byte) []byte {
	out := append([]byte(nil), opts...)
	for len(out)%4 != 0 {
		out = append(out, 0)
	}
	return out
}

func (ip *IPv4) append(b []byte, proto uint8, l4 []byte) []byte {
	opts := pad4(ip.Options)
	hl := 20 + len(opts)
	frag := ip.FragOffset & 0x1fff
	if ip.DF {
		frag |= 0x4000
	}
	if ip.MF {
		frag |= 0x2000
	}
	h := []byte{0x40 | byte(hl/4), ip.TOS}
	h = binary.BigEndian.AppendUint16(h, uint16(hl+len(l4)))
	h = binary.BigEndian.AppendUint16(h, ip.ID)
	h = binary.BigEndian.AppendUint16(h, frag)
	h = append(h, ip.TTL, proto, 0, 0)
	h = append(h, addr4(ip.Src)...)
	h = append(h, addr4(ip.Dst)...)
	h = append(h, opts...)
	binary.BigEndian.PutUint16(h[10:], Checksum(h))
	if proto == ProtoTCP {
		l4 = withTCPChecksum(ip.Src, ip.Dst, l4)
	}
	return append(append(b, h...), l4...)
}

func (ip *IPv6) append(b []byte, proto uint8, l4 []byte) []byte {
	var ext []byte
	for i, eh := range ip.ExtHeaders {
		next := proto
		if i+1 < len(ip.ExtHeaders) {
			next = ip.ExtHeaders[i+1].Type
		}
		ext = append(ext, eh.bytes(next)...)
	}
	first := proto
	if len(ip.ExtHeaders) > 0 {
		first = ip.ExtHeaders[0].Type
	}
	vtf := 6<<28 | uint32(ip.TrafficClass)<<20 | ip.FlowLabel&0xfffff
	b = binary.BigEndian.AppendUint32(b, vtf)
	b = binary.BigEndian.AppendUint16(b, uint16(len(ext)+len(l4)))
	b = append(b, first, ip.HopLimit)
	b = append(b, addr16(ip.Src)...)
	b = append(b, addr16(ip.Dst)...)
	if proto == ProtoTCP {
		l4 = withTCPChecksum(ip.Src, ip.Dst, l4)
	}
	return append(append(b, ext...), l4...)
}

func (eh ExtHeader) bytes(next uint8) []byte {
	if eh.Type == ProtoFragment {
		d := make([]byte, 6)
		copy(d, eh.Data)
		return append([]byte{next, 0}, d...)
	}
	b := append([]byte{next, 0}, eh.Data...)
	for len(b)%8 != 0 {
		b = append(b, 0)
	}
	b[1] = byte(len(b)/8 - 1)
	return b
}

// bytes is the segment with a zero checksum; the IP layer fills it in.
func (t *TCP) bytes(payload []byte) []byte {
	opts := pad4(t.Options)
	b := binary.BigEndian.AppendUint16(nil, t.SrcPort)
	b = binary.BigEndian.AppendUint16(b, t.DstPort)
	b = binary.BigEndian.AppendUint32(b, t.Seq)
	b = binary.BigEndian.AppendUint32(b, t.Ack)
	b = append(b, byte((20+len(opts))/4)<<4, t.Flags)
	b = binary.BigEndian.AppendUint16(b, t.Window)
	b = append(b, 0, 0)
	b = binary.BigEndian.AppendUint16(b, t.Urgent)
	b = append(b, opts...)
	return append(b, payload...)
}

func withTCPChecksum(src, dst netip.Addr, seg []byte) []byte {
	binary.BigEndian.PutUint16(seg[16:], TCPChecksum(src, dst, seg))
	return seg
}

func addr4(a netip.Addr) []byte {
	b := a.As4()
	return b[:]
}

func addr16(a netip.Addr) []byte {
	b := a.As16()
	return b[:]
}
