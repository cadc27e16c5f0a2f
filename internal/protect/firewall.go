package protect

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/xsyn-project/xsyn/internal/hostfw"
	"github.com/xsyn-project/xsyn/spec"
)

// ErrFirewallRefuses: statements xsyn made itself (--port, zero-config) would take the SYNPROXY
// path on ports where the host firewall refuses some clients, and let them in.
var ErrFirewallRefuses = errors.New("the host firewall's INPUT rules refuse some clients there")

// On the SYNPROXY path an accept statement's action replaces the firewall's INPUT verdict:
// SYNPROXY takes the client's ACK in XSYN-IN, ahead of every INPUT rule, and its own SYN to the
// server is accepted in OUTPUT and, through lo, by mark. That is FireHOL's meaning of a
// statement someone wrote. A statement xsyn made up from --port or the listening sockets stands
// for "what this host serves", and must not open a port wider than the firewall does.

// hostFirewall reads the firewall: p.Firewall, or the live ruleset of this namespace.
func (p *Protector) hostFirewall() (hostfw.Ruleset, error) {
	if p.Firewall != nil {
		return p.Firewall()
	}
	return hostfw.Read(hostfw.Exec)
}

// CheckFirewall refuses, with ErrFirewallRefuses, a spec whose implicit statements (spec.Statement
// Implicit: --port, zero-config) take the SYNPROXY path to a port of iface where the host
// firewall's INPUT rules refuse some client, or may for all xsyn can tell (hostfw). The error
// names each port, the rule or policy, and what to do. Statements someone wrote are not judged:
// their action is the verdict. It changes nothing.
func (p *Protector) CheckFirewall(iface string, s spec.Spec) error {
	var implicit []spec.Statement
	for _, st := range s.Statements {
		if st.Implicit && st.Path == spec.PathSynproxy && st.Action.Kind == spec.Accept {
			implicit = append(implicit, st)
		}
	}
	if len(implicit) == 0 {
		return nil
	}
	rs, err := p.hostFirewall()
	if err != nil {
		return fmt.Errorf("%w\nnothing was changed: statements made from --port or the listening sockets take the SYNPROXY path, "+
			"which completes the handshake ahead of the firewall's INPUT rules, and xsyn protects their ports only where those rules let every client in; "+
			"%s", err, firewallFixes(iface, nil))
	}
	type refusal struct {
		fam   spec.Family
		why   string
		ports []uint16
	}
	var refused []*refusal
	for _, st := range implicit {
		dst := st.Match.Dst.Positive(st.Family)
		for _, port := range st.Match.Dport.Ports() {
			v := rs.Judge(int(st.Family), hostfw.SYN{Iface: iface, Port: port, Dst: dst})
			if v.Open {
				continue
			}
			i := slices.IndexFunc(refused, func(r *refusal) bool { return r.fam == st.Family && r.why == v.Why })
			if i < 0 {
				refused = append(refused, &refusal{fam: st.Family, why: v.Why})
				i = len(refused) - 1
			}
			if !slices.Contains(refused[i].ports, port) {
				refused[i].ports = append(refused[i].ports, port)
			}
		}
	}
	if len(refused) == 0 {
		return nil
	}
	var b strings.Builder
	var all []uint16
	for _, r := range refused {
		fmt.Fprintf(&b, "\n  %s port %s: %s", r.fam, portList(r.ports), r.why)
		all = append(all, r.ports...)
	}
	slices.Sort(all)
	all = slices.Compact(all)
	return fmt.Errorf("refusing to protect %s %s of %s on the SYNPROXY path: %w, and SYNPROXY completes the handshake ahead of the INPUT chain, "+
		"where they would no longer judge the client:%s\nnothing was changed; %s",
		plural(len(all), "port", "ports"), portList(all), iface, ErrFirewallRefuses, b.String(), firewallFixes(iface, all))
}

// firewallFixes says what to do about ports the firewall restricts.
func firewallFixes(iface string, ports []uint16) string {
	p := "PORT"
	if len(ports) > 0 {
		p = portList(ports)
	}
	return "to protect them, either write a statement that carries the firewall's restriction (--config FILE with, say, " +
		"'synproxy input inface " + iface + " src ALLOWED dport " + p + " accept': a statement's accept replaces the firewall's decision for its ports), " +
		"or use the handoff path, where the firewall still decides (Linux 6.9+; not --mode netfilter or --path synproxy), " +
		"or open the ports to every client in the firewall"
}

func portList(ports []uint16) string {
	s := make([]string, len(ports))
	for i, p := range ports {
		s[i] = fmt.Sprint(p)
	}
	return strings.Join(s, ",")
}

func plural(n int, one, more string) string {
	if n == 1 {
		return one
	}
	return more
}
