package intent

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/xsyn-project/xsyn/internal/backend"
	"github.com/xsyn-project/xsyn/rules"
	"github.com/xsyn-project/xsyn/spec"
)

// Review is what attach makes of b before it changes anything: its servers probed, their
// options warned about or adopted (backend.Checker.Review, advice in the words of b's form), and
// a warning for each statement that matches the interface's own addresses where nothing
// completes the handshake (LocalWarning).
func (b *Built) Review(ctx context.Context, c backend.Checker, adopt bool) (backend.Review, error) {
	r, err := c.Review(ctx, b.Iface, b.Spec, b.Addrs, adopt, b.Kind == FromConfig)
	if err != nil {
		return r, err
	}
	for _, st := range r.Spec.Statements {
		if w := LocalWarning(st, b.Iface, b.Addrs); w != "" {
			r.Warnings = append(r.Warnings, fmt.Sprintf("%s: %s", backend.Where(st), strings.TrimPrefix(w, "warning: ")))
		}
	}
	return r, nil
}

// LocalWarning warns about a statement whose destinations include addresses of the interface
// but that has no SYNPROXY in INPUT, where the client's packets to them go: a forward statement
// that keeps the destination, or that has an outface. Its SYNs are answered (by XDP, or
// NOTRACKed for SYNPROXY in FORWARD) and nothing completes the handshake.
func LocalWarning(st spec.Statement, iface string, addrs []netip.Addr) string {
	if rules.ProxiesLocal(st) {
		return ""
	}
	var hit []string
	for _, a := range addrs {
		if a.IsLinkLocalUnicast() || a.Is4() != (st.Family == spec.IPv4) {
			continue
		}
		if slices.ContainsFunc(st.Match.Dst.Positive(st.Family), func(p netip.Prefix) bool { return p.Contains(a) }) {
			hit = append(hit, a.String())
		}
	}
	if len(hit) == 0 {
		return ""
	}
	why, fix := "its action ("+st.Action.String()+") keeps the destination", "write 'in' for them"
	if k := st.Action.Kind; k == spec.DNAT || k == spec.Redirect {
		why, fix = "it has an outface, which INPUT cannot match", "leave outface out"
	}
	return fmt.Sprintf("warning: it matches %s, of %s, but %s: SYNPROXY is in FORWARD only and connections to this host's own addresses fail; %s",
		strings.Join(hit, ", "), iface, why, fix)
}
