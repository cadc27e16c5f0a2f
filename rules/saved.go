package rules

import (
	"fmt"
	"slices"
	"strings"

	"github.com/xsyn-project/xsyn/spec"
)

// savedSysctl is one record of SavedChain: the value a sysctl had before xsyn changed it.
type savedSysctl struct {
	key, value string
}

// readSaved returns the records of SavedChain in order, and whether the chain exists.
func (a *Applier) readSaved() ([]savedSysctl, bool, error) {
	ipt, err := a.tables(spec.IPv4)
	if err != nil {
		return nil, false, err
	}
	chains, err := ipt.ListChains(TableFilter)
	if err != nil {
		return nil, false, fmt.Errorf("list ipv4 filter chains: %w", err)
	}
	if !slices.Contains(chains, SavedChain) {
		return nil, false, nil
	}
	lines, err := ipt.List(TableFilter, SavedChain)
	if err != nil {
		return nil, false, fmt.Errorf("list %s: %w", where(spec.IPv4, TableFilter, SavedChain), err)
	}
	var out []savedSysctl
	for _, l := range lines {
		k, v, ok, err := parseSaved(l)
		if err != nil {
			return nil, false, err
		}
		if ok {
			out = append(out, savedSysctl{k, v})
		}
	}
	return out, true, nil
}

// setSysctls gives the namespace the settings the rules need. Before a sysctl is changed for
// the first time its value is recorded in SavedChain (created if needed); a value already
// recorded is the original one and is kept, however many interfaces come and go.
//
// active says xsyn's chains were in the namespace before this Apply. Without SavedChain that
// means a firewall reload deleted it and left some of them: a current value equal to what
// xsyn sets is then most likely xsyn's own, and the kernel's default is recorded instead, so
// that the last detach does not keep xsyn's setting forever.
func (a *Applier) setSysctls(t *txn, settings []SysctlSetting, active bool) error {
	saved, exists, err := a.readSaved()
	if err != nil {
		return err
	}
	lost := active && !exists
	ipt := a.ipt[spec.IPv4]
	if !exists {
		if err := a.createSaved(t); err != nil {
			return err
		}
	}
	for _, s := range settings {
		if slices.ContainsFunc(saved, func(r savedSysctl) bool { return r.key == s.Key }) {
			continue
		}
		cur, err := a.sys.Get(s.Key)
		if err != nil {
			return fmt.Errorf("read sysctl %s: %w", s.Key, err)
		}
		if lost && cur == s.Value && s.Default != "" {
			cur = s.Default
		}
		if err := checkSysctl(s.Key, cur); err != nil {
			return fmt.Errorf("save sysctl: %w", err)
		}
		args := savedArgs(s.Key, cur)
		err = t.do(fmt.Sprintf("save sysctl %s=%s in %s", s.Key, cur, SavedChain),
			func() error { return ipt.Append(TableFilter, SavedChain, args...) },
			func() error { return ipt.Delete(TableFilter, SavedChain, args...) })
		if err != nil {
			return err
		}
	}
	for _, s := range settings {
		cur, err := a.sys.Get(s.Key)
		if err != nil {
			return fmt.Errorf("read sysctl %s: %w", s.Key, err)
		}
		if cur == s.Value {
			continue
		}
		err = t.do(fmt.Sprintf("set sysctl %s=%s", s.Key, s.Value),
			func() error { return a.sys.Set(s.Key, s.Value) },
			func() error { return a.sys.Set(s.Key, cur) })
		if err != nil {
			return err
		}
	}
	return nil
}

// ifaceSysctl reports whether key is a sysctl of interface iface (net.ipv4.conf.IFACE.*,
// net.ipv6.conf.IFACE.*), which only that interface's rules need.
func ifaceSysctl(key, iface string) bool {
	dev := strings.ReplaceAll(iface, ".", "/")
	return strings.HasPrefix(key, "net.ipv4.conf."+dev+".") || strings.HasPrefix(key, "net.ipv6.conf."+dev+".")
}

// restoreIfaceSysctls puts back the recorded values of the interface's own sysctls that keep
// does not list, and deletes their records: route_localnet=1 lives exactly as long as the
// interface has a redirect that needs it, however long other interfaces stay. The caller runs
// it while the interface's old chains (and their strict loopback drop) are still in place.
// With a txn every step can be undone: the value xsyn had set comes back, and the record goes
// back to its place.
func (a *Applier) restoreIfaceSysctls(t *txn, iface string, keep []SysctlSetting) error {
	saved, exists, err := a.readSaved()
	if err != nil || !exists {
		return err
	}
	ipt := a.ipt[spec.IPv4]
	// From the last record to the first, so that each record's place is its index while the
	// records before it are all there, and undone in the other order, each goes back there.
	for i := len(saved) - 1; i >= 0; i-- {
		r := saved[i]
		if !ifaceSysctl(r.key, iface) || slices.ContainsFunc(keep, func(s SysctlSetting) bool { return s.Key == r.key }) {
			continue
		}
		cur, err := a.sys.Get(r.key)
		if err != nil {
			return fmt.Errorf("read sysctl %s: %w", r.key, err)
		}
		err = t.do(fmt.Sprintf("restore sysctl %s=%s", r.key, r.value),
			func() error { return a.sys.Set(r.key, r.value) },
			func() error { return a.sys.Set(r.key, cur) })
		if err != nil {
			return err
		}
		args, pos := savedArgs(r.key, r.value), i+1
		err = t.do(fmt.Sprintf("delete record of sysctl %s from %s", r.key, SavedChain),
			func() error { return ipt.Delete(TableFilter, SavedChain, args...) },
			func() error { return ipt.Insert(TableFilter, SavedChain, pos, args...) })
		if err != nil {
			return err
		}
	}
	return nil
}

// restoreSysctls puts back every recorded value, then deletes SavedChain. The chain goes last,
// so a failure leaves the records for a retry. With a txn every step can be undone: the values
// xsyn had set, the chain and its records come back.
func (a *Applier) restoreSysctls(t *txn) error {
	saved, exists, err := a.readSaved()
	if err != nil || !exists {
		return err
	}
	for _, r := range saved {
		var undo func() error
		if t != nil {
			cur, err := a.sys.Get(r.key)
			if err != nil {
				return fmt.Errorf("read sysctl %s: %w", r.key, err)
			}
			undo = func() error { return a.sys.Set(r.key, cur) }
		}
		err := t.do(fmt.Sprintf("restore sysctl %s=%s", r.key, r.value),
			func() error { return a.sys.Set(r.key, r.value) }, undo)
		if err != nil {
			return err
		}
	}
	ipt := a.ipt[spec.IPv4]
	err = t.do("flush chain "+where(spec.IPv4, TableFilter, SavedChain),
		func() error { return ipt.ClearChain(TableFilter, SavedChain) },
		func() error {
			for _, r := range saved {
				if err := ipt.Append(TableFilter, SavedChain, savedArgs(r.key, r.value)...); err != nil {
					return err
				}
			}
			return nil
		})
	if err != nil {
		return err
	}
	return t.do("delete chain "+where(spec.IPv4, TableFilter, SavedChain),
		func() error { return ipt.DeleteChain(TableFilter, SavedChain) },
		func() error { return ipt.NewChain(TableFilter, SavedChain) })
}

// Original is the value sysctl key had before xsyn changed it, when xsyn's rules changed it and
// the record is still there (ok false otherwise: the current value is the namespace's own).
func (a *Applier) Original(key string) (value string, ok bool, err error) {
	saved, _, err := a.readSaved()
	if err != nil {
		return "", false, err
	}
	for _, s := range saved {
		if s.key == key {
			return s.value, true, nil
		}
	}
	return "", false, nil
}

// createSaved creates SavedChain, undone by the transaction.
func (a *Applier) createSaved(t *txn) error {
	ipt := a.ipt[spec.IPv4]
	return t.do("create chain "+where(spec.IPv4, TableFilter, SavedChain),
		func() error { return ipt.NewChain(TableFilter, SavedChain) },
		func() error { return deleteChain(ipt, TableFilter, SavedChain) })
}
