package rules

import (
	"bytes"
	"errors"
	"os/exec"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/coreos/go-iptables/iptables"
	"github.com/vishvananda/netns"

	"github.com/xsyn-project/xsyn/internal/testutil"
	"github.com/xsyn-project/xsyn/spec"
)

// These tests change real netfilter rules and sysctls, each in a network namespace of its own
// that exists only for the test: the test's goroutine is locked to its thread, the thread
// moves into a new namespace, and the iptables binaries that go-iptables runs inherit it.

// enterNewNetNS moves the calling test into a fresh network namespace until it ends. Subtests
// run on goroutines of their own and must call it themselves.
func enterNewNetNS(t *testing.T) {
	t.Helper()
	testutil.RequireRoot(t, "creating network namespaces and changing netfilter rules")
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("get current network namespace: %v", err)
	}
	ns, err := netns.New()
	if err != nil {
		orig.Close()
		runtime.UnlockOSThread()
		t.Fatalf("create network namespace: %v", err)
	}
	t.Cleanup(func() {
		ns.Close()
		if err := netns.Set(orig); err != nil {
			// Keep the thread locked: the runtime ends it with the goroutine, so no other
			// goroutine ever runs in the test's namespace.
			t.Errorf("return to the original network namespace: %v", err)
			return
		}
		orig.Close()
		runtime.UnlockOSThread()
	})
}

// backend is a pair of iptables binaries and their save commands.
type backend struct {
	name         string
	ipt4, ipt6   string // empty: NewApplier's choice (the system's iptables/ip6tables)
	save4, save6 string
}

func (b backend) bin(f spec.Family) string {
	if f == spec.IPv6 {
		return orDefault(b.ipt6, "ip6tables")
	}
	return orDefault(b.ipt4, "iptables")
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func (b backend) applier(t *testing.T) *Applier {
	t.Helper()
	if b.ipt4 == "" {
		a, err := NewApplier()
		if err != nil {
			t.Fatalf("new applier: %v", err)
		}
		return a
	}
	v4, err := iptables.New(iptables.IPFamily(iptables.ProtocolIPv4), iptables.Path(b.ipt4))
	if err != nil {
		t.Fatalf("open %s: %v", b.ipt4, err)
	}
	v6, err := iptables.New(iptables.IPFamily(iptables.ProtocolIPv6), iptables.Path(b.ipt6))
	if err != nil {
		t.Fatalf("open %s: %v", b.ipt6, err)
	}
	return NewApplierWith(v4, v6, ProcSys{Root: "/proc/sys"})
}

var backends = []backend{
	{name: "default", save4: "iptables-save", save6: "ip6tables-save"},
	{name: "legacy", ipt4: "iptables-legacy", ipt6: "ip6tables-legacy", save4: "iptables-legacy-save", save6: "ip6tables-legacy-save"},
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	var stderr bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}

var counters = regexp.MustCompile(`\[\d+:\d+\]`)

// save returns the family's iptables-save output without its comments and counters.
func (b backend) save(t *testing.T, f spec.Family) string {
	t.Helper()
	name := b.save4
	if f == spec.IPv6 {
		name = b.save6
	}
	var lines []string
	for _, l := range strings.Split(run(t, name), "\n") {
		if l != "" && !strings.HasPrefix(l, "#") {
			lines = append(lines, counters.ReplaceAllString(l, "[0:0]"))
		}
	}
	return strings.Join(lines, "\n")
}

// xsynView extracts, from iptables-save text, what belongs to xsyn: its chain declarations,
// the rules of its chains in order, and the jumps to them from builtin chains (sorted, as
// every interface inserts its own first).
func xsynView(saveText string) []string {
	var out []string
	table := ""
	rules := map[string][]string{}
	var decls, chains []string
	flush := func() {
		if table == "" {
			return
		}
		slices.Sort(decls)
		slices.Sort(chains)
		out = append(out, "*"+table)
		out = append(out, decls...)
		for _, c := range chains {
			r := rules[c]
			if !strings.HasPrefix(c, ChainPrefix) {
				slices.Sort(r)
			}
			out = append(out, r...)
		}
		rules, decls, chains = map[string][]string{}, nil, nil
	}
	for _, l := range strings.Split(saveText, "\n") {
		switch {
		case strings.HasPrefix(l, "*"):
			flush()
			table = l[1:]
		case strings.HasPrefix(l, ":"+ChainPrefix):
			decls = append(decls, l)
		case strings.HasPrefix(l, "-A "):
			fields := strings.Fields(l)
			chain := fields[1]
			jumpsToXsyn := fields[len(fields)-2] == "-j" && strings.HasPrefix(fields[len(fields)-1], ChainPrefix)
			if strings.HasPrefix(chain, ChainPrefix) || jumpsToXsyn {
				if _, ok := rules[chain]; !ok {
					chains = append(chains, chain)
				}
				rules[chain] = append(rules[chain], l)
			}
		}
	}
	flush()
	// Tables in name order (iptables-save orders them by backend), and only those in which xsyn
	// has something.
	var blocks [][]string
	for i := 0; i < len(out); {
		j := i + 1
		for j < len(out) && !strings.HasPrefix(out[j], "*") {
			j++
		}
		if j > i+1 {
			blocks = append(blocks, out[i:j])
		}
		i = j
	}
	slices.SortFunc(blocks, func(a, b []string) int { return strings.Compare(a[0], b[0]) })
	return slices.Concat(blocks...)
}

// wantView is the xsynView that the plans (and saved sysctl records) should produce.
func wantView(t *testing.T, f spec.Family, saved []string, plans ...Plan) []string {
	t.Helper()
	var b strings.Builder
	for _, p := range plans {
		if err := p.Render(&b, f); err != nil {
			t.Fatal(err)
		}
	}
	if len(saved) > 0 {
		b.WriteString("*filter\n:" + SavedChain + " - [0:0]\n" + strings.Join(saved, "\n") + "\n")
	}
	// Merge the tables of several plans the way iptables-save shows one table once.
	byTable := map[string][]string{}
	var order []string
	table := ""
	for _, l := range strings.Split(b.String(), "\n") {
		switch {
		case strings.HasPrefix(l, "*"):
			table = l
			if !slices.Contains(order, table) {
				order = append(order, table)
			}
		case l == "COMMIT", l == "", strings.HasPrefix(l, "#"):
		default:
			byTable[table] = append(byTable[table], l)
		}
	}
	slices.Sort(order)
	var merged []string
	for _, tb := range order {
		merged = append(merged, tb)
		merged = append(merged, byTable[tb]...)
	}
	return xsynView(strings.Join(merged, "\n"))
}

func checkView(t *testing.T, b backend, f spec.Family, want []string) {
	t.Helper()
	got := xsynView(b.save(t, f))
	if !slices.Equal(got, want) {
		t.Errorf("%s xsyn rules in %s:\n  got\n\t%s\n  want\n\t%s", f, b.save4, strings.Join(got, "\n\t"), strings.Join(want, "\n\t"))
	}
}

func readSysctl(t *testing.T, key string) string {
	t.Helper()
	v, err := ProcSys{Root: "/proc/sys"}.Get(key)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

const (
	tcpLoose   = "net.netfilter.nf_conntrack_tcp_loose"
	syncookies = "net.ipv4.tcp_syncookies"
)

func checkSysctls(t *testing.T, when, loose, cookies string) {
	t.Helper()
	// Read by a child process as well: it proves the value is the namespace's, not a file's.
	gotLoose := strings.TrimSpace(run(t, "cat", "/proc/sys/net/netfilter/nf_conntrack_tcp_loose"))
	if gotLoose != loose || readSysctl(t, tcpLoose) != loose || readSysctl(t, syncookies) != cookies {
		t.Errorf("%s: %s=%s (child sees %s), %s=%s; want %s and %s", when,
			tcpLoose, readSysctl(t, tcpLoose), gotLoose, syncookies, readSysctl(t, syncookies), loose, cookies)
	}
}

// withoutEmptyChains drops from iptables-save text the declarations of builtin chains that
// have no rules and the ACCEPT policy, and then the tables left empty: iptables-nft creates a
// table and its base chains the first time a rule goes into them and leaves them behind when
// the last rule goes, which changes nothing for packets.
func withoutEmptyChains(save string) string {
	isBuiltin := func(name string) bool {
		for _, bs := range builtinChains {
			if slices.Contains(bs, name) {
				return true
			}
		}
		return false
	}
	var out, block []string
	flush := func() {
		var kept []string
		for _, l := range block {
			if name, rest, ok := strings.Cut(strings.TrimPrefix(l, ":"), " "); ok && strings.HasPrefix(l, ":") &&
				isBuiltin(name) && strings.HasPrefix(rest, "ACCEPT ") &&
				!slices.ContainsFunc(block, func(r string) bool { return strings.HasPrefix(r, "-A "+name+" ") }) {
				continue
			}
			kept = append(kept, l)
		}
		if len(kept) > 2 { // more than "*table" and "COMMIT"
			out = append(out, kept...)
		}
		block = nil
	}
	for _, l := range strings.Split(save, "\n") {
		block = append(block, l)
		if l == "COMMIT" {
			flush()
		}
	}
	flush()
	return strings.Join(out, "\n")
}

// saveAll is the namespace's rules in both families, as withoutEmptyChains leaves them.
func (b backend) saveAll(t *testing.T) string {
	t.Helper()
	return withoutEmptyChains(b.save(t, spec.IPv4)) + "\n" + withoutEmptyChains(b.save(t, spec.IPv6))
}

// checkOrphansAfterOutput checks in the real filter OUTPUT of both families that every jump to
// an orphan chain follows every jump to an OUTPUT chain.
func checkOrphansAfterOutput(t *testing.T, b backend, when string) {
	t.Helper()
	for _, f := range families {
		var jumps []string
		lastOut, firstOrp := -1, -1
		for _, l := range strings.Split(run(t, b.bin(f), "-S", "OUTPUT"), "\n") {
			to, ok := strings.CutPrefix(l, "-A OUTPUT -j ")
			oc, mine := parseChain(to)
			if !ok || !mine {
				continue
			}
			jumps = append(jumps, to)
			if oc.kind.tag == kindOut.tag {
				lastOut = len(jumps) - 1
			} else if oc.kind.tag == kindOrphan.tag && firstOrp < 0 {
				firstOrp = len(jumps) - 1
			}
		}
		if lastOut < 0 || firstOrp < 0 || firstOrp < lastOut {
			t.Errorf("%s: %s OUTPUT jumps to %v; want every orphan chain after every OUTPUT chain", when, f, jumps)
		}
	}
}

func TestNetfilter(t *testing.T) {
	hostLoose, hostErr := ProcSys{Root: "/proc/sys"}.Get(tcpLoose)
	t.Cleanup(func() { // after the parallel subtests
		if v, err := (ProcSys{Root: "/proc/sys"}).Get(tcpLoose); hostErr == nil && (err != nil || v != hostLoose) {
			t.Errorf("the test's own namespace changed: %s=%s (%v), was %s", tcpLoose, v, err, hostLoose)
		}
	})
	for _, b := range backends {
		for _, c := range []struct {
			name string
			test func(*testing.T, backend)
		}{{"simple", testNetfilter}, {"config", testNetfilterConfig}} {
			t.Run(b.name+"/"+c.name, func(t *testing.T) {
				inBackendNS(t, b)
				c.test(t, b)
			})
		}
	}
}

// addForeign gives the namespace someone else's rules, which xsyn must leave alone.
func addForeign(t *testing.T, b backend) {
	t.Helper()
	for _, f := range families {
		ipt := b.bin(f)
		run(t, ipt, "-A", "INPUT", "-p", "tcp", "--dport", "22", "-j", "ACCEPT")
		run(t, ipt, "-A", "OUTPUT", "-p", "udp", "--dport", "53", "-j", "ACCEPT")
		run(t, ipt, "-t", "raw", "-N", "OTHER")
		run(t, ipt, "-t", "raw", "-A", "OTHER", "-p", "udp", "-j", "CT", "--notrack")
		run(t, ipt, "-t", "raw", "-A", "PREROUTING", "-j", "OTHER")
	}
}

func testNetfilter(t *testing.T, b backend) {
	a := b.applier(t)
	if got, err := a.Interfaces(); err != nil || len(got) != 0 {
		t.Fatalf("Interfaces in a fresh namespace = %v, %v", got, err)
	}

	// Someone else's rules, and a non-default syncookies value to see it come back.
	addForeign(t, b)
	if err := (ProcSys{Root: "/proc/sys"}).Set(syncookies, "2"); err != nil {
		t.Fatal(err)
	}
	oldLoose := readSysctl(t, tcpLoose)
	before := b.saveAll(t)
	saved := []string{
		`-A XSYN-SAVED -m comment --comment "sysctl net.netfilter.nf_conntrack_tcp_loose=` + oldLoose + `"`,
		`-A XSYN-SAVED -m comment --comment "sysctl net.ipv4.tcp_syncookies=2"`,
	}
	if oldLoose != "1" {
		t.Logf("a fresh namespace has %s=%s; the kernel default is 1", tcpLoose, oldLoose)
	}

	// Install.
	p1 := mustBuild(t, "eth0", spec.Simple{Ports: []uint16{80, 443}, WScale: -1})
	mustApply(t, a, p1)
	checkView(t, b, spec.IPv4, wantView(t, spec.IPv4, saved, p1))
	checkView(t, b, spec.IPv6, wantView(t, spec.IPv6, nil, p1))
	for _, f := range families {
		if first := strings.Split(run(t, b.bin(f), "-S", "INPUT"), "\n")[1]; first != "-A INPUT -j XSYN-IN-eth0" {
			t.Errorf("%s INPUT starts with %q, want xsyn's jump first", f, first)
		}
		want := []string{"-A OUTPUT -j XSYN-OUT-eth0", "-A OUTPUT -j XSYN-ORP-eth0", "-A OUTPUT -p udp -m udp --dport 53 -j ACCEPT"}
		if got := strings.Split(strings.TrimSpace(run(t, b.bin(f), "-S", "OUTPUT")), "\n")[1:]; !slices.Equal(got, want) {
			t.Errorf("%s OUTPUT = %q, want %q", f, got, want)
		}
	}
	checkSysctls(t, "after apply", "0", "1")

	// Re-apply with another MSS: the old rules are gone, nothing staged is left.
	p2 := mustBuild(t, "eth0", spec.Simple{Ports: []uint16{80, 443}, MSS: 1400, WScale: 5})
	mustApply(t, a, p2)
	checkView(t, b, spec.IPv4, wantView(t, spec.IPv4, saved, p2))
	checkView(t, b, spec.IPv6, wantView(t, spec.IPv6, nil, p2))
	for _, f := range families {
		s := b.save(t, f)
		if strings.Contains(s, "--mss 1460") || strings.Contains(s, "--mss 1440") || strings.Contains(s, "XSYN-NEW") {
			t.Errorf("%s: old or staged rules left after re-apply:\n%s", f, s)
		}
	}
	checkSysctls(t, "after re-apply", "0", "1")

	// A second interface shares the sysctls; its orphan chain goes after both OUTPUT chains.
	p3 := mustBuild(t, "veth1", spec.Simple{Ports: []uint16{22}, Dst: "2001:db8::10", WScale: -1})
	mustApply(t, a, p3)
	checkView(t, b, spec.IPv4, wantView(t, spec.IPv4, saved, p2, p3))
	checkView(t, b, spec.IPv6, wantView(t, spec.IPv6, nil, p2, p3))
	checkOrphansAfterOutput(t, b, "with two interfaces")
	if got := interfaces(t, a); !slices.Equal(got, []string{"eth0", "veth1"}) {
		t.Errorf("Interfaces = %v, want [eth0 veth1]", got)
	}
	mustApply(t, a, p1) // re-apply eth0, below veth1's chains
	checkOrphansAfterOutput(t, b, "after re-applying eth0")

	mustRemove(t, a, "eth0")
	checkView(t, b, spec.IPv4, wantView(t, spec.IPv4, saved, p3))
	checkView(t, b, spec.IPv6, wantView(t, spec.IPv6, nil, p3))
	checkSysctls(t, "with veth1 still installed", "0", "1")
	if ok, err := a.Installed("eth0"); ok || err != nil {
		t.Errorf("Installed(eth0) after Remove = %v, %v", ok, err)
	}

	mustRemove(t, a, "veth1")
	if got := b.saveAll(t); got != before {
		t.Errorf("after removing every interface:\n%s\nwant what was there before:\n%s", got, before)
	}
	checkSysctls(t, "after removing every interface", oldLoose, "2")
	mustRemove(t, a, "veth1")
	if got := interfaces(t, a); len(got) != 0 {
		t.Errorf("Interfaces after removing all = %v", got)
	}
}

// netnsConf has a statement of every kind of action, for the interface xsyn.0 (a '.' in its
// name, as VLAN interfaces have, to see route_localnet set through sysctl's '/').
const netnsConf = `synproxy input inface xsyn.0 dport 2222 redirect to 22
synproxy4 input inface xsyn.0 dst 198.51.100.1 dport 443 dnat to 10.0.0.6
synproxy4 forward inface xsyn.0 dst 203.0.113.10 dport 80 dnat to 10.0.0.5:8080
synproxy input inface xsyn.0 dport 23 reject loglimit "xsyn telnet"
synproxy input inface xsyn.0 src not 10.0.0.0/8 dport 22 action TRAP
synproxy6 forward inface xsyn.0 outface xsyn.1 dst 2001:db8:1::/64 dport 443,8443 accept
`

const (
	ipForward    = "net.ipv4.ip_forward"
	ip6Forward   = "net.ipv6.conf.all.forwarding"
	localnet     = "net.ipv4.conf.xsyn/0.route_localnet"
	localnetPath = "/proc/sys/net/ipv4/conf/xsyn.0/route_localnet"
)

// nsState is the namespace's rules and the sysctls xsyn reads or changes.
func nsState(t *testing.T, b backend) string {
	t.Helper()
	s := b.saveAll(t)
	for _, k := range []string{tcpLoose, syncookies, ipForward, ip6Forward, localnet} {
		s += "\n" + k + "=" + readSysctl(t, k)
	}
	return s
}

func testNetfilterConfig(t *testing.T, b backend) {
	run(t, "ip", "link", "add", "xsyn.0", "type", "veth", "peer", "name", "xsyn.1")
	a := b.applier(t)
	addForeign(t, b)
	p, err := Build("xsyn.0", configSpec(t, "netns.conf", "xsyn.0", netnsConf))
	if err != nil {
		t.Fatal(err)
	}

	// Every requirement the namespace lacks refuses the plan before anything changes, and says
	// how to meet it.
	for _, step := range []struct {
		msg string
		fix []string // a command that meets the requirement
	}{
		{"net.ipv4.ip_forward is 0, it must be 1", []string{"sysctl", "-w", "net.ipv4.ip_forward=1"}},
		{"chain TRAP does not exist in the ipv4 filter table; create it first (iptables -N TRAP)", []string{b.bin(spec.IPv4), "-N", "TRAP"}},
		{"chain TRAP does not exist in the ipv6 filter table; create it first (ip6tables -N TRAP)", []string{b.bin(spec.IPv6), "-N", "TRAP"}},
		{"net.ipv6.conf.all.forwarding is 0, it must be 1", []string{"sysctl", "-w", "net.ipv6.conf.all.forwarding=1"}},
	} {
		before := nsState(t, b)
		err := a.Apply(p)
		if !errors.Is(err, ErrPrecondition) || !strings.Contains(err.Error(), step.msg) {
			t.Fatalf("Apply = %v, want ErrPrecondition saying %q", err, step.msg)
		}
		if got := nsState(t, b); got != before {
			t.Fatalf("a refused plan (%v) changed the namespace:\n%s\nwant\n%s", err, got, before)
		}
		run(t, step.fix[0], step.fix[1:]...)
	}

	baseline := nsState(t, b)
	loose := readSysctl(t, tcpLoose)
	cookies := readSysctl(t, syncookies)
	mustApply(t, a, p)
	saved := []string{
		`-A XSYN-SAVED -m comment --comment "sysctl net.netfilter.nf_conntrack_tcp_loose=` + loose + `"`,
		`-A XSYN-SAVED -m comment --comment "sysctl net.ipv4.tcp_syncookies=` + cookies + `"`,
		`-A XSYN-SAVED -m comment --comment "sysctl net.ipv4.conf.xsyn/0.route_localnet=0"`,
	}
	checkView(t, b, spec.IPv4, wantView(t, spec.IPv4, saved, p))
	checkView(t, b, spec.IPv6, wantView(t, spec.IPv6, nil, p))
	checkOrphansAfterOutput(t, b, "after apply")
	if got := strings.TrimSpace(run(t, "cat", localnetPath)); got != "1" {
		t.Errorf("%s = %s after apply, want 1", localnetPath, got)
	}
	installed := nsState(t, b)

	// Snapshot round trip: the snapshot, applied over other rules, gives back what was there.
	snap, ok, err := a.Snapshot("xsyn.0")
	if err != nil || !ok {
		t.Fatalf("Snapshot = %v, %v", ok, err)
	}
	mustApply(t, a, mustConfig(t, "xsyn.0", "synproxy4 input inface xsyn.0 dport 80 accept"))
	if nsState(t, b) == installed {
		t.Fatal("the other plan changed nothing; the round trip proves nothing")
	}
	mustApply(t, a, snap)
	if got := nsState(t, b); got != installed {
		t.Errorf("after applying the snapshot:\n%s\nwant what was installed:\n%s", got, installed)
	}

	mustRemove(t, a, "xsyn.0")
	if got := nsState(t, b); got != baseline {
		t.Errorf("after remove:\n%s\nwant what was there before apply:\n%s", got, baseline)
	}
}

// failingIPT and failingSysctl fail the failAt-th call made through any of them, like fakeNS
// does, but over the real iptables and /proc/sys.
type failCounter struct{ calls, failAt int }

func (c *failCounter) call() error {
	c.calls++
	if c.calls == c.failAt {
		return errInjected
	}
	return nil
}

type failingIPT struct {
	ipt IPTables
	c   *failCounter
}

func (f failingIPT) ListChains(table string) ([]string, error) {
	if err := f.c.call(); err != nil {
		return nil, err
	}
	return f.ipt.ListChains(table)
}

func (f failingIPT) List(table, chain string) ([]string, error) {
	if err := f.c.call(); err != nil {
		return nil, err
	}
	return f.ipt.List(table, chain)
}

func (f failingIPT) NewChain(table, chain string) error {
	if err := f.c.call(); err != nil {
		return err
	}
	return f.ipt.NewChain(table, chain)
}

func (f failingIPT) ClearChain(table, chain string) error {
	if err := f.c.call(); err != nil {
		return err
	}
	return f.ipt.ClearChain(table, chain)
}

func (f failingIPT) DeleteChain(table, chain string) error {
	if err := f.c.call(); err != nil {
		return err
	}
	return f.ipt.DeleteChain(table, chain)
}

func (f failingIPT) RenameChain(table, oldChain, newChain string) error {
	if err := f.c.call(); err != nil {
		return err
	}
	return f.ipt.RenameChain(table, oldChain, newChain)
}

func (f failingIPT) Append(table, chain string, rulespec ...string) error {
	if err := f.c.call(); err != nil {
		return err
	}
	return f.ipt.Append(table, chain, rulespec...)
}

func (f failingIPT) Insert(table, chain string, pos int, rulespec ...string) error {
	if err := f.c.call(); err != nil {
		return err
	}
	return f.ipt.Insert(table, chain, pos, rulespec...)
}

func (f failingIPT) Delete(table, chain string, rulespec ...string) error {
	if err := f.c.call(); err != nil {
		return err
	}
	return f.ipt.Delete(table, chain, rulespec...)
}

type failingSysctl struct {
	sys Sysctl
	c   *failCounter
}

func (f failingSysctl) Get(key string) (string, error) {
	if err := f.c.call(); err != nil {
		return "", err
	}
	return f.sys.Get(key)
}

func (f failingSysctl) Set(key, value string) error {
	if err := f.c.call(); err != nil {
		return err
	}
	return f.sys.Set(key, value)
}

// TestNetfilterRollback fails each call of a real re-apply in turn (one that replaces the IPv4
// chains and drops the IPv6 ones, below a foreign rule) and of a real first install, and checks
// that iptables-save and the sysctls are back to what they were after every failure: the
// rules read back from iptables -S must go back in as they were.
func TestNetfilterRollback(t *testing.T) {
	for _, b := range backends {
		for _, reapply := range []bool{false, true} {
			name := b.name + "/first_install"
			if reapply {
				name = b.name + "/reapply"
			}
			t.Run(name, func(t *testing.T) {
				inBackendNS(t, b)
				testNetfilterRollback(t, b, reapply)
			})
		}
	}
}

func testNetfilterRollback(t *testing.T, b backend, reapply bool) {
	real := b.applier(t)
	c := &failCounter{}
	a := NewApplierWith(failingIPT{real.ipt[spec.IPv4], c}, failingIPT{real.ipt[spec.IPv6], c}, failingSysctl{real.sys, c})
	if reapply {
		mustApply(t, a, mustBuild(t, "eth0", spec.Simple{Ports: []uint16{80}, WScale: -1}))
	}
	for _, f := range families {
		run(t, b.bin(f), "-I", "INPUT", "1", "-p", "tcp", "--dport", "22", "-j", "ACCEPT")
		run(t, b.bin(f), "-t", "raw", "-I", "PREROUTING", "1", "-p", "udp", "-j", "ACCEPT")
	}
	state := func() string {
		return b.saveAll(t) + "\n" +
			tcpLoose + "=" + readSysctl(t, tcpLoose) + " " + syncookies + "=" + readSysctl(t, syncookies)
	}
	before := state()
	saved := []string{
		`-A XSYN-SAVED -m comment --comment "sysctl net.netfilter.nf_conntrack_tcp_loose=` + readSysctl(t, tcpLoose) + `"`,
		`-A XSYN-SAVED -m comment --comment "sysctl net.ipv4.tcp_syncookies=` + readSysctl(t, syncookies) + `"`,
	}
	if reapply {
		saved = nil // the sysctls are xsyn's already: compare only the rules
	}
	p := mustBuild(t, "eth0", spec.Simple{Ports: []uint16{80}, Dst: "192.0.2.1", MSS: 1400, WScale: -1})
	step := 1
	if testing.Short() {
		step = 5 // the fake covers every call; here a sample checks the real primitives
	}
	for n := 1; ; n += step {
		c.calls, c.failAt = 0, n
		err := a.Apply(p)
		if err == nil {
			if c.calls < 10 {
				t.Fatalf("Apply made only %d calls", c.calls)
			}
			t.Logf("failed calls 1, 1+%d, ... of %d in turn", step, c.calls)
			break
		}
		if !errors.Is(err, errInjected) || strings.Contains(err.Error(), "rollback") {
			t.Fatalf("call %d failing: Apply = %v, want the injected failure, rolled back", n, err)
		}
		if got := state(); got != before {
			t.Fatalf("after failing call %d (%v):\n%s\nwant\n%s", n, err, got, before)
		}
	}
	want4 := wantView(t, spec.IPv4, saved, p)
	got4 := xsynView(b.save(t, spec.IPv4))
	if reapply { // the records of the first install are not in want4
		got4 = slices.DeleteFunc(got4, func(l string) bool { return strings.Contains(l, SavedChain) })
	}
	if !slices.Equal(got4, want4) {
		t.Errorf("ipv4 xsyn rules after the successful apply:\n\t%s\nwant\n\t%s", strings.Join(got4, "\n\t"), strings.Join(want4, "\n\t"))
	}
	checkView(t, b, spec.IPv6, nil)
}

// inBackendNS readies a parallel subtest for backend b: skipped where b's iptables is not
// installed, and run on a thread of its own in a new network namespace.
func inBackendNS(t *testing.T, b backend) {
	t.Helper()
	t.Parallel() // each in a namespace of its own
	if b.ipt4 != "" {
		testutil.RequireTool(t, b.ipt4, "Debian: apt-get install iptables; deploy/install-deps.sh installs it")
	}
	enterNewNetNS(t)
}
