package main

import (
	"fmt"
	"net"
	"strings"
	"testing"
)

func runCLI(args ...string) (code int, stdout, stderr string) {
	var out, errOut strings.Builder
	code = run(append([]string{"xsyn"}, args...), &out, &errOut)
	return code, out.String(), errOut.String()
}

// Every command teaches: --help exits 0 with a synopsis and an example.
func TestHelp(t *testing.T) {
	if code, out, _ := runCLI("--help"); code != exitOK || !strings.Contains(out, "Commands:") || !strings.Contains(out, "Exit codes") {
		t.Errorf("xsyn --help: exit %d\n%s", code, out)
	}
	for _, c := range commands() {
		code, out, _ := runCLI(c.name, "--help")
		if c.name == "version" {
			continue
		}
		if code != exitOK || !strings.Contains(out, "Usage: xsyn "+c.name) || !strings.Contains(out, "Example") {
			t.Errorf("xsyn %s --help: exit %d, want 0 with usage and an example:\n%s", c.name, code, out)
		}
	}
	// The commands that take a configuration show one, and where it is documented.
	for _, c := range []string{"attach", "explain"} {
		_, out, _ := runCLI(c, "--help")
		for _, want := range []string{"-config FILE", "docs/config.md",
			`synproxy4 in inface eth0 dst 203.0.113.10 dport 2200 redirect to 22 loglimit "SYNPROXY SSH"`,
			"synproxy6 forward inface eth0 dst 2001:db8::10 dport 80,443 dnat to [2001:db8:1::5]",
			"-probe", "FILE:LINE:COL"} {
			if !strings.Contains(out, want) {
				t.Errorf("xsyn %s --help lacks %q", c, want)
			}
		}
	}
}

// Usage errors exit 2 and say what was wrong, before anything touches the kernel.
func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "Usage: xsyn COMMAND"},
		{[]string{"attack"}, `unknown command "attack"`},
		{[]string{"attach"}, "need exactly one interface, got 0"},
		{[]string{"attach", "eth0", "--dst", "192.0.2.1"}, "--dst needs --port"},
		{[]string{"attach", "eth0", "eth1", "--port", "80"}, "need exactly one interface, got 2"},
		{[]string{"attach", "eth0", "--port", "0"}, "0 is outside 1-65535"},
		{[]string{"attach", "eth0", "--port", "80,http"}, `port "http": not a number`},
		{[]string{"attach", "eth0", "--port", "80", "--dst", "203.0.113.10/24"}, "did you mean 203.0.113.0/24?"},
		{[]string{"attach", "eth0", "--port", "80", "--wscale", "15"}, "wscale 15 is above 14"},
		{[]string{"attach", "eth0", "--port", "80", "--mss", "100"}, "mss 100 is outside"},
		{[]string{"attach", "eth0", "--port", "80", "--bogus"}, "flag provided but not defined: -bogus"},
		{[]string{"attach", "eth0", "--config", "eth0.conf", "--port", "80"}, "--config cannot be combined with --port: the configuration file says"},
		{[]string{"attach", "eth0", "--config", "eth0.conf", "--mss", "1400", "--no-sack"}, "--config cannot be combined with --mss, --no-sack"},
		{[]string{"attach", "eth0", "--config", ""}, "--config needs a file name"},
		{[]string{"explain"}, "need exactly one interface, got 0"},
		{[]string{"explain", "eth0", "--dst", "192.0.2.1", "--config", "eth0.conf"}, "--config cannot be combined with --dst"},
		{[]string{"explain", "eth0", "--port", "80", "--wscale", "15"}, "wscale 15 is above 14"},
		{[]string{"detach"}, "need exactly one interface, got 0"},
		{[]string{"status", "a", "b"}, "at most one interface, got 2"},
	} {
		code, out, errOut := runCLI(tc.args...)
		if code != exitUsage || !strings.Contains(out+errOut, tc.want) {
			t.Errorf("xsyn %s: exit %d, want %d saying %q\nstdout: %s\nstderr: %s", strings.Join(tc.args, " "), code, exitUsage, tc.want, out, errOut)
		}
	}
}

// Errors after parsing exit 1, name what was wrong, and change nothing. Run inside a namespace of
// the test's own.
func TestAttachErrorsExitOne(t *testing.T) {
	requireRootForTest(t)
	l := newE2ELab(t, "xsyncli", enterers["ip-netns-exec"])
	runCLI := func(args ...string) (code int, stdout, stderr string) {
		l.dut.Do(func() error { code, stdout, stderr = runCLI(args...); return nil })
		return
	}
	before, err := l.dut.Run(netfilterState[0], netfilterState[1:]...)
	if err != nil {
		t.Fatal(err)
	}
	code, _, errOut := runCLI("attach", "nosuch0", "--port", "80")
	if code != exitError || !strings.Contains(errOut, `no such interface: "nosuch0"`) {
		t.Errorf("attach to a missing interface: exit %d, stderr %q; want 1 naming the interface", code, errOut)
	}
	code, _, errOut = runCLI("attach", "d0", "--port", "80", "--mode", "turbo")
	if code != exitError || !strings.Contains(errOut, `mode "turbo": want auto, native or generic`) {
		t.Errorf("bad mode: exit %d, stderr %q", code, errOut)
	}
	// lo has no driver XDP: native mode fails after the netfilter rules went in, which must
	// then be taken out again (checked with the state comparison at the end).
	code, _, errOut = runCLI("attach", "lo", "--port", "80", "--mode", "native")
	if code != exitError || !strings.Contains(errOut, "attach XDP to lo: native:") {
		t.Errorf("native mode on lo: exit %d, stderr %q; want 1 naming the mode", code, errOut)
	}
	code, _, errOut = runCLI("detach", "nosuch0")
	if code != exitError || !strings.Contains(errOut, "does not protect") {
		t.Errorf("detach of an unprotected interface: exit %d, stderr %q", code, errOut)
	}
	// c0 of the client namespace carries another XDP program; in the DUT, give d0 one too.
	if err := l.dutL.AttachPass(); err != nil {
		t.Fatal(err)
	}
	code, _, errOut = runCLI("attach", "d0", "--port", "80")
	if code != exitError || !strings.Contains(errOut, "another XDP program is attached") || !strings.Contains(errOut, "ip link set dev d0 xdp off") {
		t.Errorf("attach over a foreign XDP program: exit %d, stderr %q; want 1 saying how to remove it", code, errOut)
	}
	after, err := l.dut.Run(netfilterState[0], netfilterState[1:]...)
	if err != nil {
		t.Fatal(err)
	}
	if after != before {
		t.Errorf("failed commands changed netfilter/sysctl state:\nbefore:\n%s\nafter:\n%s", before, after)
	}
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
			out, errOut, code := l.xsyn(t, "attach", "d0", "--port", "8080", "--dst", "192.0.2.2", "--mss", m)
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
// wildcards), not what listens on loopback only, and says so; clients get through.
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
	out := l.mustXsyn(t, "attach", "d0")
	st := l.status(t)
	var got []string
	for _, s := range st.Services {
		if strings.HasPrefix(s.Destination, "fe80:") {
			s.Destination = "fe80::(link-local)"
		}
		got = append(got, fmt.Sprintf("%s %s %d", s.Family, s.Destination, s.Port))
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
