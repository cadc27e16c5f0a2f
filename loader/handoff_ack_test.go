package loader

// ACKs on the socket-handoff path: what the socket lookup finds in a namespace the test makes
// decides the verdict of a valid ACK; forged, stale and wrong-key ACKs are dropped; a key
// rotation keeps the old key until prev_until. The rig and the SYN-ACK fixtures are in
// handoff_test.go.

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xsyn-project/xsyn/internal/cookie"
	"github.com/xsyn-project/xsyn/internal/netlab"
	"github.com/xsyn-project/xsyn/internal/packet"
	"github.com/xsyn-project/xsyn/internal/testutil"
	"github.com/xsyn-project/xsyn/spec"
)

// listen opens a listener in ns until the test ends.
func listen(t *testing.T, ns *netlab.Host, network, addr string) net.Listener {
	t.Helper()
	ln := inNS(t, ns, func() (net.Listener, error) { return net.Listen(network, addr) })
	t.Cleanup(func() { ln.Close() })
	return ln
}

// dial makes the fixtures' connection (from the client's address and port) to port in ns and
// accepts it: both ends are established.
func dial(t *testing.T, ns *netlab.Host, ln net.Listener, from, to netip.Addr, port uint16) (client, server net.Conn) {
	t.Helper()
	client = inNS(t, ns, func() (net.Conn, error) {
		d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(from, clientPort)), Control: reuseAddr}
		return d.Dial("tcp", netip.AddrPortFrom(to, port).String())
	})
	server, err := ln.Accept()
	if err != nil {
		client.Close()
		t.Fatal(err)
	}
	return client, server
}

// reuseAddr lets connections share the client's address and port, as long as they go to
// different ports: the connections of one test are open or waiting out TIME_WAIT side by side.
func reuseAddr(_, _ string, c syscall.RawConn) error {
	var err error
	if cerr := c.Control(func(fd uintptr) {
		err = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	}); cerr != nil {
		return cerr
	}
	return err
}

// connect keeps a connection made by dial open until the test ends.
func connect(t *testing.T, ns *netlab.Host, ln net.Listener, from, to netip.Addr, port uint16) {
	t.Helper()
	c, srv := dial(t, ns, ln, from, to, port)
	t.Cleanup(func() { c.Close(); srv.Close() })
}

// handshake is a SYN answered by the program, and the slot it was answered in.
type handshake struct {
	shape   frameShape
	syn     packet.Frame
	synack  *packet.Packet
	slot    uint32 // the program's
	taiSlot uint32
}

func (r *handoffRig) handshake(t *testing.T, s frameShape, port uint16) (handshake, bool) {
	t.Helper()
	syn := s.segment(port, packet.SYN, linuxOpts)
	res, ok := r.run(t, nil, syn.Bytes())
	if res.ret != xdpTX {
		t.Fatalf("SYN: %s, want XDP_TX", actionName(res.ret))
	}
	synack, err := packet.Parse(res.out)
	if err != nil {
		t.Fatalf("parse SYN-ACK: %v", err)
	}
	return handshake{s, syn, synack, res.slot, res.taiSlot}, ok
}

// forge is an ACK to h's SYN whose cookie internal/cookie made with key for the program's slot
// and the option byte h's SYN-ACK carries: what a sender who knew key would send.
func (h handshake) forge(key spec.CookieKey, slot uint32) packet.Frame {
	ack := handoffACK(h.syn, h.synack)
	src, dst := h.shape.pick(client4, client6), h.shape.pick(server4, server6)
	isn, tsBits := cookie.Make(key, src, dst, clientPort, h.syn.TCP.DstPort, h.syn.TCP.Seq, slot, uint8(h.synack.TCP.Seq))
	ack.TCP.Ack = isn + 1
	if ack.TCP.Options != nil { // timestamps negotiated
		ack.TCP.Options = packet.Options(packet.NOP(), packet.NOP(), packet.Timestamp(clientTSval+1, 0x5a5a5a00|uint32(tsBits)))
	}
	return ack
}

// ackRow is a client's ACK to a SYN-ACK of the program, edited, and what it must come to.
type ackRow struct {
	name  string
	port  uint16 // the SYN's; 0: handoffBase
	only  spec.Family
	shift int32                          // the program's clock at the ACK, in slots past the SYN's
	edit  func(*packet.Frame, handshake) // on the valid ACK; the frame's service is the one counted
	want  verdictWant
}

// ackRows runs every row in every frame shape, its ACK inside ns.
func (r *handoffRig) ackRows(t *testing.T, ns *netlab.Host, rows []ackRow) (passed int) {
	t.Helper()
	for _, s := range frameShapes {
		t.Run(s.name, func(t *testing.T) {
			for _, row := range rows {
				if row.only != 0 && row.only != s.fam {
					continue
				}
				t.Run(row.name, func(t *testing.T) {
					r.ackRow(t, ns, s, row)
					if !t.Failed() {
						passed++
					}
				})
			}
		})
	}
	return passed
}

func (r *handoffRig) ackRow(t *testing.T, ns *netlab.Host, s frameShape, row ackRow) {
	port := cmp.Or(row.port, handoffBase)
	retry(t, func() bool {
		h, ok := r.handshake(t, s, port)
		if !ok {
			return false
		}
		ack := handoffACK(h.syn, h.synack)
		if row.edit != nil {
			row.edit(&ack, h)
		}
		in := ack.Bytes()
		id := serviceID(t, r.spec, s.pick(server4, server6), ack.TCP.DstPort)
		if row.shift != 0 {
			r.setShift(t, row.shift)
			defer r.setShift(t, 0)
		}
		res, ok := r.run(t, ns, in)
		if !ok || res.taiSlot != h.taiSlot {
			return false
		}
		r.expect(t, s.fam, res, id, row.want)
		if !bytes.Equal(res.out, in) {
			t.Errorf("frame changed:\n in  %x\n out %x", in, res.out)
		}
		return true
	})
}

func setFlags(flags uint8) func(*packet.Frame, handshake) {
	return func(f *packet.Frame, _ handshake) { f.TCP.Flags = flags }
}

// flagRows are segments other than a bare ACK, which need a connection.
func flagRows(want verdictWant) []ackRow {
	var rows []ackRow
	for _, fl := range []struct {
		name  string
		flags uint8
	}{
		{"rst", packet.RST}, {"rst ack", packet.RST | packet.ACK}, {"fin", packet.FIN}, {"fin ack", packet.FIN | packet.ACK},
		{"no flags", 0}, {"psh only", packet.PSH}, {"syn ack", packet.SYN | packet.ACK}, {"syn rst", packet.SYN | packet.RST},
	} {
		rows = append(rows, ackRow{name: fl.name, edit: setFlags(fl.flags), want: want})
	}
	return rows
}

var withData = func(f *packet.Frame, _ handshake) {
	f.TCP.Flags |= packet.PSH
	f.Payload = []byte("GET / HTTP/1.1\r\n\r\n")
}

// TestHandoffACKSockets: what a valid ACK comes to depends on the sockets the lookup finds in
// the namespace the program runs in; anything but an ACK needs a connection.
func TestHandoffACKSockets(t *testing.T) {
	r := newHandoffRig(t, handoffKey)
	ns := handoffNS(t, "xsynha")
	noTS := handoffPort(1) // timestamps off: an ACK without them
	passed := 0

	t.Run("nothing listens", func(t *testing.T) {
		passed += r.ackRows(t, ns, append([]ackRow{
			{name: "valid", want: noListener},
			{name: "valid with data", edit: withData, want: noListener},
			{name: "valid without timestamps", port: noTS, want: noListener},
		}, flagRows(noConn)...))
	})
	t.Run("ipv4 listener", func(t *testing.T) {
		listen(t, ns, "tcp4", fmt.Sprintf("0.0.0.0:%d", noTS))
		listen(t, ns, "tcp4", fmt.Sprintf("127.0.0.1:%d", handoffBase))
		passed += r.ackRows(t, ns, []ackRow{
			{name: "on every address", only: spec.IPv4, port: noTS, want: handedOff},
			{name: "of the other family", only: spec.IPv6, port: noTS, want: noListener},
			{name: "on another address", only: spec.IPv4, port: handoffBase, want: noListener},
		})
	})
	ln := listen(t, ns, "tcp", fmt.Sprintf("[::]:%d", handoffBase)) // both families
	t.Run("listener", func(t *testing.T) {
		passed += r.ackRows(t, ns, append([]ackRow{
			{name: "valid", want: handedOff},
			{name: "valid with data", edit: withData, want: handedOff},
			{name: "valid with cwr", edit: func(f *packet.Frame, _ handshake) { f.TCP.Flags |= packet.CWR }, want: handedOff},
			{name: "invalid", edit: func(f *packet.Frame, _ handshake) { f.TCP.Ack ^= 1 << 20 }, want: forged},
			{name: "valid for a port nothing listens on", edit: forgeFor(handoffPort(2)), want: noListener},
		}, flagRows(noConn)...))
	})
	t.Run("connected", func(t *testing.T) {
		connect(t, ns, ln, client4, server4, handoffBase)
		connect(t, ns, ln, client6, server6, handoffBase)
		rows := []ackRow{
			{name: "valid", want: connected},
			{name: "invalid cookie", edit: func(f *packet.Frame, _ handshake) { f.TCP.Ack ^= 1 << 20 }, want: connected},
			{name: "with data", edit: withData, want: connected},
		}
		passed += r.ackRows(t, ns, append(rows, flagRows(connected)...))
	})
	t.Run("server in time-wait", func(t *testing.T) {
		// The server closed first, so its end waits out TIME_WAIT and the lookup finds it: even
		// a handshake's valid ACK goes to that socket, not to the listener.
		twPort := handoffPort(2)
		timeWait(t, ns, listen(t, ns, "tcp4", fmt.Sprintf("0.0.0.0:%d", twPort)), client4, server4, twPort)
		timeWait(t, ns, listen(t, ns, "tcp6", fmt.Sprintf("[::]:%d", twPort)), client6, server6, twPort)
		passed += r.ackRows(t, ns, []ackRow{
			{name: "valid", port: twPort, want: connected},
			{name: "rst", port: twPort, edit: setFlags(packet.RST), want: connected},
		})
	})
	t.Logf("%d rows passed", passed)
}

// timeWait makes the fixtures' connection to port in ns, closes the server's end first, then the
// client's, and waits until the server's end is in TIME_WAIT.
func timeWait(t *testing.T, ns *netlab.Host, ln net.Listener, from, to netip.Addr, port uint16) {
	t.Helper()
	c, srv := dial(t, ns, ln, from, to, port)
	srv.Close()
	_, err := io.ReadAll(c) // up to EOF: the server's FIN arrived
	c.Close()
	if err != nil {
		t.Fatal(err)
	}
	// /proc/net/tcp{,6} of ns: "sl local rem st", addresses and ports in hex, st 06 TIME_WAIT.
	file := "/proc/thread-self/net/tcp"
	if to.Is6() {
		file += "6"
	}
	want := fmt.Sprintf(":%04X .*:%04X 06 ", port, clientPort)
	testutil.Eventually(t, 10*time.Second, fmt.Sprintf("the server's end of %s -> %s port %d in TIME_WAIT", from, to, port), func() error {
		table := inNS(t, ns, func() ([]byte, error) { return os.ReadFile(file) })
		if !regexp.MustCompile(want).Match(table) {
			return fmt.Errorf("not in %s:\n%s", file, table)
		}
		return nil
	})
}

// forgeFor makes the ACK one to another port, with the cookie the key makes for that port.
func forgeFor(port uint16) func(*packet.Frame, handshake) {
	return func(f *packet.Frame, h handshake) {
		syn := *h.syn.TCP
		syn.DstPort = port
		h.syn.TCP = &syn
		*f = h.forge(handoffKey, h.slot)
	}
}

// tsecr edits the TSecr of an ACK carrying NOP NOP TS.
func tsecr(edit func(uint32) uint32) func(*packet.Frame, handshake) {
	return func(f *packet.Frame, _ handshake) {
		f.TCP.Options = slices.Clone(f.TCP.Options)
		binary.BigEndian.PutUint32(f.TCP.Options[8:], edit(binary.BigEndian.Uint32(f.TCP.Options[8:])))
	}
}

func forgeWith(key spec.CookieKey, slots int32) func(*packet.Frame, handshake) {
	return func(f *packet.Frame, h handshake) { *f = h.forge(key, h.slot+uint32(slots)) }
}

// TestHandoffForgedACK sends the ACKs an attacker would to a listening service: every one that
// the program did not answer, or that is too old, is dropped and counted as invalid, on the
// service it was sent to.
func TestHandoffForgedACK(t *testing.T) {
	r := newHandoffRig(t, handoffKey)
	ns := handoffNS(t, "xsynhf")
	for i := range handoffSvcs {
		listen(t, ns, "tcp", fmt.Sprintf("[::]:%d", handoffPort(i)))
	}
	next := func(set func(*packet.Frame, netip.Addr, netip.Addr)) func(*packet.Frame, handshake) {
		return func(f *packet.Frame, h handshake) {
			if f.IPv4 != nil {
				set(f, f.IPv4.Src, f.IPv4.Dst)
			} else {
				set(f, f.IPv6.Src, f.IPv6.Dst)
			}
		}
	}
	setAddrs := func(f *packet.Frame, src, dst netip.Addr) {
		if f.IPv4 != nil {
			f.IPv4.Src, f.IPv4.Dst = src, dst
		} else {
			f.IPv6.Src, f.IPv6.Dst = src, dst
		}
	}
	tcp := func(edit func(*packet.TCP)) func(*packet.Frame, handshake) {
		return func(f *packet.Frame, _ handshake) { edit(f.TCP) }
	}
	rows := []ackRow{
		// Accepted: what the program answered, and what a holder of the key computes.
		{name: "valid", want: handedOff},
		{name: "made by the reference", edit: forgeWith(handoffKey, 0), want: handedOff},
		{name: "made by the reference for the previous slot", edit: forgeWith(handoffKey, -1), want: handedOff},
		{name: "one slot old", shift: 1, want: handedOff},
		// Only the low byte of TSecr is ours to check; without timestamps, the ISN's 24 bits.
		{name: "tsecr high bits changed", edit: tsecr(func(v uint32) uint32 { return v ^ 0xffffff00 }), want: handedOff},
		{name: "no timestamps", edit: tcp(func(t *packet.TCP) { t.Options = nil }), want: handedOff},
		// Dropped.
		{name: "two slots old", shift: 2, want: forged},
		{name: "from the next slot", shift: -1, want: forged},
		{name: "made by the reference two slots back", edit: forgeWith(handoffKey, -2), want: forged},
		{name: "made by the reference for the next slot", edit: forgeWith(handoffKey, 1), want: forged},
		{name: "another key", edit: forgeWith(strayKey, 0), want: forged},
		{name: "another key, previous slot", edit: forgeWith(strayKey, -1), want: forged},
		{name: "other source port", edit: tcp(func(t *packet.TCP) { t.SrcPort++ }), want: forged},
		{name: "other destination port", edit: tcp(func(t *packet.TCP) { t.DstPort = handoffPort(2) }), want: forged},
		{name: "other source address", edit: next(func(f *packet.Frame, src, dst netip.Addr) { setAddrs(f, src.Next(), dst) }), want: forged},
		{name: "other destination address", edit: next(func(f *packet.Frame, src, dst netip.Addr) { setAddrs(f, src, dst.Next()) }), want: forged},
		{name: "seq one above", edit: tcp(func(t *packet.TCP) { t.Seq++ }), want: forged},
		{name: "seq one below", edit: tcp(func(t *packet.TCP) { t.Seq-- }), want: forged},
		{name: "tsecr zero", edit: tsecr(func(uint32) uint32 { return 0 }), want: forged},
	}
	for b := range 32 {
		what := "hash"
		if b < 8 {
			what = "option"
		}
		rows = append(rows, ackRow{name: fmt.Sprintf("cookie bit %d (%s) flipped", b, what),
			edit: tcp(func(t *packet.TCP) { t.Ack = (t.Ack - 1) ^ 1<<b + 1 }), want: forged})
	}
	for b := range 8 {
		rows = append(rows, ackRow{name: fmt.Sprintf("tsecr bit %d flipped", b),
			edit: tsecr(func(v uint32) uint32 { return v ^ 1<<b }), want: forged})
	}
	t.Logf("%d rows passed", r.ackRows(t, ns, rows))
}

// TestHandoffKeyRotation changes the key under cookies in flight: the old key is accepted until
// prev_until (two slots after the rotation), not a slot longer, and a second rotation retires it.
func TestHandoffKeyRotation(t *testing.T) {
	ns := handoffNS(t, "xsynhr")
	listen(t, ns, "tcp", fmt.Sprintf("[::]:%d", handoffBase))
	retry(t, func() bool { return rotation(t, ns) })
}

// rotation runs the rows of TestHandoffKeyRotation on a fresh program; false when a minute
// boundary fell inside.
func rotation(t *testing.T, ns *netlab.Host) bool {
	r := newHandoffRig(t, handoffKey)
	var hs []handshake
	for _, s := range frameShapes {
		h, ok := r.handshake(t, s, handoffBase)
		if !ok || len(hs) > 0 && h.taiSlot != hs[0].taiSlot {
			return false
		}
		hs = append(hs, h)
	}
	slot := hs[0].slot
	if !r.rotate(t, rotatedKey, keyWords(handoffKey), slot) {
		return false
	}
	ack := func(h handshake) packet.Frame { return handoffACK(h.syn, h.synack) }
	forgeAt := func(key spec.CookieKey, s uint32) func(handshake) packet.Frame {
		return func(h handshake) packet.Frame { return h.forge(key, s) }
	}
	steps := []struct {
		name  string
		shift int32
		ack   func(handshake) packet.Frame
		want  verdictWant
	}{
		{"old key's synack", 0, ack, handedOff},
		{"new key", 0, forgeAt(rotatedKey, slot), handedOff},
		{"a key never set", 0, forgeAt(strayKey, slot), forged},
		{"old key's synack one slot on", 1, ack, handedOff},
		{"old key's synack two slots on", 2, ack, forged},
		{"old key in the prev_until slot", 2, forgeAt(handoffKey, slot+2), handedOff},
		{"old key's prev_until cookie a slot later", 3, forgeAt(handoffKey, slot+2), forged},
		{"old key after prev_until", 3, forgeAt(handoffKey, slot+3), forged},
		{"new key after prev_until", 3, forgeAt(rotatedKey, slot+3), handedOff},
	}
	for _, st := range steps {
		r.setShift(t, st.shift)
		for _, h := range hs {
			if !r.rotationRow(t, ns, h, st.name, st.ack(h), st.want) {
				return false
			}
		}
	}
	r.setShift(t, 0)
	// New SYNs get the new key's cookie.
	r.key = rotatedKey
	linux := synOffer{mss: 1460, ts: true, sack: true, ws: 7}
	for _, h := range hs {
		t.Run(h.shape.name+"/syn answered with the new key", func(t *testing.T) { r.synRow(t, ns, h.shape, 0, linux, handedOff) })
	}
	// A second rotation retires the first key at once.
	if !r.rotate(t, strayKey, keyWords(rotatedKey), slot) {
		return false
	}
	for _, h := range hs {
		if !r.rotationRow(t, ns, h, "first key after a second rotation", forgeAt(handoffKey, slot)(h), forged) ||
			!r.rotationRow(t, ns, h, "second key after a second rotation", forgeAt(rotatedKey, slot)(h), handedOff) {
			return false
		}
	}
	return true
}

// rotate reconfigures the program with key and checks the secret it wrote: the key, the one it
// replaced (prev) and prev_until two slots after slot. False when the clock left slot meanwhile.
func (r *handoffRig) rotate(t *testing.T, key spec.CookieKey, prev [2]uint64, slot uint32) bool {
	t.Helper()
	s := r.spec
	s.CookieKey = &key
	if err := r.prog.Reconfigure(s); err != nil {
		t.Fatal(err)
	}
	if slotOf(taiNow())+uint32(r.shift) != slot {
		return false
	}
	var sec xsynCookieSecret
	if err := r.prog.objs.XsynSecret.Lookup(uint32(0), &sec); err != nil {
		t.Fatal(err)
	}
	if want := (xsynCookieSecret{Key: keyWords(key), PrevKey: prev, PrevUntil: slot + 2, SlotShift: r.shift}); sec != want {
		t.Errorf("secret after rotation %+v, want %+v", sec, want)
	}
	return true
}

// rotationRow runs ack in ns; false when the clock left h's slot.
func (r *handoffRig) rotationRow(t *testing.T, ns *netlab.Host, h handshake, name string, ack packet.Frame, want verdictWant) bool {
	t.Helper()
	ok := true
	t.Run(fmt.Sprintf("%s/%s/shift %d", h.shape.name, name, r.shift), func(t *testing.T) {
		res, inSlot := r.run(t, ns, ack.Bytes())
		if !inSlot || res.taiSlot != h.taiSlot {
			ok = false
			return
		}
		r.expect(t, h.shape.fam, res, serviceID(t, r.spec, h.shape.pick(server4, server6), handoffBase), want)
	})
	return ok
}
