package protect

import (
	"fmt"
	"net/netip"
	"testing"
)

// TestRouterForwardsOthersConnections: an input statement without dst on a router (zero-config
// `attach` writes them) protects the router's own port, and leaves alone the same port of a
// server behind it. Without that, XDP answered the SYN to the server behind with a cookie as if it
// were the router, and the handshake ended at the router's listener: the server never saw the
// client.
func TestRouterForwardsOthersConnections(t *testing.T) {
	for _, fam := range families {
		t.Run(fam.String(), func(t *testing.T) {
			l := newActionLab(t, fam, true)
			handoffOrSkip(t)
			own := serveBanner(t, l.fw, bannerPort, false)
			behind := serveBanner(t, l.be, bannerPort, false)
			s := l.config(t, fmt.Sprintf("synproxy%d input inface f0 dport %d path handoff accept\n", famNum(fam), bannerPort))
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
			// Every client segment of the forwarded connections passes as routed: the SYN, the
			// ACK, the FIN and its ACK at least.
			if c.PassRouted < 4*clients || c.HandoffAssigned != clients || c.SynackSent != clients {
				t.Errorf("counters %+v; want >= %d routed, %d handoffs and SYN-ACKs (the router's own clients)",
					c, 4*clients, clients)
			}
		})
	}
}
