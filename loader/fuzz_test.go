package loader

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/xsyn-project/xsyn/internal/cookie"
	"github.com/xsyn-project/xsyn/internal/packet"
)

// maxFuzzFrame bounds the inputs tried. Handshake packets are far shorter; longer inputs only
// slow down the minimisation of interesting ones (BPF_PROG_RUN itself takes up to about 3.5 kB
// without multi-buffer support).
const maxFuzzFrame = 512

// FuzzXDP runs arbitrary frames through the program, once configured for the SYNPROXY path
// (dpSpec) and once for the socket handoff (handoffSpec, where the kernel has it), and checks
// what must hold for any input: the verdict is never XDP_ABORTED, exactly one verdict counter
// moves and agrees with the verdict, a frame that is not sent back is left untouched, and a
// frame sent back is a well-formed SYN-ACK answering the input; on the handoff path its cookie
// is the one internal/cookie makes for it.
//
//	go test ./loader -run XXX -fuzz FuzzXDP -fuzztime 60s
func FuzzXDP(f *testing.F) {
	r := newRig(f, dpSpec(f)) // once per fuzzing process, not per input
	var h *handoffRig
	if err := haveHandoff(f); err == nil {
		h = newHandoffRig(f, handoffKey)
	} else {
		f.Logf("the handoff path is not fuzzed: %v", err)
	}
	for _, seed := range fuzzSeeds(f, r, h) {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) < 14 || len(in) > maxFuzzFrame {
			return // BPF_PROG_RUN needs an Ethernet header; see maxFuzzFrame for the limit
		}
		ret, out, delta := r.run(t, in)
		fuzzEdge(checkVerdict(t, in, ret, out, delta))
		if ret == xdpTX {
			checkAnyReply(t, in, out, false)
		}
		if h == nil {
			return
		}
		res, inSlot := h.run(t, nil, in)
		fuzzHandoffEdge(checkVerdict(t, in, res.ret, res.out, res.fam))
		if res.ret == xdpTX {
			checkAnyReply(t, in, res.out, true)
			if inSlot {
				checkHandoffCookie(t, h, in, res)
			}
		}
	})
}

// checkVerdict checks what holds for every verdict and returns the counter that moved.
func checkVerdict(t *testing.T, in []byte, ret uint32, out []byte, delta FamilyCounters) string {
	t.Helper()
	if ret == xdpAborted {
		t.Fatalf("XDP_ABORTED for %x", in)
	}
	reason := checkOneVerdict(t, ret, delta)
	if ret != xdpTX && !bytes.Equal(out, in) {
		t.Fatalf("%s changed the frame:\n in  %x\n out %x", actionName(ret), in, out)
	}
	return reason
}

// fuzzSeeds are valid frames of every shape: SYNs with and without options, an ACK carrying a
// cookie of r, a RST, UDP, IPv4 options and IPv6 extension headers; and with h, the same to its
// handoff services, SACK and window scaling without timestamps among them.
func fuzzSeeds(tb testing.TB, r *xdpRig, h *handoffRig) [][]byte {
	var seeds [][]byte
	for _, s := range frameShapes {
		for _, f := range []packet.Frame{
			s.segment(portDefault, packet.SYN, linuxOpts),
			s.segment(portECN, packet.SYN|packet.ECE|packet.CWR, linuxOpts),
			s.segment(portNoTS, packet.SYN),
			clientACK(cookieSYN(tb, r, s, portDefault, 1460)),
			s.segment(portDefault, packet.RST),
			s.segment(portOpen, packet.SYN, linuxOpts),
		} {
			seeds = append(seeds, f.Bytes())
		}
		withHeaders := s.segment(portDefault, packet.SYN, linuxOpts)
		if withHeaders.IPv4 != nil {
			withHeaders.IPv4.Options = []byte{148, 4, 0, 0}
		} else {
			withHeaders.IPv6.ExtHeaders = []packet.ExtHeader{{Type: packet.ProtoHopByHop}, {Type: packet.ProtoRouting}}
		}
		seeds = append(seeds, withHeaders.Bytes())
		udp := s.segment(portDefault, 0)
		udp.TCP, udp.Proto, udp.Payload = nil, packet.ProtoUDP, make([]byte, 12)
		seeds = append(seeds, udp.Bytes())
		if h == nil {
			continue
		}
		ecnPort := handoffPort(4) // timestamps, SACK and ECN
		for _, f := range []packet.Frame{
			s.segment(handoffBase, packet.SYN, linuxOpts),
			s.segment(ecnPort, packet.SYN|packet.ECE|packet.CWR, linuxOpts),
			s.segment(handoffPort(1), packet.SYN, packet.MSS(1460), packet.NOP(), packet.NOP(), packet.SACKPerm(),
				packet.NOP(), packet.WScale(7)),
			s.segment(handoffBase, packet.SYN),
			handoffACK(cookieSYN(tb, h.xdpRig, s, handoffBase, 1460)),
			handoffACK(cookieSYN(tb, h.xdpRig, s, handoffPort(1), 1460)),
			s.segment(handoffBase, packet.RST),
		} {
			seeds = append(seeds, f.Bytes())
		}
	}
	return seeds
}

// verdictOf is the action each verdict counter stands for (bpf/counters.h finish()).
func verdictOf(field string) (uint32, bool) {
	switch {
	case field == "SynackSent":
		return xdpTX, true
	case field == "AckCookieValid", field == "EstablishedPassed", strings.HasPrefix(field, "Pass"):
		return xdpPass, true
	case field == "AckCookieInvalid", strings.HasPrefix(field, "Drop"):
		return xdpDrop, true
	}
	return 0, false
}

// fuzzEdges gives each verdict reason its own Go code path. The fuzzer's coverage guidance sees
// only Go code, not the BPF program's branches; this lets it tell the reasons apart and keep
// inputs that reach a new one.
var fuzzEdges [16]int

func fuzzEdge(reason string) {
	switch reason {
	case "SynackSent":
		fuzzEdges[0]++
	case "AckCookieValid":
		fuzzEdges[1]++
	case "AckCookieInvalid":
		fuzzEdges[2]++
	case "EstablishedPassed":
		fuzzEdges[3]++
	case "PassNotIp":
		fuzzEdges[4]++
	case "PassNotTcp":
		fuzzEdges[5]++
	case "PassNotProtected":
		fuzzEdges[6]++
	case "PassFragment":
		fuzzEdges[7]++
	case "PassVlanDepth":
		fuzzEdges[8]++
	case "DropExtHdrChain":
		fuzzEdges[9]++
	case "PassMalformed":
		fuzzEdges[10]++
	case "DropNoConn":
		fuzzEdges[11]++
	case "DropMalformed":
		fuzzEdges[12]++
	default:
		fuzzEdges[13]++
	}
}

// fuzzHandoffEdges are fuzzEdges for the handoff path's program.
var fuzzHandoffEdges [10]int

func fuzzHandoffEdge(reason string) {
	switch reason {
	case "SynackSent":
		fuzzHandoffEdges[0]++
	case "AckCookieValid":
		fuzzHandoffEdges[1]++
	case "AckCookieInvalid":
		fuzzHandoffEdges[2]++
	case "EstablishedPassed":
		fuzzHandoffEdges[3]++
	case "PassNoListener":
		fuzzHandoffEdges[4]++
	case "PassNotProtected":
		fuzzHandoffEdges[5]++
	case "DropNoConn":
		fuzzHandoffEdges[6]++
	case "DropMalformed":
		fuzzHandoffEdges[7]++
	case "PassMalformed":
		fuzzHandoffEdges[8]++
	default:
		fuzzHandoffEdges[9]++
	}
}

// checkOneVerdict checks that exactly one verdict counter moved, by one, for the action
// returned; SynReceived may move along with a SYN's verdict. It returns the counter.
func checkOneVerdict(t *testing.T, ret uint32, d FamilyCounters) string {
	t.Helper()
	var moved []string
	synReceived := uint64(0)
	for _, fam := range []Counters{d.IPv4, d.IPv6, d.Other} {
		v := reflect.ValueOf(fam)
		for i := range v.NumField() {
			field := v.Type().Field(i)
			if !field.IsExported() || v.Field(i).Uint() == 0 {
				continue
			}
			if field.Name == "SynReceived" {
				synReceived += v.Field(i).Uint()
				continue
			}
			if _, ok := verdictOf(field.Name); !ok {
				t.Fatalf("counter %s has no known verdict", field.Name)
			}
			for range v.Field(i).Uint() {
				moved = append(moved, field.Name)
			}
		}
	}
	if len(moved) != 1 {
		t.Fatalf("%s moved %d verdict counters: %s", actionName(ret), len(moved), fmtDelta(d))
	}
	if want, _ := verdictOf(moved[0]); want != ret {
		t.Fatalf("%s counted as %s", actionName(ret), moved[0])
	}
	switch {
	case synReceived > 1:
		t.Fatalf("SynReceived moved by %d", synReceived)
	case synReceived == 1 && !strings.Contains("SynackSent PassNoRoom PassCookieError DropInternal", moved[0]):
		t.Fatalf("a SYN counted as %s", moved[0])
	}
	return moved[0]
}

// checkAnyReply checks that out is a SYN-ACK answering in, whatever in was: checksums valid
// (packet.Parse), addresses, ports, VLAN tags and sequence number mirrored, options starting
// with MSS in the layout of the path (handoff: the listener's, with a window; else SYNPROXY's).
func checkAnyReply(t *testing.T, in, out []byte, handoff bool) {
	t.Helper()
	req, err := packet.Decode(in)
	if err != nil {
		t.Fatalf("answered a frame that does not decode (%v): %x", err, in)
	}
	resp, err := packet.Parse(out)
	if err != nil {
		t.Fatalf("reply does not parse: %v\n in  %x\n out %x", err, in, out)
	}
	if req.TCP == nil || resp.TCP == nil {
		t.Fatalf("answered non-TCP: %x", in)
	}
	problems := []string{}
	expect := func(what string, got, want any) {
		if !reflect.DeepEqual(got, want) {
			problems = append(problems, fmt.Sprintf("%s = %v, want %v", what, got, want))
		}
	}
	expect("syn flags", req.TCP.Flags&(packet.SYN|packet.ACK|packet.RST|packet.FIN), packet.SYN)
	expect("macs", [2]packet.MAC{resp.Dst, resp.Src}, [2]packet.MAC{req.Src, req.Dst})
	expect("vlans", resp.VLANs, req.VLANs)
	expect("ethertype", resp.EtherType, req.EtherType)
	if req.IPv4 != nil {
		expect("ipv4 addresses", [2]any{resp.IPv4.Src, resp.IPv4.Dst}, [2]any{req.IPv4.Dst, req.IPv4.Src})
		expect("ipv4 options", resp.IPv4.Options, []byte(nil))
	} else {
		expect("ipv6 addresses", [2]any{resp.IPv6.Src, resp.IPv6.Dst}, [2]any{req.IPv6.Dst, req.IPv6.Src})
		expect("ipv6 extension headers", len(resp.IPv6.ExtHeaders), 0)
	}
	expect("ports", [2]uint16{resp.TCP.SrcPort, resp.TCP.DstPort}, [2]uint16{req.TCP.DstPort, req.TCP.SrcPort})
	expect("ack", resp.TCP.Ack, req.TCP.Seq+1)
	expect("synack flags", resp.TCP.Flags&^packet.ECE, packet.SYN|packet.ACK)
	expect("payload", resp.Payload, []byte(nil))
	expect("trailer", resp.Trailer, []byte(nil))
	if !handoff {
		expect("window", resp.TCP.Window, uint16(0))
		problems = append(problems, checkLayout(req, resp.TCP.Options)...)
	} else if problems = append(problems, checkHandoffLayout(req, resp.TCP.Options)...); len(problems) == 0 {
		mss := binary.BigEndian.Uint16(resp.TCP.Options[2:])
		expect("window", resp.TCP.Window, 65535/mss*mss)
	}
	if len(problems) > 0 {
		t.Fatalf("bad reply:\n %s\n in  %x\n out %x", strings.Join(problems, "\n "), in, out)
	}
}

// checkLayout checks that SYN-ACK options are MSS, [SACK_PERM|NOP NOP] TS, [NOP WS], and that
// a timestamp echoes the last well-formed one of the SYN.
func checkLayout(syn *packet.Packet, opts []byte) []string {
	var problems []string
	tsPrefixes := [][]byte{{packet.OptSACKPerm, 2, packet.OptTimestamp, 10}, {packet.OptNOP, packet.OptNOP, packet.OptTimestamp, 10}}
	switch {
	case len(opts) != 4 && len(opts) != 16 && len(opts) != 20:
		problems = append(problems, fmt.Sprintf("%d bytes of options", len(opts)))
	case opts[0] != packet.OptMSS || opts[1] != 4:
		problems = append(problems, "options do not start with MSS")
	case len(opts) >= 16 && !bytes.Equal(opts[4:8], tsPrefixes[0]) && !bytes.Equal(opts[4:8], tsPrefixes[1]):
		problems = append(problems, fmt.Sprintf("timestamps announced by % x", opts[4:8]))
	case len(opts) == 20 && !bytes.Equal(opts[16:19], []byte{packet.OptNOP, packet.OptWScale, 3}):
		problems = append(problems, fmt.Sprintf("window scale announced by % x", opts[16:19]))
	}
	if len(problems) > 0 || len(opts) < 16 {
		return problems
	}
	return checkEcho(syn, opts)
}

// checkHandoffLayout checks that handoff SYN-ACK options are the listener's: MSS, then
// [SACK_PERM|NOP NOP] TS or NOP NOP SACK_PERM or nothing, then [NOP WS].
func checkHandoffLayout(syn *packet.Packet, opts []byte) []string {
	if len(opts) < 4 || opts[0] != packet.OptMSS || opts[1] != 4 {
		return []string{fmt.Sprintf("options % x do not start with MSS", opts)}
	}
	rest := opts[4:]
	var problems []string
	switch {
	case len(rest) >= 12 && (bytes.HasPrefix(rest, []byte{packet.OptSACKPerm, 2, packet.OptTimestamp, 10}) ||
		bytes.HasPrefix(rest, []byte{packet.OptNOP, packet.OptNOP, packet.OptTimestamp, 10})):
		problems = checkEcho(syn, opts)
		rest = rest[12:]
	case bytes.HasPrefix(rest, []byte{packet.OptNOP, packet.OptNOP, packet.OptSACKPerm, 2}):
		rest = rest[4:]
	}
	if len(rest) == 4 && bytes.HasPrefix(rest, []byte{packet.OptNOP, packet.OptWScale, 3}) {
		rest = nil
	}
	if len(rest) > 0 {
		problems = append(problems, fmt.Sprintf("options % x: unexpected % x", opts, rest))
	}
	return problems
}

// checkEcho checks that the timestamps at opts[4:16] echo the last well-formed one of the SYN.
func checkEcho(syn *packet.Packet, opts []byte) []string {
	var problems []string
	ts, ok := packet.LastOption(wellFormed(syn.Options), packet.OptTimestamp)
	if !ok {
		return append(problems, "timestamps answered to a SYN without a well-formed one")
	}
	if !bytes.Equal(opts[12:16], ts.Data[:4]) {
		problems = append(problems, fmt.Sprintf("tsecr % x, want the SYN's tsval % x", opts[12:16], ts.Data[:4]))
	}
	return problems
}

// wellFormed drops options the kernel would skip for their length (a timestamp must be 10 bytes).
func wellFormed(opts []packet.Option) []packet.Option {
	var out []packet.Option
	for _, o := range opts {
		if o.Kind != packet.OptTimestamp || len(o.Data) == 8 {
			out = append(out, o)
		}
	}
	return out
}

// checkHandoffCookie checks a handoff SYN-ACK's cookie against internal/cookie: the ISN and the
// TSval's low byte are what the key makes of the SYN and the option byte the ISN carries, and
// the option byte says what the options and the ECE flag show.
func checkHandoffCookie(t *testing.T, h *handoffRig, in []byte, res handoffRun) {
	t.Helper()
	req, _ := packet.Decode(in)
	resp, _ := packet.Parse(res.out)
	var src, dst netip.Addr
	if req.IPv4 != nil {
		src, dst = req.IPv4.Src, req.IPv4.Dst
	} else {
		src, dst = req.IPv6.Src, req.IPv6.Dst
	}
	opt := uint8(resp.TCP.Seq)
	isn, tsBits := cookie.Make(h.key, src, dst, req.TCP.SrcPort, req.TCP.DstPort, req.TCP.Seq, res.slot, opt)
	d := cookie.Decode(opt, req.IPv6 != nil)
	opts, _ := packet.ParseOptions(resp.TCP.Options)
	_, ws := packet.LastOption(opts, packet.OptWScale)
	_, sack := packet.LastOption(opts, packet.OptSACKPerm)
	ts, hasTS := packet.LastOption(opts, packet.OptTimestamp)
	var problems []string
	if resp.TCP.Seq != isn {
		problems = append(problems, fmt.Sprintf("isn %#08x, want %#08x", resp.TCP.Seq, isn))
	}
	if hasTS && ts.Data[3] != tsBits {
		problems = append(problems, fmt.Sprintf("tsval % x, want low byte %#02x", ts.Data[:4], tsBits))
	}
	if got := [3]bool{ws, sack, resp.TCP.Flags&packet.ECE != 0}; got != [3]bool{d.WScale != cookie.NoWScale, d.SACK, d.ECN} {
		problems = append(problems, fmt.Sprintf("window scale, SACK, ECE %v; the option byte %#02x says %+v", got, opt, d))
	}
	if len(problems) > 0 {
		t.Fatalf("bad handoff cookie:\n %s\n in  %x\n out %x", strings.Join(problems, "\n "), in, res.out)
	}
}
