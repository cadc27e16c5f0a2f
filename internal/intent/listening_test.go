package intent

import (
	"net/netip"
	"testing"

	"github.com/xsyn-project/xsyn/internal/host"
	"github.com/xsyn-project/xsyn/spec"
)

func TestListeningServices(t *testing.T) {
	v4, v6, ll := netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("2001:db8::2"), netip.MustParseAddr("fe80::1")
	ls := []host.Listener{
		{Addr: netip.IPv4Unspecified(), Port: 80, DualStack: false},             // every IPv4 address: 192.0.2.2
		{Addr: v4, Port: 22, DualStack: false},                                  // this interface's address
		{Addr: netip.MustParseAddr("127.0.0.1"), Port: 631, DualStack: false},   // loopback only: left alone
		{Addr: netip.MustParseAddr("198.51.100.7"), Port: 25, DualStack: false}, // another interface's address: left alone
		{Addr: netip.IPv6Unspecified(), Port: 443, DualStack: true},             // dual-stack IPv6 wildcard: v6 addresses and v4
		{Addr: netip.IPv6Unspecified(), Port: 8443, DualStack: false},           // IPv6-only wildcard
		{Addr: netip.MustParseAddr("::1"), Port: 5432, DualStack: false},        // loopback only
		{Addr: v4, Port: 80, DualStack: false},                                  // duplicate of the wildcard's 192.0.2.2:80
	}
	st := spec.Stack{MTU: 1500, WScale: 9}
	str := func(svcs []spec.Service) []string {
		var out []string
		for _, s := range svcs {
			out = append(out, netip.AddrPortFrom(s.Dst.Addr(), s.Port).String())
			if s.Dst.Bits() != s.Dst.Addr().BitLen() || s.Options != st.Options(s.Family) {
				t.Errorf("%s: want a host prefix with the stack's options, got %+v", s, s)
			}
		}
		return out
	}
	got := str(ListeningServices([]netip.Addr{v4, v6, ll}, ls, st))
	want := []string{"192.0.2.2:22", "192.0.2.2:80", "192.0.2.2:443", "[2001:db8::2]:443", "[2001:db8::2]:8443", "[fe80::1]:443", "[fe80::1]:8443"}
	if len(got) != len(want) {
		t.Fatalf("listening services: %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("listening services: %v, want %v", got, want)
		}
	}
}
