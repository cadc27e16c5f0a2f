package main

import (
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xsyn-project/xsyn/internal/intent"
	"github.com/xsyn-project/xsyn/internal/protect"
	"github.com/xsyn-project/xsyn/loader"
	"github.com/xsyn-project/xsyn/spec"
)

// --on-demand reaches every statement of the flag form and of zero-config; it cannot be given
// beside a configuration, nor with the SYNPROXY path.
func TestSpecFlagsOnDemand(t *testing.T) {
	b, err := parseSpecFlags(t, "--port", "80,443", "--on-demand", "20000")
	if err != nil {
		t.Fatal(err)
	}
	for _, svc := range b.Spec.Services {
		if svc.OnDemand != 20000 {
			t.Errorf("--on-demand 20000: service %s has %d", svc, svc.OnDemand)
		}
	}
	for _, tc := range []struct {
		args  []string
		usage bool
		want  string
	}{
		{[]string{"--port", "80", "--on-demand", "-1"}, true, "--on-demand -1 is outside 0-100000000 SYNs a second"},
		{[]string{"--port", "80", "--on-demand", "many"}, true, "invalid value"},
		{[]string{"--port", "80", "--on-demand", "500", "--path", "synproxy"}, true, "on-demand needs the socket-handoff path"},
	} {
		_, err := parseSpecFlags(t, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) || errors.As(err, new(usageError)) != tc.usage {
			t.Errorf("%q: %v; want %q (usage error: %v)", tc.args, err, tc.want, tc.usage)
		}
	}
	conf := filepath.Join(t.TempDir(), "lo.conf")
	if err := os.WriteFile(conf, []byte("synproxy4 in dport 80 on-demand 300 accept\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := parseSpecFlags(t, "--config", conf, "--on-demand", "5"); !errors.As(err, new(usageError)) || !strings.Contains(err.Error(), "--on-demand") {
		t.Errorf("--on-demand beside --config: %v; want a usage error naming it", err)
	}

	// Zero-config: the listeners' statements, then --on-demand.
	s, err := spec.Simple{Ports: []uint16{22}, WScale: -1}.Build()
	if err != nil {
		t.Fatal(err)
	}
	lb := &intent.Built{Iface: "lo", Kind: intent.FromListeners, Spec: s}
	sf := &specFlags{simple: spec.Simple{OnDemand: 900}}
	if err := sf.apply(lb); err != nil {
		t.Fatal(err)
	}
	for _, svc := range lb.Spec.Services {
		if svc.OnDemand != 900 {
			t.Errorf("--on-demand with zero-config: service %s has %d", svc, svc.OnDemand)
		}
	}
}

// explain shows each statement's threshold and the services' table shows it beside the path.
func TestExplainOnDemand(t *testing.T) {
	requireRootForTest(t) // the handoff probe loads BPF programs
	h, _ := emptyNamespace(t, "xsynexo")
	conf := filepath.Join(t.TempDir(), "lo.conf")
	if err := os.WriteFile(conf, []byte("options on-demand 4000\nsynproxy4 in inface lo dport 8080 accept\nsynproxy4 in inface lo dport 2200 redirect to 22\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var code int
	var out, errOut string
	if err := h.Do(func() error { code, out, errOut = runCLI("explain", "lo", "--config", conf); return nil }); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"on-demand: the listener answers its SYNs below 4000 a second; XDP's cookies from there until a second below 2000",
		"handoff, on-demand 4000/s\n",
	} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("explain: exit %d, want 0 and %q\n%s%s", code, want, out, errOut)
		}
	}
	if strings.Count(out, "on-demand:") != 1 {
		t.Errorf("explain: the redirect statement (SYNPROXY) shows on-demand too:\n%s", out)
	}
}

// status shows each on-demand service's switch, in text and in --json beside its service.
func TestStatusOnDemand(t *testing.T) {
	svc := spec.Service{Family: spec.IPv4, Dst: netip.MustParsePrefix("0.0.0.0/0"), Port: 8080, Handoff: true, OnDemand: 20000,
		Options: spec.DefaultOptions(spec.IPv4), TTL: 64}
	plain := spec.Service{Family: spec.IPv4, Dst: netip.MustParsePrefix("0.0.0.0/0"), Port: 22, Handoff: true,
		Options: spec.DefaultOptions(spec.IPv4), TTL: 64}
	st := d0(10, 10, 0, 0)
	st[0].Services = []spec.Service{plain, svc}
	st[0].OnDemand = []loader.ServiceOnDemand{{Service: svc, ID: 1,
		OnDemandState: loader.OnDemandState{Threshold: 20000, Cookies: true, Rate: 35000, Since: 2500 * time.Millisecond, Switches: 3}}}

	k := &fakeKernel{reads: [][]protect.Status{st}}
	var out strings.Builder
	if err := k.view(statusOpts{}, false, &out).once(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"handoff, on-demand 20000/s\n",
		"on-demand ipv4 0.0.0.0/0 port 8080: COOKIES (flooded), 35000 SYN/s in the last 100 ms, threshold 20000, switched 2.5s ago, 3 switches\n",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("status lacks %q:\n%s", want, out.String())
		}
	}

	k = &fakeKernel{reads: [][]protect.Status{st}}
	out.Reset()
	if err := k.view(statusOpts{json: true}, false, &out).once(context.Background()); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Interfaces []struct {
			Services []struct {
				Port     uint16          `json:"port"`
				OnDemand json.RawMessage `json:"on_demand"`
			} `json:"services"`
		} `json:"interfaces"`
	}
	if err := json.Unmarshal([]byte(out.String()), &doc); err != nil {
		t.Fatalf("%v:\n%s", err, out.String())
	}
	got := map[uint16]string{}
	for _, s := range doc.Interfaces[0].Services {
		got[s.Port] = string(s.OnDemand)
	}
	want := `{"syns_per_second":20000,"state":"cookies","rate":35000,"since_seconds":2.5,"switches":3,"quiet":false}`
	if strings.Join(strings.Fields(got[8080]), "") != want || got[22] != "" {
		t.Errorf("--json on_demand: port 8080 %s, port 22 %q; want %s and none", got[8080], got[22], want)
	}
}
