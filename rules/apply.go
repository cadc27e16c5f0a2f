package rules

import (
	"fmt"
	"slices"

	"github.com/coreos/go-iptables/iptables"

	"github.com/xsyn-project/xsyn/spec"
)

// IPTables is the part of go-iptables' *iptables.IPTables that an Applier uses, for one family.
type IPTables interface {
	ListChains(table string) ([]string, error)
	List(table, chain string) ([]string, error)
	NewChain(table, chain string) error
	ClearChain(table, chain string) error
	DeleteChain(table, chain string) error
	RenameChain(table, oldChain, newChain string) error
	Append(table, chain string, rulespec ...string) error
	Insert(table, chain string, pos int, rulespec ...string) error
	Delete(table, chain string, rulespec ...string) error
}

// Applier installs and removes plans in the network namespace its IPTables and Sysctl act on.
type Applier struct {
	ipt map[spec.Family]IPTables
	sys Sysctl
	nft NFTRuleset // nil: MarkUsers reads iptables only
}

// NewApplier returns an Applier using the system's iptables and ip6tables (whichever backend
// they are), nft (for MarkUsers) and /proc/sys, in the caller's network namespace.
func NewApplier() (*Applier, error) {
	v4, err := iptables.NewWithProtocol(iptables.ProtocolIPv4)
	if err != nil {
		return nil, fmt.Errorf("find iptables: %w", err)
	}
	v6, err := iptables.NewWithProtocol(iptables.ProtocolIPv6)
	if err != nil {
		return nil, fmt.Errorf("find ip6tables: %w", err)
	}
	a := NewApplierWith(savingTables{v4, "iptables-save"}, savingTables{v6, "ip6tables-save"}, ProcSys{Root: "/proc/sys"})
	a.nft = SystemNFT
	return a, nil
}

// NewApplierWith returns an Applier acting through the given IPv4 and IPv6 tables and sysctls.
func NewApplierWith(v4, v6 IPTables, sys Sysctl) *Applier {
	return &Applier{ipt: map[spec.Family]IPTables{spec.IPv4: v4, spec.IPv6: v6}, sys: sys}
}

var families = []spec.Family{spec.IPv4, spec.IPv6}

// Apply installs p. It is idempotent, and replaces whatever the interface had before without
// a moment in which a protected port is left without rules: new chains are built complete
// (under a staging name when the interface already has the chain), jumped to before the old
// chains, and only then are the old chains removed and the new ones renamed. On failure
// everything done is undone, leaving the previous rules, jumps and sysctls as they were.
//
// The interface's own sysctls that p no longer needs (route_localnet without a redirect) are
// restored, whatever other interfaces do; the namespace's wait for the last interface.
//
// An empty plan (Plan.Empty: every statement takes the handoff path) removes the interface's
// chains and, when no other interface has any, restores the saved sysctls, as Remove does; but
// a failure undoes that too.
//
// Leftover staging chains of the interface (from a process killed in the middle of Apply) are
// removed first; that cleanup is not undone.
func (a *Applier) Apply(p Plan) error {
	if err := p.check(); err != nil {
		return fmt.Errorf("apply rules for %s: %w", p.Iface, err)
	}
	if err := a.checkRequires(p.Requires); err != nil {
		return fmt.Errorf("apply rules for %s: %w", p.Iface, err)
	}
	if err := a.dropStaging(p.Iface); err != nil {
		return fmt.Errorf("apply rules for %s: %w", p.Iface, err)
	}
	t := &txn{}
	do := a.apply
	if p.Empty() {
		do = func(t *txn, p Plan) error { return a.remove(t, p.Iface) }
	}
	if err := do(t, p); err != nil {
		if rerr := t.rollback(); rerr != nil {
			return fmt.Errorf("apply rules for %s: %w (rollback incomplete: %w)", p.Iface, err, rerr)
		}
		return fmt.Errorf("apply rules for %s: %w", p.Iface, err)
	}
	return nil
}

// Remove deletes the interface's jumps and chains in both families; missing ones are fine. It
// restores the interface's own sysctls (route_localnet) first, while its strict loopback drop
// is still there. When no xsyn interface is left in the namespace it restores the saved
// sysctls and deletes SavedChain. A failed Remove can be retried.
func (a *Applier) Remove(iface string) error {
	if err := checkIface(iface); err != nil {
		return fmt.Errorf("remove rules: %w", err)
	}
	if err := a.remove(nil, iface); err != nil {
		return fmt.Errorf("remove rules for %s: %w", iface, err)
	}
	return nil
}

// remove takes the interface's chains away along the packet's path, then, if no interface has
// chains any more, puts the saved sysctls back. With a txn every step can be undone.
func (a *Applier) remove(t *txn, iface string) error {
	mine, err := a.owned(iface)
	if err != nil {
		return err
	}
	// The interface's own sysctls first, while its strict loopback drop is still there.
	if err := a.restoreIfaceSysctls(t, iface, nil); err != nil {
		return err
	}
	slices.SortStableFunc(mine, func(x, y liveChain) int { return kindIndex(x.kind) - kindIndex(y.kind) })
	for _, c := range mine {
		if err := a.dropChain(t, c); err != nil {
			return err
		}
	}
	left, err := a.owned("")
	if err != nil {
		return err
	}
	if len(left) == 0 {
		return a.restoreSysctls(t)
	}
	return nil
}

// Installed reports whether the interface has xsyn chains in either family; Check says whether
// they are all there.
func (a *Applier) Installed(iface string) (bool, error) {
	if err := checkIface(iface); err != nil {
		return false, fmt.Errorf("look up rules: %w", err)
	}
	mine, err := a.owned(iface)
	if err != nil {
		return false, fmt.Errorf("look up rules for %s: %w", iface, err)
	}
	return len(mine) > 0, nil
}

// Interfaces lists, sorted, the interfaces that have xsyn chains in either family.
func (a *Applier) Interfaces() ([]string, error) {
	all, err := a.owned("")
	if err != nil {
		return nil, fmt.Errorf("list interfaces with rules: %w", err)
	}
	var ifaces []string
	for _, c := range all {
		ifaces = append(ifaces, c.iface)
	}
	slices.Sort(ifaces)
	return slices.Compact(ifaces), nil
}

// checkRequires fails, naming the statement and the remedy, on the first requirement the
// namespace does not meet.
func (a *Applier) checkRequires(reqs []Requirement) error {
	for _, r := range reqs {
		if r.Chain != "" {
			ipt, err := a.tables(r.Family)
			if err != nil {
				return err
			}
			chains, err := ipt.ListChains(TableFilter)
			if err != nil {
				return fmt.Errorf("list %s filter chains: %w", r.Family, err)
			}
			if !slices.Contains(chains, r.Chain) {
				return fmt.Errorf("%w: %q: chain %s does not exist in the %s filter table; create it first (%s -N %s)",
					ErrPrecondition, r.Origin, r.Chain, r.Family, iptablesCmd(r.Family), r.Chain)
			}
			continue
		}
		v, err := a.sys.Get(r.Sysctl)
		if err != nil {
			return fmt.Errorf("read sysctl %s: %w", r.Sysctl, err)
		}
		if v != r.Value {
			return fmt.Errorf("%w: %q: %s is %s, it must be %s: %s (sysctl -w %s=%s)",
				ErrPrecondition, r.Origin, r.Sysctl, v, r.Value, r.Why, r.Sysctl, r.Value)
		}
	}
	return nil
}

func iptablesCmd(f spec.Family) string {
	if f == spec.IPv6 {
		return "ip6tables"
	}
	return "iptables"
}

func (a *Applier) apply(t *txn, p Plan) error {
	old, err := a.owned(p.Iface) // no staging chains: dropStaging ran
	if err != nil {
		return err
	}
	all, err := a.owned("")
	if err != nil {
		return err
	}
	isOld := map[string]bool{}
	for _, c := range old {
		isOld[key(c.fam, c.table, c.name)] = true
	}
	var renames []liveChain
	for _, fp := range p.Families {
		if _, err := a.tables(fp.Family); err != nil {
			return err
		}
		built := map[string]string{} // planned name -> name it is built under
		for _, c := range fp.Chains {
			name := c.Name
			if isOld[key(fp.Family, c.Table, c.Name)] {
				oc, _ := parseChain(c.Name)
				name = oc.kind.stagingName(p.Iface)
				renames = append(renames, liveChain{fam: fp.Family, table: c.Table, name: name, ownedChain: oc})
			}
			built[c.Name] = name
			// A subchain of negated lists is built before the chains that jump to it (Build
			// and Snapshot put it first), and they jump to the name it was built under.
			if err := a.buildChain(t, fp.Family, c.Table, name, retarget(c.Rules, built)); err != nil {
				return err
			}
		}
		// Jumps go in against the packet's path (OUTPUT actions first, the raw NOTRACK last), so
		// that a connection a new statement lets in never meets a chain that does not know it
		// yet: no moment in which SYNPROXY proxies a SYN that the orphan rule then drops.
		for i := len(fp.Jumps) - 1; i >= 0; i-- {
			j := fp.Jumps[i]
			if err := a.insertJump(t, fp.Family, j, built[j.To]); err != nil {
				return err
			}
		}
	}
	if err := a.setSysctls(t, p.Sysctls, len(all) > 0); err != nil {
		return err
	}
	// The interface's own sysctls the new plan no longer needs (route_localnet without a
	// redirect) go back before the old chains do, so that while route_localnet is 1 the old
	// chains' strict loopback drop is still there.
	if err := a.restoreIfaceSysctls(t, p.Iface, p.Sysctls); err != nil {
		return err
	}
	// Old chains go along the packet's path: raw first, so no SYN is untracked for a statement
	// that the chains after it no longer handle.
	slices.SortStableFunc(old, func(x, y liveChain) int { return kindIndex(x.kind) - kindIndex(y.kind) })
	for _, c := range old {
		if err := a.dropChain(t, c); err != nil {
			return err
		}
	}
	for _, r := range renames {
		ipt := a.ipt[r.fam]
		canonical := r.kind.name(r.iface)
		err := t.do(fmt.Sprintf("rename chain %s to %s", where(r.fam, r.table, r.name), canonical),
			func() error { return ipt.RenameChain(r.table, r.name, canonical) },
			func() error { return ipt.RenameChain(r.table, canonical, r.name) })
		if err != nil {
			return err
		}
	}
	return nil
}

// retarget returns rules with every jump to a chain of built (by its planned name) sent to the
// name that chain is built under.
func retarget(rules []Rule, built map[string]string) []Rule {
	out := rules
	for i, r := range rules {
		j := slices.Index(r.Args, "-j")
		if j < 0 || j+1 >= len(r.Args) || built[r.Args[j+1]] == "" || built[r.Args[j+1]] == r.Args[j+1] {
			continue
		}
		if &out[0] == &rules[0] {
			out = slices.Clone(rules)
		}
		out[i].Args = slices.Clone(r.Args)
		out[i].Args[j+1] = built[r.Args[j+1]]
	}
	return out
}

func (a *Applier) buildChain(t *txn, fam spec.Family, table, name string, rules []Rule) error {
	ipt := a.ipt[fam]
	err := t.do("create chain "+where(fam, table, name),
		func() error { return ipt.NewChain(table, name) },
		func() error { return deleteChain(ipt, table, name) })
	if err != nil {
		return err
	}
	for _, r := range rules {
		// The chain's undo flushes these rules.
		err := t.do(fmt.Sprintf("append to %s rule %q", where(fam, table, name), joinArgs(r.Args)),
			func() error { return ipt.Append(table, name, r.Args...) }, nil)
		if err != nil {
			return err
		}
	}
	return nil
}

// insertJump jumps from j.From to chain to (j.To or its staging name). If the interface already
// has a jump to j.To, the new one goes right before it, so that packets meet the new rules
// first and the old ones keep serving until they are removed; otherwise at j.Position, or with
// j.After right after the last jump to a chain of that kind.
func (a *Applier) insertJump(t *txn, fam spec.Family, j Jump, to string) error {
	ipt := a.ipt[fam]
	pos := j.Position
	var err error
	if j.After != "" {
		if pos, err = afterKind(ipt, j.Table, j.From, j.After); err != nil {
			return fmt.Errorf("list %s: %w", where(fam, j.Table, j.From), err)
		}
	}
	if to != j.To {
		old, err := jumpPositions(ipt, j.Table, j.From, j.To)
		if err != nil {
			return fmt.Errorf("list %s: %w", where(fam, j.Table, j.From), err)
		}
		if len(old) > 0 {
			pos = old[0]
		}
	}
	args := []string{"-j", to}
	return t.do(fmt.Sprintf("insert jump to %s at %s position %d", to, where(fam, j.Table, j.From), pos),
		func() error { return ipt.Insert(j.Table, j.From, pos, args...) },
		func() error { return ipt.Delete(j.Table, j.From, args...) })
}
