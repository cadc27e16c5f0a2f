package rules

import (
	"strings"
	"testing"
)

// Drift against real iptables (nft and legacy): a snapshot taken right after Apply reads back as
// no drift at all (else serve would apply the rules again every second), a flush or a deleted
// ruleset reads as what it took, and Restore repairs it.
func TestDriftNetfilter(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			inBackendNS(t, b)
			run(t, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
			addForeign(t, b)
			a := b.applier(t)
			p := mustConfig(t, "eth0", checkConf)
			mustApply(t, a, p)
			live := mustSnapshot(t, a, "eth0")
			originals, err := a.Originals()
			if err != nil {
				t.Fatal(err)
			}
			if got, err := a.Drift(live); err != nil || got != nil {
				t.Fatalf("Drift right after Apply: %q, %v; want nothing", got, err)
			}
			want := ownChains(xsynLists(t, a))
			for _, damage := range [][]string{
				{b.bin(4), "-F"},
				{b.bin(6), "-t", "raw", "-F"},
				{"sh", "-c", b.bin(4) + " -F && " + b.bin(4) + " -X && " + b.bin(4) + " -t nat -F && " + b.bin(4) + " -t nat -X"},
			} {
				run(t, damage[0], damage[1:]...)
				got, err := a.Drift(live)
				if err != nil || len(got) == 0 {
					t.Fatalf("Drift after %q: %q, %v; want what it took", damage, got, err)
				}
				t.Logf("after %s: %s", strings.Join(damage, " "), strings.Join(got, "; "))
				if err := a.Restore(p, originals); err != nil {
					t.Fatal(err)
				}
				if got, err := a.Drift(live); err != nil || got != nil {
					t.Errorf("Drift after Restore: %q, %v; want nothing", got, err)
				}
				diffLists(t, "after Restore", ownChains(xsynLists(t, a)), want)
			}
		})
	}
}
