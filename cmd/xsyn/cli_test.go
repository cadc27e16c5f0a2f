package main

import (
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/xsyn-project/xsyn/loader"
)

// runner runs xsyn with args and returns its exit code, stdout and stderr: in-process (runCLI)
// or as the built binary (binary_test.go), so each documented case is checked both ways.
type runner func(args ...string) (code int, stdout, stderr string)

func runCLI(args ...string) (code int, stdout, stderr string) {
	var out, errOut strings.Builder
	code = run(append([]string{"xsyn"}, args...), &out, &errOut)
	return code, out.String(), errOut.String()
}

// Every command teaches: --help exits 0 with a synopsis and an example.
func TestHelp(t *testing.T) { checkHelp(t, runCLI) }

// checkHelp: xsyn --help lists every command and the exit codes; every command's --help (and
// -h) exits 0 with its synopsis and an example on stdout, and nothing on stderr.
func checkHelp(t *testing.T, xsyn runner) {
	t.Helper()
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}} {
		code, out, errOut := xsyn(args...)
		if code != exitOK || errOut != "" || !strings.Contains(out, "Usage: xsyn COMMAND") || !strings.Contains(out, "Examples:") ||
			!strings.Contains(out, "Exit codes: 0 ok, 1 error (nothing left half-changed") || !strings.Contains(out, "2 usage") {
			t.Errorf("xsyn %s: exit %d, want 0 with the usage, examples and exit codes on stdout\nstdout: %s\nstderr: %s", args[0], code, out, errOut)
		}
		for _, c := range commands() {
			if !strings.Contains(out, "\n  "+c.name+" ") {
				t.Errorf("xsyn %s does not list command %s", args[0], c.name)
			}
		}
	}
	for _, c := range commands() {
		for _, h := range []string{"--help", "-h"} {
			code, out, errOut := xsyn(c.name, h)
			if code != exitOK || errOut != "" || !strings.HasPrefix(out, "Usage: xsyn "+c.name) || !strings.Contains(out, "Example") {
				t.Errorf("xsyn %s %s: exit %d, want 0 with usage and an example on stdout\nstdout: %s\nstderr: %s", c.name, h, code, out, errOut)
			}
		}
	}
	// The commands that take a configuration show one, and where it is documented.
	for _, c := range []string{"attach", "explain"} {
		_, out, _ := xsyn(c, "--help")
		for _, want := range []string{"-config FILE", "docs/config.md",
			`synproxy4 in inface eth0 dst 203.0.113.10 dport 2200 redirect to 22 loglimit "SYNPROXY SSH"`,
			"synproxy6 forward inface eth0 dst 2001:db8::10 dport 80,443 dnat to [2001:db8:1::5]",
			"-probe", "FILE:LINE:COL"} {
			if !strings.Contains(out, want) {
				t.Errorf("xsyn %s --help lacks %q", c, want)
			}
		}
	}
	if _, out, _ := xsyn("attach", "--help"); !strings.Contains(out, "-mode M") || !strings.Contains(out, "netfilter-only mode") {
		t.Errorf("xsyn attach --help does not explain --mode and the netfilter-only fallback:\n%s", out)
	}
	// Both commands teach the two paths and when each is taken; attach, the cookie secret too.
	for _, c := range []string{"attach", "explain"} {
		_, out, _ := xsyn(c, "--help")
		for _, want := range []string{"-path path", "handoff", "synproxy", "listening socket", "Linux 6.9+",
			"forward, redirect, dnat, reject, drop, action CHAIN", "-cookie-secret-file FILE"} {
			if !strings.Contains(out, want) {
				t.Errorf("xsyn %s --help lacks %q", c, want)
			}
		}
	}
	_, out, _ := xsyn("attach", "--help")
	for _, want := range []string{"32\nhexadecimal digits (128 bits)", "head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \\n'",
		"Machines behind one address", "--path auto, the default, gives the handoff to every statement that can take it",
		"status counts them as handoff_refused"} {
		if !strings.Contains(out, want) {
			t.Errorf("xsyn attach --help lacks %q", want)
		}
	}
	// The default takes the handoff, and both commands say when it does not: what the operator
	// sees of a server that listens with MPTCP, and how to give it the handoff.
	for _, c := range []string{"attach", "explain"} {
		_, out, _ := xsyn(c, "--help")
		for _, want := range []string{"listens with MPTCP", "GODEBUG=multipathtcp=0", "SetMultipathTCP(false)", "a kernel before 6.9"} {
			if !strings.Contains(out, want) {
				t.Errorf("xsyn %s --help lacks %q", c, want)
			}
		}
		for _, stale := range []string{"for now", "opt-in"} {
			if strings.Contains(out, stale) {
				t.Errorf("xsyn %s --help still says %q: auto takes the handoff", c, stale)
			}
		}
	}
}

// usageErrors are command lines that are wrong in themselves: exit 2, saying what was wrong,
// before anything touches the kernel (checkUsageErrors says where).
var usageErrors = []struct {
	args []string
	want string
}{
	{nil, "Usage: xsyn COMMAND"},
	{[]string{"attack"}, `unknown command "attack"`},
	{[]string{"attach"}, "need an interface: IFACE, or --config FILE alone for the interfaces its statements name"},
	{[]string{"attach", "--port", "80"}, "need an interface: IFACE, or --config FILE alone"},
	{[]string{"attach", "eth0", "--dst", "192.0.2.1"}, "--dst needs --port"},
	{[]string{"attach", "eth0", "eth1", "--port", "80"}, "at most one interface, got 2"},
	{[]string{"attach", "eth0", "eth1", "--config", "xsyn.conf"}, "at most one interface, got 2"},
	{[]string{"attach", "eth0", "--port", "0"}, "0 is outside 1-65535"},
	{[]string{"attach", "eth0", "--port", "80,http"}, `invalid service: expected a port or a range N-M after "--port", got "http" (service names are not looked up)`},
	{[]string{"attach", "eth0", "--port", "8000:70000"}, "invalid service: --port 70000 is outside 1-65535"},
	{[]string{"attach", "eth0", "--port", "8010-8000"}, "invalid service: --port range 8010-8000 runs backwards"},
	{[]string{"attach", "eth0", "--port", ","}, `invalid service: expected ports after "--port", got an empty list`},
	{[]string{"explain", "eth0", "--port", "80", "--dst", "192.0.2.9-192.0.2.1"}, "invalid service: --dst range 192.0.2.9-192.0.2.1 runs backwards"},
	{[]string{"explain", "eth0", "--port", "80", "--dst", "192.0.2.1,db.example"}, `invalid service: expected addresses, prefixes or ranges a-b after "--dst", got "db.example" (host names are not resolved)`},
	{[]string{"attach", "eth0", "--port", "80", "--dst", "203.0.113.10/24"}, "did you mean 203.0.113.0/24?"},
	{[]string{"attach", "eth0", "--port", "80", "--wscale", "15"}, "wscale 15 is above 14"},
	{[]string{"attach", "eth0", "--port", "80", "--wscale", "x"}, `invalid value "x" for flag -wscale: not a number`},
	{[]string{"attach", "eth0", "--port", "80", "--mss", "100"}, "mss 100 is outside"},
	{[]string{"attach", "eth0", "--port", "80", "--bogus"}, "flag provided but not defined: -bogus"},
	{[]string{"attach", "eth0", "--port", "80", "--mode", "turbo"}, `invalid value "turbo" for flag -mode: want auto, native, generic or netfilter`},
	{[]string{"attach", "eth0", "--config", "eth0.conf", "--port", "80"}, "--config cannot be combined with --port: the configuration file says"},
	{[]string{"attach", "eth0", "--config", "eth0.conf", "--mss", "1400", "--no-sack"}, "--config cannot be combined with --mss, --no-sack"},
	{[]string{"attach", "eth0", "--config", ""}, "--config needs a file name"},
	{[]string{"attach", "eth0", "--port", "80", "--path", "fast"}, `invalid value "fast" for flag -path: want auto, synproxy or handoff`},
	{[]string{"attach", "eth0", "--config", "eth0.conf", "--path", "handoff"}, "--config cannot be combined with --path"},
	{[]string{"attach", "eth0", "--port", "80", "--cookie-secret-file", ""}, "--cookie-secret-file needs a file name"},
	{[]string{"explain", "eth0", "--port", "80", "--path", "sometimes"}, `invalid value "sometimes" for flag -path`},
	{[]string{"explain"}, "need an interface: IFACE, or --config FILE alone"},
	{[]string{"explain", "--config", ""}, "--config needs a file name"},
	{[]string{"explain", "eth0", "--dst", "192.0.2.1", "--config", "eth0.conf"}, "--config cannot be combined with --dst"},
	{[]string{"explain", "eth0", "--port", "80", "--wscale", "15"}, "wscale 15 is above 14"},
	{[]string{"detach"}, "need exactly one interface, got 0"},
	{[]string{"detach", "eth0", "eth1"}, "need exactly one interface, got 2"},
	{[]string{"status", "a", "b"}, "at most one interface, got 2"},
	{[]string{"status", "--bogus"}, "flag provided but not defined: -bogus"},
	{[]string{"status", "--interval", "-1s"}, "--interval -1s: want a duration of 0 or more"},
	{[]string{"status", "--interval", "10ms"}, "--interval 10ms: want 0 (no rates) or at least 100ms"},
	{[]string{"status", "--interval", "fast"}, `invalid value "fast" for flag -interval`},
	{[]string{"status", "--watch", "--interval", "0"}, "--watch needs an --interval above 0"},
	{[]string{"status", "--watch", "--count", "-1"}, "--count -1: want 0 (until Ctrl-C) or more"},
	{[]string{"status", "--count", "3"}, "--count only applies to --watch"},
	{[]string{"serve", "eth0"}, `no arguments expected, got ["eth0"]`},
	{[]string{"version", "x"}, `no arguments expected, got ["x"]`},
}

// Usage errors exit 2 and say what was wrong, before anything touches the kernel.
func TestUsageErrors(t *testing.T) { checkUsageErrors(t, runCLI) }

// checkUsageErrors runs usageErrors: exit 2; no arguments prints the usage on stdout; an unknown
// command is named on stderr, followed by the usage; any other mistake is one line on stderr,
// "xsyn CMD: ...", then the hint to CMD's --help, and nothing on stdout.
func checkUsageErrors(t *testing.T, xsyn runner) {
	t.Helper()
	for _, tc := range usageErrors {
		code, out, errOut := xsyn(tc.args...)
		cmdline := strings.Join(append([]string{"xsyn"}, tc.args...), " ")
		if code != exitUsage {
			t.Errorf("%s: exit %d, want %d\nstdout: %s\nstderr: %s", cmdline, code, exitUsage, out, errOut)
		}
		switch {
		case len(tc.args) == 0:
			if !strings.HasPrefix(out, "xsyn answers SYN floods") || !strings.Contains(out, tc.want) || errOut != "" {
				t.Errorf("%s: want the usage on stdout, nothing on stderr\nstdout: %s\nstderr: %s", cmdline, out, errOut)
			}
		case tc.args[0] == "attack":
			if !strings.HasPrefix(errOut, "xsyn: "+tc.want+"\n") || !strings.Contains(errOut, "Usage: xsyn COMMAND") || out != "" {
				t.Errorf("%s: want %q and the usage on stderr, nothing on stdout\nstdout: %s\nstderr: %s", cmdline, tc.want, out, errOut)
			}
		default:
			c := tc.args[0]
			lines := strings.Split(strings.TrimSuffix(errOut, "\n"), "\n")
			if len(lines) != 2 || !strings.HasPrefix(lines[0], "xsyn "+c+": ") || !strings.Contains(lines[0], tc.want) ||
				lines[1] != "Run 'xsyn "+c+" --help' for usage." || out != "" {
				t.Errorf("%s: want on stderr \"xsyn %s: ...%s...\" and \"Run 'xsyn %s --help' for usage.\", nothing on stdout\nstdout: %s\nstderr: %s",
					cmdline, c, tc.want, c, out, errOut)
			}
		}
	}
}

// exitOneErrors are the documented errors after parsing, each in a namespace of the test's own
// with d0 (veth, native XDP) and lo (no native XDP) free: exit 1, stderr saying what was wrong
// and what to do, nothing on stdout, and nothing changed. CONF in args and want is a file
// holding conf. Run in this order: the last one puts another XDP program on d0.
var exitOneErrors = []struct {
	name  string
	conf  string
	setup func(t *testing.T, l *e2eLab)
	args  []string
	want  []string
}{
	{name: "interface missing", args: []string{"attach", "nosuch0", "--port", "80"},
		want: []string{`xsyn attach: no such interface: "nosuch0" in this network namespace (see ` + "`ip link`)"}},
	{name: "nothing to protect", args: []string{"attach", "d0"},
		want: []string{"xsyn attach: no TCP listener reachable on the interface: nothing listens on the addresses of d0", "give --port"}},
	// lo has no driver XDP: native mode fails after the netfilter rules went in, which must then
	// be taken out again.
	{name: "native mode without driver XDP", args: []string{"attach", "lo", "--port", "80", "--mode", "native"},
		want: []string{"xsyn attach: attach XDP to lo: native: ", "operation not supported",
			"xsyn attach: the driver of lo has no native XDP: --mode generic (or auto, which falls back to it and warns)"}},
	{name: "config with errors", conf: "synproxy4 in inface d0 dport 22 bogus accept\nsynproxy4 in dport\n", args: []string{"attach", "d0", "--config", "CONF"},
		want: []string{`xsyn attach: CONF:1:33: unknown parameter "bogus"`, `xsyn attach: CONF:2:19: expected ports after "dport"`, "xsyn attach: CONF has errors: nothing was changed"}},
	{name: "explain config with errors", conf: "synproxy4 in inface d0 dport 70000 accept\n", args: []string{"explain", "d0", "--config", "CONF"},
		want: []string{"xsyn explain: CONF:1:30: port 70000 is outside 1-65535", "xsyn explain: CONF has errors"}},
	{name: "detach unprotected", args: []string{"detach", "d0"},
		want: []string{"xsyn detach: xsyn does not protect this interface: d0 (no XDP program, no rules)", "xsyn detach: 'xsyn status' lists the interfaces"}},
	{name: "detach interface missing", args: []string{"detach", "nosuch0"},
		want: []string{"xsyn detach: xsyn does not protect this interface: nosuch0"}},
	{name: "status unprotected", args: []string{"status", "d0", "--interval", "0"},
		want: []string{"xsyn status: xsyn does not protect this interface: d0"}},
	{name: "another XDP program", setup: func(t *testing.T, l *e2eLab) {
		if err := l.dutL.AttachPass(); err != nil {
			t.Fatal(err)
		}
	}, args: []string{"attach", "d0", "--port", "80"},
		want: []string{`xsyn attach: another XDP program is attached to d0: program id `, `("netlab_pass"); xsyn will not replace it: remove it first (ip link set dev d0 xdp off) or protect another interface`}},
}

// Errors after parsing exit 1, name what was wrong, and change nothing. Run inside a namespace of
// the test's own.
func TestAttachErrorsExitOne(t *testing.T) {
	requireRootForTest(t)
	l := newE2ELab(t, "xsyncli", enterers["ip-netns-exec"])
	checkExitOne(t, l, func(args ...string) (code int, stdout, stderr string) {
		l.dut.Do(func() error { code, stdout, stderr = runCLI(args...); return nil })
		return
	})
}

// checkExitOne runs exitOneErrors in l's DUT namespace with xsyn, comparing the namespace's
// state (l.nsState) before and after each.
func checkExitOne(t *testing.T, l *e2eLab, xsyn runner) {
	t.Helper()
	for _, tc := range exitOneErrors {
		args, want := tc.args, tc.want
		if tc.conf != "" {
			conf := writeConfig(t, "x.conf", tc.conf)
			args, want = replaceAll(args, "CONF", conf), replaceAll(want, "CONF", conf)
		}
		if tc.setup != nil {
			tc.setup(t, l)
		}
		before := l.nsState(t)
		code, out, errOut := xsyn(args...)
		if code != exitError || out != "" {
			t.Errorf("%s: xsyn %s: exit %d, want %d and nothing on stdout\nstdout: %s\nstderr: %s", tc.name, strings.Join(args, " "), code, exitError, out, errOut)
		}
		for _, w := range want {
			if !strings.Contains(errOut, w) {
				t.Errorf("%s: xsyn %s: stderr lacks %q:\n%s", tc.name, strings.Join(args, " "), w, errOut)
			}
		}
		if after := l.nsState(t); after != before {
			t.Errorf("%s: xsyn %s changed the namespace:\nbefore:\n%s\nafter:\n%s", tc.name, strings.Join(args, " "), before, after)
		}
	}
}

func replaceAll(ss []string, old, new string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = strings.ReplaceAll(s, old, new)
	}
	return out
}

// nsState is l.state (rules, sysctls, d0's XDP program and services) plus the XDP programs of
// every interface of the DUT namespace and the namespace's pins in the host's bpffs.
func (l *e2eLab) nsState(t *testing.T) string {
	t.Helper()
	links, err := l.dut.Run("ip", "-d", "link", "show")
	if err != nil {
		t.Fatal(err)
	}
	var xdp []string // each interface, and what it says about XDP
	for _, line := range strings.Split(links, "\n") {
		f := strings.Fields(line)
		switch {
		case strings.HasPrefix(line, "Error:"):
			// "Peer netns reference is invalid": a veth whose peer's namespace another test
			// just deleted; says nothing about this namespace.
		case len(f) > 1 && strings.HasSuffix(f[0], ":"):
			xdp = append(xdp, f[1])
			for _, w := range f {
				if strings.HasPrefix(w, "xdp") {
					xdp = append(xdp, w)
				}
			}
		case strings.Contains(line, "xdp"):
			xdp = append(xdp, strings.TrimSpace(line))
		}
	}
	var cookie uint64
	if err := l.dut.Do(func() (err error) { cookie, err = netnsCookie(); return err }); err != nil {
		t.Fatal(err)
	}
	pins, _ := filepath.Glob(filepath.Join(loader.BPFFS, "xsyn", fmt.Sprintf("netns-%d", cookie), "*", "*"))
	return fmt.Sprintf("%s\nlinks: %v\npins: %v", l.state(t), xdp, pins)
}

// netnsCookie is the cookie of this thread's network namespace, which names its state in bpffs.
func netnsCookie() (uint64, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	return unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_NETNS_COOKIE)
}

// Concurrent attaches to one interface serialise on the namespace's writers' lock: all succeed,
// one program is attached, and XDP and SYNPROXY end up with the same MSS (the last writer's).
func TestConcurrentAttach(t *testing.T) {
	requireRootForTest(t)
	l := newE2ELab(t, "xsyncc", enterers["nsenter"])
	mss := []string{"1300", "1310", "1320", "1330"}
	errs := make(chan string, len(mss))
	for _, m := range mss {
		go func() {
			// The SYNPROXY path, whose rules must agree with XDP (nothing listens: auto would
			// take the handoff, which has no rules).
			out, errOut, code := l.xsyn(t, "attach", "d0", "--port", "8080", "--dst", "192.0.2.2", "--mss", m, "--path", "synproxy")
			if code != 0 {
				errs <- fmt.Sprintf("attach --mss %s: exit %d: %s%s", m, code, out, errOut)
				return
			}
			errs <- ""
		}()
	}
	for range mss {
		if e := <-errs; e != "" {
			t.Error(e)
		}
	}
	st := l.status(t)
	if len(st.Services) != 1 {
		t.Fatalf("services after concurrent attaches: %+v", st.Services)
	}
	rules, err := l.dut.Run("iptables-save")
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("--mss %d", st.Services[0].MSS)
	if strings.Count(rules, "-j SYNPROXY") != 1 || !strings.Contains(rules, want) {
		t.Errorf("XDP announces MSS %d but the SYNPROXY rules are:\n%s", st.Services[0].MSS, rules)
	}
	if strings.Count(rules, ":XSYN-IN-d0") != 1 || strings.Contains(rules, "XSYN-NEW") {
		t.Errorf("chains after concurrent attaches:\n%s", rules)
	}
	l.mustXsyn(t, "detach", "d0") // nsenter: the pins are in the host's bpffs
}

// `xsyn attach d0` with no ports protects what the server listens on at d0's addresses (and on
// wildcards), not what listens on loopback only, and says so; clients get through. The servers
// are Go's, listening with MPTCP: the default takes them to the SYNPROXY path, saying why.
func TestZeroConfigAttach(t *testing.T) {
	requireRootForTest(t)
	l := newE2ELab(t, "xsynzc", enterers["ip-netns-exec"])
	l.echoServer(t, 8080) // 192.0.2.2:8080 and [2001:db8::2]:8080
	for _, ln := range []struct{ network, addr string }{
		{"tcp4", "0.0.0.0:9090"}, // IPv4 wildcard
		{"tcp6", "[::]:9443"},    // IPv6 wildcard (IPV6_V6ONLY): d0's IPv6 addresses, link-local too
		{"tcp4", "127.0.0.1:7070"},
		{"tcp6", "[::1]:7071"},
	} {
		var l0 net.Listener
		if err := l.dut.Do(func() (err error) { l0, err = net.Listen(ln.network, ln.addr); return err }); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l0.Close() })
	}
	out, errOut, code := l.xsyn(t, "attach", "d0")
	if code != 0 {
		t.Fatalf("zero-config attach: exit %d\n%s%s", code, out, errOut)
	}
	// One warning per statement (one per family and address), naming one of its servers.
	if n := strings.Count(errOut, ": SYNPROXY path: the server on "); n != 3 || strings.Count(errOut, " listens with MPTCP") != 3 {
		t.Errorf("zero-config attach: %d warnings of a server that listens with MPTCP, want 3:\n%s", n, errOut)
	}
	st := l.status(t)
	var got []string
	for _, s := range st.Services {
		if strings.HasPrefix(s.Destination, "fe80:") {
			s.Destination = "fe80::(link-local)"
		}
		got = append(got, fmt.Sprintf("%s %s %d", s.Family, s.Destination, s.Port))
		if s.Path != "synproxy" {
			t.Errorf("%s %s %d takes path %s; want synproxy, as the MPTCP server needs", s.Family, s.Destination, s.Port, s.Path)
		}
	}
	want := []string{"ipv4 192.0.2.2/32 8080", "ipv4 192.0.2.2/32 9090", "ipv6 2001:db8::2/128 8080", "ipv6 2001:db8::2/128 9443", "ipv6 fe80::(link-local) 9443"}
	// 9443 listens IPv6-only: no IPv4 service for it (sock_diag tells, /proc/net/tcp6 would not).
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("zero-config attach protects %v; want %v (nothing on loopback)\nattach said:\n%s", got, want, out)
	}
	for _, w := range []string{"192.0.2.2/32", "9090", "2001:db8::2/128"} {
		if !strings.Contains(out, w) {
			t.Errorf("attach output does not show %s:\n%s", w, out)
		}
	}
	if seen, err := l.connect("192.0.2.2:8080"); err != nil || seen != cli4.Addr().String() {
		t.Errorf("client through zero-config protection: %q, %v", seen, err)
	}
	if st := l.waitStatus(t, func(s ifaceJSON) bool { return counter(s, "ipv4", "ack_cookie_valid") > 0 }); counter(st, "ipv4", "synack_sent") != 1 {
		t.Errorf("the client's SYN-ACK did not come from XDP: %v", st.Counters["ipv4"])
	}
	l.mustXsyn(t, "detach", "d0")
}
