package protect

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/xsyn-project/xsyn/internal/host"
	"github.com/xsyn-project/xsyn/rules"
	"github.com/xsyn-project/xsyn/spec"
)

// Untracked lists the connections that protecting iface as s says would cut: established
// connections to a server of this host that a statement covers and that conntrack does not
// track. Their next segment has no conntrack entry and no valid cookie, so XDP (or SYNPROXY)
// takes it for a forged ACK and drops it: on a host without a stateful firewall, the SSH
// session of the operator running attach. An interface with xsyn's rules has none (they made
// conntrack track every connection since). Handoff statements cut nothing.
func (p *Protector) Untracked(iface string, s spec.Spec) ([]host.Conn, error) {
	// Rules of xsyn's on the interface have made conntrack track every connection since they
	// went in. An attachment without them (every statement on the handoff path) has not.
	if on, err := p.Rules.Installed(iface); err != nil || on {
		return nil, err
	}
	link, err := host.Link(iface)
	if err != nil {
		return nil, err
	}
	conns, err := host.EstablishedConns()
	if err != nil {
		return nil, err
	}
	// Handoff statements judge segments by their socket, which an established connection has:
	// they cut nothing, where the kernel has the handoff (else they will take SYNPROXY's path).
	handoff := p.probeHandoff() == nil
	covers := func(st spec.Statement, c host.Conn) bool {
		return !(handoff && st.Path == spec.PathHandoff) && coversLocal(st, c)
	}
	var out []host.Conn
	for _, c := range conns {
		if !slices.ContainsFunc(s.Statements, func(st spec.Statement) bool { return covers(st, c) }) {
			continue
		}
		// Only a connection whose peer is reached through iface meets XDP and the rules there
		// (-i iface): one to this host's own address runs over lo.
		if i, ok := host.RouteIndex(c.Remote.Addr()); ok && i != link.Attrs().Index {
			continue
		}
		tracked, err := host.Conntracked(c)
		if err != nil {
			return nil, err
		}
		if !tracked {
			out = append(out, c)
		}
	}
	return out, nil
}

// CheckUntracked refuses, with an *UntrackedError, to protect iface as s says where that would cut
// established connections conntrack does not track (Untracked). It changes nothing.
func (p *Protector) CheckUntracked(iface string, s spec.Spec) error {
	conns, err := p.Untracked(iface, s)
	if err != nil {
		return err
	}
	if len(conns) > 0 {
		return &UntrackedError{Conns: conns}
	}
	return nil
}

// UntrackedError refuses to cut connections the operator may be using, saying how to keep them.
type UntrackedError struct{ Conns []host.Conn }

func (e *UntrackedError) Error() string {
	conns := e.Conns
	var b strings.Builder
	fmt.Fprintf(&b, "refusing to cut %d established connection(s) to protected services that conntrack does not track:", len(conns))
	for i, c := range conns {
		if i == 5 {
			fmt.Fprintf(&b, "\n  ... and %d more", len(conns)-i)
			break
		}
		fmt.Fprintf(&b, "\n  %s", c)
	}
	b.WriteString("\ntheir next segment would have no conntrack entry and no valid cookie, and be dropped as a forged ACK (your SSH session, if it is one of them); nothing was changed" +
		"\nmake conntrack track them first: iptables -I INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT (ip6tables too), then traffic on each (docs/operator-guide.md, Before you attach over SSH); or cut them: --cut-untracked")
	return b.String()
}

// coversLocal reports whether st's SYNPROXY rules in INPUT, and so XDP, see c's packets.
func coversLocal(st spec.Statement, c host.Conn) bool {
	if st.Family == spec.IPv4 != c.Local.Addr().Is4() || !rules.ProxiesLocal(st) {
		return false
	}
	m := st.Match
	inPorts := func(ps spec.PortSet, port uint16) bool {
		return slices.ContainsFunc(ps.Positive(), func(r spec.PortRange) bool { return r.Lo <= port && port <= r.Hi })
	}
	inAddrs := func(as spec.AddrSet, a netip.Addr) bool {
		return slices.ContainsFunc(as.Positive(st.Family), func(p netip.Prefix) bool { return p.Contains(a) })
	}
	return inAddrs(m.Dst, c.Local.Addr()) && inPorts(m.Dport, c.Local.Port()) &&
		inAddrs(m.Src, c.Remote.Addr()) && inPorts(m.Sport, c.Remote.Port())
}
