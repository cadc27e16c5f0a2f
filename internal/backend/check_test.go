package backend

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/xsyn-project/xsyn/spec"
)

var (
	v4 = netip.MustParseAddr("192.0.2.2")
	v6 = netip.MustParseAddr("2001:db8::2")
)

func parse(t *testing.T, conf string) spec.Spec {
	t.Helper()
	cfg, err := spec.ParseConfig("t.conf", []byte(conf), &spec.Stack{MTU: 1500, WScale: 7})
	if err != nil {
		t.Fatal(err)
	}
	s, err := cfg.For("eth0")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestServers(t *testing.T) {
	addrs := []netip.Addr{netip.MustParseAddr("fe80::1"), v4, v6}
	for _, tc := range []struct {
		stmt string
		want string // servers, comma-separated
		note string // substring of the note
	}{
		{"synproxy4 in dst 192.0.2.10 dport 80,443 accept", "192.0.2.10:80,192.0.2.10:443", ""},
		{"synproxy4 in dport 22 accept", "192.0.2.2:22", ""},     // wildcard: the interface's address
		{"synproxy6 in dport 22 accept", "[2001:db8::2]:22", ""}, // not the link-local one
		{"synproxy6 in dst fe80::1 dport 22 accept", "", "link-local, which cannot be dialled without a zone"},
		{"synproxy6 in dst fe80::1,2001:db8::2 dport 22 accept", "[2001:db8::2]:22", ""},
		{"synproxy4 in dst 192.0.2.0/24 dport 80 accept", "", "networks"},
		{"synproxy4 in dst not 192.0.2.1 dport 80 accept", "", "negated"},
		{"synproxy4 in dst 192.0.2.10 accept", "", "every destination port"},
		{"synproxy4 forward dport 80 accept", "", "whatever the client asked for"},
		{"synproxy4 forward dst 10.0.0.5 dport 80 accept", "10.0.0.5:80", ""},
		{"synproxy4 in dst 192.0.2.10 dport 2200 redirect to 22", "127.0.0.1:22", ""},
		{"synproxy6 in dport 2200 redirect to 22", "[::1]:22", ""},
		{"synproxy4 in dst 192.0.2.10 dport 80 dnat to 10.1.1.5:8080", "10.1.1.5:8080", ""},
		{"synproxy4 in dst 192.0.2.10 dport 80,81 dnat to 10.1.1.5", "10.1.1.5:80,10.1.1.5:81", ""},
		{"synproxy4 in dst 192.0.2.10 dport 80 dnat to :8080", "192.0.2.10:8080", ""},
		{"synproxy4 in dport 80 reject", "", "reject"},
		{"synproxy4 in dport 80 action MYCHAIN", "", "action MYCHAIN"},
		{"synproxy4 in dst 192.0.2.10 dport 8000-8099 accept", "", "first 16 of its 100"},
	} {
		s := parse(t, tc.stmt)
		servers, note := Servers(s.Statements[0], addrs)
		var got []string
		for _, a := range servers {
			got = append(got, a.String())
		}
		if tc.note == "first 16 of its 100" {
			got = nil // checked by the note and the count
			if len(servers) != MaxServers {
				t.Errorf("%s: %d servers, want %d", tc.stmt, len(servers), MaxServers)
			}
		}
		if strings.Join(got, ",") != tc.want || !strings.Contains(note, tc.note) || (tc.note == "") != (note == "") {
			t.Errorf("Servers(%s) = %v, %q; want %s, note with %q", tc.stmt, got, note, tc.want, tc.note)
		}
	}
}

// fakeProbe answers for the servers it knows and refuses the rest.
func fakeProbe(offers map[string]Offer) ProbeFunc {
	return func(ctx context.Context, addr netip.AddrPort) (Offer, error) {
		if _, ok := ctx.Deadline(); !ok {
			return Offer{}, errors.New("probe without a deadline")
		}
		o, ok := offers[addr.String()]
		if !ok {
			return Offer{}, fmt.Errorf("probe backend %s: connect: %w", addr, syscall.ECONNREFUSED)
		}
		o.Addr = addr
		return o, nil
	}
}

const twoServers = `synproxy4 in dst 192.0.2.10 dport 80 dnat to 10.1.1.5:8080
synproxy4 in dst 192.0.2.11 dport 80 wscale 9 dnat to 10.1.1.6:8080
synproxy4 in dst 192.0.2.12 dport 22 reject
`

func TestCheckAndAdopt(t *testing.T) {
	s := parse(t, twoServers)
	stock := Offer{MSS: 1460, WScale: 7, WScaleOK: true, SACK: true, Timestamps: true}
	big := stock
	big.WScale = 10
	c := Checker{Probe: fakeProbe(map[string]Offer{"10.1.1.5:8080": big})}
	fs := c.Check(context.Background(), s, nil)
	if len(fs) != 2 {
		t.Fatalf("findings %+v; want one per dnat server", fs)
	}
	if fs[0].Stmt != 0 || fs[0].Err != nil || !slices.Equal(fs[0].Mismatches, []string{"wscale 7, server offers 10"}) {
		t.Errorf("finding for 10.1.1.5: %+v", fs[0])
	}
	if fs[1].Stmt != 1 || !errors.Is(fs[1].Err, syscall.ECONNREFUSED) {
		t.Errorf("finding for the unreachable 10.1.1.6: %+v", fs[1])
	}

	got, adopted, err := Adopt("eth0", s, fs)
	if err != nil {
		t.Fatal(err)
	}
	if len(adopted) != 1 || adopted[0].Stmt != 0 || !slices.Equal(Changes(adopted[0].From, adopted[0].To), []string{"wscale 7 -> 10"}) {
		t.Errorf("adopted %+v", adopted)
	}
	if got.Statements[0].Options.WScale != 10 || got.Statements[1].Options.WScale != 9 {
		t.Errorf("statements after adoption: %s / %s", got.Statements[0].Options, got.Statements[1].Options)
	}
	// The XDP view is compiled again from the adopted statements.
	for _, svc := range got.Services {
		if svc.Dst.Addr() == netip.MustParseAddr("192.0.2.10") && svc.Options.WScale != 10 {
			t.Errorf("XDP service %s still offers %s", svc, svc.Options)
		}
	}
	if s.Statements[0].Options.WScale != 7 {
		t.Error("Adopt changed the spec it was given")
	}

	// Nothing to adopt: the same spec back.
	same, adopted, err := Adopt("eth0", s, c.Check(context.Background(), s, nil)[1:])
	if err != nil || adopted != nil || same.Statements[0].Options != s.Statements[0].Options {
		t.Errorf("nothing to adopt: %v, %v", adopted, err)
	}
}

func TestAdoptServersDisagree(t *testing.T) {
	s := parse(t, "synproxy4 in dst 192.0.2.10 dport 80,443 accept\n")
	a := Offer{MSS: 1460, WScale: 7, WScaleOK: true, SACK: true, Timestamps: true}
	b := a
	b.SACK = false
	fs := Checker{Probe: fakeProbe(map[string]Offer{"192.0.2.10:80": a, "192.0.2.10:443": b})}.Check(context.Background(), s, nil)
	_, _, err := Adopt("eth0", s, fs)
	if !errors.Is(err, ErrServersDisagree) || !strings.Contains(err.Error(), "t.conf:1") || !strings.Contains(err.Error(), "split the statement") {
		t.Errorf("servers that disagree: %v", err)
	}
}

// A probe sees ECN only when our stack asks for it; otherwise the statement's choice stands.
func TestCheckECN(t *testing.T) {
	s := parse(t, "synproxy4 in dst 192.0.2.10 dport 80 ecn accept\n")
	o := Offer{MSS: 1460, WScale: 7, WScaleOK: true, SACK: true, Timestamps: true}
	probe := fakeProbe(map[string]Offer{"192.0.2.10:80": o})
	if fs := (Checker{Probe: probe}).Check(context.Background(), s, nil); len(fs[0].Mismatches) != 0 {
		t.Errorf("ECN not asked: mismatches %v", fs[0].Mismatches)
	}
	if fs := (Checker{Probe: probe, AskedECN: true}).Check(context.Background(), s, nil); !slices.Equal(fs[0].Mismatches, []string{"ECN on, server does not offer it"}) {
		t.Errorf("ECN asked: mismatches %v", fs[0].Mismatches)
	}
}

func TestWords(t *testing.T) {
	from := spec.TCPOptions{MSS: 1460, WScale: 7, SACK: true, Timestamps: true}
	to := spec.TCPOptions{MSS: 1400, WScale: 9, SACK: false, Timestamps: true, ECN: true}
	if got := ConfigWords(from, to); got != "mss 1400 wscale 9 nosack ecn" {
		t.Errorf("ConfigWords = %q", got)
	}
	if got := FlagWords(from, to); got != "--mss 1400 --wscale 9 --no-sack --ecn" {
		t.Errorf("FlagWords = %q", got)
	}
	if got := FlagWords(to, from); got != "--mss 1460 --wscale 7 without --no-sack without --ecn" {
		t.Errorf("FlagWords back = %q", got)
	}
	if got := strings.Join(Changes(from, to), ", "); got != "mss 1460 -> 1400, wscale 7 -> 9, sack -> nosack, noecn -> ecn" {
		t.Errorf("Changes = %q", got)
	}
	if got := Where(spec.Statement{Text: "synproxy4 input dport 80 accept"}); got != `"synproxy4 input dport 80 accept"` {
		t.Errorf("Where of a flag statement = %s", got)
	}
}
