package rules

import (
	"bytes"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/xsyn-project/xsyn/spec"
)

// checkConf has every chain kind in IPv4 (FWD from the forward statement) and a reject-only
// part in IPv6 besides an accept.
const checkConf = `synproxy input inface eth0 dport 443 accept
synproxy4 forward inface eth0 dst 203.0.113.10 dport 80 dnat to 10.0.0.5:8080
synproxy6 input inface eth0 dport 23 reject
`

// restore feeds text to the family's iptables-restore, which replaces the tables it names and
// only those, as a firewall reload does.
func (b backend) restore(t *testing.T, f spec.Family, text string) {
	t.Helper()
	name := b.bin(f) + "-restore"
	cmd := exec.Command(name)
	cmd.Stdin = strings.NewReader(text)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: %v: %s\n%s", name, err, stderr.String(), text)
	}
}

// Check against real iptables (nft and legacy) in a namespace: what firewall reloads and
// hand-made deletions leave is reported piece by piece, and applying again repairs it.
func TestCheckNetfilter(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			inBackendNS(t, b)
			testCheckNetfilter(t, b)
		})
	}
}

func testCheckNetfilter(t *testing.T, b backend) {
	v4, v6 := spec.IPv4, spec.IPv6
	ipt4, ipt6 := b.bin(v4), b.bin(v6)
	run(t, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
	addForeign(t, b)
	a := b.applier(t)
	p := mustConfig(t, "eth0", checkConf)
	mustApply(t, a, p)
	if st := mustCheck(t, a, "eth0"); !st.Complete() || len(st.Families) != 2 || len(st.Families[0].Chains) != 8 || len(st.Families[1].Chains) != 7 {
		t.Fatalf("Check after apply = %+v; want complete, 8 ipv4 chains, 7 ipv6 (no FWD)", st)
	}
	want := ownChains(xsynLists(t, a))

	for _, step := range []struct {
		name   string
		damage func()
		want   []string
	}{
		{
			"iptables-restore of a filter-only file",
			func() {
				b.restore(t, v4, "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"+
					"-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\nCOMMIT\n")
			},
			[]string{gone(v4, kindIn, "eth0"), gone(v4, kindOut, "eth0"), gone(v4, kindOrphan, "eth0")},
		},
		{
			"ip6tables -F",
			func() { run(t, ipt6, "-F") },
			[]string{
				"ipv6 filter INPUT: chain XSYN-IN-eth0 is flushed and the jump to it is gone",
				"ipv6 filter OUTPUT: chain XSYN-OUT-eth0 is flushed and the jump to it is gone",
				"ipv6 filter OUTPUT: chain XSYN-ORP-eth0 is flushed and the jump to it is gone",
			},
		},
		{
			"iptables -F; iptables -X",
			func() { run(t, ipt4, "-F"); run(t, ipt4, "-X") },
			[]string{gone(v4, kindIn, "eth0"), gone(v4, kindOut, "eth0"), gone(v4, kindOrphan, "eth0")},
		},
		{
			"iptables-restore of a raw-only file",
			func() { b.restore(t, v4, "*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n") },
			[]string{gone(v4, kindRaw, "eth0"), gone(v4, kindSynack, "eth0")},
		},
		{
			"ip6tables -t nat -F; -X",
			func() { run(t, ipt6, "-t", "nat", "-F"); run(t, ipt6, "-t", "nat", "-X") },
			[]string{gone(v6, kindNat, "eth0")},
		},
		{
			"iptables -F XSYN-FWD-eth0",
			func() { run(t, ipt4, "-F", "XSYN-FWD-eth0") },
			[]string{"ipv4 filter FORWARD: chain XSYN-FWD-eth0 is flushed: it has no rules"},
		},
		{
			"iptables -D OUTPUT -j XSYN-ORP-eth0",
			func() { run(t, ipt4, "-D", "OUTPUT", "-j", "XSYN-ORP-eth0") },
			[]string{"ipv4 filter OUTPUT: the jump to chain XSYN-ORP-eth0 is gone"},
		},
	} {
		step.damage()
		st := mustCheck(t, a, "eth0")
		if got := st.Missing(); !slices.Equal(got, step.want) {
			t.Errorf("%s: missing\n  got  %q\n  want %q", step.name, got, step.want)
		}
		if !st.Installed() || st.Complete() {
			t.Errorf("%s: installed %v, complete %v; want true, false", step.name, st.Installed(), st.Complete())
		}
		mustApply(t, a, p)
		if st := mustCheck(t, a, "eth0"); !st.Complete() {
			t.Errorf("%s, applied again: %q missing", step.name, st.Missing())
		}
		diffLists(t, step.name+", applied again", ownChains(xsynLists(t, a)), want)
	}

	mustRemove(t, a, "eth0")
	if st := mustCheck(t, a, "eth0"); st.Installed() || len(st.Missing()) != 0 {
		t.Errorf("Check after Remove = %+v; want nothing installed, nothing missing", st)
	}
}
