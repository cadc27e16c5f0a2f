package rules

import (
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xsyn-project/xsyn/spec"
)

// negConf excludes two clients of each family from the statement that lets them in.
const negConf = "synproxy input inface s0 src not 10.9.0.3,10.9.0.4,fd09::3,fd09::4 dport 80 accept\n"

// refusedLimit bounds the dial of a client the firewall drops: its SYN gets no answer.
const refusedLimit = 2 * time.Second

// TestNetfilterNegatedSource: behind a firewall that lets nothing new in by itself, the
// statement's proxy lets in every client but the ones its negated list excludes (checked in a
// subchain), which are left to the firewall: their SYNs are neither untracked nor answered, and
// they never connect.
func TestNetfilterNegatedSource(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			inBackendNS(t, b)
			testNegatedSource(t, b)
		})
	}
}

func testNegatedSource(t *testing.T, b backend) {
	c := newClientNS(t)
	c.do(t, func() {
		for _, a := range []string{"10.9.0.3/24", "10.9.0.4/24", "10.9.0.5/24"} {
			run(t, "ip", "addr", "add", a, "dev", "c0")
		}
		for _, a := range []string{"fd09::3/64", "fd09::4/64", "fd09::5/64"} {
			run(t, "ip", "addr", "add", a, "dev", "c0", "nodad")
		}
	})
	var accepted atomic.Int32
	serve(t, 80, &accepted)
	for _, f := range families {
		run(t, b.bin(f), "-A", "INPUT", "-p", map[spec.Family]string{spec.IPv4: "icmp", spec.IPv6: "ipv6-icmp"}[f], "-j", "ACCEPT")
		run(t, b.bin(f), "-A", "INPUT", "-i", "lo", "-j", "ACCEPT")
		run(t, b.bin(f), "-A", "INPUT", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT")
		run(t, b.bin(f), "-P", "INPUT", "DROP")
	}
	a := b.applier(t)
	p := mustConfig(t, "s0", negConf)
	for _, fp := range p.Families {
		if _, ok := chainRulesOf(p, fp.Family, chainKind{tag: "f00", table: TableFilter}); !ok {
			t.Fatalf("%s: the plan has no subchain for the negated list", fp.Family)
		}
	}
	mustApply(t, a, p)

	dial := func(from, to string, limit time.Duration) (string, error) {
		return c.line(t, from, net.JoinHostPort(to, "80"), limit)
	}
	cookies := synproxyCookies(t)
	for _, f := range families {
		server, pass, refused := "10.9.0.1", []string{"10.9.0.2", "10.9.0.5"}, []string{"10.9.0.3", "10.9.0.4"}
		if f == spec.IPv6 {
			server, pass, refused = "fd09::1", []string{"fd09::2", "fd09::5"}, []string{"fd09::3", "fd09::4"}
		}
		for _, from := range pass {
			if got, err := dial(from, server, ioLimit); err != nil || got != "hello 80" {
				t.Errorf("%s from %s: got %q, %v; want hello 80", server, from, got, err)
			}
		}
		for _, from := range refused {
			if got, err := dial(from, server, refusedLimit); err == nil {
				t.Errorf("%s from %s, excluded by the negated list: got %q; want no connection", server, from, got)
			}
		}
	}
	if n := accepted.Load(); n != 4 {
		t.Errorf("the server accepted %d connections, want 4 (2 clients of each family)", n)
	}
	if n := synproxyCookies(t) - cookies; n != 4 {
		t.Errorf("SYNPROXY validated %d cookies, want 4: the excluded clients' SYNs must not reach it", n)
	}
	// The excluded clients' SYNs went back from the raw subchain, tracked: one RETURN each.
	for _, f := range families {
		n := 0
		for _, l := range strings.Split(run(t, b.bin(f), "-t", "raw", "-L", "XSYN-r00-s0", "-v", "-x", "-n"), "\n") {
			if fields := strings.Fields(l); len(fields) > 2 && fields[2] == "RETURN" {
				c, err := strconv.Atoi(fields[0])
				if err != nil {
					t.Fatalf("%s -t raw -L: %q", b.bin(f), l)
				}
				n += c
			}
		}
		if n < 2 {
			t.Errorf("%s: %d SYNs returned from the raw subchain of the negated list, want at least 2", f, n)
		}
	}
}
