package metrics

import (
	"errors"
	"fmt"
	"slices"

	"github.com/xsyn-project/xsyn/internal/protect"
	"github.com/xsyn-project/xsyn/loader"
)

// Source tells the collector what xsyn protects in the network namespace it runs in.
type Source interface {
	// Interfaces lists the protected interfaces. On error it still returns those it found.
	Interfaces() ([]string, error)
	// Status reads one interface: mode, services and counters (read-only).
	Status(iface string) (protect.Status, error)
}

// ProtectorSource reads what `xsyn status` reads, through p: interfaces carrying xsyn's XDP
// program (loader.List) and interfaces with xsyn's netfilter rules, which is how an interface
// protected in netfilter-only mode (the fallback) is found at all. The exporter and status
// therefore always agree on what is protected and how.
func ProtectorSource(p *protect.Protector) Source { return protectorSource{p} }

type protectorSource struct{ p *protect.Protector }

func (s protectorSource) Interfaces() ([]string, error) {
	xdp, xerr := loader.List(s.p.Loader)
	nf, nerr := s.p.Rules.Interfaces()
	all := slices.Concat(xdp, nf)
	slices.Sort(all)
	return slices.Compact(all), errors.Join(xerr, nerr)
}

func (s protectorSource) Status(iface string) (protect.Status, error) {
	sts, err := s.p.Statuses(iface)
	if err != nil {
		return protect.Status{}, err
	}
	if len(sts) != 1 {
		return protect.Status{}, fmt.Errorf("read status of %s: got %d results", iface, len(sts))
	}
	return sts[0], nil
}
