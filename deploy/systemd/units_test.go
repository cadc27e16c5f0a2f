// Package systemd holds the tests that keep the systemd units in this directory true: they are
// valid units, their command lines protect an interface under exactly the capabilities the units
// declare (and not under fewer), reload swaps the configuration in place, stop leaves nothing
// behind, the exporter serves the counters, and README.md explains every directive.
package systemd

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xsyn-project/xsyn/internal/netlab"
	"github.com/xsyn-project/xsyn/internal/testutil"
	"github.com/xsyn-project/xsyn/spec"
)

// What the units name; the test stands its own binary and configuration in for them.
const (
	unitBinary = "/usr/local/sbin/xsyn"
	unitConfig = "/etc/xsyn/xsyn.conf"
	attachUnit = "xsyn@.service"
	exportUnit = "xsyn-exporter.service"
	metricsURL = "127.0.0.1:9377" // serve's default, which the exporter unit keeps
)

// serviceEnv is the environment systemd gives a system service: a PATH and nothing else.
var serviceEnv = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C"}

var xsynBin string // built by TestMain from the main module

func TestMain(m *testing.M) { os.Exit(runTests(m)) }

func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "xsyn-systemd-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	xsynBin = filepath.Join(dir, "xsyn")
	root, err := filepath.Abs("../..")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	build := exec.Command(goTool(), "build", "-o", xsynBin, "./cmd/xsyn")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build xsyn: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

// --- unit files ---

// unitFile is a unit file as systemd reads it: sections of key=value entries, in order, a key
// given as often as the file gives it.
type unitFile struct {
	name     string
	sections map[string][]unitEntry
}

type unitEntry struct {
	key, value string
	line       int
}

// readUnit reads a unit file: comments (# and ; at the start of a line), blank lines, [Section]
// headers, key=value with blanks trimmed, and lines continued with a trailing backslash.
func readUnit(t *testing.T, name string) *unitFile {
	t.Helper()
	src, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	u := &unitFile{name: name, sections: map[string][]unitEntry{}}
	section := ""
	lines := strings.Split(string(src), "\n")
	for i := 0; i < len(lines); i++ {
		n := i + 1
		line := strings.TrimSpace(lines[i])
		for strings.HasSuffix(line, "\\") && i+1 < len(lines) {
			i++
			line = strings.TrimSuffix(line, "\\") + " " + strings.TrimSpace(lines[i])
		}
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case line[0] == '[':
			if !strings.HasSuffix(line, "]") {
				t.Fatalf("%s:%d: bad section header %q", name, n, line)
			}
			section = line[1 : len(line)-1]
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s:%d: not key=value in a section: %q", name, n, line)
			}
			u.sections[section] = append(u.sections[section], unitEntry{strings.TrimSpace(k), strings.TrimSpace(v), n})
		}
	}
	return u
}

// values returns every value given to key in section, in order.
func (u *unitFile) values(section, key string) []string {
	var vs []string
	for _, e := range u.sections[section] {
		if e.key == key {
			vs = append(vs, e.value)
		}
	}
	return vs
}

// single returns the one value of key in section.
func (u *unitFile) single(t *testing.T, section, key string) string {
	t.Helper()
	vs := u.values(section, key)
	if len(vs) != 1 {
		t.Fatalf("%s: [%s] %s= given %d times, want once", u.name, section, key, len(vs))
	}
	return vs[0]
}

// capabilities is the unit's CapabilityBoundingSet: the union of its lists, as systemd merges
// them. An inverted list (~) or a reset (empty value) is refused: the test could not apply it.
func (u *unitFile) capabilities(t *testing.T) []string {
	t.Helper()
	var caps []string
	for _, v := range u.values("Service", "CapabilityBoundingSet") {
		if v == "" || strings.HasPrefix(v, "~") {
			t.Fatalf("%s: CapabilityBoundingSet=%q: the test only applies plain lists", u.name, v)
		}
		for _, c := range strings.Fields(v) {
			if !strings.HasPrefix(c, "CAP_") {
				t.Fatalf("%s: CapabilityBoundingSet: %q is not a capability name", u.name, c)
			}
			if !slices.Contains(caps, c) {
				caps = append(caps, c)
			}
		}
	}
	if len(caps) == 0 {
		t.Fatalf("%s: no CapabilityBoundingSet: the unit would run with every capability", u.name)
	}
	return caps
}

// command turns an Exec line into argv the way systemd would for instance iface, with the test's
// binary and configuration standing in for the installed ones. It refuses what it cannot
// reproduce: prefixes (-@+!:|), quoting, specifiers other than %i, %I and %%.
func (u *unitFile) command(t *testing.T, key, iface, config string) []string {
	t.Helper()
	line := u.single(t, "Service", key)
	if strings.ContainsAny(line[:1], "-@+!:|") || strings.ContainsAny(line, `"'\`) {
		t.Fatalf("%s: %s=%s: prefixes and quoting are not reproduced by this test", u.name, key, line)
	}
	var argv []string
	for _, w := range strings.Fields(line) {
		w = strings.NewReplacer("%i", iface, "%I", iface, "%%", "\x00").Replace(w)
		if strings.Contains(w, "%") {
			t.Fatalf("%s: %s=%s: specifier in %q not reproduced by this test", u.name, key, line, w)
		}
		w = strings.ReplaceAll(w, "\x00", "%")
		if w == unitConfig {
			w = config
		}
		argv = append(argv, w)
	}
	if argv[0] != unitBinary {
		t.Fatalf("%s: %s runs %s, want %s (README.md installs it there)", u.name, key, argv[0], unitBinary)
	}
	argv[0] = xsynBin
	return argv
}

func (u *unitFile) noNewPrivileges() bool {
	vs := u.values("Service", "NoNewPrivileges")
	return len(vs) > 0 && vs[len(vs)-1] == "yes"
}

// --- systemd-analyze ---

// TestVerify runs `systemd-analyze verify` on the units as shipped, against a root directory
// that has the binary where the units expect it and the host's own units (for the targets the
// default dependencies name), so it needs no network and no installation.
func TestVerify(t *testing.T) {
	root := analyzeRoot(t)
	out, err := exec.Command("systemd-analyze", "verify", "--root="+root, "xsyn@eth0.service", exportUnit).CombinedOutput()
	// verify exits 0 on unknown keys and bad values too; every line it prints is a finding.
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// TestSecurityExposure keeps the units' hardening from eroding: systemd-analyze security rates
// each unit's exposure from 0 (locked down) to 10; both units are at 2.7 or below today.
func TestSecurityExposure(t *testing.T) {
	root := analyzeRoot(t)
	for _, unit := range []string{"xsyn@eth0.service", exportUnit} {
		out, err := exec.Command("systemd-analyze", "security", "--offline=true", "--threshold=30", "--root="+root, unit).CombinedOutput()
		if err != nil {
			last := strings.TrimSpace(string(out))
			if i := strings.LastIndex(last, "\n"); i >= 0 {
				last = last[i+1:]
			}
			t.Errorf("%s: exposure above 3.0 (or analysis failed: %v): %s", unit, err, last)
		}
	}
}

// analyzeRoot builds the root directory for systemd-analyze --root.
func analyzeRoot(t *testing.T) string {
	t.Helper()
	testutil.RequireTool(t, "systemd-analyze", "Debian: apt-get install systemd")
	const hostUnits = "/usr/lib/systemd/system"
	if _, err := os.Stat(filepath.Join(hostUnits, "sysinit.target")); err != nil {
		t.Skipf("no systemd units in %s to verify against: %v", hostUnits, err)
	}
	root := t.TempDir()
	for _, d := range []string{"etc/systemd/system", "usr/local/sbin", "usr/lib/systemd"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	copyFile(t, xsynBin, filepath.Join(root, unitBinary), 0o755)
	for _, u := range []string{attachUnit, exportUnit} {
		copyFile(t, u, filepath.Join(root, "etc/systemd/system", u), 0o644)
	}
	if out, err := exec.Command("cp", "-a", hostUnits, filepath.Join(root, "usr/lib/systemd/")).CombinedOutput(); err != nil {
		t.Fatalf("copy %s: %v\n%s", hostUnits, err, out)
	}
	return root
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, mode); err != nil {
		t.Fatal(err)
	}
}

// --- the example configuration and the README ---

func TestConfigExample(t *testing.T) {
	cfg, err := spec.ParseConfigFile("xsyn.conf.example", nil)
	if err != nil {
		t.Fatalf("xsyn.conf.example: %v", err)
	}
	ifaces := cfg.Interfaces()
	if !slices.Equal(ifaces, []string{"eth0"}) {
		t.Errorf("xsyn.conf.example is for interfaces %q, want [eth0] (the README enables xsyn@eth0)", ifaces)
	}
	for _, iface := range ifaces {
		s, err := cfg.For(iface)
		if err != nil {
			t.Errorf("xsyn.conf.example for %s: %v", iface, err)
			continue
		}
		if len(s.Statements) == 0 || len(s.Services) == 0 {
			t.Errorf("xsyn.conf.example for %s: %d statements, %d XDP services; want some of each", iface, len(s.Statements), len(s.Services))
		}
	}
}

// TestREADME checks that README.md explains every directive and capability the units use, and
// installs the binary and the configuration where the units look for them.
func TestREADME(t *testing.T) {
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	for _, name := range []string{attachUnit, exportUnit} {
		u := readUnit(t, name)
		for _, section := range []string{"Unit", "Service"} {
			for _, e := range u.sections[section] {
				if e.key == "Description" || e.key == "Documentation" {
					continue
				}
				if !strings.Contains(readme, "`"+e.key+"=") {
					t.Errorf("README.md does not explain %s=, used in %s:%d", e.key, name, e.line)
				}
			}
		}
		for _, c := range u.capabilities(t) {
			if !strings.Contains(readme, c) {
				t.Errorf("README.md does not explain %s, in %s's CapabilityBoundingSet", c, name)
			}
		}
	}
	for _, want := range []string{unitBinary, unitConfig, "xsyn.conf.example", "systemctl daemon-reload", "systemctl reload xsyn@eth0"} {
		if !strings.Contains(readme, want) {
			t.Errorf("README.md does not mention %s", want)
		}
	}
}

// --- the units' commands, for real ---

var (
	cli4 = netip.MustParsePrefix("192.0.2.1/24")
	dut4 = netip.MustParsePrefix("192.0.2.2/24")
	cli6 = netip.MustParsePrefix("2001:db8::1/64")
	dut6 = netip.MustParsePrefix("2001:db8::2/64")
)

const iface = "d0" // the instance: xsyn@d0.service

// lab is a client and a DUT namespace; the units' commands run in the DUT as systemd would run
// them: root, with the unit's capability bounding set, no new privileges, a service's
// environment, and the host's bpffs (nsenter keeps the mounts, so the bpf link is pinned).
type lab struct {
	pair *netlab.Pair
	dir  string
}

func newLab(t *testing.T) *lab {
	t.Helper()
	testutil.RequireRoot(t, "network namespaces, XDP, netfilter")
	for _, tool := range []string{"nsenter", "setpriv", "iptables-save", "ip6tables-save"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is missing (util-linux, iptables): %v", tool, err)
		}
	}
	p := testutil.Pair(t, "xsynsdt", "c0", []netip.Prefix{cli4, cli6}, iface, []netip.Prefix{dut4, dut6})
	return &lab{pair: p, dir: t.TempDir()}
}

// config writes a configuration protecting port on the DUT's addresses, both families.
func (l *lab) config(t *testing.T, port int) string {
	t.Helper()
	path := filepath.Join(l.dir, fmt.Sprintf("xsyn-%d.conf", port))
	// notimestamps: Linux 6.18 delays the first byte of every proxied connection by ~1 s with
	// SYNPROXY timestamps (README, Known issues).
	src := fmt.Sprintf("options notimestamps\nsynproxy in inface %s dst %s,%s dport %d accept\n", iface, dut4.Addr(), dut6.Addr(), port)
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// serviceCmd prepares argv to run inside the DUT under caps (and no new privileges if nnp).
func (l *lab) serviceCmd(argv, caps []string, nnp bool) *exec.Cmd {
	bounding := "-all"
	for _, c := range caps {
		bounding += ",+" + strings.ToLower(strings.TrimPrefix(c, "CAP_"))
	}
	args := []string{"--net=/run/netns/" + l.pair.Server.Name, "setpriv", "--bounding-set", bounding, "--inh-caps", "-all", "--ambient-caps", "-all"}
	if nnp {
		args = append(args, "--no-new-privs")
	}
	cmd := exec.Command("nsenter", append(append(args, "--"), argv...)...)
	cmd.Env = serviceEnv
	return cmd
}

// run runs argv as a unit's Exec line would run, and returns its output and exit code.
func (l *lab) run(t *testing.T, argv, caps []string, nnp bool) (stdout, stderr string, code int) {
	t.Helper()
	cmd := l.serviceCmd(argv, caps, nnp)
	var so, se strings.Builder
	cmd.Stdout, cmd.Stderr = &so, &se
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatalf("run %q: %v", argv, err)
	}
	return so.String(), se.String(), code
}

// mustRun runs a unit's command and fails the test unless it exits 0.
func (l *lab) mustRun(t *testing.T, what string, argv, caps []string, nnp bool) string {
	t.Helper()
	out, errOut, code := l.run(t, argv, caps, nnp)
	if code != 0 {
		t.Fatalf("%s (%s, capabilities %v): exit %d\n%s%s", what, strings.Join(argv, " "), caps, code, out, errOut)
	}
	return out
}

// The parts of `xsyn status --json` (docs/status-json.md) the test looks at.
type statusJSON struct {
	Interfaces []ifaceStatus `json:"interfaces"`
}

type ifaceStatus struct {
	Interface      string `json:"interface"`
	Mode           string `json:"mode"`
	HeldBy         string `json:"held_by"`
	StateDir       string `json:"state_dir"`
	ProgramID      uint32 `json:"program_id"`
	NetfilterRules bool   `json:"netfilter_rules"`
	Services       []struct {
		Family      string `json:"family"`
		Destination string `json:"destination"`
		Port        uint16 `json:"port"`
	} `json:"services"`
}

// status reads `xsyn status --json` in the DUT as the operator would: root, every capability.
func (l *lab) status(t *testing.T) []ifaceStatus {
	t.Helper()
	// --interval 0: counters only, at once (rates would cost a second per call).
	cmd := exec.Command("nsenter", "--net=/run/netns/"+l.pair.Server.Name, xsynBin, "status", "--json", "--interval=0")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("xsyn status --json: %v\n%s", err, out)
	}
	var st statusJSON
	if err := json.Unmarshal(out, &st); err != nil {
		t.Fatalf("xsyn status --json: %v\n%s", err, out)
	}
	return st.Interfaces
}

// protected checks that the DUT's interface is protected in native XDP mode, held by a pinned
// bpf link, with rules, for exactly port on both of its addresses; it returns the status.
func (l *lab) protected(t *testing.T, when string, port uint16) ifaceStatus {
	t.Helper()
	sts := l.status(t)
	if len(sts) != 1 || sts[0].Interface != iface {
		t.Fatalf("%s: status lists %+v, want %s alone", when, sts, iface)
	}
	st := sts[0]
	if st.Mode != "native" || st.HeldBy != "bpf-link" || st.StateDir == "" || st.ProgramID == 0 || !st.NetfilterRules {
		t.Errorf("%s: %s is %q, held by %q (%q), program %d, rules %v; want native XDP held by a pinned bpf link, with rules",
			when, iface, st.Mode, st.HeldBy, st.StateDir, st.ProgramID, st.NetfilterRules)
	}
	var got []string
	for _, s := range st.Services {
		got = append(got, fmt.Sprintf("%s %s %d", s.Family, s.Destination, s.Port))
	}
	slices.Sort(got)
	want := []string{fmt.Sprintf("ipv4 %s/32 %d", dut4.Addr(), port), fmt.Sprintf("ipv6 %s/128 %d", dut6.Addr(), port)}
	if !slices.Equal(got, want) {
		t.Errorf("%s: services %q, want %q", when, got, want)
	}
	return st
}

// connect dials addr:port from the client namespace and returns the client address the echo
// server saw: proof the handshake went through XDP and SYNPROXY with the real client address.
func (l *lab) connect(t *testing.T, addr netip.Addr, port int) {
	t.Helper()
	seen, err := l.pair.Client.ClientAddrSeen(netip.AddrPortFrom(addr, uint16(port)).String(), 3*time.Second)
	want := cli4.Addr()
	if addr.Is6() {
		want = cli6.Addr()
	}
	if err != nil {
		t.Errorf("client to %s port %d: %v", addr, port, err)
	} else if strings.TrimSpace(seen) != want.String() {
		t.Errorf("client to %s port %d: server saw %q, want %s", addr, port, strings.TrimSpace(seen), want)
	}
}

func (l *lab) echoServer(t *testing.T, port int) {
	t.Helper()
	stop, err := l.pair.Server.ServeClientAddr(port, dut4.Addr(), dut6.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
}

// netfilterAndSysctls is what xsyn may change in the DUT's netfilter and sysctls.
func (l *lab) netfilterAndSysctls(t *testing.T) string {
	t.Helper()
	out, err := l.pair.Server.Run("sh", "-c", "iptables-save; ip6tables-save; sysctl net.ipv4.tcp_syncookies net.netfilter.nf_conntrack_tcp_loose")
	if err != nil {
		t.Fatal(err)
	}
	var keep []string // rules, chains and sysctls; not the dump's comments and counters
	for _, line := range strings.Split(out, "\n") {
		// xsyn's chains are kept; the built-in chains' policy lines and empty tables are not: with
		// nf_tables, iptables creates tables on first use and they stay (README, Known issues).
		builtin := strings.HasPrefix(line, ":") && !strings.HasPrefix(line, ":XSYN")
		if !strings.HasPrefix(line, "#") && !builtin && !strings.HasPrefix(line, "*") && line != "COMMIT" {
			keep = append(keep, line)
		}
	}
	return strings.Join(keep, "\n")
}

func without(caps []string, c string) []string {
	return slices.DeleteFunc(slices.Clone(caps), func(x string) bool { return x == c })
}

// whyNeeded is what each capability of the attach unit is measured to be needed for: the Exec
// line that fails without it (ExecStart on an unprotected interface, or ExecReload) and the error
// it gets. CAP_BPF and CAP_PERFMON load the program, so only the first attach needs them; reload
// and stop find the program through its pinned link and maps and need CAP_NET_ADMIN alone.
var whyNeeded = map[string]struct{ exec, err string }{
	// The probe's test programs (BPF_PROG_LOAD).
	"CAP_BPF": {"ExecStart", "operation not permitted (loading the XDP program needs CAP_BPF and CAP_PERFMON"},
	// The verifier allows packet pointer arithmetic to perfmon_capable() programs only.
	"CAP_PERFMON": {"ExecStart", "pointer arithmetic with it prohibited for !root"},
	// iptables (nf_tables netlink).
	"CAP_NET_ADMIN": {"ExecReload", "Permission denied"},
}

// checkWhyNeeded fails the test for a capability of the attach unit without a whyNeeded entry,
// or an entry for a capability the unit does not declare.
func checkWhyNeeded(t *testing.T, caps []string) {
	t.Helper()
	for _, c := range caps {
		if why, ok := whyNeeded[c]; !ok {
			t.Errorf("%s is in %s's CapabilityBoundingSet but not in whyNeeded: record which Exec line fails without it, and why, there and in README.md", c, attachUnit)
		} else if why.exec != "ExecStart" && why.exec != "ExecReload" {
			t.Fatalf("whyNeeded[%s]: Exec line %q; the test tries ExecStart and ExecReload", c, why.exec)
		}
	}
	for c := range whyNeeded {
		if !slices.Contains(caps, c) {
			t.Errorf("whyNeeded has %s, which %s does not declare", c, attachUnit)
		}
	}
}

// neededBy lists the capabilities of caps whose whyNeeded entry names exec.
func neededBy(caps []string, exec string) []string {
	return slices.DeleteFunc(slices.Clone(caps), func(c string) bool { return whyNeeded[c].exec != exec })
}

// TestUnits runs the units' commands, start to stop, in a namespace pair.
func TestUnits(t *testing.T) {
	l := newLab(t)
	// A test that stops half-way leaves no pins in the host's bpffs: detach before the
	// namespaces go (cleanups run last-registered first).
	t.Cleanup(func() {
		exec.Command("nsenter", "--net=/run/netns/"+l.pair.Server.Name, xsynBin, "detach", iface).Run()
	})
	attach, export := readUnit(t, attachUnit), readUnit(t, exportUnit)
	caps, nnp := attach.capabilities(t), attach.noNewPrivileges()
	checkWhyNeeded(t, caps)
	l.echoServer(t, 8080)
	l.echoServer(t, 9090)
	conf := filepath.Join(l.dir, "xsyn.conf")
	copyFile(t, l.config(t, 8080), conf, 0o600)
	before := l.netfilterAndSysctls(t)
	start := attach.command(t, "ExecStart", iface, conf)

	// What only the first start needs (loading the program): without it, start fails and
	// leaves the interface as it was.
	for _, c := range neededBy(caps, "ExecStart") {
		_, errOut, code := l.run(t, start, without(caps, c), nnp)
		if code == 0 {
			t.Fatalf("ExecStart without %s succeeded: %s is not needed to load the program; fix whyNeeded", c, c)
		}
		if want := whyNeeded[c].err; !strings.Contains(errOut, want) {
			t.Errorf("ExecStart without %s: exit %d, stderr does not say %q:\n%s", c, code, want, errOut)
		}
		if sts := l.status(t); len(sts) != 0 {
			t.Errorf("failed ExecStart without %s left %+v", c, sts)
		}
		if now := l.netfilterAndSysctls(t); now != before {
			t.Errorf("failed ExecStart without %s changed netfilter or sysctls:\nbefore:\n%s\nafter:\n%s", c, before, now)
		}
	}

	// systemctl start: attach; the interface is protected and real clients get through.
	out := l.mustRun(t, "ExecStart", start, caps, nnp)
	if !strings.Contains(out, iface+": protecting (native XDP") {
		t.Errorf("ExecStart output does not say %s is protected in native mode:\n%s", iface, out)
	}
	st := l.protected(t, "after ExecStart", 8080)
	l.connect(t, dut4.Addr(), 8080)
	l.connect(t, dut6.Addr(), 8080)

	// The configuration changes. Reload finds the program through its pinned link and maps, so
	// it needs no CAP_SYS_ADMIN (not in the set) and not what loading needs; without what it
	// does need it fails, and what protects the interface stays as it was.
	copyFile(t, l.config(t, 9090), conf, 0o600)
	reload := attach.command(t, "ExecReload", iface, conf)
	for _, c := range neededBy(caps, "ExecReload") {
		_, errOut, code := l.run(t, reload, without(caps, c), nnp)
		if code == 0 {
			t.Errorf("ExecReload without %s succeeded: fix whyNeeded", c)
		} else if want := whyNeeded[c].err; !strings.Contains(errOut, want) {
			t.Errorf("ExecReload without %s: exit %d, stderr does not say %q:\n%s", c, code, want, errOut)
		}
		if st2 := l.protected(t, "after a failed ExecReload without "+c, 8080); st2.ProgramID != st.ProgramID {
			t.Errorf("failed ExecReload without %s replaced program %d with %d", c, st.ProgramID, st2.ProgramID)
		}
	}

	// A configuration with an error fails the reload and changes nothing either.
	good, _ := os.ReadFile(conf)
	if err := os.WriteFile(conf, append(good, "synproxy4 in inface d0 dport 80 acept\n"...), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, errOut, code := l.run(t, reload, caps, nnp); code != 1 || !strings.Contains(errOut, "nothing was changed") {
		t.Errorf("ExecReload with a wrong configuration: exit %d, want 1 and \"nothing was changed\":\n%s", code, errOut)
	}
	if st2 := l.protected(t, "after ExecReload with a wrong configuration", 8080); st2.ProgramID != st.ProgramID {
		t.Errorf("failed ExecReload replaced program %d with %d", st.ProgramID, st2.ProgramID)
	}
	if err := os.WriteFile(conf, good, 0o600); err != nil {
		t.Fatal(err)
	}

	// systemctl reload: the new configuration, in place: same program, never detached.
	l.mustRun(t, "ExecReload", reload, caps, nnp)
	if st2 := l.protected(t, "after ExecReload", 9090); st2.ProgramID != st.ProgramID {
		t.Errorf("ExecReload replaced program %d with %d: want the configuration updated in place", st.ProgramID, st2.ProgramID)
	}
	l.connect(t, dut4.Addr(), 9090)
	l.connect(t, dut6.Addr(), 9090)
	// Reload needs only what whyNeeded says it does: again, with the same configuration.
	if only := neededBy(caps, "ExecReload"); len(only) < len(caps) {
		l.mustRun(t, "ExecReload", reload, only, nnp)
		if st2 := l.protected(t, "after ExecReload with only "+strings.Join(only, " "), 9090); st2.ProgramID != st.ProgramID {
			t.Errorf("ExecReload with only %v replaced program %d with %d", only, st.ProgramID, st2.ProgramID)
		}
	}

	// The exporter serves the counters under its own capabilities, and needs each of them; with
	// them it puts back what a firewall reload takes.
	l.exporter(t, export)
	l.exporterRepairs(t, export)

	// systemctl stop: detach; nothing of xsyn is left.
	l.mustRun(t, "ExecStop", attach.command(t, "ExecStop", iface, conf), caps, nnp)
	if sts := l.status(t); len(sts) != 0 {
		t.Errorf("after ExecStop, status still lists %+v", sts)
	}
	after := l.netfilterAndSysctls(t)
	if after != before {
		t.Errorf("netfilter and sysctls after ExecStop differ from before ExecStart:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if strings.Contains(after, "XSYN") {
		t.Errorf("xsyn's chains or rules left after ExecStop:\n%s", after)
	}
	if link, _ := l.pair.Server.Run("ip", "link", "show", iface); strings.Contains(link, "xdp") {
		t.Errorf("XDP program still on %s after ExecStop:\n%s", iface, link)
	}
	if _, err := os.Stat(st.StateDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pins left in %s after ExecStop (%v)", st.StateDir, err)
	}
}

// exporter runs the exporter unit's ExecStart under its capabilities while the interface is
// protected: the metrics say so and nothing failed to be read. Without any one of its
// capabilities, the scrape counts collection errors.
func (l *lab) exporter(t *testing.T, u *unitFile) {
	t.Helper()
	caps, nnp := u.capabilities(t), u.noNewPrivileges()
	argv := u.command(t, "ExecStart", "", "")

	m := l.scrape(t, argv, caps, nnp)
	for _, want := range []struct {
		name   string
		labels map[string]string
		ok     func(float64) bool
		what   string
	}{
		{"xsyn_collection_errors_total", nil, func(v float64) bool { return v == 0 }, "0"},
		{"xsyn_attached", map[string]string{"iface": iface, "mode": "native"}, func(v float64) bool { return v == 1 }, "1"},
		{"xsyn_syn_received_total", map[string]string{"iface": iface, "family": "ipv4"}, func(v float64) bool { return v >= 2 }, ">= 2 (two connections)"},
		{"xsyn_ack_cookie_valid_total", map[string]string{"iface": iface, "family": "ipv6"}, func(v float64) bool { return v >= 2 }, ">= 2 (two connections)"},
		{"xsyn_netfilter_synproxy_cookie_valid_total", nil, func(v float64) bool { return v >= 4 }, ">= 4 (four connections)"},
	} {
		v, ok := m.value(want.name, want.labels)
		if !ok || !want.ok(v) {
			t.Errorf("exporter: %s%v = %v (present %v), want %s", want.name, want.labels, v, ok, want.what)
		}
	}
	for _, c := range caps {
		m := l.scrape(t, argv, without(caps, c), nnp)
		if v, ok := m.value("xsyn_collection_errors_total", nil); !ok || v == 0 {
			t.Errorf("exporter without %s: xsyn_collection_errors_total = %v (present %v); want errors, or drop %s from its CapabilityBoundingSet", c, v, ok, c)
		}
	}
}

// exporterRepairs runs the exporter unit's ExecStart under its capabilities while a firewall
// reload flushes the rules and a sysctl is set back: it puts both back, and clients connect.
func (l *lab) exporterRepairs(t *testing.T, u *unitFile) {
	t.Helper()
	caps, nnp := u.capabilities(t), u.noNewPrivileges()
	cmd := l.serviceCmd(u.command(t, "ExecStart", "", ""), caps, nnp)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		if err := <-exited; err != nil {
			t.Errorf("exporter on SIGTERM: %v\n%s", err, stderr.String())
		}
	}()
	scrape := func(ok func(metrics) bool) metrics {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			body, err := l.get()
			if err == nil && ok(parseMetrics(body)) {
				return parseMetrics(body)
			}
			if time.Now().After(deadline) {
				t.Fatalf("exporter (capabilities %v): not there after 10s: %v\n%s", caps, err, stderr.String())
			}
		}
	}
	scrape(func(metrics) bool { return true })
	if out, err := l.pair.Server.Run("sh", "-c", "iptables -F && sysctl -q -w net.netfilter.nf_conntrack_tcp_loose=1"); err != nil {
		t.Fatalf("the reload: %v\n%s", err, out)
	}
	m := scrape(func(m metrics) bool {
		v, ok := m.value("xsyn_rules_repairs_total", map[string]string{"iface": iface})
		return ok && v >= 1
	})
	if v, ok := m.value("xsyn_rules_repair_failures_total", map[string]string{"iface": iface}); !ok || v != 0 {
		t.Errorf("exporter: xsyn_rules_repair_failures_total %v (present %v), want 0\n%s", v, ok, stderr.String())
	}
	if out, _ := l.pair.Server.Run("sysctl", "-n", "net.netfilter.nf_conntrack_tcp_loose"); strings.TrimSpace(out) != "0" {
		t.Errorf("nf_conntrack_tcp_loose after the exporter's repair: %q, want 0", out)
	}
	l.connect(t, dut4.Addr(), 9090)
	l.connect(t, dut6.Addr(), 9090)
}

// scrape starts the exporter, scrapes it once it listens, and stops it as systemd does
// (SIGTERM), expecting a clean exit.
func (l *lab) scrape(t *testing.T, argv, caps []string, nnp bool) metrics {
	t.Helper()
	cmd := l.serviceCmd(argv, caps, nnp)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() error {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			return err
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
			return errors.New("did not stop within 10s of SIGTERM")
		}
	}

	var body string
	var err error
	deadline := time.Now().Add(10 * time.Second)
	for {
		if body, err = l.get(); err == nil {
			break
		}
		select {
		case werr := <-exited:
			t.Fatalf("exporter (%s, capabilities %v) exited before serving: %v\n%s", strings.Join(argv, " "), caps, werr, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			stop()
			t.Fatalf("exporter (capabilities %v) not serving on %s after 10s: %v\n%s", caps, metricsURL, err, stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := stop(); err != nil {
		t.Errorf("exporter (capabilities %v) on SIGTERM: %v\n%s", caps, err, stderr.String())
	}
	return parseMetrics(body)
}

// get fetches the metrics from inside the DUT namespace. The connection is made on the thread
// Do switched into the namespace, so no http.Transport (which dials from goroutines of its own).
func (l *lab) get() (string, error) {
	var body string
	err := l.pair.Server.Do(func() error {
		c, err := net.DialTimeout("tcp", metricsURL, time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(c, "GET /metrics HTTP/1.0\r\nHost: "+metricsURL+"\r\n\r\n"); err != nil {
			return err
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET /metrics: %s", resp.Status)
		}
		body = string(b)
		return nil
	})
	return body, err
}

// metrics are samples of the Prometheus text format: name, labels, value.
type metrics []sample

type sample struct {
	name   string
	labels map[string]string
	value  float64
}

func parseMetrics(text string) metrics {
	var m metrics
	for _, line := range strings.Split(text, "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		s := sample{labels: map[string]string{}}
		rest := line
		if i := strings.IndexAny(line, "{ "); i >= 0 {
			s.name, rest = line[:i], line[i:]
		}
		if strings.HasPrefix(rest, "{") {
			end := strings.LastIndex(rest, "}")
			if end < 0 {
				continue
			}
			for _, pair := range strings.Split(rest[1:end], ",") {
				if k, v, ok := strings.Cut(pair, "="); ok {
					s.labels[k] = strings.Trim(v, `"`)
				}
			}
			rest = rest[end+1:]
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			continue
		}
		s.value = v
		m = append(m, s)
	}
	return m
}

// value returns the sample of name whose labels include want.
func (m metrics) value(name string, want map[string]string) (float64, bool) {
	for _, s := range m {
		if s.name != name {
			continue
		}
		match := true
		for k, v := range want {
			if s.labels[k] != v {
				match = false
			}
		}
		if match {
			return s.value, true
		}
	}
	return 0, false
}
