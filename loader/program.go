package loader

import (
	"errors"
	"fmt"
	"reflect"

	"github.com/cilium/ebpf"

	"github.com/xsyn-project/xsyn/spec"
)

// Counters are the per-verdict counters of the XDP program, one field per verdict and reason
// (generated from struct counters in bpf/counters.h).
type Counters = xsynCounters

// ServiceCounters are the counters kept per protected service.
type ServiceCounters = xsynServiceCounters

// FamilyCounters are the counters of one attachment, summed over CPUs, by family.
type FamilyCounters struct {
	IPv4, IPv6 Counters
	Other      Counters // traffic that is not IP
}

// Total adds the families up.
func (f FamilyCounters) Total() Counters {
	return addCounters(addCounters(f.IPv4, f.IPv6), f.Other)
}

// Program is the XDP program with its maps, and on kernels with the socket handoff the TC program
// beside it, loaded into the kernel but not attached. Tests and benchmarks run them with
// BPF_PROG_RUN; Attach puts them on an interface.
type Program struct {
	objs    xsynObjects
	handoff bool // the TC program is loaded and the XDP program has the handoff path
}

// LoadProgram loads the programs and configures them for s. The handoff path is built in when
// the kernel has it (ProbeHandoff); a spec with handoff services on a kernel without it fails.
func LoadProgram(s spec.Spec) (*Program, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	p, err := loadProgram(nil, ProbeHandoff() == nil)
	if err != nil {
		return nil, err
	}
	if err := p.configMaps().apply(s); err != nil {
		p.Close()
		return nil, fmt.Errorf("configure program: %w", err)
	}
	return p, nil
}

// loadProgram loads the collection, reusing the given maps (for upgrades) when not nil. With
// handoff, the XDP program takes the handoff path for services that ask for it and the TC
// program is loaded too; without, the verifier never sees the code of a path older kernels lack.
func loadProgram(replace map[string]*ebpf.Map, handoff bool) (*Program, error) {
	cs, err := loadXsyn()
	if err != nil {
		return nil, fmt.Errorf("load embedded program: %w", err)
	}
	if err := cs.Variables["have_handoff"].Set(b2u(handoff)); err != nil {
		return nil, fmt.Errorf("configure embedded program: %w", err)
	}
	p := &Program{handoff: handoff}
	opts := &ebpf.CollectionOptions{MapReplacements: replace}
	if handoff {
		err = cs.LoadAndAssign(&p.objs, opts)
	} else {
		var xdpOnly struct {
			Xsyn *ebpf.Program `ebpf:"xsyn"`
			xsynMaps
		}
		err = cs.LoadAndAssign(&xdpOnly, opts)
		p.objs.Xsyn, p.objs.xsynMaps = xdpOnly.Xsyn, xdpOnly.xsynMaps
	}
	if err != nil {
		return nil, fmt.Errorf("load XDP program into the kernel: %w", explainLoadError(err))
	}
	return p, nil
}

// explainLoadError keeps the verifier's last lines, which say what it refused.
func explainLoadError(err error) error {
	var ve *ebpf.VerifierError
	if errors.As(err, &ve) {
		return fmt.Errorf("%w (verifier: %+v)", err, ve)
	}
	return err
}

// Close releases the program and maps (an attachment holds its own references).
func (p *Program) Close() error { return p.objs.Close() }

// XDP returns the program, e.g. to Run it.
func (p *Program) XDP() *ebpf.Program { return p.objs.Xsyn }

// Handoff returns the TC program of the socket handoff, nil where the kernel lacks it.
func (p *Program) Handoff() *ebpf.Program { return p.objs.XsynHandoff }

// Reconfigure replaces the protected services with those of s, in place.
func (p *Program) Reconfigure(s spec.Spec) error { return p.configMaps().apply(s) }

// Counters reads the verdict counters, summed over CPUs.
func (p *Program) Counters() (FamilyCounters, error) {
	return readCounters(p.objs.XsynCounters)
}

// ServiceCounters reads the counters of service id. A fresh program numbers services in spec
// order; reconfigurations keep the ids of services that stay.
func (p *Program) ServiceCounters(id int) (ServiceCounters, error) {
	return readServiceCounters(p.objs.XsynSvcCounts, id)
}

func (p *Program) configMaps() configMaps {
	return configMaps{ports: p.objs.XsynPorts, svcs: p.objs.XsynSvcs, services4: p.objs.XsynServices4,
		services6: p.objs.XsynServices6, svcCounts: p.objs.XsynSvcCounts, secret: p.objs.XsynSecret,
		iface: p.objs.XsynIface, odRate: p.objs.XsynOdRate, odState: p.objs.XsynOdState}
}

func readCounters(m *ebpf.Map) (FamilyCounters, error) {
	var fc FamilyCounters
	slots := map[xsynFamily]*Counters{ // enum family in bpf/counters.h
		xsynFamilyFAMILY_OTHER: &fc.Other,
		xsynFamilyFAMILY_IPV4:  &fc.IPv4,
		xsynFamilyFAMILY_IPV6:  &fc.IPv6,
	}
	for slot, dst := range slots {
		var perCPU []Counters
		if err := m.Lookup(slot, &perCPU); err != nil {
			return FamilyCounters{}, fmt.Errorf("read counters: %w", err)
		}
		for _, c := range perCPU {
			*dst = addCounters(*dst, c)
		}
	}
	return fc, nil
}

func readServiceCounters(m *ebpf.Map, id int) (ServiceCounters, error) {
	var perCPU []ServiceCounters
	if err := m.Lookup(uint32(id), &perCPU); err != nil {
		return ServiceCounters{}, fmt.Errorf("read counters of service %d: %w", id, err)
	}
	var sum ServiceCounters
	for _, c := range perCPU {
		sum = addCounters(sum, c)
	}
	return sum, nil
}

// addCounters adds two counter structs field by field; every exported field is a uint64.
func addCounters[T any](a, b T) T {
	va, vb := reflect.ValueOf(&a).Elem(), reflect.ValueOf(b)
	for i := range va.NumField() {
		if f := va.Field(i); f.CanSet() && f.Kind() == reflect.Uint64 {
			f.SetUint(f.Uint() + vb.Field(i).Uint())
		}
	}
	return a
}
