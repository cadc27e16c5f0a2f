package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xsyn-project/xsyn/internal/source"
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
	lb := &source.Built{Iface: "lo", Kind: source.FromListeners, Spec: s}
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
