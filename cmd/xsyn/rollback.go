package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/xsyn-project/xsyn/internal/protect"
	"github.com/xsyn-project/xsyn/loader"
	"github.com/xsyn-project/xsyn/rules"
	"github.com/xsyn-project/xsyn/spec"
)

// A configuration can cover several interfaces, and attach protects all of them or none: each
// interface is snapshotted before it is changed, and when one fails the ones changed before it
// are put back, last first.

// attachStep is what attach applies to one interface, prepared before any interface changes.
type attachStep struct {
	iface    string
	spec     spec.Spec
	notes    map[int][]string // per statement, for the listing
	warnings []string         // the paths' (ChoosePaths)
}

// changer is what attachAll needs of protect: Apply, and a snapshot of an interface taken before
// Apply changes it, whose restore puts it back. protector is the real one; tests inject failures.
type changer interface {
	Apply(iface string, s spec.Spec, mode loader.Mode) (*protect.Result, error)
	Snapshot(iface string, next spec.Spec) (restore func() error, err error)
}

// attachAll applies each step in order. When one fails, the interfaces already changed are put
// back, last first, and the error says so; the failed one protect.Apply leaves as it was.
func attachAll(c changer, steps []attachStep, mode loader.Mode) ([]*protect.Result, error) {
	var results []*protect.Result
	var restores []func() error
	for i, st := range steps {
		restore, err := c.Snapshot(st.iface, st.spec)
		if err == nil {
			var res *protect.Result
			if res, err = c.Apply(st.iface, st.spec, mode); err == nil {
				results, restores = append(results, res), append(restores, restore)
				continue
			}
			err = attachHint(err, st.iface, mode)
		}
		return nil, rollBack(err, st.iface, steps[:i], restores)
	}
	return results, nil
}

// rollBack puts back the interfaces of done (restores[i] is done[i]'s), last first, after failed
// failed with err, and returns err with what became of them.
func rollBack(err error, failed string, done []attachStep, restores []func() error) error {
	if len(done) == 0 {
		return err
	}
	var back, stuck []string
	for i := len(done) - 1; i >= 0; i-- {
		if rerr := restores[i](); rerr != nil {
			stuck = append(stuck, fmt.Sprintf("%s: %v", done[i].iface, rerr))
		} else {
			back = append(back, done[i].iface)
		}
	}
	ifaces := make([]string, len(done))
	for i, st := range done {
		ifaces[i] = st.iface
	}
	if len(stuck) == 0 {
		return fmt.Errorf("%w\nnothing was changed: %s failed, and %s, changed before it, %s put back as %s",
			err, failed, strings.Join(ifaces, ", "), plural(len(ifaces), "was", "were"), plural(len(ifaces), "it was", "they were"))
	}
	return fmt.Errorf("%w\n%s failed, and putting back the interfaces changed before it failed too: %s; "+
		"'xsyn status' shows what each has, 'xsyn detach IFACE' removes xsyn from one", err, failed, strings.Join(stuck, "; "))
}

func plural(n int, one, more string) string {
	if n == 1 {
		return one
	}
	return more
}

// protector is attach's changer: protect's Apply, and snapshots of what xsyn has on an interface
// (its rules, and its XDP program with the program's services) that put them back as Apply
// orders its steps: SYNPROXY's rules stand before XDP answers SYNs that need them, and stay until
// it no longer does.
type protector struct{ *protect.Protector }

// xdpState is xsyn's program on an interface, as a snapshot keeps it.
type xdpState struct {
	mode     loader.Mode
	services []spec.Service
}

func (p protector) Snapshot(iface string, next spec.Spec) (func() error, error) {
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
func (p protector) restore(iface string, prevRules rules.Plan, hadRules bool, xdp spec.Spec, mode loader.Mode) error {
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
