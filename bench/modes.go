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
	modeNone     = "none"          // no protection: the kernel's listener with its own syncookies
	modeDrop     = "drop"          // ceiling: XDP_DROP
	modeReflect  = "reflect"       // ceiling: swap and XDP_TX, no cookie
	modeXsyn     = "xsyn"          // xsyn as deployed by default: the socket handoff (SipHash cookie, socket lookup, TC handoff)
	modeXsynNF   = "xsyn-synproxy" // xsyn on the SYNPROXY path: the kernel's cookie helper, conntrack lookup, netfilter rules
	modeGeneric  = "xsyn-generic"  // the default in generic XDP mode (after the stack built an skb)
	modeSynproxy = "synproxy"      // netfilter SYNPROXY alone, no XDP program on the DUT
)

var allModes = []string{modeNone, modeDrop, modeReflect, modeXsyn, modeXsynNF, modeGeneric, modeSynproxy}

// isXsyn says whether mode runs xsyn's program.
func isXsyn(mode string) bool { return mode == modeXsyn || mode == modeXsynNF || mode == modeGeneric }

// deployment is one mode set up on the DUT.
type deployment struct {
	// prog is the XDP program on the DUT veth, nil in netfilter mode.
	prog *ebpf.Program
	// xsyn is set in the xsyn modes, for its verdict counters.
	xsyn *loader.Attachment
	// syncookies is net.ipv4.tcp_syncookies on the DUT, for the record.
	syncookies string
	// teardown returns the DUT to no XDP program and no rules.
	teardown func() error
}

// deploy sets mode up on the rig's DUT.
func (r *rig) deploy(mode string, s spec.Spec) (*deployment, error) {
	switch mode {
	case modeNone:
		return r.deployNone()
	case modeDrop:
		return r.deployCeiling(r.progs.BenchDrop)
	case modeReflect:
		return r.deployCeiling(r.progs.BenchReflect)
	case modeXsyn:
		return r.deployXsyn(s, loader.ModeNative)
	case modeXsynNF:
		nf, err := s.WithoutHandoff("the bench's SYNPROXY-path mode")
		if err != nil {
			return nil, err
		}
		return r.deployXsyn(nf, loader.ModeNative)
	case modeGeneric:
		return r.deployXsyn(s, loader.ModeGeneric)
	case modeSynproxy:
		// The spec's statements take the handoff path, which needs no rules: on its own,
		// netfilter must proxy them, as it does without XDP.
		nf, err := s.WithoutHandoff("the bench's netfilter-only mode")
		if err != nil {
			return nil, err
		}
		if err := r.applyRules(nf); err != nil {
			return nil, err
		}
		return &deployment{teardown: r.removeRules}, nil
	}
	return nil, fmt.Errorf("unknown mode %q (want one of %v)", mode, allModes)
}

// deployNone leaves the DUT as a host without any protection but the kernel's own: its listener
// answers every SYN, with a cookie once the SYN queue is full (net.ipv4.tcp_syncookies=1, the
// kernel's default, set here in case a mode before left it otherwise).
func (r *rig) deployNone() (*deployment, error) {
	d := &deployment{teardown: func() error { return nil }}
	err := r.dut.Do(func() error {
		sys := rules.ProcSys{Root: "/proc/sys"}
		if err := sys.Set("net.ipv4.tcp_syncookies", "1"); err != nil {
			return err
		}
		v, err := sys.Get("net.ipv4.tcp_syncookies")
		d.syncookies = v
		return err
	})
	return d, err
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
func (r *rig) deployXsyn(s spec.Spec, mode loader.Mode) (_ *deployment, err error) {
	dir, err := os.MkdirTemp("", "xsynbench-")
	if err != nil {
		return nil, err
	}
	opts := loader.Options{Mode: mode, BPFFS: dir, Locks: dir}
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
		return nil, fmt.Errorf("attach xsyn (%s): %w", mode, err)
	}
	if d.xsyn.Mode != mode {
		return nil, fmt.Errorf("attach xsyn: attached in %s mode, not %s", d.xsyn.Mode, mode)
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
