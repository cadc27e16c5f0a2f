// Package rules renders a spec into the netfilter rules and sysctls that let the kernel's
// SYNPROXY complete the handshakes whose SYN-ACK our XDP program sent, and that protect the
// services on their own when XDP is not available (the netfilter fallback).
//
// Per interface and family it owns two chains: XSYN-RAW-<iface> in the raw table, jumped to
// from PREROUTING, marks the services' SYNs untracked; XSYN-IN-<iface> in the filter table,
// jumped to from INPUT, hands untracked SYNs and the INVALID ACKs answering a cookie to
// SYNPROXY and drops every other INVALID packet. The namespace's sysctls that SYNPROXY needs
// are changed once for all interfaces; their previous values are kept in the never-jumped-to
// chain XSYN-SAVED, so they live exactly as long as the rules do.
//
// Build is pure and returns a Plan; an Applier carries the plan out through small interfaces
// (IPTables, Sysctl) so that every failure path can be tested.
//
// XXX: SYNPROXY has no TTL option: SYN-ACKs sent by the netfilter fallback carry the
// namespace's net.ipv4.ip_default_ttl (IPv6: the route's hop limit), not Service.TTL.
package rules

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode"

	"github.com/xsyn-project/xsyn/spec"
)

// Tables xsyn writes to.
const (
	TableRaw    = "raw"
	TableFilter = "filter"
)

// ChainPrefix starts the name of every chain xsyn owns; no other chain is ever changed.
const ChainPrefix = "XSYN-"

// SavedChain is the filter-table (IPv4) chain that keeps the sysctl values xsyn replaced. It is
// never jumped to.
const SavedChain = ChainPrefix + "SAVED"

// MaxChainName is the longest chain name iptables accepts (XT_EXTENSION_MAXNAMELEN - 1).
const MaxChainName = 28

// MaxIfaceName is the longest Linux interface name (IFNAMSIZ - 1).
const MaxIfaceName = 15

// Sentinel errors, checked with errors.Is.
var (
	// ErrBadInterfaceName: the name cannot be a Linux interface or cannot be used by iptables
	// in a chain name or an -i match.
	ErrBadInterfaceName = errors.New("bad interface name")
	// ErrBadPlan: a Plan not made by Build (or altered since) that would touch chains xsyn does
	// not own.
	ErrBadPlan = errors.New("bad plan")
)

// Plan is everything xsyn installs for one interface: per family the chains and the jumps to
// them, and the namespace-wide sysctls. It is data: Render prints it, an Applier installs it.
type Plan struct {
	Iface    string
	Families []FamilyPlan // IPv4 first; only families that have services
	Sysctls  []SysctlSetting
}

// FamilyPlan is what one family's iptables binary (iptables or ip6tables) installs.
type FamilyPlan struct {
	Family spec.Family
	Chains []Chain // in installation order
	Jumps  []Jump  // inserted after every chain is complete
}

// Chain is a chain xsyn owns and its rules, in order.
type Chain struct {
	Table string
	Name  string
	Rules []Rule
}

// Rule is one rule of a chain.
type Rule struct {
	Service string   // the spec service the rule comes from (also in its comment)
	Args    []string // rule specification as passed to iptables -A CHAIN, one argument each
}

// Jump sends a builtin chain's packets through an xsyn chain.
type Jump struct {
	Table    string
	From     string // builtin chain, e.g. PREROUTING
	To       string // xsyn chain
	Position int    // 1-based position in From of a first install
}

// Args is the jump's rule specification.
func (j Jump) Args() []string { return []string{"-j", j.To} }

// SysctlSetting is a namespace sysctl the rules need.
type SysctlSetting struct {
	Key   string // dotted, e.g. net.netfilter.nf_conntrack_tcp_loose
	Value string
	Why   string
}

// Path is the setting's file under /proc/sys.
func (s SysctlSetting) Path() string {
	return "/proc/sys/" + strings.ReplaceAll(s.Key, ".", "/")
}

// Family returns the plan of one family, if the spec has services of that family.
func (p Plan) Family(f spec.Family) (FamilyPlan, bool) {
	for _, fp := range p.Families {
		if fp.Family == f {
			return fp, true
		}
	}
	return FamilyPlan{}, false
}

// chainKind is one kind of per-interface chain. The planner and the applier both work from
// this table: the planner to generate rules, the applier to recognise xsyn's chains and the
// builtin chain that jumps to them.
type chainKind struct {
	tag   string // RAW in XSYN-RAW-eth0
	table string
	hook  string // builtin chain that jumps to it
	rules func(iface string, svc spec.Service) [][]string
}

var chainKinds = []chainKind{
	{tag: "RAW", table: TableRaw, hook: "PREROUTING", rules: notrackRules},
	{tag: "IN", table: TableFilter, hook: "INPUT", rules: synproxyRules},
}

// stagingTag marks the chain built while the interface's current chain still serves:
// XSYN-NEW-RAW-eth0 (13 + 15 characters, exactly MaxChainName).
const stagingTag = "NEW-"

func (k chainKind) name(iface string) string { return ChainPrefix + k.tag + "-" + iface }

func (k chainKind) stagingName(iface string) string {
	return ChainPrefix + stagingTag + k.tag + "-" + iface
}

// ownedChain is what a chain name says about the xsyn chain it names.
type ownedChain struct {
	kind    chainKind
	iface   string
	staging bool
}

// parseChain recognises the per-interface chains of xsyn (not SavedChain).
func parseChain(name string) (ownedChain, bool) {
	rest, ok := strings.CutPrefix(name, ChainPrefix)
	if !ok {
		return ownedChain{}, false
	}
	rest, staging := strings.CutPrefix(rest, stagingTag)
	for _, k := range chainKinds {
		if iface, ok := strings.CutPrefix(rest, k.tag+"-"); ok && checkIface(iface) == nil {
			return ownedChain{kind: k, iface: iface, staging: staging}, true
		}
	}
	return ownedChain{}, false
}

// sysctls are the namespace settings SYNPROXY needs, whatever the spec.
var sysctls = []SysctlSetting{
	{
		Key:   "net.netfilter.nf_conntrack_tcp_loose",
		Value: "0",
		Why:   "loose tracking would take the client's ACK as ESTABLISHED, and it would never reach SYNPROXY",
	},
	{
		Key:   "net.ipv4.tcp_syncookies",
		Value: "1",
		Why:   "the listener's own SYN cookies are the last line behind SYNPROXY",
	},
}

// Build plans the rules protecting spec s on interface iface. It has no side effects.
func Build(iface string, s spec.Spec) (Plan, error) {
	if err := checkIface(iface); err != nil {
		return Plan{}, fmt.Errorf("plan rules: %w", err)
	}
	if err := s.Validate(); err != nil {
		return Plan{}, fmt.Errorf("plan rules for %s: %w", iface, err)
	}
	p := Plan{Iface: iface, Sysctls: append([]SysctlSetting(nil), sysctls...)}
	for _, f := range []spec.Family{spec.IPv4, spec.IPv6} {
		svcs := s.ByFamily(f)
		if len(svcs) == 0 {
			continue
		}
		fp := FamilyPlan{Family: f}
		for _, k := range chainKinds {
			c := Chain{Table: k.table, Name: k.name(iface)}
			for _, svc := range svcs {
				for _, args := range k.rules(iface, svc) {
					c.Rules = append(c.Rules, Rule{Service: svc.String(), Args: args})
				}
			}
			fp.Chains = append(fp.Chains, c)
			fp.Jumps = append(fp.Jumps, Jump{Table: k.table, From: k.hook, To: c.Name, Position: 1})
		}
		p.Families = append(p.Families, fp)
	}
	return p, nil
}

// checkIface accepts the names that are valid Linux interface names and that iptables takes
// literally both in a chain name and after -i. It refuses whitespace (no chain name may hold
// it), '+' (iptables' -i wildcard) and, to keep names unambiguous in rules and in
// iptables-save output, everything but letters, digits, '.', '_' and '-'.
func checkIface(iface string) error {
	bad := func(why string) error {
		return fmt.Errorf("%w %q: %s", ErrBadInterfaceName, iface, why)
	}
	switch {
	case iface == "":
		return bad("empty")
	case len(iface) > MaxIfaceName:
		return bad(fmt.Sprintf("%d characters, Linux allows at most %d", len(iface), MaxIfaceName))
	case iface == "." || iface == "..":
		return bad("not a valid Linux interface name")
	}
	for _, r := range iface {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
		case r == '+':
			return bad("'+' is a wildcard in iptables -i")
		case unicode.IsSpace(r):
			return bad("iptables chain names cannot hold whitespace")
		default:
			return bad(fmt.Sprintf("character %q: xsyn takes only letters, digits, '.', '_' and '-' in interface names it puts into iptables rules", r))
		}
	}
	return nil
}

// match is the part every rule of a service shares: destination, interface, TCP port. The
// order is the one iptables-save prints, so rendered rules read like the live ones.
func match(iface string, svc spec.Service) []string {
	var args []string
	if svc.Dst.Bits() != 0 {
		args = append(args, "-d", svc.Dst.String())
	}
	return append(args, "-i", iface, "-p", "tcp", "-m", "tcp", "--dport", strconv.Itoa(int(svc.Port)))
}

func comment(svc spec.Service) []string {
	return []string{"-m", "comment", "--comment", "xsyn: " + svc.String()}
}

// notrackRules keep the service's SYNs out of conntrack: SYNPROXY answers untracked SYNs
// itself, and conntrack does not fill with half-open entries.
func notrackRules(iface string, svc spec.Service) [][]string {
	r := match(iface, svc)
	r = append(r, "--tcp-flags", "FIN,SYN,RST,ACK", "SYN")
	r = append(r, comment(svc)...)
	return [][]string{append(r, "-j", "CT", "--notrack")}
}

// synproxyRules hand the untracked SYN and the cookie-carrying ACK (INVALID, as conntrack never
// saw the handshake) to SYNPROXY with the spec's options, then drop every other INVALID packet.
func synproxyRules(iface string, svc spec.Service) [][]string {
	o := svc.Options
	proxy := append(match(iface, svc), "-m", "conntrack", "--ctstate", "INVALID,UNTRACKED")
	proxy = append(proxy, comment(svc)...)
	proxy = append(proxy, "-j", "SYNPROXY")
	if o.SACK {
		proxy = append(proxy, "--sack-perm")
	}
	if o.Timestamps {
		proxy = append(proxy, "--timestamp")
	}
	proxy = append(proxy, "--wscale", strconv.Itoa(int(o.WScale)), "--mss", strconv.Itoa(int(o.MSS)))
	if o.ECN {
		proxy = append(proxy, "--ecn")
	}
	drop := append(match(iface, svc), "-m", "conntrack", "--ctstate", "INVALID")
	drop = append(drop, comment(svc)...)
	drop = append(drop, "-j", "DROP")
	return [][]string{proxy, drop}
}

// check makes sure a plan only names chains xsyn owns for its interface, so that an Applier
// can never be steered into foreign chains.
func (p Plan) check() error {
	if err := checkIface(p.Iface); err != nil {
		return err
	}
	if len(p.Families) == 0 {
		return fmt.Errorf("%w: no rules for any family", ErrBadPlan)
	}
	for _, fp := range p.Families {
		if fp.Family != spec.IPv4 && fp.Family != spec.IPv6 {
			return fmt.Errorf("%w: %s", ErrBadPlan, fp.Family)
		}
		planned := map[string]string{} // chain -> table
		for _, c := range fp.Chains {
			oc, ok := parseChain(c.Name)
			if !ok || oc.staging || oc.iface != p.Iface || oc.kind.table != c.Table {
				return fmt.Errorf("%w: chain %s/%s is not an xsyn chain of %s", ErrBadPlan, c.Table, c.Name, p.Iface)
			}
			if _, dup := planned[c.Name]; dup {
				return fmt.Errorf("%w: chain %s/%s is planned twice", ErrBadPlan, c.Table, c.Name)
			}
			planned[c.Name] = c.Table
		}
		for _, j := range fp.Jumps {
			if planned[j.To] != j.Table || j.Position < 1 || !isBuiltin(j.Table, j.From) {
				return fmt.Errorf("%w: jump %s/%s -> %s", ErrBadPlan, j.Table, j.From, j.To)
			}
		}
	}
	for _, s := range p.Sysctls {
		if err := checkSysctl(s.Key, s.Value); err != nil {
			return fmt.Errorf("%w: %w", ErrBadPlan, err)
		}
	}
	return nil
}

var builtinChains = map[string][]string{
	TableRaw:    {"PREROUTING", "OUTPUT"},
	TableFilter: {"INPUT", "FORWARD", "OUTPUT"},
	"mangle":    {"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"},
	"nat":       {"PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"},
}

func isBuiltin(table, chain string) bool {
	for _, c := range builtinChains[table] {
		if c == chain {
			return true
		}
	}
	return false
}
