package loader

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/xsyn-project/xsyn/spec"
)

// On-demand protection's state (bpf/ondemand.h): per service, whether SYNs get cookies, and
// the per-CPU SYN counts the program decides it from.

// The program's constants (bpf/ondemand.h).
const (
	onDemandWindow = 100 * time.Millisecond
	onDemandHold   = time.Second
)

// OnDemandState is one on-demand service's switch, as the program last set it.
type OnDemandState struct {
	Threshold uint32 // SYNs a second; 0: not on-demand (cookies always)
	// Cookies: SYNs are answered with cookies (a flood is on); else the listener answers them.
	Cookies bool
	// Since is how long ago the switch was last made (0 if never since the attach).
	Since time.Duration
	// Quiet: Cookies, but the last busy window ended more than a second ago: the next SYN
	// switches back to the listener (the program decides only when SYNs come).
	Quiet bool
	// Rate is the SYN rate (a second) of the last complete 100 ms window, summed over CPUs.
	Rate uint64
	// Switches counts the switches, both ways, since the service was configured.
	Switches uint64
}

// resetOnDemand starts a service's switch afresh (the listener answers) when it is new, or
// when on-demand is turned on for it, so no state of an earlier service or configuration
// decides its SYNs. A threshold changed while on keeps the state: the flood goes on.
func (c configMaps) resetOnDemand(id uint32, svc spec.Service, fresh bool) error {
	if c.odState == nil || c.odRate == nil {
		return nil
	}
	if !fresh {
		var cur xsynService
		if err := c.svcs.Lookup(id, &cur); err != nil {
			return fmt.Errorf("read parameters of %s: %w", svc, err)
		}
		if cur.OnDemand != 0 || svc.OnDemand == 0 {
			return nil
		}
	}
	if err := c.odState.Put(id, xsynOnDemandState{}); err != nil {
		return fmt.Errorf("reset on-demand state of %s: %w", svc, err)
	}
	if err := c.odRate.Put(id, make([]xsynOnDemandRate, ebpf.MustPossibleCPU())); err != nil {
		return fmt.Errorf("reset on-demand rate of %s: %w", svc, err)
	}
	return nil
}

// monotonicCoarse is the clock the program reads (bpf_ktime_get_coarse_ns).
func monotonicCoarse() (uint64, error) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC_COARSE, &ts); err != nil {
		return 0, fmt.Errorf("read the monotonic clock: %w", err)
	}
	return uint64(ts.Nano()), nil
}

// onDemand reads service id's switch; threshold is its configured rate.
func (c configMaps) onDemand(id uint32, threshold uint32) (OnDemandState, error) {
	out := OnDemandState{Threshold: threshold}
	if threshold == 0 {
		return out, nil
	}
	if c.odState == nil || c.odRate == nil {
		return out, errors.New("the attached program has no on-demand maps: attach again with this xsyn")
	}
	var st xsynOnDemandState
	if err := c.odState.Lookup(id, &st); err != nil {
		return out, fmt.Errorf("read on-demand state of service %d: %w", id, err)
	}
	var rates []xsynOnDemandRate
	if err := c.odRate.Lookup(id, &rates); err != nil {
		return out, fmt.Errorf("read on-demand rate of service %d: %w", id, err)
	}
	now, err := monotonicCoarse()
	if err != nil {
		return out, err
	}
	window := now / uint64(onDemandWindow)
	for _, r := range rates {
		switch r.Window {
		case window - 1:
			out.Rate += uint64(r.Count)
		case window:
			out.Rate += uint64(r.Prev)
		}
	}
	out.Rate *= uint64(time.Second / onDemandWindow)
	out.Cookies = st.Cookies != 0
	if st.Since != 0 && st.Since <= now {
		out.Since = time.Duration(now - st.Since)
	}
	out.Quiet = out.Cookies && now-st.LastBusy >= uint64(onDemandHold) && out.Rate*2 < uint64(threshold)
	return out, nil
}

// ServiceOnDemand is the switch of one on-demand service.
type ServiceOnDemand struct {
	Service spec.Service // family, destination, port and threshold (OnDemand)
	ID      int
	OnDemandState
}

// OnDemand reads the switch of every on-demand service of the program, by service id.
func (p *Program) OnDemand() ([]ServiceOnDemand, error) {
	return p.configMaps().onDemandAll()
}

// OnDemand reads the switch of every on-demand service of the attachment, by service id.
func (a *Attachment) OnDemand() ([]ServiceOnDemand, error) {
	return a.maps.onDemandAll()
}

func (c configMaps) onDemandAll() ([]ServiceOnDemand, error) {
	cur, err := c.currentIDs()
	if err != nil {
		return nil, err
	}
	var out []ServiceOnDemand
	for k, id := range cur {
		var v xsynService
		if err := c.svcs.Lookup(id, &v); err != nil {
			return nil, fmt.Errorf("read parameters of service %d: %w", id, err)
		}
		if v.OnDemand == 0 {
			continue
		}
		st, err := c.onDemand(id, v.OnDemand)
		if err != nil {
			return nil, err
		}
		sc, err := readServiceCounters(c.svcCounts, int(id))
		if err != nil {
			return nil, err
		}
		st.Switches = sc.OnDemandSwitches
		svc := spec.Service{Family: k.family, Dst: k.dst, Port: k.port, OnDemand: v.OnDemand, Handoff: v.Handoff != 0}
		out = append(out, ServiceOnDemand{Service: svc, ID: int(id), OnDemandState: st})
	}
	slices.SortFunc(out, func(a, b ServiceOnDemand) int { return a.ID - b.ID })
	return out, nil
}
