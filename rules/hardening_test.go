package rules

import (
	"strings"
	"testing"

	"github.com/xsyn-project/xsyn/spec"
)

// rulesWith returns the rules of the plan's family-f chain of kind k whose origin is origin
// (any origin if empty), as iptables -S prints them.
func rulesWith(p Plan, f spec.Family, k chainKind, origin string) []string {
	fp, _ := p.Family(f)
	var out []string
	for _, c := range fp.Chains {
		if c.Name != k.name(p.Iface) {
			continue
		}
		for _, r := range c.Rules {
			if origin == "" || r.Origin == origin {
				out = append(out, joinArgs(r.Args))
			}
		}
	}
	return out
}

// TestBuildMarkTakesOnlyNewSYN: the accepts that trust xsyn's mark bits (the lo accept in
// INPUT) and the orphan rules take only a SYN that opens a connection: another packet that
// carries the bits (a foreign rule or a process that sets them) rides no accept.
func TestBuildMarkTakesOnlyNewSYN(t *testing.T) {
	p := mustConfig(t, "eth0", "synproxy input inface eth0 dport 80 accept\n")
	for _, f := range families {
		var marked []string
		for _, k := range []chainKind{kindIn, kindOrphan} {
			for _, r := range rulesWith(p, f, k, "") {
				if strings.Contains(r, "--mark ") {
					marked = append(marked, r)
				}
			}
		}
		if len(marked) != 3 {
			t.Fatalf("%s: %d rules match the mark in IN and ORP, want 3 (lo accept, orphan log and drop): %q", f, len(marked), marked)
		}
		for _, r := range marked {
			if !strings.Contains(r, "-p tcp -m tcp --tcp-flags FIN,SYN,RST,ACK SYN -m mark --mark 0x20000000/0x20000000 -m conntrack --ctstate NEW ") {
				t.Errorf("%s rule %q: want only a new SYN with the mark", f, r)
			}
		}
	}
}

// TestBuildServerInvalidDrop: the drop of the server's INVALID packets to the client takes,
// as FireHOL's, segments with ACK and without RST, leaving by the client's interface: a
// statement without dst does not drop every INVALID packet from its port.
func TestBuildServerInvalidDrop(t *testing.T) {
	conf := "synproxy4 input inface eth0 dport 80 accept\n" +
		"synproxy4 forward inface eth0 dst 203.0.113.10 dport 443 dnat to 10.0.0.5\n"
	p := mustConfig(t, "eth0", conf)
	want := map[chainKind]string{
		kindOut: "-o eth0 -p tcp -m tcp --sport 80 --tcp-flags RST,ACK ACK -m conntrack --ctstate INVALID -m comment",
		kindFwd: "-s 10.0.0.5/32 -o eth0 -p tcp -m tcp --sport 443 --tcp-flags RST,ACK ACK -m conntrack --ctstate INVALID -m comment",
	}
	for k, w := range want {
		found := 0
		for _, r := range rulesWith(p, spec.IPv4, k, "") {
			if strings.Contains(r, "--sport") && strings.Contains(r, "--ctstate INVALID -m comment") && strings.HasSuffix(r, "-j DROP") {
				found++
				if !strings.Contains(r, w) {
					t.Errorf("%s: server->client drop %q, want %q", k.tag, r, w)
				}
			}
		}
		if found != 1 {
			t.Errorf("%s: %d server->client drops, want 1", k.tag, found)
		}
	}
}

// TestBuildWithoutDstLocality: a statement without dst matches the destination by its kind, in
// every rule that matches the client's destination: an input statement this host's addresses
// (a router's forwarded SYNs are neither untracked nor claimed by its NAT or action), a forward
// statement routed ones; one with SYNPROXY in both chains (forward dnat without outface), or
// with dst, neither.
func TestBuildWithoutDstLocality(t *testing.T) {
	const (
		in      = "synproxy4 input inface eth0 dport 80 accept"
		inDNAT  = "synproxy4 input inface eth0 dport 81 dnat to 10.0.0.6"
		fwd     = "synproxy4 forward inface eth0 dport 82 accept"
		front   = "synproxy4 forward inface eth0 dport 83 dnat to 10.0.0.5"
		withDst = "synproxy4 input inface eth0 dst 198.51.100.1 dport 84 accept"
	)
	p := mustConfig(t, "eth0", strings.Join([]string{in, inDNAT, fwd, front, withDst}, "\n")+"\n")
	const isLocal, notLocal = "-m addrtype --dst-type LOCAL", "-m addrtype ! --dst-type LOCAL"
	for _, c := range []struct {
		origin string
		k      chainKind
		want   string // "" for no addrtype match
		action bool   // only the action rule (marked, in OUT)
	}{
		{in, kindRaw, isLocal, false}, {in, kindMark, isLocal, false}, {in, kindNat, isLocal, false}, {in, kindOut, isLocal, true},
		// The action sees the translated destination.
		{inDNAT, kindRaw, isLocal, false}, {inDNAT, kindNat, isLocal, false}, {inDNAT, kindOut, "-d 10.0.0.6/32 ", true},
		{fwd, kindRaw, notLocal, false}, {fwd, kindMark, notLocal, false}, {fwd, kindNat, notLocal, false}, {fwd, kindOut, notLocal, true},
		{front, kindRaw, "", false}, {front, kindNat, "", false}, {front, kindOut, "", true},
		{withDst, kindRaw, "", false}, {withDst, kindNat, "", false}, {withDst, kindOut, "", true},
	} {
		rules := rulesWith(p, spec.IPv4, c.k, c.origin)
		n := 0
		for _, r := range rules {
			if c.action && !strings.Contains(r, "--mark") {
				continue
			}
			n++
			switch {
			case c.want == "" && strings.Contains(r, "addrtype"):
				t.Errorf("%s rule of %q: %q matches the address type", c.k.tag, c.origin, r)
			case c.want != "" && !strings.Contains(r, c.want):
				t.Errorf("%s rule of %q: %q, want %q", c.k.tag, c.origin, r, c.want)
			}
		}
		if n == 0 {
			t.Errorf("no %s rule of %q", c.k.tag, c.origin)
		}
	}
}
