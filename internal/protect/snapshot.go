package protect

import (
	"errors"

	"github.com/xsyn-project/xsyn/loader"
	"github.com/xsyn-project/xsyn/rules"
	"github.com/xsyn-project/xsyn/spec"
)

// xdpState is xsyn's program on an interface, as a snapshot keeps it.
type xdpState struct {
	mode     loader.Mode
	services []spec.Service
}

// Snapshot keeps what xsyn has on iface (its rules, and its XDP program with the program's
// services) before Apply changes it to next, and returns what puts it back, as Apply orders its
// steps: SYNPROXY's rules stand before XDP answers SYNs that need them, and stay until it no
// longer does. An attach of several interfaces, all or none, restores those it changed when a
// later one fails. It changes nothing.
func (p *Protector) Snapshot(iface string, next spec.Spec) (func() error, error) {
	prevRules, hadRules, err := p.Rules.Snapshot(iface)
	if err != nil {
		return nil, err
	}
	var prev *xdpState
	a, err := loader.Open(iface, true, p.Loader)
	switch {
	case err == nil:
		svcs, err := a.Services()
		prev = &xdpState{mode: a.Mode, services: svcs}
		if prev.mode != loader.ModeNative && prev.mode != loader.ModeGeneric {
			prev.mode = loader.ModeAuto // put back, if need be, as attach would attach it
		}
		a.Close()
		if err != nil {
			return nil, err
		}
	case errors.Is(err, loader.ErrNotAttached) || errors.Is(err, loader.ErrNoInterface) || errors.Is(err, loader.ErrForeignProgram):
		// Nothing of xsyn's: Apply fails on another program, or leaves it alone (netfilter mode).
	default:
		return nil, err
	}
	// Validate refuses a spec of neither services nor statements, and a program may have no
	// services (every statement on SYNPROXY alone): next's statements, which the maps ignore,
	// make the program's services a spec it accepts.
	// XXX: the cookie secret is not put back: the loader cannot read it out. A cookie-secret-file
	// that changed it stays in effect, the previous key accepted for the handshakes in flight.
	restore := func() error {
		if prev == nil {
			return p.restore(iface, prevRules, hadRules, spec.Spec{}, "")
		}
		return p.restore(iface, prevRules, hadRules, spec.Spec{Settings: next.Settings, Statements: next.Statements, Services: prev.services}, prev.mode)
	}
	return restore, nil
}

// restore puts the rules of iface back as they were (prevRules, or none), and its XDP program
// (xdp's services attached in mode; none when xdp has no services and mode is "").
func (p *Protector) restore(iface string, prevRules rules.Plan, hadRules bool, xdp spec.Spec, mode loader.Mode) error {
	w, err := loader.Lock(p.Loader)
	if err != nil {
		return err
	}
	defer w.Unlock()
	if hadRules {
		if err := p.Rules.Apply(prevRules); err != nil {
			return err
		}
	}
	if err := restoreXDP(w, iface, xdp, mode, p.Loader); err != nil {
		return err
	}
	if !hadRules {
		return p.Rules.Remove(iface)
	}
	return nil
}

// restoreXDP gives iface xsyn's program configured as xdp says, attached in mode, or none when
// mode is "". Another tool's program is left alone.
func restoreXDP(w *loader.NetnsLock, iface string, xdp spec.Spec, mode loader.Mode, opts loader.Options) error {
	cur, err := loader.Open(iface, false, opts)
	switch {
	case err == nil:
		defer cur.Close()
	case errors.Is(err, loader.ErrNotAttached) || errors.Is(err, loader.ErrNoInterface) || errors.Is(err, loader.ErrForeignProgram):
		cur = nil
	default:
		return err
	}
	switch {
	case mode == "" && cur != nil:
		return w.Detach(iface)
	case cur != nil:
		return cur.Reconfigure(xdp)
	case mode != "":
		// Apply detached it (netfilter mode): a program of this binary, with the services back.
		a, err := w.Attach(iface, xdp, mode)
		if err != nil {
			return err
		}
		return a.Close()
	}
	return nil
}
