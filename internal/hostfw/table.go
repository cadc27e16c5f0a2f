// Package hostfw reads the host firewall's input rules and answers one question about them:
// would the firewall refuse some client's SYN to a port? xsyn's SYNPROXY path completes the
// handshake ahead of the firewall's INPUT chain (SYNPROXY's own SYN to the server is accepted in
// OUTPUT and on lo), so a statement that xsyn makes up itself, from --port or from the
// listening sockets, must only protect ports the firewall lets every client reach.
//
// The reading is conservative: a rule xsyn cannot fully judge (a match on the source, a rate
// limit, an ipset, a module it does not know) counts as one that may refuse, and so does any
// native nftables chain at the input hook that has rules.
package hostfw

import (
	"fmt"
	"strings"

	"github.com/xsyn-project/xsyn/rules"
)

// Table is the filter table of one family, as iptables-save -t filter prints it.
type Table struct {
	chains map[string]*chain
	// legacy: iptables-nft-save warned that iptables-legacy tables are loaded as well; their
	// INPUT rules judge packets too, and this output does not show them.
	legacy bool
}

type chain struct {
	name   string
	policy string // ACCEPT or DROP for builtin chains, "-" for user chains
	rules  []rule
}

// rule is one -A line: its text, for messages, and its arguments after "-A CHAIN".
type rule struct {
	text string
	args []string
}

// ParseSave reads the output of `iptables-save -t filter` (or ip6tables-save). Tables other
// than filter are ignored; a filter table without an INPUT chain (nothing loaded) is an empty,
// accepting one.
func ParseSave(text string) (*Table, error) {
	t := &Table{chains: map[string]*chain{}}
	inFilter := false
	for n, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "#") && strings.Contains(line, "iptables-legacy tables present"):
			t.legacy = true
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "*"):
			inFilter = line == "*filter"
		case line == "COMMIT":
			inFilter = false
		case !inFilter:
		case strings.HasPrefix(line, ":"):
			f := strings.Fields(line[1:])
			if len(f) < 2 {
				return nil, fmt.Errorf("parse iptables-save line %d: %q: want :CHAIN POLICY", n+1, line)
			}
			t.chains[f[0]] = &chain{name: f[0], policy: f[1]}
		case strings.HasPrefix(line, "-A "):
			args, err := rules.SplitArgs(line)
			if err != nil {
				return nil, fmt.Errorf("parse iptables-save line %d: %w", n+1, err)
			}
			if len(args) < 2 {
				return nil, fmt.Errorf("parse iptables-save line %d: %q: no chain", n+1, line)
			}
			c := t.chains[args[1]]
			if c == nil {
				c = &chain{name: args[1], policy: "-"}
				t.chains[args[1]] = c
			}
			c.rules = append(c.rules, rule{text: line, args: args[2:]})
		default:
			return nil, fmt.Errorf("parse iptables-save line %d: unexpected %q", n+1, line)
		}
	}
	if t.chains["INPUT"] == nil {
		t.chains["INPUT"] = &chain{name: "INPUT", policy: "ACCEPT"}
	}
	return t, nil
}
