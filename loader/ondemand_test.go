package loader

// Fixtures of on-demand protection (bpf/ondemand.h) through BPF_PROG_RUN: below the threshold a
// SYN passes to the listener, at it the service switches to cookies, and back only after a
// quiet second. The test writes the per-CPU SYN counts and the switch of the window the program
// is in, runs one SYN on a CPU it pins itself to, and starts a row again when a 100 ms window
// boundary fell inside it, so no verdict depends on when the test runs.

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/xsyn-project/xsyn/internal/netlab"
	"github.com/xsyn-project/xsyn/internal/packet"
	"github.com/xsyn-project/xsyn/spec"
)

const (
	odPort    uint16 = 7300 // on-demand at odRate
	odOffPort uint16 = 7301 // handoff without on-demand: cookies always
	odRate           = 1000 // SYNs a second: 100 in a 100 ms window
)

// onDemandSpec protects odPort with on-demand and odOffPort without, on the handoff path, in
// both families.
func onDemandSpec(tb testing.TB) spec.Spec {
	tb.Helper()
	var s spec.Spec
	for _, f := range []spec.Simple{
		{Ports: []uint16{odPort}, WScale: -1, Via: spec.ViaHandoff, OnDemand: odRate},
		{Ports: []uint16{odOffPort}, WScale: -1, Via: spec.ViaHandoff},
	} {
		part, err := f.Build()
		if err != nil {
			tb.Fatalf("build %+v: %v", f, err)
		}
		s.Services = append(s.Services, part.Services...)
	}
	key := handoffKey
	s.CookieKey = &key
	if err := s.Validate(); err != nil {
		tb.Fatal(err)
	}
	return s
}

func newOnDemandRig(t *testing.T) *handoffRig {
	t.Helper()
	rootOrSkip(t)
	if err := haveHandoff(t); err != nil {
		t.Skipf("the kernel lacks the socket handoff: %v", err)
	}
	s := onDemandSpec(t)
	return &handoffRig{xdpRig: newRig(t, s), spec: s, key: handoffKey}
}

// pinCPU keeps the calling goroutine (a subtest runs in its own) on one thread and that thread
// on CPU 0 until the test ends: the program counts SYNs per CPU, and the rows say on which.
func pinCPU(t *testing.T) {
	t.Helper()
	runtime.LockOSThread()
	var old, one unix.CPUSet
	if err := unix.SchedGetaffinity(0, &old); err != nil {
		t.Fatal(err)
	}
	one.Set(0)
	if err := unix.SchedSetaffinity(0, &one); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		unix.SchedSetaffinity(0, &old)
		runtime.UnlockOSThread()
	})
}

// odCPU is one CPU's count, in windows relative to the one the row runs in.
type odCPU struct {
	window      int64 // 0: the current window, -1 the one before, ...
	count, prev uint32
}

// odSetup is the state a row starts from.
type odSetup struct {
	cookies  bool
	lastBusy time.Duration // before now
	cpus     map[int]odCPU // by CPU; the rest have no SYNs in recent windows
}

// prime writes setup for service id, relative to the current window, and returns the window.
func (r *handoffRig) prime(t *testing.T, id int, setup odSetup) uint64 {
	t.Helper()
	now, err := monotonicCoarse()
	if err != nil {
		t.Fatal(err)
	}
	window := now / uint64(onDemandWindow)
	rates := make([]xsynOnDemandRate, ebpf.MustPossibleCPU())
	for cpu, c := range setup.cpus {
		if cpu >= len(rates) {
			t.Skipf("the row needs CPU %d; this machine has %d", cpu, len(rates))
		}
		rates[cpu] = xsynOnDemandRate{Window: uint64(int64(window) + c.window), Count: c.count, Prev: c.prev}
	}
	cm := r.prog.configMaps()
	if err := cm.odRate.Put(uint32(id), rates); err != nil {
		t.Fatal(err)
	}
	st := xsynOnDemandState{LastBusy: now - uint64(setup.lastBusy)}
	if setup.cookies {
		st.Cookies = 1
	}
	if err := cm.odState.Put(uint32(id), st); err != nil {
		t.Fatal(err)
	}
	return window
}

func (r *handoffRig) odState(t *testing.T, id int) xsynOnDemandState {
	t.Helper()
	var st xsynOnDemandState
	if err := r.prog.configMaps().odState.Lookup(uint32(id), &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// What a SYN to an on-demand service comes to.
var (
	toListener  = verdictWant{xdpPass, Counters{SynReceived: 1, PassOnDemandIdle: 1}, ServiceCounters{SynReceived: 1}}
	switchOn    = verdictWant{xdpTX, answered, ServiceCounters{SynReceived: 1, SynackSent: 1, OnDemandSwitches: 1}}
	switchOff   = verdictWant{xdpPass, Counters{SynReceived: 1, PassOnDemandIdle: 1}, ServiceCounters{SynReceived: 1, OnDemandSwitches: 1}}
	kernelCheck = verdictWant{xdpPass, Counters{PassKernelCookie: 1}, ServiceCounters{}}
)

// odRow is one SYN to odPort from a primed state.
type odRow struct {
	name    string
	setup   odSetup
	want    verdictWant
	cookies bool // the switch after the SYN
}

func TestOnDemandSYN(t *testing.T) {
	r := newOnDemandRig(t)
	quiet := odSetup{cpus: map[int]odCPU{}}
	rows := []odRow{
		{"quiet", quiet, toListener, false},
		{"below a tenth in this window", odSetup{cpus: map[int]odCPU{0: {count: 98}}}, toListener, false},
		// The 100th SYN of a window is odRate a second.
		{"reaches the threshold in this window", odSetup{cpus: map[int]odCPU{0: {count: 99}}}, switchOn, true},
		// A new window on this CPU sums the last one over every CPU: a flood RSS spreads.
		{"last window over all CPUs at the threshold", odSetup{cpus: map[int]odCPU{0: {window: -1, count: 40}, 1: {window: -1, count: 60}}}, switchOn, true},
		{"last window on this CPU alone below", odSetup{cpus: map[int]odCPU{0: {window: -1, count: 40}, 1: {window: -3, count: 60}}}, toListener, false},
		{"another CPU's last window, kept in its prev", odSetup{cpus: map[int]odCPU{0: {window: -1, count: 40}, 1: {window: 0, count: 5, prev: 60}}}, switchOn, true},
		// Hysteresis: between half the threshold and the threshold, the switch stays as it is.
		{"off, last window at 70%", odSetup{cpus: map[int]odCPU{0: {window: -1, count: 70}}}, toListener, false},
		{"on, last window at 70%", odSetup{cookies: true, lastBusy: 5 * time.Second, cpus: map[int]odCPU{0: {window: -1, count: 70}}}, synAnswer, true},
		{"on, last window at half", odSetup{cookies: true, lastBusy: 5 * time.Second, cpus: map[int]odCPU{0: {window: -1, count: 50}}}, synAnswer, true},
		{"on, quiet for less than a second", odSetup{cookies: true, lastBusy: 500 * time.Millisecond, cpus: map[int]odCPU{0: {window: -1, count: 10}}}, synAnswer, true},
		{"on, quiet in this window only", odSetup{cookies: true, lastBusy: 500 * time.Millisecond}, synAnswer, true},
		{"on, below half for a second", odSetup{cookies: true, lastBusy: 1500 * time.Millisecond, cpus: map[int]odCPU{0: {window: -1, count: 49}}}, switchOff, false},
		{"on, silent for a second", odSetup{cookies: true, lastBusy: 3 * time.Second}, switchOff, false},
		// A window on this CPU that is not over yet does not switch it off.
		{"on, this window busy", odSetup{cookies: true, lastBusy: 3 * time.Second, cpus: map[int]odCPU{0: {count: 200}}}, synAnswer, true},
	}
	for _, s := range frameShapes {
		t.Run(s.name, func(t *testing.T) {
			for _, row := range rows {
				t.Run(row.name, func(t *testing.T) { r.odRow(t, s, row) })
			}
		})
	}
}

func (r *handoffRig) odRow(t *testing.T, s frameShape, row odRow) {
	pinCPU(t)
	id := serviceID(t, r.spec, s.pick(server4, server6), odPort)
	syn := s.segment(odPort, packet.SYN, linuxOpts)
	in := syn.Bytes()
	retry(t, func() bool {
		window := r.prime(t, id, row.setup)
		res, ok := r.run(t, nil, in)
		now, err := monotonicCoarse()
		if err != nil {
			t.Fatal(err)
		}
		if !ok || now/uint64(onDemandWindow) != window {
			return false // a window (or cookie slot) boundary fell inside
		}
		r.expect(t, s.fam, res, id, row.want)
		switch {
		case row.want.verdict == xdpPass && string(res.out) != string(in):
			t.Errorf("frame changed:\n in  %x\n out %x", in, res.out)
		case row.want.verdict == xdpTX:
			checkAnswer(t, syn, res.out)
		}
		if got := r.odState(t, id).Cookies != 0; got != row.cookies {
			t.Errorf("cookies %v after the SYN, want %v", got, row.cookies)
		}
		return true
	})
}

// checkAnswer checks that out is a SYN-ACK to syn, checksums included; TestHandoffSYNACK checks
// such answers byte by byte.
func checkAnswer(t *testing.T, syn packet.Frame, out []byte) {
	t.Helper()
	p, err := packet.Parse(out)
	if err != nil {
		t.Fatalf("parse SYN-ACK: %v", err)
	}
	if p.TCP.Flags&(packet.SYN|packet.ACK|packet.RST|packet.FIN) != packet.SYN|packet.ACK ||
		p.TCP.Ack != syn.TCP.Seq+1 || p.TCP.SrcPort != syn.TCP.DstPort || p.TCP.DstPort != syn.TCP.SrcPort {
		t.Errorf("not a SYN-ACK to the SYN: %+v", *p.TCP)
	}
}

// TestOnDemandOffService: a handoff service without on-demand answers every SYN with a cookie
// and keeps no switch.
func TestOnDemandOffService(t *testing.T) {
	r := newOnDemandRig(t)
	for _, s := range frameShapes {
		t.Run(s.name, func(t *testing.T) {
			id := serviceID(t, r.spec, s.pick(server4, server6), odOffPort)
			retry(t, func() bool {
				res, ok := r.run(t, nil, s.segment(odOffPort, packet.SYN, linuxOpts).Bytes())
				if ok {
					r.expect(t, s.fam, res, id, synAnswer)
				}
				return ok
			})
		})
	}
}

// TestOnDemandACK: the ACKs of handshakes made around a switch. A client's ACK to xsyn's cookie
// connects after the switch back to the listener; one to the listener's own cookie (which it
// sends when its SYN queue is full) passes to the stack only on an on-demand service; forged
// ones are dropped in either state.
func TestOnDemandACK(t *testing.T) {
	r := newOnDemandRig(t)
	ns := handoffNS(t, "xsynod")
	listen(t, ns, "tcp", fmt.Sprintf("[::]:%d", odPort))
	listen(t, ns, "tcp", fmt.Sprintf("[::]:%d", odOffPort))
	// A program on the SYNPROXY path answers with the kernel's cookie, as the listener would.
	kernel := kernelCookieRig(t)

	for shape, s := range frameShapes {
		t.Run(s.name, func(t *testing.T) {
			id := serviceID(t, r.spec, s.pick(server4, server6), odPort)
			offID := serviceID(t, r.spec, s.pick(server4, server6), odOffPort)
			t.Run("xsyn cookie after the switch back", func(t *testing.T) {
				pinCPU(t)
				retry(t, func() bool {
					r.prime(t, id, odSetup{cookies: true, lastBusy: 0})
					h, ok := r.handshake(t, s, odPort)
					if !ok {
						return false
					}
					r.prime(t, id, odSetup{}) // switched back to the listener
					res, ok := r.run(t, ns, handoffACK(h.syn, h.synack).Bytes())
					if ok && res.taiSlot == h.taiSlot {
						r.expect(t, s.fam, res, id, handedOff)
					}
					return ok && res.taiSlot == h.taiSlot
				})
			})
			t.Run("listener's SYN-ACK before the switch to cookies", func(t *testing.T) {
				port := halfOpenPort + uint16(shape) // a request socket of its own: one outlives its row
				halfOpen(t, ns, s.pick(client4, client6), port, s.pick(server4, server6), odPort)
				r.prime(t, id, odSetup{cookies: true, lastBusy: 0})
				ack := s.segment(odPort, packet.ACK)
				ack.TCP.SrcPort = port
				ack.TCP.Ack = 0x12345678 // the listener's ISN, which only its request socket knows
				in := ack.Bytes()
				res, _ := r.run(t, ns, in)
				r.expect(t, s.fam, res, id, connected) // the request socket found: the stack completes it

				// Its SYN again (the listener's SYN-ACK was lost): the listener answers it,
				// not a cookie its request socket would refuse the ACK of.
				syn := s.segment(odPort, packet.SYN, linuxOpts)
				syn.TCP.SrcPort = port
				in = syn.Bytes()
				res, _ = r.run(t, ns, in)
				r.expect(t, s.fam, res, id, toListener)
				if string(res.out) != string(in) {
					t.Errorf("frame changed:\n in  %x\n out %x", in, res.out)
				}
			})
			for _, c := range []struct {
				name   string
				port   uint16
				id     int
				cookie bool // cookies or listener
				forge  bool
				want   verdictWant
			}{
				{"listener's cookie while quiet", odPort, id, false, false, kernelCheck},
				{"listener's cookie while flooded", odPort, id, true, false, kernelCheck},
				{"forged while quiet", odPort, id, false, true, forged},
				{"forged while flooded", odPort, id, true, true, forged},
				{"listener's cookie without on-demand", odOffPort, offID, false, false, forged},
			} {
				t.Run(c.name, func(t *testing.T) {
					syn, synack := cookieSYN(t, kernel, s, c.port, 1460)
					ack := clientACK(syn, synack)
					if c.forge {
						ack.TCP.Ack ^= 1 << 20
					}
					r.prime(t, id, odSetup{cookies: c.cookie, lastBusy: 0})
					in := ack.Bytes()
					res, _ := r.run(t, ns, in)
					r.expect(t, s.fam, res, c.id, c.want)
					if string(res.out) != string(in) {
						t.Errorf("frame changed:\n in  %x\n out %x", in, res.out)
					}
				})
			}
		})
	}
}

// halfOpenPort is the first client port of halfOpen's connections, which no other row uses:
// their request sockets outlive the row, and a new SYN from the same port would reset one.
const halfOpenPort uint16 = 40200

// halfOpen leaves a request socket of the listener on port for the client from:fromPort, as a
// client whose handshake the listener answered leaves it until its ACK comes: a
// client socket in ns connects while the listener's SYN-ACKs are dropped on their way out.
func halfOpen(t *testing.T, ns *netlab.Host, from netip.Addr, fromPort uint16, to netip.Addr, port uint16) {
	t.Helper()
	cmd := "iptables"
	if to.Is6() {
		cmd = "ip6tables"
	}
	rule := []string{"OUTPUT", "-p", "tcp", "--sport", fmt.Sprint(port), "--tcp-flags", "SYN,ACK", "SYN,ACK", "-j", "DROP"}
	if _, err := ns.Run(cmd, append([]string{"-I"}, rule...)...); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Run(cmd, append([]string{"-D"}, rule...)...) })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go ns.Do(func() error {
		defer close(done)
		d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(from, fromPort)), Control: reuseAddr}
		c, err := d.DialContext(ctx, "tcp", netip.AddrPortFrom(to, port).String())
		if err == nil {
			c.Close()
		}
		return nil
	})
	t.Cleanup(func() { cancel(); <-done })
	// Wait for the request socket: ss lists it in SYN-RECV.
	filter := fmt.Sprintf("( sport = :%d and dport = :%d )", port, fromPort)
	for end := time.Now().Add(5 * time.Second); ; {
		out, err := ns.Run("ss", "-Htn", "state", "syn-recv", filter)
		if err != nil {
			t.Fatal(err)
		}
		if strings.TrimSpace(out) != "" {
			return
		}
		if time.Now().After(end) {
			t.Fatalf("no request socket for %s:%d -> %s:%d after 5s", from, fromPort, to, port)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// kernelCookieRig is a program protecting odPort and odOffPort on the SYNPROXY path: its SYN-ACKs
// carry the kernel's cookie, the one the listener sends when its SYN queue is full.
func kernelCookieRig(t *testing.T) *xdpRig {
	t.Helper()
	s, err := spec.Simple{Ports: []uint16{odPort, odOffPort}, WScale: -1}.Build()
	if err != nil {
		t.Fatal(err)
	}
	if s, err = s.WithoutHandoff("the kernel's cookie"); err != nil {
		t.Fatal(err)
	}
	return newRig(t, s)
}

// TestOnDemandReconfigure: the threshold reaches the program by a map update; a change keeps
// the switch as it is (a flood goes on), turning on-demand on starts it afresh.
func TestOnDemandReconfigure(t *testing.T) {
	r := newOnDemandRig(t)
	withRate := func(rate int) spec.Spec {
		s := onDemandSpec(t)
		for i := range s.Services {
			if s.Services[i].Port == odPort {
				s.Services[i].OnDemand = uint32(rate)
			}
		}
		return s
	}
	id := serviceID(t, r.spec, server4, odPort)
	threshold := func() uint32 {
		t.Helper()
		got, err := r.prog.OnDemand()
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range got {
			if s.ID == id {
				return s.Threshold
			}
		}
		return 0
	}
	if got := threshold(); got != odRate {
		t.Fatalf("threshold %d after the load, want %d", got, odRate)
	}
	r.prime(t, id, odSetup{cookies: true})
	if err := r.prog.Reconfigure(withRate(5000)); err != nil {
		t.Fatal(err)
	}
	if got := threshold(); got != 5000 || r.odState(t, id).Cookies == 0 {
		t.Errorf("threshold changed to 5000: threshold %d, cookies %d; want 5000 and still on", got, r.odState(t, id).Cookies)
	}
	if err := r.prog.Reconfigure(withRate(0)); err != nil {
		t.Fatal(err)
	}
	if got := threshold(); got != 0 {
		t.Errorf("on-demand off: threshold %d", got)
	}
	svcs, err := r.prog.configMaps().services()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range svcs {
		if s.OnDemand != 0 {
			t.Errorf("on-demand off: service %s reads back %d", s, s.OnDemand)
		}
	}
	if err := r.prog.Reconfigure(withRate(odRate)); err != nil {
		t.Fatal(err)
	}
	if got := threshold(); got != odRate || r.odState(t, id).Cookies != 0 {
		t.Errorf("on-demand on again: threshold %d, cookies %d; want %d and the listener answering", got, r.odState(t, id).Cookies, odRate)
	}
}
