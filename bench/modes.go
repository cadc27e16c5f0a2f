package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/cilium/ebpf"

	"github.com/xsyn-project/xsyn/loader"
	"github.com/xsyn-project/xsyn/rules"
	"github.com/xsyn-project/xsyn/spec"
)

// What the DUT runs.
const (
	modeDrop     = "drop"     // ceiling: XDP_DROP
	modeReflect  = "reflect"  // ceiling: swap and XDP_TX, no cookie
	modeXsyn     = "xsyn"     // xsyn: XDP program + netfilter rules, as deployed
	modeSynproxy = "synproxy" // netfilter SYNPROXY alone, no XDP program on the DUT
)

var allModes = []string{modeDrop, modeReflect, modeXsyn, modeSynproxy}

// deployment is one mode set up on the DUT.
type deployment struct {
	// prog is the XDP program on the DUT veth, nil in netfilter mode.
	prog *ebpf.Program
	// xsyn is set in xsyn mode, for its verdict counters.
	xsyn *loader.Attachment
	// teardown returns the DUT to no XDP program and no rules.
	teardown func() error
}

// deploy sets mode up on the rig's DUT.
func (r *rig) deploy(mode string, s spec.Spec) (*deployment, error) {
	switch mode {
	case modeDrop:
		return r.deployCeiling(r.progs.BenchDrop)
	case modeReflect:
		return r.deployCeiling(r.progs.BenchReflect)
	case modeXsyn:
		return r.deployXsyn(s)
	case modeSynproxy:
		if err := r.applyRules(s); err != nil {
			return nil, err
		}
		return &deployment{teardown: r.removeRules}, nil
	}
	return nil, fmt.Errorf("unknown mode %q (want one of %v)", mode, allModes)
}

func (r *rig) deployCeiling(p *ebpf.Program) (*deployment, error) {
	if err := r.setXDP(r.dut, dutIface, p); err != nil {
		return nil, err
	}
	return &deployment{prog: p, teardown: func() error { return r.setXDP(r.dut, dutIface, nil) }}, nil
}

// deployXsyn attaches xsyn the way it is deployed: rules first, so that SYNPROXY is in place
// for the ACKs, then the XDP program. Its state goes to a temporary directory that is not a
// bpffs, so nothing is pinned: the program lives exactly as long as the interface attachment.
func (r *rig) deployXsyn(s spec.Spec) (_ *deployment, err error) {
	dir, err := os.MkdirTemp("", "xsynbench-")
	if err != nil {
		return nil, err
	}
	opts := loader.Options{Mode: loader.ModeNative, BPFFS: dir, Locks: dir}
	d := &deployment{}
	d.teardown = func() error {
		var errs []error
		if d.xsyn != nil {
			errs = append(errs, r.dut.Do(func() error { return loader.Detach(dutIface, opts) }), d.xsyn.Close())
		}
		if d.prog != nil {
			errs = append(errs, d.prog.Close())
		}
		errs = append(errs, r.removeRules(), os.RemoveAll(dir))
		return errors.Join(errs...)
	}
	defer func() {
		if err != nil {
			d.teardown()
		}
	}()
	if err := r.applyRules(s); err != nil {
		return nil, err
	}
	if err := r.dut.Do(func() (err error) {
		d.xsyn, err = loader.Attach(dutIface, s, opts)
		return err
	}); err != nil {
		return nil, fmt.Errorf("attach xsyn: %w", err)
	}
	if d.prog, err = ebpf.NewProgramFromID(d.xsyn.ProgID); err != nil {
		return nil, fmt.Errorf("open xsyn program %d: %w", d.xsyn.ProgID, err)
	}
	return d, nil
}

// applyRules installs the spec's netfilter rules in the DUT's namespace (iptables runs there).
func (r *rig) applyRules(s spec.Spec) error {
	return r.dut.Do(func() error {
		plan, err := rules.Build(dutIface, s)
		if err != nil {
			return err
		}
		a, err := rules.NewApplier()
		if err != nil {
			return err
		}
		return a.Apply(plan)
	})
}

func (r *rig) removeRules() error {
	return r.dut.Do(func() error {
		a, err := rules.NewApplier()
		if err != nil {
			return err
		}
		return a.Remove(dutIface)
	})
}
