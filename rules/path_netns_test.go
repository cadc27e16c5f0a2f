package rules

import (
	"net"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/xsyn-project/xsyn/spec"
)

// TestNetfilterPaths applies plans of both paths with the real iptables (nft and legacy), each
// backend in a namespace of its own: iptables takes the handoff's NOTRACK rules as Render prints
// them, an empty plan takes the interface back to what it was before (rules and sysctls), and
// the snapshot taken before it puts everything back (attach's undo).
func TestNetfilterPaths(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			inBackendNS(t, b)
			testNetfilterPaths(t, b)
		})
	}
}

func testNetfilterPaths(t *testing.T, b backend) {
	run(t, "ip", "link", "add", "p0", "type", "veth", "peer", "name", "p1")
	const rl = "net.ipv4.conf.p0.route_localnet"
	a := b.applier(t)
	addForeign(t, b)
	if err := (ProcSys{Root: "/proc/sys"}).Set(syncookies, "2"); err != nil {
		t.Fatal(err)
	}
	state := func() string {
		s := b.saveAll(t)
		for _, k := range []string{tcpLoose, syncookies, rl} {
			s += "\n" + k + "=" + readSysctl(t, k)
		}
		return s
	}
	oldLoose := readSysctl(t, tcpLoose)
	before := state()
	saved := []string{
		`-A XSYN-SAVED -m comment --comment "sysctl net.netfilter.nf_conntrack_tcp_loose=` + oldLoose + `"`,
		`-A XSYN-SAVED -m comment --comment "sysctl net.ipv4.tcp_syncookies=2"`,
		`-A XSYN-SAVED -m comment --comment "sysctl net.ipv4.conf.p0.route_localnet=0"`,
	}

	// SYNPROXY first, then both paths: the handoff's flows are untracked on p0, both ways.
	conf := strings.ReplaceAll(mixedConf, "eth0", "p0")
	mustApply(t, a, mustConfig(t, "p0", strings.ReplaceAll(conf, " path handoff", "")))
	mixed := mustConfig(t, "p0", conf)
	mustApply(t, a, mixed)
	checkView(t, b, spec.IPv4, wantView(t, spec.IPv4, saved, mixed))
	checkView(t, b, spec.IPv6, wantView(t, spec.IPv6, nil, mixed))
	checkSysctls(t, "with both paths", "0", "1")
	if st := mustCheck(t, a, "p0"); !st.Complete() || len(st.Families) != 2 {
		t.Errorf("Check with both paths = %+v; want both families complete", st)
	}
	installed := state()
	snap, ok, err := a.Snapshot("p0")
	if err != nil || !ok {
		t.Fatalf("Snapshot = %v, %v", ok, err)
	}

	// Handoff only: nothing of xsyn is left, and the sysctls are the namespace's again.
	mustApply(t, a, handoffOnly(t, "p0"))
	if got := state(); got != before {
		t.Errorf("after the empty plan:\n%s\nwant what was there before:\n%s", got, before)
	}
	checkSysctls(t, "after the empty plan", oldLoose, "2")
	if st := mustCheck(t, a, "p0"); st.Installed() || len(st.Missing()) != 0 {
		t.Errorf("Check after the empty plan = %+v; want nothing installed, nothing missing", st)
	}
	if got := interfaces(t, a); len(got) != 0 {
		t.Errorf("Interfaces after the empty plan = %v", got)
	}

	// Attach's undo: the snapshot gives back the rules, the sysctls and their records.
	mustApply(t, a, snap)
	if got := state(); got != installed {
		t.Errorf("after applying the snapshot:\n%s\nwant what was installed:\n%s", got, installed)
	}

	// With another interface left, the empty plan takes p0's chains only.
	q0 := mustBuild(t, "q0", spec.Simple{Ports: []uint16{22}, WScale: -1})
	mustApply(t, a, q0)
	mustApply(t, a, handoffOnly(t, "p0"))
	// p0's route_localnet went back with p0's redirect; the namespace's sysctls stay for q0.
	checkView(t, b, spec.IPv4, wantView(t, spec.IPv4, saved[:2], q0))
	if got := readSysctl(t, rl); got != "0" {
		t.Errorf("%s = %s with p0's redirect gone, want 0", rl, got)
	}
	checkView(t, b, spec.IPv6, wantView(t, spec.IPv6, nil, q0))
	checkSysctls(t, "with q0 still installed", "0", "1")
	mustRemove(t, a, "q0")
	if got := state(); got != before {
		t.Errorf("after removing q0:\n%s\nwant what was there before:\n%s", got, before)
	}
}

// TestNetfilterHandoffUntracked dials, through a firewall that drops INVALID packets the way
// ufw and firewalld do, a port of a handoff statement in a plan with SYNPROXY statements: the
// connection's packets reach the firewall UNTRACKED both ways, conntrack holds no entry for it,
// and the SYNPROXY statement's port still works beside it. (No XDP here: the client's SYN
// reaches the listener itself, but conntrack sees none of the flow, as after a handoff.)
func TestNetfilterHandoffUntracked(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			inBackendNS(t, b)
			testHandoffUntracked(t, b)
		})
	}
}

func testHandoffUntracked(t *testing.T, b backend) {
	c := newClientNS(t)
	for _, port := range []int{80, 22} {
		serve(t, port, &atomic.Int32{})
	}
	// The host firewall: handed-off connections are accepted as NEW,UNTRACKED would accept
	// them; anything INVALID is dropped.
	for _, f := range families {
		ipt := b.bin(f)
		for _, hook := range []struct{ chain, dir string }{{"FW-IN", "--dport"}, {"FW-OUT", "--sport"}} {
			run(t, ipt, "-N", hook.chain)
			run(t, ipt, "-A", hook.chain, "-p", "tcp", hook.dir, "80", "-m", "conntrack", "--ctstate", "UNTRACKED", "-j", "ACCEPT")
			run(t, ipt, "-A", hook.chain, "-m", "conntrack", "--ctstate", "INVALID", "-j", "DROP")
		}
		run(t, ipt, "-A", "INPUT", "-j", "FW-IN")
		run(t, ipt, "-A", "OUTPUT", "-j", "FW-OUT")
	}
	a := b.applier(t)
	mustApply(t, a, mustConfig(t, "s0", "synproxy input inface s0 dport 2222 redirect to 22\n"+
		"synproxy input inface s0 dport 80 path handoff accept\n"))

	dial := func(addr string) (string, error) { return c.line(t, "", addr, ioLimit) }
	for _, f := range families {
		host := map[spec.Family]string{spec.IPv4: "10.9.0.1", spec.IPv6: "fd09::1"}[f]
		for port, want := range map[int]string{80: "hello 80", 2222: "hello 22"} {
			addr := net.JoinHostPort(host, strconv.Itoa(port))
			if got, err := dial(addr); err != nil || got != want {
				t.Errorf("%s: got %q, %v; want %q", addr, got, err, want)
			}
		}
		for _, chain := range []string{"FW-IN", "FW-OUT"} {
			if n := ruleCount(t, b, f, chain, "ACCEPT"); n < 3 {
				t.Errorf("%s %s accepted %d UNTRACKED packets of port 80, want the whole connection", f, chain, n)
			}
			if n := ruleCount(t, b, f, chain, "DROP"); n != 0 {
				t.Errorf("%s %s dropped %d INVALID packets", f, chain, n)
			}
		}
	}
	out := run(t, "conntrack", "-L", "-p", "tcp")
	if lines := slices.DeleteFunc(strings.Split(out, "\n"), func(l string) bool { return !strings.Contains(l, "dport=80 ") }); len(lines) != 0 {
		t.Errorf("conntrack tracks handed-off connections:\n%s", strings.Join(lines, "\n"))
	}
}
