package rules

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/xsyn-project/xsyn/spec"
)

var update = flag.Bool("update", false, "rewrite rules/testdata/*.golden from the current output")

// mustSpec builds the flag form's spec with every statement on the SYNPROXY path: its `input
// ... accept` statements may take the handoff (auto may choose it), which has no rules to test.
func mustSpec(t *testing.T, s spec.Simple) spec.Spec {
	t.Helper()
	sp, err := s.Build()
	if err != nil {
		t.Fatalf("build spec %+v: %v", s, err)
	}
	if sp, err = sp.WithoutHandoff("test of the SYNPROXY rules"); err != nil {
		t.Fatalf("spec %+v on the SYNPROXY path: %v", s, err)
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

// configSpec parses a configuration (named name in positions) and returns iface's spec. A
// statement that does not ask for a path (`path handoff`) takes SYNPROXY, as mustSpec's do,
// whatever auto would choose: these tests are about the SYNPROXY rules.
func configSpec(t *testing.T, name, iface, src string) spec.Spec {
	t.Helper()
	cfg, err := spec.ParseConfig(name, []byte(src), nil)
	if err != nil {
		t.Fatalf("parse %s: %v\n%s", name, err, src)
	}
	for i := range cfg.Statements {
		if cfg.Statements[i].Via == spec.ViaAuto {
			cfg.Statements[i].Via = spec.ViaSynproxy
		}
	}
	s, err := cfg.For(iface)
	if err != nil {
		t.Fatalf("spec of %s for %s: %v", name, iface, err)
	}
	return s
}

// mustConfig plans the statements of configuration src that apply to iface (on SYNPROXY unless
// they ask for the handoff).
func mustConfig(t *testing.T, iface, src string) Plan {
	t.Helper()
	p, err := Build(iface, configSpec(t, "test.conf", iface, src))
	if err != nil {
		t.Fatalf("build plan for %s: %v\n%s", iface, err, src)
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

// checkGolden compares got with testdata/NAME.golden, or rewrites it with -update.
func checkGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
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
			checkGolden(t, c.name, renderAll(t, mustBuild(t, c.iface, c.spec)))
		})
	}
}

// configGolden are the configurations testdata/NAME.conf, planned for eth0 and rendered to
// testdata/NAME.golden.
var configGolden = []string{
	"input_accept",   // accept, on this host, both families
	"input_redirect", // redirect to a local port, both families, with route_localnet
	"forward_dnat",   // dnat to IP:PORT (forward), to IP (input, server behind), to :PORT (local)
	"forward_front",  // forward dnat and redirect: SYNPROXY in INPUT and FORWARD
	"forward_accept", // routed without NAT, with outface
	"action_chain",   // a user chain
	"reject",
	"drop",
	"negations", // src not a list (complement), src not one prefix, dport not one and a list
	"ranges",    // address range, port ranges, sport
	"multiport", // more ports than one multiport match holds
	"loglimit",
	"loopback_loose",
	"loopback_none",
	"custom_mark",
	"paths_mixed",        // both paths: the handoff's flows skip conntrack (HFI, HFO)
	"paths_handoff_only", // nothing to install
}

// goldenSpec is the spec of testdata/NAME.conf for eth0.
func goldenSpec(t *testing.T, name string) spec.Spec {
	t.Helper()
	src, err := os.ReadFile(filepath.Join("testdata", name+".conf"))
	if err != nil {
		t.Fatal(err)
	}
	return configSpec(t, name+".conf", "eth0", string(src))
}

func TestRenderGoldenConfig(t *testing.T) {
	for _, name := range configGolden {
		t.Run(name, func(t *testing.T) {
			p, err := Build("eth0", goldenSpec(t, name))
			if err != nil {
				t.Fatalf("build plan: %v", err)
			}
			checkGolden(t, name, renderAll(t, p))
		})
	}
	// Every configuration in testdata is a case, and every golden file belongs to one.
	confs, _ := filepath.Glob(filepath.Join("testdata", "*.conf"))
	for _, c := range confs {
		if name := strings.TrimSuffix(filepath.Base(c), ".conf"); !slices.Contains(configGolden, name) {
			t.Errorf("%s is not in configGolden", c)
		}
	}
}

// argAfter returns the argument following flag in args, or "".
func argAfter(args []string, flag string) string {
	if i := slices.Index(args, flag); i >= 0 && i+1 < len(args) {
		return args[i+1]
	}
	return ""
}

// target returns the rule's target and its options.
func target(args []string) []string {
	if i := slices.Index(args, "-j"); i >= 0 {
		return args[i+1:]
	}
	return nil
}

const shapeConf = `synproxy4 input inface eth0 dst 198.51.100.1 dport 80 accept
synproxy4 forward inface eth0 outface eth1 dst 203.0.113.10 dport 443 dnat to 10.0.0.5
`

func TestBuildShape(t *testing.T) {
	p := mustConfig(t, "eth0", shapeConf)
	stmts := strings.Split(strings.TrimSpace(shapeConf), "\n")
	if p.Iface != "eth0" || len(p.Families) != 1 || p.Families[0].Family != spec.IPv4 {
		t.Fatalf("plan families = %+v, want ipv4 only, for eth0", p.Families)
	}
	fp := p.Families[0]

	// Every kind of chain, in the order of the packet's path, each jumped to once from its
	// builtin chain; the orphan chain after every statement's OUTPUT chain.
	wantJumps := []Jump{
		{Table: "raw", From: "PREROUTING", To: "XSYN-RAW-eth0", Position: 1},
		{Table: "raw", From: "OUTPUT", To: "XSYN-SAK-eth0", Position: 1, After: "HFO"},
		{Table: "mangle", From: "OUTPUT", To: "XSYN-MRK-eth0", Position: 1},
		{Table: "nat", From: "OUTPUT", To: "XSYN-NAT-eth0", Position: 1},
		{Table: "filter", From: "INPUT", To: "XSYN-IN-eth0", Position: 1},
		{Table: "filter", From: "FORWARD", To: "XSYN-FWD-eth0", Position: 1},
		{Table: "filter", From: "OUTPUT", To: "XSYN-OUT-eth0", Position: 1},
		{Table: "filter", From: "OUTPUT", To: "XSYN-ORP-eth0", Position: 1, After: "OUT"},
	}
	if !slices.Equal(fp.Jumps, wantJumps) {
		t.Errorf("jumps = %+v\nwant %+v", fp.Jumps, wantJumps)
	}
	var names []string
	for _, c := range fp.Chains {
		names = append(names, c.Table+"/"+c.Name)
	}
	wantNames := []string{"raw/XSYN-RAW-eth0", "raw/XSYN-SAK-eth0", "mangle/XSYN-MRK-eth0", "nat/XSYN-NAT-eth0", "filter/XSYN-IN-eth0",
		"filter/XSYN-FWD-eth0", "filter/XSYN-OUT-eth0", "filter/XSYN-ORP-eth0"}
	if !slices.Equal(names, wantNames) {
		t.Errorf("chains = %v, want %v", names, wantNames)
	}

	// targets[chain][origin] are the targets of the rules each statement put in each chain.
	targets := map[string]map[string][]string{}
	for _, c := range fp.Chains {
		if c.Why == "" {
			t.Errorf("%s says nothing about what it is for", c.Name)
		}
		targets[c.Name] = map[string][]string{}
		for _, r := range c.Rules {
			if got := argAfter(r.Args, "--comment"); got != "xsyn: "+r.Origin {
				t.Errorf("%s rule %q: comment %q does not name its origin %q", c.Name, r.Args, got, r.Origin)
			}
			if r.Why == "" {
				t.Errorf("%s rule %q says nothing about why", c.Name, r.Args)
			}
			if !slices.Contains(stmts, r.Origin) && !slices.Contains([]string{"loopback strict", "synproxy isolation", "orphans"}, r.Origin) {
				t.Errorf("%s rule %q: origin %q is neither a statement nor a setting", c.Name, r.Args, r.Origin)
			}
			targets[c.Name][r.Origin] = append(targets[c.Name][r.Origin], strings.Join(target(r.Args), " "))
			checkInterfaces(t, c, r, stmts, "eth1")
		}
	}

	input, forward := stmts[0], stmts[1]
	want := map[string]map[string][]string{
		"XSYN-RAW-eth0": {
			"loopback strict": {"DROP"},
			input:             {"CT --notrack"},
			forward:           {"CT --notrack"},
		},
		"XSYN-SAK-eth0": {
			// SYNPROXY's SYN-ACK, untracked
			input:   {"CT --notrack"},
			forward: {"CT --notrack"},
		},
		"XSYN-MRK-eth0": {
			// The mark of SYNPROXY's SYN; the timestamps of its ACK stripped
			input:   {"MARK --set-xmark 0x20000000/0x20000000", "TCPOPTSTRIP --strip-options 8"},
			forward: {"MARK --set-xmark 0x20000000/0x20000000", "TCPOPTSTRIP --strip-options 8"},
		},
		"XSYN-NAT-eth0": {
			input:   {"ACCEPT"},
			forward: {"DNAT --to-destination 10.0.0.5"},
		},
		"XSYN-IN-eth0": {
			// Not the forward statement: its outface limits it to routed destinations.
			"loopback strict":    {"ACCEPT"},
			"synproxy isolation": {"ACCEPT"},
			input:                {"SYNPROXY --sack-perm --timestamp --wscale 7 --mss 1460", "DROP"},
		},
		"XSYN-FWD-eth0": {
			// SYNPROXY, INVALID client->server, INVALID server->client
			forward: {"SYNPROXY --sack-perm --timestamp --wscale 7 --mss 1460", "DROP", "DROP"},
		},
		"XSYN-OUT-eth0": {
			// SYN-ACK to the client, the action, and (local server) INVALID server->client
			input: {"ACCEPT", "ACCEPT", "DROP"},
			// SYN-ACK to the client, the action; the server's packets pass FORWARD
			forward: {"ACCEPT", "ACCEPT"},
		},
		"XSYN-ORP-eth0": {
			"orphans": {"LOG --log-prefix xsyn ORPHAN SYNPROXY->SERVER ", "DROP"},
		},
	}
	for chain, byOrigin := range want {
		for origin, w := range byOrigin {
			if got := targets[chain][origin]; !slices.Equal(got, w) {
				t.Errorf("%s rules of %q have targets %q, want %q", chain, origin, got, w)
			}
		}
		if len(targets[chain]) != len(byOrigin) {
			t.Errorf("%s has rules of %d origins, want %d: %v", chain, len(targets[chain]), len(byOrigin), targets[chain])
		}
	}

	// The forward statement's server is 10.0.0.5, behind the host: its INVALID packets to the
	// client are dropped in FORWARD, matched by the server's address, not by the client's
	// interface.
	fwd := fp.Chains[slices.Index(names, "filter/XSYN-FWD-eth0")].Rules
	if last := fwd[len(fwd)-1].Args; argAfter(last, "-s") != "10.0.0.5/32" || argAfter(last, "--sport") != "443" {
		t.Errorf("server->client rule of the forward statement = %q, want -s 10.0.0.5/32 --sport 443", last)
	}
	// The action matches SYNPROXY's SYN by its original destination, after NAT.
	for _, r := range fp.Chains[slices.Index(names, "filter/XSYN-OUT-eth0")].Rules {
		if r.Origin == forward && slices.Contains(r.Args, "--mark") &&
			(argAfter(r.Args, "--ctorigdst") != "203.0.113.10" || argAfter(r.Args, "--ctorigdstport") != "443") {
			t.Errorf("action rule of the forward statement = %q, want --ctorigdst 203.0.113.10 --ctorigdstport 443", r.Args)
		}
	}

	if len(p.Requires) != 1 || p.Requires[0].Sysctl != "net.ipv4.ip_forward" || p.Requires[0].Origin != forward {
		t.Errorf("requires = %+v, want ip_forward for %q", p.Requires, forward)
	}
	wantSys := []SysctlSetting{
		{Key: "net.netfilter.nf_conntrack_tcp_loose", Value: "0"},
		{Key: "net.ipv4.tcp_syncookies", Value: "1"},
	}
	if len(p.Sysctls) != len(wantSys) {
		t.Fatalf("sysctls = %+v, want %+v", p.Sysctls, wantSys)
	}
	for i, s := range p.Sysctls {
		if s.Key != wantSys[i].Key || s.Value != wantSys[i].Value || s.Why == "" {
			t.Errorf("sysctl %d = %+v, want %s=%s with a reason", i, s, wantSys[i].Key, wantSys[i].Value)
		}
	}
	if got := p.Sysctls[0].Path(); got != "/proc/sys/net/netfilter/nf_conntrack_tcp_loose" {
		t.Errorf("path = %s", got)
	}
	if err := p.check(); err != nil {
		t.Errorf("Build made a plan its own check refuses: %v", err)
	}
}

// checkInterfaces checks the interface matches of a rule: the client's packets are matched by
// the interface they arrive on (RAW, IN, FWD); SYNPROXY's own packets and the server's replies
// have no such interface, and rules of chains jumped to from OUTPUT or PREROUTING cannot
// match -i or -o respectively (iptables would refuse the rule in the builtin chain, and never
// match it in a user chain).
func checkInterfaces(t *testing.T, c Chain, r Rule, stmts []string, outface string) {
	t.Helper()
	oc, _ := parseChain(c.Name)
	in, out := argAfter(r.Args, "-i"), argAfter(r.Args, "-o")
	fromStmt := slices.Contains(stmts, r.Origin)
	clientSide := slices.Contains(r.Args, "--dport") || slices.Contains(r.Args, "--dports")
	switch oc.kind.hook {
	case "PREROUTING":
		if out != "" {
			t.Errorf("%s rule %q matches -o before routing", c.Name, r.Args)
		}
		if fromStmt && in != "eth0" {
			t.Errorf("%s rule %q does not match -i eth0", c.Name, r.Args)
		}
	case "OUTPUT":
		if in != "" {
			t.Errorf("%s rule %q matches -i on the OUTPUT path", c.Name, r.Args)
		}
	case "INPUT", "FORWARD":
		switch {
		case fromStmt && clientSide && in != "eth0":
			t.Errorf("%s rule %q (the client's packets) does not match -i eth0", c.Name, r.Args)
		case fromStmt && !clientSide && in != "":
			t.Errorf("%s rule %q (the server's packets) matches -i %s", c.Name, r.Args, in)
		case !fromStmt && in != "lo":
			t.Errorf("%s rule %q (loopback policy) does not match -i lo", c.Name, r.Args)
		}
		if oc.kind.hook == "INPUT" && out != "" {
			t.Errorf("%s rule %q matches -o in INPUT", c.Name, r.Args)
		}
		if oc.kind.hook == "FORWARD" && clientSide && out != outface {
			t.Errorf("%s rule %q matches -o %q, want the statement's outface %q", c.Name, r.Args, out, outface)
		}
	}
}

// TestBuildInterfaces runs the interface checks over every configuration of testdata.
func TestBuildInterfaces(t *testing.T) {
	for _, name := range configGolden {
		s := goldenSpec(t, name)
		p, err := Build("eth0", s)
		if err != nil {
			t.Fatal(err)
		}
		var stmts []string
		for _, st := range s.Statements {
			stmts = append(stmts, st.Origin())
		}
		outface := ""
		if name == "forward_accept" {
			outface = "eth1"
		}
		for _, fp := range p.Families {
			for _, c := range fp.Chains {
				for _, r := range c.Rules {
					checkInterfaces(t, c, r, stmts, outface)
				}
			}
		}
	}
}

func TestBuildOnlyFamiliesWithStatements(t *testing.T) {
	p := mustBuild(t, "eth0", spec.Simple{Ports: []uint16{22}, Dst: "2001:db8::/64", WScale: -1})
	if _, ok := p.Family(spec.IPv4); ok {
		t.Errorf("an IPv6-only spec planned IPv4 rules: %+v", p.Families)
	}
	fp, ok := p.Family(spec.IPv6)
	if !ok || fp.Chains[0].Name != "XSYN-RAW-eth0" || !slices.ContainsFunc(fp.Chains[0].Rules, func(r Rule) bool {
		return argAfter(r.Args, "-d") == "2001:db8::/64" && slices.Contains(r.Args, "CT")
	}) {
		t.Errorf("IPv6 plan = %+v, want a NOTRACK rule for 2001:db8::/64", fp)
	}
	if len(p.Sysctls) != 2 || len(p.Requires) != 0 {
		t.Errorf("sysctls %+v, requires %+v; want the two namespace sysctls only", p.Sysctls, p.Requires)
	}
}

// TestBuildSysctlsAndRequires: what each action needs of the namespace.
func TestBuildSysctlsAndRequires(t *testing.T) {
	cases := []struct {
		name     string
		iface    string
		conf     string
		sysctls  []string // beyond the namespace's two, as key=value
		paths    []string // of those
		requires []string // Requirement.String()
	}{
		{name: "accept", iface: "eth0", conf: "synproxy input inface eth0 dport 80 accept"},
		{name: "redirect", iface: "eth0.100", conf: "synproxy input inface eth0.100 dport 2222 redirect to 22",
			sysctls: []string{"net.ipv4.conf.eth0/100.route_localnet=1"},
			paths:   []string{"/proc/sys/net/ipv4/conf/eth0.100/route_localnet"}},
		{name: "dnat to a local port", iface: "eth0", conf: "synproxy input inface eth0 dport 80 dnat to :8080"},
		{name: "dnat to another host", iface: "eth0", conf: "synproxy4 input inface eth0 dport 80 dnat to 10.0.0.5",
			requires: []string{"sysctl net.ipv4.ip_forward must be 1 (the server is behind this host: the client's and the server's packets are routed)"}},
		{name: "forward, both families, twice", iface: "eth0", conf: "synproxy forward inface eth0 dport 80 accept\nsynproxy forward inface eth0 dport 81 reject",
			requires: []string{
				"sysctl net.ipv4.ip_forward must be 1 (the server is behind this host: the client's and the server's packets are routed)",
				"sysctl net.ipv6.conf.all.forwarding must be 1 (the server is behind this host: the client's and the server's packets are routed)",
			}},
		{name: "user chain", iface: "eth0", conf: "synproxy input inface eth0 dport 22 action TRAP",
			requires: []string{
				"ipv4 filter chain TRAP must exist (the statement's action jumps to it)",
				"ipv6 filter chain TRAP must exist (the statement's action jumps to it)",
			}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := mustConfig(t, c.iface, c.conf)
			var sys, paths, reqs []string
			for _, s := range p.Sysctls[2:] {
				sys = append(sys, s.Key+"="+s.Value)
				paths = append(paths, s.Path())
				if err := checkSysctl(s.Key, s.Value); err != nil {
					t.Errorf("the plan's own sysctl fails its check: %v", err)
				}
			}
			for _, r := range p.Requires {
				reqs = append(reqs, r.String())
				if !strings.HasPrefix(c.conf, r.Origin) && !strings.Contains(c.conf, "\n"+r.Origin) {
					t.Errorf("requirement %s: origin %q is not a statement of the configuration", r, r.Origin)
				}
			}
			if !slices.Equal(sys, c.sysctls) || !slices.Equal(paths, c.paths) || !slices.Equal(reqs, c.requires) {
				t.Errorf("sysctls %q at %q, requires %q\nwant %q at %q, requires %q", sys, paths, reqs, c.sysctls, c.paths, c.requires)
			}
		})
	}
}

// ports lists the ports the multiport or tcp port option of args match.
func ports(t *testing.T, args []string, flags ...string) []int {
	t.Helper()
	var out []int
	for _, flag := range flags {
		v := argAfter(args, flag)
		if v == "" {
			continue
		}
		for _, item := range strings.Split(v, ",") {
			lo, hi, isRange := strings.Cut(item, ":")
			if !isRange {
				hi = lo
			}
			a, err1 := strconv.Atoi(lo)
			b, err2 := strconv.Atoi(hi)
			if err1 != nil || err2 != nil {
				t.Fatalf("port item %q of %q", item, args)
			}
			for p := a; p <= b; p++ {
				out = append(out, p)
			}
		}
	}
	return out
}

func TestBuildMultiportChunks(t *testing.T) {
	src, err := os.ReadFile(filepath.Join("testdata", "multiport.conf"))
	if err != nil {
		t.Fatal(err)
	}
	s := configSpec(t, "multiport.conf", "eth0", string(src))
	want := s.Statements[0].Match.Dport.Ports()
	p, err := Build("eth0", s)
	if err != nil {
		t.Fatal(err)
	}
	raw := p.Families[0].Chains[0]
	var got []int
	chunks := 0
	for _, r := range raw.Rules {
		if v := argAfter(r.Args, "--dports"); v != "" {
			chunks++
			weight := 0
			for _, item := range strings.Split(v, ",") {
				weight++
				if strings.Contains(item, ":") {
					weight++
				}
			}
			if weight > maxMultiport {
				t.Errorf("multiport match %s holds %d ports, iptables takes %d", v, weight, maxMultiport)
			}
			got = append(got, ports(t, r.Args, "--dports")...)
		}
	}
	var wantInts []int
	for _, p := range want {
		wantInts = append(wantInts, int(p))
	}
	if chunks < 2 || !slices.Equal(got, wantInts) {
		t.Errorf("%d multiport rules match ports %v, want the statement's %v in at least 2", chunks, got, wantInts)
	}
}

// TestBuildProxyChains: SYNPROXY sits where the client's packets pass. A forward statement
// whose action translates the destination also has it in INPUT, since the address the client
// asks for may be this host's own (FireHOL's "forward ... dst YOUR_INTERNET_IP ... dnat to"),
// unless an outface limits it to routed destinations.
func TestBuildProxyChains(t *testing.T) {
	cases := []struct {
		stmt string
		want []string // chains with the statement's SYNPROXY and INVALID drop rules
	}{
		{"synproxy4 input inface eth0 dst 192.0.2.1 dport 80 accept", []string{"XSYN-IN-eth0"}},
		{"synproxy4 input inface eth0 dst 192.0.2.1 dport 80 dnat to 10.0.0.5", []string{"XSYN-IN-eth0"}},
		{"synproxy4 forward inface eth0 dst 192.0.2.1 dport 80 dnat to 10.0.0.5", []string{"XSYN-IN-eth0", "XSYN-FWD-eth0"}},
		{"synproxy6 forward inface eth0 dst 2001:db8::10 dport 80 dnat to [2001:db8:1::5]:8080", []string{"XSYN-IN-eth0", "XSYN-FWD-eth0"}},
		{"synproxy4 forward inface eth0 dport 80 dnat to :8080", []string{"XSYN-IN-eth0", "XSYN-FWD-eth0"}},
		{"synproxy4 forward inface eth0 dst 192.0.2.1 dport 2222 redirect to 22", []string{"XSYN-IN-eth0", "XSYN-FWD-eth0"}},
		{"synproxy4 forward inface eth0 outface eth1 dst 192.0.2.1 dport 80 dnat to 10.0.0.5", []string{"XSYN-FWD-eth0"}},
		{"synproxy4 forward inface eth0 outface not eth1 dst 192.0.2.1 dport 80 dnat to 10.0.0.5", []string{"XSYN-FWD-eth0"}},
		{"synproxy4 forward inface eth0 dst 203.0.113.10 dport 80 accept", []string{"XSYN-FWD-eth0"}},
		{"synproxy4 forward inface eth0 dst 203.0.113.10 dport 80 reject", []string{"XSYN-FWD-eth0"}},
		{"synproxy4 forward inface eth0 dst 203.0.113.10 dport 80 drop", []string{"XSYN-FWD-eth0"}},
		{"synproxy4 forward inface eth0 dst 203.0.113.10 dport 80 action TRAP", []string{"XSYN-FWD-eth0"}},
	}
	for _, c := range cases {
		t.Run(c.stmt, func(t *testing.T) {
			p := mustConfig(t, "eth0", c.stmt)
			var got []string
			for _, fp := range p.Families {
				for _, ch := range fp.Chains {
					var synproxy, drops int
					for _, r := range ch.Rules {
						if r.Origin != c.stmt || !(slices.Contains(r.Args, "--dport") || slices.Contains(r.Args, "--dports")) {
							continue
						}
						switch strings.Join(target(r.Args), " ") {
						case "DROP":
							drops++
						case "ACCEPT", "CT --notrack", "MARK --set-xmark 0x20000000/0x20000000":
						default:
							if slices.Contains(r.Args, "SYNPROXY") {
								synproxy++
							}
						}
						if ch.Table == TableFilter && argAfter(r.Args, "-i") != "eth0" {
							t.Errorf("%s rule %q does not match the client's interface", ch.Name, r.Args)
						}
						if ch.Name == "XSYN-IN-eth0" && slices.Contains(r.Args, "-o") {
							t.Errorf("%s rule %q matches -o, which INPUT refuses", ch.Name, r.Args)
						}
					}
					if synproxy > 0 || drops > 0 {
						if synproxy != 1 || drops != 1 {
							t.Errorf("%s: %d SYNPROXY and %d INVALID drop rules of the statement, want one each", ch.Name, synproxy, drops)
						}
						got = append(got, ch.Name)
					}
				}
			}
			if !slices.Equal(got, c.want) {
				t.Errorf("SYNPROXY in %v, want %v", got, c.want)
			}
		})
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
		{"services without statements", "eth0", spec.Spec{Services: good.Services}, spec.ErrNoServices, "plan rules for eth0: nothing to protect"},
		{"bad settings", "eth0", spec.Spec{Statements: good.Statements}, spec.ErrInvalid, "plan rules for eth0: invalid service: mark mask is 0"},
		{"outface not several", "eth0",
			configSpec(t, "x.conf", "eth0", "\nsynproxy4 forward inface eth0 outface not eth1,eth2 dport 80 accept"),
			ErrUnsupported, "plan rules for eth0: x.conf:2: unsupported statement: -o not with several interfaces (not eth1,eth2)"},
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
	sub, _ := subKind("fzz") // the last subchain of negated lists a table can have
	for _, k := range append(slices.Clone(chainKinds), sub) {
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

func TestParseChain(t *testing.T) {
	for _, n := range []string{"INPUT", "XSYN-SAVED", "XSYN-LOG", "XSYN-RAW-", "XSYN-IN-a b", "MY-XSYN-IN-eth0",
		"XSYN-NEW-XYZ-eth0", "XSYN-NEW-eth0", "XSYN-NEW-NEW-IN-eth0", "XSYN-ORP-eth+", "xsyn-IN-eth0",
		"XSYN-F00-eth0", "XSYN-f0-eth0", "XSYN-x00-eth0", "XSYN-f0Z-eth0", "XSYN-f000-eth0"} {
		if oc, ok := parseChain(n); ok {
			t.Errorf("parseChain(%q) claimed a foreign chain: %+v", n, oc)
		}
	}
	for _, c := range []struct {
		name, tag, iface string
		staging          bool
	}{
		{"XSYN-NEW-FWD-eth0", "FWD", "eth0", true},
		{"XSYN-ORP-eth0.100", "ORP", "eth0.100", false},
		{"XSYN-MRK-NEW-x", "MRK", "NEW-x", false},
		{"XSYN-f0z-eth0", "f0z", "eth0", false},
		{"XSYN-NEW-r00-eth0.5", "r00", "eth0.5", true},
		{"XSYN-RAW-f00-x", "RAW", "f00-x", false},
	} {
		oc, ok := parseChain(c.name)
		if !ok || oc.kind.tag != c.tag || oc.iface != c.iface || oc.staging != c.staging {
			t.Errorf("parseChain(%q) = %+v, %v; want %s of %s, staging %v", c.name, oc, ok, c.tag, c.iface, c.staging)
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
		{"-m", "comment", "--comment", `xsyn: synproxy4 input dport 80 accept loglimit "SYNPROXY HTTP"`, "-j", "LOG", "--log-prefix", "SYNPROXY HTTP "},
	}
	for _, args := range cases {
		line := joinArgs(args)
		got, err := SplitArgs(line)
		if err != nil || !slices.Equal(got, args) {
			t.Errorf("SplitArgs(joinArgs(%q)) = %q, %v (line %s)", args, got, err, line)
		}
	}
	// iptables-save quotes comments unless they are plain words.
	if got := joinArgs([]string{"--comment", "x:y"}); got != `--comment "x:y"` {
		t.Errorf("joinArgs quoted comment = %s", got)
	}
	if got := joinArgs([]string{"--comment", "plain_word", "-j", "DROP"}); got != "--comment plain_word -j DROP" {
		t.Errorf("joinArgs plain comment = %s", got)
	}
	if _, err := SplitArgs(`-m comment --comment "open`); err == nil {
		t.Error("splitArgs accepted an unterminated quote")
	}
}

func TestParseSaved(t *testing.T) {
	k, v, ok, err := parseSaved(`-A XSYN-SAVED -m comment --comment "sysctl net.ipv4.tcp_syncookies=2"`)
	if err != nil || !ok || k != "net.ipv4.tcp_syncookies" || v != "2" {
		t.Errorf("parseSaved = %q %q %v %v", k, v, ok, err)
	}
	k, v, ok, err = parseSaved(`-A XSYN-SAVED -m comment --comment "sysctl net.ipv4.conf.eth0/100.route_localnet=0"`)
	if err != nil || !ok || k != "net.ipv4.conf.eth0/100.route_localnet" || v != "0" {
		t.Errorf("parseSaved of a dotted interface's sysctl = %q %q %v %v", k, v, ok, err)
	}
	if _, _, ok, err := parseSaved("-N XSYN-SAVED"); ok || err != nil {
		t.Errorf("parseSaved(-N) = %v, %v; want no record, no error", ok, err)
	}
	for _, bad := range []string{
		`-A XSYN-SAVED -j ACCEPT`,
		`-A XSYN-SAVED -m comment --comment "sysctl net.ipv4.tcp_syncookies"`,
		`-A XSYN-SAVED -m comment --comment "note net.ipv4.tcp_syncookies=1"`,
		`-A XSYN-SAVED -m comment --comment "sysctl NET/x=1"`,
		`-A XSYN-SAVED -m comment --comment "sysctl net..x=1"`,
		`-A XSYN-SAVED -m comment --comment "sysctl net.//.//.//.etc.passwd=1"`,
	} {
		if _, _, _, err := parseSaved(bad); err == nil {
			t.Errorf("parseSaved(%s) accepted a broken record", bad)
		}
	}
}

func TestCheckSysctl(t *testing.T) {
	for _, key := range []string{"net.ipv4.tcp_syncookies", "net.ipv4.conf.eth0/100.route_localnet", "net.ipv4.conf.br-lan.route_localnet", "net.ipv6.conf.all.forwarding"} {
		if err := checkSysctl(key, "1"); err != nil {
			t.Errorf("checkSysctl(%s): %v", key, err)
		}
	}
	for _, key := range []string{"", "net", "../../etc/passwd", "net..x", ".net.x", "net.x.", "net.//.x", "net./.x", "net.ipv4 x", "net.ipv4.x=1"} {
		if err := checkSysctl(key, "1"); err == nil {
			t.Errorf("checkSysctl(%q) accepted a key that is no sysctl under /proc/sys", key)
		}
	}
	if err := checkSysctl("net.ipv4.x", `1"`); err == nil {
		t.Error("checkSysctl accepted a value with a quote")
	}
}

func TestProcSys(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "net", "netfilter")
	vlan := filepath.Join(root, "net", "ipv4", "conf", "eth0.100")
	for _, d := range []string{dir, vlan} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "nf_conntrack_tcp_loose"), []byte("1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(vlan, "route_localnet"), []byte("0\n"), 0o644); err != nil {
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
	// A '/' in a key stands for a '.' in a name, as sysctl(8) writes it.
	if v, err := ps.Get("net.ipv4.conf.eth0/100.route_localnet"); err != nil || v != "0" {
		t.Errorf("Get of a dotted interface's sysctl = %q, %v; want 0", v, err)
	}
	if err := ps.Set("net.ipv4.conf.eth0/100.route_localnet", "1"); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(vlan, "route_localnet")); string(b) != "1\n" {
		t.Errorf("eth0.100/route_localnet holds %q after Set, want \"1\\n\"", b)
	}
	if err := ps.Set("net.netfilter.nope", "0"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Set of a missing sysctl = %v, want not-exist (and no file created)", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "nope")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Set created a file for a missing sysctl")
	}
}
