package packet

import (
	"encoding/hex"
	"errors"
	"net/netip"
	"reflect"
	"testing"
)

func TestChecksumKnownValues(t *testing.T) {
	for _, tc := range []struct {
		name string
		hex  string
		want uint16
	}{
		// RFC 1071 section 3: the sum of these bytes is 0xddf2.
		{"rfc1071 example", "0001f203f4f5f6f7", ^uint16(0xddf2)},
		// An IPv4 header with its checksum field zeroed (a widely quoted worked example).
		{"ipv4 header", "450000730000400040110000c0a80001c0a800c7", 0xb861},
		{"odd length", "01", ^uint16(0x0100)},
		{"carry wraps", "ffffffff0001", ^uint16(0x0001)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, _ := hex.DecodeString(tc.hex)
			if got := Checksum(b); got != tc.want {
				t.Errorf("Checksum = 0x%04x, want 0x%04x", got, tc.want)
			}
		})
	}
}

var (
	macA = MAC{2, 0, 0, 0, 0, 1}
	macB = MAC{2, 0, 0, 0, 0, 2}
	v4a  = netip.MustParseAddr("192.0.2.1")
	v4b  = netip.MustParseAddr("203.0.113.10")
	v6a  = netip.MustParseAddr("2001:db8::1")
	v6b  = netip.MustParseAddr("2001:db8::2")
)

func TestRoundTrip(t *testing.T) {
	linux := Options(MSS(1460), SACKPerm(), Timestamp(1, 0), NOP(), WScale(7))
	for _, tc := range []struct {
		name    string
		f       Frame
		wantLen int
	}{
		{"ipv4 syn no options", Frame{Dst: macB, Src: macA,
			IPv4: &IPv4{Src: v4a, Dst: v4b, TTL: 64, DF: true},
			TCP:  &TCP{SrcPort: 1, DstPort: 80, Seq: 7, Flags: SYN}}, 54},
		{"ipv4 syn padded", Frame{Dst: macB, Src: macA, MinLen: 60,
			IPv4: &IPv4{Src: v4a, Dst: v4b, TTL: 64},
			TCP:  &TCP{SrcPort: 1, DstPort: 80, Seq: 7, Flags: SYN}}, 60},
		{"qinq ipv4 options fragment payload", Frame{Dst: macB, Src: macA,
			VLANs:   []VLAN{{TPID8021AD, 10}, {TPID8021Q, 20}},
			IPv4:    &IPv4{Src: v4a, Dst: v4b, TTL: 1, MF: true, FragOffset: 3, ID: 9, TOS: 4, Options: []byte{148, 4, 0, 0}},
			TCP:     &TCP{SrcPort: 1, DstPort: 80, Seq: 7, Ack: 8, Flags: ACK | PSH, Window: 9, Options: linux},
			Payload: []byte("hello")}, 18 + 4 + 24 + 40 + 5},
		{"ipv6 ext headers", Frame{Dst: macB, Src: macA, VLANs: []VLAN{{TPID8021Q, 5}},
			IPv6: &IPv6{Src: v6a, Dst: v6b, HopLimit: 9, TrafficClass: 3, FlowLabel: 0xabcde, ExtHeaders: []ExtHeader{
				{Type: ProtoHopByHop, Data: make([]byte, 6)}, {Type: ProtoRouting, Data: make([]byte, 14)},
				Fragment(0, true, 77), {Type: ProtoDstOpts, Data: make([]byte, 6)}}},
			TCP: &TCP{SrcPort: 1, DstPort: 80, Flags: SYN, Options: Options(MSS(1440), NOP(), NOP(), SACKPerm())}}, 18 + 40 + 40 + 28},
		{"udp", Frame{Dst: macB, Src: macA, Proto: ProtoUDP, Payload: []byte{0, 1, 0, 2, 0, 8, 0, 0},
			IPv4: &IPv4{Src: v4a, Dst: v4b, TTL: 64}}, 14 + 20 + 8},
		{"arp", Frame{Dst: macB, Src: macA, EtherType: EtherTypeARP, Payload: make([]byte, 28)}, 42},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.f.Bytes()
			if len(b) != tc.wantLen {
				t.Fatalf("len = %d, want %d", len(b), tc.wantLen)
			}
			p, err := Parse(b)
			if err != nil {
				t.Fatal(err)
			}
			want := tc.f
			want.MinLen = 0
			if want.EtherType == 0 {
				want.EtherType = p.EtherType
			}
			if want.TCP != nil {
				want.Proto = ProtoTCP
				tcp := *want.TCP
				tcp.Options = nilIfEmpty(pad4(tcp.Options))
				want.TCP = &tcp
			}
			if want.IPv4 != nil {
				ip := *want.IPv4
				ip.Options = nilIfEmpty(pad4(ip.Options))
				want.IPv4 = &ip
			}
			if !reflect.DeepEqual(p.Frame, want) {
				t.Errorf("decoded\n %#v\nwant\n %#v", p.Frame, want)
			}
			if got, want := len(p.Trailer), tc.f.MinLen-(len(b)-len(p.Trailer)); tc.f.MinLen > 0 && got != want {
				t.Errorf("trailer %d bytes, want %d", got, want)
			}
		})
	}
}

func TestParseRejectsBadChecksums(t *testing.T) {
	f := Frame{Dst: macB, Src: macA, IPv4: &IPv4{Src: v4a, Dst: v4b, TTL: 64},
		TCP: &TCP{SrcPort: 1, DstPort: 80, Flags: SYN, Options: MSS(1460)}, Payload: []byte{1, 2, 3}}
	f6 := f
	f6.IPv4, f6.IPv6 = nil, &IPv6{Src: v6a, Dst: v6b, HopLimit: 64}
	for _, tc := range []struct {
		name string
		b    []byte
		off  int // byte to flip
	}{
		{"ipv4 ttl", f.Bytes(), 14 + 8},
		{"ipv4 tcp payload", f.Bytes(), 14 + 20 + 24 + 2},
		{"ipv4 pseudo header is covered", f.Bytes(), 14 + 12}, // breaks both; IP is checked first
		{"ipv6 source address", f6.Bytes(), 14 + 8},
		{"ipv6 tcp seq", f6.Bytes(), 14 + 40 + 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Parse(tc.b); err != nil {
				t.Fatalf("intact frame: %v", err)
			}
			tc.b[tc.off] ^= 0x10
			if _, err := Parse(tc.b); !errors.Is(err, ErrChecksum) {
				t.Errorf("Parse = %v, want %v", err, ErrChecksum)
			}
			if _, err := Decode(tc.b); err != nil {
				t.Errorf("Decode = %v, want no error", err)
			}
		})
	}
}

func TestParseOptions(t *testing.T) {
	for _, tc := range []struct {
		name    string
		raw     []byte
		want    []Option
		wantErr bool
	}{
		{"linux", Options(MSS(1460), SACKPerm(), Timestamp(1, 2), NOP(), WScale(7)), []Option{
			{OptMSS, []byte{5, 0xb4}}, {OptSACKPerm, []byte{}}, {OptTimestamp, []byte{0, 0, 0, 1, 0, 0, 0, 2}},
			{OptNOP, nil}, {OptWScale, []byte{7}}}, false},
		{"stops at eol", Options(NOP(), EOL(), WScale(7)), []Option{{OptNOP, nil}, {OptEOL, nil}}, false},
		{"unknown kind", Raw(253, 1, 2), []Option{{253, []byte{1, 2}}}, false},
		{"length below 2", []byte{OptMSS, 1, 0, 0}, nil, true},
		{"runs past the end", Options(MSS(1), []byte{OptTimestamp, 10, 0}), []Option{{OptMSS, []byte{0, 1}}}, true},
		{"no length byte", []byte{OptNOP, OptWScale}, []Option{{OptNOP, nil}}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseOptions(tc.raw)
			if (err != nil) != tc.wantErr {
				t.Errorf("err = %v, want error: %v", err, tc.wantErr)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("options = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestDecodeRejectsImpossibleLengths(t *testing.T) {
	syn := Frame{Dst: macB, Src: macA, IPv4: &IPv4{Src: v4a, Dst: v4b, TTL: 64},
		TCP: &TCP{SrcPort: 1, DstPort: 80, Flags: SYN}}.Bytes()
	syn6 := Frame{Dst: macB, Src: macA, IPv6: &IPv6{Src: v6a, Dst: v6b, HopLimit: 64,
		ExtHeaders: []ExtHeader{{Type: ProtoHopByHop}}},
		TCP: &TCP{SrcPort: 1, DstPort: 80, Flags: SYN}}.Bytes()
	for _, tc := range []struct {
		name  string
		b     []byte
		patch func(b []byte)
	}{
		{"short ethernet", syn[:13], nil},
		{"truncated vlan", []byte{0: 0, 12: 0x81, 13: 0, 15: 0}, nil},
		{"ipv4 ihl 4", syn, func(b []byte) { b[14] = 0x44 }},
		{"ipv4 total length past frame", syn, func(b []byte) { b[17]++ }},
		{"ipv4 version", syn, func(b []byte) { b[14] = 0x65 }},
		{"tcp doff 4", syn, func(b []byte) { b[14+20+12] = 0x40 }},
		{"tcp doff past segment", syn, func(b []byte) { b[14+20+12] = 0x60 }},
		{"ipv6 payload length past frame", syn6, func(b []byte) { b[14+5]++ }},
		{"ipv6 ext header past payload", syn6, func(b []byte) { b[14+40+1] = 9 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := append([]byte(nil), tc.b...)
			if tc.patch != nil {
				tc.patch(b)
			}
			if p, err := Decode(b); err == nil {
				t.Errorf("Decode = %+v, want an error", p)
			}
		})
	}
}
