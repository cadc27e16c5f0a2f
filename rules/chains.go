package rules

import (
	"fmt"
	"slices"
	"strings"

	"github.com/xsyn-project/xsyn/spec"
)

// liveChain is an xsyn chain present in the kernel.
type liveChain struct {
	ownedChain
	fam   spec.Family
	table string
	name  string
}

func key(fam spec.Family, table, name string) string {
	return fmt.Sprintf("%d/%s/%s", fam, table, name)
}

func where(fam spec.Family, table, chain string) string {
	return fmt.Sprintf("%s %s/%s", fam, table, chain)
}

func (a *Applier) tables(fam spec.Family) (IPTables, error) {
	if ipt := a.ipt[fam]; ipt != nil {
		return ipt, nil
	}
	return nil, fmt.Errorf("no %s tables", fam)
}

// owned lists the per-interface chains xsyn has for iface (every interface if iface is empty),
// staging ones included.
func (a *Applier) owned(iface string) ([]liveChain, error) {
	var out []liveChain
	for _, fam := range families {
		ipt, err := a.tables(fam)
		if err != nil {
			return nil, err
		}
		var seen []string
		for _, k := range chainKinds {
			if slices.Contains(seen, k.table) {
				continue
			}
			seen = append(seen, k.table)
			names, err := ipt.ListChains(k.table)
			if err != nil {
				return nil, fmt.Errorf("list %s %s chains: %w", fam, k.table, err)
			}
			for _, n := range names {
				oc, ok := parseChain(n)
				if ok && oc.kind.table == k.table && (iface == "" || oc.iface == iface) {
					out = append(out, liveChain{ownedChain: oc, fam: fam, table: k.table, name: n})
				}
			}
		}
	}
	return out, nil
}

// dropStaging removes staging chains a killed Apply left behind, along the packet's path
// (subchains after the chains that jump to them).
func (a *Applier) dropStaging(iface string) error {
	mine, err := a.owned(iface)
	if err != nil {
		return err
	}
	slices.SortStableFunc(mine, func(x, y liveChain) int { return kindIndex(x.kind) - kindIndex(y.kind) })
	for _, c := range mine {
		if c.staging {
			if err := a.dropChain(nil, c); err != nil {
				return fmt.Errorf("clean up leftover: %w", err)
			}
		}
	}
	return nil
}

// dropChain removes the jumps to c from its builtin chain, then c itself. With a txn, every step
// can be undone: jumps go back to their positions, the chain gets its rules back.
func (a *Applier) dropChain(t *txn, c liveChain) error {
	ipt := a.ipt[c.fam]
	rules, err := a.chainRules(c)
	if err != nil {
		return err
	}
	var positions []int
	if !c.kind.sub { // a subchain's callers are flushed before it (kindIndex)
		positions, err = jumpPositions(ipt, c.table, c.kind.hook, c.name)
		if err != nil {
			return fmt.Errorf("list %s: %w", where(c.fam, c.table, c.kind.hook), err)
		}
	}
	for i, pos := range positions {
		pos -= i // the jumps before it are gone already
		err := t.do(fmt.Sprintf("delete jump to %s from %s", c.name, where(c.fam, c.table, c.kind.hook)),
			func() error { return ipt.Delete(c.table, c.kind.hook, "-j", c.name) },
			func() error { return ipt.Insert(c.table, c.kind.hook, pos, "-j", c.name) })
		if err != nil {
			return err
		}
	}
	err = t.do("flush chain "+where(c.fam, c.table, c.name),
		func() error { return ipt.ClearChain(c.table, c.name) },
		func() error {
			for _, r := range rules {
				if err := ipt.Append(c.table, c.name, r...); err != nil {
					return err
				}
			}
			return nil
		})
	if err != nil {
		return err
	}
	return t.do("delete chain "+where(c.fam, c.table, c.name),
		func() error { return ipt.DeleteChain(c.table, c.name) },
		func() error { return ipt.NewChain(c.table, c.name) })
}

// jumpPositions returns the 1-based positions in builtin chain from of the plain jumps to chain
// to, as xsyn inserts them.
func jumpPositions(ipt IPTables, table, from, to string) ([]int, error) {
	lines, err := ipt.List(table, from)
	if err != nil {
		return nil, err
	}
	jump := "-A " + from + " -j " + to
	var out []int
	n := 0
	for _, l := range lines {
		if !strings.HasPrefix(l, "-A ") {
			continue
		}
		n++
		if strings.TrimSpace(l) == jump {
			out = append(out, n)
		}
	}
	return out, nil
}

// kindIndex is the place of a chain kind along the packet's path; subchains of negated lists
// come after every kind, so that the chains that jump to them go first.
func kindIndex(k chainKind) int {
	for i, c := range chainKinds {
		if c.tag == k.tag {
			return i
		}
	}
	return len(chainKinds)
}

// afterKind is the 1-based position right after the last plain jump in builtin chain from to
// an xsyn chain (of any interface, staging or not) of the kind tagged tag; 1 if there is none.
func afterKind(ipt IPTables, table, from, tag string) (int, error) {
	lines, err := ipt.List(table, from)
	if err != nil {
		return 0, err
	}
	pos, n := 1, 0
	for _, l := range lines {
		if !strings.HasPrefix(l, "-A ") {
			continue
		}
		n++
		target, ok := strings.CutPrefix(strings.TrimSpace(l), "-A "+from+" -j ")
		if oc, mine := parseChain(target); ok && mine && oc.kind.tag == tag {
			pos = n + 1
		}
	}
	return pos, nil
}

// deleteChain flushes and deletes a chain xsyn made.
func deleteChain(ipt IPTables, table, name string) error {
	if err := ipt.ClearChain(table, name); err != nil {
		return err
	}
	return ipt.DeleteChain(table, name)
}
