package repair

import (
	"fmt"
	"net"

	"github.com/xsyn-project/xsyn/rules"
)

// Recorder is a rules.Applier that keeps the Store in step with what it applies: a plan applied
// is recorded, a plan applied empty or an interface's rules removed are forgotten first. Every
// change of xsyn's rules goes through it (attach, its rollbacks, detach), so the Store holds
// exactly what the last successful change left, and a repair never brings back what a detach
// removed. Callers hold the namespace's writers' lock, as for any change of the rules.
type Recorder struct {
	*rules.Applier
	Store *Store
	// Ifindex is the index of an interface; default net.InterfaceByName's.
	Ifindex func(iface string) (int, error)
}

// NewRecorder returns a Recorder of the system's iptables and the Store of the calling thread's
// network namespace.
func NewRecorder(a *rules.Applier) (*Recorder, error) {
	s, err := NewStore()
	if err != nil {
		return nil, err
	}
	return &Recorder{Applier: a, Store: s}, nil
}

// Apply applies p and records it. If the record cannot be written, the interface's rules are
// put back as they were, so that they are never left without a record of them.
func (r *Recorder) Apply(p rules.Plan) error {
	if p.Empty() {
		old, had, err := r.Store.Load(p.Iface)
		if err != nil {
			return err
		}
		if err := r.Store.Delete(p.Iface); err != nil {
			return err
		}
		if err := r.Applier.Apply(p); err != nil {
			if had {
				if serr := r.Store.Save(p.Iface, old); serr != nil {
					return fmt.Errorf("%w (and restoring the record of the rules failed: %v)", err, serr)
				}
			}
			return err
		}
		return nil
	}
	prev, hadPrev, err := r.Applier.Snapshot(p.Iface)
	if err != nil {
		return err
	}
	if err := r.Applier.Apply(p); err != nil {
		return err
	}
	if err := r.record(p); err != nil {
		var uerr error
		if hadPrev {
			uerr = r.Applier.Apply(prev)
		} else {
			uerr = r.Applier.Remove(p.Iface)
		}
		if uerr != nil {
			return fmt.Errorf("%w (and putting the previous rules back failed: %v)", err, uerr)
		}
		return err
	}
	return nil
}

// record writes the record of p, applied just now.
func (r *Recorder) record(p rules.Plan) error {
	live, _, err := r.Applier.Snapshot(p.Iface)
	if err != nil {
		return fmt.Errorf("record the applied rules of %s: %w", p.Iface, err)
	}
	originals, err := r.Applier.Originals()
	if err != nil {
		return fmt.Errorf("record the applied rules of %s: %w", p.Iface, err)
	}
	// 0 when the interface cannot be found (rules for an interface that comes later): a repair
	// then goes by the name alone.
	idx, _ := r.ifindex(p.Iface)
	return r.Store.Save(p.Iface, Record{Plan: p, Live: live, Originals: originals, Ifindex: idx})
}

func (r *Recorder) ifindex(iface string) (int, error) {
	if r.Ifindex != nil {
		return r.Ifindex(iface)
	}
	return Ifindex(iface)
}

// Ifindex is the index of the interface named iface in this network namespace.
func Ifindex(iface string) (int, error) {
	i, err := net.InterfaceByName(iface)
	if err != nil {
		return 0, err
	}
	return i.Index, nil
}

// Remove forgets the interface's record, then removes its rules: a repair that runs after it
// (or after a Remove that failed half-way and is retried) finds nothing to put back.
func (r *Recorder) Remove(iface string) error {
	if err := r.Store.Delete(iface); err != nil {
		return err
	}
	return r.Applier.Remove(iface)
}

// Repair applies rec again after a firewall reload took some of it (rules.Applier.Restore) and
// records it anew.
func (r *Recorder) Repair(rec Record) error {
	if err := r.Applier.Restore(rec.Plan, rec.Originals); err != nil {
		return err
	}
	return r.record(rec.Plan)
}
