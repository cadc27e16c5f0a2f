package rules

import (
	"errors"
	"fmt"
	"slices"

	"github.com/xsyn-project/xsyn/spec"
)

// What every plan of a family has, whatever its statements (statements.go), so that Check can
// tell a firewall reload that took some of an interface's chains from a spec that never needed
// them: every SYNPROXY statement untracks its SYNs in RAW, untracks SYNPROXY's SYN-ACK in SAK
// and lets it out in OUT, the loopback isolation rule is in IN and the orphan rules are in ORP whatever the
// statements. MRK and NAT come together: every statement but reject marks SYNPROXY's SYN to the
// server and translates it, and reject opens no connection to a server. Whether there is a FWD
// chain depends on the statements alone. A family whose statements all take the handoff path
// (in a plan with SYNPROXY statements in the other family) has HFI and HFO only; so a family
// with any chain of a SYNPROXY kind must have all of alwaysPlanned, and HFI and HFO come
// together. TestBuildKeepsCheckInvariant holds Build to this.
//
// XXX: the plan is not stored in the kernel, so a FWD chain, or MRK and NAT together, or HFI and
// HFO together, gone with their jumps cannot be told from a spec that never had them. A reload
// of one whole table still shows, by the chains every plan has there (filter: IN, OUT and ORP,
// but FWD is not named; raw: RAW) or by the other one of MRK and NAT.
var (
	alwaysPlanned   = []chainKind{kindRaw, kindSynack, kindIn, kindOut, kindOrphan}
	plannedTogether = [][]chainKind{{kindMark, kindNat}, {kindHandoffIn, kindHandoffOut}}
)

// State is what Check found of one interface's rules.
type State struct {
	Iface string
	// Families holds, IPv4 first, every family with a chain of the interface, and the families
	// Expect added.
	Families []FamilyState
}

// FamilyState is the interface's rules in one family.
type FamilyState struct {
	Family spec.Family
	Chains []string // the interface's chains, in the order packets meet them (staging ones last)
	// Missing says, the way an operator reads it, each piece that is not as Apply leaves it: a
	// chain gone with its jump, a jump gone, a chain flushed, a staging chain an interrupted
	// Apply left behind, e.g. "ipv4 filter INPUT: chain XSYN-IN-eth0 and the jump to it are
	// gone". Empty when the family's rules are complete.
	Missing []string
}

// Installed reports whether the interface has any chain in either family (what
// Applier.Installed reports).
func (s State) Installed() bool {
	return slices.ContainsFunc(s.Families, func(f FamilyState) bool { return len(f.Chains) > 0 })
}

// Complete reports whether the interface has rules and nothing of them is missing.
func (s State) Complete() bool { return s.Installed() && len(s.Missing()) == 0 }

// Missing lists what is missing in every family, IPv4 first.
func (s State) Missing() []string {
	var out []string
	for _, f := range s.Families {
		out = append(out, f.Missing...)
	}
	return out
}

// Expect returns s for an interface known to be protected by SYNPROXY in each family of fams,
// e.g. because the XDP program answers SYNs of that family on the SYNPROXY path: a family
// without any chain of the interface is added, with every chain that each SYNPROXY plan has
// reported missing. A family whose services all take the handoff path needs no rules: leave it
// out (ExpectServices does).
func (s State) Expect(fams ...spec.Family) State {
	out := State{Iface: s.Iface}
	for _, fam := range families {
		i := slices.IndexFunc(s.Families, func(f FamilyState) bool { return f.Family == fam })
		switch {
		case i >= 0:
			out.Families = append(out.Families, s.Families[i])
		case slices.Contains(fams, fam):
			fs := FamilyState{Family: fam}
			for _, k := range alwaysPlanned {
				fs.Missing = append(fs.Missing, fmt.Sprintf("%s: chain %s and the jump to it are gone", hookOf(fam, k), k.name(s.Iface)))
			}
			out.Families = append(out.Families, fs)
		}
	}
	return out
}

// ExpectServices is Expect for the families of the services on the SYNPROXY path (Handoff not
// set), e.g. those the XDP program answers: the valid ACKs it passes on need SYNPROXY. Services
// on the handoff path expect nothing; an interface with only those has, rightly, no rules.
func (s State) ExpectServices(svcs []spec.Service) State {
	var fams []spec.Family
	for _, svc := range svcs {
		if !svc.Handoff && !slices.Contains(fams, svc.Family) {
			fams = append(fams, svc.Family)
		}
	}
	return s.Expect(fams...)
}

// Check reads the interface's rules back and reports, per family, its chains and what is
// missing of what Apply installs: a chain that every plan has (or that comes with one that is
// there) gone, a chain its builtin chain no longer jumps to, a chain without rules, a staging
// chain left over. A firewall reload that replaces one table (iptables-restore of a file with
// only *filter) leaves such a state: XSYN-RAW still untracks the clients' SYNs, and their ACKs
// meet no SYNPROXY. Check changes nothing; applying the interface's plan again repairs it all.
// An interface whose plan was empty (Plan.Empty) has no chains: not installed, nothing missing.
func (a *Applier) Check(iface string) (State, error) {
	if err := checkIface(iface); err != nil {
		return State{}, fmt.Errorf("check rules: %w", err)
	}
	live, err := a.owned(iface)
	if err != nil {
		return State{}, fmt.Errorf("check rules for %s: %w", iface, err)
	}
	st := State{Iface: iface}
	for _, fam := range families {
		var mine []liveChain
		for _, c := range live {
			if c.fam == fam {
				mine = append(mine, c)
			}
		}
		if len(mine) == 0 {
			continue
		}
		fs, err := a.checkFamily(iface, fam, mine)
		if err != nil {
			return State{}, fmt.Errorf("check rules for %s: %w", iface, err)
		}
		st.Families = append(st.Families, fs)
	}
	return st, nil
}

// checkFamily checks one family that has chains of the interface.
func (a *Applier) checkFamily(iface string, fam spec.Family, live []liveChain) (FamilyState, error) {
	slices.SortStableFunc(live, func(x, y liveChain) int {
		if x.staging != y.staging {
			if x.staging {
				return 1
			}
			return -1
		}
		return kindIndex(x.kind) - kindIndex(y.kind)
	})
	fs := FamilyState{Family: fam}
	present := map[string]liveChain{} // by kind tag, staging chains left out
	for _, c := range live {
		fs.Chains = append(fs.Chains, c.name)
		if !c.staging {
			present[c.kind.tag] = c
		}
	}
	want := map[string]bool{}
	for _, c := range live {
		if !c.kind.handoff {
			for _, k := range alwaysPlanned {
				want[k.tag] = true
			}
		}
	}
	for _, group := range plannedTogether {
		if slices.ContainsFunc(group, func(k chainKind) bool { _, ok := present[k.tag]; return ok }) {
			for _, k := range group {
				want[k.tag] = true
			}
		}
	}
	for _, k := range chainKinds {
		c, ok := present[k.tag]
		if !ok {
			if want[k.tag] {
				fs.Missing = append(fs.Missing, fmt.Sprintf("%s: chain %s and the jump to it are gone", hookOf(fam, k), k.name(iface)))
			}
			continue
		}
		problem, err := a.checkChain(c)
		if err != nil {
			return FamilyState{}, err
		}
		if problem != "" {
			fs.Missing = append(fs.Missing, fmt.Sprintf("%s: %s", hookOf(fam, k), problem))
		}
	}
	for _, c := range live {
		if c.staging {
			fs.Missing = append(fs.Missing, fmt.Sprintf("%s: chain %s is left over from an interrupted attach", hookOf(fam, c.kind), c.name))
		}
	}
	return fs, nil
}

// checkChain says what is wrong with a chain that exists: no rules, no jump to it from its
// builtin chain, or both; "" if nothing.
func (a *Applier) checkChain(c liveChain) (string, error) {
	rules, err := a.chainRules(c)
	if isNotExist(err) { // removed since it was listed: a concurrent detach, or a reload
		return fmt.Sprintf("chain %s and the jump to it are gone", c.name), nil
	}
	if err != nil {
		return "", err
	}
	jumps, err := jumpPositions(a.ipt[c.fam], c.table, c.kind.hook, c.name)
	if err != nil {
		return "", fmt.Errorf("list %s: %w", where(c.fam, c.table, c.kind.hook), err)
	}
	switch {
	case len(rules) == 0 && len(jumps) == 0:
		return fmt.Sprintf("chain %s is flushed and the jump to it is gone", c.name), nil
	case len(jumps) == 0:
		return fmt.Sprintf("the jump to chain %s is gone", c.name), nil
	case len(rules) == 0:
		return fmt.Sprintf("chain %s is flushed: it has no rules", c.name), nil
	}
	return "", nil
}

// hookOf names where a kind's chain is jumped to, e.g. "ipv4 filter INPUT".
func hookOf(fam spec.Family, k chainKind) string {
	return fmt.Sprintf("%s %s %s", fam, k.table, k.hook)
}

// isNotExist reports whether iptables failed because a chain does not exist (go-iptables'
// *iptables.Error, or anything else that says so the same way).
func isNotExist(err error) bool {
	var e interface{ IsNotExist() bool }
	return errors.As(err, &e) && e.IsNotExist()
}
