package backend

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/xsyn-project/xsyn/spec"
)

var (
	// FireHOL's defaults: mss 1460, wscale 7, SACK, timestamps, no ECN.
	defaults = spec.DefaultOptions(spec.IPv4)
	// A server behind a 1400-byte link with large buffers and SACK off.
	server = Offer{Addr: netip.MustParseAddrPort("192.0.2.2:80"), MSS: 1360, WScale: 10, WScaleOK: true, Timestamps: true, ECN: true}
)

func TestApply(t *testing.T) {
	with := func(f func(*Offer)) Offer { o := server; f(&o); return o }
	for _, tc := range []struct {
		name string
		o    Offer
		opts spec.TCPOptions
		want spec.TCPOptions
	}{
		{"everything from the server", server, defaults,
			spec.TCPOptions{MSS: 1360, WScale: 10, Timestamps: true, ECN: true}},
		{"loopback keeps our MSS", with(func(o *Offer) { o.Loopback, o.MSS = true, 65495 }), defaults,
			spec.TCPOptions{MSS: 1460, WScale: 10, Timestamps: true, ECN: true}},
		{"unknown MSS keeps ours", with(func(o *Offer) { o.MSS = 0 }), defaults,
			spec.TCPOptions{MSS: 1460, WScale: 10, Timestamps: true, ECN: true}},
		{"no window scaling: shift 0", with(func(o *Offer) { o.WScale, o.WScaleOK = 0, false }), defaults,
			spec.TCPOptions{MSS: 1360, WScale: 0, Timestamps: true, ECN: true}},
		{"everything off", Offer{MSS: 1460}, spec.TCPOptions{MSS: 1400, WScale: 7, SACK: true, Timestamps: true, ECN: true},
			spec.TCPOptions{MSS: 1460}},
		{"MSS below the minimum is clamped", with(func(o *Offer) { o.MSS = 500 }), defaults,
			spec.TCPOptions{MSS: spec.MinMSS, WScale: 10, Timestamps: true, ECN: true}},
	} {
		if got := tc.o.Apply(tc.opts); got != tc.want {
			t.Errorf("%s: Apply(%+v) = %+v, want %+v", tc.name, tc.opts, got, tc.want)
		}
	}
}

func TestMismatches(t *testing.T) {
	with := func(f func(*Offer)) Offer { o := server; f(&o); return o }
	for _, tc := range []struct {
		name string
		o    Offer
		opts spec.TCPOptions
		want []string
	}{
		{"agree", server, spec.TCPOptions{MSS: 1360, WScale: 10, Timestamps: true, ECN: true}, nil},
		{"defaults against the server", server, defaults, []string{
			"mss 1460, server offers 1360",
			"wscale 7, server offers 10",
			"SACK on, server does not offer it",
			"ECN off, server offers it",
		}},
		{"server without timestamps", with(func(o *Offer) { o.Timestamps, o.SACK = false, true }),
			spec.TCPOptions{MSS: 1360, WScale: 10, SACK: true, Timestamps: true, ECN: true},
			[]string{"timestamps on, server does not offer them"}},
		{"timestamps off, server offers them", server, spec.TCPOptions{MSS: 1360, WScale: 10, ECN: true},
			[]string{"timestamps off, server offers them"}},
		{"server without window scaling", with(func(o *Offer) { o.WScale, o.WScaleOK = 0, false }),
			spec.TCPOptions{MSS: 1360, WScale: 0, Timestamps: true, ECN: true},
			[]string{"wscale 0, server does not offer window scaling"}},
		{"no window scaling either way without timestamps", Offer{MSS: 1360},
			spec.TCPOptions{MSS: 1360, WScale: 7}, nil},
		{"loopback MSS says nothing", with(func(o *Offer) { o.Loopback, o.MSS = true, 65495 }),
			spec.TCPOptions{MSS: 1460, WScale: 10, Timestamps: true, ECN: true}, nil},
		{"unknown MSS", with(func(o *Offer) { o.MSS = 0 }),
			spec.TCPOptions{MSS: 1460, WScale: 10, Timestamps: true, ECN: true}, nil},
	} {
		if got := tc.o.Mismatches(tc.opts); !slices.Equal(got, tc.want) {
			t.Errorf("%s: Mismatches(%+v) =\n\t%q, want\n\t%q", tc.name, tc.opts, got, tc.want)
		}
	}
}

// What Apply returns agrees with the server, except where the spec has no way to: window
// scaling cannot be left out while timestamps are on, and MSS below MinMSS is not announced.
func TestApplyLeavesNoMismatches(t *testing.T) {
	for _, o := range []Offer{
		server,
		{MSS: 1440, WScale: 14, WScaleOK: true, SACK: true, Timestamps: true},
		{MSS: 9000, WScale: 2, WScaleOK: true, SACK: true},
		{MSS: 65495, Loopback: true, WScale: 7, WScaleOK: true, Timestamps: true},
		{},
	} {
		if m := o.Mismatches(o.Apply(defaults)); len(m) != 0 {
			t.Errorf("Mismatches(Apply(defaults)) for %+v: %q", o, m)
		}
	}
	noWS := Offer{MSS: 1360, Timestamps: true}
	if m := noWS.Mismatches(noWS.Apply(defaults)); !slices.Equal(m, []string{"wscale 0, server does not offer window scaling"}) {
		t.Errorf("a server without window scaling: Mismatches(Apply(defaults)) = %q; want the one xsyn cannot avoid", m)
	}
}
