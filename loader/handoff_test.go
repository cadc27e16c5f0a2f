package loader

// Fixtures of the socket-handoff path (bpf/cookie.h, bpf/handoff.h) through BPF_PROG_RUN: the
// SYN-ACK to every client offer against every service, predicted byte for byte by
// internal/cookie; ACKs judged against the sockets of a network namespace the test makes (a
// program run inside it looks its sockets up); forged ACKs dropped. A run reads the cookie
// slot around itself and its row starts again when a minute boundary fell inside, so no
// verdict depends on when the test runs.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/xsyn-project/xsyn/internal/cookie"
	"github.com/xsyn-project/xsyn/internal/netlab"
	"github.com/xsyn-project/xsyn/internal/packet"
	"github.com/xsyn-project/xsyn/internal/testutil"
	"github.com/xsyn-project/xsyn/spec"
)

// Port handoffBase+i is the handoff service handoffSvcs[i]. Its MSS, window scale and TTL
// differ from every other's too, so no SYN-ACK is right by accident.
const handoffBase uint16 = 7000

type handoffSvc struct{ ts, sack, ecn bool }

var handoffSvcs = func() (out []handoffSvc) {
	for i := range 8 {
		out = append(out, handoffSvc{ts: i&1 == 0, sack: i&2 == 0, ecn: i&4 != 0})
	}
	return out
}()

func (o handoffSvc) String() string {
	return fmt.Sprintf("svc-ts%s-sack%s-ecn%s", onOff(o.ts), onOff(o.sack), onOff(o.ecn))
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

func handoffMSS(i int) uint16  { return uint16(1200 + 37*i) }
func handoffWScale(i int) int  { return 1 + i }
func handoffTTL(i int) uint8   { return uint8(60 + i) }
func handoffPort(i int) uint16 { return handoffBase + uint16(i) }

var (
	handoffKey = spec.CookieKey{0x6b, 0x65, 0x79, 0x2d, 0x61, 0x3a, 0x9f, 0x10, 0x22, 0x5e, 0xc4, 0x01, 0x77, 0xd8, 0x3b, 0xe6}
	rotatedKey = spec.CookieKey{0x6b, 0x65, 0x79, 0x2d, 0x62, 0x11, 0x42, 0x9a, 0xfe, 0x03, 0x58, 0x6c, 0xb1, 0x0d, 0x2e, 0x47}
	strayKey   = spec.CookieKey{0x6b, 0x65, 0x79, 0x2d, 0x63, 0xa0, 0x0a, 0x55, 0x31, 0xee, 0x7c, 0x90, 0x4f, 0x12, 0xd3, 0x68}
)

// handoffSpec protects the ports of handoffSvcs in both families on the handoff path, built as
// `xsyn attach --path handoff` builds it, with a known cookie key.
func handoffSpec(tb testing.TB, key spec.CookieKey) spec.Spec {
	tb.Helper()
	var s spec.Spec
	for i, o := range handoffSvcs {
		part, err := spec.Simple{Ports: []uint16{handoffPort(i)}, MSS: int(handoffMSS(i)), WScale: handoffWScale(i),
			NoSACK: !o.sack, NoTimestamps: !o.ts, ECN: o.ecn, TTL: int(handoffTTL(i)), Via: spec.ViaHandoff}.Build()
		if err != nil {
			tb.Fatalf("build service %d: %v", i, err)
		}
		for _, svc := range part.Services {
			if !svc.Handoff {
				tb.Fatalf("%s does not take the handoff path", svc)
			}
		}
		s.Services = append(s.Services, part.Services...)
	}
	s.CookieKey = &key
	if err := s.Validate(); err != nil {
		tb.Fatal(err)
	}
	return s
}

// handoffRig is a program protecting handoffSpec, and where its clock stands.
type handoffRig struct {
	*xdpRig
	spec  spec.Spec
	key   spec.CookieKey
	shift int32 // slots the program's clock is ahead of CLOCK_TAI
}

func newHandoffRig(tb testing.TB, key spec.CookieKey) *handoffRig {
	tb.Helper()
	rootOrSkip(tb)
	if err := haveHandoff(tb); err != nil {
		tb.Skipf("the kernel lacks the socket handoff: %v", err)
	}
	s := handoffSpec(tb, key)
	return &handoffRig{xdpRig: newRig(tb, s), spec: s, key: key}
}

// haveHandoff decides whether handoff tests run: the error that the kernel lacks the handoff
// (they skip), or nil. Any other failure to tell fails the test.
func haveHandoff(tb testing.TB) error {
	tb.Helper()
	var fe *FeatureError
	err := ProbeHandoff()
	if err != nil && !errors.As(err, &fe) {
		tb.Fatal(err)
	}
	return err
}

func (r *handoffRig) setShift(tb testing.TB, slots int32) {
	tb.Helper()
	if err := r.prog.configMaps().shiftClock(slots); err != nil {
		tb.Fatal(err)
	}
	r.shift = slots
}

// handoffRun is one run of the program and what it changed.
type handoffRun struct {
	ret     uint32
	out     []byte
	fam     FamilyCounters
	svc     []ServiceCounters // by service id
	taiSlot uint32            // CLOCK_TAI's slot
	slot    uint32            // the program's: taiSlot + shift
	ms      [2]uint32         // CLOCK_TAI in milliseconds, as the program truncates it, before and after
}

// run runs in once: inside ns when given, so the socket lookup sees ns's sockets. ok is false
// when a minute boundary fell during the run.
func (r *handoffRig) run(t *testing.T, ns *netlab.Host, in []byte) (res handoffRun, ok bool) {
	t.Helper()
	fam0, svc0 := r.counters(t), readAllServiceCounters(t, r.xdpRig, len(r.spec.Services))
	opts := ebpf.RunOptions{Data: in, DataOut: make([]byte, len(in)+256)}
	var err error
	before := taiNow()
	if ns == nil {
		res.ret, err = r.prog.XDP().Run(&opts)
	} else {
		err = ns.Do(func() (err error) { res.ret, err = r.prog.XDP().Run(&opts); return err })
	}
	after := taiNow()
	if err != nil {
		t.Fatalf("run %d-byte frame: %v", len(in), err)
	}
	fam1, svc1 := r.counters(t), readAllServiceCounters(t, r.xdpRig, len(r.spec.Services))
	res.out = opts.DataOut
	res.fam = FamilyCounters{IPv4: subFields(fam1.IPv4, fam0.IPv4), IPv6: subFields(fam1.IPv6, fam0.IPv6),
		Other: subFields(fam1.Other, fam0.Other)}
	for id := range svc1 {
		res.svc = append(res.svc, subFields(svc1[id], svc0[id]))
	}
	res.taiSlot = slotOf(before)
	res.slot = res.taiSlot + uint32(r.shift)
	res.ms = [2]uint32{uint32(before.UnixMilli()), uint32(after.UnixMilli())}
	return res, slotOf(after) == res.taiSlot
}

// retry runs a row until it ran within one minute slot (row returns false when it did not).
func retry(t *testing.T, row func() bool) {
	t.Helper()
	for range 3 {
		if row() {
			return
		}
	}
	t.Fatal("a minute boundary fell inside three tries in a row")
}

// verdictWant is what a segment that is not a SYN must come to: the verdict, the change of its
// family's counters and of its service's (every other service's stay).
type verdictWant struct {
	verdict uint32
	delta   Counters
	svc     ServiceCounters
}

var (
	noListener = verdictWant{xdpPass, Counters{PassNoListener: 1}, ServiceCounters{}}
	handedOff  = verdictWant{xdpPass, Counters{AckCookieValid: 1}, ServiceCounters{AckCookieValid: 1}}
	forged     = verdictWant{xdpDrop, Counters{AckCookieInvalid: 1}, ServiceCounters{AckCookieInvalid: 1}}
	connected  = verdictWant{xdpPass, Counters{EstablishedPassed: 1}, ServiceCounters{EstablishedPassed: 1}}
	noConn     = verdictWant{xdpDrop, Counters{DropNoConn: 1}, ServiceCounters{}}
	synAnswer  = verdictWant{xdpTX, answered, ServiceCounters{SynReceived: 1, SynackSent: 1}}
)

// expect checks a run's verdict and counters against w; svcID is the service the frame is for.
func (r *handoffRig) expect(t *testing.T, fam spec.Family, res handoffRun, svcID int, w verdictWant) {
	t.Helper()
	if res.ret != w.verdict {
		t.Errorf("verdict %s, want %s", actionName(res.ret), actionName(w.verdict))
	}
	if want := on(fam, w.delta); res.fam != want {
		t.Errorf("counters moved by\n  %s\nwant\n  %s", fmtDelta(res.fam), fmtDelta(want))
	}
	for id, got := range res.svc {
		want := ServiceCounters{}
		if id == svcID {
			want = w.svc
		}
		if got != want {
			t.Errorf("service %d (%s) moved by %s, want %s", id, r.spec.Services[id], nonZero(got), nonZero(want))
		}
	}
}

// synOffer is what a client's SYN offers.
type synOffer struct {
	mss      int // MSS option; noMSS: none
	ts, sack bool
	ws       int   // window scale; cookie.NoWScale: none
	flags    uint8 // ECE and CWR
	reversed bool  // options in the reverse of Linux's order: the generic walk, not the fast path
}

const noMSS = -1

func (o synOffer) options() []byte {
	var parts [][]byte
	if o.mss != noMSS {
		parts = append(parts, packet.MSS(uint16(o.mss)))
	}
	switch {
	case o.sack && o.ts:
		parts = append(parts, packet.SACKPerm(), packet.Timestamp(clientTSval, 0))
	case o.ts:
		parts = append(parts, packet.NOP(), packet.NOP(), packet.Timestamp(clientTSval, 0))
	case o.sack:
		parts = append(parts, packet.NOP(), packet.NOP(), packet.SACKPerm())
	}
	if o.ws != cookie.NoWScale {
		parts = append(parts, packet.NOP(), packet.WScale(uint8(o.ws)))
	}
	if o.reversed {
		slices.Reverse(parts)
	}
	return packet.Options(parts...)
}

func (o synOffer) String() string {
	var s []string
	if o.mss != noMSS {
		s = append(s, fmt.Sprintf("mss%d", o.mss))
	}
	if o.ts {
		s = append(s, "ts")
	}
	if o.sack {
		s = append(s, "sack")
	}
	if o.ws != cookie.NoWScale {
		s = append(s, fmt.Sprintf("ws%d", o.ws))
	}
	if o.flags&packet.ECE != 0 {
		s = append(s, "ece")
	}
	if o.flags&packet.CWR != 0 {
		s = append(s, "cwr")
	}
	if o.reversed {
		s = append(s, "reversed")
	}
	if len(s) == 0 {
		return "nothing"
	}
	return strings.Join(s, "-")
}

// mssTable is the kernel's table of a family (syncookies.c), written out independently of the
// reference.
func mssTable(fam spec.Family) [4]uint16 {
	if fam == spec.IPv6 {
		return [4]uint16{1220, 1420, 1440, 8940}
	}
	return [4]uint16{536, 1300, 1440, 1460}
}

// synOffers is every combination of TS, SACK, window scale, ECN (ECE+CWR) and an MSS around
// each entry of the family's table (or none), and a few offers beside those.
func synOffers(fam spec.Family) []synOffer {
	msses := []int{noMSS, 65535}
	for _, m := range mssTable(fam) {
		msses = append(msses, int(m)-1, int(m))
	}
	var out []synOffer
	for _, mss := range msses {
		for bits := range 16 {
			o := synOffer{mss: mss, ts: bits&1 != 0, sack: bits&2 != 0, ws: cookie.NoWScale}
			if bits&4 != 0 {
				o.ws = 5
			}
			if bits&8 != 0 {
				o.flags = packet.ECE | packet.CWR
			}
			out = append(out, o)
		}
	}
	all := synOffer{mss: 1460, ts: true, sack: true, ws: 7, flags: packet.ECE | packet.CWR}
	with := func(edit func(*synOffer)) synOffer { o := all; edit(&o); return o }
	return append(out,
		with(func(o *synOffer) { o.mss = 0 }), // ignored, as no MSS
		with(func(o *synOffer) { o.ws = 0 }),
		with(func(o *synOffer) { o.ws = 14 }),
		with(func(o *synOffer) { o.ws = 15 }), // clamped to 14
		with(func(o *synOffer) { o.flags = packet.ECE }),
		with(func(o *synOffer) { o.flags = packet.CWR }),
		with(func(o *synOffer) { o.reversed = true }),
		with(func(o *synOffer) { o.reversed, o.sack = true, false }),
		with(func(o *synOffer) { o.reversed, o.ts = true, false }),
		with(func(o *synOffer) { o.reversed, o.mss = true, noMSS }),
	)
}

// negotiated is what service i agrees to of an offer: what its cookie's option byte must say.
func negotiated(o synOffer, i int, fam spec.Family) cookie.Options {
	n := cookie.Options{WScale: cookie.NoWScale}
	for j, m := range mssTable(fam) {
		if j == 0 || o.mss >= int(m) {
			n.MSS = m
		}
	}
	if o.ws != cookie.NoWScale {
		n.WScale = min(o.ws, 14) // every service scales its window when the client does
	}
	n.SACK = o.sack && handoffSvcs[i].sack
	n.ECN = o.flags&(packet.ECE|packet.CWR) == packet.ECE|packet.CWR && handoffSvcs[i].ecn
	return n
}

// TestHandoffSYNACK answers every offer of synOffers with every service, checks the SYN-ACK
// byte for byte against internal/cookie's prediction, and completes the handshake with the
// client's ACK in a namespace where nothing listens: a valid cookie the stack resets.
func TestHandoffSYNACK(t *testing.T) {
	r := newHandoffRig(t, handoffKey)
	ns := handoffNS(t, "xsynhs")
	rows := 0
	for _, s := range frameShapes {
		t.Run(s.name, func(t *testing.T) {
			for i, svc := range handoffSvcs {
				for _, o := range synOffers(s.fam) {
					t.Run(svc.String()+"/"+o.String(), func(t *testing.T) {
						r.synRow(t, ns, s, i, o, noListener)
						if !t.Failed() {
							rows++
						}
					})
				}
			}
		})
	}
	t.Logf("%d SYN-ACKs exact and their ACKs valid", rows)
}

// synRow answers the offer o to service i and checks the SYN-ACK, then runs its ACK in ns.
func (r *handoffRig) synRow(t *testing.T, ns *netlab.Host, s frameShape, i int, o synOffer, ackWant verdictWant) {
	syn := s.segment(handoffPort(i), packet.SYN|o.flags, o.options())
	in := syn.Bytes()
	id := serviceID(t, r.spec, s.pick(server4, server6), handoffPort(i))
	retry(t, func() bool {
		res, ok := r.run(t, nil, in)
		if !ok {
			return false
		}
		r.expect(t, s.fam, res, id, synAnswer)
		synack := r.checkSynack(t, syn, res, i, negotiated(o, i, s.fam), o.ts && handoffSvcs[i].ts)
		// Valid in this slot and the next, so a boundary before the ACK changes nothing.
		ack, _ := r.run(t, ns, handoffACK(syn, synack).Bytes())
		r.expect(t, s.fam, ack, id, ackWant)
		return true
	})
}

// checkSynack checks that res is exactly the SYN-ACK service i answers syn with: the cookie
// internal/cookie makes for what it negotiated, options in Linux's order, its window, ECE for
// ECN, checksums verified by packet.Parse. It returns the SYN-ACK.
func (r *handoffRig) checkSynack(t *testing.T, syn packet.Frame, res handoffRun, i int, n cookie.Options, ts bool) *packet.Packet {
	t.Helper()
	resp, err := packet.Parse(res.out)
	if err != nil || resp.TCP == nil {
		t.Fatalf("parse SYN-ACK: %v\n%x", err, res.out)
	}
	src, dst, ipv6 := client4, server4, syn.IPv6 != nil
	if ipv6 {
		src, dst = client6, server6
	}
	if got := cookie.Decode(uint8(resp.TCP.Seq), ipv6); got != n {
		t.Errorf("option byte %#02x decodes to %+v, negotiated %+v", uint8(resp.TCP.Seq), got, n)
	}
	opt := cookie.OptByte(n.MSS, n.WScale, n.SACK, n.ECN, ipv6)
	isn, tsBits := cookie.Make(r.key, src, dst, clientPort, handoffPort(i), syn.TCP.Seq, res.slot, opt)

	mss := handoffMSS(i)
	opts := packet.MSS(mss)
	switch {
	case ts:
		var tsval uint32
		if len(resp.TCP.Options) >= 12 {
			tsval = binary.BigEndian.Uint32(resp.TCP.Options[8:])
		}
		if uint8(tsval) != tsBits {
			t.Errorf("tsval %#08x: low byte, want hash bits 32-39 %#02x", tsval, tsBits)
		}
		if lo, hi := res.ms[0]&^0xff, res.ms[1]&^0xff; tsval&^0xff-lo > hi-lo {
			t.Errorf("tsval %#08x: not CLOCK_TAI's milliseconds %#08x-%#08x", tsval, res.ms[0], res.ms[1])
		}
		if n.SACK {
			opts = append(opts, packet.SACKPerm()...)
		} else {
			opts = append(opts, packet.OptNOP, packet.OptNOP)
		}
		opts = append(opts, packet.Timestamp(tsval, clientTSval)...)
	case n.SACK:
		opts = append(opts, packet.OptNOP, packet.OptNOP, packet.OptSACKPerm, 2)
	}
	if n.WScale != cookie.NoWScale {
		opts = append(opts, packet.OptNOP, packet.OptWScale, 3, uint8(handoffWScale(i)))
	}
	flags := packet.SYN | packet.ACK
	if n.ECN {
		flags |= packet.ECE
	}
	want := packet.Frame{Dst: syn.Src, Src: syn.Dst, VLANs: syn.VLANs,
		TCP: &packet.TCP{SrcPort: syn.TCP.DstPort, DstPort: syn.TCP.SrcPort, Seq: isn, Ack: syn.TCP.Seq + 1,
			Flags: flags, Window: 65535 / mss * mss, Options: opts}}
	if ipv6 {
		want.IPv6 = &packet.IPv6{Src: dst, Dst: src, HopLimit: handoffTTL(i)}
	} else {
		want.IPv4 = &packet.IPv4{Src: dst, Dst: src, DF: true, TTL: handoffTTL(i)}
	}
	if wb := want.Bytes(); !bytes.Equal(res.out, wb) {
		w, _ := packet.Decode(wb)
		t.Errorf("SYN-ACK\n got  %x\n want %x\n got  %+v %+v %+v\n want %+v %+v %+v", res.out, wb,
			resp.IPv4, resp.IPv6, *resp.TCP, w.IPv4, w.IPv6, *w.TCP)
	}
	return resp
}

// handoffACK is the client's answer to a SYN-ACK: clientACK's, without timestamps when the
// SYN-ACK has none.
func handoffACK(syn packet.Frame, synack *packet.Packet) packet.Frame {
	ack := clientACK(syn, synack)
	if _, ok := packet.LastOption(synack.Options, packet.OptTimestamp); !ok {
		ack.TCP.Options = nil
	}
	return ack
}

// handoffNS is a namespace of the test's own, with the fixtures' client and server addresses
// on its loopback: there the test decides which sockets the program's lookup finds.
func handoffNS(t *testing.T, prefix string) *netlab.Host {
	t.Helper()
	lab := testutil.Lab(t, prefix)
	h, err := lab.Host("ns")
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []netip.Addr{client4, server4, client6, server6} {
		if _, err := h.Run("ip", "addr", "add", netip.PrefixFrom(a, a.BitLen()).String(), "dev", "lo", "nodad"); err != nil {
			t.Fatal(err)
		}
	}
	return h
}
