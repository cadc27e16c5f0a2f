// Package protect is what `xsyn attach` and `xsyn detach` do to an interface: netfilter SYNPROXY
// rules (package rules) and the XDP fast path in front of them (package loader), installed in that
// order, rolled back together, and read back together for status.
package protect

import (
	"errors"
	"fmt"
	"slices"

	"github.com/xsyn-project/xsyn/internal/host"
	"github.com/xsyn-project/xsyn/internal/hostfw"
	"github.com/xsyn-project/xsyn/internal/repair"
	"github.com/xsyn-project/xsyn/loader"
	"github.com/xsyn-project/xsyn/rules"
	"github.com/xsyn-project/xsyn/spec"
)

// ModeNetfilter asks for netfilter-only protection, without XDP: the one mode of attach's that
// is not the loader's.
const ModeNetfilter loader.Mode = "netfilter"

// ParseMode reads attach's --mode: auto, native or generic (loader.ParseMode), or netfilter. The
// command line parses it once; Apply and ChoosePaths take the result.
func ParseMode(s string) (loader.Mode, error) {
	if m := loader.Mode(s); m == ModeNetfilter {
		return m, nil
	}
	m, err := loader.ParseMode(s)
	if err != nil {
		return "", fmt.Errorf("%w: mode %q: want auto, native, generic or netfilter", loader.ErrModeUnsupported, s)
	}
	return m, nil
}

// ModeNetfilterOnly is how an interface protected without XDP is reported.
const ModeNetfilterOnly = "netfilter-only"

// Rules is what protect needs of the netfilter side (rules.Applier).
type Rules interface {
	Apply(rules.Plan) error
	Remove(iface string) error
	Installed(iface string) (bool, error)
	Check(iface string) (rules.State, error)
	Interfaces() ([]string, error)
	Snapshot(iface string) (rules.Plan, bool, error)
}

// Protector applies and removes protection. Its fields are the side effects, replaceable in tests.
type Protector struct {
	Rules  Rules
	Loader loader.Options
	// MPTCPListeners lists this namespace's MPTCP listeners; default host.MPTCPListeners.
	MPTCPListeners func() ([]host.Listener, error)
	// Sysctl reads a sysctl of this namespace ("net.ipv4.tcp_sack"); default host.Sysctl.
	Sysctl func(key string) (string, error)
	// Firewall reads the host firewall's input rules (CheckFirewall); default hostfw.Read of
	// this namespace.
	Firewall func() (hostfw.Ruleset, error)
	// Together are the interfaces one command applies with this one, judged against each other
	// beforehand (CheckTogether); CheckNeighbours leaves their rules, about to be replaced, alone.
	Together []string
}

// New returns a Protector using the real netfilter and bpffs. Every change of the rules is
// recorded for `xsyn serve` to repair after a firewall reload (repair.Recorder).
func New() (*Protector, error) {
	a, err := rules.NewApplier()
	if err != nil {
		return nil, err
	}
	r, err := repair.NewRecorder(a)
	if err != nil {
		return nil, err
	}
	return &Protector{Rules: r}, nil
}

// Result says what Apply did.
type Result struct {
	Iface        string
	Mode         string // native, generic or netfilter-only
	Holder       loader.Holder
	StateDir     string
	Reconfigured bool     // xsyn was attached already and was updated in place
	Warnings     []string // e.g. generic-mode or netfilter fallback
	// Spec is what was applied: the statements' paths after any fallback (a kernel without the
	// socket handoff, --mode netfilter) moved handoff statements to SYNPROXY.
	Spec spec.Spec
}

// Apply protects iface as s says: netfilter rules for the statements on the SYNPROXY path first
// (so SYNPROXY is ready before XDP sends its first cookie), then XDP (and beside it the TC
// program of the socket handoff), attached or reconfigured in place. mode is auto, native,
// generic or netfilter (ParseMode). Handoff statements move to the SYNPROXY path where the handoff cannot run
// (no XDP, or a kernel before 6.9), and Result.Spec and Result.Warnings say so. With auto, a
// kernel without the XDP features falls back to netfilter-only protection. On failure the
// interface is left as it was.
func (p *Protector) Apply(iface string, s spec.Spec, mode loader.Mode) (*Result, error) {
	s, warnings, err := p.ChoosePaths(iface, s, mode)
	if err != nil {
		return nil, err
	}
	plan, err := rules.Build(iface, s)
	if err != nil {
		return nil, err
	}

	// One writer at a time per namespace, across rules and XDP alike.
	w, err := loader.Lock(p.Loader)
	if err != nil {
		return nil, err
	}
	defer w.Unlock()

	// Refuse what would open a port the host firewall closes, or let another interface's
	// statements decide this one's connections: nothing has changed yet.
	if err := p.CheckFirewall(iface, s); err != nil {
		return nil, err
	}
	if err := p.CheckNeighbours(iface, s); err != nil {
		return nil, err
	}

	// Look before touching anything: a missing interface or someone else's XDP program stops
	// here, with nothing changed.
	cur, err := loader.Open(iface, false, p.Loader)
	switch {
	case err == nil:
		defer cur.Close()
	case errors.Is(err, loader.ErrNotAttached):
		cur = nil
	case errors.Is(err, loader.ErrForeignProgram) && mode == ModeNetfilter:
		cur = nil
	default:
		return nil, err
	}
	// Someone else's rules using xsyn's mark bits: a warning, not a refusal (they may be
	// harmless, and only the user can tell).
	if m, ok := p.Rules.(interface {
		MarkWarning(spec.Settings) (string, error)
	}); ok && !plan.Empty() {
		w, err := m.MarkWarning(s.Settings)
		if err != nil {
			return nil, err
		}
		if w != "" {
			warnings = append(warnings, w)
		}
	}
	// What the interface has now, to put back if the XDP step fails after the rules changed.
	prevRules, hadRules, err := p.Rules.Snapshot(iface)
	if err != nil {
		return nil, err
	}
	if err := p.Rules.Apply(plan); err != nil {
		return nil, err
	}
	undoRules := func(cause error) error {
		var rerr error
		if hadRules {
			rerr = p.Rules.Apply(prevRules)
		} else {
			rerr = p.Rules.Remove(iface)
		}
		if rerr != nil {
			return fmt.Errorf("%w (and restoring the previous rules failed: %v)", cause, rerr)
		}
		return cause
	}
	// Can this kernel run the XDP program at all? Asked after the rules went in: where conntrack
	// is a module, its rules are what load it, and with it the BTF of the conntrack kfuncs the
	// probe looks for. A forced XDP mode fails here (rules restored); auto falls back to
	// netfilter-only protection. A spec without SYNPROXY services in XDP needs no conntrack:
	// the handoff's probe (which implies every XDP feature before 6.9) is the one that counts.
	var missing error
	if mode != ModeNetfilter && cur == nil {
		probe := p.Loader.Probe
		if probe == nil {
			probe = loader.Probe
		}
		if !hasSynproxyServices(s) {
			probe = p.probeHandoff
		}
		missing = probe()
		if missing != nil && (mode != loader.ModeAuto || !errors.Is(missing, loader.ErrFeatureMissing)) {
			return nil, undoRules(missing)
		}
		if missing != nil && s.HasPath(spec.PathHandoff) {
			// Cannot happen with a real kernel (the handoff probe passed); a stand-in probe
			// in tests can say it.
			return nil, undoRules(fmt.Errorf("the socket handoff needs the XDP program: %w", missing))
		}
	}

	res := &Result{Iface: iface, Spec: s, Warnings: warnings}
	switch {
	case mode == ModeNetfilter:
		if cur != nil {
			if err := w.Detach(iface); err != nil {
				return nil, undoRules(err)
			}
		}
		res.Mode = ModeNetfilterOnly
	case cur != nil:
		if err := cur.Reconfigure(s); err != nil {
			return nil, undoRules(err)
		}
		res.Mode, res.Holder, res.StateDir, res.Reconfigured = string(cur.Mode), cur.Holder, cur.Dir, true
	case missing != nil:
		res.Mode = ModeNetfilterOnly
		res.Warnings = append(res.Warnings, fmt.Sprintf("XDP fast path unavailable, protecting with netfilter SYNPROXY only: %v", missing))
	default:
		a, err := w.Attach(iface, s, mode)
		if err != nil {
			return nil, undoRules(err)
		}
		defer a.Close()
		res.Mode, res.Holder, res.StateDir = string(a.Mode), a.Holder, a.Dir
		if a.Warning != "" {
			res.Warnings = append(res.Warnings, a.Warning)
		}
	}
	return res, nil
}

func (p *Protector) probeHandoff() error {
	if p.Loader.ProbeHandoff != nil {
		return p.Loader.ProbeHandoff()
	}
	return loader.ProbeHandoff()
}

// hasSynproxyServices reports whether the XDP program answers SYNs of any SYNPROXY-path service
// (whose ACKs it judges through conntrack).
func hasSynproxyServices(s spec.Spec) bool {
	for _, svc := range s.Services {
		if !svc.Handoff {
			return true
		}
	}
	return false
}

// ErrNotProtected: neither XDP nor rules of xsyn are on the interface.
var ErrNotProtected = errors.New("xsyn does not protect this interface")

// Remove takes every trace of xsyn off iface: program, pins, rules, and (with the last interface)
// the sysctl changes.
func (p *Protector) Remove(iface string) error {
	w, err := loader.Lock(p.Loader)
	if err != nil {
		return err
	}
	defer w.Unlock()
	// Read the rules first: a process that cannot (no CAP_NET_ADMIN, no iptables) stops here,
	// before the program is gone and the rules are not.
	had, err := p.Rules.Installed(iface)
	if err != nil {
		return err
	}
	xdpErr := w.Detach(iface)
	if xdpErr != nil && !errors.Is(xdpErr, loader.ErrNotAttached) && !errors.Is(xdpErr, loader.ErrNoInterface) {
		return xdpErr
	}
	if err := p.Rules.Remove(iface); err != nil {
		return err
	}
	if xdpErr != nil && !had {
		return fmt.Errorf("%w: %s (no XDP program, no rules)", ErrNotProtected, iface)
	}
	return nil
}

// Status is what protects one interface.
type Status struct {
	Iface    string
	Mode     string // native, generic, netfilter-only
	Holder   loader.Holder
	StateDir string
	ProgID   uint32
	Rules    bool // some of xsyn's netfilter rules for the interface are there
	// RulesMissing says what is gone of the rules attach installs (rules.FamilyState.Missing),
	// e.g. after a firewall reload replaced a table; empty when they are complete. With XDP in
	// front, a family whose services the program answers and that has no rules at all is
	// missing too.
	RulesMissing []string
	Services     []spec.Service           // from the XDP maps; empty when netfilter-only
	Counters     *loader.FamilyCounters   // nil when netfilter-only
	OnDemand     []loader.ServiceOnDemand // the switch of each on-demand service
}

// RulesComplete reports whether the interface has all of xsyn's netfilter rules (as far as the
// kernel shows what attach installed: rules.Applier.Check).
func (s Status) RulesComplete() bool { return s.Rules && len(s.RulesMissing) == 0 }

// RulesOK reports whether every netfilter rule attach installs on the interface is there, or
// none is needed: an interface whose services all take the handoff path has no rules at all,
// and that is complete, not a firewall reload that took them. `xsyn status` (its
// netfilter_rules) and the exporter both ask it, so that the two agree.
func (s Status) RulesOK() bool {
	if s.RulesComplete() {
		return true
	}
	if s.Rules || len(s.RulesMissing) > 0 || len(s.Services) == 0 {
		return false
	}
	for _, svc := range s.Services {
		if !svc.Handoff {
			return false
		}
	}
	return true
}

// Statuses reports the given interface, or every protected one when iface is "".
func (p *Protector) Statuses(iface string) ([]Status, error) {
	names := []string{iface}
	if iface == "" {
		xdp, err := loader.List(p.Loader)
		if err != nil {
			return nil, err
		}
		nf, err := p.Rules.Interfaces()
		if err != nil {
			return nil, err
		}
		names = union(xdp, nf)
	}
	var out []Status
	for _, n := range names {
		st, err := p.status(n)
		if err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	return out, nil
}

func (p *Protector) status(iface string) (Status, error) {
	st := Status{Iface: iface}
	nf, err := p.Rules.Check(iface)
	if err != nil {
		return st, err
	}
	st.Rules = nf.Installed()
	a, err := loader.Open(iface, true, p.Loader)
	switch {
	case err == nil:
		defer a.Close()
		st.Mode, st.Holder, st.StateDir, st.ProgID = string(a.Mode), a.Holder, a.Dir, uint32(a.ProgID)
		if st.Services, err = a.Services(); err != nil {
			return st, err
		}
		c, err := a.Counters()
		if err != nil {
			return st, err
		}
		st.Counters = &c
		if st.OnDemand, err = a.OnDemand(); err != nil {
			return st, err
		}
		// Every SYNPROXY-path service comes from a statement of its family, and every such
		// statement has rules: the valid ACKs that XDP passes on need SYNPROXY.
		var fams []spec.Family
		for _, svc := range st.Services {
			if svc.Handoff {
				continue // no rules: the handoff needs none
			}
			if !slices.Contains(fams, svc.Family) {
				fams = append(fams, svc.Family)
			}
		}
		nf = nf.Expect(fams...)
	case errors.Is(err, loader.ErrNotAttached) || errors.Is(err, loader.ErrNoInterface) || errors.Is(err, loader.ErrForeignProgram):
		// Another tool's XDP program does not make our rules less of a protection.
		if !st.Rules {
			if errors.Is(err, loader.ErrForeignProgram) {
				return st, err
			}
			return st, fmt.Errorf("%w: %s", ErrNotProtected, iface)
		}
		st.Mode = ModeNetfilterOnly
	default:
		return st, err
	}
	st.RulesMissing = nf.Missing()
	return st, nil
}

func union(a, b []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range append(append([]string{}, a...), b...) {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}
