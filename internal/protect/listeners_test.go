package protect

import (
	"net"
	"net/netip"
	"testing"

	"github.com/xsyn-project/xsyn/spec"
)

func TestListeningServices(t *testing.T) {
	v4, v6, ll := netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("2001:db8::2"), netip.MustParseAddr("fe80::1")
	ls := []Listener{
		{netip.IPv4Unspecified(), 80, false},             // every IPv4 address: 192.0.2.2
		{v4, 22, false},                                  // this interface's address
		{netip.MustParseAddr("127.0.0.1"), 631, false},   // loopback only: left alone
		{netip.MustParseAddr("198.51.100.7"), 25, false}, // another interface's address: left alone
		{netip.IPv6Unspecified(), 443, true},             // dual-stack IPv6 wildcard: v6 addresses and v4
		{netip.IPv6Unspecified(), 8443, false},           // IPv6-only wildcard
		{netip.MustParseAddr("::1"), 5432, false},        // loopback only
		{v4, 80, false},                                  // duplicate of the wildcard's 192.0.2.2:80
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

// The kernel's answer, for real sockets in this test's own namespace.
func TestListenersFromKernel(t *testing.T) {
	h := server(t, "xsynls")
	err := h.Do(func() error {
		for _, ln := range []struct{ network, addr string }{{"tcp4", "127.0.0.1:7070"}, {"tcp6", "[::]:9443"}, {"tcp", ":9444"}} {
			l, err := net.Listen(ln.network, ln.addr)
			if err != nil {
				return err
			}
			defer l.Close()
		}
		ls, err := Listeners()
		if err != nil {
			return err
		}
		want := map[Listener]bool{
			{netip.MustParseAddr("127.0.0.1"), 7070, false}: true,
			{netip.IPv6Unspecified(), 9443, false}:          true, // Go sets IPV6_V6ONLY for tcp6
			{netip.IPv6Unspecified(), 9444, true}:           true, // and not for tcp
		}
		if len(ls) != len(want) {
			t.Errorf("Listeners() = %+v; want %v", ls, want)
		}
		for _, l := range ls {
			if !want[l] {
				t.Errorf("unexpected listener %+v (want %v)", l, want)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
