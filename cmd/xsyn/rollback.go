package main

import (
	"fmt"
	"strings"

	"github.com/xsyn-project/xsyn/internal/protect"
	"github.com/xsyn-project/xsyn/loader"
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
// Apply changes it, whose restore puts it back (protect.Protector); tests inject failures.
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
