package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/xsyn-project/xsyn/internal/netlab"
	"github.com/xsyn-project/xsyn/internal/repair"
	"github.com/xsyn-project/xsyn/internal/testutil"
)

// One configuration for several interfaces: without an interface on the command line, explain
// and attach take them from the statements' inface, and attach protects all of them or none.

// twoIfaceLab is an e2e lab whose DUT has a second interface, d1 (10.9.0.1), towards a second
// client, e0 (10.9.0.2) in a namespace of its own (returned), whose end has a pass-through XDP
// program so that the SYN-ACKs XDP sends on d1 arrive. d1 is returned to put another XDP
// program on.
func twoIfaceLab(t *testing.T, prefix string) (*e2eLab, *netlab.Host, *netlab.Link) {
	t.Helper()
	l := newE2ELab(t, prefix, enterers["nsenter"])
	farLab := testutil.Lab(t, prefix+"f")
	far, err := farLab.Host("far")
	if err != nil {
		t.Fatal(err)
	}
	d1, e0, err := netlab.Veth(l.dut, "d1", []netip.Prefix{netip.MustParsePrefix("10.9.0.1/24")}, far, "e0", []netip.Prefix{netip.MustParsePrefix("10.9.0.2/24")})
	if err != nil {
		t.Fatal(err)
	}
	if err := e0.AttachPass(); err != nil {
		t.Fatal(err)
	}
	return l, far, d1
}

// ifacesState is what attach may change on d0 and d1: l.nsState (every rule and user chain of
// both families, the namespace's sysctls, d0's XDP program and services, every interface's XDP
// programs, the namespace's pins), the interfaces' route_localnet, d1's services, and the
// records of the rules each has applied (which serve repairs), as iptables listed them.
func (l *e2eLab) ifacesState(t *testing.T) string {
	t.Helper()
	sys, err := l.dut.Run("sysctl", "net.ipv4.conf.d0.route_localnet", "net.ipv4.conf.d1.route_localnet")
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%s\n%s\nd1: %s\nrecords: %s", l.nsState(t), sys, l.services(t, "d1"), l.records(t, "d0", "d1"))
}

// records is what the DUT's records of the applied rules say of ifaces: the rules as listed
// right after they were applied, and the original sysctls; "none" for an interface without one.
func (l *e2eLab) records(t *testing.T, ifaces ...string) string {
	t.Helper()
	var out []string
	err := l.dut.Do(func() error {
		dir, err := repair.DefaultDir()
		if err != nil {
			return err
		}
		for _, iface := range ifaces {
			rec, ok, err := (&repair.Store{Dir: dir}).Load(iface)
			if err != nil {
				return err
			}
			if !ok {
				out = append(out, iface+": none")
				continue
			}
			b, err := json.Marshal([]any{rec.Live, rec.Originals, rec.Ifindex})
			if err != nil {
				return err
			}
			out = append(out, iface+": "+string(b))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(out, "\n")
}

// services is what status --json says of iface without the counters; "" when it is not protected.
func (l *e2eLab) services(t *testing.T, iface string) string {
	t.Helper()
	out, _, code := l.xsyn(t, "status", iface, "--json", "--interval", "0")
	if code != 0 {
		return ""
	}
	var st statusJSON
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatal(err)
	}
	for i := range st.Interfaces {
		st.Interfaces[i].Counters = nil
	}
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

const twoIfaceConf = `# this host's servers, from both networks
synproxy4 in inface d0 dst 192.0.2.2 dport 8080 path synproxy accept
synproxy4 in inface d0 dst 192.0.2.2 dport 8090 accept
synproxy4 in inface d1 dst 10.9.0.1 dport 8080 path synproxy accept
synproxy4 in inface d1 dst 10.9.0.1 dport 8090 accept
`

func TestConfigInterfaces(t *testing.T) {
	requireRootForTest(t)
	l, far, d1 := twoIfaceLab(t, "xsynmif")
	for _, port := range []int{8080, 8090} {
		stop, err := l.dut.ServeClientAddrTCP(port, dut4.Addr(), netip.MustParseAddr("10.9.0.1"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(stop)
	}
	conf := writeConfig(t, "xsyn.conf", twoIfaceConf)
	pristine := l.ifacesState(t)

	// explain without an interface: every interface's plan, each flow told once; changes nothing.
	out, errOut, code := l.xsyn(t, "explain", "--config", conf)
	d0At, d1At := strings.Index(out, "=== d0 (1 of 2) ===\n\nxsyn explain d0: "), strings.Index(out, "=== d1 (2 of 2) ===\n\nxsyn explain d1: ")
	if code != 0 || errOut != "" || !strings.HasPrefix(out, "xsyn explain --config "+conf+": its statements name d0, d1; what 'xsyn attach --config "+conf+"' would install on each follows.\n\n") ||
		d0At < 0 || d1At < d0At {
		t.Fatalf("explain --config without an interface: exit %d, want 0 with d0's plan, then d1's\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	d0Plan, d1Plan := out[d0At:d1At], out[d1At:]
	for _, c := range []struct{ plan, iface, other, line string }{{d0Plan, "d0", "d1", ":2: synproxy4 in inface d0 dst 192.0.2.2 dport 8080"}, {d1Plan, "d1", "d0", ":4: synproxy4 in inface d1 dst 10.9.0.1 dport 8080"}} {
		for _, want := range []string{"1. " + conf + c.line, "-A XSYN-IN-" + c.iface + " ", "Sysctls attach sets"} {
			if !strings.Contains(c.plan, want) {
				t.Errorf("explain's plan for %s lacks %q:\n%s", c.iface, want, c.plan)
			}
		}
		if strings.Contains(c.plan, "inface "+c.other) || strings.Contains(c.plan, "XSYN-IN-"+c.other) {
			t.Errorf("explain's plan for %s shows %s's statements or rules:\n%s", c.iface, c.other, c.plan)
		}
	}
	if n := strings.Count(out, "How a connection on the SYNPROXY path goes"); n != 1 {
		t.Errorf("explain of two interfaces tells the SYNPROXY path's flow %d times, want once", n)
	}
	// Naming an interface still narrows it.
	out = l.mustXsyn(t, "explain", "d1", "--config", conf)
	if !strings.HasPrefix(out, "xsyn explain d1: ") || strings.Contains(out, "inface d0") || strings.Contains(out, "===") {
		t.Errorf("explain d1 --config: want d1's plan alone:\n%s", out)
	}
	if after := l.ifacesState(t); after != pristine {
		t.Errorf("explain changed the namespace:\nbefore:\n%s\nafter:\n%s", pristine, after)
	}

	// A statement without inface, and no interface named: an error at its line that says what
	// to do, for explain and attach alike; with an interface named it applies to that one.
	anyIface := writeConfig(t, "any.conf", twoIfaceConf+"  synproxy4 in dport 22 accept\n")
	for _, cmd := range []string{"explain", "attach"} {
		out, errOut, code := l.xsyn(t, cmd, "--config", anyIface)
		want := "xsyn " + cmd + ": " + anyIface + ":6:3: the statement applies to every interface (it has no inface), and no interface was named: " +
			"name the one to protect on the command line (IFACE before --config), or give the statement inface IFACE\n" +
			"xsyn " + cmd + ": " + anyIface + " has errors: nothing was changed\n"
		if code != 1 || out != "" || errOut != want {
			t.Errorf("%s --config with a statement without inface: exit %d, stdout %q\nstderr: %s\nwant exit 1 and:\n%s", cmd, code, out, errOut, want)
		}
	}
	if out := l.mustXsyn(t, "explain", "d0", "--config", anyIface); !strings.Contains(out, "3. "+anyIface+":6: synproxy4 in dport 22 accept") {
		t.Errorf("explain d0 of a statement without inface does not show it:\n%s", out)
	}
	if after := l.ifacesState(t); after != pristine {
		t.Errorf("a statement without inface changed the namespace:\nbefore:\n%s\nafter:\n%s", pristine, after)
	}

	// A missing interface is found before anything changes.
	missing := writeConfig(t, "missing.conf", twoIfaceConf+"synproxy4 in inface nosuch0 dport 22 accept\n")
	_, errOut, code = l.xsyn(t, "attach", "--config", missing)
	if want := "xsyn attach: nothing was changed: " + missing + " names d0, d1, nosuch0, and attach protects all of them or none\n"; code != 1 ||
		!strings.Contains(errOut, `no such interface: "nosuch0"`) || !strings.HasSuffix(errOut, want) {
		t.Errorf("attach --config naming a missing interface: exit %d, want 1 and %q\nstderr: %s", code, want, errOut)
	}

	// The second interface fails (another XDP program on d1) after the first was protected: d0
	// is put back as it was, its SYNPROXY rules, sysctls (route_localnet of a redirect too) and
	// XDP program gone again.
	if err := d1.AttachPass(); err != nil {
		t.Fatal(err)
	}
	withRedirect := writeConfig(t, "redirect.conf", twoIfaceConf+"synproxy4 in inface d0 dst 192.0.2.2 dport 2200 redirect to 22\n")
	checkRolledBack(t, l, "nothing protected", []string{"attach", "--config", withRedirect},
		"another XDP program is attached to d1", "nothing was changed: d1 failed, and d0, changed before it, was put back as it was")
	if _, err := l.dut.Run("ip", "link", "set", "dev", "d1", "xdp", "off"); err != nil {
		t.Fatal(err)
	}
	if after := l.ifacesState(t); after != pristine {
		t.Errorf("after the failed attach:\n%s\nwant as before it:\n%s", after, pristine)
	}

	// Both protected; real clients on each interface connect, XDP answering their SYNs.
	out, errOut, code = l.xsyn(t, "attach", "--config", conf)
	t.Cleanup(func() { l.xsyn(t, "detach", "d0"); l.xsyn(t, "detach", "d1") })
	if code != 0 || !regexp.MustCompile(`(?s)^d0: protecting \(.*\n  2\. `+regexp.QuoteMeta(conf)+`:3: .*\n\nd1: protecting \(.*\n  2\. `+regexp.QuoteMeta(conf)+`:5: `).MatchString(out) {
		t.Fatalf("attach --config of two interfaces: exit %d, want 0 and d0's statements, then d1's\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	for _, c := range []struct {
		iface  string
		client *netlab.Host
		dst    string
		seen   string
	}{{"d0", l.cli, "192.0.2.2", cli4.Addr().String()}, {"d1", far, "10.9.0.1", "10.9.0.2"}} {
		before := l.statusOf(t, c.iface)
		if len(before.Services) != 2 || before.Mode == "netfilter-only" {
			t.Errorf("status %s after attach: mode %s, %d services; want XDP and 2 services", c.iface, before.Mode, len(before.Services))
		}
		for _, port := range []string{"8080", "8090"} {
			if seen, err := c.client.ClientAddrSeen(c.dst+":"+port, 3*time.Second); err != nil || seen != c.seen {
				t.Errorf("client through %s to port %s: server saw %q, %v; want %s", c.iface, port, seen, err, c.seen)
			}
		}
		_ = testutil.Wait(5*time.Second, func() error { // the check below says what is wrong
			if counter(l.statusOf(t, c.iface), "ipv4", "synack_sent")-counter(before, "ipv4", "synack_sent") < 2 {
				return errors.New("not yet")
			}
			return nil
		})
		if after := l.statusOf(t, c.iface); counter(after, "ipv4", "synack_sent")-counter(before, "ipv4", "synack_sent") != 2 {
			t.Errorf("two clients through %s: XDP sent %d SYN-ACKs, want 2 (%v)", c.iface, counter(after, "ipv4", "synack_sent")-counter(before, "ipv4", "synack_sent"), after.Counters["ipv4"])
		}
	}

	// The second interface fails again, now with both protected: a statement for d1 needs a
	// chain that does not exist, found after d0 was reconfigured; d0 gets its rules and XDP
	// services back.
	protected := l.ifacesState(t)
	changed := writeConfig(t, "changed.conf", "synproxy4 in inface d0 dst 192.0.2.2 dport 8080,8081 path synproxy mss 1400 accept\n"+
		"synproxy4 in inface d0 dst 192.0.2.2 dport 9000 accept\n"+
		"synproxy4 in inface d1 dst 10.9.0.1 dport 8080 action NOSUCHCHAIN\n")
	checkRolledBack(t, l, "both protected", []string{"attach", "--config", changed},
		"chain NOSUCHCHAIN does not exist in the ipv4 filter table", "nothing was changed: d1 failed, and d0, changed before it, was put back as it was")
	if after := l.ifacesState(t); after != protected {
		t.Errorf("after the failed attach:\n%s\nwant as before it:\n%s", after, protected)
	}

	// --mode netfilter takes d0's XDP program away before d1 fails: it is attached again, with
	// its services. It is a program of its own (new ids), and the handoff's chains, which
	// netfilter mode removed, are back with their jumps first in their hooks: ahead of d1's,
	// whose rules match other packets (-i d1, -o d1).
	checkRolledBack(t, l, "netfilter mode", []string{"attach", "--config", changed, "--mode", "netfilter"},
		"chain NOSUCHCHAIN does not exist", "nothing was changed: d1 failed, and d0, changed before it, was put back as it was")
	ids := regexp.MustCompile(`(id |"program_id":|load_time |btf_id )\d+`)
	normal := func(state string) string {
		lines := strings.Split(ids.ReplaceAllString(state, "${1}N"), "\n")
		slices.Sort(lines)
		return strings.Join(lines, "\n")
	}
	if after := l.ifacesState(t); normal(after) != normal(protected) {
		t.Errorf("after the failed attach in netfilter mode:\n%s\nwant as before it (but for ids and the order of lines):\n%s", after, protected)
	}
	before := l.statusOf(t, "d0")
	if seen, err := l.connect("192.0.2.2:8090"); err != nil || seen != cli4.Addr().String() {
		t.Errorf("client through d0 after XDP was put back: server saw %q, %v; want %s", seen, err, cli4.Addr())
	}
	if after := l.statusOf(t, "d0"); counter(after, "ipv4", "synack_sent") == counter(before, "ipv4", "synack_sent") {
		t.Errorf("client through d0 after XDP was put back: XDP sent no SYN-ACK (%v)", after.Counters["ipv4"])
	}
}

// checkRolledBack runs an attach that fails on its second interface: exit 1, nothing on stdout,
// stderr with want.
func checkRolledBack(t *testing.T, l *e2eLab, name string, args []string, want ...string) {
	t.Helper()
	out, errOut, code := l.xsyn(t, args...)
	if code != 1 || out != "" {
		t.Errorf("%s: xsyn %s: exit %d, want 1 and nothing on stdout\nstdout: %s\nstderr: %s", name, strings.Join(args, " "), code, out, errOut)
	}
	for _, w := range want {
		if !strings.Contains(errOut, w) {
			t.Errorf("%s: xsyn %s: stderr lacks %q:\n%s", name, strings.Join(args, " "), w, errOut)
		}
	}
}

// statusOf is status --json of iface.
func (l *e2eLab) statusOf(t *testing.T, iface string) ifaceJSON {
	t.Helper()
	var st statusJSON
	if err := json.Unmarshal([]byte(l.mustXsyn(t, "status", iface, "--json", "--interval", "0")), &st); err != nil {
		t.Fatal(err)
	}
	if len(st.Interfaces) != 1 {
		t.Fatalf("status %s: %d interfaces, want 1", iface, len(st.Interfaces))
	}
	return st.Interfaces[0]
}
