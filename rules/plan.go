// Package rules renders a spec into the netfilter rules and sysctls that let the kernel's
// SYNPROXY complete the handshakes whose SYN-ACK our XDP program sent, and that protect the
// services on their own when XDP is not available (the netfilter fallback). It follows the
// design of FireHOL's synproxy helper.
//
// The path of one protected connection, and the chain (per interface and family) that handles
// each step:
//
//   - the client's SYN is marked untracked in raw PREROUTING (XSYN-RAW-<iface>), so conntrack
//     never holds a half-open entry;
//   - SYNPROXY takes the untracked SYN and the cookie-carrying ACK (INVALID to conntrack) in
//     filter INPUT (XSYN-IN-<iface>) when the client asked for one of this host's addresses,
//     or FORWARD (XSYN-FWD-<iface>) when its packets are routed; a forward statement that
//     translates the destination (dnat to, redirect to) has it in both, since the address it
//     fronts for may be this host's own; every other INVALID packet of the service is dropped
//     there;
//   - SYNPROXY's own SYN-ACK to the client skips conntrack in raw OUTPUT (XSYN-SAK-<iface>),
//     so that a conntrack entry left in TIME_WAIT by an earlier connection of the same ports
//     cannot rewrite it, and leaves through filter OUTPUT (XSYN-OUT-<iface>), which lets it out
//     whatever the rest of the firewall says;
//   - once the cookie is valid SYNPROXY sends a SYN of its own to the server, with the client's
//     address, through the OUTPUT path: mangle OUTPUT (XSYN-MRK-<iface>) marks it with xsyn's
//     mark bits, and strips the timestamp option of the ACK SYNPROXY sends the server once it
//     answers, whose echo the kernel gets wrong (docs/synproxy-timestamps.md); nat OUTPUT (XSYN-NAT-<iface>) applies the statement's DNAT or REDIRECT (the
//     cookie encodes the original destination, so NAT can only happen now) and keeps the marked
//     SYN away from every other NAT rule; filter OUTPUT applies the statement's action (accept,
//     reject, drop, a user chain) with its loglimit; a marked SYN that loops back through lo is
//     accepted in INPUT; one that no statement claimed is logged as an orphan and dropped
//     (XSYN-ORP-<iface>, jumped to after every XSYN-OUT chain).
//
// The namespace's sysctls that SYNPROXY needs are changed once for all interfaces; their
// previous values are kept in the never-jumped-to chain XSYN-SAVED, so they live exactly as
// long as the rules do.
//
// Only statements on the SYNPROXY path (spec.PathSynproxy) get these rules. A statement on the
// socket-handoff path (spec.PathHandoff) needs no netfilter at all: XDP answers its SYN with
// xsyn's own cookie and a TC program hands the valid ACK to the listening socket. A spec with no
// SYNPROXY statement plans nothing (Plan.Empty), and applying that removes whatever xsyn had on
// the interface. A spec with both paths adds one thing for its handoff statements: their flows
// skip conntrack in both directions (XSYN-HFI-<iface>, XSYN-HFO-<iface>; see handoffRules).
//
// Build is pure and returns a Plan; an Applier carries the plan out through small interfaces
// (IPTables, Sysctl) so that every failure path can be tested.
//
// XXX: SYNPROXY has no TTL option: SYN-ACKs sent by the netfilter fallback carry the
// namespace's net.ipv4.ip_default_ttl (IPv6: the route's hop limit), not the spec's TTL.
//
// XXX: raw PREROUTING runs before routing, so a statement's outface cannot be matched there:
// its SYNs are untracked whatever interface they would leave by, and only the SYNPROXY rule in
// FORWARD checks the outface (a FireHOL limitation as well). INPUT cannot match it at all: a
// forward statement with an outface has no SYNPROXY in INPUT and protects routed destinations
// only (see proxyKinds).
package rules

import (
	"errors"
	"fmt"
	"strings"
	"unicode"

	"github.com/xsyn-project/xsyn/spec"
)

// Tables xsyn writes to.
const (
	TableRaw    = "raw"
	TableMangle = "mangle"
	TableNat    = "nat"
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
	// ErrUnsupported: a statement asks for something iptables cannot say.
	ErrUnsupported = errors.New("unsupported statement")
	// ErrPrecondition: the namespace lacks something the plan needs (a user chain, forwarding).
	ErrPrecondition = errors.New("precondition not met")
)

// Plan is everything xsyn installs for one interface: per family the chains and the jumps to
// them, and the namespace-wide sysctls. It is data: Render prints it, an Applier installs it.
//
// A plan without families is empty (Empty): no statement of the spec takes the SYNPROXY path. It
// has no sysctls and no requirements either, and applying it removes the interface's rules.
type Plan struct {
	Iface    string
	Settings spec.Settings
	Families []FamilyPlan // IPv4 first; only families that have statements
	Sysctls  []SysctlSetting
	Requires []Requirement // checked before anything is changed
}

// Empty reports whether the plan installs nothing and changes no sysctl: every statement of its
// spec takes the handoff path. Applier.Apply of an empty plan removes whatever xsyn rules the
// interface has, as Applier.Remove does.
func (p Plan) Empty() bool { return len(p.Families) == 0 }

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
	Why   string // what the chain is for, for explain
	Rules []Rule
}

// Rule is one rule of a chain.
type Rule struct {
	Origin string   // the statement (or setting) the rule comes from; also in its comment
	Why    string   // what the rule does in the SYNPROXY flow, for explain
	Args   []string // rule specification as passed to iptables -A CHAIN, one argument each
}

// Jump sends a builtin chain's packets through an xsyn chain.
type Jump struct {
	Table    string
	From     string // builtin chain, e.g. PREROUTING
	To       string // xsyn chain
	Position int    // 1-based position in From of a first install
	// After, when set, is the tag of a chain kind whose jumps (of every interface) this one must
	// follow in From: a first install goes right after the last of them instead of at Position.
	After string
}

// Args is the jump's rule specification.
func (j Jump) Args() []string { return []string{"-j", j.To} }

// SysctlSetting is a namespace sysctl the rules need.
type SysctlSetting struct {
	Key   string // dotted, e.g. net.netfilter.nf_conntrack_tcp_loose
	Value string
	Why   string
	// Default is the kernel's own value, recorded as the original instead of the current one
	// when xsyn's record was lost while its rules stayed (a firewall reload deleted SavedChain):
	// the current value is then most likely xsyn's (see setSysctls).
	Default string
}

// Path is the setting's file under /proc/sys.
func (s SysctlSetting) Path() string {
	return "/proc/sys/" + sysctlFile(s.Key)
}

// Requirement is something the namespace must already have for the plan to work; xsyn checks it
// and does not create it (a user chain is the user's; turning routing on is a policy decision).
type Requirement struct {
	Origin string
	Family spec.Family
	Chain  string // a user chain that must exist in the filter table, or
	Sysctl string // a sysctl that must have Value
	Value  string
	Why    string
}

func (r Requirement) String() string {
	if r.Chain != "" {
		return fmt.Sprintf("%s filter chain %s must exist (%s)", r.Family, r.Chain, r.Why)
	}
	return fmt.Sprintf("sysctl %s must be %s (%s)", r.Sysctl, r.Value, r.Why)
}

// Family returns the plan of one family, if the spec has statements of that family.
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
	tag   string // RAW in XSYN-RAW-eth0; at most 3 characters, so staging names fit
	table string
	hook  string // builtin chain that jumps to it
	after string // tag of the kind whose jumps this kind's jump follows
	why   string
	// handoff: the chain serves statements on the handoff path, not SYNPROXY.
	handoff bool
}

var (
	kindRaw = chainKind{tag: "RAW", table: TableRaw, hook: "PREROUTING",
		why: "client SYNs of protected services skip conntrack: no half-open entries, SYNPROXY answers them"}
	kindMark = chainKind{tag: "MRK", table: TableMangle, hook: "OUTPUT",
		why: "mark the SYN that SYNPROXY sends to the server once the client's cookie is valid; strip the timestamp option of SYNPROXY's ACK to the server"}
	kindNat = chainKind{tag: "NAT", table: TableNat, hook: "OUTPUT",
		why: "destination NAT of SYNPROXY's marked SYN; keeps it away from every other NAT rule"}
	kindIn = chainKind{tag: "IN", table: TableFilter, hook: "INPUT",
		why: "SYNPROXY for clients of this host's own addresses; loopback policy"}
	kindFwd = chainKind{tag: "FWD", table: TableFilter, hook: "FORWARD",
		why: "SYNPROXY for clients whose packets this host routes"}
	kindOut = chainKind{tag: "OUT", table: TableFilter, hook: "OUTPUT",
		why: "let SYNPROXY's SYN-ACK out; apply each statement's action to SYNPROXY's SYN towards the server"}
	kindOrphan = chainKind{tag: "ORP", table: TableFilter, hook: "OUTPUT", after: "OUT",
		why: "a marked SYN that no statement claimed: log it and drop it"}
	// The handoff path's flows, in a plan that also has SYNPROXY statements (handoffRules). The
	// CT targets of RAW and HFI do not end the chain, so their order does not matter; but HFI
	// follows RAW whether or not the interface had rules before, so that a plan (or a snapshot)
	// applied again gives the same jumps.
	kindHandoffIn = chainKind{tag: "HFI", table: TableRaw, hook: "PREROUTING", after: "RAW", handoff: true,
		why: "handed-off connections skip conntrack, client to server: nf_conntrack_tcp_loose=0 would make them INVALID"}
	kindHandoffOut = chainKind{tag: "HFO", table: TableRaw, hook: "OUTPUT", handoff: true,
		why: "handed-off connections skip conntrack, server to client"}
	// SYNPROXY's cookie SYN-ACK, in raw OUTPUT. Its jump follows HFO's, for the same reason
	// HFI's follows RAW's.
	kindSynack = chainKind{tag: "SAK", table: TableRaw, hook: "OUTPUT", after: "HFO",
		why: "SYNPROXY's cookie SYN-ACK skips conntrack: a TIME_WAIT entry of the same addresses and ports would shift its sequence number (docs/synproxy-timestamps.md)"}
)

// chainKinds in the order packets meet them.
var chainKinds = []chainKind{kindRaw, kindHandoffIn, kindHandoffOut, kindSynack, kindMark, kindNat, kindIn, kindFwd, kindOut, kindOrphan}

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
		Key:     "net.netfilter.nf_conntrack_tcp_loose",
		Value:   "0",
		Why:     "loose tracking would take the client's ACK as ESTABLISHED, and it would never reach SYNPROXY",
		Default: "1",
	},
	{
		Key:     "net.ipv4.tcp_syncookies",
		Value:   "1",
		Why:     "the listener's own SYN cookies are the last line behind SYNPROXY",
		Default: "1",
	},
}

// Build plans the rules protecting spec s on interface iface: those of its statements on the
// SYNPROXY path. It has no side effects. A spec whose statements all take the handoff path gives
// an empty plan (Empty).
func Build(iface string, s spec.Spec) (Plan, error) {
	if err := checkIface(iface); err != nil {
		return Plan{}, fmt.Errorf("plan rules: %w", err)
	}
	if err := s.Validate(); err != nil {
		return Plan{}, fmt.Errorf("plan rules for %s: %w", iface, err)
	}
	if len(s.Statements) == 0 {
		return Plan{}, fmt.Errorf("plan rules for %s: %w", iface, spec.ErrNoServices)
	}
	if err := s.Settings.Validate(); err != nil {
		return Plan{}, fmt.Errorf("plan rules for %s: %w", iface, err)
	}
	p := Plan{Iface: iface, Settings: s.Settings}
	if !s.HasPath(spec.PathSynproxy) {
		return p, nil
	}
	p.Sysctls = append([]SysctlSetting(nil), sysctls...)
	for _, f := range []spec.Family{spec.IPv4, spec.IPv6} {
		var proxied, handedOff []spec.Statement
		for _, st := range s.Statements {
			switch {
			case st.Family != f:
			case st.Path == spec.PathHandoff:
				handedOff = append(handedOff, st)
			default:
				proxied = append(proxied, st)
			}
		}
		if len(proxied) == 0 && len(handedOff) == 0 {
			continue
		}
		fp, err := planFamily(iface, f, s.Settings, proxied, handedOff)
		if err != nil {
			return Plan{}, fmt.Errorf("plan rules for %s: %w", iface, err)
		}
		p.Families = append(p.Families, fp)
		p.Sysctls = append(p.Sysctls, familySysctls(iface, f, proxied)...)
		p.Requires = append(p.Requires, requirements(f, proxied)...)
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

// check makes sure a plan only names chains xsyn owns for its interface, so that an Applier
// can never be steered into foreign chains.
func (p Plan) check() error {
	if err := checkIface(p.Iface); err != nil {
		return err
	}
	if p.Empty() && (len(p.Sysctls) > 0 || len(p.Requires) > 0) {
		return fmt.Errorf("%w: sysctls or requirements without rules for any family", ErrBadPlan)
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
			if planned[j.To] != j.Table || j.Position < 1 || !isBuiltin(j.Table, j.From) || !knownTag(j.After) {
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

func knownTag(tag string) bool {
	if tag == "" {
		return true
	}
	for _, k := range chainKinds {
		if k.tag == tag {
			return true
		}
	}
	return false
}
