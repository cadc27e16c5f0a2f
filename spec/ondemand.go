package spec

import "fmt"

// On-demand protection (the handoff path only): a service's SYNs go to the listener, which
// answers them itself (TCP Fast Open and every option of its socket work), until they come at
// OnDemand SYNs a second or faster; XDP then answers them with cookies until the rate has stayed
// below half of it for a second (bpf/ondemand.h). Off (0) by default: cookies always.

// MaxOnDemand is the highest threshold: far above what one listener answers (bench/results),
// and low enough that the program's arithmetic cannot overflow.
const MaxOnDemand = 100_000_000

// onDemandSynproxy says why on-demand is refused on the SYNPROXY path.
const onDemandSynproxy = "on-demand needs the socket-handoff path: on the SYNPROXY path netfilter " +
	"NOTRACKs every protected SYN, so only a cookie can answer it"

// checkOnDemand refuses on-demand on a statement that takes the SYNPROXY path, saying why it
// does.
func (s Spec) checkOnDemand() error {
	for _, st := range s.Statements {
		if st.OnDemand == 0 || st.Path != PathSynproxy {
			continue
		}
		msg := fmt.Sprintf("%s; this statement takes the SYNPROXY path (%s): "+
			"remove on-demand from it, or let it take the handoff path", onDemandSynproxy, st.PathReason)
		if st.Pos == (Pos{}) { // made from flags
			return fmt.Errorf("%w: %s: %s", ErrInvalid, st.Origin(), msg)
		}
		return statementError{st.Pos, msg}
	}
	return nil
}

// dropOnDemand turns on-demand off on the statements moved to the SYNPROXY path, where every
// SYN needs its cookie; the move's warning says why they left the handoff path.
func (s *Spec) dropOnDemand() {
	for i := range s.Statements {
		if s.Statements[i].Path == PathSynproxy {
			s.Statements[i].OnDemand = 0
		}
	}
}

// OnDemandString is how `explain` and `status` show a threshold.
func OnDemandString(rate uint32) string {
	if rate == 0 {
		return "off (cookies always)"
	}
	return fmt.Sprintf("%d SYN/s", rate)
}

// onDemand sets the statement's threshold: its own `on-demand`, else the options line's where
// the statement can take the handoff path (the options line sets a default, not a demand). Its
// own on a statement that cannot is an error at the word.
func (p *parser) onDemand(c *cursor, d draft, st *Statement) *ConfigError {
	why := st.HandoffReason()
	if st.Via == ViaSynproxy {
		why = "asked for (path synproxy)"
	}
	switch {
	case d.opts.onDemand.set:
		if d.opts.onDemand.v != 0 && why != "" {
			return c.errAt(d.opts.onDemandTok.pos, "%s; this statement takes the SYNPROXY path (%s): remove on-demand from it", onDemandSynproxy, why)
		}
		st.OnDemand = uint32(d.opts.onDemand.v)
	case p.global.onDemand.set && why == "":
		st.OnDemand = uint32(p.global.onDemand.v)
	}
	return nil
}

// WithOnDemand gives every statement on the handoff path the threshold rate and compiles them
// again for iface: what --on-demand does to the statements of the listeners (zero-config).
func (s Spec) WithOnDemand(iface string, rate uint32) (Spec, error) {
	if rate > MaxOnDemand {
		return Spec{}, fmt.Errorf("%w: on-demand %d is above %d SYNs a second", ErrInvalid, rate, MaxOnDemand)
	}
	stmts := append([]Statement(nil), s.Statements...)
	for i := range stmts {
		if stmts[i].Path == PathHandoff {
			stmts[i].OnDemand = rate
		}
	}
	out, err := Compile(iface, s.Settings, stmts)
	if err != nil {
		return Spec{}, err
	}
	out.CookieKey = s.CookieKey
	return out, nil
}
