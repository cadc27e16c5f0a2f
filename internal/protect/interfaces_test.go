package protect

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/xsyn-project/xsyn/internal/host"
	"github.com/xsyn-project/xsyn/loader"
	"github.com/xsyn-project/xsyn/spec"
)

// TestInterfacesDoNotOverride: f0 (the client's side) lets port 22 through a user chain that
// accepts one client; a statement for f1 that accepts every client of port 22 on the SYNPROXY
// path would, with its OUTPUT rules, let f0's other clients in too. attach of f1 refuses it and
// changes nothing; a statement with the same action, one for other ports, and one on the handoff
// path are accepted, and f0's banned client stays out throughout.
func TestInterfacesDoNotOverride(t *testing.T) {
	l := newActionLab(t, spec.IPv4, false)
	t.Cleanup(func() {
		if err := l.fw.Do(func() error { return l.prot.Remove("f1") }); err != nil && !errors.Is(err, ErrNotProtected) {
			t.Errorf("remove xsyn from f1: %v", err)
		}
	})
	to := netip.AddrPortFrom(l.net.fw.Addr(), 22)
	srv := serveBanner(t, l.fw, 22, false)
	back := netip.AddrPortFrom(l.net.fwBack.Addr(), 80)
	serve(t, l.fw, back)
	allowed, banned := l.net.cli.Addr(), l.net.cli.Addr().Next().Next()
	if _, err := l.cli.Run("ip", "addr", "add", netip.PrefixFrom(banned, l.net.cli.Bits()).String(), "dev", "c0", "nodad"); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range [][]string{{"-N", "SSH_ALLOW"}, {"-A", "SSH_ALLOW", "-s", allowed.String(), "-j", "ACCEPT"}, {"-A", "SSH_ALLOW", "-j", "DROP"}} {
		if _, err := l.fw.Run("iptables", cmd...); err != nil {
			t.Fatal(err)
		}
	}
	apply := func(iface, src string, mode loader.Mode) error {
		return l.fw.Do(func() error {
			stack, err := host.LocalStack(iface)
			if err != nil {
				return err
			}
			cfg, err := spec.ParseConfig(iface+".conf", []byte(src), &stack)
			if err != nil {
				return err
			}
			s, err := cfg.For(iface)
			if err != nil {
				return err
			}
			_, err = l.prot.Apply(iface, s, mode)
			return err
		})
	}
	f0 := fmt.Sprintf("synproxy4 in inface f0 dst %s dport 22 action SSH_ALLOW\n", l.net.fw.Addr())
	if err := apply("f0", f0, ModeNetfilter); err != nil {
		t.Fatal(err)
	}
	bannedStaysOut := func(when string) {
		t.Helper()
		if err := reaches(l, banned, to); err == nil {
			t.Errorf("%s: %s connected to %s past SSH_ALLOW", when, banned, to)
		}
		if err := reaches(l, allowed, to); err != nil {
			t.Errorf("%s: the allowed client: %v", when, err)
		}
	}
	bannedStaysOut("f0 alone")
	defer func() {
		for _, a := range srv.accepted() {
			if a.remote == banned {
				t.Errorf("the server accepted %s, which SSH_ALLOW refuses", banned)
			}
		}
	}()
	saved := func() string {
		out, err := l.fw.Run("sh", "-c", "iptables-save | grep -vE '^(#|:)'")
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	before := saved()

	// The conflicting statement: refused, nothing changed, on f1 or anywhere.
	err := apply("f1", "synproxy4 in inface f1 dport 22 path synproxy accept\n", ModeNetfilter)
	if err == nil {
		t.Fatalf("attach f1 of a conflicting statement succeeded; %s, a client of f0, now reaches the server past SSH_ALLOW: %v",
			banned, reaches(l, banned, to) == nil)
	}
	if !errors.Is(err, ErrInterfacesConflict) || !strings.Contains(err.Error(), "action SSH_ALLOW") ||
		!strings.Contains(err.Error(), "on f1 it covers connections that 'synproxy4 in inface f0 dst") {
		t.Fatalf("attach f1 = %v; want ErrInterfacesConflict naming f0's statement", err)
	}
	if after := saved(); after != before {
		t.Errorf("the refused attach changed the rules:\nbefore\n%s\nafter\n%s", before, after)
	}
	bannedStaysOut("after the refused attach of f1")

	// Statements that cannot decide f0's connections otherwise than f0 does.
	for _, c := range []struct {
		name, src string
		mode      loader.Mode
	}{
		{"same action", "synproxy4 in inface f1 dport 22 path synproxy action SSH_ALLOW\n", ModeNetfilter},
		{"other ports", "synproxy4 in inface f1 dport 80 path synproxy accept\n", ModeNetfilter},
		{"handoff path", "synproxy4 in inface f1 dport 22 accept\n", "auto"},
	} {
		if err := apply("f1", c.src, c.mode); err != nil {
			t.Fatalf("%s: attach f1: %v", c.name, err)
		}
		bannedStaysOut(c.name)
		if c.name == "other ports" {
			// The backend, behind f1, reaches the firewall's port 80 through SYNPROXY.
			if _, err := exchange(l.be, back, 1); err != nil {
				t.Errorf("%s: the backend to %s: %v", c.name, back, err)
			}
		}
		if err := l.fw.Do(func() error { return l.prot.Remove("f1") }); err != nil {
			t.Fatal(err)
		}
	}
}
