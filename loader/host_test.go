package loader

import (
	"net"
	"net/netip"
	"testing"

	"github.com/xsyn-project/xsyn/internal/packet"
	"github.com/xsyn-project/xsyn/spec"
)

// TestNotForHost: XDP_TX answers whatever it is given, so a SYN to a protected port is answered
// only when this host would answer it itself. Frames to another MAC, to a group address, from or
// to addresses that are not unicast, with a bad IPv4 header checksum, or on their way elsewhere
// along an IPv6 routing header are passed to the stack untouched (which drops or routes them),
// never reflected.
func TestNotForHost(t *testing.T) {
	r := newRig(t, dpSpec(t))
	if err := r.prog.configMaps().setInterface(net.HardwareAddr(serverMAC[:])); err != nil {
		t.Fatal(err)
	}
	notForHost := Counters{SynReceived: 1, PassNotForHost: 1}
	toMAC := func(m packet.MAC) func(*packet.Frame) { return func(f *packet.Frame) { f.Dst = m } }
	to4 := func(a string) func(*packet.Frame) {
		return func(f *packet.Frame) { f.IPv4.Dst = netip.MustParseAddr(a) }
	}
	from4 := func(a string) func(*packet.Frame) {
		return func(f *packet.Frame) { f.IPv4.Src = netip.MustParseAddr(a) }
	}
	to6 := func(a string) func(*packet.Frame) {
		return func(f *packet.Frame) { f.IPv6.Dst = netip.MustParseAddr(a) }
	}
	from6 := func(a string) func(*packet.Frame) {
		return func(f *packet.Frame) { f.IPv6.Src = netip.MustParseAddr(a) }
	}
	routed := func(segmentsLeft byte) func(*packet.Frame) {
		return func(f *packet.Frame) {
			f.IPv6.ExtHeaders = []packet.ExtHeader{{Type: packet.ProtoRouting, Data: []byte{4, segmentsLeft, 0, 0, 0, 0}}}
		}
	}
	v4, v6 := spec.IPv4, spec.IPv6
	cases := []dpCase{
		{name: "own mac answered", frame: seg(portDefault, packet.SYN, linuxOpts), verdict: xdpTX, delta: answered, synack: answer(linuxAnswer)},
		{name: "another host's mac", frame: seg(portDefault, packet.SYN, linuxOpts, toMAC(packet.MAC{0x02, 0x5e, 0, 0, 0, 0x02})),
			verdict: xdpPass, delta: notForHost},
		{name: "broadcast mac", frame: seg(portDefault, packet.SYN, linuxOpts, toMAC(packet.MAC{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})),
			verdict: xdpPass, delta: notForHost},
		{name: "multicast mac", frame: seg(portDefault, packet.SYN, linuxOpts, toMAC(packet.MAC{0x01, 0x00, 0x5e, 0, 0, 1})),
			verdict: xdpPass, delta: notForHost},
		{name: "to loopback", only: v4, frame: seg(portDefault, packet.SYN, linuxOpts, to4("127.0.0.1")), verdict: xdpPass, delta: notForHost},
		{name: "to 0.0.0.0", only: v4, frame: seg(portDefault, packet.SYN, linuxOpts, to4("0.0.0.0")), verdict: xdpPass, delta: notForHost},
		{name: "to multicast", only: v4, frame: seg(portDefault, packet.SYN, linuxOpts, to4("224.0.0.1")), verdict: xdpPass, delta: notForHost},
		{name: "to broadcast", only: v4, frame: seg(portDefault, packet.SYN, linuxOpts, to4("255.255.255.255")), verdict: xdpPass, delta: notForHost},
		{name: "from broadcast", only: v4, frame: seg(portDefault, packet.SYN, linuxOpts, from4("255.255.255.255")), verdict: xdpPass, delta: notForHost},
		{name: "from multicast", only: v4, frame: seg(portDefault, packet.SYN, linuxOpts, from4("239.1.2.3")), verdict: xdpPass, delta: notForHost},
		{name: "from loopback", only: v4, frame: seg(portDefault, packet.SYN, linuxOpts, from4("127.0.0.1")), verdict: xdpPass, delta: notForHost},
		{name: "bad ipv4 header checksum", only: v4, frame: seg(portDefault, packet.SYN, linuxOpts),
			patch: func(b []byte, p *packet.Packet) { b[p.L3Off+10] ^= 0x01 }, verdict: xdpPass, delta: notForHost},
		{name: "bad checksum with options", only: v4, frame: seg(portDefault, packet.SYN, nil, func(f *packet.Frame) {
			f.IPv4.Options = []byte{1, 1, 1, 0}
		}), patch: func(b []byte, p *packet.Packet) { b[p.L3Off+21] ^= 0x01 }, verdict: xdpPass, delta: notForHost},
		{name: "to ipv6 multicast", only: v6, frame: seg(portDefault, packet.SYN, linuxOpts, to6("ff02::1")), verdict: xdpPass, delta: notForHost},
		{name: "to ::1", only: v6, frame: seg(portDefault, packet.SYN, linuxOpts, to6("::1")), verdict: xdpPass, delta: notForHost},
		{name: "from ::", only: v6, frame: seg(portDefault, packet.SYN, linuxOpts, from6("::")), verdict: xdpPass, delta: notForHost},
		{name: "from ipv6 multicast", only: v6, frame: seg(portDefault, packet.SYN, linuxOpts, from6("ff05::2")), verdict: xdpPass, delta: notForHost},
		{name: "routing header, segments left", only: v6, frame: seg(portDefault, packet.SYN, linuxOpts, routed(1)),
			verdict: xdpPass, delta: notForHost},
		{name: "routing header, last segment answered", only: v6, frame: seg(portDefault, packet.SYN, linuxOpts, routed(0)),
			verdict: xdpTX, delta: answered, synack: answer(linuxAnswer)},
		// Only SYNs are judged: an ACK to another MAC is the stack's to drop, as before.
		{name: "ack to another host's mac", frame: seg(portDefault, packet.ACK, nil, toMAC(packet.MAC{0x02, 0x5e, 0, 0, 0, 0x02})),
			verdict: xdpDrop, delta: Counters{AckCookieInvalid: 1}},
	}
	runCases(t, r, cases)
}
