package loader

import (
	"bytes"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/xsyn-project/xsyn/internal/packet"
)

// maxFuzzFrame keeps inputs within one page of BPF_PROG_RUN's buffer (the program does not
// handle multi-buffer frames, so larger inputs are refused by the kernel, not by xsyn).
const maxFuzzFrame = 2048

// FuzzXDP runs arbitrary frames through the program and checks what must hold for any input:
// the verdict is never XDP_ABORTED, exactly one verdict counter moves and agrees with the
// verdict, a frame that is not sent back is left untouched, and a frame sent back is a well-formed
// SYN-ACK answering the input.
//
//	go test ./loader -run XXX -fuzz FuzzXDP -fuzztime 60s
func FuzzXDP(f *testing.F) {
	r := newRig(f, dpSpec(f)) // once per fuzzing process, not per input
	for _, seed := range fuzzSeeds() {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) < 14 {
			return // BPF_PROG_RUN needs an Ethernet header
		}
		if len(in) > maxFuzzFrame {
			in = in[:maxFuzzFrame]
		}
		ret, out, delta := r.run(t, in)
		if ret == xdpAborted {
			t.Fatalf("XDP_ABORTED for %x", in)
		}
		checkOneVerdict(t, ret, delta)
		if ret != xdpTX {
			if !bytes.Equal(out, in) {
				t.Fatalf("%s changed the frame:\n in  %x\n out %x", actionName(ret), in, out)
			}
			return
		}
		checkAnyReply(t, in, out)
	})
}

// fuzzSeeds are valid frames of every shape: SYNs with and without options, ACKs, a RST, UDP,
// IPv4 options and IPv6 extension headers.
func fuzzSeeds() [][]byte {
	var seeds [][]byte
	for _, s := range frameShapes {
		ackOpts := packet.Options(packet.NOP(), packet.NOP(), packet.Timestamp(1, 2))
		for _, f := range []packet.Frame{
			s.segment(portDefault, packet.SYN, linuxOpts),
			s.segment(portECN, packet.SYN|packet.ECE|packet.CWR, linuxOpts),
			s.segment(portNoTS, packet.SYN),
			s.segment(portDefault, packet.ACK, ackOpts),
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

// checkOneVerdict checks that exactly one verdict counter moved, by one, for the action
// returned; SynReceived may move along with a SYN's verdict.
func checkOneVerdict(t *testing.T, ret uint32, d FamilyCounters) {
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
	if len(resp.Options) == 0 || resp.Options[0].Kind != packet.OptMSS {
		problems = append(problems, fmt.Sprintf("options %v do not start with MSS", resp.Options))
	}
	if len(problems) > 0 {
		t.Fatalf("bad reply:\n %s\n in  %x\n out %x", strings.Join(problems, "\n "), in, out)
	}
}
