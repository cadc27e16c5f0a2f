package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xsyn-project/xsyn/internal/intent"
	"github.com/xsyn-project/xsyn/spec"
)

// parseSpecFlags runs the flag parsing attach and explain share, on lo.
func parseSpecFlags(t *testing.T, args ...string) (*intent.Built, error) {
	t.Helper()
	fs := newFlags("explain", "explain IFACE", "", &strings.Builder{})
	sf := addSpecFlags(fs)
	_, bs, err := parseSpecs(fs, sf, append([]string{"lo"}, args...))
	if err != nil {
		return nil, err
	}
	if len(bs) != 1 {
		t.Fatalf("lo named: %d specs, want 1", len(bs))
	}
	return bs[0], nil
}

// --path reaches every statement of the flag form and of zero-config; --cookie-secret-file is
// named in the settings, not read, and may not repeat the configuration's.
func TestSpecFlagsPathAndCookieSecret(t *testing.T) {
	for _, tc := range []struct {
		args []string
		path spec.Path
		via  spec.Via
	}{
		{[]string{"--port", "80,443"}, spec.PathHandoff, spec.ViaAuto}, // attach may still move them (hostPaths)
		{[]string{"--port", "80,443", "--path", "handoff"}, spec.PathHandoff, spec.ViaHandoff},
		{[]string{"--port", "80", "--path", "synproxy"}, spec.PathSynproxy, spec.ViaSynproxy},
	} {
		b, err := parseSpecFlags(t, tc.args...)
		if err != nil {
			t.Fatalf("%q: %v", tc.args, err)
		}
		for _, st := range b.Spec.Statements {
			if st.Path != tc.path || st.Via != tc.via {
				t.Errorf("%q: %s takes path %s (via %s); want %s (via %s)", tc.args, st, st.Path, st.Via, tc.path, tc.via)
			}
		}
	}

	b, err := parseSpecFlags(t, "--port", "80", "--path", "handoff", "--cookie-secret-file", "/nonexistent/xsyn.key")
	if err != nil || b.Spec.Settings.CookieSecretFile != "/nonexistent/xsyn.key" || b.Spec.CookieKey != nil {
		t.Errorf("--cookie-secret-file: settings %+v, key %v, %v; want the file named, not read", b.Spec.Settings, b.Spec.CookieKey, err)
	}

	conf := filepath.Join(t.TempDir(), "lo.conf")
	if err := os.WriteFile(conf, []byte("cookie-secret-file lo.key\nsynproxy4 in dport 80 path handoff accept\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	b, err = parseSpecFlags(t, "--config", conf)
	if want := filepath.Join(filepath.Dir(conf), "lo.key"); err != nil || b.Spec.Settings.CookieSecretFile != want {
		t.Errorf("cookie-secret-file in %s: %+v, %v; want %s", conf, b.Spec.Settings, err, want)
	}
	_, err = parseSpecFlags(t, "--config", conf, "--cookie-secret-file", "/etc/xsyn/other.key")
	if !errors.As(err, new(usageError)) || !strings.Contains(err.Error(), "names the cookie secret already") {
		t.Errorf("--cookie-secret-file beside the configuration's: %v; want a usage error", err)
	}

	// Zero-config: the listeners' statements, then --path.
	s, err := spec.Simple{Ports: []uint16{22}, WScale: -1}.Build()
	if err != nil {
		t.Fatal(err)
	}
	lb := &intent.Built{Iface: "lo", Kind: intent.FromListeners, Spec: s}
	sf := &specFlags{simple: spec.Simple{Via: spec.ViaHandoff}}
	if err := sf.apply(lb); err != nil || !lb.Spec.HasPath(spec.PathHandoff) || lb.Spec.HasPath(spec.PathSynproxy) {
		t.Errorf("--path handoff with zero-config: %v; statements %+v", err, lb.Spec.Statements)
	}
}

// explain shows the paths attach would take, as protect's ChoosePaths decides them on this host:
// its warnings are shown and its moves applied; a statement that insists on the handoff is
// attach's error; a host that could not be asked (no root) is said.
func TestExplainHostPaths(t *testing.T) {
	handoff, err := spec.Simple{Ports: []uint16{80}, WScale: -1, Via: spec.ViaHandoff}.Build()
	if err != nil {
		t.Fatal(err)
	}
	auto, err := spec.Simple{Ports: []uint16{80}, WScale: -1}.Build()
	if err != nil {
		t.Fatal(err)
	}
	synproxy, err := spec.Simple{Ports: []uint16{80}, WScale: -1, Via: spec.ViaSynproxy}.Build()
	if err != nil {
		t.Fatal(err)
	}
	mptcp := "the server on 0.0.0.0:80 listens with MPTCP"
	moveV4 := func(s spec.Spec) (spec.Spec, []string, error) {
		out, err := s.MoveToSynproxy(func(st spec.Statement) string {
			if st.Family == spec.IPv4 {
				return mptcp
			}
			return ""
		})
		return out, []string{"synproxy4 input dport 80 accept: SYNPROXY path: " + mptcp}, err
	}
	for _, tc := range []struct {
		name   string
		s      spec.Spec
		choose func(spec.Spec) (spec.Spec, []string, error)
		note   []string    // what it says, in this order; nil: nothing
		paths  []spec.Path // the statements' paths after it
		err    string      // prefix of the error; "" : none
	}{
		{"nothing takes the handoff: no question asked", synproxy,
			func(spec.Spec) (spec.Spec, []string, error) {
				return spec.Spec{}, nil, errors.New("must not be called")
			},
			nil, []spec.Path{spec.PathSynproxy, spec.PathSynproxy}, ""},
		{"the host serves the handoff", auto,
			func(s spec.Spec) (spec.Spec, []string, error) { return s, nil, nil },
			[]string{"Kernel: it has the socket handoff (Linux 6.9+), and no server of a statement on the handoff path listens with MPTCP."},
			[]spec.Path{spec.PathHandoff, spec.PathHandoff}, ""},
		{"an MPTCP server: attach's warning, its move", auto, moveV4,
			[]string{"This host, checked as attach checks it", "\n  attach would warn: synproxy4 input dport 80 accept: SYNPROXY path: " + mptcp,
				"\nThe statements below take the paths attach would give them."},
			[]spec.Path{spec.PathSynproxy, spec.PathHandoff}, ""},
		{"an MPTCP server, path handoff: attach's error", handoff, moveV4, nil, nil,
			"socket handoff unavailable: synproxy4 input dport 80 accept: " + mptcp + "\nattach would fail the same way: the handoff needs Linux 6.9+"},
		{"cannot tell", auto,
			func(s spec.Spec) (spec.Spec, []string, error) { return s, nil, errors.New("operation not permitted") },
			[]string{"This host: whether its kernel has the socket handoff (Linux 6.9+), and which servers listen with MPTCP, could not be checked " +
				"(explain checks both as root): operation not permitted.", "\nShown as if nothing stands in the way"},
			[]spec.Path{spec.PathHandoff, spec.PathHandoff}, ""},
	} {
		b := &intent.Built{Iface: "eth0", Spec: tc.s}
		note, err := hostPaths(b, tc.choose)
		if tc.err != "" {
			if err == nil || !strings.HasPrefix(err.Error(), tc.err) {
				t.Errorf("%s: error %v; want %q", tc.name, err, tc.err)
			}
			continue
		}
		if err != nil || (tc.note == nil) != (note == "") {
			t.Errorf("%s: note %q, %v; want %q", tc.name, note, err, tc.note)
		}
		rest := note
		for _, w := range tc.note {
			i := strings.Index(rest, w)
			if i < 0 {
				t.Errorf("%s: note lacks %q (in this order):\n%s", tc.name, w, note)
				break
			}
			rest = rest[i+len(w):]
		}
		for i, st := range b.Spec.Statements {
			if st.Path != tc.paths[i] {
				t.Errorf("%s: %s takes path %s, want %s", tc.name, st, st.Path, tc.paths[i])
			}
		}
	}
}

// explain of the flag form on each path: the handoff alone installs no rules and says so; the
// SYNPROXY path shows its rules and why it was taken. In a namespace of its own, where no
// server listens with MPTCP on the port.
func TestExplainFlagPaths(t *testing.T) {
	requireRootForTest(t) // the handoff probe loads BPF programs
	h, _ := emptyNamespace(t, "xsynexf")
	xsyn := func(args ...string) (code int, out, errOut string) {
		if err := h.Do(func() error { code, out, errOut = runCLI(args...); return nil }); err != nil {
			t.Fatal(err)
		}
		return
	}
	code, out, errOut := xsyn("explain", "lo", "--port", "8080", "--path", "handoff")
	for _, want := range []string{
		"2 statements on the handoff path, 0 on the SYNPROXY path.",
		"How a connection on the handoff path goes",
		"Kernel: it has the socket handoff (Linux 6.9+), and no server of a statement on the handoff path listens with MPTCP.",
		"path: handoff: xsyn cookie, handed to the listening socket; no netfilter rules; your firewall's INPUT rules still apply",
		"cookie secret: random, made by the first attach and kept",
		"64   handoff\n",
		"Netfilter rules: none; every statement takes the handoff path, which needs no netfilter rules and no sysctls.",
	} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("explain --path handoff: exit %d, want 0 and %q\n%s%s", code, want, out, errOut)
		}
	}
	if strings.Contains(out, "How a connection on the SYNPROXY path goes") || strings.Contains(out, "-j SYNPROXY") {
		t.Errorf("explain --path handoff shows SYNPROXY:\n%s", out)
	}

	code, out, errOut = xsyn("explain", "lo", "--port", "8080", "--path", "synproxy", "--cookie-secret-file", "/etc/xsyn/cookie.key")
	for _, want := range []string{
		"0 statements on the handoff path, 2 on the SYNPROXY path.",
		"path: synproxy: asked for (path synproxy)\n     XDP answers its SYNs with cookies; SYNPROXY completes the handshake",
		"cookie-secret-file /etc/xsyn/cookie.key: unused, no statement takes the handoff path",
		"64   synproxy\n",
		"-j SYNPROXY",
	} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("explain --path synproxy: exit %d, want 0 and %q\n%s%s", code, want, out, errOut)
		}
	}
	if strings.Contains(out, "How a connection on the handoff path goes") || strings.Contains(out, "Kernel:") {
		t.Errorf("explain --path synproxy speaks of the handoff:\n%s", out)
	}
}
