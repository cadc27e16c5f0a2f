package protect

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/xsyn-project/xsyn/spec"
)

// TestRouterForwardsOthersConnections: an input statement without dst on a router (zero-config
// `attach` writes them) protects the router's own port, and leaves alone the same port of a
// server behind it, on either path. Without that, XDP answered the SYN to the server behind with
// a cookie as if it were the router, and the handshake ended at the router's listener (handoff)
// or was dropped as a forged ACK (SYNPROXY): the server never saw the client.
func TestRouterForwardsOthersConnections(t *testing.T) {
	for _, fam := range families {
		for _, path := range []string{"handoff", "synproxy"} {
			t.Run(fam.String()+"-"+path, func(t *testing.T) { testRouterForwards(t, fam, path) })
		}
	}
}

func testRouterForwards(t *testing.T, fam spec.Family, path string) {
	l := newActionLab(t, fam, true)
	if path == "handoff" {
		handoffOrSkip(t)
	}
	own := serveBanner(t, l.fw, bannerPort, false)
	behind := serveBanner(t, l.be, bannerPort, false)
	s := l.config(t, fmt.Sprintf("synproxy%d input inface f0 dport %d path %s accept\n", famNum(fam), bannerPort, path))
	if svc := s.Services[0]; !svc.LocalOnly {
		t.Fatalf("service %+v of an input statement without dst; want it limited to the host's addresses", svc)
	}
	l.apply(t, s, "native")

	const clients = 5
	for i := range clients {
		if _, _, err := banner(l.cli, netip.Addr{}, netip.AddrPortFrom(l.net.be.Addr(), bannerPort)); err != nil {
			t.Fatalf("client %d through the router to the server behind it: %v", i, err)
		}
		if _, _, err := banner(l.cli, netip.Addr{}, netip.AddrPortFrom(l.net.fw.Addr(), bannerPort)); err != nil {
			t.Fatalf("client %d to the router itself: %v", i, err)
		}
	}
	if n, m := len(behind.accepted()), len(own.accepted()); n != clients || m != clients {
		t.Errorf("the server behind accepted %d connections, the router %d; want %d each", n, m, clients)
	}
	c := l.xdp(t)
	// The SYN of every forwarded connection passes as routed; on the handoff path so do its
	// other segments (the router's listener matches their port), on the SYNPROXY path those
	// find the conntrack entry the SYN made.
	routed := uint64(clients)
	if path == "handoff" {
		routed = 4 * clients // the SYN, the ACK, the FIN and its ACK at least
	}
	if c.PassRouted < routed || c.SynackSent != clients {
		t.Errorf("counters %+v; want >= %d routed and %d SYN-ACKs (the router's own clients)", c, routed, clients)
	}
	if path == "handoff" && c.HandoffAssigned != clients {
		t.Errorf("counters %+v; want %d handoffs", c, clients)
	}
}
