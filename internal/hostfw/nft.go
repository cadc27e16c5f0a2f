package hostfw

import (
	"encoding/json"
	"fmt"
	"strings"
)

// NativeChain is an nftables base chain at the input hook that iptables-save does not show:
// xsyn does not read nftables expressions, so one with rules, or with a drop policy, may refuse
// clients for all xsyn can tell.
type NativeChain struct {
	Family, Table, Name string
	Policy              string // accept or drop
	Rules               int
}

func (c NativeChain) String() string {
	rules := "rules"
	if c.Rules == 1 {
		rules = "rule"
	}
	return fmt.Sprintf("nftables chain %s %s %s (hook input, policy %s, %d %s)", c.Family, c.Table, c.Name, c.Policy, c.Rules, rules)
}

// iptablesTable reports whether an nftables table is the one iptables-nft keeps the filter
// table of a family in, which iptables-save -t filter shows and Table.Judge reads.
func iptablesTable(family, table string) bool {
	return (family == "ip" || family == "ip6") && table == "filter"
}

// ParseNft reads the output of `nft -j list ruleset` and returns the base chains at the input
// hook, outside iptables' filter tables, that have rules or drop what no rule accepts.
func ParseNft(out []byte) ([]NativeChain, error) {
	var doc struct {
		Nftables []map[string]json.RawMessage `json:"nftables"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		return nil, fmt.Errorf("read nft -j list ruleset: %w", err)
	}
	type key struct{ family, table, name string }
	var chains []NativeChain
	rules := map[key]int{}
	for _, obj := range doc.Nftables {
		if raw, ok := obj["chain"]; ok {
			var c struct {
				Family, Table, Name, Hook, Policy string
			}
			if err := json.Unmarshal(raw, &c); err != nil {
				return nil, fmt.Errorf("read nft chain: %w", err)
			}
			if c.Hook == "input" && !iptablesTable(c.Family, c.Table) {
				chains = append(chains, NativeChain{Family: c.Family, Table: c.Table, Name: c.Name, Policy: c.Policy})
			}
		}
		if raw, ok := obj["rule"]; ok {
			var r struct{ Family, Table, Chain string }
			if err := json.Unmarshal(raw, &r); err != nil {
				return nil, fmt.Errorf("read nft rule: %w", err)
			}
			rules[key{r.Family, r.Table, r.Chain}]++
		}
	}
	var out2 []NativeChain
	for _, c := range chains {
		c.Rules = rules[key{c.Family, c.Table, c.Name}]
		if c.Rules > 0 || !strings.EqualFold(c.Policy, "accept") && c.Policy != "" {
			out2 = append(out2, c)
		}
	}
	return out2, nil
}
