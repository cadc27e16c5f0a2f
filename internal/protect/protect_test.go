package protect

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/xsyn-project/xsyn/internal/netlab"
	"github.com/xsyn-project/xsyn/internal/testutil"
	"github.com/xsyn-project/xsyn/loader"
	"github.com/xsyn-project/xsyn/rules"
	"github.com/xsyn-project/xsyn/spec"
)

func server(t *testing.T, prefix string) *netlab.Host {
	t.Helper()
	testutil.RequireRoot(t, "network namespaces, netfilter, XDP")
	p := testutil.Pair(t, prefix, "c0", []netip.Prefix{netip.MustParsePrefix("192.0.2.1/24")}, "d0", []netip.Prefix{netip.MustParsePrefix("192.0.2.2/24")})
	return p.Server
}

// A kernel without the XDP features is protected by the netfilter rules alone, and says so.
func TestFallbackToNetfilter(t *testing.T) {
	h := server(t, "xsynfb")
	s, err := spec.Simple{Ports: []uint16{8080}, WScale: -1}.Build()
	if err != nil {
		t.Fatal(err)
	}
	old := &loader.FeatureError{Feature: "BPF helper bpf_tcp_raw_gen_syncookie_ipv4 for XDP", Since: "Linux 6.0", Err: errors.New("not supported")}
	err = h.Do(func() error {
		a, err := rules.NewApplier()
		if err != nil {
			return err
		}
		p := &Protector{Rules: a, Loader: loader.Options{Locks: t.TempDir(), Probe: func() error { return old },
			ProbeHandoff: func() error { return old }}}

		res, err := p.Apply("d0", s, "auto")
		if err != nil {
			t.Fatalf("Apply on an old kernel: %v; want a netfilter-only fallback", err)
		}
		// Two warnings: the handoff statements moved to SYNPROXY, and no XDP in front of it.
		last := ""
		if len(res.Warnings) > 0 {
			last = res.Warnings[len(res.Warnings)-1]
		}
		if res.Mode != ModeNetfilterOnly || len(res.Warnings) != 2 || !strings.Contains(res.Warnings[0], "socket handoff unavailable") ||
			!strings.Contains(last, "bpf_tcp_raw_gen_syncookie_ipv4") || !strings.Contains(last, "Linux 6.0") {
			t.Errorf("Apply result %+v; want netfilter-only with a warning naming the feature and kernel", res)
		}
		if on, err := a.Installed("d0"); err != nil || !on {
			t.Errorf("rules installed: %v, %v; want the SYNPROXY rules protecting on their own", on, err)
		}
		l, err := netlink.LinkByName("d0")
		if err != nil {
			return err
		}
		if x := l.Attrs().Xdp; x != nil && x.ProgId != 0 {
			t.Errorf("an XDP program (%d) is attached on a kernel said to lack the features", x.ProgId)
		}
		sts, err := p.Statuses("")
		if err != nil || len(sts) != 1 || sts[0].Mode != ModeNetfilterOnly || !sts[0].Rules || sts[0].Counters != nil {
			t.Errorf("status: %+v, %v; want d0 netfilter-only with rules and no XDP counters", sts, err)
		}

		// Forced XDP modes do not fall back: the caller asked for XDP. Nothing changes.
		other, err := spec.Simple{Ports: []uint16{9090}, WScale: -1}.Build()
		if err != nil {
			return err
		}
		if _, err := p.Apply("d0", other, "native"); !errors.Is(err, loader.ErrFeatureMissing) {
			t.Errorf("Apply --mode native on an old kernel: %v; want ErrFeatureMissing", err)
		}
		if rs, err := h.Run("iptables-save"); err != nil || strings.Contains(rs, "9090") || !strings.Contains(rs, "8080") {
			t.Errorf("a refused forced-mode apply changed the rules (%v):\n%s", err, rs)
		}
		if err := p.Remove("d0"); err != nil {
			return err
		}
		if on, err := a.Installed("d0"); err != nil || on {
			t.Errorf("rules after Remove: %v, %v", on, err)
		}

		// The probe runs with the rules in (where conntrack is a module, they load it and the
		// BTF of its kfuncs); refused, they go again and the interface is as it was.
		rulesAtProbe := false
		p.Loader.Probe = func() error {
			rulesAtProbe, _ = a.Installed("d0")
			return old
		}
		if _, err := p.Apply("d0", other, "native"); !errors.Is(err, loader.ErrFeatureMissing) {
			t.Errorf("Apply --mode native on an old kernel, unprotected: %v; want ErrFeatureMissing", err)
		}
		if on, err := a.Installed("d0"); err != nil || on || !rulesAtProbe {
			t.Errorf("rules during the probe: %v; after the refused apply: %v, %v; want in, then gone", rulesAtProbe, on, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// --mode is parsed once, at the command line: the four modes, and nothing else.
func TestParseMode(t *testing.T) {
	for _, s := range []string{"auto", "native", "generic", "netfilter"} {
		if m, err := ParseMode(s); err != nil || string(m) != s {
			t.Errorf("ParseMode(%q) = %q, %v; want %q", s, m, err, s)
		}
	}
	for _, s := range []string{"", "turbo", "netfilter-only", "Native"} {
		if m, err := ParseMode(s); !errors.Is(err, loader.ErrModeUnsupported) {
			t.Errorf("ParseMode(%q) = %q, %v; want ErrModeUnsupported", s, m, err)
		}
	}
}

// An interface has its rules when attach's are all there, or when it needs none (every service
// on the handoff path); status and the exporter both say so from RulesOK.
func TestRulesOK(t *testing.T) {
	handoff, synproxy := spec.Service{Handoff: true}, spec.Service{}
	for _, c := range []struct {
		name string
		st   Status
		want bool
	}{
		{"all rules", Status{Rules: true, Services: []spec.Service{synproxy}}, true},
		{"rules incomplete", Status{Rules: true, RulesMissing: []string{"ipv4: chain XSYN-IN-d0"}}, false},
		{"no rules, every service on the handoff path", Status{Services: []spec.Service{handoff, handoff}}, true},
		{"no rules, a SYNPROXY service", Status{Services: []spec.Service{handoff, synproxy}}, false},
		{"no rules, no services", Status{}, false},
		{"no rules, missing ones expected", Status{RulesMissing: []string{"ipv4: no rules"}, Services: []spec.Service{handoff}}, false},
	} {
		if got := c.st.RulesOK(); got != c.want {
			t.Errorf("%s: RulesOK() = %v, want %v", c.name, got, c.want)
		}
	}
}
