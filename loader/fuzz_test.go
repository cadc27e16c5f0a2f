package loader

import (
	"bytes"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/xsyn-project/xsyn/internal/packet"
)

// maxFuzzFrame bounds the inputs tried. Handshake packets are far shorter; longer inputs only
// slow down the minimisation of interesting ones (BPF_PROG_RUN itself takes up to about 3.5 kB
// without multi-buffer support).
const maxFuzzFrame = 512

// FuzzXDP runs arbitrary frames through the program and checks what must hold for any input:
// the verdict is never XDP_ABORTED, exactly one verdict counter moves and agrees with the
// verdict, a frame that is not sent back is left untouched, and a frame sent back is a well-formed
// SYN-ACK answering the input.
//
//	go test ./loader -run XXX -fuzz FuzzXDP -fuzztime 60s
func FuzzXDP(f *testing.F) {
	r := newRig(f, dpSpec(f)) // once per fuzzing process, not per input
	for _, seed := range fuzzSeeds(f, r) {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) < 14 || len(in) > maxFuzzFrame {
			return // BPF_PROG_RUN needs an Ethernet header; see maxFuzzFrame for the limit
		}
		ret, out, delta := r.run(t, in)
		if ret == xdpAborted {
			t.Fatalf("XDP_ABORTED for %x", in)
		}
		fuzzEdge(checkOneVerdict(t, ret, delta))
		if ret != xdpTX {
			if !bytes.Equal(out, in) {
				t.Fatalf("%s changed the frame:\n in  %x\n out %x", actionName(ret), in, out)
			}
			return
		}
		checkAnyReply(t, in, out)
	})
}

// fuzzSeeds are valid frames of every shape: SYNs with and without options, an ACK carrying a
// cookie of r, a RST, UDP, IPv4 options and IPv6 extension headers.
func fuzzSeeds(tb testing.TB, r *xdpRig) [][]byte {
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
	case "PassExtHdrChain":
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
// with MSS.
func checkAnyReply(t *testing.T, in, out []byte) {
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
	expect("window", resp.TCP.Window, uint16(0))
	expect("payload", resp.Payload, []byte(nil))
	expect("trailer", resp.Trailer, []byte(nil))
	problems = append(problems, checkLayout(req, resp.TCP.Options)...)
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
