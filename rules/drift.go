package rules

import (
	"fmt"
	"slices"

	"github.com/xsyn-project/xsyn/spec"
)

// Drift compares the interface's live rules with want, the rules as they were right after Apply
// (a Snapshot taken then, so that each rule reads as iptables lists it), and says, the way Check
// does, every piece that is no longer as it was: a chain gone with its jump, a jump gone, a
// chain flushed or with other rules, a sysctl set back (sysctl --system), a record of an
// original sysctl value gone from SavedChain.
// Unlike Check it sees a lost FWD chain, or a lost MRK and NAT together: want says they were
// there. Nil when nothing changed. Drift changes nothing; Restore repairs what it finds.
//
// Where the family's iptables has an iptables-save, Drift reads everything with one command per
// family, not one per chain.
func (a *Applier) Drift(want Plan) ([]string, error) {
	if err := checkIface(want.Iface); err != nil {
		return nil, fmt.Errorf("check rules: %w", err)
	}
	v, err := a.saved()
	if err != nil {
		return nil, fmt.Errorf("check rules for %s: %w", want.Iface, err)
	}
	return v.drift(want)
}

func (a *Applier) drift(want Plan) ([]string, error) {
	var out []string
	for _, fp := range want.Families {
		ipt, err := a.tables(fp.Family)
		if err != nil {
			return nil, fmt.Errorf("check rules for %s: %w", want.Iface, err)
		}
		listed := map[string][]string{} // table -> its chains
		for _, c := range fp.Chains {
			oc, ok := parseChain(c.Name)
			if !ok || oc.iface != want.Iface || oc.staging || oc.kind.table != c.Table {
				return nil, fmt.Errorf("check rules for %s: %w: chain %s/%s is not one of the interface's", want.Iface, ErrBadPlan, c.Table, c.Name)
			}
			if _, ok := listed[c.Table]; !ok {
				if listed[c.Table], err = ipt.ListChains(c.Table); err != nil {
					return nil, fmt.Errorf("check rules for %s: list %s %s chains: %w", want.Iface, fp.Family, c.Table, err)
				}
			}
			hook := hookOf(fp.Family, oc.kind)
			if !slices.Contains(listed[c.Table], c.Name) {
				out = append(out, fmt.Sprintf("%s: chain %s and the jump to it are gone", hook, c.Name))
				continue
			}
			problem, err := a.checkChain(liveChain{ownedChain: oc, fam: fp.Family, table: c.Table, name: c.Name})
			if err != nil {
				return nil, fmt.Errorf("check rules for %s: %w", want.Iface, err)
			}
			if problem == "" {
				problem, err = a.changedRules(liveChain{ownedChain: oc, fam: fp.Family, table: c.Table, name: c.Name}, c.Rules)
				if err != nil {
					return nil, fmt.Errorf("check rules for %s: %w", want.Iface, err)
				}
			}
			if problem != "" {
				out = append(out, fmt.Sprintf("%s: %s", hook, problem))
			}
		}
	}
	if len(want.Sysctls) == 0 {
		return out, nil
	}
	for _, s := range want.Sysctls {
		v, err := a.sys.Get(s.Key)
		if err != nil {
			return nil, fmt.Errorf("check rules for %s: read sysctl %s: %w", want.Iface, s.Key, err)
		}
		if v != s.Value {
			out = append(out, fmt.Sprintf("sysctl %s is %s, attach set %s", s.Key, v, s.Value))
		}
	}
	saved, exists, err := a.readSaved()
	if err != nil {
		return nil, fmt.Errorf("check rules for %s: %w", want.Iface, err)
	}
	if !exists {
		return append(out, fmt.Sprintf("%s filter: chain %s, the record of the sysctls' original values, is gone", spec.IPv4, SavedChain)), nil
	}
	for _, s := range want.Sysctls {
		if !slices.ContainsFunc(saved, func(r savedSysctl) bool { return r.key == s.Key }) {
			out = append(out, fmt.Sprintf("%s filter %s: the record of %s's original value is gone", spec.IPv4, SavedChain, s.Key))
		}
	}
	return out, nil
}

// changedRules says how a live chain's rules differ from want's; "" when they do not.
func (a *Applier) changedRules(c liveChain, want []Rule) (string, error) {
	live, err := a.chainRules(c)
	if err != nil {
		return "", err
	}
	same := slices.EqualFunc(live, want, func(l []string, w Rule) bool { return slices.Equal(l, w.Args) })
	switch {
	case same:
		return "", nil
	case len(live) != len(want):
		return fmt.Sprintf("chain %s has %d rules, attach installed %d", c.name, len(live), len(want)), nil
	}
	return fmt.Sprintf("chain %s has other rules than attach installed", c.name), nil
}

// Originals returns the original sysctl values SavedChain records, by key: what Restore puts
// back into it after a firewall reload took the records.
func (a *Applier) Originals() (map[string]string, error) {
	saved, _, err := a.readSaved()
	if err != nil {
		return nil, fmt.Errorf("read saved sysctls: %w", err)
	}
	out := map[string]string{}
	for _, s := range saved {
		out[s.key] = s.value
	}
	return out, nil
}

// Restore applies p again after a firewall reload took some of its rules. The reload may have
// taken SavedChain's records too, while the sysctls kept xsyn's values: first the records of
// originals (Originals, read when p was applied) missing from SavedChain go back, so that the
// last detach still restores the namespace's own values and not xsyn's; then Apply. On failure
// those records are taken out again and Apply's own rollback leaves the rest as it was.
func (a *Applier) Restore(p Plan, originals map[string]string) error {
	if err := checkIface(p.Iface); err != nil {
		return fmt.Errorf("restore rules: %w", err)
	}
	t := &txn{}
	if err := a.restoreRecords(t, p, originals); err != nil {
		if rerr := t.rollback(); rerr != nil {
			return fmt.Errorf("restore rules for %s: %w (rollback incomplete: %w)", p.Iface, err, rerr)
		}
		return fmt.Errorf("restore rules for %s: %w", p.Iface, err)
	}
	if err := a.Apply(p); err != nil {
		if rerr := t.rollback(); rerr != nil {
			return fmt.Errorf("%w (and taking the restored sysctl records out again failed: %w)", err, rerr)
		}
		return err
	}
	return nil
}

// restoreRecords puts back into SavedChain the records of originals that p's sysctls need and
// that it lacks, creating the chain if a reload deleted it.
func (a *Applier) restoreRecords(t *txn, p Plan, originals map[string]string) error {
	var need []string // in the plan's order, as Apply records them
	for _, s := range p.Sysctls {
		if _, ok := originals[s.Key]; ok {
			need = append(need, s.Key)
		}
	}
	if len(need) == 0 {
		return nil
	}
	saved, exists, err := a.readSaved()
	if err != nil {
		return err
	}
	ipt := a.ipt[spec.IPv4]
	for _, key := range need {
		if slices.ContainsFunc(saved, func(r savedSysctl) bool { return r.key == key }) {
			continue
		}
		value := originals[key]
		if err := checkSysctl(key, value); err != nil {
			return fmt.Errorf("restore saved sysctl: %w", err)
		}
		if !exists {
			if err := a.createSaved(t); err != nil {
				return err
			}
			exists = true
		}
		args := savedArgs(key, value)
		err := t.do(fmt.Sprintf("restore the record %s=%s in %s", key, value, SavedChain),
			func() error { return ipt.Append(TableFilter, SavedChain, args...) },
			func() error { return ipt.Delete(TableFilter, SavedChain, args...) })
		if err != nil {
			return err
		}
	}
	return nil
}
