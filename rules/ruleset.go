package rules

import (
	"errors"
	"fmt"
	"os/exec"
	"strings"

	"github.com/coreos/go-iptables/iptables"

	"github.com/xsyn-project/xsyn/spec"
)

// saver is an IPTables that can also list every table at once, as iptables-save does: one
// command, where reading rule by rule takes one per chain. Drift, which `xsyn serve` runs each
// second, reads through it when it can.
type saver interface {
	Save() (string, error)
}

// savingTables is the system's iptables (or ip6tables) with its iptables-save.
type savingTables struct {
	*iptables.IPTables
	save string // iptables-save or ip6tables-save, found in PATH as iptables is
}

func (s savingTables) Save() (string, error) {
	var stderr strings.Builder
	cmd := exec.Command(s.save)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%s: %w: %s", s.save, err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

// ruleset is what iptables-save printed of one family, read-only behind the IPTables interface:
// List and ListChains answer as iptables -S does.
type ruleset struct {
	chains map[string][]string // table -> its chains, in the order printed
	lines  map[string][]string // "table/chain" -> "-P"/"-N" line, then its "-A" lines
}

// readRuleset runs the family's iptables-save; ok is false when its IPTables has none.
func readRuleset(ipt IPTables) (*ruleset, bool, error) {
	s, ok := ipt.(saver)
	if !ok {
		return nil, false, nil
	}
	out, err := s.Save()
	if err != nil {
		return nil, false, err
	}
	rs, err := parseRuleset(out)
	return rs, err == nil, err
}

func parseRuleset(out string) (*ruleset, error) {
	rs := &ruleset{chains: map[string][]string{}, lines: map[string][]string{}}
	table := ""
	for _, l := range strings.Split(out, "\n") {
		switch {
		case l == "" || l[0] == '#' || l == "COMMIT":
		case l[0] == '*':
			table = l[1:]
			if _, ok := rs.chains[table]; !ok {
				rs.chains[table] = []string{}
			}
		case table == "":
			return nil, fmt.Errorf("read iptables-save: %q outside a table", l)
		case l[0] == ':':
			f := strings.Fields(l[1:])
			if len(f) < 2 {
				return nil, fmt.Errorf("read iptables-save: chain line %q", l)
			}
			rs.chains[table] = append(rs.chains[table], f[0])
			first := "-N " + f[0]
			if f[1] != "-" {
				first = "-P " + f[0] + " " + f[1]
			}
			rs.lines[table+"/"+f[0]] = append([]string{first}, rs.lines[table+"/"+f[0]]...)
		case strings.HasPrefix(l, "-A "):
			f := strings.Fields(l)
			if len(f) < 2 {
				return nil, fmt.Errorf("read iptables-save: rule line %q", l)
			}
			rs.lines[table+"/"+f[1]] = append(rs.lines[table+"/"+f[1]], l)
		}
	}
	return rs, nil
}

// errNoChain is what List says of a chain the ruleset does not have, as iptables does.
type errNoChain struct{ table, chain string }

func (e errNoChain) Error() string {
	return fmt.Sprintf("chain %s does not exist in table %s", e.chain, e.table)
}
func (errNoChain) IsNotExist() bool { return true }

var errReadOnly = errors.New("a saved ruleset is read-only")

func (rs *ruleset) ListChains(table string) ([]string, error) {
	return rs.chains[table], nil
}

func (rs *ruleset) List(table, chain string) ([]string, error) {
	lines, ok := rs.lines[table+"/"+chain]
	if !ok {
		return nil, errNoChain{table, chain}
	}
	return lines, nil
}

func (rs *ruleset) NewChain(string, string) error               { return errReadOnly }
func (rs *ruleset) ClearChain(string, string) error             { return errReadOnly }
func (rs *ruleset) DeleteChain(string, string) error            { return errReadOnly }
func (rs *ruleset) RenameChain(string, string, string) error    { return errReadOnly }
func (rs *ruleset) Append(string, string, ...string) error      { return errReadOnly }
func (rs *ruleset) Insert(string, string, int, ...string) error { return errReadOnly }
func (rs *ruleset) Delete(string, string, ...string) error      { return errReadOnly }

// saved returns a read-only Applier over one iptables-save of each family, or a itself where a
// family's IPTables cannot save.
func (a *Applier) saved() (*Applier, error) {
	ipt := map[spec.Family]IPTables{}
	for fam, t := range a.ipt {
		rs, ok, err := readRuleset(t)
		if err != nil {
			return nil, err
		}
		if !ok {
			return a, nil
		}
		ipt[fam] = rs
	}
	return &Applier{ipt: ipt, sys: a.sys}, nil
}
