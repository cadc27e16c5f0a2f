package loader

// Data-plane fixtures: frames built with internal/packet run through the XDP program with
// BPF_PROG_RUN. Every case states the verdict, the exact change of every verdict counter and the
// output: the SYN-ACK it must be (checked field by field and byte by byte, checksums verified
// independently by packet.Parse) or, for any other verdict, the input frame untouched.

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/xsyn-project/xsyn/internal/packet"
	"github.com/xsyn-project/xsyn/internal/testutil"
	"github.com/xsyn-project/xsyn/spec"
)

// XDP actions (enum xdp_action).
const (
	xdpAborted uint32 = iota
	xdpDrop
	xdpPass
	xdpTX
)

func actionName(a uint32) string {
	if names := []string{"XDP_ABORTED", "XDP_DROP", "XDP_PASS", "XDP_TX", "XDP_REDIRECT"}; int(a) < len(names) {
		return names[a]
	}
	return fmt.Sprintf("action(%d)", a)
}

// The ports of dpSpec, each a service with different SYN-ACK options.
const (
	portDefault uint16 = 80   // defaults: MSS 1460/1440, wscale 7, SACK, timestamps, TTL 64
	portECN     uint16 = 81   // ECN accepted, TTL 200
	portNoSACK  uint16 = 82   // no SACK
	portNoTS    uint16 = 83   // no timestamps (so no wscale or SACK either)
	portTuned   uint16 = 84   // MSS 1220, wscale 3, TTL 255
	portHost    uint16 = 443  // only hostDst4/32 and hostDst6/128
	portNet     uint16 = 8443 // only 198.51.100.0/24 and 2001:db8:7::/64
	portNested  uint16 = 9443 // any address with TTL 100, and those prefixes with MSS 1300
	portV6Only  uint16 = 8080 // only 2001:db8:5::/48
	portOpen    uint16 = 22   // not protected
)

var (
	clientMAC = packet.MAC{0x02, 0xc1, 0, 0, 0, 0x01}
	serverMAC = packet.MAC{0x02, 0x5e, 0, 0, 0, 0x01}
	client4   = netip.MustParseAddr("192.0.2.77")
	server4   = netip.MustParseAddr("203.0.113.10")
	client6   = netip.MustParseAddr("2001:db8:c::77")
	server6   = netip.MustParseAddr("2001:db8:5::10")
	hostDst4  = netip.MustParseAddr("198.51.100.10")
	hostDst6  = netip.MustParseAddr("2001:db8:6::10")

	clientPort  uint16 = 40123
	clientISN   uint32 = 0x89abcdef
	clientTSval uint32 = 0x11223344

	// What Linux sends in a SYN.
	linuxOpts = packet.Options(packet.MSS(1460), packet.SACKPerm(), packet.Timestamp(clientTSval, 0),
		packet.NOP(), packet.WScale(7))
)

// dpSpec is the spec of most fixtures: one service per port above, for both families, on the
// SYNPROXY path (the kernel's cookie). handoff_test.go covers the handoff path.
func dpSpec(tb testing.TB) spec.Spec {
	tb.Helper()
	var s spec.Spec
	for _, f := range []spec.Simple{
		{Ports: []uint16{portDefault}, WScale: -1},
		{Ports: []uint16{portECN}, WScale: -1, ECN: true, TTL: 200},
		{Ports: []uint16{portNoSACK}, WScale: -1, NoSACK: true},
		{Ports: []uint16{portNoTS}, WScale: -1, NoTimestamps: true},
		{Ports: []uint16{portTuned}, MSS: 1220, WScale: 3, TTL: 255},
		{Ports: []uint16{portHost}, Dst: hostDst4.String(), WScale: -1},
		{Ports: []uint16{portHost}, Dst: hostDst6.String(), WScale: -1},
		{Ports: []uint16{portNet}, Dst: "198.51.100.0/24", WScale: -1},
		{Ports: []uint16{portNet}, Dst: "2001:db8:7::/64", WScale: -1},
		{Ports: []uint16{portNested}, WScale: -1, TTL: 100},
		{Ports: []uint16{portNested}, Dst: "198.51.100.0/24", WScale: -1, MSS: 1300},
		{Ports: []uint16{portNested}, Dst: "2001:db8:7::/64", WScale: -1, MSS: 1300},
		{Ports: []uint16{portV6Only}, Dst: "2001:db8:5::/48", WScale: -1},
	} {
		part, err := f.Build()
		if err != nil {
			tb.Fatalf("build %+v: %v", f, err)
		}
		part, err = part.WithoutHandoff("the fixtures of the SYNPROXY path")
		if err != nil {
			tb.Fatal(err)
		}
		s.Services = append(s.Services, part.Services...)
	}
	if err := s.Validate(); err != nil {
		tb.Fatal(err)
	}
	return s
}

// serviceID is the counter slot of the service protecting dst:port: the longest prefix.
func serviceID(tb testing.TB, s spec.Spec, dst netip.Addr, port uint16) int {
	id := -1
	for i, svc := range s.Services {
		if svc.Port == port && svc.Dst.Contains(dst) && (id < 0 || svc.Dst.Bits() > s.Services[id].Dst.Bits()) {
			id = i
		}
	}
	if id < 0 {
		tb.Fatalf("no service for %s port %d", dst, port)
	}
	return id
}

// frameShape is a family and a VLAN stack: every fixture runs in each of them.
type frameShape struct {
	name  string
	fam   spec.Family
	vlans []packet.VLAN
}

var frameShapes = []frameShape{
	{"ipv4", spec.IPv4, nil},
	{"ipv4-vlan", spec.IPv4, []packet.VLAN{{TPID: packet.TPID8021Q, TCI: 100}}},
	{"ipv4-qinq", spec.IPv4, []packet.VLAN{{TPID: packet.TPID8021AD, TCI: 10}, {TPID: packet.TPID8021Q, TCI: 0x2064}}},
	{"ipv6", spec.IPv6, nil},
	{"ipv6-vlan", spec.IPv6, []packet.VLAN{{TPID: packet.TPID8021Q, TCI: 100}}},
	{"ipv6-qinq", spec.IPv6, []packet.VLAN{{TPID: packet.TPID8021AD, TCI: 10}, {TPID: packet.TPID8021Q, TCI: 0x2064}}},
}

// pick returns the address of the shape's family.
func (s frameShape) pick(v4, v6 netip.Addr) netip.Addr {
	if s.fam == spec.IPv4 {
		return v4
	}
	return v6
}

// segment is a client-to-server TCP segment. The IP header has non-zero TOS/traffic class, flow
// label and id so that the SYN-ACK is seen to reset them.
func (s frameShape) segment(dport uint16, flags uint8, opts ...[]byte) packet.Frame {
	f := packet.Frame{
		Dst: serverMAC, Src: clientMAC, VLANs: s.vlans,
		TCP: &packet.TCP{SrcPort: clientPort, DstPort: dport, Seq: clientISN, Flags: flags, Window: 64240,
			Options: packet.Options(opts...)},
	}
	if s.fam == spec.IPv4 {
		f.IPv4 = &packet.IPv4{Src: client4, Dst: server4, TOS: 0x12, ID: 0x4321, DF: true, TTL: 57}
	} else {
		f.IPv6 = &packet.IPv6{Src: client6, Dst: server6, TrafficClass: 0x12, FlowLabel: 0xbeef5, HopLimit: 57}
	}
	return f
}

// setDst changes the destination address of f.
func setDst(f *packet.Frame, dst netip.Addr) {
	if f.IPv4 != nil {
		f.IPv4.Dst = dst
	} else {
		f.IPv6.Dst = dst
	}
}

// on is a counter delta c in the slot of family f (0: traffic that is not IP).
func on(f spec.Family, c Counters) FamilyCounters {
	switch f {
	case spec.IPv4:
		return FamilyCounters{IPv4: c}
	case spec.IPv6:
		return FamilyCounters{IPv6: c}
	}
	return FamilyCounters{Other: c}
}

var answered = Counters{SynReceived: 1, SynackSent: 1}

// subFields subtracts b from a field by field; every exported field is a uint64.
func subFields[T any](a, b T) T {
	va, vb := reflect.ValueOf(&a).Elem(), reflect.ValueOf(b)
	for i := range va.NumField() {
		if f := va.Field(i); f.CanSet() && f.Kind() == reflect.Uint64 {
			f.SetUint(f.Uint() - vb.Field(i).Uint())
		}
	}
	return a
}

// nonZero lists the non-zero fields of a counter struct, e.g. "SynReceived=1 SynackSent=1".
func nonZero[T any](c T) string {
	var out []string
	v := reflect.ValueOf(c)
	for i := range v.NumField() {
		if f := v.Type().Field(i); f.IsExported() && v.Field(i).Uint() != 0 {
			out = append(out, fmt.Sprintf("%s=%d", f.Name, v.Field(i).Uint()))
		}
	}
	return "{" + strings.Join(out, " ") + "}"
}

func fmtDelta(d FamilyCounters) string {
	return fmt.Sprintf("ipv4%s ipv6%s other%s", nonZero(d.IPv4), nonZero(d.IPv6), nonZero(d.Other))
}

func rootOrSkip(tb testing.TB) {
	tb.Helper()
	testutil.RequireRoot(tb, "load the XDP program and run it with BPF_PROG_RUN")
}

// xdpRig is a loaded program to run frames through.
type xdpRig struct {
	prog *Program
}

func newRig(tb testing.TB, s spec.Spec) *xdpRig {
	tb.Helper()
	rootOrSkip(tb)
	p, err := LoadProgram(s)
	if err != nil {
		tb.Fatalf("load program: %v", err)
	}
	tb.Cleanup(func() { p.Close() })
	return &xdpRig{prog: p}
}

func (r *xdpRig) counters(tb testing.TB) FamilyCounters {
	tb.Helper()
	c, err := r.prog.Counters()
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// run runs the program once and returns its verdict, the frame it left and how every counter
// changed.
func (r *xdpRig) run(tb testing.TB, in []byte) (uint32, []byte, FamilyCounters) {
	tb.Helper()
	before := r.counters(tb)
	// Room for growth: a SYN-ACK can be longer than the SYN. DataOut comes back cut to the
	// frame's final length.
	opts := ebpf.RunOptions{Data: in, DataOut: make([]byte, len(in)+256)}
	ret, err := r.prog.XDP().Run(&opts)
	if err != nil {
		tb.Fatalf("run %d-byte frame: %v", len(in), err)
	}
	after := r.counters(tb)
	return ret, opts.DataOut, FamilyCounters{
		IPv4:  subFields(after.IPv4, before.IPv4),
		IPv6:  subFields(after.IPv6, before.IPv6),
		Other: subFields(after.Other, before.Other),
	}
}

// synackWant is the SYN-ACK a SYN must be answered with.
type synackWant struct {
	mss  uint16 // MSS option; 0: the family's default
	ttl  uint8  // TTL / hop limit; 0: spec.DefaultTTL
	ts   int    // the low 6 bits of our tsval (wscale, SACK, ECN), or noTS: no timestamps option
	sack bool   // SACK_PERM in front of the timestamps (else NOP NOP)
	ws   int    // our window scale option, or noWS: none
	ece  bool   // ECE flag
}

const (
	noTS = -1
	noWS = -1
)

var mssOnly = synackWant{ts: noTS, ws: noWS}

// linuxAnswer is the answer of a default service to linuxOpts.
var linuxAnswer = synackWant{ts: 0x10 | 7, sack: true, ws: 7}

// xdpCase is one frame through the program.
type xdpCase struct {
	in      []byte
	verdict uint32
	delta   FamilyCounters
	synack  *synackWant // the output is this SYN-ACK; nil: the output is the input, untouched
}

func (r *xdpRig) check(t *testing.T, c xdpCase) {
	t.Helper()
	ret, out, delta := r.run(t, c.in)
	if ret != c.verdict {
		t.Errorf("verdict %s, want %s", actionName(ret), actionName(c.verdict))
	}
	if delta != c.delta {
		t.Errorf("counters moved by\n  %s\nwant\n  %s", fmtDelta(delta), fmtDelta(c.delta))
	}
	if c.synack == nil {
		if !bytes.Equal(out, c.in) {
			t.Errorf("frame changed:\n in  %x\n out %x", c.in, out)
		}
		return
	}
	checkSynack(t, c.in, out, *c.synack)
}

// checkSynack checks that out is the SYN-ACK w answering the SYN in: every header field, the
// option bytes, the frame length and (through packet.Parse) both checksums.
func checkSynack(t *testing.T, in, out []byte, w synackWant) {
	t.Helper()
	req, err := packet.Decode(in)
	if err != nil {
		t.Fatalf("decode SYN: %v", err)
	}
	resp, err := packet.Parse(out)
	if err != nil {
		t.Fatalf("parse SYN-ACK: %v\n%x", err, out)
	}
	if resp.TCP == nil {
		t.Fatalf("SYN-ACK is not TCP: %+v", resp.Frame)
	}
	fam, ipLen := spec.IPv4, 20
	if req.IPv6 != nil {
		fam, ipLen = spec.IPv6, 40
	}
	mss, ttl := w.mss, w.ttl
	if mss == 0 {
		mss = spec.DefaultMSS(fam)
	}
	if ttl == 0 {
		ttl = spec.DefaultTTL
	}
	var tsval, tsecr uint32
	if w.ts != noTS && len(resp.TCP.Options) >= 12 {
		tsval = binary.BigEndian.Uint32(resp.TCP.Options[8:])&^0x3f | uint32(w.ts)
	}
	if ts, ok := packet.LastOption(req.Options, packet.OptTimestamp); ok && len(ts.Data) == 8 {
		tsecr = binary.BigEndian.Uint32(ts.Data)
	}
	flags := packet.SYN | packet.ACK
	if w.ece {
		flags |= packet.ECE
	}

	want := packet.Frame{Dst: req.Src, Src: req.Dst, VLANs: req.VLANs, EtherType: req.EtherType, Proto: packet.ProtoTCP}
	if fam == spec.IPv4 {
		want.IPv4 = &packet.IPv4{Src: req.IPv4.Dst, Dst: req.IPv4.Src, DF: true, TTL: ttl}
	} else {
		want.IPv6 = &packet.IPv6{Src: req.IPv6.Dst, Dst: req.IPv6.Src, HopLimit: ttl}
	}
	want.TCP = &packet.TCP{SrcPort: req.TCP.DstPort, DstPort: req.TCP.SrcPort,
		Seq: resp.TCP.Seq, // the cookie: checked by TestCookieACK
		Ack: req.TCP.Seq + 1, Flags: flags, Options: synackOptions(w, mss, tsval, tsecr)}

	got := resp.Frame
	gotIP4, gotIP6, gotTCP := got.IPv4, got.IPv6, got.TCP
	wantIP4, wantIP6, wantTCP := want.IPv4, want.IPv6, want.TCP
	got.IPv4, got.IPv6, got.TCP, want.IPv4, want.IPv6, want.TCP = nil, nil, nil, nil, nil, nil
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ethernet/payload\n got  %+v\n want %+v", got, want)
	}
	if !reflect.DeepEqual(gotIP4, wantIP4) || !reflect.DeepEqual(gotIP6, wantIP6) {
		t.Errorf("ip header\n got  %+v%+v\n want %+v%+v", gotIP4, gotIP6, wantIP4, wantIP6)
	}
	if !reflect.DeepEqual(gotTCP, wantTCP) {
		t.Errorf("tcp header\n got  %+v\n want %+v\n got options  % x\n want options % x",
			*gotTCP, *wantTCP, gotTCP.Options, wantTCP.Options)
	}
	if n := req.L3Off + ipLen + 20 + len(wantTCP.Options); len(out) != n {
		t.Errorf("SYN-ACK is %d bytes, want %d", len(out), n)
	}
}

// synackOptions are the option bytes of w: MSS, [SACK_PERM|NOP NOP] TS, [NOP WS].
func synackOptions(w synackWant, mss uint16, tsval, tsecr uint32) []byte {
	opts := packet.MSS(mss)
	if w.ts != noTS {
		if w.sack {
			opts = append(opts, packet.SACKPerm()...)
		} else {
			opts = append(opts, packet.OptNOP, packet.OptNOP)
		}
		opts = append(opts, packet.Timestamp(tsval, tsecr)...)
	}
	if w.ws != noWS {
		opts = append(opts, packet.OptNOP)
		opts = append(opts, packet.WScale(uint8(w.ws))...)
	}
	return opts
}

// dpCase is a fixture row, run in every frame shape of its family.
type dpCase struct {
	name    string
	only    spec.Family                     // run in the shapes of this family only; 0: all
	frame   func(s frameShape) packet.Frame // the input
	patch   func(b []byte, p *packet.Packet)
	verdict uint32
	delta   Counters    // in the shape's family slot
	notIP   bool        // delta is counted as traffic that is not IP
	synack  *synackWant // nil: output == input
}

// seg is a fixture frame: a TCP segment to port with flags and options, optionally edited.
func seg(port uint16, flags uint8, opts []byte, edits ...func(*packet.Frame)) func(frameShape) packet.Frame {
	return func(s frameShape) packet.Frame {
		f := s.segment(port, flags, opts)
		for _, e := range edits {
			e(&f)
		}
		return f
	}
}

func runCases(t *testing.T, r *xdpRig, cases []dpCase) {
	t.Helper()
	for _, s := range frameShapes {
		t.Run(s.name, func(t *testing.T) {
			for _, c := range cases {
				if c.only != 0 && c.only != s.fam {
					continue
				}
				t.Run(c.name, func(t *testing.T) {
					in := c.frame(s).Bytes()
					if c.patch != nil {
						p, err := packet.Decode(in)
						if err != nil {
							t.Fatalf("decode unpatched frame: %v", err)
						}
						c.patch(in, p)
					}
					fam := s.fam
					if c.notIP {
						fam = 0
					}
					r.check(t, xdpCase{in: in, verdict: c.verdict, delta: on(fam, c.delta), synack: c.synack})
				})
			}
		})
	}
}

// answer is a SYN-ACK expectation for a fixture row.
func answer(w synackWant) *synackWant { return &w }

func TestSYNAnswered(t *testing.T) {
	r := newRig(t, dpSpec(t))
	opt := packet.Options
	mss, nop, eol, sack, ws := packet.MSS, packet.NOP, packet.EOL, packet.SACKPerm, packet.WScale
	ts := func(v uint32) []byte { return packet.Timestamp(v, 0) }
	syn := func(name string, port uint16, flags uint8, opts []byte, w synackWant, edits ...func(*packet.Frame)) dpCase {
		return dpCase{name: name, frame: seg(port, packet.SYN|flags, opts, edits...), verdict: xdpTX, delta: answered, synack: &w}
	}
	payload := func(f *packet.Frame) { f.Payload = bytes.Repeat([]byte("x"), 100) }

	runCases(t, r, []dpCase{
		// Client options against the default service.
		syn("no options", portDefault, 0, nil, mssOnly),
		syn("no options padded to 60 bytes", portDefault, 0, nil, mssOnly, func(f *packet.Frame) { f.MinLen = 60 }),
		syn("mss", portDefault, 0, mss(1400), mssOnly),
		syn("mss wscale", portDefault, 0, opt(mss(1400), nop(), ws(7)), mssOnly),
		syn("mss sack", portDefault, 0, opt(mss(1400), nop(), nop(), sack()), mssOnly),
		syn("linux mss sack ts wscale", portDefault, 0, linuxOpts, linuxAnswer),
		syn("ts only", portDefault, 0, opt(nop(), nop(), ts(clientTSval)), synackWant{ts: 0xf, ws: noWS}),
		syn("ts wscale without sack", portDefault, 0, opt(mss(1460), nop(), nop(), ts(clientTSval), nop(), ws(2)),
			synackWant{ts: 2, ws: 7}),
		syn("ts wscale without mss grows by 4", portDefault, 0, opt(nop(), ws(2), nop(), nop(), ts(clientTSval)),
			synackWant{ts: 2, ws: 7}),
		syn("ts sack without wscale", portDefault, 0, opt(mss(1460), sack(), ts(clientTSval)),
			synackWant{ts: 0x10 | 0xf, sack: true, ws: noWS}),
		syn("windows mss nop ws nop nop sack", portDefault, 0, opt(mss(1460), nop(), ws(8), nop(), nop(), sack()), mssOnly),
		syn("eol ends the list", portDefault, 0, opt(mss(1460), nop(), nop(), ts(clientTSval), eol(), ws(5)),
			synackWant{ts: 0xf, ws: noWS}),
		syn("eol padding", portDefault, 0, opt(linuxOpts, eol(), eol(), eol(), eol()), linuxAnswer),
		syn("client wscale 0", portDefault, 0, opt(mss(1460), sack(), ts(clientTSval), nop(), ws(0)),
			synackWant{ts: 0x10, sack: true, ws: 7}),
		syn("client wscale 15 clamped to 14", portDefault, 0, opt(mss(1460), sack(), ts(clientTSval), nop(), ws(15)),
			synackWant{ts: 0x10 | 14, sack: true, ws: 7}),
		syn("last of repeated options", portDefault, 0,
			opt(nop(), nop(), ts(1), nop(), ws(2), nop(), ws(5), nop(), nop(), ts(clientTSval)),
			synackWant{ts: 5, ws: 7}),
		syn("unknown option", portDefault, 0, opt(mss(1460), packet.Raw(253, 0xf9, 0x89), sack(), ts(clientTSval), nop(), ws(7)),
			linuxAnswer),
		syn("option length 1 ends parsing", portDefault, 0, opt(mss(1460), []byte{packet.OptSACKPerm, 1}, nop(), nop(), ts(clientTSval)),
			mssOnly),
		syn("option overruns the header", portDefault, 0, opt(mss(1460), nop(), nop(), []byte{packet.OptTimestamp, 12, 1, 2, 3, 4, 5, 6, 7, 8}),
			mssOnly),
		syn("timestamps of the wrong length ignored", portDefault, 0,
			opt(mss(1460), nop(), nop(), packet.Raw(packet.OptTimestamp, 1, 2, 3, 4, 5, 6), nop(), ws(7)), mssOnly),
		syn("mss 0 ignored", portDefault, 0, opt(mss(0), sack(), ts(clientTSval), nop(), ws(7)), linuxAnswer),
		syn("40 bytes of options", portDefault, 0, opt(mss(1460), sack(), ts(clientTSval), nop(), ws(7),
			packet.Raw(253, make([]byte, 18)...)), linuxAnswer),
		syn("payload trimmed", portDefault, 0, linuxOpts, linuxAnswer, payload),
		syn("psh flag", portDefault, packet.PSH, linuxOpts, linuxAnswer),
		syn("seq wraps", portDefault, 0, linuxOpts, linuxAnswer, func(f *packet.Frame) { f.TCP.Seq = 0xffffffff }),
		// ECN: negotiated only when the service accepts it, the client asks with ECE+CWR and
		// timestamps carry it.
		syn("ece cwr, service without ecn", portDefault, packet.ECE|packet.CWR, linuxOpts, linuxAnswer),
		syn("ece cwr, service with ecn", portECN, packet.ECE|packet.CWR, linuxOpts,
			synackWant{ttl: 200, ts: 0x20 | 0x10 | 7, sack: true, ws: 7, ece: true}),
		syn("ece alone, service with ecn", portECN, packet.ECE, linuxOpts,
			synackWant{ttl: 200, ts: 0x10 | 7, sack: true, ws: 7}),
		syn("ece cwr without timestamps, service with ecn", portECN, packet.ECE|packet.CWR, mss(1460),
			synackWant{ttl: 200, ts: noTS, ws: noWS}),
		// Service switches.
		syn("service without sack", portNoSACK, 0, linuxOpts, synackWant{ts: 7, ws: 7}),
		syn("service without timestamps", portNoTS, 0, linuxOpts, mssOnly),
		syn("service mss 1220 wscale 3 ttl 255", portTuned, 0, linuxOpts,
			synackWant{mss: 1220, ttl: 255, ts: 0x10 | 7, sack: true, ws: 3}),
		syn("service mss 1220 to a syn without options", portTuned, 0, nil, synackWant{mss: 1220, ttl: 255, ts: noTS, ws: noWS}),
	})
}

// TestMinimumFrames pins the lengths: the smallest SYNs grow by the 4 bytes of our MSS option,
// and Ethernet padding is trimmed.
func TestMinimumFrames(t *testing.T) {
	r := newRig(t, dpSpec(t))
	for _, tc := range []struct {
		name          string
		shape         frameShape
		minLen        int
		inLen, outLen int
	}{
		{"ipv4 54 bytes", frameShapes[0], 0, 54, 58},
		{"ipv4 padded to 60", frameShapes[0], 60, 60, 58},
		{"ipv4 vlan padded to 60", frameShapes[1], 60, 60, 62},
		{"ipv6 74 bytes", frameShapes[3], 0, 74, 78},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := tc.shape.segment(portDefault, packet.SYN)
			f.MinLen = tc.minLen
			in := f.Bytes()
			if len(in) != tc.inLen {
				t.Fatalf("built %d bytes, want %d", len(in), tc.inLen)
			}
			ret, out, _ := r.run(t, in)
			if ret != xdpTX || len(out) != tc.outLen {
				t.Errorf("%s with %d bytes, want XDP_TX with %d", actionName(ret), len(out), tc.outLen)
			}
			checkSynack(t, in, out, mssOnly)
		})
	}
}

// cookieSYN runs a SYN with Linux options and the given MSS through the program and returns the
// frame and the SYN-ACK it was answered with.
func cookieSYN(t testing.TB, r *xdpRig, s frameShape, port, mss uint16) (packet.Frame, *packet.Packet) {
	t.Helper()
	syn := s.segment(port, packet.SYN, packet.MSS(mss), linuxOpts[4:])
	ret, out, _ := r.run(t, syn.Bytes())
	if ret != xdpTX {
		t.Fatalf("SYN: %s, want XDP_TX", actionName(ret))
	}
	resp, err := packet.Parse(out)
	if err != nil {
		t.Fatalf("parse SYN-ACK: %v", err)
	}
	return syn, resp
}

// clientACK is the client's answer to a SYN-ACK: the third packet of the handshake.
func clientACK(syn packet.Frame, synack *packet.Packet) packet.Frame {
	ack := syn
	var tsval uint32
	if ts, ok := packet.LastOption(synack.Options, packet.OptTimestamp); ok {
		tsval = binary.BigEndian.Uint32(ts.Data)
	}
	ack.TCP = &packet.TCP{SrcPort: syn.TCP.SrcPort, DstPort: syn.TCP.DstPort,
		Seq: syn.TCP.Seq + 1, Ack: synack.TCP.Seq + 1, Flags: packet.ACK, Window: 502,
		Options: packet.Options(packet.NOP(), packet.NOP(), packet.Timestamp(clientTSval+1, tsval))}
	return ack
}

// TestCookieACK completes handshakes with the program's own SYN-ACKs.
//
// The low 24 bits of a kernel SYN cookie are the index of the client's MSS in a 4-entry table,
// and the kernel accepts any index below 4. So an ACK one off is rejected for certain only when
// it leaves the table: one above the largest MSS (index 3), one below the smallest (index 0).
// One off elsewhere decodes as the neighbouring MSS and is accepted, by SYNPROXY as well.
func TestCookieACK(t *testing.T) {
	r := newRig(t, dpSpec(t))
	const largest, smallest = 9000, 536 // MSS index 3 and 0 in both families' tables
	valid, invalid := Counters{AckCookieValid: 1}, Counters{AckCookieInvalid: 1}
	for _, s := range frameShapes {
		t.Run(s.name, func(t *testing.T) {
			for _, tc := range []struct {
				name    string
				mss     uint16 // in the SYN
				edit    func(f *packet.Frame)
				verdict uint32
				delta   Counters
			}{
				{"valid", 1460, nil, xdpPass, valid},
				{"valid, smallest mss", smallest, nil, xdpPass, valid},
				{"valid, largest mss", largest, nil, xdpPass, valid},
				{"valid with data", 1460, func(f *packet.Frame) {
					f.TCP.Flags |= packet.PSH
					f.Payload = []byte("GET / HTTP/1.1\r\n\r\n")
				}, xdpPass, valid},
				{"ack one above, largest mss", largest, func(f *packet.Frame) { f.TCP.Ack++ }, xdpDrop, invalid},
				{"ack one below, smallest mss", smallest, func(f *packet.Frame) { f.TCP.Ack-- }, xdpDrop, invalid},
				{"seq one above, smallest mss", smallest, func(f *packet.Frame) { f.TCP.Seq++ }, xdpDrop, invalid},
				{"ack with cookie bit 23 flipped", 1460, func(f *packet.Frame) { f.TCP.Ack ^= 1 << 23 }, xdpDrop, invalid},
				{"other source port", 1460, func(f *packet.Frame) { f.TCP.SrcPort++ }, xdpDrop, invalid},
			} {
				t.Run(tc.name, func(t *testing.T) {
					syn, synack := cookieSYN(t, r, s, portDefault, tc.mss)
					ack := clientACK(syn, synack)
					if tc.edit != nil {
						tc.edit(&ack)
					}
					r.check(t, xdpCase{in: ack.Bytes(), verdict: tc.verdict, delta: on(s.fam, tc.delta)})
				})
			}
		})
	}
}

// TestSegmentsWithoutConnection: to a protected port, anything but a SYN or an ACK needs a
// connection, and these test flows have none.
func TestSegmentsWithoutConnection(t *testing.T) {
	r := newRig(t, dpSpec(t))
	var cases []dpCase
	for _, tc := range []struct {
		name  string
		flags uint8
	}{
		{"rst", packet.RST}, {"rst ack", packet.RST | packet.ACK}, {"fin", packet.FIN},
		{"fin ack", packet.FIN | packet.ACK}, {"syn ack", packet.SYN | packet.ACK},
		{"syn rst", packet.SYN | packet.RST}, {"syn fin", packet.SYN | packet.FIN},
		{"no flags", 0}, {"psh only", packet.PSH}, {"urg only", packet.URG},
	} {
		cases = append(cases, dpCase{name: tc.name, frame: seg(portDefault, tc.flags, nil),
			verdict: xdpDrop, delta: Counters{DropNoConn: 1}})
	}
	cases = append(cases, dpCase{name: "ack without a cookie", frame: seg(portDefault, packet.ACK, nil),
		verdict: xdpDrop, delta: Counters{AckCookieInvalid: 1}})
	runCases(t, r, cases)
}

// TestServiceLookup: which destinations are protected, by which service, and what is not ours.
func TestServiceLookup(t *testing.T) {
	r := newRig(t, dpSpec(t))
	net4, net6 := netip.MustParseAddr("198.51.100.200"), netip.MustParseAddr("2001:db8:7::abcd")
	out4, out6 := netip.MustParseAddr("198.51.101.1"), netip.MustParseAddr("2001:db8:8::1")
	dst := func(v4, v6 netip.Addr) func(frameShape) func(*packet.Frame) {
		return func(s frameShape) func(*packet.Frame) { return func(f *packet.Frame) { setDst(f, s.pick(v4, v6)) } }
	}
	synTo := func(port uint16, d func(frameShape) func(*packet.Frame)) func(frameShape) packet.Frame {
		return func(s frameShape) packet.Frame { return seg(port, packet.SYN, linuxOpts, d(s))(s) }
	}
	l4 := func(proto4, proto6 uint8, payload []byte) func(frameShape) packet.Frame {
		return func(s frameShape) packet.Frame {
			f := s.segment(portDefault, 0)
			f.TCP, f.Proto, f.Payload = nil, proto4, payload
			if s.fam == spec.IPv6 {
				f.Proto = proto6
			}
			return f
		}
	}
	udp := binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(nil, clientPort), portDefault)
	udp = append(udp, 0, 12, 0, 0, 'x', 'y', 'z', '!')
	notIP := func(et uint16) func(frameShape) packet.Frame {
		return func(s frameShape) packet.Frame {
			return packet.Frame{Dst: serverMAC, Src: clientMAC, VLANs: s.vlans, EtherType: et, Payload: make([]byte, 46)}
		}
	}

	runCases(t, r, []dpCase{
		{name: "unprotected port", frame: seg(portOpen, packet.SYN, linuxOpts), verdict: xdpPass, delta: Counters{PassNotProtected: 1}},
		{name: "unprotected port, malformed tcp header", frame: seg(portOpen, packet.SYN, nil),
			patch: func(b []byte, p *packet.Packet) { b[p.L4Off+12] = 0x40 }, verdict: xdpPass, delta: Counters{PassNotProtected: 1}},
		{name: "host service, its address", frame: synTo(portHost, dst(hostDst4, hostDst6)), verdict: xdpTX, delta: answered, synack: answer(linuxAnswer)},
		{name: "host service, next address", frame: synTo(portHost, dst(hostDst4.Next(), hostDst6.Next())),
			verdict: xdpPass, delta: Counters{PassNotProtected: 1}},
		{name: "host service, default server address", frame: synTo(portHost, dst(server4, server6)),
			verdict: xdpPass, delta: Counters{PassNotProtected: 1}},
		{name: "prefix service, inside", frame: synTo(portNet, dst(net4, net6)), verdict: xdpTX, delta: answered, synack: answer(linuxAnswer)},
		{name: "prefix service, outside", frame: synTo(portNet, dst(out4, out6)), verdict: xdpPass, delta: Counters{PassNotProtected: 1}},
		{name: "nested prefixes, inside the longer", frame: synTo(portNested, dst(net4, net6)), verdict: xdpTX, delta: answered,
			synack: answer(synackWant{mss: 1300, ts: 0x10 | 7, sack: true, ws: 7})},
		{name: "nested prefixes, outside the longer", frame: synTo(portNested, dst(out4, out6)), verdict: xdpTX, delta: answered,
			synack: answer(synackWant{ttl: 100, ts: 0x10 | 7, sack: true, ws: 7})},
		{name: "port of an ipv6 service only", only: spec.IPv4, frame: seg(portV6Only, packet.SYN, linuxOpts),
			verdict: xdpPass, delta: Counters{PassNotProtected: 1}},
		{name: "port of an ipv6 service only", only: spec.IPv6, frame: seg(portV6Only, packet.SYN, linuxOpts),
			verdict: xdpTX, delta: answered, synack: answer(linuxAnswer)},
		{name: "udp to a protected port", frame: l4(packet.ProtoUDP, packet.ProtoUDP, udp), verdict: xdpPass, delta: Counters{PassNotTcp: 1}},
		{name: "icmp echo", frame: l4(packet.ProtoICMP, packet.ProtoICMPv6, []byte{8, 0, 0xf7, 0xff, 0, 0, 0, 0}),
			verdict: xdpPass, delta: Counters{PassNotTcp: 1}},
		{name: "arp", only: spec.IPv4, frame: notIP(packet.EtherTypeARP), verdict: xdpPass, delta: Counters{PassNotIp: 1}, notIP: true},
		{name: "lldp", only: spec.IPv4, frame: notIP(0x88cc), verdict: xdpPass, delta: Counters{PassNotIp: 1}, notIP: true},
	})
}

func TestPolicies(t *testing.T) {
	r := newRig(t, dpSpec(t))
	ext := func(types ...uint8) func(*packet.Frame) {
		return func(f *packet.Frame) {
			for _, ty := range types {
				if ty == packet.ProtoFragment {
					f.IPv6.ExtHeaders = append(f.IPv6.ExtHeaders, packet.Fragment(0, true, 0xabcd))
				} else {
					// For a routing header: type 1, no segments left (this host is the
					// destination); TestNotForHost has one with segments left.
					f.IPv6.ExtHeaders = append(f.IPv6.ExtHeaders, packet.ExtHeader{Type: ty, Data: []byte{1, 0, 0, 0, 0, 0}})
				}
			}
		}
	}
	hbh, rt, dst, frag := packet.ProtoHopByHop, packet.ProtoRouting, packet.ProtoDstOpts, packet.ProtoFragment
	chain := func(n int) []uint8 { // n destination options headers after one hop-by-hop
		c := []uint8{hbh}
		for len(c) < n {
			c = append(c, dst)
		}
		return c
	}
	ip4 := func(e func(ip *packet.IPv4)) func(*packet.Frame) { return func(f *packet.Frame) { e(f.IPv4) } }
	vlans := func(tags ...packet.VLAN) func(*packet.Frame) { return func(f *packet.Frame) { f.VLANs = tags } }
	q, ad := packet.VLAN{TPID: packet.TPID8021Q, TCI: 7}, packet.VLAN{TPID: packet.TPID8021AD, TCI: 8}
	recordRoute := append([]byte{7, 39, 4}, make([]byte, 37)...)
	v4, v6 := spec.IPv4, spec.IPv6

	runCases(t, r, []dpCase{
		{name: "ipv4 syn in a first fragment", only: v4, frame: seg(portDefault, packet.SYN, linuxOpts, ip4(func(ip *packet.IPv4) { ip.MF = true })),
			verdict: xdpDrop, delta: Counters{SynReceived: 1, DropFragment: 1}},
		{name: "ipv4 ack in a first fragment", only: v4, frame: seg(portDefault, packet.ACK, nil, ip4(func(ip *packet.IPv4) { ip.MF = true })),
			verdict: xdpPass, delta: Counters{PassFragment: 1}},
		{name: "ipv4 fragment offset", only: v4, frame: seg(portDefault, packet.SYN, linuxOpts, ip4(func(ip *packet.IPv4) { ip.FragOffset = 185 })),
			verdict: xdpPass, delta: Counters{PassFragment: 1}},
		{name: "ipv4 fragment to an unprotected port", only: v4, frame: seg(portOpen, packet.SYN, nil, ip4(func(ip *packet.IPv4) { ip.MF = true })),
			verdict: xdpPass, delta: Counters{PassFragment: 1}},
		{name: "ipv4 without df answered", only: v4, frame: seg(portDefault, packet.SYN, linuxOpts, ip4(func(ip *packet.IPv4) { ip.DF = false })),
			verdict: xdpTX, delta: answered, synack: answer(linuxAnswer)},
		{name: "ipv4 options stripped", only: v4, frame: seg(portDefault, packet.SYN, linuxOpts, ip4(func(ip *packet.IPv4) {
			ip.Options = []byte{148, 4, 0, 0, 1, 1, 1, 0} // router alert, NOPs, EOL
		})), verdict: xdpTX, delta: answered, synack: answer(linuxAnswer)},
		{name: "ipv4 40 bytes of options stripped", only: v4, frame: seg(portDefault, packet.SYN, nil, ip4(func(ip *packet.IPv4) {
			ip.Options = recordRoute
		})), verdict: xdpTX, delta: answered, synack: answer(mssOnly)},
		{name: "ipv6 hop-by-hop and destination options", only: v6, frame: seg(portDefault, packet.SYN, linuxOpts, ext(hbh, dst)),
			verdict: xdpTX, delta: answered, synack: answer(linuxAnswer)},
		{name: "ipv6 routing header", only: v6, frame: seg(portDefault, packet.SYN, linuxOpts, ext(rt)),
			verdict: xdpTX, delta: answered, synack: answer(linuxAnswer)},
		{name: "ipv6 four extension headers", only: v6, frame: seg(portDefault, packet.SYN, nil, ext(hbh, dst, rt, dst)),
			verdict: xdpTX, delta: answered, synack: answer(mssOnly)},
		{name: "ipv6 four extension headers with ah", only: v6, frame: seg(portDefault, packet.SYN, linuxOpts, ext(hbh, dst, 51, dst)),
			verdict: xdpDrop, delta: Counters{SynReceived: 1, DropAh: 1}},
		{name: "ipv6 five extension headers", only: v6, frame: seg(portDefault, packet.SYN, linuxOpts, ext(hbh, dst, rt, dst, dst)),
			verdict: xdpTX, delta: answered, synack: answer(linuxAnswer)},
		{name: "ipv6 sixteen extension headers", only: v6, frame: seg(portDefault, packet.SYN, linuxOpts, ext(chain(16)...)),
			verdict: xdpTX, delta: answered, synack: answer(linuxAnswer)},
		{name: "ipv6 sixteen extension headers then ah", only: v6, frame: seg(portDefault, packet.SYN, linuxOpts, ext(append(chain(15), 51)...)),
			verdict: xdpDrop, delta: Counters{SynReceived: 1, DropAh: 1}},
		{name: "ipv6 seventeen extension headers", only: v6, frame: seg(portDefault, packet.SYN, linuxOpts, ext(chain(17)...)),
			verdict: xdpDrop, delta: Counters{DropExtHdrChain: 1}},
		{name: "ipv6 seventeen extension headers to an unprotected port", only: v6, frame: seg(portOpen, packet.SYN, linuxOpts, ext(chain(17)...)),
			verdict: xdpDrop, delta: Counters{DropExtHdrChain: 1}},
		{name: "ipv6 sixteen extension headers then a first fragment", only: v6, frame: seg(portDefault, packet.SYN, nil, ext(append(chain(16), frag)...)),
			verdict: xdpDrop, delta: Counters{SynReceived: 1, DropFragment: 1}},
		{name: "ipv6 syn in a first fragment", only: v6, frame: seg(portDefault, packet.SYN, linuxOpts, ext(frag)),
			verdict: xdpDrop, delta: Counters{SynReceived: 1, DropFragment: 1}},
		{name: "ipv6 hop-by-hop then a first fragment", only: v6, frame: seg(portDefault, packet.SYN, linuxOpts, ext(hbh, frag)),
			verdict: xdpDrop, delta: Counters{SynReceived: 1, DropFragment: 1}},
		{name: "ipv6 four extension headers then a first fragment", only: v6, frame: seg(portDefault, packet.SYN, nil, ext(hbh, dst, rt, dst, frag)),
			verdict: xdpDrop, delta: Counters{SynReceived: 1, DropFragment: 1}},
		{name: "ipv6 ack in a first fragment", only: v6, frame: seg(portDefault, packet.ACK, nil, ext(frag)),
			verdict: xdpPass, delta: Counters{PassFragment: 1}},
		{name: "ipv6 later fragment", only: v6, frame: seg(portDefault, packet.SYN, linuxOpts, func(f *packet.Frame) {
			f.IPv6.ExtHeaders = append(f.IPv6.ExtHeaders, packet.Fragment(185, true, 0xabcd))
		}), verdict: xdpPass, delta: Counters{PassFragment: 1}},
		{name: "ipv6 syn in a first fragment to an unprotected port", only: v6, frame: seg(portOpen, packet.SYN, linuxOpts, ext(frag)),
			verdict: xdpPass, delta: Counters{PassFragment: 1}},
		{name: "ipv6 syn behind an authentication header", only: v6, frame: seg(portDefault, packet.SYN, linuxOpts, ext(51)),
			verdict: xdpDrop, delta: Counters{SynReceived: 1, DropAh: 1}},
		{name: "ipv4 syn behind an authentication header", only: v4, frame: func(s frameShape) packet.Frame {
			f := s.segment(portDefault, packet.SYN, linuxOpts)
			b := f.Bytes()
			tcp := append([]byte(nil), b[len(b)-20-len(linuxOpts):]...)
			ah := []byte{packet.ProtoTCP, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1} // next TCP, 12 bytes, SPI 1, seq 1
			f.TCP, f.Proto, f.Payload = nil, 51, append(ah, tcp...)
			return f
		}, verdict: xdpDrop, delta: Counters{SynReceived: 1, DropAh: 1}},
		{name: "ipv4 ack behind an authentication header judged as any", only: v4, frame: func(s frameShape) packet.Frame {
			f := s.segment(portDefault, packet.ACK)
			b := f.Bytes()
			tcp := append([]byte(nil), b[len(b)-20:]...)
			ah := []byte{packet.ProtoTCP, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1}
			f.TCP, f.Proto, f.Payload = nil, 51, append(ah, tcp...)
			return f
		}, verdict: xdpDrop, delta: Counters{AckCookieInvalid: 1}},
		{name: "ipv6 hop-by-hop then udp", only: v6, frame: func(s frameShape) packet.Frame {
			f := seg(portDefault, 0, nil, ext(hbh))(s)
			f.TCP, f.Proto, f.Payload = nil, packet.ProtoUDP, make([]byte, 8)
			return f
		}, verdict: xdpPass, delta: Counters{PassNotTcp: 1}},
		{name: "ipv6 esp", only: v6, frame: func(s frameShape) packet.Frame {
			f := s.segment(portDefault, 0)
			f.TCP, f.Proto, f.Payload = nil, 50, make([]byte, 24)
			return f
		}, verdict: xdpPass, delta: Counters{PassNotTcp: 1}},
		{name: "two 802.1q tags answered", frame: seg(portDefault, packet.SYN, linuxOpts, vlans(q, q)),
			verdict: xdpTX, delta: answered, synack: answer(linuxAnswer)},
		{name: "802.1ad tag alone answered", frame: seg(portDefault, packet.SYN, linuxOpts, vlans(ad)),
			verdict: xdpTX, delta: answered, synack: answer(linuxAnswer)},
		{name: "three vlan tags", frame: seg(portDefault, packet.SYN, linuxOpts, vlans(ad, q, q)),
			verdict: xdpPass, delta: Counters{PassVlanDepth: 1}, notIP: true},
	})
}

// TestMalformed corrupts one header field of a valid SYN: IP-level problems are the kernel's
// (PassMalformed), a bad TCP header to a protected port is dropped (DropMalformed).
func TestMalformed(t *testing.T) {
	r := newRig(t, dpSpec(t))
	v4, v6 := spec.IPv4, spec.IPv6
	syn := seg(portDefault, packet.SYN, linuxOpts)
	hbhSYN := seg(portDefault, packet.SYN, linuxOpts, func(f *packet.Frame) {
		f.IPv6.ExtHeaders = []packet.ExtHeader{{Type: packet.ProtoHopByHop}}
	})
	set8 := func(at func(p *packet.Packet) int, v func(old byte) byte) func([]byte, *packet.Packet) {
		return func(b []byte, p *packet.Packet) { b[at(p)] = v(b[at(p)]) }
	}
	set16 := func(at func(p *packet.Packet) int, v func(b []byte, p *packet.Packet) int) func([]byte, *packet.Packet) {
		return func(b []byte, p *packet.Packet) { binary.BigEndian.PutUint16(b[at(p):], uint16(v(b, p))) }
	}
	is := func(v byte) func(byte) byte { return func(byte) byte { return v } }
	n := func(v int) func([]byte, *packet.Packet) int { return func([]byte, *packet.Packet) int { return v } }
	l3 := func(off int) func(*packet.Packet) int { return func(p *packet.Packet) int { return p.L3Off + off } }
	l4 := func(off int) func(*packet.Packet) int { return func(p *packet.Packet) int { return p.L4Off + off } }
	pastFrame := func(b []byte, p *packet.Packet) int { return len(b) - p.L3Off + 1 }
	pastFrame6 := func(b []byte, p *packet.Packet) int { return len(b) - p.L3Off - 40 + 1 }
	ipBad := Counters{PassMalformed: 1}
	tcpBad := Counters{DropMalformed: 1}

	runCases(t, r, []dpCase{
		{name: "ipv4 ihl 4", only: v4, frame: syn, patch: set8(l3(0), is(0x44)), verdict: xdpPass, delta: ipBad},
		{name: "ipv4 ihl 0", only: v4, frame: syn, patch: set8(l3(0), is(0x40)), verdict: xdpPass, delta: ipBad},
		{name: "ipv4 ihl 15 past total length", only: v4, frame: syn, patch: set8(l3(0), is(0x4f)), verdict: xdpPass, delta: ipBad},
		{name: "ipv4 version 6", only: v4, frame: syn, patch: set8(l3(0), is(0x65)), verdict: xdpPass, delta: ipBad},
		{name: "ipv4 version 0", only: v4, frame: syn, patch: set8(l3(0), is(0x05)), verdict: xdpPass, delta: ipBad},
		{name: "ipv4 total length past frame", only: v4, frame: syn, patch: set16(l3(2), pastFrame), verdict: xdpPass, delta: ipBad},
		{name: "ipv4 total length 0", only: v4, frame: syn, patch: set16(l3(2), n(0)), verdict: xdpPass, delta: ipBad},
		{name: "ipv4 total length below ip header", only: v4, frame: syn, patch: set16(l3(2), n(19)), verdict: xdpPass, delta: ipBad},
		{name: "ipv4 total length below tcp header", only: v4, frame: syn, patch: set16(l3(2), n(39)), verdict: xdpPass, delta: ipBad},
		{name: "ipv4 total length cuts tcp options", only: v4, frame: syn, patch: set16(l3(2), n(44)), verdict: xdpDrop, delta: tcpBad},
		{name: "ipv6 version 4", only: v6, frame: syn, patch: set8(l3(0), func(o byte) byte { return 0x40 | o&0xf }), verdict: xdpPass, delta: ipBad},
		{name: "ipv6 payload length past frame", only: v6, frame: syn, patch: set16(l3(4), pastFrame6), verdict: xdpPass, delta: ipBad},
		{name: "ipv6 payload length 0", only: v6, frame: syn, patch: set16(l3(4), n(0)), verdict: xdpPass, delta: ipBad},
		{name: "ipv6 payload length below tcp header", only: v6, frame: syn, patch: set16(l3(4), n(19)), verdict: xdpPass, delta: ipBad},
		{name: "ipv6 payload length cuts tcp options", only: v6, frame: syn, patch: set16(l3(4), n(24)), verdict: xdpDrop, delta: tcpBad},
		{name: "ipv6 hop-by-hop length past frame", only: v6, frame: hbhSYN, patch: set8(l3(41), is(200)), verdict: xdpPass, delta: ipBad},
		{name: "ipv6 hop-by-hop length past payload", only: v6, frame: hbhSYN, patch: set8(l3(41), is(4)), verdict: xdpPass, delta: ipBad},
		{name: "tcp doff 4", frame: syn, patch: set8(l4(12), is(0x40)), verdict: xdpDrop, delta: tcpBad},
		{name: "tcp doff 0", frame: syn, patch: set8(l4(12), is(0x00)), verdict: xdpDrop, delta: tcpBad},
		{name: "tcp doff one word past segment", frame: syn, patch: set8(l4(12), is(0xb0)), verdict: xdpDrop, delta: tcpBad},
		{name: "tcp doff 15 past segment", frame: syn, patch: set8(l4(12), is(0xf0)), verdict: xdpDrop, delta: tcpBad},
		{name: "tcp doff 4 on an ack", frame: seg(portDefault, packet.ACK, nil), patch: set8(l4(12), is(0x40)), verdict: xdpDrop, delta: tcpBad},
		{name: "tcp doff 15 on a rst", frame: seg(portDefault, packet.RST, nil), patch: set8(l4(12), is(0xf0)), verdict: xdpDrop, delta: tcpBad},
	})
}

// TestTruncated runs every prefix of valid SYNs and of a valid cookie ACK, from a bare Ethernet
// header to one byte short: each is malformed at the IP level and counted once, for the family if
// the EtherType was reached.
func TestTruncated(t *testing.T) {
	r := newRig(t, dpSpec(t))
	withIPOpts := func(f *packet.Frame) {
		if f.IPv4 != nil {
			f.IPv4.Options = []byte{148, 4, 0, 0}
		} else {
			f.IPv6.ExtHeaders = []packet.ExtHeader{{Type: packet.ProtoHopByHop}, {Type: packet.ProtoDstOpts, Data: make([]byte, 14)}}
		}
	}
	for _, s := range frameShapes {
		for _, tc := range []struct {
			name  string
			frame func(t *testing.T) packet.Frame
		}{
			{"syn", func(*testing.T) packet.Frame { return seg(portDefault, packet.SYN, linuxOpts)(s) }},
			{"syn without options", func(*testing.T) packet.Frame { return seg(portDefault, packet.SYN, nil)(s) }},
			{"syn with ip options or extension headers", func(*testing.T) packet.Frame {
				return seg(portDefault, packet.SYN, linuxOpts, withIPOpts)(s)
			}},
			{"cookie ack", func(t *testing.T) packet.Frame { return clientACK(cookieSYN(t, r, s, portDefault, 1460)) }},
		} {
			t.Run(s.name+"/"+tc.name, func(t *testing.T) {
				full := tc.frame(t).Bytes()
				l3off := 14 + 4*len(s.vlans)
				for n := 14; n < len(full); n++ {
					fam := s.fam
					if n < l3off {
						fam = 0 // cut inside the VLAN tags: the EtherType was never reached
					}
					want := on(fam, Counters{PassMalformed: 1})
					ret, out, delta := r.run(t, full[:n])
					if ret != xdpPass || delta != want || !bytes.Equal(out, full[:n]) {
						t.Errorf("%d of %d bytes: %s, counters %s, frame changed: %v; want XDP_PASS, %s, unchanged",
							n, len(full), actionName(ret), fmtDelta(delta), !bytes.Equal(out, full[:n]), fmtDelta(want))
					}
				}
			})
		}
	}
}

func TestServiceCounters(t *testing.T) {
	s := dpSpec(t)
	r := newRig(t, s)
	v4, v6 := frameShapes[0], frameShapes[3]
	for _, tc := range []struct {
		name  string
		frame func(t *testing.T) []byte // may run earlier packets, e.g. the SYN before an ACK
		svc   int                       // the service whose counters move; -1: none
		want  ServiceCounters
	}{
		{"ipv4 syn to 80", func(*testing.T) []byte { return v4.segment(portDefault, packet.SYN).Bytes() },
			serviceID(t, s, server4, portDefault), ServiceCounters{SynReceived: 1, SynackSent: 1}},
		{"ipv6 syn to 81", func(*testing.T) []byte { return v6.segment(portECN, packet.SYN).Bytes() },
			serviceID(t, s, server6, portECN), ServiceCounters{SynReceived: 1, SynackSent: 1}},
		{"ipv4 syn inside the longer of nested prefixes", func(*testing.T) []byte {
			f := v4.segment(portNested, packet.SYN)
			setDst(&f, netip.MustParseAddr("198.51.100.1"))
			return f.Bytes()
		}, serviceID(t, s, netip.MustParseAddr("198.51.100.1"), portNested), ServiceCounters{SynReceived: 1, SynackSent: 1}},
		{"ipv6 syn outside the longer of nested prefixes", func(*testing.T) []byte { return v6.segment(portNested, packet.SYN).Bytes() },
			serviceID(t, s, server6, portNested), ServiceCounters{SynReceived: 1, SynackSent: 1}},
		{"ipv4 valid ack to 81", func(t *testing.T) []byte {
			syn, synack := cookieSYN(t, r, v4, portECN, 1460)
			return clientACK(syn, synack).Bytes()
		}, serviceID(t, s, server4, portECN), ServiceCounters{AckCookieValid: 1}},
		{"ipv6 invalid ack to 80", func(*testing.T) []byte { return v6.segment(portDefault, packet.ACK).Bytes() },
			serviceID(t, s, server6, portDefault), ServiceCounters{AckCookieInvalid: 1}},
		{"ipv4 rst to 80: no per-service field", func(*testing.T) []byte { return v4.segment(portDefault, packet.RST).Bytes() },
			-1, ServiceCounters{}},
		{"ipv4 syn to an unprotected port", func(*testing.T) []byte { return v4.segment(portOpen, packet.SYN).Bytes() },
			-1, ServiceCounters{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := tc.frame(t)
			before := readAllServiceCounters(t, r, len(s.Services))
			r.run(t, in)
			after := readAllServiceCounters(t, r, len(s.Services))
			for id := range after {
				want := ServiceCounters{}
				if id == tc.svc {
					want = tc.want
				}
				if got := subFields(after[id], before[id]); got != want {
					t.Errorf("service %d (%s): moved by %s, want %s", id, s.Services[id], nonZero(got), nonZero(want))
				}
			}
		})
	}
}

func readAllServiceCounters(t *testing.T, r *xdpRig, n int) []ServiceCounters {
	t.Helper()
	out := make([]ServiceCounters, n)
	for id := range out {
		c, err := r.prog.ServiceCounters(id)
		if err != nil {
			t.Fatal(err)
		}
		out[id] = c
	}
	return out
}

// TestReconfigure changes the spec of a loaded program between frames: the next SYN sees it.
func TestReconfigure(t *testing.T) {
	build := func(f spec.Simple) spec.Spec {
		s, err := f.Build()
		if err == nil {
			s, err = s.WithoutHandoff("the SYNPROXY path's fixtures")
		}
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	r := newRig(t, build(spec.Simple{Ports: []uint16{80, 81}, WScale: -1}))
	steps := []struct {
		name string
		spec spec.Spec // nil services: keep the current spec
		port uint16
		want *synackWant // nil: passed as not protected
	}{
		{"initial", spec.Spec{}, 80, answer(mssOnly)},
		{"mss 1300", build(spec.Simple{Ports: []uint16{80, 81}, MSS: 1300, WScale: -1}), 80, answer(synackWant{mss: 1300, ts: noTS, ws: noWS})},
		{"port 81 removed", build(spec.Simple{Ports: []uint16{80}, MSS: 1300, WScale: -1}), 81, nil},
		{"port 80 kept", spec.Spec{}, 80, answer(synackWant{mss: 1300, ts: noTS, ws: noWS})},
		{"port 81 back with ttl 99", build(spec.Simple{Ports: []uint16{81}, TTL: 99, WScale: -1}), 81, answer(synackWant{ttl: 99, ts: noTS, ws: noWS})},
		{"port 80 removed", spec.Spec{}, 80, nil},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			if st.spec.Services != nil {
				if err := r.prog.Reconfigure(st.spec); err != nil {
					t.Fatal(err)
				}
			}
			for _, s := range []frameShape{frameShapes[0], frameShapes[3]} {
				c := xdpCase{in: s.segment(st.port, packet.SYN).Bytes(), verdict: xdpTX, delta: on(s.fam, answered), synack: st.want}
				if st.want == nil {
					c.verdict, c.delta = xdpPass, on(s.fam, Counters{PassNotProtected: 1})
				}
				r.check(t, c)
			}
		})
	}
}
