package rules

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/xsyn-project/xsyn/spec"
)

var update = flag.Bool("update", false, "rewrite rules/testdata/*.golden from the current output")

func mustSpec(t *testing.T, s spec.Simple) spec.Spec {
	t.Helper()
	sp, err := s.Build()
	if err != nil {
		t.Fatalf("build spec %+v: %v", s, err)
	}
	return sp
}

func mustBuild(t *testing.T, iface string, s spec.Simple) Plan {
	t.Helper()
	p, err := Build(iface, mustSpec(t, s))
	if err != nil {
		t.Fatalf("build plan for %s: %v", iface, err)
	}
	return p
}

func renderAll(t *testing.T, p Plan) string {
	t.Helper()
	var b bytes.Buffer
	for _, f := range []spec.Family{spec.IPv4, spec.IPv6} {
		if err := p.Render(&b, f); err != nil {
			t.Fatalf("render %s: %v", f, err)
		}
	}
	return b.String()
}

func TestRenderGolden(t *testing.T) {
	cases := []struct {
		name  string
		iface string
		spec  spec.Simple
	}{
		{"one_ipv4_port", "eth0", spec.Simple{Ports: []uint16{80}, Dst: "0.0.0.0/0", WScale: -1}},
		{"dual_stack_ports", "eth0", spec.Simple{Ports: []uint16{22, 80, 443}, WScale: -1}},
		{"ipv4_prefix", "enp3s0", spec.Simple{Ports: []uint16{443}, Dst: "203.0.113.0/24", WScale: -1}},
		{"options_off", "eth1", spec.Simple{Ports: []uint16{8080}, MSS: 1400, WScale: 0, NoSACK: true, NoTimestamps: true, ECN: true}},
		{"ipv6_host", "br-lan", spec.Simple{Ports: []uint16{443, 8443}, Dst: "2001:db8::10", WScale: 9}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := renderAll(t, mustBuild(t, c.iface, c.spec))
			path := filepath.Join("testdata", c.name+".golden")
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("read golden file (create it with go test ./rules -update): %v", err)
			}
			if got != string(want) {
				t.Errorf("%s differs from the rendered plan (go test ./rules -update rewrites it):\n--- got\n%s--- want\n%s", path, got, want)
			}
		})
	}
}

func TestBuildShape(t *testing.T) {
	p := mustBuild(t, "eth0", spec.Simple{Ports: []uint16{80, 443}, WScale: -1})
	if p.Iface != "eth0" || len(p.Families) != 2 || p.Families[0].Family != spec.IPv4 || p.Families[1].Family != spec.IPv6 {
		t.Fatalf("plan families = %+v, want ipv4 then ipv6 for eth0", p.Families)
	}
	for _, fp := range p.Families {
		wantChains := []string{"XSYN-RAW-eth0", "XSYN-IN-eth0"}
		var names []string
		for _, c := range fp.Chains {
			names = append(names, c.Name)
			for _, r := range c.Rules {
				i := slices.Index(r.Args, "--comment")
				if i < 0 || r.Args[i+1] != "xsyn: "+r.Service || !strings.HasPrefix(r.Service, fp.Family.String()) {
					t.Errorf("%s rule %q: comment does not name its service %q", c.Name, r.Args, r.Service)
				}
				if !slices.Contains(r.Args, "-i") || r.Args[slices.Index(r.Args, "-i")+1] != "eth0" {
					t.Errorf("%s rule %q does not match -i eth0", c.Name, r.Args)
				}
			}
		}
		if !slices.Equal(names, wantChains) {
			t.Errorf("%s chains = %v, want %v", fp.Family, names, wantChains)
		}
		if len(fp.Chains[0].Rules) != 2 || len(fp.Chains[1].Rules) != 4 {
			t.Errorf("%s: %d raw and %d filter rules, want 2 and 4 (one NOTRACK, one SYNPROXY + one DROP per port)",
				fp.Family, len(fp.Chains[0].Rules), len(fp.Chains[1].Rules))
		}
		wantJumps := []Jump{
			{Table: "raw", From: "PREROUTING", To: "XSYN-RAW-eth0", Position: 1},
			{Table: "filter", From: "INPUT", To: "XSYN-IN-eth0", Position: 1},
		}
		if !slices.Equal(fp.Jumps, wantJumps) {
			t.Errorf("%s jumps = %+v, want %+v", fp.Family, fp.Jumps, wantJumps)
		}
	}
	want := []SysctlSetting{
		{Key: "net.netfilter.nf_conntrack_tcp_loose", Value: "0"},
		{Key: "net.ipv4.tcp_syncookies", Value: "1"},
	}
	if len(p.Sysctls) != len(want) {
		t.Fatalf("sysctls = %+v, want %+v", p.Sysctls, want)
	}
	for i, s := range p.Sysctls {
		if s.Key != want[i].Key || s.Value != want[i].Value || s.Why == "" {
			t.Errorf("sysctl %d = %+v, want %s=%s with a reason", i, s, want[i].Key, want[i].Value)
		}
	}
	if got := p.Sysctls[0].Path(); got != "/proc/sys/net/netfilter/nf_conntrack_tcp_loose" {
		t.Errorf("path = %s", got)
	}
}

func TestBuildOnlyFamiliesWithServices(t *testing.T) {
	p := mustBuild(t, "eth0", spec.Simple{Ports: []uint16{22}, Dst: "2001:db8::/64", WScale: -1})
	if _, ok := p.Family(spec.IPv4); ok {
		t.Errorf("an IPv6-only spec planned IPv4 rules: %+v", p.Families)
	}
	fp, ok := p.Family(spec.IPv6)
	if !ok || !slices.Contains(fp.Chains[0].Rules[0].Args, "2001:db8::/64") {
		t.Errorf("IPv6 plan = %+v, want rules for 2001:db8::/64", fp)
	}
}

func TestBuildRejects(t *testing.T) {
	good := mustSpec(t, spec.Simple{Ports: []uint16{80}, WScale: -1})
	cases := []struct {
		name  string
		iface string
		spec  spec.Spec
		want  error
		msg   string
	}{
		{"empty iface", "", good, ErrBadInterfaceName, `bad interface name "": empty`},
		{"too long", "0123456789abcdef", good, ErrBadInterfaceName, "16 characters, Linux allows at most 15"},
		{"space", "eth 0", good, ErrBadInterfaceName, "iptables chain names cannot hold whitespace"},
		{"wildcard", "eth+", good, ErrBadInterfaceName, "'+' is a wildcard in iptables -i"},
		{"negation", "!eth0", good, ErrBadInterfaceName, `character '!'`},
		{"slash", "a/b", good, ErrBadInterfaceName, `character '/'`},
		{"dot", ".", good, ErrBadInterfaceName, "not a valid Linux interface name"},
		{"dotdot", "..", good, ErrBadInterfaceName, "not a valid Linux interface name"},
		{"empty spec", "eth0", spec.Spec{}, spec.ErrNoServices, "plan rules for eth0: nothing to protect"},
		{"invalid service", "eth0", spec.Spec{Services: []spec.Service{{Family: spec.IPv4}}}, spec.ErrInvalid, "plan rules for eth0: invalid service"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, err := Build(c.iface, c.spec)
			if !errors.Is(err, c.want) {
				t.Fatalf("Build(%q) error = %v, want %v", c.iface, err, c.want)
			}
			if !strings.Contains(err.Error(), c.msg) {
				t.Errorf("error %q does not say %q", err, c.msg)
			}
			if len(p.Families) != 0 {
				t.Errorf("failed Build returned a plan: %+v", p)
			}
		})
	}
}

func TestLongestNamesFit(t *testing.T) {
	iface := "abcdefghijklmn."
	p := mustBuild(t, iface, spec.Simple{Ports: []uint16{80}, WScale: -1})
	for _, k := range chainKinds {
		for _, n := range []string{k.name(iface), k.stagingName(iface)} {
			if len(n) > MaxChainName {
				t.Errorf("chain %s is %d characters, iptables takes %d", n, len(n), MaxChainName)
			}
			oc, ok := parseChain(n)
			if !ok || oc.iface != iface || oc.kind.tag != k.tag || oc.staging != (n == k.stagingName(iface)) {
				t.Errorf("parseChain(%s) = %+v, %v", n, oc, ok)
			}
		}
	}
	if err := p.check(); err != nil {
		t.Errorf("plan of a 15-character interface: %v", err)
	}
}

func TestParseChainIgnoresForeign(t *testing.T) {
	for _, n := range []string{"INPUT", "XSYN-SAVED", "XSYN-LOG", "XSYN-RAW-", "XSYN-IN-a b", "MY-XSYN-IN-eth0", "XSYN-NEW-FWD-eth0"} {
		if oc, ok := parseChain(n); ok {
			t.Errorf("parseChain(%q) claimed a foreign chain: %+v", n, oc)
		}
	}
}

func TestArgsRoundTrip(t *testing.T) {
	cases := [][]string{
		{"-d", "10.0.0.0/24", "-m", "comment", "--comment", "xsyn: ipv4 10.0.0.0/24 port 80", "-j", "DROP"},
		{"-m", "comment", "--comment", `say "hi" \ it's`},
		{"-m", "comment", "--comment", "plain_word"},
		{"-m", "comment", "--comment", "x:y"},
		{"-m", "comment", "--comment", "tab\tand  two spaces"},
	}
	for _, args := range cases {
		line := joinArgs(args)
		got, err := splitArgs(line)
		if err != nil || !slices.Equal(got, args) {
			t.Errorf("splitArgs(joinArgs(%q)) = %q, %v (line %s)", args, got, err, line)
		}
	}
	// iptables-save quotes comments unless they are plain words.
	if got := joinArgs([]string{"--comment", "x:y"}); got != `--comment "x:y"` {
		t.Errorf("joinArgs quoted comment = %s", got)
	}
	if got := joinArgs([]string{"--comment", "plain_word", "-j", "DROP"}); got != "--comment plain_word -j DROP" {
		t.Errorf("joinArgs plain comment = %s", got)
	}
	if _, err := splitArgs(`-m comment --comment "open`); err == nil {
		t.Error("splitArgs accepted an unterminated quote")
	}
}

func TestParseSaved(t *testing.T) {
	k, v, ok, err := parseSaved(`-A XSYN-SAVED -m comment --comment "sysctl net.ipv4.tcp_syncookies=2"`)
	if err != nil || !ok || k != "net.ipv4.tcp_syncookies" || v != "2" {
		t.Errorf("parseSaved = %q %q %v %v", k, v, ok, err)
	}
	if _, _, ok, err := parseSaved("-N XSYN-SAVED"); ok || err != nil {
		t.Errorf("parseSaved(-N) = %v, %v; want no record, no error", ok, err)
	}
	for _, bad := range []string{
		`-A XSYN-SAVED -j ACCEPT`,
		`-A XSYN-SAVED -m comment --comment "sysctl net.ipv4.tcp_syncookies"`,
		`-A XSYN-SAVED -m comment --comment "note net.ipv4.tcp_syncookies=1"`,
		`-A XSYN-SAVED -m comment --comment "sysctl NET/x=1"`,
	} {
		if _, _, _, err := parseSaved(bad); err == nil {
			t.Errorf("parseSaved(%s) accepted a broken record", bad)
		}
	}
}

func TestProcSys(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "net", "netfilter")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "nf_conntrack_tcp_loose"), []byte("1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ps := ProcSys{Root: root}
	if v, err := ps.Get("net.netfilter.nf_conntrack_tcp_loose"); err != nil || v != "1" {
		t.Fatalf("Get = %q, %v; want 1", v, err)
	}
	if err := ps.Set("net.netfilter.nf_conntrack_tcp_loose", "0"); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "nf_conntrack_tcp_loose")); string(b) != "0\n" {
		t.Errorf("file holds %q after Set, want \"0\\n\"", b)
	}
	if err := ps.Set("net.netfilter.nope", "0"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Set of a missing sysctl = %v, want not-exist (and no file created)", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "nope")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Set created a file for a missing sysctl")
	}
}
