package loader

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/cilium/ebpf"

	"github.com/xsyn-project/xsyn/spec"
)

// configMaps are the maps that hold a spec (bpf/maps.h), plus the per-service counters, whose
// slot of a new service is reset.
type configMaps struct {
	ports, svcs, services4, services6, svcCounts, secret, iface *ebpf.Map
	odRate, odState                                             *ebpf.Map // on-demand (ondemand.go)
}

// setInterface tells the program the MAC address of the interface it is attached to: it answers
// only SYNs sent to it (bpf/host.h). Without one (BPF_PROG_RUN), it checks only for group
// addresses.
func (c configMaps) setInterface(mac net.HardwareAddr) error {
	if c.iface == nil || len(mac) != 6 {
		return nil // a device without an Ethernet address; XDP there sees no Ethernet frames
	}
	v := xsynIfaceConfig{CheckMac: 1}
	copy(v.Mac[:], mac)
	if err := c.iface.Put(uint32(0), v); err != nil {
		return fmt.Errorf("write interface address: %w", err)
	}
	return nil
}

// serviceKey identifies a service across reconfigurations.
type serviceKey struct {
	family spec.Family
	dst    netip.Prefix
	port   uint16
}

func keyOf(s spec.Service) serviceKey { return serviceKey{s.Family, s.Dst, s.Port} }

// apply makes the maps protect exactly s. Services that stay keep their id (so their counters and
// parameters are never lent to another service); every step leaves a consistent configuration:
// parameters of new ids are written before anything points at them, the LPM entries and port
// entries after, and stale entries are removed last. A service that stays protected is never
// missing, not even between two map updates.
func (c configMaps) apply(s spec.Spec) error {
	if err := s.Validate(); err != nil {
		return err
	}
	cur, err := c.currentIDs()
	if err != nil {
		return err
	}
	// The secret before any service that uses it.
	if err := c.setSecret(s.CookieKey); err != nil {
		return err
	}
	ids, fresh := assignIDs(s.Services, cur)

	for i, svc := range s.Services {
		id := ids[i]
		if fresh[i] {
			if err := c.resetCounters(id); err != nil {
				return err
			}
		}
		if err := c.resetOnDemand(id, svc, fresh[i]); err != nil {
			return err
		}
		if err := c.svcs.Put(id, serviceValue(svc, id)); err != nil {
			return fmt.Errorf("update parameters of %s: %w", svc, err)
		}
	}
	want := map[serviceKey]bool{}
	ports := map[uint32]xsynPortServices{}
	for i, svc := range s.Services {
		want[keyOf(svc)] = true
		if err := c.putKey(svc, ids[i]); err != nil {
			return err
		}
		ps := ports[uint32(svc.Port)]
		any := svc.Dst.Bits() == 0
		switch {
		case svc.Family == spec.IPv4 && any:
			ps.V4Any, ps.V4Id = 1, uint16(ids[i])
		case svc.Family == spec.IPv4:
			ps.V4Prefixes = 1
		case any:
			ps.V6Any, ps.V6Id = 1, uint16(ids[i])
		default:
			ps.V6Prefixes = 1
		}
		ports[uint32(svc.Port)] = ps
	}
	for port, ps := range ports {
		if err := c.ports.Put(port, ps); err != nil {
			return fmt.Errorf("update port %d: %w", port, err)
		}
	}
	for k := range cur {
		if !want[k] {
			if err := c.deleteKey(k); err != nil {
				return err
			}
		}
	}
	for k := range cur {
		if _, ok := ports[uint32(k.port)]; !ok {
			if err := c.ports.Put(uint32(k.port), xsynPortServices{}); err != nil {
				return fmt.Errorf("clear port %d: %w", k.port, err)
			}
		}
	}
	return nil
}

// assignIDs keeps the id of every service already configured and gives new ones the lowest ids in
// use by nobody, old or new. fresh[i] tells the new ones.
func assignIDs(svcs []spec.Service, cur map[serviceKey]uint32) (ids []uint32, fresh []bool) {
	used := map[uint32]bool{}
	for _, id := range cur {
		used[id] = true
	}
	next := uint32(0)
	for _, svc := range svcs {
		if id, ok := cur[keyOf(svc)]; ok {
			ids, fresh = append(ids, id), append(fresh, false)
			continue
		}
		for used[next] {
			next++
		}
		used[next] = true
		ids, fresh = append(ids, next), append(fresh, true)
	}
	return ids, fresh
}

func serviceValue(svc spec.Service, id uint32) xsynService {
	return xsynService{
		Id:         uint16(id),
		Mss:        svc.Options.MSS,
		Wscale:     svc.Options.WScale,
		UseWscale:  1, // window scaling is offered whenever the client offers it
		Sack:       b2u(svc.Options.SACK),
		Timestamps: b2u(svc.Options.Timestamps),
		Ecn:        b2u(svc.Options.ECN),
		Ttl:        svc.TTL,
		Handoff:    b2u(svc.Handoff),
		LocalOnly:  b2u(svc.LocalOnly),
		Window:     synackWindow(svc.Options.MSS),
		OnDemand:   svc.OnDemand,
	}
}

// synackWindow is the receive window a handoff SYN-ACK announces: the largest multiple of the
// MSS that fits the 16-bit field, as the listener's own SYN-ACK shows on a default stack (the
// connection's window then comes from the socket's buffer). SYNPROXY's SYN-ACK announces 0.
func synackWindow(mss uint16) uint16 {
	if mss == 0 {
		return 0
	}
	return 65535 / mss * mss
}

func (c configMaps) putKey(svc spec.Service, id uint32) error {
	var err error
	if svc.Family == spec.IPv4 {
		err = c.services4.Put(key4(svc.Dst, svc.Port), id)
	} else {
		err = c.services6.Put(key6(svc.Dst, svc.Port), id)
	}
	if err != nil {
		return fmt.Errorf("update %s: %w", svc, err)
	}
	return nil
}

func (c configMaps) deleteKey(k serviceKey) error {
	var err error
	if k.family == spec.IPv4 {
		err = c.services4.Delete(key4(k.dst, k.port))
	} else {
		err = c.services6.Delete(key6(k.dst, k.port))
	}
	if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("delete stale service %s %s port %d: %w", k.family, k.dst, k.port, err)
	}
	return nil
}

func (c configMaps) resetCounters(id uint32) error {
	zero := make([]xsynServiceCounters, ebpf.MustPossibleCPU())
	if err := c.svcCounts.Put(id, zero); err != nil {
		return fmt.Errorf("reset counters of service %d: %w", id, err)
	}
	return nil
}

func key4(dst netip.Prefix, port uint16) xsynServiceKey4 {
	k := xsynServiceKey4{Prefixlen: uint32(16 + dst.Bits()), Port: htons(port)}
	k.Addr = dst.Addr().As4()
	return k
}

func key6(dst netip.Prefix, port uint16) xsynServiceKey6 {
	k := xsynServiceKey6{Prefixlen: uint32(16 + dst.Bits()), Port: htons(port)}
	k.Addr = dst.Addr().As16()
	return k
}

// currentIDs reads the configured services' keys and ids from the LPM tries.
func (c configMaps) currentIDs() (map[serviceKey]uint32, error) {
	out := map[serviceKey]uint32{}
	var (
		k4 xsynServiceKey4
		k6 xsynServiceKey6
		id uint32
	)
	it := c.services4.Iterate()
	for it.Next(&k4, &id) {
		out[serviceKey{spec.IPv4, netip.PrefixFrom(netip.AddrFrom4(k4.Addr), int(k4.Prefixlen)-16), ntohs(k4.Port)}] = id
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read ipv4 services: %w", err)
	}
	it = c.services6.Iterate()
	for it.Next(&k6, &id) {
		out[serviceKey{spec.IPv6, netip.PrefixFrom(netip.AddrFrom16(k6.Addr), int(k6.Prefixlen)-16), ntohs(k6.Port)}] = id
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read ipv6 services: %w", err)
	}
	return out, nil
}

// services reads back what the maps protect, ordered by id.
func (c configMaps) services() ([]spec.Service, error) {
	cur, err := c.currentIDs()
	if err != nil {
		return nil, err
	}
	byID := map[uint32]spec.Service{}
	for k, id := range cur {
		var v xsynService
		if err := c.svcs.Lookup(id, &v); err != nil {
			return nil, fmt.Errorf("read parameters of service %d: %w", id, err)
		}
		byID[id] = spec.Service{
			Family: k.family, Dst: k.dst, Port: k.port, TTL: v.Ttl,
			Options: spec.TCPOptions{MSS: v.Mss, WScale: v.Wscale, SACK: v.Sack != 0, Timestamps: v.Timestamps != 0, ECN: v.Ecn != 0},
			Handoff: v.Handoff != 0, LocalOnly: v.LocalOnly != 0, OnDemand: v.OnDemand,
		}
	}
	var out []spec.Service
	for id := range uint32(spec.MaxServices) {
		if s, ok := byID[id]; ok {
			out = append(out, s)
		}
	}
	return out, nil
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
