package rules

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/xsyn-project/xsyn/spec"
)

// errInjected is what a fakeNS call returns when the test makes it fail.
var errInjected = errors.New("injected failure")

// fakeNS is a network namespace as iptables and /proc/sys show it, with a call counter to fail
// any one call. It behaves like iptables where the applier depends on it: NewChain fails on an
// existing chain, DeleteChain on a missing, non-empty, builtin or referenced one, jumps need
// their chain, RenameChain follows references (as both nft and legacy backends do).
type fakeNS struct {
	tables  map[spec.Family]map[string]map[string]*fakeChain // family -> table -> chain
	sysctls map[string]string

	calls    int
	failAt   int  // 1-based call to fail; 0: none
	failFrom bool // fail every call from failAt on

	// afterChange runs after every successful change, to check invariants mid-way.
	afterChange func(op string)
}

type fakeChain struct {
	builtin bool
	rules   [][]string
}

// fakeState is a comparable copy of a fakeNS.
type fakeState struct {
	Tables  map[string][]string // "ipv4 filter" -> "-N X" and "-A X ..." lines, sorted by chain
	Sysctls map[string]string
}

func newFakeNS() *fakeNS {
	n := &fakeNS{
		tables: map[spec.Family]map[string]map[string]*fakeChain{},
		sysctls: map[string]string{
			"net.netfilter.nf_conntrack_tcp_loose": "1",
			"net.ipv4.tcp_syncookies":              "2",
			"net.ipv4.ip_forward":                  "0",
			"net.ipv6.conf.all.forwarding":         "0",
		},
	}
	for _, iface := range []string{"eth0", "eth1", "eth2"} {
		n.sysctls["net.ipv4.conf."+iface+".route_localnet"] = "0"
	}
	for _, f := range families {
		n.tables[f] = map[string]map[string]*fakeChain{}
		for table, builtins := range builtinChains {
			n.tables[f][table] = map[string]*fakeChain{}
			for _, c := range builtins {
				n.tables[f][table][c] = &fakeChain{builtin: true}
			}
		}
	}
	return n
}

// withForeign adds rules and chains that belong to someone else; xsyn must leave them alone.
func (n *fakeNS) withForeign() *fakeNS {
	for _, f := range families {
		filter, raw := n.tables[f][TableFilter], n.tables[f][TableRaw]
		filter["INPUT"].rules = append(filter["INPUT"].rules, []string{"-p", "tcp", "-m", "tcp", "--dport", "22", "-j", "ACCEPT"})
		filter["XSYN-LOG"] = &fakeChain{rules: [][]string{{"-j", "LOG"}}}
		filter["INPUT"].rules = append(filter["INPUT"].rules, []string{"-j", "XSYN-LOG"})
		raw["OTHER"] = &fakeChain{rules: [][]string{{"-p", "udp", "-j", "CT", "--notrack"}}}
		raw["PREROUTING"].rules = append(raw["PREROUTING"].rules, []string{"-j", "OTHER"})
		filter["OUTPUT"].rules = append(filter["OUTPUT"].rules, []string{"-p", "udp", "-m", "udp", "--dport", "53", "-j", "ACCEPT"})
	}
	return n
}

// withChain adds an empty user chain to the family's filter table.
func (n *fakeNS) withChain(f spec.Family, name string) *fakeNS {
	n.tables[f][TableFilter][name] = &fakeChain{}
	return n
}

func (n *fakeNS) applier() *Applier {
	return NewApplierWith(&fakeIPT{n, spec.IPv4}, &fakeIPT{n, spec.IPv6}, fakeSysctl{n})
}

func (n *fakeNS) call() error {
	n.calls++
	if n.failAt > 0 && (n.calls == n.failAt || n.failFrom && n.calls > n.failAt) {
		return errInjected
	}
	return nil
}

func (n *fakeNS) changed(op string) {
	if n.afterChange != nil {
		n.afterChange(op)
	}
}

func (n *fakeNS) state() fakeState {
	s := fakeState{Tables: map[string][]string{}, Sysctls: maps.Clone(n.sysctls)}
	for f, tables := range n.tables {
		for table, chains := range tables {
			var lines []string
			for _, name := range slices.Sorted(maps.Keys(chains)) {
				c := chains[name]
				if !c.builtin {
					lines = append(lines, "-N "+name)
				}
				for _, r := range c.rules {
					lines = append(lines, "-A "+name+" "+joinArgs(r))
				}
			}
			s.Tables[fmt.Sprintf("%s %s", f, table)] = lines
		}
	}
	return s
}

// chainNames returns the names of the family's chains in table that start with prefix.
func (n *fakeNS) chainNames(f spec.Family, table, prefix string) []string {
	var out []string
	for name := range n.tables[f][table] {
		if strings.HasPrefix(name, prefix) {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

type fakeIPT struct {
	ns  *fakeNS
	fam spec.Family
}

func (f *fakeIPT) table(table string) (map[string]*fakeChain, error) {
	t, ok := f.ns.tables[f.fam][table]
	if !ok {
		return nil, fmt.Errorf("can't initialize %s table %q", f.fam, table)
	}
	return t, nil
}

func (f *fakeIPT) chain(table, chain string) (map[string]*fakeChain, *fakeChain, error) {
	t, err := f.table(table)
	if err != nil {
		return nil, nil, err
	}
	c, ok := t[chain]
	if !ok {
		return nil, nil, fmt.Errorf("chain %s/%s: No chain/target/match by that name", table, chain)
	}
	return t, c, nil
}

func (f *fakeIPT) ListChains(table string) ([]string, error) {
	if err := f.ns.call(); err != nil {
		return nil, err
	}
	t, err := f.table(table)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, name := range builtinChains[table] {
		out = append(out, name)
	}
	for _, name := range slices.Sorted(maps.Keys(t)) {
		if !t[name].builtin {
			out = append(out, name)
		}
	}
	return out, nil
}

func (f *fakeIPT) List(table, chain string) ([]string, error) {
	if err := f.ns.call(); err != nil {
		return nil, err
	}
	_, c, err := f.chain(table, chain)
	if err != nil {
		return nil, err
	}
	out := []string{"-N " + chain}
	if c.builtin {
		out = []string{"-P " + chain + " ACCEPT"}
	}
	for _, r := range c.rules {
		out = append(out, "-A "+chain+" "+joinArgs(r))
	}
	return out, nil
}

func (f *fakeIPT) NewChain(table, chain string) error {
	if err := f.ns.call(); err != nil {
		return err
	}
	t, err := f.table(table)
	if err != nil {
		return err
	}
	if _, ok := t[chain]; ok {
		return fmt.Errorf("chain %s/%s: Chain already exists", table, chain)
	}
	t[chain] = &fakeChain{}
	f.ns.changed("new chain " + chain)
	return nil
}

func (f *fakeIPT) ClearChain(table, chain string) error {
	if err := f.ns.call(); err != nil {
		return err
	}
	t, err := f.table(table)
	if err != nil {
		return err
	}
	if c, ok := t[chain]; ok {
		c.rules = nil
	} else {
		t[chain] = &fakeChain{} // go-iptables: ClearChain creates a missing chain
	}
	f.ns.changed("clear chain " + chain)
	return nil
}

func (f *fakeIPT) DeleteChain(table, chain string) error {
	if err := f.ns.call(); err != nil {
		return err
	}
	t, c, err := f.chain(table, chain)
	if err != nil {
		return err
	}
	switch {
	case c.builtin:
		return fmt.Errorf("chain %s/%s: Can't delete built-in chain", table, chain)
	case len(c.rules) > 0:
		return fmt.Errorf("chain %s/%s: Directory not empty", table, chain)
	case referenced(t, chain):
		return fmt.Errorf("chain %s/%s: Too many links", table, chain)
	}
	delete(t, chain)
	f.ns.changed("delete chain " + chain)
	return nil
}

func (f *fakeIPT) RenameChain(table, oldChain, newChain string) error {
	if err := f.ns.call(); err != nil {
		return err
	}
	t, c, err := f.chain(table, oldChain)
	if err != nil {
		return err
	}
	if _, ok := t[newChain]; ok || c.builtin {
		return fmt.Errorf("rename %s/%s to %s: File exists", table, oldChain, newChain)
	}
	delete(t, oldChain)
	t[newChain] = c
	for _, other := range t {
		for _, r := range other.rules {
			if i := slices.Index(r, "-j"); i >= 0 && r[i+1] == oldChain {
				r[i+1] = newChain
			}
		}
	}
	f.ns.changed("rename chain " + oldChain)
	return nil
}

func (f *fakeIPT) Append(table, chain string, rulespec ...string) error {
	return f.Insert(table, chain, -1, rulespec...)
}

// Insert at pos (1-based); pos -1 appends.
func (f *fakeIPT) Insert(table, chain string, pos int, rulespec ...string) error {
	if err := f.ns.call(); err != nil {
		return err
	}
	t, c, err := f.chain(table, chain)
	if err != nil {
		return err
	}
	if i := slices.Index(rulespec, "-j"); i >= 0 && !isTarget(rulespec[i+1]) {
		if _, ok := t[rulespec[i+1]]; !ok {
			return fmt.Errorf("jump to %s: Couldn't load target", rulespec[i+1])
		}
	}
	if pos == -1 {
		pos = len(c.rules) + 1
	}
	if pos < 1 || pos > len(c.rules)+1 {
		return fmt.Errorf("insert into %s/%s at %d: Index of insertion too big", table, chain, pos)
	}
	c.rules = slices.Insert(c.rules, pos-1, slices.Clone(rulespec))
	f.ns.changed("insert into " + chain)
	return nil
}

func (f *fakeIPT) Delete(table, chain string, rulespec ...string) error {
	if err := f.ns.call(); err != nil {
		return err
	}
	_, c, err := f.chain(table, chain)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(c.rules, func(r []string) bool { return slices.Equal(r, rulespec) })
	if i < 0 {
		return fmt.Errorf("delete from %s/%s: Bad rule (does a matching rule exist in that chain?)", table, chain)
	}
	c.rules = slices.Delete(c.rules, i, i+1)
	f.ns.changed("delete from " + chain)
	return nil
}

func isTarget(s string) bool {
	return slices.Contains([]string{"ACCEPT", "DROP", "RETURN", "REJECT", "LOG", "CT", "SYNPROXY", "MARK", "DNAT", "REDIRECT", "TCPOPTSTRIP"}, s)
}

func referenced(t map[string]*fakeChain, chain string) bool {
	for _, c := range t {
		for _, r := range c.rules {
			if i := slices.Index(r, "-j"); i >= 0 && r[i+1] == chain {
				return true
			}
		}
	}
	return false
}

type fakeSysctl struct{ ns *fakeNS }

func (s fakeSysctl) Get(key string) (string, error) {
	if err := s.ns.call(); err != nil {
		return "", err
	}
	v, ok := s.ns.sysctls[key]
	if !ok {
		return "", fmt.Errorf("open /proc/sys/%s: no such file or directory", key)
	}
	return v, nil
}

func (s fakeSysctl) Set(key, value string) error {
	if err := s.ns.call(); err != nil {
		return err
	}
	if _, ok := s.ns.sysctls[key]; !ok {
		return fmt.Errorf("open /proc/sys/%s: no such file or directory", key)
	}
	s.ns.sysctls[key] = value
	s.ns.changed("set " + key)
	return nil
}
