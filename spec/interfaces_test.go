package spec

import (
	"strings"
	"testing"
)

// TestInterfaceConflicts: statements of different interfaces that SYNPROXY's OUTPUT-side rules
// cannot tell apart must agree on the action; the configuration says where they do not.
func TestInterfaceConflicts(t *testing.T) {
	for _, tc := range []struct {
		name, src string
		want      string // the error, "" for none
	}{
		{"the issue's pair", "synproxy4 in inface eth0 dst 192.0.2.1 dport 22 action SSH_ALLOW\n" +
			"synproxy4 in inface eth1 dport 22 path synproxy accept\n",
			"fw.conf:2:1: on eth1 it covers connections that line 1 covers on eth0 with another action (accept / action SSH_ALLOW)"},
		{"later line named first", "synproxy4 in inface eth1 dport 22 path synproxy accept\n\n" +
			"  synproxy4 in inface eth0 dst 192.0.2.1 dport 22 action SSH_ALLOW\n",
			"fw.conf:3:3: on eth0 it covers connections that line 1 covers on eth1 with another action (action SSH_ALLOW / accept)"},
		{"different NAT", "synproxy4 in inface eth0 dport 80 redirect to 8080\nsynproxy4 in inface eth1 dport 80 redirect to 8081\n",
			"fw.conf:2:1: on eth1 it covers connections that line 1 covers on eth0 with another action (redirect to 8081 / redirect to 8080)"},
		{"a dual-stack line", "synproxy in inface eth0 dport 443 dnat to 198.51.100.5\nsynproxy in inface eth1 dport 443 path synproxy accept\n",
			"fw.conf:2:1: on eth1"},
		{"the handoff may take it: judged at attach", "synproxy4 in inface eth0 dst 192.0.2.1 dport 22 action SSH_ALLOW\n" +
			"synproxy4 in inface eth1 dport 22 accept\n", ""},
		{"same action", "synproxy4 in inface eth0 dst 192.0.2.1 dport 22 path synproxy accept\n" +
			"synproxy4 in inface eth1 dport 22 path synproxy accept\n", ""},
		{"other ports", "synproxy4 in inface eth0 dport 22 action SSH_ALLOW\nsynproxy4 in inface eth1 dport 80 path synproxy accept\n", ""},
		{"other destinations", "synproxy4 in inface eth0 dst 192.0.2.1 dport 22 action SSH_ALLOW\n" +
			"synproxy4 in inface eth1 dst 192.0.2.2 dport 22 path synproxy accept\n", ""},
		{"other clients", "synproxy4 in inface eth0 src 10.0.0.0/8 dport 22 action SSH_ALLOW\n" +
			"synproxy4 in inface eth1 src 172.16.0.0/12 dport 22 accept\n", ""},
		{"other families", "synproxy6 in inface eth0 dport 22 action SSH_ALLOW\nsynproxy4 in inface eth1 dport 22 path synproxy accept\n", ""},
		{"other outgoing interfaces", "synproxy4 forward inface eth0 outface eth2 dport 80 drop\nsynproxy4 forward inface eth1 outface eth3 dport 80 accept\n", ""},
		{"reject opens nothing", "synproxy4 in inface eth0 dport 22 reject\nsynproxy4 in inface eth1 dport 22 path synproxy accept\n", ""},
		{"one statement for both", "synproxy4 in inface eth0,eth1 dport 22 action SSH_ALLOW\n", ""},
		{"shadowed by a shared statement", "synproxy4 in inface eth0,eth1 dst 192.0.2.1 dport 22 drop\n" +
			"synproxy4 in inface eth0 dport 22 path synproxy accept\n", ""},
		{"not shadowed in full", "synproxy4 in inface eth0,eth1 dst 192.0.2.1 dport 22 drop\n" +
			"synproxy4 in inface eth0 dport 22 path synproxy accept\nsynproxy4 in inface eth1 dport 22 action SSH_ALLOW\n",
			"fw.conf:3:1: on eth1 it covers connections that line 2 covers on eth0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig("fw.conf", []byte(tc.src), nil)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("ParseConfig:\n%s: %v", tc.src, err)
			case tc.want != "" && (err == nil || !strings.HasPrefix(err.Error(), tc.want)):
				t.Errorf("ParseConfig:\n%s = %v\nwant an error starting %q", tc.src, err, tc.want)
			}
		})
	}
}

// TestInterference: the live check's view (statements with their paths chosen): handoff
// statements never meet another interface's chains.
func TestInterference(t *testing.T) {
	parse := func(src, iface string) []Statement {
		t.Helper()
		cfg, err := ParseConfig("x.conf", []byte(src), nil)
		if err != nil {
			t.Fatal(err)
		}
		s, err := cfg.For(iface)
		if err != nil {
			t.Fatal(err)
		}
		return s.Statements
	}
	eth0 := parse("synproxy4 in inface eth0 dst 192.0.2.1 dport 22 action SSH_ALLOW\n", "eth0")
	handoff := parse("synproxy4 in inface eth1 dport 22 accept\n", "eth1")
	if handoff[0].Path != PathHandoff {
		t.Fatalf("path %s, want handoff", handoff[0].Path)
	}
	if _, _, ok := Interference(handoff, eth0); ok {
		t.Error("a handoff statement interferes: it has no OUTPUT-side rules")
	}
	synproxy, err := Spec{Statements: handoff}.WithoutHandoff("test")
	if err != nil {
		t.Fatal(err)
	}
	a, b, ok := Interference(synproxy.Statements, eth0)
	if !ok || a.Action.Kind != Accept || b.Action.Kind != Chain {
		t.Errorf("Interference = %v, %v, %v; want the accept and the SSH_ALLOW statements", a, b, ok)
	}
}
