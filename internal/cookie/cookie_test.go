package cookie

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/xsyn-project/xsyn/spec"
)

// referenceKey is the key of the paper's test vectors: bytes 00 to 0f.
var referenceKey = [16]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}

func TestSipHash24Vectors(t *testing.T) {
	for _, tc := range []struct {
		n    int // message: bytes 00 to n-1
		want uint64
	}{
		{15, 0xa129ca6149be45e5}, // the paper's appendix A
		{0, 0x726fdb47dd0e0e31},  // vectors.h of the reference implementation
		{8, 0x93f5f5799a932462},  // one whole block, as the program hashes
	} {
		msg := make([]byte, tc.n)
		for i := range msg {
			msg[i] = byte(i)
		}
		if got := SipHash24(referenceKey, msg); got != tc.want {
			t.Errorf("%d-byte message: %#016x, want %#016x", tc.n, got, tc.want)
		}
	}
}

// TestHashMessage pins what is hashed, spelled out in wire bytes: the program's words, written
// out little-endian, put each address's 32-bit halves and the ports in this order.
func TestHashMessage(t *testing.T) {
	key := spec.CookieKey{0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}
	const sport, dport, isn, slot, opt = 0x1234, 0x0050, 0x89abcdef, 0x01c0ffee, 0xa7
	le32 := func(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }
	be16 := func(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }
	cat := func(parts ...[]byte) (out []byte) {
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	// isn, dport, sport | option byte, slot, three zero bytes
	tail := cat(le32(isn), be16(dport), be16(sport), []byte{opt}, le32(slot), []byte{0, 0, 0})

	src4, dst4 := netip.MustParseAddr("192.0.2.77"), netip.MustParseAddr("203.0.113.10")
	s4, d4 := src4.As4(), dst4.As4()
	msg4 := cat(d4[:], s4[:], tail)

	src6, dst6 := netip.MustParseAddr("2001:db8:c::77"), netip.MustParseAddr("2001:db8:5::10")
	s6, d6 := src6.As16(), dst6.As16()
	msg6 := cat(s6[4:8], s6[0:4], s6[12:16], s6[8:12], d6[4:8], d6[0:4], d6[12:16], d6[8:12], tail)

	for _, tc := range []struct {
		name     string
		src, dst netip.Addr
		msg      []byte
	}{
		{"ipv4", src4, dst4, msg4},
		{"ipv6", src6, dst6, msg6},
	} {
		got := Hash(key, tc.src, tc.dst, sport, dport, isn, slot, opt)
		if want := SipHash24(key, tc.msg); got != want {
			t.Errorf("%s: %#016x, want SipHash of % x: %#016x", tc.name, got, tc.msg, want)
		}
		isn2, ts := Make(key, tc.src, tc.dst, sport, dport, isn, slot, opt)
		if isn2 != uint32(got)&^0xff|opt || ts != uint8(got>>32) {
			t.Errorf("%s: Make = %#08x, %#02x from hash %#016x", tc.name, isn2, ts, got)
		}
	}
}

func TestOptByte(t *testing.T) {
	for _, tc := range []struct {
		name    string
		mss     uint16
		wscale  int
		sack    bool
		ecn     bool
		ipv6    bool
		want    uint8
		decoded Options
	}{
		{"nothing offered", 0, NoWScale, false, false, false, 0x0f, Options{536, NoWScale, false, false}},
		{"below the table", 100, NoWScale, false, false, true, 0x0f, Options{1220, NoWScale, false, false}},
		{"linux ipv4", 1460, 7, true, false, false, 0xd7, Options{1460, 7, true, false}},
		{"linux ipv6", 1440, 7, true, false, true, 0x97, Options{1440, 7, true, false}},
		{"one below 1460", 1459, 0, false, true, false, 0xa0, Options{1440, 0, false, true}},
		{"ipv6 jumbo", 9000, 14, true, true, true, 0xfe, Options{8940, 14, true, true}},
		{"ipv6 one below 8940", 8939, 2, false, false, true, 0x82, Options{1440, 2, false, false}},
		{"ipv4 1300", 1300, NoWScale, true, false, false, 0x5f, Options{1300, NoWScale, true, false}},
		{"wscale 15 clamped", 1460, 15, false, false, false, 0xce, Options{1460, 14, false, false}},
	} {
		got := OptByte(tc.mss, tc.wscale, tc.sack, tc.ecn, tc.ipv6)
		if got != tc.want {
			t.Errorf("%s: OptByte = %#02x, want %#02x", tc.name, got, tc.want)
		}
		if d := Decode(got, tc.ipv6); d != tc.decoded {
			t.Errorf("%s: Decode(%#02x) = %+v, want %+v", tc.name, got, d, tc.decoded)
		}
	}
}

// TestOptByteRoundTrip: every byte the program can write decodes to options that encode to it.
func TestOptByteRoundTrip(t *testing.T) {
	for _, ipv6 := range []bool{false, true} {
		for b := range 256 {
			d := Decode(uint8(b), ipv6)
			if got := OptByte(d.MSS, d.WScale, d.SACK, d.ECN, ipv6); got != uint8(b) {
				t.Errorf("ipv6 %v: %#02x decodes to %+v, which encodes to %#02x", ipv6, b, d, got)
			}
		}
	}
}
