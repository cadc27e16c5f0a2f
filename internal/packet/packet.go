// Package packet builds and decodes the Ethernet frames xsyn's data plane sees, for unit tests,
// integration tests and benchmarks.
//
// A Frame describes a frame: Ethernet with any number of VLAN tags, IPv4 (with options and
// fragment fields) or IPv6 (with extension headers), and TCP with raw options, or any other
// upper-layer payload. Frame.Bytes builds it with encoding/binary and correct checksums. Decode
// reads a frame back into the same types; Parse does that and also verifies the IPv4 header and
// TCP checksums with this package's own one's-complement sum, so a test never has to trust a
// checksum computed by the code under test.
package packet

import (
	"fmt"
	"net"
	"net/netip"
)

// MAC is an Ethernet address.
type MAC [6]byte

// ParseMAC parses an Ethernet address as net.ParseMAC writes it ("02:00:00:00:00:01").
func ParseMAC(s string) (MAC, error) {
	var m MAC
	hw, err := net.ParseMAC(s)
	if err != nil || len(hw) != len(m) {
		return m, fmt.Errorf("parse MAC %q: not a 6-byte Ethernet address", s)
	}
	copy(m[:], hw)
	return m, nil
}

// EtherTypes and VLAN tag protocol identifiers.
const (
	EtherTypeIPv4 uint16 = 0x0800
	EtherTypeARP  uint16 = 0x0806
	EtherTypeIPv6 uint16 = 0x86dd
	TPID8021Q     uint16 = 0x8100 // customer VLAN tag (802.1Q)
	TPID8021AD    uint16 = 0x88a8 // service VLAN tag (802.1ad, the outer tag of QinQ)
)

// IP protocol numbers, which are also IPv6 next-header values.
const (
	ProtoHopByHop uint8 = 0
	ProtoICMP     uint8 = 1
	ProtoTCP      uint8 = 6
	ProtoUDP      uint8 = 17
	ProtoRouting  uint8 = 43
	ProtoFragment uint8 = 44
	ProtoICMPv6   uint8 = 58
	ProtoDstOpts  uint8 = 60
)

// TCP flags, as in byte 13 of the TCP header.
const (
	FIN uint8 = 0x01
	SYN uint8 = 0x02
	RST uint8 = 0x04
	PSH uint8 = 0x08
	ACK uint8 = 0x10
	URG uint8 = 0x20
	ECE uint8 = 0x40
	CWR uint8 = 0x80
)

// Frame is one Ethernet frame. Set at most one of IPv4 and IPv6. Zero values of derived fields
// (EtherType, Proto) are filled in by Bytes.
type Frame struct {
	Dst, Src  MAC
	VLANs     []VLAN // outermost first
	EtherType uint16 // after the tags; 0: derived from IPv4/IPv6
	IPv4      *IPv4
	IPv6      *IPv6
	TCP       *TCP
	// Proto is the upper-layer protocol. Bytes ignores it when TCP is set (it is then ProtoTCP).
	Proto uint8
	// Payload follows the TCP header; without TCP it is the upper-layer bytes (a UDP or ICMP
	// message); without IP, the bytes after the EtherType (an ARP message).
	Payload []byte
	// MinLen pads the frame with zero bytes to at least this length. 60 is the Ethernet minimum
	// without the FCS. Decode leaves it 0 and reports the padding as Packet.Trailer.
	MinLen int
}

// VLAN is one VLAN tag.
type VLAN struct {
	TPID uint16 // TPID8021Q or TPID8021AD
	TCI  uint16 // priority, drop eligibility and VLAN id
}

// IPv4 is an IPv4 header. Bytes computes the header length, total length and checksum.
type IPv4 struct {
	Src, Dst   netip.Addr
	TOS        uint8
	ID         uint16
	DF, MF     bool
	FragOffset uint16 // in 8-byte units
	TTL        uint8
	Options    []byte // raw; Bytes pads them with EOL (zero) bytes to a multiple of 4
}

// IPv6 is an IPv6 header and its extension headers. Bytes computes the payload length and
// chains the next-header fields.
type IPv6 struct {
	Src, Dst     netip.Addr
	TrafficClass uint8
	FlowLabel    uint32
	HopLimit     uint8
	ExtHeaders   []ExtHeader // in wire order, between the fixed header and the upper layer
}

// ExtHeader is an IPv6 extension header.
type ExtHeader struct {
	Type uint8 // ProtoHopByHop, ProtoRouting, ProtoDstOpts or ProtoFragment
	// Data follows the next-header and length bytes. Bytes pads it with zeros (Pad1 options) to
	// a multiple of 8 bytes with those two; a fragment header's Data is always 6 bytes.
	Data []byte
}

// Fragment returns a fragment extension header: offset in 8-byte units, more fragments, id.
func Fragment(offset uint16, more bool, id uint32) ExtHeader {
	d := make([]byte, 6)
	v := offset << 3
	if more {
		v |= 1
	}
	d[0], d[1] = byte(v>>8), byte(v)
	d[2], d[3], d[4], d[5] = byte(id>>24), byte(id>>16), byte(id>>8), byte(id)
	return ExtHeader{Type: ProtoFragment, Data: d}
}

// TCP is a TCP header. Bytes computes the data offset and checksum.
type TCP struct {
	SrcPort, DstPort uint16
	Seq, Ack         uint32
	Flags            uint8
	Window, Urgent   uint16
	Options          []byte // raw; Bytes pads them with EOL (zero) bytes to a multiple of 4
}

// Packet is a decoded frame: the Frame it would be built from plus what Bytes derives.
type Packet struct {
	Frame
	L3Off, L4Off int      // where the IP header and the upper-layer header start
	IHL          int      // IPv4 header length in bytes
	TotalLen     int      // IPv4 total length, or 40 + the IPv6 payload length
	DataOffset   int      // TCP header length in bytes
	IPv4Checksum uint16   // as found in the frame
	TCPChecksum  uint16   // as found in the frame
	Options      []Option // TCP options up to and including an EOL, or up to a malformed one
	Trailer      []byte   // bytes after the IP packet, such as Ethernet padding

	optErr error // why Options stopped early, if they are malformed
}
