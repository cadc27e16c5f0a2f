package loader

import (
	"encoding/binary"
	"fmt"

	"github.com/cilium/ebpf"

	"github.com/xsyn-project/xsyn/spec"
)

// mapContents is a spec rendered into the XDP program's configuration maps.
type mapContents struct {
	ports     map[uint32]xsynPortFamilies
	services4 map[xsynServiceKey4]xsynService
	services6 map[xsynServiceKey6]xsynService
}

// render turns a validated spec into map contents. Service ids (slots in xsyn_service_counters)
// follow spec order.
func render(s spec.Spec) (mapContents, error) {
	if err := s.Validate(); err != nil {
		return mapContents{}, err
	}
	m := mapContents{
		ports:     map[uint32]xsynPortFamilies{},
		services4: map[xsynServiceKey4]xsynService{},
		services6: map[xsynServiceKey6]xsynService{},
	}
	for id, svc := range s.Services {
		v := xsynService{
			Id:        uint16(id),
			Mss:       svc.Options.MSS,
			Wscale:    svc.Options.WScale,
			UseWscale: 1, // spec always offers window scaling when the client does
			Ttl:       svc.TTL,
		}
		v.Sack = b2u(svc.Options.SACK)
		v.Timestamps = b2u(svc.Options.Timestamps)
		v.Ecn = b2u(svc.Options.ECN)

		pf := m.ports[uint32(svc.Port)]
		addr := svc.Dst.Addr().AsSlice()
		prefixLen := uint32(16 + svc.Dst.Bits())
		switch svc.Family {
		case spec.IPv4:
			pf.V4 = 1
			k := xsynServiceKey4{Prefixlen: prefixLen, Port: htons(svc.Port)}
			copy(k.Addr[:], addr)
			m.services4[k] = v
		case spec.IPv6:
			pf.V6 = 1
			k := xsynServiceKey6{Prefixlen: prefixLen, Port: htons(svc.Port)}
			copy(k.Addr[:], addr)
			m.services6[k] = v
		default:
			return mapContents{}, fmt.Errorf("render %s: unknown family", svc)
		}
		m.ports[uint32(svc.Port)] = pf
	}
	return m, nil
}

func b2u(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

// htons returns the uint16 whose in-memory bytes are p in network order, as the BPF side stores
// __be16 ports.
func htons(p uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], p)
	return binary.NativeEndian.Uint16(b[:])
}

func ntohs(p uint16) uint16 { return htons(p) }

// configMaps are the maps render() fills.
type configMaps struct {
	ports, services4, services6 *ebpf.Map
}

// apply makes the maps hold exactly m. New and changed entries are written before stale ones are
// deleted, so a service that stays protected is never missing, not even between two updates.
func (c configMaps) apply(m mapContents) error {
	for port, pf := range m.ports {
		if err := c.ports.Put(port, pf); err != nil {
			return fmt.Errorf("update port %d: %w", port, err)
		}
	}
	for k, v := range m.services4 {
		if err := c.services4.Put(k, v); err != nil {
			return fmt.Errorf("update ipv4 service port %d: %w", ntohs(k.Port), err)
		}
	}
	for k, v := range m.services6 {
		if err := c.services6.Put(k, v); err != nil {
			return fmt.Errorf("update ipv6 service port %d: %w", ntohs(k.Port), err)
		}
	}
	if err := deleteStale(c.services4, m.services4); err != nil {
		return err
	}
	if err := deleteStale(c.services6, m.services6); err != nil {
		return err
	}
	// The port filter is an array: clear the slots no service uses any more.
	var (
		port uint32
		pf   xsynPortFamilies
		zero xsynPortFamilies
	)
	it := c.ports.Iterate()
	var clear []uint32
	for it.Next(&port, &pf) {
		if pf != zero {
			if _, ok := m.ports[port]; !ok {
				clear = append(clear, port)
			}
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("read port filter: %w", err)
	}
	for _, p := range clear {
		if err := c.ports.Put(p, zero); err != nil {
			return fmt.Errorf("clear port %d: %w", p, err)
		}
	}
	return nil
}

func deleteStale[K comparable](m *ebpf.Map, want map[K]xsynService) error {
	var (
		k     K
		v     xsynService
		stale []K
	)
	it := m.Iterate()
	for it.Next(&k, &v) {
		if _, ok := want[k]; !ok {
			stale = append(stale, k)
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("read %s: %w", m, err)
	}
	for _, k := range stale {
		if err := m.Delete(k); err != nil {
			return fmt.Errorf("delete stale service from %s: %w", m, err)
		}
	}
	return nil
}
