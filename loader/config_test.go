package loader

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/xsyn-project/xsyn/spec"
)

func TestAssignIDsKeepsIDs(t *testing.T) {
	svc := func(port uint16) spec.Service {
		return spec.Service{Family: spec.IPv4, Dst: netip.MustParsePrefix("0.0.0.0/0"), Port: port}
	}
	cur := map[serviceKey]uint32{keyOf(svc(80)): 0, keyOf(svc(443)): 1, keyOf(svc(22)): 2}
	// 80 goes, 443 and 22 stay (in another order), 8080 and 8443 are new.
	ids, fresh := assignIDs([]spec.Service{svc(8080), svc(22), svc(443), svc(8443)}, cur)
	if want := []uint32{3, 2, 1, 4}; !slices.Equal(ids, want) {
		t.Errorf("ids = %v, want %v: kept services keep theirs, new ones take ids nobody holds", ids, want)
	}
	if want := []bool{true, false, false, true}; !slices.Equal(fresh, want) {
		t.Errorf("fresh = %v, want %v", fresh, want)
	}
}

// A reconfiguration keeps the counters of services that stay and starts new ones from zero, even
// when a new service reuses the id of a removed one.
func TestReconfigureKeepsServiceIdentity(t *testing.T) {
	requireRoot(t)
	build := func(ports ...uint16) spec.Spec {
		s, err := spec.Simple{Ports: ports, Dst: "192.0.2.2", WScale: -1}.Build()
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	p, err := LoadProgram(build(80, 443))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	// Give both services counts: write them as the program would.
	for id := range uint32(2) {
		c := make([]ServiceCounters, len(mustCounters(t, p, id)))
		c[0].SynackSent = uint64(10 + id)
		if err := p.objs.XsynSvcCounts.Put(id, c); err != nil {
			t.Fatal(err)
		}
	}
	// 80 goes, 22 comes: 22 must not take 80's id in the same update (the stale LPM entry of 80
	// still points at it until the end of the update).
	if err := p.Reconfigure(build(443, 22)); err != nil {
		t.Fatal(err)
	}
	if got := ports(t, p); !slices.Equal(got, []uint16{443, 22}) {
		t.Fatalf("services by id: %v; want 443 still id 1, 22 at the new id 2", got)
	}
	if c, _ := p.ServiceCounters(1); c.SynackSent != 11 {
		t.Errorf("port 443 (kept) counters = %+v, want its 11 SYN-ACKs", c)
	}
	// One update later, id 0 is free again: a new service reuses it and starts from zero.
	if err := p.Reconfigure(build(443, 22, 25)); err != nil {
		t.Fatal(err)
	}
	if got := ports(t, p); !slices.Equal(got, []uint16{25, 443, 22}) {
		t.Fatalf("services by id: %v; want 25 in the freed id 0", got)
	}
	if c, _ := p.ServiceCounters(0); c.SynackSent != 0 {
		t.Errorf("port 25 (new, in removed port 80's id) counters = %+v, want zero", c)
	}
}

func ports(t *testing.T, p *Program) []uint16 {
	t.Helper()
	svcs, err := p.configMaps().services()
	if err != nil {
		t.Fatal(err)
	}
	var out []uint16
	for _, s := range svcs {
		out = append(out, s.Port)
	}
	return out
}

func mustCounters(t *testing.T, p *Program, id uint32) []ServiceCounters {
	t.Helper()
	var c []ServiceCounters
	if err := p.objs.XsynSvcCounts.Lookup(id, &c); err != nil {
		t.Fatal(err)
	}
	return c
}
