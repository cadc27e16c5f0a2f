package main

import (
	"errors"
	"time"

	"github.com/xsyn-project/xsyn/loader"
)

// sample is every counter of the rig at one moment.
type sample struct {
	sent       uint64 // generator: frames sent
	acksSent   uint64 // generator: of which forged ACKs
	synacks    uint64 // sink: SYN-ACKs to the flood's sources that reached the attacker
	rsts       uint64 // sink: RSTs to the flood's sources
	otherBack  uint64 // sink: anything else to the flood's sources
	dutRx      uint64 // DUT veth rx_packets: frames its NAPI handled
	dutDropped uint64 // DUT veth rx_dropped: XDP frames (live) that found its ring full
	atkTxDrop  uint64 // attacker veth tx_dropped: skbs (packet generator, forwarded) that found it full
	ringDrop   uint64 // of the flood, frames that found the DUT's ring full (the generator's counter)
	dutTxErr   uint64 // DUT veth tx_dropped: answers it could not queue to the attacker
	progRuns   uint64 // DUT XDP program, bpf_stats
	progTime   time.Duration
	dutCPU     time.Duration // CPU time of the DUT's NAPI thread(s)
	atkCPU     time.Duration // CPU time of the attacker's NAPI thread(s)
	xsyn       loader.Counters
}

func (r *rig) sample(d *deployment) (sample, error) {
	var s sample
	var errs []error
	var err error
	s.sent, s.acksSent, err = r.gen.sent()
	errs = append(errs, err)
	var sink []benchprogsSinkCounters
	errs = append(errs, r.progs.BenchSinkCounters.Lookup(uint32(0), &sink))
	for _, c := range sink {
		s.synacks += c.Synack
		s.rsts += c.Rst
		s.otherBack += c.Other
	}
	st, err := linkStats(r.dut, dutIface)
	errs = append(errs, err)
	ast, err := linkStats(r.atk, atkIface)
	errs = append(errs, err)
	s.dutRx, s.dutDropped, s.dutTxErr, s.atkTxDrop = st.RxPackets, st.RxDropped, st.TxDropped, ast.TxDropped
	s.ringDrop = r.gen.ringDropped(st, ast)
	if d.prog != nil {
		ps, err := d.prog.Stats()
		if err == nil {
			s.progRuns, s.progTime = ps.RunCount, ps.Runtime
		}
		errs = append(errs, err)
	}
	if d.xsyn != nil {
		fc, err := d.xsyn.Counters()
		s.xsyn = fc.Total()
		errs = append(errs, err)
	}
	s.dutCPU, err = napiRuntime(dutIface)
	errs = append(errs, err)
	s.atkCPU, err = napiRuntime(atkIface)
	errs = append(errs, err)
	return s, errors.Join(errs...)
}

// sent reads the generator's frame counter alone (the progress line's rate).
func (r *rig) sent() (uint64, error) {
	n, _, err := r.gen.sent()
	return n, err
}

func napiRuntime(iface string) (time.Duration, error) {
	pids, err := napiThreads(iface)
	if err != nil {
		return 0, err
	}
	var total uint64
	for _, pid := range pids {
		ns, err := taskRuntime(pid)
		if err != nil {
			return 0, err
		}
		total += ns
	}
	return time.Duration(total), nil
}

// settle waits until the frames still in flight after the generator stopped have been handled:
// until the sink's and the DUT's counters stop moving (at most a few hundred frames sit in the
// veth rings), or maxWait.
func (r *rig) settle(d *deployment, maxWait time.Duration) (sample, error) {
	deadline := time.Now().Add(maxWait)
	prev, err := r.sample(d)
	if err != nil {
		return prev, err
	}
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for {
		<-tick.C
		cur, err := r.sample(d)
		if err != nil {
			return cur, err
		}
		if (cur.synacks == prev.synacks && cur.rsts == prev.rsts && cur.dutRx == prev.dutRx) || time.Now().After(deadline) {
			return cur, nil
		}
		prev = cur
	}
}
