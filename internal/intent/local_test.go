package intent

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/xsyn-project/xsyn/spec"
)

// TestLocalWarning: explain warns about a statement that matches the interface's own addresses
// but has no SYNPROXY in INPUT, and about no other.
func TestLocalWarning(t *testing.T) {
	addrs := []netip.Addr{netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("2001:db8::10"), netip.MustParseAddr("fe80::1")}
	cases := []struct{ stmt, want string }{
		{"synproxy4 in inface d0 dst 192.0.2.2 dport 80 accept", ""},
		{"synproxy4 forward inface d0 dst 192.0.2.2 dport 80 dnat to 10.0.0.5", ""},
		{"synproxy6 forward inface d0 dst 2001:db8::10 dport 80 redirect to 8080", ""},
		{"synproxy4 forward inface d0 dst 203.0.113.10 dport 80 accept", ""},
		{"synproxy4 forward inface d0 dst 192.0.2.2 dport 80 accept", "warning: it matches 192.0.2.2, of d0, but its action (accept) keeps the destination: " +
			"SYNPROXY is in FORWARD only and connections to this host's own addresses fail; write 'in' for them"},
		{"synproxy6 forward inface d0 dport 80 action TRAP", "warning: it matches 2001:db8::10, of d0, but its action (action TRAP) keeps the destination"},
		{"synproxy4 forward inface d0 outface d1 dst 192.0.2.0/24 dport 80 dnat to 10.0.0.5", "warning: it matches 192.0.2.2, of d0, but it has an outface, which INPUT cannot match: " +
			"SYNPROXY is in FORWARD only and connections to this host's own addresses fail; leave outface out"},
	}
	for _, c := range cases {
		cfg, err := spec.ParseConfig("w.conf", []byte(c.stmt), nil)
		if err != nil {
			t.Fatal(err)
		}
		got := LocalWarning(cfg.Statements[0], "d0", addrs)
		if c.want == "" && got != "" || !strings.HasPrefix(got, c.want) {
			t.Errorf("%s: warning %q, want %q", c.stmt, got, c.want)
		}
	}
}
