package protect

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/xsyn-project/xsyn/internal/host"
	"github.com/xsyn-project/xsyn/loader"
	"github.com/xsyn-project/xsyn/spec"
)

// ChoosePaths is the path each statement of s takes on iface, as Apply decides it: handoff
// statements move to the SYNPROXY path where the handoff cannot run (--mode netfilter, a kernel
// before 6.9, a program attached without it) or cannot serve the server (an MPTCP listener),
// with warnings that say so. Statements that demand the handoff (path handoff) make that an
// error. Where xsyn is attached to iface already, its program says whether the handoff runs, so a
// reload needs no BPF capability to probe the kernel again. It changes nothing.
func (p *Protector) ChoosePaths(iface string, s spec.Spec, mode loader.Mode) (spec.Spec, []string, error) {
	if !s.HasPath(spec.PathHandoff) {
		return s, nil, nil
	}
	var why string
	if mode == ModeNetfilter {
		why = "--mode netfilter: no XDP program answers SYNs with xsyn's cookie"
	} else if cur, err := p.attached(iface); cur != nil {
		if !cur.Handoff {
			why = fmt.Sprintf("the program attached to %s was loaded without the handoff (an older xsyn, or an older kernel): detach and attach again to use it", iface)
		}
		cur.Close()
	} else if err != nil {
		return s, nil, err
	} else if err := p.probeHandoff(); err != nil {
		if !errors.Is(err, loader.ErrFeatureMissing) {
			return s, nil, err
		}
		why = fmt.Sprintf("the kernel lacks the socket handoff (%v)", err)
	}
	if why != "" {
		out, err := s.WithoutHandoff(why)
		if err != nil {
			return s, nil, err
		}
		return out, []string{"socket handoff unavailable, statements that would take it use netfilter SYNPROXY: " + why}, nil
	}
	s, warnings, err := p.avoidStackRefusals(s)
	if err != nil {
		return s, nil, err
	}
	s, more, err := p.avoidMPTCP(s)
	return s, append(warnings, more...), err
}

// avoidStackRefusals moves to SYNPROXY the handoff statements whose connections this host's TCP
// sysctls would make the kernel refuse or ignore (every client reset): tcp_syncookies=0 (the
// kernel then ignores a handed-off ACK), or an option the statement offers that the stack has
// turned off (bpf_sk_assign_tcp_reqsk refuses it). SYNPROXY, which sets tcp_syncookies=1 and
// opens its own connection to the server, serves them.
func (p *Protector) avoidStackRefusals(s spec.Spec) (spec.Spec, []string, error) {
	read := p.Sysctl
	if read == nil {
		read = host.Sysctl
	}
	// What the namespace has of its own: the SYNPROXY path's rules set tcp_syncookies=1, and
	// moving every statement to the handoff removes them and puts the original back.
	if o, ok := p.Rules.(interface {
		Original(key string) (string, bool, error)
	}); ok {
		current := read
		read = func(key string) (string, error) {
			if v, saved, err := o.Original(key); err == nil && saved {
				return v, nil
			}
			return current(key)
		}
	}
	off := func(key string) bool { v, err := read(key); return err == nil && v == "0" }
	cookiesOff, sackOff, tsOff, wsOff := off("net.ipv4.tcp_syncookies"), off("net.ipv4.tcp_sack"),
		off("net.ipv4.tcp_timestamps"), off("net.ipv4.tcp_window_scaling")
	if !cookiesOff && !sackOff && !tsOff && !wsOff {
		return s, nil, nil
	}
	var warnings []string
	out, err := s.MoveToSynproxy(func(st spec.Statement) string {
		var why string
		switch {
		case cookiesOff:
			why = "net.ipv4.tcp_syncookies=0 makes the kernel ignore a handed-off ACK; set it to 1 (the default) or 2 to use the handoff"
		case wsOff:
			why = "net.ipv4.tcp_window_scaling=0 makes the kernel refuse the handoff of every client that offers window scaling; set it to 1 to use the handoff"
		case sackOff && st.Options.SACK:
			why = "net.ipv4.tcp_sack=0 makes the kernel refuse a handoff with SACK; write nosack for the statement (--no-sack), or set the sysctl to 1"
		case tsOff && st.Options.Timestamps:
			why = "net.ipv4.tcp_timestamps=0 makes the kernel refuse a handoff with timestamps; write notimestamps for the statement (--no-timestamps), or set the sysctl to 1"
		default:
			return ""
		}
		warnings = append(warnings, fmt.Sprintf("%s: SYNPROXY path: %s", st.Origin(), why))
		return why
	})
	if err != nil {
		return s, nil, err
	}
	return out, warnings, nil
}

// attached is xsyn's attachment on iface, opened read-only; nil when there is none (or iface is
// ""). Errors other than "not there" are returned.
func (p *Protector) attached(iface string) (*loader.Attachment, error) {
	if iface == "" {
		return nil, nil
	}
	a, err := loader.Open(iface, true, p.Loader)
	switch {
	case err == nil:
		return a, nil
	case errors.Is(err, loader.ErrNotAttached) || errors.Is(err, loader.ErrNoInterface) || errors.Is(err, loader.ErrForeignProgram):
		return nil, nil // Apply says what is wrong, if anything is
	}
	return nil, err
}

// avoidMPTCP moves to SYNPROXY the handoff statements whose server listens with MPTCP: the
// kernel refuses to hand a connection to an MPTCP listener (every client would be reset), and
// SYNPROXY's own handshake with the server falls back to plain TCP.
func (p *Protector) avoidMPTCP(s spec.Spec) (spec.Spec, []string, error) {
	list := p.MPTCPListeners
	if list == nil {
		list = host.MPTCPListeners
	}
	mp, err := list()
	if err != nil || len(mp) == 0 {
		return s, nil, err
	}
	var warnings []string
	out, err := s.MoveToSynproxy(func(st spec.Statement) string {
		for _, l := range mp {
			if coversListener(st, l) {
				why := fmt.Sprintf("the server on %s listens with MPTCP, which the kernel cannot hand connections to "+
					"(Go's net.Listen does by default; turn MPTCP off in the server to use the handoff)", netip.AddrPortFrom(l.Addr, l.Port))
				warnings = append(warnings, fmt.Sprintf("%s: SYNPROXY path: %s", st.Origin(), why))
				return why
			}
		}
		return ""
	})
	if err != nil {
		return s, nil, err
	}
	return out, warnings, nil
}

// coversListener reports whether st's SYNs can reach listener l: its family, its port, its
// address. An IPv6 wildcard is taken to take IPv4 too (dual-stack, as Go's [::] listeners are):
// wrongly so, it costs a statement the handoff, not a client its connection.
func coversListener(st spec.Statement, l host.Listener) bool {
	if !slices.ContainsFunc(st.Match.Dport.Positive(), func(r spec.PortRange) bool { return r.Lo <= l.Port && l.Port <= r.Hi }) {
		return false
	}
	if l.Addr.IsUnspecified() {
		return (st.Family == spec.IPv4) == l.Addr.Is4() || st.Family == spec.IPv4
	}
	if (st.Family == spec.IPv4) != l.Addr.Is4() {
		return false
	}
	return slices.ContainsFunc(st.Match.Dst.Positive(st.Family), func(p netip.Prefix) bool { return p.Contains(l.Addr) })
}
