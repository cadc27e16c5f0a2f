package protect

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/xsyn-project/xsyn/internal/hostfw"
	"github.com/xsyn-project/xsyn/internal/intent"
	"github.com/xsyn-project/xsyn/loader"
	"github.com/xsyn-project/xsyn/rules"
	"github.com/xsyn-project/xsyn/spec"
)

// ruleset is a firewall of iptables-save text for IPv4 (IPv6 empty, no native chains).
func ruleset(t *testing.T, save4 string) func() (hostfw.Ruleset, error) {
	t.Helper()
	v4, err := hostfw.ParseSave(save4)
	if err != nil {
		t.Fatal(err)
	}
	v6, _ := hostfw.ParseSave("")
	return func() (hostfw.Ruleset, error) { return hostfw.Ruleset{IPv4: v4, IPv6: v6}, nil }
}

func flagSpec(t *testing.T, dst string, via spec.Via, ports ...uint16) spec.Spec {
	t.Helper()
	s, err := spec.Simple{Ports: ports, Dst: dst, WScale: -1, Via: via}.Build()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestCheckFirewall: statements xsyn makes itself (--port, zero-config) take the SYNPROXY path
// only to ports the firewall's INPUT rules open to every client; statements someone wrote are
// their own verdict.
func TestCheckFirewall(t *testing.T) {
	const filter = "*filter\n:INPUT %s [0:0]\n%sCOMMIT\n"
	explicit, err := spec.ParseConfig("fw.conf", []byte("synproxy4 in inface eth0 dport 22 accept\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	explicitSpec, err := explicit.For("eth0")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		save string
		spec spec.Spec
		want []string // in the error; none: no error
	}{
		{"open port", fmt.Sprintf(filter, "ACCEPT", ""), flagSpec(t, "", spec.ViaSynproxy, 22, 80), nil},
		{"one client dropped", fmt.Sprintf(filter, "ACCEPT", "-A INPUT -s 192.0.2.9/32 -p tcp -m tcp --dport 22 -j DROP\n"),
			flagSpec(t, "", spec.ViaSynproxy, 22, 80),
			[]string{"refusing to protect port 22 of eth0 on the SYNPROXY path", "ipv4 port 22: -A INPUT -s 192.0.2.9/32 -p tcp -m tcp --dport 22 -j DROP",
				"nothing was changed", "synproxy input inface eth0 src ALLOWED dport 22 accept", "handoff path", "open the ports"}},
		{"policy drop, one source accepted", fmt.Sprintf(filter, "DROP", "-A INPUT -s 192.0.2.1/32 -j ACCEPT\n"),
			flagSpec(t, "192.0.2.2", spec.ViaSynproxy, 22, 80),
			[]string{"ports 22,80 of eth0", "ipv4 port 22,80: the INPUT chain's policy DROP"}},
		{"handoff path: the firewall still decides", fmt.Sprintf(filter, "DROP", ""), flagSpec(t, "", spec.ViaHandoff, 22), nil},
		{"written statement: its accept is the verdict", fmt.Sprintf(filter, "DROP", ""), explicitSpec, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &Protector{Firewall: ruleset(t, tc.save)}
			err := p.CheckFirewall("eth0", tc.spec)
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("CheckFirewall: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrFirewallRefuses) {
				t.Fatalf("CheckFirewall = %v, want ErrFirewallRefuses", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}

	// A firewall xsyn cannot read is one it cannot trust to be open.
	p := &Protector{Firewall: func() (hostfw.Ruleset, error) { return hostfw.Ruleset{}, errors.New("nft: not found") }}
	if err := p.CheckFirewall("eth0", flagSpec(t, "", spec.ViaSynproxy, 22)); err == nil || !strings.Contains(err.Error(), "nft: not found") {
		t.Errorf("CheckFirewall with an unreadable firewall = %v, want its error", err)
	}
	if err := p.CheckFirewall("eth0", flagSpec(t, "", spec.ViaHandoff, 22)); err != nil {
		t.Errorf("CheckFirewall without SYNPROXY statements read the firewall: %v", err)
	}
}

// TestFirewallKeptOnSynproxyPath: the host's stateful INPUT rules refuse one client's new
// connections to a port. Zero-config attach and --port on the SYNPROXY path (mode netfilter, or
// --path synproxy) refuse to protect that port, leaving nothing behind, and the client stays
// refused; a statement written for the port is FireHOL's: its accept lets the client in. Once
// the firewall opens the port, --port protects it.
func TestFirewallKeptOnSynproxyPath(t *testing.T) {
	const port = bannerPort
	for _, fam := range families {
		t.Run(fam.String(), func(t *testing.T) {
			l := newActionLab(t, fam, false)
			to := netip.AddrPortFrom(l.net.fw.Addr(), port)
			srv := serveBanner(t, l.fw, port, false)
			allowed, banned := l.net.cli.Addr(), l.net.cli.Addr().Next().Next()
			if _, err := l.cli.Run("ip", "addr", "add", netip.PrefixFrom(banned, l.net.cli.Bits()).String(), "dev", "c0", "nodad"); err != nil {
				t.Fatal(err)
			}
			iptables := strings.TrimSuffix(l.iptablesSave, "-save")
			// A stateful firewall, as most are: established traffic first, then the ban of new
			// connections. SYNPROXY's connection, once open, is established traffic.
			ban := []string{"INPUT", "-s", banned.String(), "-p", "tcp", "--dport", fmt.Sprint(port), "-j", "REJECT", "--reject-with", "tcp-reset"}
			for _, r := range [][]string{{"-A", "INPUT", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"}, append([]string{"-A"}, ban...)} {
				if _, err := l.fw.Run(iptables, r...); err != nil {
					t.Fatal(err)
				}
			}
			if err := reaches(l, banned, to); err == nil {
				t.Fatalf("%s connected before xsyn: the firewall's rule does not work", banned)
			}

			var zero spec.Spec
			if err := l.fw.Do(func() (err error) { zero, err = intent.ListeningSpec("f0"); return err }); err != nil {
				t.Fatal(err)
			}
			for _, c := range []struct {
				name string
				s    spec.Spec
				mode loader.Mode
			}{
				{"zero-config, mode netfilter", zero, ModeNetfilter},
				{"--port, mode netfilter", flagSpec(t, "", spec.ViaAuto, port), ModeNetfilter},
				{"--port --path synproxy", flagSpec(t, "", spec.ViaSynproxy, port), "auto"},
			} {
				err := l.fw.Do(func() error { _, err := l.prot.Apply("f0", c.s, c.mode); return err })
				if !errors.Is(err, ErrFirewallRefuses) || !strings.Contains(err.Error(), "-s "+netip.PrefixFrom(banned, banned.BitLen()).String()) ||
					!strings.Contains(err.Error(), "-j REJECT --reject-with tcp-reset") ||
					!strings.Contains(err.Error(), fmt.Sprintf("port %d", port)) {
					t.Fatalf("%s: Apply = %v; want ErrFirewallRefuses naming port %d and the rule", c.name, err, port)
				}
				l.nothingInstalled(t, c.name)
				if err := reaches(l, banned, to); err == nil {
					t.Errorf("%s: %s connected after the refused attach", c.name, banned)
				}
				if err := reaches(l, allowed, to); err != nil {
					t.Errorf("%s: the allowed client: %v", c.name, err)
				}
			}

			// Written by the operator, the statement is FireHOL's: its accept decides the port.
			l.apply(t, l.config(t, fmt.Sprintf("synproxy%d in inface f0 dport %d accept\n", famNum(fam), port)), ModeNetfilter)
			if err := reaches(l, banned, to); err != nil {
				t.Errorf("an explicit accept statement: %s: %v; want it let in (the statement replaces the firewall's decision)", banned, err)
			}
			if err := l.fw.Do(func() error { return l.prot.Remove("f0") }); err != nil {
				t.Fatal(err)
			}

			// The firewall opens the port: --port protects it on the SYNPROXY path.
			if _, err := l.fw.Run(iptables, append([]string{"-D"}, ban...)...); err != nil {
				t.Fatal(err)
			}
			l.apply(t, flagSpec(t, "", spec.ViaAuto, port), ModeNetfilter)
			before := l.synproxy(t).CookieValid
			for _, src := range []netip.Addr{allowed, banned} {
				if err := reaches(l, src, to); err != nil {
					t.Errorf("open port, %s: %v", src, err)
				}
			}
			if n := l.synproxy(t).CookieValid - before; n < 2 {
				t.Errorf("SYNPROXY validated %d cookies; want both clients through it", n)
			}
			if !slices.ContainsFunc(srv.accepted(), func(a acceptedConn) bool { return a.remote == banned }) {
				t.Errorf("the server never accepted %s once the port was open", banned)
			}

			// A native nftables input chain: xsyn cannot read its rules, so it cannot trust the
			// port to be open.
			if err := l.fw.Do(func() error { return l.prot.Remove("f0") }); err != nil {
				t.Fatal(err)
			}
			for _, cmd := range []string{"add table inet xfw", "add chain inet xfw in { type filter hook input priority 0; policy accept; }",
				fmt.Sprintf("add rule inet xfw in %s saddr %s tcp dport %d drop", map[spec.Family]string{spec.IPv4: "ip", spec.IPv6: "ip6"}[fam], banned, port)} {
				if _, err := l.fw.Run("nft", cmd); err != nil {
					t.Fatal(err)
				}
			}
			err := l.fw.Do(func() error {
				_, err := l.prot.Apply("f0", flagSpec(t, "", spec.ViaAuto, port), ModeNetfilter)
				return err
			})
			if !errors.Is(err, ErrFirewallRefuses) || !strings.Contains(err.Error(), "xsyn cannot judge the nftables chain inet xfw in (hook input, policy accept, 1 rule)") {
				t.Errorf("Apply beside a native nftables input chain = %v; want ErrFirewallRefuses naming the chain", err)
			}
			l.nothingInstalled(t, "beside a native nftables chain")
		})
	}
}

// reaches reports whether a client at src gets the banner of the server at to: its connection
// reached the server, not only SYNPROXY.
func reaches(l *actionLab, src netip.Addr, to netip.AddrPort) error {
	_, _, err := banner(l.cli, src, to)
	return err
}

// nothingInstalled fails the test when f0 has any xsyn chain or XDP program.
func (l *actionLab) nothingInstalled(t *testing.T, what string) {
	t.Helper()
	err := l.fw.Do(func() error {
		a, err := rules.NewApplier()
		if err != nil {
			return err
		}
		if ifs, err := a.Interfaces(); err != nil || len(ifs) > 0 {
			return fmt.Errorf("xsyn chains of %v (%v)", ifs, err)
		}
		if out, err := l.fw.Run("sh", "-c", l.iptablesSave+" | grep -c XSYN- || true"); err != nil || strings.TrimSpace(out) != "0" {
			return fmt.Errorf("%s shows %s XSYN- lines (%v)", l.iptablesSave, strings.TrimSpace(out), err)
		}
		a2, err := loader.Open("f0", true, l.prot.Loader)
		if err == nil {
			a2.Close()
			return errors.New("an XDP program of xsyn is attached")
		}
		if !errors.Is(err, loader.ErrNotAttached) {
			return err
		}
		return nil
	})
	if err != nil {
		t.Errorf("%s: left behind: %v", what, err)
	}
}
