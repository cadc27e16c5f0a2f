package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xsyn-project/xsyn/internal/netlab"
	"github.com/xsyn-project/xsyn/internal/testutil"
	"github.com/xsyn-project/xsyn/loader"
)

// The built binary (xsynBin, from TestMain), as an operator runs it: the tables of cli_test.go
// through exec, the errors only the binary can meet (not root, a kernel without a feature), and
// status --json against a real attachment.

// runCmd runs cmd and returns its exit code, stdout and stderr. The deadline only stops a
// command that hangs (serve that should have refused to start); nothing waits on it.
func runCmd(argv ...string) func(func(*exec.Cmd)) (int, string, string, error) {
	return func(tweak func(*exec.Cmd)) (int, string, string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
		var so, se strings.Builder
		cmd.Stdout, cmd.Stderr = &so, &se
		if tweak != nil {
			tweak(cmd)
		}
		err := cmd.Run()
		var ee *exec.ExitError
		if errors.As(err, &ee) && ee.ExitCode() >= 0 {
			err = nil
		}
		code := 0
		if ee != nil {
			code = ee.ExitCode()
		}
		return code, so.String(), se.String(), err
	}
}

// binary runs xsynBin with argv prefix (how to enter a namespace) in front.
func binary(t *testing.T, prefix ...string) runner {
	return func(args ...string) (int, string, string) {
		t.Helper()
		code, out, errOut, err := runCmd(append(append(prefix, xsynBin), args...)...)(nil)
		if err != nil {
			t.Fatalf("run xsyn %s: %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), err, out, errOut)
		}
		return code, out, errOut
	}
}

// emptyNamespace is a namespace of the test's own with nothing but lo, and how to enter it.
func emptyNamespace(t *testing.T, prefix string) (*netlab.Host, []string) {
	t.Helper()
	lab := testutil.Lab(t, prefix)
	h, err := lab.Host("h")
	if err != nil {
		t.Fatal(err)
	}
	return h, []string{"ip", "netns", "exec", h.Name}
}

// xsyn --help, every command's --help and -h, the examples, through the binary; xsyn version.
func TestBinaryHelp(t *testing.T) {
	requireRootForTest(t)
	xsyn := binary(t)
	checkHelp(t, xsyn)
	code, out, errOut := xsyn("version")
	if code != exitOK || !regexp.MustCompile(`^xsyn [^\s]+\n$`).MatchString(out) || errOut != "" {
		t.Errorf("xsyn version: exit %d, stdout %q, stderr %q; want 0 and \"xsyn VERSION\"", code, out, errOut)
	}
}

// The usage-error table through the binary, in an empty namespace whose rules and sysctls stay
// as they were: a wrong command line never reaches the kernel.
func TestBinaryUsageErrors(t *testing.T) {
	requireRootForTest(t)
	h, enter := emptyNamespace(t, "xsynbu")
	before, err := h.Run(netfilterState[0], netfilterState[1:]...)
	if err != nil {
		t.Fatal(err)
	}
	checkUsageErrors(t, binary(t, enter...))
	if after, err := h.Run(netfilterState[0], netfilterState[1:]...); err != nil || after != before {
		t.Errorf("usage errors changed the namespace (%v):\nbefore:\n%s\nafter:\n%s", err, before, after)
	}
}

// The exit-1 table through the binary under `ip netns exec`.
func TestBinaryErrorsExitOne(t *testing.T) {
	requireRootForTest(t)
	l := newE2ELab(t, "xsynbe", enterers["ip-netns-exec"])
	checkExitOne(t, l, binary(t, l.enter(l.dut)...))
}

// Not root: every command that reads or changes the kernel's state exits 1 saying root is
// needed and what to do, and changes nothing of an existing attachment; explain works.
func TestBinaryNotRoot(t *testing.T) {
	requireRootForTest(t)
	l := newE2ELab(t, "xsynbr", enterers["ip-netns-exec"])
	l.echoServer(t, 8080)
	if err := os.Chmod(filepath.Dir(xsynBin), 0o755); err != nil { // MkdirTemp made it 0700
		t.Fatal(err)
	}
	l.mustXsyn(t, "attach", "d0", "--port", "8080", "--dst", "192.0.2.2")
	t.Cleanup(func() { l.xsyn(t, "detach", "d0") })
	conf := writeConfig(t, "d0.conf", "synproxy4 in inface d0 dst 192.0.2.2 dport 8080 accept\n")
	// nobody, started from a thread inside the DUT namespace (host mounts, the host's bpffs).
	nobody := func(args ...string) (code int, out, errOut string) {
		t.Helper()
		err := l.dut.Do(func() (err error) {
			code, out, errOut, err = runCmd(append([]string{xsynBin}, args...)...)(func(c *exec.Cmd) {
				c.Dir = "/"
				c.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
			})
			return err
		})
		if err != nil {
			t.Fatalf("xsyn %s as nobody: %v", strings.Join(args, " "), err)
		}
		return code, out, errOut
	}
	if code, out, _ := nobody("version"); code != 0 || !strings.HasPrefix(out, "xsyn ") {
		t.Fatalf("xsyn version as nobody: exit %d: %s", code, out)
	}

	before := l.nsState(t)
	for _, args := range [][]string{
		{"attach", "d0", "--port", "8080", "--dst", "192.0.2.2"},
		{"attach", "d0", "--config", conf},
		{"attach", "d0"}, // the listener on 8080 is found; root is still needed
		{"detach", "d0"},
		{"status"},
		{"status", "d0", "--json", "--interval", "0"},
		{"serve", "--web.listen-address", "127.0.0.1:0"},
	} {
		code, out, errOut := nobody(args...)
		want := fmt.Sprintf("xsyn %s: must run as root (needs CAP_NET_ADMIN, CAP_BPF and CAP_PERFMON): try sudo\n", args[0])
		if code != exitError || out != "" || errOut != want {
			t.Errorf("xsyn %s as nobody: exit %d, want 1 and only %q\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, want, out, errOut)
		}
	}
	// explain reads what it needs without privileges; what only root can ask (does the kernel
	// have the handoff, does the server listen with MPTCP) it says it could not check, and
	// shows the default's path as if nothing stood in its way.
	code, out, errOut := nobody("explain", "d0", "--config", conf)
	if code != exitOK || !strings.Contains(out, "1. "+conf+":1: synproxy4 in inface d0 dst 192.0.2.2 dport 8080 accept\n") ||
		!strings.Contains(out, "     path: handoff: ") || !strings.Contains(out, "could not be checked (explain checks both as root)") || errOut != "" {
		t.Errorf("xsyn explain as nobody: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	if after := l.nsState(t); after != before {
		t.Errorf("commands run as nobody changed the namespace:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// status --json against a real attachment, entered both ways: without bpffs (`ip netns exec`)
// netlink holds the program and nothing is pinned; with the host's bpffs (nsenter) a pinned bpf
// link does. Every field says what was attached; a real connection moves ack_cookie_valid by 1.
func TestBinaryStatusJSON(t *testing.T) {
	requireRootForTest(t)
	for _, tc := range []struct{ enter, prefix string }{{"ip-netns-exec", "xsynbjn"}, {"nsenter", "xsynbjs"}} {
		t.Run(tc.enter, func(t *testing.T) { testBinaryStatusJSON(t, newE2ELab(t, tc.prefix, enterers[tc.enter])) })
	}
}

func testBinaryStatusJSON(t *testing.T, l *e2eLab) {
	// Go's servers listen with MPTCP: the default puts their statements on the SYNPROXY path,
	// with a warning, and status says so of each service.
	l.echoServer(t, 8080)
	l.echoServer(t, 9090)
	before := l.nsState(t)
	out, errOut, code := l.xsyn(t, "attach", "d0", "--port", "8080,9090", "--dst", "192.0.2.2", "--mss", "1400", "--ttl", "70")
	if code != 0 {
		t.Fatalf("attach: exit %d\n%s%s", code, out, errOut)
	}
	t.Cleanup(func() { l.xsyn(t, "detach", "d0") }) // pins in the host's bpffs outlive the namespace
	for _, line := range strings.Split(strings.TrimSpace(errOut), "\n") {
		if line != "" && !strings.HasPrefix(line, "xsyn attach: warning: ") {
			t.Errorf("attach succeeded but stderr has more than warnings:\n%s", errOut)
		}
	}
	if !strings.Contains(errOut, "xsyn attach: warning: synproxy4 input dst 192.0.2.2/32 dport 8080,9090 accept: SYNPROXY path: the server on 192.0.2.2:") ||
		!strings.Contains(errOut, " listens with MPTCP") {
		t.Errorf("attach does not say why the statement is on the SYNPROXY path:\n%s", errOut)
	}
	var cookie uint64
	if err := l.dut.Do(func() (err error) { cookie, err = netnsCookie(); return err }); err != nil {
		t.Fatal(err)
	}
	heldBy, stateDir, holder := "netlink", "", "held by the interface through netlink, no bpffs mounted here"
	if l.enter(l.dut)[0] == "nsenter" {
		stateDir = filepath.Join(loader.BPFFS, "xsyn", fmt.Sprintf("netns-%d", cookie), "d0")
		heldBy, holder = "bpf-link", "held by a bpf link pinned in "+stateDir
	}
	if want := "d0: protecting (native XDP; " + holder + ")\n"; !strings.HasPrefix(out, want) {
		t.Errorf("attach says\n%s\nwant it to begin %q", out, want)
	}

	raw := l.mustXsyn(t, "status", "d0", "--json", "--interval", "0")
	var st statusJSON
	if err := json.Unmarshal([]byte(raw), &st); err != nil || len(st.Interfaces) != 1 {
		t.Fatalf("status --json: %v, %d interfaces:\n%s", err, len(st.Interfaces), raw)
	}
	s := st.Interfaces[0]
	if s.Interface != "d0" || s.Mode != "native" || s.HeldBy != heldBy || s.StateDir != stateDir || !s.NetfilterRules {
		t.Errorf("status: interface %q mode %q held_by %q state_dir %q netfilter_rules %v; want d0, native, %s, %q, true",
			s.Interface, s.Mode, s.HeldBy, s.StateDir, s.NetfilterRules, heldBy, stateDir)
	}
	if stateDir != "" {
		if _, err := os.Stat(filepath.Join(stateDir, "link")); err != nil {
			t.Errorf("state_dir %s has no pinned link: %v", stateDir, err)
		}
	}
	link, err := l.dut.Run("ip", "-d", "link", "show", "d0")
	if err != nil {
		t.Fatal(err)
	}
	if s.ProgramID == 0 || !strings.Contains(link, fmt.Sprintf("prog/xdp id %d ", s.ProgramID)) {
		t.Errorf("status program_id %d is not the XDP program on d0:\n%s", s.ProgramID, link)
	}
	ws := l.stackWScale(t)
	want := []serviceJSON{
		{Family: "ipv4", Destination: "192.0.2.2/32", Port: 8080, MSS: 1400, WScale: ws, SACK: true, Timestamps: true, TTL: 70, Path: "synproxy"},
		{Family: "ipv4", Destination: "192.0.2.2/32", Port: 9090, MSS: 1400, WScale: ws, SACK: true, Timestamps: true, TTL: 70, Path: "synproxy"},
	}
	if !reflect.DeepEqual(s.Services, want) {
		t.Errorf("status services:\n%+v\nwant exactly what was attached:\n%+v", s.Services, want)
	}
	keys := []string{"interface", "mode", "held_by", "program_id", "netfilter_rules", "services", "counters"}
	if stateDir != "" {
		keys = append(keys, "state_dir")
	}
	checkDocumentedKeys(t, raw, keys)

	// One real connection: one SYN answered from XDP, one valid cookie, nothing else of the kind.
	// The client has the server's answer, so its ACK has passed XDP and been counted.
	if seen, err := l.connect("192.0.2.2:8080"); err != nil || seen != cli4.Addr().String() {
		t.Fatalf("client through XDP and SYNPROXY: server saw %q, %v", seen, err)
	}
	s1 := l.status(t)
	for _, c := range []struct {
		fam, name string
		delta     uint64
	}{
		{"ipv4", "syn_received", 1}, {"ipv4", "synack_sent", 1}, {"ipv4", "ack_cookie_valid", 1}, {"ipv4", "ack_cookie_invalid", 0},
		{"ipv6", "syn_received", 0}, {"ipv6", "ack_cookie_valid", 0},
	} {
		if d := counter(s1, c.fam, c.name) - counter(s, c.fam, c.name); d != c.delta {
			t.Errorf("one connection moved %s %s by %d, want %d", c.fam, c.name, d, c.delta)
		}
	}

	l.mustXsyn(t, "detach", "d0")
	if after := l.nsState(t); after != before {
		t.Errorf("state after detach differs from before attach:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// checkDocumentedKeys checks status --json output against docs/status-json.md and
// bpf/counters.h: the interface object has exactly the keys want, each documented; the
// services have the documented keys; counters, when present, have the families ipv4, ipv6 and
// other, each with exactly the fields of struct counters.
func checkDocumentedKeys(t *testing.T, raw string, want []string) {
	t.Helper()
	doc, err := os.ReadFile("../../docs/status-json.md")
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Interfaces []map[string]json.RawMessage `json:"interfaces"`
	}
	if err := json.Unmarshal([]byte(raw), &st); err != nil {
		t.Fatal(err)
	}
	for _, iface := range st.Interfaces {
		got := slices.Sorted(maps.Keys(iface))
		if !slices.Equal(got, slices.Sorted(slices.Values(want))) {
			t.Errorf("status --json keys %v, want %v", got, slices.Sorted(slices.Values(want)))
		}
		for _, k := range got {
			if !strings.Contains(string(doc), `"`+k+`":`) {
				t.Errorf("status --json key %q is not in docs/status-json.md", k)
			}
		}
		var svcs []map[string]any
		if err := json.Unmarshal(iface["services"], &svcs); err != nil {
			t.Fatal(err)
		}
		for _, svc := range svcs {
			if got := slices.Sorted(maps.Keys(svc)); !slices.Equal(got, []string{"destination", "ecn", "family", "mss", "path", "port", "sack", "timestamps", "ttl", "wscale"}) {
				t.Errorf("service keys %v", got)
			}
			for k := range svc {
				if !strings.Contains(string(doc), `"`+k+`":`) {
					t.Errorf("service key %q is not in docs/status-json.md", k)
				}
			}
		}
		if iface["counters"] == nil {
			continue
		}
		var counters map[string]map[string]uint64
		if err := json.Unmarshal(iface["counters"], &counters); err != nil {
			t.Fatal(err)
		}
		if fams := slices.Sorted(maps.Keys(counters)); !slices.Equal(fams, []string{"ipv4", "ipv6", "other"}) {
			t.Errorf("counter families %v, want ipv4, ipv6, other", fams)
		}
		fields := counterFields(t)
		for fam, c := range counters {
			if got := slices.Sorted(maps.Keys(c)); !slices.Equal(got, fields) {
				t.Errorf("%s counters %v, want the fields of struct counters %v", fam, got, fields)
			}
		}
	}
}

// counterFields are the fields of struct counters in bpf/counters.h, sorted: the documented
// counter names. They are read from the program's BTF: the C source makes them with a macro.
func counterFields(t *testing.T) []string {
	t.Helper()
	var fields []string
	for _, f := range loader.Fields(loader.Counters{}) {
		fields = append(fields, f.Name)
	}
	for _, doc := range []string{"syn_received", "synack_sent", "ack_cookie_valid", "ack_cookie_invalid", "established_passed"} {
		if !slices.Contains(fields, doc) {
			t.Errorf("struct counters lacks documented counter %s", doc)
		}
	}
	slices.Sort(fields)
	return fields
}

// What the README's table promises where the host lacks something: `--mode auto` uses generic
// XDP where the driver has no native XDP, and netfilter-only protection where the kernel cannot
// run the XDP program; a forced mode fails instead, changing nothing, and says what to do.
func TestBinaryFallbacks(t *testing.T) {
	requireRootForTest(t)
	l := newE2ELab(t, "xsynbf", enterers["ip-netns-exec"])
	l.echoServer(t, 8080)

	t.Run("generic where the driver has no native XDP", func(t *testing.T) {
		var ln net.Listener
		if err := l.dut.Do(func() (err error) { ln, err = net.Listen("tcp4", "127.0.0.1:8081"); return err }); err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		before := l.nsState(t)
		// --mode native on lo: checkExitOne. auto: generic, with a warning. The server is Go's,
		// listening with MPTCP: the default keeps it on SYNPROXY, and says that too.
		out, errOut, code := l.xsyn(t, "attach", "lo", "--port", "8081", "--dst", "127.0.0.1")
		if code != 0 || !strings.HasPrefix(out, "lo: protecting (generic XDP; held by the interface through netlink") ||
			errOut != "xsyn attach: warning: synproxy4 input dst 127.0.0.1/32 dport 8081 accept: SYNPROXY path: the server on 127.0.0.1:8081 listens with MPTCP, "+
				"which the kernel cannot hand connections to (Go's net.Listen does by default; turn MPTCP off in the server to use the handoff)\n"+
				"xsyn attach: warning: driver of lo has no native XDP (native: operation not supported); attached in generic mode, which is much slower\n" {
			t.Errorf("attach lo in auto mode: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
		}
		var st statusJSON
		raw := l.mustXsyn(t, "status", "lo", "--json", "--interval", "0")
		if err := json.Unmarshal([]byte(raw), &st); err != nil || len(st.Interfaces) != 1 {
			t.Fatalf("status lo --json: %v\n%s", err, raw)
		}
		if s := st.Interfaces[0]; s.Mode != "generic" || s.ProgramID == 0 || len(s.Services) != 1 || s.Counters == nil {
			t.Errorf("status of lo after auto attach: %+v; want generic XDP with its service and counters", s)
		}
		if out := l.mustXsyn(t, "detach", "lo"); out != "lo: xsyn removed\n" {
			t.Errorf("detach lo: %q", out)
		}
		if after := l.nsState(t); after != before {
			t.Errorf("state after detach differs from before attach:\nbefore:\n%s\nafter:\n%s", before, after)
		}
	})

	// The one missing feature this machine can show honestly: kernel BTF. A kernel built
	// without CONFIG_DEBUG_INFO_BTF has no /sys/kernel/btf/vmlinux; here a tmpfs hides it from
	// xsyn alone, in the private mount namespace `ip netns exec` gives the command (it is gone
	// with the command and never propagates to the host). The BPF helpers are still probed for
	// real.
	t.Run("netfilter-only where the kernel cannot run XDP", func(t *testing.T) {
		noBTF := *l
		noBTF.enter = func(h *netlab.Host) []string {
			return []string{"ip", "netns", "exec", h.Name, "sh", "-c", `mount -t tmpfs xsyn-test-no-btf /sys/kernel/btf && exec "$0" "$@"`}
		}
		lacks := "xsyn attach: kernel lacks kernel BTF (/sys/kernel/btf/vmlinux) (added in Linux 5.4 with CONFIG_DEBUG_INFO_BTF): "
		before := l.nsState(t)
		for _, mode := range []string{"native", "generic"} {
			out, errOut, code := noBTF.xsyn(t, "attach", "d0", "--port", "8080", "--dst", "192.0.2.2", "--mode", mode)
			if code != exitError || out != "" || !strings.HasPrefix(errOut, lacks) ||
				!strings.HasSuffix(errOut, "\nxsyn attach: the XDP fast path cannot run on this kernel: --mode auto protects d0 with netfilter SYNPROXY alone, and says so (--mode netfilter asks for that outright)\n") {
				t.Errorf("attach --mode %s without kernel BTF: exit %d, want 1 saying what lacks and what to do\nstdout: %s\nstderr: %s", mode, code, out, errOut)
			}
			if after := l.nsState(t); after != before {
				t.Errorf("attach --mode %s without kernel BTF changed the namespace:\nbefore:\n%s\nafter:\n%s", mode, before, after)
			}
		}

		// auto: the handoff the default would take cannot run either, and attach says both.
		out, errOut, code := noBTF.xsyn(t, "attach", "d0", "--port", "8080", "--dst", "192.0.2.2")
		warnings := strings.Split(strings.TrimSuffix(errOut, "\n"), "\n")
		if code != 0 || len(warnings) != 2 ||
			!strings.HasPrefix(warnings[0], "xsyn attach: warning: socket handoff unavailable, statements that would take it use netfilter SYNPROXY: the kernel lacks the socket handoff (kernel lacks kernel BTF") ||
			!strings.HasPrefix(warnings[1], "xsyn attach: warning: XDP fast path unavailable, protecting with netfilter SYNPROXY only: kernel lacks kernel BTF") ||
			!strings.HasPrefix(out, "d0: protecting (netfilter-only: SYNPROXY rules without the XDP fast path)\n") ||
			!strings.Contains(out, "path: synproxy: the kernel lacks the socket handoff (kernel lacks kernel BTF") ||
			!strings.Contains(out, "SYNPROXY answers its SYNs (no XDP fast path)") {
			t.Fatalf("attach in auto mode without kernel BTF: exit %d, want 0 protecting with netfilter alone, saying so\nstdout: %s\nstderr: %s", code, out, errOut)
		}
		raw := l.mustXsyn(t, "status", "d0", "--json", "--interval", "0")
		var st statusJSON
		if err := json.Unmarshal([]byte(raw), &st); err != nil || len(st.Interfaces) != 1 {
			t.Fatalf("status --json: %v\n%s", err, raw)
		}
		if s := st.Interfaces[0]; s.Mode != "netfilter-only" || !s.NetfilterRules || len(s.Services) != 0 {
			t.Errorf("status after the fallback: %+v; want netfilter-only with rules", s)
		}
		checkDocumentedKeys(t, raw, []string{"interface", "mode", "netfilter_rules", "services"})
		if link, _ := l.dut.Run("ip", "link", "show", "d0"); strings.Contains(link, "xdp") {
			t.Errorf("an XDP program is on d0 in netfilter-only mode:\n%s", link)
		}
		// SYNPROXY alone answers the client's SYN and validates its cookie.
		syn0 := l.synproxyStat(t)
		if seen, err := l.connect("192.0.2.2:8080"); err != nil || seen != cli4.Addr().String() {
			t.Fatalf("client through SYNPROXY alone: server saw %q, %v", seen, err)
		}
		if syn1 := l.synproxyStat(t); syn1["syn_received"]-syn0["syn_received"] != 1 || syn1["cookie_valid"]-syn0["cookie_valid"] != 1 {
			t.Errorf("one connection in netfilter-only mode: SYNPROXY %v -> %v; want syn_received and cookie_valid +1", syn0, syn1)
		}
		l.mustXsyn(t, "detach", "d0")
		if after := l.nsState(t); after != before {
			t.Errorf("state after detach differs from before attach:\nbefore:\n%s\nafter:\n%s", before, after)
		}
	})
}

// Not a fallback: a process that may not load BPF programs (here: root with only
// CAP_NET_ADMIN, as a unit or container with too few capabilities) is told so, with nothing
// changed, rather than "protected" in netfilter-only mode as if the kernel were old.
func TestBinaryWithoutBPFCapability(t *testing.T) {
	requireRootForTest(t)
	l := newE2ELab(t, "xsynbc", enterers["ip-netns-exec"])
	l.echoServer(t, 8080)
	noBPF := *l
	noBPF.enter = func(h *netlab.Host) []string {
		return []string{"ip", "netns", "exec", h.Name, "setpriv", "--bounding-set=-all,+net_admin", "--inh-caps=-all", "--"}
	}
	before := l.nsState(t)
	out, errOut, code := noBPF.xsyn(t, "attach", "d0", "--port", "8080")
	// The first probe to fail is the socket handoff's (--port takes it by default) or the XDP
	// program's; either names what is missing.
	if code != exitError || out != "" || !strings.Contains(errOut, "xsyn attach: probe BPF helper ") ||
		!strings.Contains(errOut, "operation not permitted (loading ") ||
		!strings.Contains(errOut, " needs CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN, and bpf(2) allowed)") {
		t.Errorf("attach without CAP_BPF/CAP_SYS_ADMIN: exit %d, want 1 naming the capabilities\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	if after := l.nsState(t); after != before {
		t.Errorf("attach without CAP_BPF changed the namespace:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// As a unit or a container runs xsyn: root with CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN, without
// CAP_SYS_ADMIN. With the host's bpffs (nsenter) the program is found through its pinned link, so
// attach, attach again (in place), status and detach all work. Under `ip netns exec` netlink
// holds the program, and nothing but opening it by id (CAP_SYS_ADMIN) tells it from another
// tool's: every command says so, exits 1 and changes nothing.
func TestBinaryWithoutSysAdmin(t *testing.T) {
	requireRootForTest(t)
	limited := func(l *e2eLab) *e2eLab {
		lim := *l
		lim.enter = func(h *netlab.Host) []string {
			return append(l.enter(h), "setpriv", "--bounding-set=-all,+bpf,+perfmon,+net_admin", "--inh-caps=-all", "--")
		}
		return &lim
	}
	ports := func(st ifaceJSON) []uint16 {
		var ps []uint16
		for _, s := range st.Services {
			ps = append(ps, s.Port)
		}
		return ps
	}

	t.Run("pinned", func(t *testing.T) {
		l := newE2ELab(t, "xsynbsp", enterers["nsenter"])
		l.echoServer(t, 8080)
		l.echoServer(t, 9090)
		lim := limited(l)
		before := l.nsState(t)
		t.Cleanup(func() { l.xsyn(t, "detach", "d0") }) // pins in the host's bpffs outlive the namespace
		if out := lim.mustXsyn(t, "attach", "d0", "--port", "8080", "--dst", "192.0.2.2"); !strings.HasPrefix(out, "d0: protecting (native XDP; held by a bpf link pinned in ") {
			t.Errorf("attach without CAP_SYS_ADMIN says\n%s\nwant native XDP held by a pinned bpf link", out)
		}
		st := lim.status(t)
		if st.HeldBy != "bpf-link" || st.StateDir == "" || st.ProgramID == 0 || !slices.Equal(ports(st), []uint16{8080}) {
			t.Errorf("status without CAP_SYS_ADMIN: %+v; want port 8080 held by a pinned bpf link", st)
		}
		if out := lim.mustXsyn(t, "attach", "d0", "--port", "8080,9090", "--dst", "192.0.2.2"); !strings.HasPrefix(out, "d0: updated; protecting (native XDP; held by a bpf link pinned in "+st.StateDir+")") {
			t.Errorf("attach again without CAP_SYS_ADMIN says\n%s\nwant the pinned program updated in place", out)
		}
		st2 := lim.status(t)
		if st2.ProgramID != st.ProgramID || !slices.Equal(ports(st2), []uint16{8080, 9090}) {
			t.Errorf("after attach again without CAP_SYS_ADMIN: program %d, ports %v; want program %d updated in place to 8080 and 9090", st2.ProgramID, ports(st2), st.ProgramID)
		}
		if seen, err := l.connect("192.0.2.2:9090"); err != nil || seen != cli4.Addr().String() {
			t.Errorf("client to the port added without CAP_SYS_ADMIN: server saw %q, %v", seen, err)
		}
		if out := lim.mustXsyn(t, "status", "--interval", "0"); !strings.HasPrefix(out, "d0: native XDP; held by a bpf link pinned in ") {
			t.Errorf("status of every interface without CAP_SYS_ADMIN:\n%s", out)
		}
		if out := lim.mustXsyn(t, "detach", "d0"); out != "d0: xsyn removed\n" {
			t.Errorf("detach without CAP_SYS_ADMIN: %q", out)
		}
		if after := l.nsState(t); after != before {
			t.Errorf("state after detach differs from before attach:\nbefore:\n%s\nafter:\n%s", before, after)
		}
	})

	t.Run("held by netlink", func(t *testing.T) {
		l := newE2ELab(t, "xsynbsn", enterers["ip-netns-exec"])
		l.echoServer(t, 8080)
		l.mustXsyn(t, "attach", "d0", "--port", "8080", "--dst", "192.0.2.2")
		t.Cleanup(func() { l.xsyn(t, "detach", "d0") })
		st := l.status(t)
		before := l.nsState(t)
		want := fmt.Sprintf("cannot tell whose XDP program is attached to d0: program id %d is not held by a link xsyn pinned in %s (no bpffs mounted there)", st.ProgramID, loader.BPFFS)
		for _, args := range [][]string{
			{"status", "d0", "--json", "--interval", "0"},
			{"status", "--interval", "0"},
			{"attach", "d0", "--port", "8080,9090", "--dst", "192.0.2.2"},
			{"detach", "d0"},
		} {
			out, errOut, code := limited(l).xsyn(t, args...)
			if code != exitError || out != "" || !strings.Contains(errOut, want) || !strings.Contains(errOut, "which needs CAP_SYS_ADMIN: ") {
				t.Errorf("xsyn %s without CAP_SYS_ADMIN, held by netlink: exit %d, want 1 saying %q and that it needs CAP_SYS_ADMIN\nstdout: %s\nstderr: %s",
					strings.Join(args, " "), code, want, out, errOut)
			}
		}
		if after := l.nsState(t); after != before {
			t.Errorf("commands without CAP_SYS_ADMIN changed the namespace:\nbefore:\n%s\nafter:\n%s", before, after)
		}
	})
}

// synproxyStat sums the DUT's /proc/net/stat/synproxy over CPUs, by column name.
func (l *e2eLab) synproxyStat(t *testing.T) map[string]uint64 {
	t.Helper()
	out, err := l.dut.Run("cat", "/proc/net/stat/synproxy")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	names := strings.Fields(lines[0])
	sum := map[string]uint64{}
	for _, line := range lines[1:] {
		for i, f := range strings.Fields(line) {
			v, err := strconv.ParseUint(f, 16, 64)
			if err != nil || i >= len(names) {
				t.Fatalf("/proc/net/stat/synproxy:\n%s", out)
			}
			sum[names[i]] += v
		}
	}
	return sum
}
