package rules

import (
	"slices"
	"strconv"

	"github.com/xsyn-project/xsyn/spec"
)

// proxyKinds are the chains where SYNPROXY meets the client's packets. An input statement's
// client asks for one of this host's addresses: INPUT. A forward statement's packets are
// routed: FORWARD. But when a forward statement's action moves the connection elsewhere (dnat
// to, redirect to), the address the client asks for is only the front the server hides
// behind, and it may well be this host's own: FireHOL's "synproxy forward inface dsl0 dst
// YOUR_INTERNET_IP dport 80 dnat to ...". The client's packets then pass INPUT, so such a
// statement gets SYNPROXY in both chains and works whichever the address is. Everything
// after the handshake (mark, NAT, action, the server's INVALID packets) is on the OUTPUT
// path or matched by the server's address, the same either way.
//
// XXX: INPUT cannot match -o, and a packet for this host leaves by no interface, so a forward
// statement with an outface gets SYNPROXY in FORWARD only: it protects routed destinations
// alone (SYNPROXY's SYN to one of this host's addresses would not be marked either: mangle
// OUTPUT sees it leave by lo, not by the outface). Its SYNs to this host's addresses are still
// untracked in raw PREROUTING, which cannot match the outface, and then meet no SYNPROXY:
// those connections fail. docs/config.md tells users to leave outface out for them.
func proxyKinds(st spec.Statement) []chainKind {
	if st.Direction == spec.Input {
		return []chainKind{kindIn}
	}
	switch st.Action.Kind {
	case spec.DNAT, spec.Redirect:
		if st.Match.Outface.Any() {
			return []chainKind{kindFwd, kindIn}
		}
	}
	return []chainKind{kindFwd}
}

// ProxiesLocal reports whether the statement has SYNPROXY in INPUT, where the client's packets
// go when the address it asks for is one of this host's own (see proxyKinds).
func ProxiesLocal(st spec.Statement) bool {
	return slices.Contains(proxyKinds(st), kindIn)
}

// proxyRules add to chain kind k the rules that hand the client's packets of statement st to
// SYNPROXY; match is the address and interface part of the client's packets, before -p tcp,
// and neg the items of its negated lists (see addNeg).
func proxyRules(b *chainBuilder, k chainKind, st spec.Statement, match, sport, dport, neg [][]string) error {
	origin := st.Origin()
	var err error
	add := func(why string, rules ...[]string) {
		if err == nil {
			err = b.addNeg(k, origin, why, neg, rules...)
		}
	}
	why := func(s string) string {
		if k == kindIn && st.Direction == spec.Forward {
			return s + "; in INPUT as well as FORWARD: the address the client asks for, translated by the action, may be this host's own"
		}
		return s
	}
	if st.Action.Kind == spec.Reject {
		// A reset for SYNPROXY's SYN to the server would carry sequence number 0, outside the
		// window of the client's (already established) connection: the client would ignore it
		// and time out. So reject answers the client's ACK itself: the reset takes its sequence
		// number from the ACK and the client sees ECONNRESET. With XDP in front only ACKs with
		// a valid cookie get here; without it any ACK would, so the resets are rate-limited.
		add(why("SYNPROXY answers the untracked SYN with a cookie SYN-ACK"),
			product(match, tcp(sport, dport, nil),
				[][]string{append([]string{"-m", "conntrack", "--ctstate", "UNTRACKED", "-j", "SYNPROXY"}, synproxyOptions(st.Options)...)})...)
		if st.LogLimit != "" {
			add(why("loglimit: log the client that is rejected (rate-limited)"),
				product(match, tcp(sport, dport, []string{"--tcp-flags", "SYN,RST,ACK", "ACK"}),
					[][]string{{"-m", "conntrack", "--ctstate", "INVALID", "-m", "limit", "--limit", "1/sec",
						"-j", "LOG", "--log-prefix", st.LogLimit + " "}})...)
		}
		add(why("reject: the client's ACK (its cookie checked by XDP when XDP is on) gets a reset it accepts; rate-limited, since without XDP forged ACKs get here too"),
			product(match, tcp(sport, dport, []string{"--tcp-flags", "SYN,RST,ACK", "ACK"}),
				[][]string{{"-m", "conntrack", "--ctstate", "INVALID", "-m", "limit", "--limit", "100/sec", "--limit-burst", "200",
					"-j", "REJECT", "--reject-with", "tcp-reset"}})...)
	} else {
		add(why("SYNPROXY answers the untracked SYN with a cookie SYN-ACK, and validates the client's ACK (INVALID to conntrack)"),
			product(match, tcp(sport, dport, nil),
				[][]string{append([]string{"-m", "conntrack", "--ctstate", "INVALID,UNTRACKED", "-j", "SYNPROXY"}, synproxyOptions(st.Options)...)})...)
	}
	add(why("any other packet of the service that conntrack does not know is dropped (forged ACKs, stray RSTs)"),
		product(match, tcp(sport, dport, nil),
			[][]string{{"-m", "conntrack", "--ctstate", "INVALID", "-j", "DROP"}})...)
	return err
}

func synproxyOptions(o spec.TCPOptions) []string {
	var args []string
	if o.SACK {
		args = append(args, "--sack-perm")
	}
	if o.Timestamps {
		args = append(args, "--timestamp")
	}
	args = append(args, "--wscale", strconv.Itoa(int(o.WScale)), "--mss", strconv.Itoa(int(o.MSS)))
	if o.ECN {
		args = append(args, "--ecn")
	}
	return args
}
