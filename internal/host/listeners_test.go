package host

import (
	"net"
	"net/netip"
	"testing"

	"github.com/xsyn-project/xsyn/internal/testutil"
)

// The kernel's answer, for real sockets in this test's own namespace.
func TestListenersFromKernel(t *testing.T) {
	h := testutil.Pair(t, "xsynls", "c0", []netip.Prefix{netip.MustParsePrefix("192.0.2.1/24")}, "d0", []netip.Prefix{netip.MustParsePrefix("192.0.2.2/24")}).Server
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
