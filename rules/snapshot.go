package rules

import (
	"fmt"
	"slices"

	"github.com/xsyn-project/xsyn/spec"
)

// Snapshot returns the interface's rules as they are installed, as a Plan that Apply can put
// back, and whether there were any. The plan has the sysctls those rules need (as Build plans
// them), since Apply of an empty plan may have restored them in between. Without rules it is an
// empty plan.
func (a *Applier) Snapshot(iface string) (Plan, bool, error) {
	if err := checkIface(iface); err != nil {
		return Plan{}, false, fmt.Errorf("snapshot rules: %w", err)
	}
	a, err := a.saved() // one iptables-save per family, where there is one
	if err != nil {
		return Plan{}, false, fmt.Errorf("snapshot rules for %s: %w", iface, err)
	}
	live, err := a.owned(iface)
	if err != nil {
		return Plan{}, false, fmt.Errorf("snapshot rules for %s: %w", iface, err)
	}
	p := Plan{Iface: iface}
	for _, fam := range families {
		fp := FamilyPlan{Family: fam}
		// Subchains of negated lists first, as Build has them: the chains after jump to them.
		for _, c := range live {
			if c.fam != fam || c.staging || !c.kind.sub {
				continue
			}
			ch, err := a.snapshotChain(c)
			if err != nil {
				return Plan{}, false, fmt.Errorf("snapshot rules for %s: %w", iface, err)
			}
			fp.Chains = append(fp.Chains, ch)
		}
		for _, k := range chainKinds {
			for _, c := range live {
				if c.fam != fam || c.staging || c.kind.tag != k.tag {
					continue
				}
				ch, err := a.snapshotChain(c)
				if err != nil {
					return Plan{}, false, fmt.Errorf("snapshot rules for %s: %w", iface, err)
				}
				fp.Chains = append(fp.Chains, ch)
				fp.Jumps = append(fp.Jumps, Jump{Table: c.table, From: k.hook, To: c.name, Position: 1, After: k.after})
			}
		}
		if len(fp.Chains) > 0 {
			p.Families = append(p.Families, fp)
		}
	}
	if p.Empty() {
		return p, false, nil
	}
	// Handoff chains come only with SYNPROXY statements (Build), so every plan with chains has
	// the namespace's sysctls; IPv4 REDIRECT needs the interface's route_localnet.
	p.Sysctls = append([]SysctlSetting(nil), sysctls...)
	if redirects(p, spec.IPv4) {
		p.Sysctls = append(p.Sysctls, routeLocalnet(iface))
	}
	return p, true, nil
}

// redirects reports whether the plan's nat chain of family f has a REDIRECT rule.
func redirects(p Plan, f spec.Family) bool {
	fp, _ := p.Family(f)
	for _, c := range fp.Chains {
		for _, r := range c.Rules {
			if i := slices.Index(r.Args, "-j"); c.Table == TableNat && i >= 0 && i+1 < len(r.Args) && r.Args[i+1] == "REDIRECT" {
				return true
			}
		}
	}
	return false
}

// chainRules reads back the rule specifications of a live chain.
func (a *Applier) chainRules(c liveChain) ([][]string, error) {
	lines, err := a.ipt[c.fam].List(c.table, c.name)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", where(c.fam, c.table, c.name), err)
	}
	var rules [][]string
	for _, l := range lines {
		args, err := SplitArgs(l)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", where(c.fam, c.table, c.name), err)
		}
		if len(args) >= 2 && args[0] == "-A" && args[1] == c.name {
			rules = append(rules, args[2:])
		}
	}
	return rules, nil
}

// snapshotChain is one live chain as a plan's chain, its rules as they are installed.
func (a *Applier) snapshotChain(c liveChain) (Chain, error) {
	rules, err := a.chainRules(c)
	if err != nil {
		return Chain{}, err
	}
	ch := Chain{Table: c.table, Name: c.name}
	for _, r := range rules {
		ch.Rules = append(ch.Rules, Rule{Origin: "snapshot", Args: r})
	}
	return ch, nil
}
