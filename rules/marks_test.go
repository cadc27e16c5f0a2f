package rules

import (
	"slices"
	"strings"
	"testing"

	"github.com/xsyn-project/xsyn/spec"
)

func TestIPTablesMarkBits(t *testing.T) {
	for _, c := range []struct {
		line string
		want uint32
	}{
		{"-A OUTPUT -j MARK --set-xmark 0x4/0x4", 0x4},
		{"-A OUTPUT -j MARK --set-xmark 0x20000000/0xffffffff", 0xffffffff}, // --set-mark 0x20000000
		{"-A PREROUTING -m mark --mark 0x1 -j ACCEPT", 0xffffffff},          // no mask: every bit
		{"-A PREROUTING -m mark --mark 0x100/0xf00 -j ACCEPT", 0xf00},
		{"-A PREROUTING -m mark ! --mark 0x100/0xf00 -j ACCEPT", 0xf00},
		{"-A PREROUTING -j CONNMARK --restore-mark --nfmask 0x1fff --ctmask 0x1fff", 0x1fff},
		{"-A OUTPUT -j MARK --or-mark 0x40", 0x40},
		{"-A OUTPUT -j MARK --and-mark 0xdfffffff", 0x20000000},
		{"-A PREROUTING -p tcp -j TPROXY --on-port 3128 --on-ip 0.0.0.0 --tproxy-mark 0x1/0x1", 0x1},
		{"-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT", 0},
		{`-A INPUT -m comment --comment "--mark 0x1" -j ACCEPT`, 0}, // a comment is no option
	} {
		if got := iptablesMarkBits(c.line); got != c.want {
			t.Errorf("iptablesMarkBits(%q) = %#x, want %#x", c.line, got, c.want)
		}
	}
}

// nftRuleset is what `nft list ruleset` printed for an iptables-nft mangle table (read through
// iptables, skipped here), xsyn's own chain, and a native table with mark rules.
const nftRuleset = `# Warning: table ip mangle is managed by iptables-nft, do not touch!
table ip mangle {
	chain OUTPUT {
		type route hook output priority mangle; policy accept;
		counter packets 0 bytes 0 meta mark set 0x20000000
	}
}
table inet fw {
	chain XSYN-MRK-eth0 {
		meta mark set mark and 0xdfffffff xor 0x20000000
	}
	chain c {
		meta mark & 0x0000ff00 == 0x00000100 accept
		meta mark & 0x20000000 == 0x20000000 accept
		meta mark set 0x1
		ct mark set meta mark
		meta mark set mark or 0x4
		meta mark set meta mark | 0x8
		meta mark set meta mark ^ 0x20000000
		tcp dport 22 accept
	}
}
`

func TestNFTMarkUsers(t *testing.T) {
	got := nftMarkUsers(nftRuleset, 0x20000000)
	want := []string{
		"nft inet fw c: meta mark & 0x20000000 == 0x20000000 accept",
		"nft inet fw c: meta mark set 0x1",
		"nft inet fw c: ct mark set meta mark",
		"nft inet fw c: meta mark set meta mark ^ 0x20000000",
	}
	if !slices.Equal(got, want) {
		t.Errorf("nftMarkUsers =\n\t%s\nwant\n\t%s", strings.Join(got, "\n\t"), strings.Join(want, "\n\t"))
	}
}

// TestMarkUsers: a foreign rule that uses xsyn's bit is found, in either family, and xsyn's own
// rules are not; the warning names the rule and the remedy.
func TestMarkUsers(t *testing.T) {
	ns := newFakeNS().withForeign()
	a := ns.applier()
	set := spec.DefaultSettings()
	mustApply(t, a, mustBuild(t, "eth0", dualSimple))
	if got, err := a.MarkUsers(set); err != nil || len(got) != 0 {
		t.Fatalf("MarkUsers with xsyn's rules and foreign rules without marks = %q, %v; want none", got, err)
	}
	if w, err := a.MarkWarning(set); w != "" || err != nil {
		t.Errorf("MarkWarning without users = %q, %v", w, err)
	}
	ns.tables[spec.IPv6][TableMangle]["PREROUTING"].rules = append(ns.tables[spec.IPv6][TableMangle]["PREROUTING"].rules,
		[]string{"-j", "MARK", "--set-xmark", "0x20000000/0x20000000"})
	ns.tables[spec.IPv4][TableMangle]["OUTPUT"].rules = append(ns.tables[spec.IPv4][TableMangle]["OUTPUT"].rules,
		[]string{"-m", "mark", "--mark", "0x100/0xf00", "-j", "ACCEPT"}) // other bits: fine
	a.nft = func() (string, error) { return nftRuleset, nil }
	got, err := a.MarkUsers(set)
	want := []string{
		"ipv6 mangle: -A PREROUTING -j MARK --set-xmark 0x20000000/0x20000000",
		"nft inet fw c: meta mark & 0x20000000 == 0x20000000 accept",
		"nft inet fw c: meta mark set 0x1",
		"nft inet fw c: ct mark set meta mark",
		"nft inet fw c: meta mark set meta mark ^ 0x20000000",
	}
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("MarkUsers = %q, %v; want %q", got, err, want)
	}
	// Other bits: nothing.
	other := set
	other.Mark, other.MarkMask = 0x10000, 0x10000
	a.nft = nil
	if got, err := a.MarkUsers(other); err != nil || len(got) != 0 {
		t.Errorf("MarkUsers(0x10000) = %q, %v; want none", got, err)
	}
	a.nft = func() (string, error) { return nftRuleset, nil }
	w, err := a.MarkWarning(set)
	for _, s := range []string{"0x20000000/0x20000000", "ipv6 mangle: -A PREROUTING -j MARK", "mark VALUE/MASK"} {
		if err != nil || !strings.Contains(w, s) {
			t.Errorf("MarkWarning = %q, %v; want it to say %q", w, err, s)
		}
	}
}

// TestMarkUsersNetfilter reads real iptables and nft output: xsyn's own rules use the mark and
// are not reported; a foreign iptables rule and a native nftables rule that use its bit are.
func TestMarkUsersNetfilter(t *testing.T) {
	b := backends[0]
	enterNewNetNS(t)
	a := b.applier(t)
	a.nft = SystemNFT
	set := spec.DefaultSettings()
	mustApply(t, a, mustConfig(t, "eth0", "synproxy input inface eth0 dport 80 accept\n"))
	if got, err := a.MarkUsers(set); err != nil || len(got) != 0 {
		t.Fatalf("MarkUsers with xsyn's rules alone = %q, %v; want none", got, err)
	}
	run(t, "iptables", "-t", "mangle", "-A", "PREROUTING", "-p", "tcp", "-j", "MARK", "--set-mark", "0x20000000")
	run(t, "ip6tables", "-t", "mangle", "-A", "OUTPUT", "-m", "mark", "--mark", "0x100/0xf00", "-j", "ACCEPT") // other bits
	run(t, "nft", "add", "table", "inet", "fw")
	run(t, "nft", "add", "chain", "inet", "fw", "pre", "{ type filter hook prerouting priority -150; }")
	run(t, "nft", "add", "rule", "inet", "fw", "pre", "meta", "mark", "set", "mark", "or", "0x20000000")
	got, err := a.MarkUsers(set)
	want := []string{
		"ipv4 mangle: -A PREROUTING -p tcp -j MARK --set-xmark 0x20000000/0xffffffff",
		"nft inet fw pre: meta mark set meta mark | 0x20000000",
	}
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("MarkUsers = %q, %v; want %q", got, err, want)
	}
}
