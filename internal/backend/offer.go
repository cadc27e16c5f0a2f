package backend

import (
	"fmt"

	"github.com/xsyn-project/xsyn/spec"
)

// Apply returns opts with what the server offered adopted: window scale, SACK, timestamps and
// ECN, and the MSS unless the probe went over loopback (or learned none). The result always
// passes spec validation: an MSS outside spec.MinMSS-spec.MaxMSS is clamped into it (xsyn
// never announces less than MinMSS; Mismatches still reports the difference).
//
// A server that offers no window scaling cannot be matched while timestamps are on: xsyn and
// SYNPROXY then offer a window scale whenever the client does. Apply sets the shift to 0, the
// closest match: the client reads the server's windows unscaled, as the server means them,
// and only the server underestimates the client's window. Mismatches keeps reporting it.
func (o Offer) Apply(opts spec.TCPOptions) spec.TCPOptions {
	opts.WScale = 0
	if o.WScaleOK {
		opts.WScale = min(o.WScale, spec.MaxWScale)
	}
	opts.SACK, opts.Timestamps, opts.ECN = o.SACK, o.Timestamps, o.ECN
	if o.MSS != 0 && !o.Loopback {
		opts.MSS = min(max(o.MSS, spec.MinMSS), spec.MaxMSS)
	}
	return opts
}

// Mismatches lists, human readable, where opts differ from what the server offered, e.g.
// "wscale 7, server offers 10" or "SACK on, server does not offer it". The MSS is compared only
// when the probe learned one over a real (not loopback) route. Empty when they agree.
func (o Offer) Mismatches(opts spec.TCPOptions) []string {
	var out []string
	add := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }
	if o.MSS != 0 && !o.Loopback && opts.MSS != o.MSS {
		add("mss %d, server offers %d", opts.MSS, o.MSS)
	}
	switch {
	case o.WScaleOK && opts.WScale != o.WScale:
		add("wscale %d, server offers %d", opts.WScale, o.WScale)
	case !o.WScaleOK && opts.Timestamps:
		// With timestamps on, a window scale is offered to every client that offers one.
		add("wscale %d, server does not offer window scaling", opts.WScale)
	}
	flag := func(name, it string, ours, theirs bool) {
		switch {
		case ours && !theirs:
			add("%s on, server does not offer %s", name, it)
		case !ours && theirs:
			add("%s off, server offers %s", name, it)
		}
	}
	flag("SACK", "it", opts.SACK, o.SACK)
	flag("timestamps", "them", opts.Timestamps, o.Timestamps)
	flag("ECN", "it", opts.ECN, o.ECN)
	return out
}
