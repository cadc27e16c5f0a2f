package protect

import (
	"strings"
	"testing"

	"github.com/xsyn-project/xsyn/internal/netlab"
	"github.com/xsyn-project/xsyn/loader"
	"github.com/xsyn-project/xsyn/rules"
	"github.com/xsyn-project/xsyn/spec"
)

// A firewall rule that already uses xsyn's mark bits is reported in the result's warnings,
// which attach prints; one that uses other bits is not.
func TestApplyWarnsOfMarkUsers(t *testing.T) {
	h := server(t, "xsynmk")
	s, err := spec.Simple{Ports: []uint16{8080}, WScale: -1}.Build()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Run("iptables", "-t", "mangle", "-A", "PREROUTING", "-m", "mark", "--mark", "0x100/0xf00", "-j", "ACCEPT"); err != nil {
		t.Fatal(err)
	}
	for _, w := range markWarningsOfApply(t, h, s) {
		if strings.Contains(w, "mark bits") {
			t.Errorf("warning %q about a rule that uses other bits", w)
		}
	}
	if _, err := h.Run("iptables", "-t", "mangle", "-A", "PREROUTING", "-p", "tcp", "-j", "MARK", "--set-mark", "0x20000000"); err != nil {
		t.Fatal(err)
	}
	warnings := markWarningsOfApply(t, h, s)
	found := false
	for _, w := range warnings {
		found = found || strings.Contains(w, "mark bits 0x20000000/0x20000000") && strings.Contains(w, "-j MARK --set-xmark 0x20000000/0xffffffff")
	}
	if !found {
		t.Errorf("warnings %q; want one naming the foreign MARK rule", warnings)
	}
}

// markWarningsOfApply applies s to d0 in h, netfilter only, and returns the result's warnings;
// the protection is removed again.
func markWarningsOfApply(t *testing.T, h *netlab.Host, s spec.Spec) []string {
	t.Helper()
	var warnings []string
	err := h.Do(func() error {
		a, err := rules.NewApplier()
		if err != nil {
			return err
		}
		p := &Protector{Rules: a, Loader: loader.Options{Locks: t.TempDir()}}
		res, err := p.Apply("d0", s, ModeNetfilter)
		if err != nil {
			return err
		}
		warnings = res.Warnings
		return p.Remove("d0")
	})
	if err != nil {
		t.Fatal(err)
	}
	return warnings
}
