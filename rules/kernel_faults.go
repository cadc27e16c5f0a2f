package rules

import "github.com/xsyn-project/xsyn/spec"

// Two faults of the kernel's SYNPROXY (nf_synproxy_core.c) that xsyn works around with rules;
// docs/synproxy-timestamps.md has the analysis, the captures and the fixes suggested upstream.

// stripServerACKTimestamp adds, to the mangle OUTPUT chain, the rule that takes the timestamp
// option out of SYNPROXY's ACK to the server; match is the statement's addresses, interfaces
// and ports, and the ACK's flags.
//
// That ACK completes the server's handshake and echoes the server's timestamp shifted twice:
// SYNPROXY writes it in the server's clock already, and its own POSTROUTING hook shifts it
// again. Linux 6.15 and later reject that echo (TcpExtTSEcrRejected) and the connection's first
// byte waits a second for the server's retransmitted SYN-ACK. Without the option the echo is not
// checked and the connection keeps timestamps (SYN and SYN-ACK agreed them). Mangle OUTPUT runs
// before that hook and before NAT. Only SYNPROXY sends such an ACK: no socket, the connection's
// original direction (its ACK to the client is REPLY and right), the client's address as source
// (never one of this host's, which every connection this host opens has), the original
// destination.
//
// XXX: RFC 7323 lets a receiver drop segments without the option once timestamps were agreed
// (FreeBSD does unless net.inet.tcp.tolerate_missing_ts=1): such a server still waits for its
// SYN-ACK retransmission, as every server did before.
func stripServerACKTimestamp(b *chainBuilder, origin string, match [][]string) {
	b.add(kindMark, origin, "strip the timestamp option (kind 8) from SYNPROXY's ACK to the server: its echo is double-shifted and Linux 6.15+ rejects it, stalling the connection 1 s",
		product(match, [][]string{{"-m", "owner", "!", "--socket-exists", "-m", "conntrack", "--ctdir", "ORIGINAL",
			"-m", "addrtype", "!", "--src-type", "LOCAL", "-j", "TCPOPTSTRIP", "--strip-options", "8"}})...)
}

// untrackSynack adds, to the raw OUTPUT chain, the rule that takes SYNPROXY's cookie SYN-ACK
// out of conntrack; match is the SYN-ACK's addresses, ports and flags (the statement's match,
// reversed).
//
// SYNPROXY sends the SYN-ACK with the SYN's conntrack reference, none for the untracked SYN, so
// conntrack looks its addresses and ports up: when an earlier connection of the same client port
// left an entry in TIME_WAIT (for 120 s), the SYN-ACK is taken for a packet of that connection,
// whose sequence adjustment and timestamp offset rewrite the cookie. The client's ACK then
// carries a cookie SYNPROXY never sent, and the client hangs. Behind XDP the SYN-ACK never
// passes OUTPUT. Matched exactly: no socket, and window 0, which SYNPROXY writes and no TCP
// stack sends in a SYN-ACK. A server on this host answering SYNPROXY's SYN with a syncookie of
// its own (its SYN queue full) sends a SYN-ACK without a socket too, and that one must stay
// tracked for SYNPROXY's hook to complete the connection.
func untrackSynack(b *chainBuilder, origin string, f spec.Family, match [][]string) {
	b.add(kindSynack, origin, "SYNPROXY's cookie SYN-ACK (no socket, window 0) skips conntrack: a TIME_WAIT entry of a client reusing its port would rewrite its cookie",
		product(match, [][]string{{"-m", "owner", "!", "--socket-exists", "-m", "u32", "--u32", zeroWindow(f), "-j", "CT", "--notrack"}})...)
}

// zeroWindow is the u32 test, as iptables-save prints it, that a TCP segment's window is 0: at
// byte 12 of the TCP header (behind the IPv4 header's length, or IPv6's 40 bytes) the data
// offset and flags, then the window. SYNPROXY's SYN-ACK has no IPv6 extension header.
func zeroWindow(f spec.Family) string {
	if f == spec.IPv6 {
		return "0x34&0xffff=0x0"
	}
	return "0x0>>0x16&0x3c@0xc&0xffff=0x0"
}
