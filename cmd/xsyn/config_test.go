package main

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/xsyn-project/xsyn/internal/netlab"
	"github.com/xsyn-project/xsyn/internal/testutil"
	"github.com/xsyn-project/xsyn/spec"
)

// writeConfig writes a configuration file that anyone may read, and returns its path.
func writeConfig(t *testing.T, name, text string) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} { // t.TempDir makes both 0700
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// state is everything attach may change: every rule and user chain of both families, the
// sysctls, the XDP program on d0 and the services in its maps.
func (l *e2eLab) state(t *testing.T) string {
	t.Helper()
	nf, err := l.dut.Run(netfilterState[0], netfilterState[1:]...)
	if err != nil {
		t.Fatal(err)
	}
	link, err := l.dut.Run("ip", "-d", "link", "show", "d0")
	if err != nil {
		t.Fatal(err)
	}
	var xdp []string
	for _, line := range strings.Split(link, "\n") {
		if strings.Contains(line, "prog/xdp") {
			xdp = append(xdp, strings.TrimSpace(line))
		}
	}
	// What status reads from the XDP maps, without the counters.
	var st statusJSON
	if out, _, code := l.xsyn(t, "status", "d0", "--json", "--interval", "0"); code == 0 {
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			t.Fatal(err)
		}
	}
	for i := range st.Interfaces {
		st.Interfaces[i].Counters = nil
	}
	status, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%s\nxdp: %v\nstatus: %s", nf, xdp, status)
}

const explainConf = `# the host's SSH, moved to port 2200 outside, logged
synproxy4 in inface d0 dst 192.0.2.2 dport 2200 redirect to 22 loglimit "SYNPROXY SSH"
# a web server behind this host
synproxy6 forward inface d0 dst 2001:db8::10 dport 80,443 dnat to [2001:db8:1::5]
# mail, from one network only: SYNPROXY alone, XDP does not match sources
synproxy4 in inface d0 src 198.51.100.0/24 dport 25 accept
# a mistake: forward with accept, to this host's own address
synproxy4 forward inface d0 dst 192.0.2.2 dport 8080 accept
# this host's web server: the handoff path
synproxy4 in inface d0 dst 192.0.2.2 dport 80,443 path handoff accept
`

// explain shows statements with their paths, rules with their reasons and the sysctls, as an
// unprivileged user, and changes nothing.
func TestExplainConfig(t *testing.T) {
	requireRootForTest(t)
	l := newE2ELab(t, "xsynex", enterers["ip-netns-exec"])
	conf := writeConfig(t, "d0.conf", explainConf)
	if err := os.Chmod(filepath.Dir(xsynBin), 0o755); err != nil {
		t.Fatal(err)
	}
	before := l.state(t)
	argv := append(l.enter(l.dut), "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", xsynBin, "explain", "d0", "--config", conf)
	cmd := exec.Command(argv[0], argv[1:]...)
	var so, se strings.Builder
	cmd.Stdout, cmd.Stderr = &so, &se
	if err := cmd.Run(); err != nil {
		t.Fatalf("xsyn explain as nobody: %v\n%s%s", err, so.String(), se.String())
	}
	out := so.String()
	ws := strconv.Itoa(int(l.stackWScale(t)))
	for _, want := range []string{
		"1 statement on the handoff path, 4 on the SYNPROXY path.",
		"How a connection on the handoff path goes",
		"How a connection on the SYNPROXY path goes",
		// nobody cannot load the probe's programs; explain says so rather than guess.
		"This host: whether its kernel has the socket handoff (Linux 6.9+), and which servers listen with MPTCP, could not be checked (explain checks both as root): ",
		"mark 0x20000000/0x20000000",
		"loopback strict",
		"1. " + conf + `:2: synproxy4 in inface d0 dst 192.0.2.2 dport 2200 redirect to 22 loglimit "SYNPROXY SSH"`,
		"ipv4: mss 1460 wscale " + ws + " sack timestamps, ttl 64\n" +
			"     path: synproxy: its action is redirect to 22, which only netfilter can carry out\n" +
			"     XDP answers its SYNs with cookies; SYNPROXY completes the handshake\n" +
			"     firewall: its action (redirect to 22) replaces your INPUT rules' decision on new connections: SYNPROXY completes the handshake ahead of them, " +
			"so they only see a connection's later packets; give the statement src to keep a restriction\n" +
			"     server: 127.0.0.1:22",
		"firewall: its action (dnat to [2001:db8:1::5]) replaces your FORWARD and INPUT rules' decision on new connections",
		"firewall: its action (accept) replaces your INPUT rules' decision on new connections",
		"2. " + conf + ":4: synproxy6 forward",
		"path: synproxy: it forwards to another host (only SYNPROXY can open that connection)",
		"server: [2001:db8:1::5]:80, [2001:db8:1::5]:443",
		"3. " + conf + ":6: synproxy4 in inface d0 src 198.51.100.0/24 dport 25 accept",
		"path: synproxy: XDP cannot answer it: it matches the source address\n     SYNPROXY answers its SYNs and completes the handshake",
		"4. " + conf + ":8: synproxy4 forward inface d0 dst 192.0.2.2 dport 8080 accept",
		"warning: it matches 192.0.2.2, of d0, but its action (accept) keeps the destination: SYNPROXY is in FORWARD only",
		"5. " + conf + ":10: synproxy4 in inface d0 dst 192.0.2.2 dport 80,443 path handoff accept\n" +
			"     ipv4: mss 1460 wscale " + ws + " sack timestamps, ttl 64\n" +
			"     path: handoff: xsyn cookie, handed to the listening socket; no SYNPROXY; its packets skip conntrack " +
			"(the SYNPROXY statements turn loose tracking off), so your firewall's INPUT rules see them UNTRACKED\n" +
			"     server: 192.0.2.2:80, 192.0.2.2:443",
		"cookie secret: random, made by the first attach and kept",
		"  FAMILY  DESTINATION       PORT  MSS   WSCALE  SACK  TIMESTAMPS  ECN  TTL  PATH", // the XDP services table
		"ipv4    192.0.2.2/32      2200  1460  " + ws,
		"ipv6    2001:db8::10/128  443",
		"on          off  64   synproxy\n",
		"on          off  64   handoff\n",
		"Netfilter rules: SYNPROXY's, for the statements on the SYNPROXY path; the handoff statements only have",
		"ipv4 rules, as 'iptables-save' shows them",
		"ipv6 rules, as 'ip6tables-save' shows them",
		`-A XSYN-NAT-d0 -d 192.0.2.2/32 -p tcp -m tcp --dport 2200 -m mark --mark 0x20000000/0x20000000 -m comment --comment "xsyn: synproxy4 in inface d0 dst 192.0.2.2 dport 2200 redirect to 22 loglimit \"SYNPROXY SSH\"" -j REDIRECT --to-ports 22`,
		"#   [synproxy4 in inface d0 dst 192.0.2.2 dport 2200 redirect to 22 loglimit \"SYNPROXY SSH\"] REDIRECT after cookie validation",
		"-j SYNPROXY --sack-perm --timestamp --wscale " + ws + " --mss 1460",
		"-j DNAT --to-destination [2001:db8:1::5]",
		"net.ipv4.conf.d0.route_localnet=1 (now 0)",
		"net.netfilter.nf_conntrack_tcp_loose=0 (now 1)",
		"sysctl net.ipv6.conf.all.forwarding must be 1",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("explain output lacks %q", want)
		}
	}
	// The handoff statement has no SYNPROXY rule.
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "dport 80,443 path handoff accept") && strings.Contains(l, "-j SYNPROXY") {
			t.Errorf("explain shows a SYNPROXY rule for the statement on the handoff path: %s", l)
		}
	}
	if t.Failed() {
		t.Logf("explain output:\n%s", out)
	}
	if after := l.state(t); after != before {
		t.Errorf("explain changed the namespace:\nbefore:\n%s\nafter:\n%s", before, after)
	}

	// An interface that does not exist: still explained, with xsyn's defaults, saying so. As
	// root, explain knows this kernel has the handoff.
	any := writeConfig(t, "any.conf", "synproxy4 in dst 192.0.2.9 dport 22 path synproxy accept\nsynproxy4 in dst 192.0.2.9 dport 80 path handoff accept\n")
	out, errOut, code := l.xsyn(t, "explain", "nosuch0", "--config", any)
	for _, want := range []string{`Note: no such interface: "nosuch0"`, "ipv4: mss 1460 wscale 7 sack timestamps",
		"path: synproxy: asked for (path synproxy)", "path: handoff: ", "Kernel: it has the socket handoff (Linux 6.9+), and no server", "-A XSYN-IN-nosuch0"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("explain of a missing interface: exit %d, want 0 and %q\n%s%s", code, want, out, errErr(errOut))
		}
	}

	// Every statement on the handoff path: no rules, no sysctls, and the settings that concern
	// SYNPROXY alone said to be unused.
	web := writeConfig(t, "web.conf", "cookie-secret-file web.key\noptions path handoff\nsynproxy in inface d0 dport 80,443 accept\n")
	out, errOut, code = l.xsyn(t, "explain", "d0", "--config", web)
	for _, want := range []string{"2 statements on the handoff path, 0 on the SYNPROXY path.",
		"mark 0x20000000/0x20000000, loopback strict: unused, they concern the SYNPROXY path, which no statement takes",
		"cookie-secret-file " + filepath.Join(filepath.Dir(web), "web.key") + ": the handoff's cookie secret; attach reads it (explain does not)",
		"path: handoff: xsyn cookie, handed to the listening socket; no netfilter rules; your firewall's INPUT rules still apply",
		"Netfilter rules: none; every statement takes the handoff path",
		"Sysctls attach sets in this network namespace (detach of the last interface puts them back):\n  none\n"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("explain of handoff statements: exit %d, want 0 and %q\n%s%s", code, want, out, errErr(errOut))
		}
	}
	for _, unwanted := range []string{"How a connection on the SYNPROXY path goes", "XSYN-IN-d0"} {
		if strings.Contains(out, unwanted) {
			t.Errorf("explain of handoff statements shows %q:\n%s", unwanted, out)
		}
	}
}

// errErr labels stderr in a failure message, when there is any.
func errErr(s string) string {
	if s == "" {
		return ""
	}
	return "stderr: " + s
}

// A configuration attach cannot install fails with a precise message, exit 1, and leaves the
// rules, the sysctls and the XDP program exactly as they were.
func TestAttachConfigErrors(t *testing.T) {
	requireRootForTest(t)
	l := newE2ELab(t, "xsyncf", enterers["ip-netns-exec"])
	// Both paths, so that a failed attach has rules, sysctls, XDP and the handoff to leave alone.
	good := writeConfig(t, "good.conf", "synproxy4 in inface d0 dst 192.0.2.2 dport 8080 path synproxy accept\n"+
		"synproxy4 in inface d0 dst 192.0.2.2 dport 8090 path handoff accept\n")
	out := l.mustXsyn(t, "attach", "d0", "--config", good)
	for _, want := range []string{"1 statement on the handoff path, 1 on the SYNPROXY path\n",
		"1. " + good + ":1: synproxy4 in inface d0 dst 192.0.2.2 dport 8080 path synproxy accept", "XDP answers its SYNs",
		"2. " + good + ":2: synproxy4 in inface d0 dst 192.0.2.2 dport 8090 path handoff accept", "path: handoff: "} {
		if !strings.Contains(out, want) {
			t.Errorf("attach --config output lacks %q:\n%s", want, out)
		}
	}
	keys := t.TempDir()
	key := func(name, text string, mode os.FileMode) string {
		p := filepath.Join(keys, name)
		if err := os.WriteFile(p, []byte(text), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	short := key("short.key", "0123456789abcdef\n", 0o600)
	open := key("open.key", "0123456789abcdef0123456789abcdef\n", 0o644)
	notHex := key("nothex.key", "0123456789abcdef0123456789abcdeg", 0o600)
	before := l.state(t)
	if !strings.Contains(before, "XSYN-IN-d0") || !strings.Contains(before, "prog/xdp") {
		t.Fatalf("state after attach lacks rules or XDP:\n%s", before)
	}

	for _, tc := range []struct {
		name, iface, conf string
		extra             []string
		code              int
		want              []string
	}{
		{"broken line", "d0", "synproxy4 in inface d0 dst 192.0.2.2 dport 8081 accept\nsynproxy4 in inface d0 dport 22 bogus accept\nsynproxy4 in dport\n", nil, 1,
			[]string{`CONF:2:33: unknown parameter "bogus"`, "CONF:3:19: expected ports after \"dport\"", "CONF has errors: nothing was changed"}},
		{"unknown interface", "nosuch0", "synproxy4 in dport 22 accept\n", nil, 1, []string{`no such interface: "nosuch0"`}},
		{"missing chain", "d0", "synproxy4 in inface d0 dst 192.0.2.2 dport 8080 action NOSUCHCHAIN\n", nil, 1,
			[]string{"chain NOSUCHCHAIN does not exist in the ipv4 filter table; create it first (iptables -N NOSUCHCHAIN)"}},
		{"port out of range", "d0", "synproxy4 in inface d0 dport 70000 accept\n", nil, 1, []string{"CONF:1:30: port 70000 is outside 1-65535"}},
		{"redirect without strict loopback", "d0", "loopback loose\nsynproxy4 in inface d0 dport 2200 redirect to 22\n", nil, 1,
			[]string{"CONF:2:", "redirect needs `loopback strict`, but line 1 sets loose"}},
		{"interfaces that would decide each other's connections", "d0", "synproxy4 in inface d0 dst 192.0.2.2 dport 22 drop\n" +
			"synproxy4 in inface d1 dport 22 path synproxy accept\n", nil, 1,
			[]string{"CONF:2:1: on d1 it covers connections that line 1 covers on d0 with another action (accept / drop): SYNPROXY's SYN to the server is marked, " +
				"translated and judged in OUTPUT, which cannot tell the interface a client came in on", "CONF has errors: nothing was changed"}},
		{"config and port", "d0", "synproxy4 in dport 22 accept\n", []string{"--port", "80"}, 2,
			[]string{"--config cannot be combined with --port"}},
		{"config and path", "d0", "synproxy4 in dport 22 accept\n", []string{"--path", "handoff"}, 2,
			[]string{"--config cannot be combined with --path: the configuration file says which ports to protect, with which TCP options and on which path"}},
		{"handoff where it cannot be", "d0", "synproxy4 in inface d0 dport 2200 path handoff redirect to 22\n", nil, 1,
			[]string{"CONF:1:40: path handoff is not possible: its action is redirect to 22, which only netfilter can carry out", "CONF has errors: nothing was changed"}},
		{"cookie secret missing", "d0", "cookie-secret-file " + keys + "/none.key\nsynproxy4 in inface d0 dst 192.0.2.2 dport 8090 path handoff accept\n", nil, 1,
			[]string{"xsyn attach: cookie secret file: stat " + keys + "/none.key: no such file or directory",
				"xsyn attach: nothing was changed; make the file with: (umask 077; head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \\n' > " + keys + "/none.key)"}},
		{"cookie secret too short", "d0", "synproxy4 in inface d0 dst 192.0.2.2 dport 8090 path handoff accept\n", []string{"--cookie-secret-file", short}, 1,
			[]string{"xsyn attach: cookie secret file " + short + ": want 32 hexadecimal digits (128 bits), found 16 characters", "xsyn attach: nothing was changed"}},
		{"cookie secret readable by others", "d0", "cookie-secret-file " + open + "\nsynproxy4 in inface d0 dst 192.0.2.2 dport 8090 path handoff accept\n", nil, 1,
			[]string{"xsyn attach: cookie secret file " + open + ": mode 0644 lets other users read the key: chmod 600 " + open}},
		{"cookie secret not hex", "d0", "synproxy4 in inface d0 dst 192.0.2.2 dport 8090 path handoff accept\n", []string{"--cookie-secret-file", notHex}, 1,
			[]string{"xsyn attach: cookie secret file " + notHex + ": want 32 hexadecimal digits"}},
		{"cookie secret twice", "d0", "cookie-secret-file " + notHex + "\nsynproxy4 in inface d0 dst 192.0.2.2 dport 8090 path handoff accept\n", []string{"--cookie-secret-file", short}, 2,
			[]string{"--cookie-secret-file " + short + ": CONF names the cookie secret already (cookie-secret-file " + notHex + "); give it in one place"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conf := writeConfig(t, "x.conf", tc.conf)
			out, errOut, code := l.xsyn(t, append([]string{"attach", tc.iface, "--config", conf}, tc.extra...)...)
			if code != tc.code {
				t.Errorf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, out, errOut)
			}
			for _, w := range tc.want {
				if w = strings.ReplaceAll(w, "CONF", conf); !strings.Contains(errOut, w) {
					t.Errorf("stderr lacks %q:\n%s", w, errOut)
				}
			}
			if after := l.state(t); after != before {
				t.Errorf("a failed attach changed the namespace:\nbefore:\n%s\nafter:\n%s", before, after)
			}
		})
	}
	l.mustXsyn(t, "detach", "d0")
}

// backendLab is an e2e lab with a server behind the DUT: d1 (10.9.0.1) - s0 (10.9.0.2) in a third
// namespace, whose stack offers other TCP options than the DUT's: a larger window scale (its
// receive buffers are larger) and a smaller MSS (MTU 1400 on the link).
func backendLab(t *testing.T, prefix string) (*e2eLab, *netlab.Host) {
	t.Helper()
	p := testutil.Pair(t, prefix, "c0", []netip.Prefix{cli4, cli6}, "d0", []netip.Prefix{dut4, dut6})
	srv, err := p.Lab.Host("srv")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := netlab.Veth(p.Server, "d1", []netip.Prefix{netip.MustParsePrefix("10.9.0.1/24")}, srv, "s0", []netip.Prefix{netip.MustParsePrefix("10.9.0.2/24")}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		h    *netlab.Host
		args []string
	}{
		{p.Server, []string{"ip", "link", "set", "d1", "mtu", "1400"}},
		{srv, []string{"ip", "link", "set", "s0", "mtu", "1400"}},
		{srv, []string{"ip", "route", "add", "default", "via", "10.9.0.1"}},
		{srv, []string{"sysctl", "-w", "net.ipv4.tcp_rmem=4096 131072 268435456"}},
		{p.Server, []string{"sysctl", "-w", "net.ipv4.ip_forward=1"}},
	} {
		if _, err := c.h.Run(c.args[0], c.args[1:]...); err != nil {
			t.Fatal(err)
		}
	}
	return &e2eLab{cli: p.Client, dut: p.Server, cliL: p.ClientLink, dutL: p.ServerLink, enter: enterers["ip-netns-exec"]}, srv
}

// attach probes the server a dnat statement hands connections to: it warns where the server
// offers other options than the SYN-ACK would, and with --probe adopts them, in XDP and
// SYNPROXY alike. A server that does not answer is a warning.
func TestAttachProbe(t *testing.T) {
	requireRootForTest(t)
	l, srv := backendLab(t, "xsynpb")
	stop, err := srv.ServeClientAddr(8080, netip.MustParseAddr("10.9.0.2"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	wsDUT := l.stackWScale(t)
	out, err := srv.Run("sh", "-c", "cut -f3 /proc/sys/net/ipv4/tcp_rmem; cat /proc/sys/net/core/rmem_max")
	if err != nil {
		t.Fatal(err)
	}
	biggest := 0
	for _, f := range strings.Fields(out) {
		n, _ := strconv.Atoi(f)
		biggest = max(biggest, n)
	}
	wsSrv := spec.WScaleForBuffer(biggest)
	if wsSrv == wsDUT {
		t.Fatalf("the server's window scale %d is the DUT's: the lab does not make them differ", wsSrv)
	}
	conf := writeConfig(t, "d0.conf", `synproxy4 in inface d0 dst 192.0.2.2 dport 8080 dnat to 10.9.0.2:8080
synproxy4 in inface d0 dst 192.0.2.2 dport 9090 dnat to 10.9.0.2:9090
`)
	unreachable := fmt.Sprintf("xsyn attach: warning: %s:2: probe backend 10.9.0.2:9090: connect: connection refused: is the server listening?; its TCP options are not checked", conf)

	// explain --probe shows what the servers offer, and what attach --probe would adopt.
	out = l.mustXsyn(t, "explain", "d0", "--config", conf, "--probe")
	for _, want := range []string{
		fmt.Sprintf("10.9.0.2:8080 differs: mss 1460, server offers 1360; wscale %d, server offers %d; attach --probe would adopt: mss 1460 -> 1360, wscale %d -> %d", wsDUT, wsSrv, wsDUT, wsSrv),
		"probe backend 10.9.0.2:9090: connect: connection refused",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("explain --probe lacks %q:\n%s", want, out)
		}
	}

	// Without --probe: the statement's options (the DUT's stack), and a warning saying how to fix it.
	out, errOut, code := l.xsyn(t, "attach", "d0", "--config", conf)
	want := fmt.Sprintf("xsyn attach: warning: %s:1: server 10.9.0.2:8080 offers other TCP options than the SYN-ACK "+
		"(mss 1460, server offers 1360; wscale %d, server offers %d): run with --probe to adopt the server's options, or set mss 1360 wscale %d",
		conf, wsDUT, wsSrv, wsSrv)
	if code != 0 || !strings.Contains(errOut, want) || !strings.Contains(errOut, unreachable) {
		t.Errorf("attach without --probe: exit %d\nstdout: %s\nstderr: %s\nwant warnings:\n%s\n%s", code, out, errOut, want, unreachable)
	}
	if st := l.status(t); len(st.Services) != 2 || st.Services[0].WScale != wsDUT || st.Services[0].MSS != 1460 {
		t.Errorf("services without --probe: %+v; want wscale %d, mss 1460", st.Services, wsDUT)
	}

	// With --probe: the server's options, said so, and nothing left to warn about but the
	// server that does not answer.
	out, errOut, code = l.xsyn(t, "attach", "d0", "--config", conf, "--probe")
	want = fmt.Sprintf("adopted from server 10.9.0.2:8080 (--probe): mss 1460 -> 1360, wscale %d -> %d", wsDUT, wsSrv)
	if code != 0 || !strings.Contains(out, want) || strings.TrimSpace(errOut) != unreachable {
		t.Errorf("attach --probe: exit %d\nstdout: %s\nstderr: %s\nwant %q", code, out, errOut, want)
	}
	st := l.status(t)
	for _, svc := range st.Services {
		if svc.Port == 8080 && (svc.WScale != wsSrv || svc.MSS != 1360) {
			t.Errorf("XDP service after --probe: %+v; want the server's wscale %d, mss 1360", svc, wsSrv)
		}
	}
	rules, err := l.dut.Run("iptables-save")
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("--dport 8080 -m conntrack --ctstate INVALID,UNTRACKED -m comment --comment \"xsyn: synproxy4 in inface d0 dst 192.0.2.2 dport 8080 dnat to 10.9.0.2:8080\" -j SYNPROXY --sack-perm --timestamp --wscale %d --mss 1360", wsSrv); !strings.Contains(rules, want) {
		t.Errorf("SYNPROXY rule after --probe lacks %q:\n%s", want, rules)
	}

	// A client goes through XDP, SYNPROXY and the DNAT to the server behind the DUT.
	if seen, err := l.connect("192.0.2.2:8080"); err != nil || seen != cli4.Addr().String() {
		t.Errorf("client through the dnat statement: server saw %q, %v", seen, err)
	}
	l.mustXsyn(t, "detach", "d0")
}

// attach says what explain says about a forward statement that covers the interface's own
// address yet keeps the destination: its connections to this host fail.
func TestAttachWarnsForwardToLocal(t *testing.T) {
	requireRootForTest(t)
	l := newE2ELab(t, "xsynfw", enterers["nsenter"])
	if _, err := l.dut.Run("sysctl", "-qw", "net.ipv4.ip_forward=1"); err != nil {
		t.Fatal(err)
	}
	conf := writeConfig(t, "fw.conf", "options notimestamps\nsynproxy4 forward inface d0 dst 192.0.2.2 dport 8080 accept\n")
	_, errOut, code := l.xsyn(t, "attach", "d0", "--config", conf)
	want := "xsyn attach: warning: " + conf + ":2: it matches 192.0.2.2, of d0, but its action (accept) keeps the destination"
	if code != 0 || !strings.Contains(errOut, want) {
		t.Errorf("attach: exit %d, want 0 warning %q:\n%s", code, want, errOut)
	}
	l.mustXsyn(t, "detach", "d0")
}
