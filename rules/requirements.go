package rules

import (
	"strings"

	"github.com/xsyn-project/xsyn/spec"
)

// familySysctls are the per-family settings the statements need.
func familySysctls(iface string, f spec.Family, stmts []spec.Statement) []SysctlSetting {
	if f != spec.IPv4 {
		return nil
	}
	for _, st := range stmts {
		if st.Action.Kind == spec.Redirect {
			return []SysctlSetting{routeLocalnet(iface)}
		}
	}
	return nil
}

// routeLocalnet is the setting IPv4 REDIRECT needs on the interface.
func routeLocalnet(iface string) SysctlSetting {
	return SysctlSetting{
		Key:   "net.ipv4.conf." + strings.ReplaceAll(iface, ".", "/") + ".route_localnet",
		Value: "1",
		Why: "REDIRECT sends SYNPROXY's SYN to 127.0.0.1; the server answers from 127.0.0.1 and the " +
			"route back to the client through " + iface + " needs route_localnet (the strict loopback policy drops what else it would let in)",
		Default: "0",
	}
}

// requirements are what the statements need and xsyn does not create.
func requirements(f spec.Family, stmts []spec.Statement) []Requirement {
	var out []Requirement
	forwarding := false
	for _, st := range stmts {
		if st.Action.Kind == spec.Chain {
			out = append(out, Requirement{Origin: st.Origin(), Family: f, Chain: st.Action.Chain,
				Why: "the statement's action jumps to it"})
		}
		if !serverLocal(st) && !forwarding {
			forwarding = true
			key := "net.ipv4.ip_forward"
			if f == spec.IPv6 {
				key = "net.ipv6.conf.all.forwarding"
			}
			out = append(out, Requirement{Origin: st.Origin(), Family: f, Sysctl: key, Value: "1",
				Why: "the server is behind this host: the client's and the server's packets are routed"})
		}
	}
	return out
}
