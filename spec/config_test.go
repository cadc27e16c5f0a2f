package spec

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// configErrors lists the errors ParseConfig joined.
func configErrors(t *testing.T, err error) []*ConfigError {
	t.Helper()
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	} else {
		errs = []error{err}
	}
	var out []*ConfigError
	for _, e := range errs {
		var ce *ConfigError
		if !errors.As(e, &ce) {
			t.Fatalf("error %q is not a *ConfigError", e)
		}
		out = append(out, ce)
	}
	return out
}

func mustParse(t *testing.T, src string, stack *Stack) Config {
	t.Helper()
	cfg, err := ParseConfig("test.conf", []byte(src), stack)
	if err != nil {
		t.Fatalf("ParseConfig(%q): %v", src, err)
	}
	return cfg
}

func stmtStrings(cfg Config) []string {
	var out []string
	for _, st := range cfg.Statements {
		out = append(out, st.String())
	}
	return out
}

func TestParseConfigStatements(t *testing.T) {
	for _, tc := range []struct {
		name, src string
		want      []string // Statement.String() of each statement
	}{
		{"issue: redirect",
			`synproxy4 in inface eth0 dst 203.0.113.10 dport 2200 redirect to 22 loglimit "SYNPROXY SSH"`,
			[]string{`synproxy4 input inface eth0 dst 203.0.113.10/32 dport 2200 redirect to 22 loglimit "SYNPROXY SSH"`}},
		{"issue: dnat to an IPv6 server",
			`synproxy6 forward inface eth0 dst 2001:db8::10 dport 80,443 dnat to [2001:db8:1::5]`,
			[]string{`synproxy6 forward inface eth0 dst 2001:db8::10/128 dport 80,443 dnat to [2001:db8:1::5]`}},
		{"firehol: accept",
			`ipv4 synproxy input inface eth0 dst 1.2.3.4 dport 80 accept`,
			[]string{`synproxy4 input inface eth0 dst 1.2.3.4/32 dport 80 accept`}},
		{"firehol: dnat",
			`ipv4 synproxy forward inface eth0 dst 1.2.3.4 dport 80 dnat to 10.1.1.1`,
			[]string{`synproxy4 forward inface eth0 dst 1.2.3.4/32 dport 80 dnat to 10.1.1.1`}},
		{"firehol: dnat with a port",
			`ipv4 synproxy forward inface eth0 dst 1.2.3.4 dport 80 dnat to 10.1.1.1:8080`,
			[]string{`synproxy4 forward inface eth0 dst 1.2.3.4/32 dport 80 dnat to 10.1.1.1:8080`}},
		{"firehol: dnat to a port",
			`synproxy4 pass inface eth0 dst 1.2.3.4 dport 80 dnat to :8080`,
			[]string{`synproxy4 forward inface eth0 dst 1.2.3.4/32 dport 80 dnat to :8080`}},
		{"firehol: custom action",
			`ipv4 synproxy input inface eth0 dst 1.2.3.4 dport 80 action TRAP_AND_DROP`,
			[]string{`synproxy4 input inface eth0 dst 1.2.3.4/32 dport 80 action TRAP_AND_DROP`}},
		{"firehol: src not, a quoted list",
			`synproxy4 input inface eth0 src not "10.0.0.0/8 192.168.0.0/16" dst 1.2.3.4 dport 80 accept`,
			[]string{`synproxy4 input inface eth0 src not 10.0.0.0/8,192.168.0.0/16 dst 1.2.3.4/32 dport 80 accept`}},
		{"firehol: a range",
			`synproxy4 input inface eth0 dst 10.0.0.1-10.0.0.10 dport 80 accept`,
			[]string{`synproxy4 input inface eth0 dst 10.0.0.1/32,10.0.0.2/31,10.0.0.4/30,10.0.0.8/31,10.0.0.10/32 dport 80 accept`}},
		{"firehol: the thread's web server",
			`synproxy4 pass inface eth0 dst 198.51.100.1 dport 80 dnat to 192.168.1.2 loglimit "SYNPROXY web at"`,
			[]string{`synproxy4 forward inface eth0 dst 198.51.100.1/32 dport 80 dnat to 192.168.1.2 loglimit "SYNPROXY web at"`}},
		{"ports: sorted, merged, N:M",
			`synproxy4 in dport "443, 80,80 81-90" sport not 85:100,1 accept`,
			[]string{`synproxy4 input sport not 1,85-100 dport 80-90,443 accept`}},
		{"addresses: repeated and covered items merged, the rest in order",
			`synproxy in dst 192.0.2.7,2001:db8::1,192.0.2.0/24,[2001:db8::1],192.0.2.7 dport 80 accept`,
			[]string{`synproxy4 input dst 192.0.2.0/24 dport 80 accept`, `synproxy6 input dst 2001:db8::1/128 dport 80 accept`}},
		{"ipv6 in brackets, prefixes and ranges",
			`synproxy6 in dst [2001:db8::1],2001:db8:1::/48,[2001:db8::10]-[2001:db8::12] dport 22 reject`,
			[]string{`synproxy6 input dst 2001:db8::1/128,2001:db8:1::/48,2001:db8::10/127,2001:db8::12/128 dport 22 reject`}},
		{"outface, drop, no to",
			`ipv6 synproxy6 pass inface eth0,eth1 outface not eth2 dport 25 drop`,
			[]string{`synproxy6 forward inface eth0,eth1 outface not eth2 dport 25 drop`}},
		{"redirect and dnat without to",
			"synproxy4 in dport 2200 redirect 22\nsynproxy6 in dport 80 dnat [2001:db8::5]:8080",
			[]string{`synproxy4 input dport 2200 redirect to 22`, `synproxy6 input dport 80 dnat to [2001:db8::5]:8080`}},
		{"bare IPv6 dnat target",
			`synproxy6 in dport 80 dnat to 2001:db8::5`,
			[]string{`synproxy6 input dport 80 dnat to [2001:db8::5]`}},
		{"every port, every address",
			`synproxy4 in inface eth0 action TRAP_AND_REJECT`,
			[]string{`synproxy4 input inface eth0 action TRAP_AND_REJECT`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := mustParse(t, tc.src, nil)
			if got := stmtStrings(cfg); !slices.Equal(got, tc.want) {
				t.Errorf("statements:\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestParseConfigLexing(t *testing.T) {
	src := "\ufeff# a comment line\n" +
		"\n" +
		"synproxy4 in \\\n" +
		"    inface eth0 \\  \n" + // blanks after the backslash are forgiven
		"    dst 192.0.2.1 dport 80,\\\n" + // a backslash inside a word joins it with the next line
		"443 accept   # a trailing comment\n" +
		"synproxy4 in inface 'eth1' dst \"192.0.2.2\" dport 22 accept loglimit \"say \\\"hi\\\"\"\r\n" +
		"  synproxy4 in inface eth2 dst 192.0.2.3 dport 22 accept loglimit 'a # b' # not 'a'\n" +
		"synproxy4 in inface eth3 dst 192.0.2.4 dport 22 accept#comment\n" +
		"synproxy4 in inface e\"th\"4 dst 192.0.2.5 dport \"22 \\\n" +
		"23\" accept\n" +
		"synproxy4 in inface eth5 dport \"22 \\\r\n" + // a CRLF file, continued inside quotes
		"24\" \\\r\n" +
		"accept\r\n"
	cfg := mustParse(t, src, nil)
	want := []struct {
		line     int
		text     string
		str      string
		logLimit string
	}{
		{3, `synproxy4 in inface eth0 dst 192.0.2.1 dport 80,443 accept`,
			`synproxy4 input inface eth0 dst 192.0.2.1/32 dport 80,443 accept`, ""},
		{7, `synproxy4 in inface 'eth1' dst "192.0.2.2" dport 22 accept loglimit "say \"hi\""`,
			`synproxy4 input inface eth1 dst 192.0.2.2/32 dport 22 accept loglimit "say \"hi\""`, `say "hi"`},
		{8, `synproxy4 in inface eth2 dst 192.0.2.3 dport 22 accept loglimit 'a # b'`,
			`synproxy4 input inface eth2 dst 192.0.2.3/32 dport 22 accept loglimit "a # b"`, "a # b"},
		{9, `synproxy4 in inface eth3 dst 192.0.2.4 dport 22 accept`,
			`synproxy4 input inface eth3 dst 192.0.2.4/32 dport 22 accept`, ""},
		{10, `synproxy4 in inface e"th"4 dst 192.0.2.5 dport "22 23" accept`,
			`synproxy4 input inface eth4 dst 192.0.2.5/32 dport 22-23 accept`, ""},
		{12, `synproxy4 in inface eth5 dport "22 24" accept`, `synproxy4 input inface eth5 dport 22,24 accept`, ""},
	}
	if len(cfg.Statements) != len(want) {
		t.Fatalf("%d statements, want %d: %q", len(cfg.Statements), len(want), stmtStrings(cfg))
	}
	for i, w := range want {
		st := cfg.Statements[i]
		if st.Pos != (Pos{File: "test.conf", Line: w.line}) || st.Text != w.text || st.String() != w.str || st.LogLimit != w.logLimit {
			t.Errorf("statement %d: pos %v, text %q, %q, loglimit %q;\nwant line %d, text %q, %q, loglimit %q",
				i, st.Pos, st.Text, st, st.LogLimit, w.line, w.text, w.str, w.logLimit)
		}
	}
}

func TestParseConfigOptions(t *testing.T) {
	type want struct {
		opts TCPOptions
		ttl  uint8
	}
	def4 := want{DefaultOptions(IPv4), DefaultTTL}
	def6 := want{DefaultOptions(IPv6), DefaultTTL}
	stack := &Stack{MTU: 9000, WScale: 10}
	const stmts = "synproxy4 in dport 80 accept\nsynproxy6 in dport 80 accept\n"
	for _, tc := range []struct {
		name  string
		src   string
		stack *Stack
		want  []want // of the IPv4 and the IPv6 statement
	}{
		{"FireHOL defaults", stmts, nil, []want{def4, def6}},
		{"the stack's options", stmts, stack, []want{
			{TCPOptions{MSS: 8960, WScale: 10, SACK: true, Timestamps: true}, 64},
			{TCPOptions{MSS: 8940, WScale: 10, SACK: true, Timestamps: true}, 64}}},
		{"options over the stack", "options wscale 5 nosack ecn ttl 100\n" + stmts, stack, []want{
			{TCPOptions{MSS: 8960, WScale: 5, Timestamps: true, ECN: true}, 100},
			{TCPOptions{MSS: 8940, WScale: 5, Timestamps: true, ECN: true}, 100}}},
		{"statement over options, options anywhere",
			"synproxy4 in dport 80 mss 1380 sack ttl 9 notimestamps accept\nsynproxy6 in dport 80 accept\noptions mss 1400 nosack", nil, []want{
				{TCPOptions{MSS: 1380, WScale: 7, SACK: true}, 9},
				{TCPOptions{MSS: 1400, WScale: 7, Timestamps: true}, 64}}},
		{"FIREHOL_SYNPROXY_OPTIONS, FireHOL's value",
			`FIREHOL_SYNPROXY_OPTIONS="--sack-perm --timestamp --wscale 7 --mss 1460"` + "\n" + stmts, stack, []want{
				{TCPOptions{MSS: 1460, WScale: 7, SACK: true, Timestamps: true}, 64},
				{TCPOptions{MSS: 1460, WScale: 7, SACK: true, Timestamps: true}, 64}}},
		{"FIREHOL_SYNPROXY_OPTIONS: absent flags are off, absent numbers the base",
			`FIREHOL_SYNPROXY_OPTIONS="--timestamp"` + "\n" + stmts, stack, []want{
				{TCPOptions{MSS: 8960, WScale: 10, Timestamps: true}, 64},
				{TCPOptions{MSS: 8940, WScale: 10, Timestamps: true}, 64}}},
		{"export FIREHOL_SYNPROXY_OPTIONS, --opt=N, --timestamps",
			`export FIREHOL_SYNPROXY_OPTIONS='--mss=1400 --wscale=3 --ecn --timestamps'` + "\n" + stmts, nil, []want{
				{TCPOptions{MSS: 1400, WScale: 3, Timestamps: true, ECN: true}, 64},
				{TCPOptions{MSS: 1400, WScale: 3, Timestamps: true, ECN: true}, 64}}},
		{"statement over FIREHOL_SYNPROXY_OPTIONS",
			`FIREHOL_SYNPROXY_OPTIONS=""` + "\nsynproxy in dport 80 sack timestamps wscale 2 accept", nil, []want{
				{TCPOptions{MSS: 1460, WScale: 2, SACK: true, Timestamps: true}, 64},
				{TCPOptions{MSS: 1440, WScale: 2, SACK: true, Timestamps: true}, 64}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := mustParse(t, tc.src, tc.stack)
			if len(cfg.Statements) != len(tc.want) {
				t.Fatalf("%d statements, want %d", len(cfg.Statements), len(tc.want))
			}
			for i, st := range cfg.Statements {
				if st.Options != tc.want[i].opts || st.TTL != tc.want[i].ttl {
					t.Errorf("%s: %s ttl %d; want %s ttl %d", st.Family, st.Options, st.TTL, tc.want[i].opts, tc.want[i].ttl)
				}
			}
		})
	}
}

func TestParseConfigSettings(t *testing.T) {
	def := DefaultSettings()
	for _, tc := range []struct {
		src  string
		want Settings
	}{
		{"", def},
		{"mark 0x10000000", Settings{Mark: 0x10000000, MarkMask: 0x10000000, Loopback: LoopbackStrict}},
		{"mark 0x100/0xF00", Settings{Mark: 0x100, MarkMask: 0xf00, Loopback: LoopbackStrict}},
		{"mark 256/3840", Settings{Mark: 0x100, MarkMask: 0xf00, Loopback: LoopbackStrict}},
		{"loopback loose", Settings{Mark: def.Mark, MarkMask: def.MarkMask, Loopback: LoopbackLoose}},
		{"loopback none", Settings{Mark: def.Mark, MarkMask: def.MarkMask, Loopback: LoopbackNone}},
		{"FIREHOL_TRUST_LOOPBACK=no", Settings{Mark: def.Mark, MarkMask: def.MarkMask, Loopback: LoopbackNone}},
		{"FIREHOL_TRUST_LOOPBACK=0", Settings{Mark: def.Mark, MarkMask: def.MarkMask, Loopback: LoopbackNone}},
		{"FIREHOL_TRUST_LOOPBACK=1", Settings{Mark: def.Mark, MarkMask: def.MarkMask, Loopback: LoopbackLoose}},
		{`export FIREHOL_TRUST_LOOPBACK="strict"`, def},
		{"cookie-secret-file /etc/xsyn/cookie.key", Settings{Mark: def.Mark, MarkMask: def.MarkMask, Loopback: LoopbackStrict, CookieSecretFile: "/etc/xsyn/cookie.key"}},
		{`cookie-secret-file "/etc/xsyn/my key"`, Settings{Mark: def.Mark, MarkMask: def.MarkMask, Loopback: LoopbackStrict, CookieSecretFile: "/etc/xsyn/my key"}},
		{"cookie-secret-file cookie.key", Settings{Mark: def.Mark, MarkMask: def.MarkMask, Loopback: LoopbackStrict, CookieSecretFile: "cookie.key"}},
	} {
		cfg := mustParse(t, tc.src+"\nsynproxy4 in dport 80 accept", nil)
		if cfg.Settings != tc.want {
			t.Errorf("%q: settings %+v; want %+v", tc.src, cfg.Settings, tc.want)
		}
	}
}

// A relative cookie-secret-file is the configuration's neighbour, wherever xsyn runs; the file
// is only named, not read, so a configuration can be explained where the secret is not.
func TestParseConfigCookieSecretFile(t *testing.T) {
	for _, tc := range []struct{ conf, line, want string }{
		{"/etc/xsyn/xsyn.conf", "cookie-secret-file cookie.key", "/etc/xsyn/cookie.key"},
		{"/etc/xsyn/xsyn.conf", "cookie-secret-file ../secrets/cookie.key", "/etc/secrets/cookie.key"},
		{"/etc/xsyn/xsyn.conf", "cookie-secret-file /run/keys/xsyn", "/run/keys/xsyn"},
		{"conf/xsyn.conf", "cookie-secret-file cookie.key", "conf/cookie.key"},
	} {
		cfg, err := ParseConfig(tc.conf, []byte(tc.line+"\nsynproxy4 in dport 80 accept\n"), nil)
		if err != nil || cfg.Settings.CookieSecretFile != tc.want {
			t.Errorf("%s in %s: %q, %v; want %q", tc.line, tc.conf, cfg.Settings.CookieSecretFile, err, tc.want)
		}
	}
	s, err := mustParse(t, "cookie-secret-file /nonexistent/cookie.key\nsynproxy4 in dport 80 accept", nil).For("eth0")
	if err != nil || s.Settings.CookieSecretFile != "/nonexistent/cookie.key" || s.CookieKey != nil {
		t.Errorf("For: settings %+v, key %v, %v; want the file named and no key read", s.Settings, s.CookieKey, err)
	}
}

// path picks each statement's path: the statement's own word, else the options line's, else
// auto, which takes the handoff where the statement allows it.
func TestParseConfigPath(t *testing.T) {
	type want struct {
		via  Via
		path Path
		why  string // in PathReason
	}
	for _, tc := range []struct {
		name, src string
		want      []want
	}{
		{"auto: an input accept takes the handoff", "synproxy4 in dport 80 accept", []want{{ViaAuto, PathHandoff, ""}}},
		{"auto, written", "synproxy4 in dport 80 path auto accept", []want{{ViaAuto, PathHandoff, ""}}},
		{"auto: redirect is SYNPROXY's", "synproxy4 in dport 2200 redirect to 22",
			[]want{{ViaAuto, PathSynproxy, "its action is redirect to 22, which only netfilter can carry out"}}},
		{"auto: forward is SYNPROXY's", "synproxy6 forward dport 80 dnat to [2001:db8::5]",
			[]want{{ViaAuto, PathSynproxy, "it forwards to another host"}}},
		{"auto: a source match is SYNPROXY's", "synproxy4 in src 10.0.0.0/8 dport 80 accept",
			[]want{{ViaAuto, PathSynproxy, "XDP cannot answer it: it matches the source address"}}},
		{"asked for synproxy", "synproxy4 in dport 80 path synproxy accept", []want{{ViaSynproxy, PathSynproxy, "asked for"}}},
		{"both families", "synproxy in dport 80 path handoff accept", []want{{ViaHandoff, PathHandoff, ""}, {ViaHandoff, PathHandoff, ""}}},
		{"options: the default", "options path synproxy\nsynproxy4 in dport 80 accept\nsynproxy4 in dport 2200 redirect to 22",
			[]want{{ViaSynproxy, PathSynproxy, "asked for"}, {ViaSynproxy, PathSynproxy, "asked for"}}},
		{"the statement over options", "synproxy4 in dport 80 path handoff accept\noptions mss 1400 path synproxy\nsynproxy4 in dport 81 accept",
			[]want{{ViaHandoff, PathHandoff, ""}, {ViaSynproxy, PathSynproxy, "asked for"}}},
		{"options handoff, a statement auto", "options path handoff\nsynproxy4 in dport 80 accept\nsynproxy4 in dport 22 path auto reject",
			[]want{{ViaHandoff, PathHandoff, ""}, {ViaAuto, PathSynproxy, "its action is reject"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := mustParse(t, tc.src, nil).For("eth0")
			if err != nil {
				t.Fatal(err)
			}
			if len(s.Statements) != len(tc.want) {
				t.Fatalf("%d statements, want %d", len(s.Statements), len(tc.want))
			}
			for i, st := range s.Statements {
				w := tc.want[i]
				if st.Via != w.via || st.Path != w.path || (w.why == "") != (st.PathReason == "") || !strings.Contains(st.PathReason, w.why) {
					t.Errorf("%s: via %s, path %s (%q); want via %s, path %s (%q)", st, st.Via, st.Path, st.PathReason, w.via, w.path, w.why)
				}
			}
			if len(s.Statements) == 1 {
				for _, svc := range s.Services {
					if want := s.Statements[0].Path == PathHandoff; svc.Handoff != want {
						t.Errorf("service %s: handoff %v, want %v", svc, svc.Handoff, want)
					}
				}
			}
		})
	}

	// Two statements for the same destination on different paths: one SYN-ACK cannot serve
	// both. A statement that demands the handoff is an error at its line; one on auto follows
	// its SYNPROXY neighbour (FireHOL's input accept beside a forward dnat keeps working).
	for _, src := range []string{
		"synproxy4 in dst 192.0.2.1 dport 80 path handoff accept\nsynproxy4 in dport 80 path synproxy accept",
		"synproxy4 in dst 192.0.2.1 dport 80 path handoff accept\nsynproxy4 in dport 80 reject",
	} {
		_, err := mustParse(t, src, nil).For("eth0")
		if !errors.Is(err, ErrInvalid) || !strings.HasPrefix(err.Error(), "test.conf:1: path handoff is not possible: it matches destinations of test.conf:2") ||
			!strings.Contains(err.Error(), "give both the same `path`") {
			t.Errorf("%q: %v; want an error at test.conf:1 saying both need the same path", src, err)
		}
	}
	for _, src := range []string{
		"synproxy4 in dst 192.0.2.1 dport 80 accept\nsynproxy4 in dport 80 path synproxy accept",
		"synproxy4 in dst 192.0.2.1 dport 80 accept\nsynproxy4 in dport 80 reject",
		"synproxy4 in dport 80 reject\nsynproxy4 in dst 192.0.2.1 dport 80 accept",
	} {
		s, err := mustParse(t, src, nil).For("eth0")
		if err != nil {
			t.Fatalf("%q: %v", src, err)
		}
		for _, st := range s.Statements {
			if st.Path != PathSynproxy {
				t.Errorf("%q: %s takes the %s path; want SYNPROXY for both", src, st, st.Path)
			}
		}
		for _, svc := range s.Services {
			if svc.Handoff {
				t.Errorf("%q: service %s on the handoff path", src, svc)
			}
		}
	}
}

func TestParseConfigBothFamilies(t *testing.T) {
	for _, tc := range []struct {
		src  string
		want []string
	}{
		{"synproxy in inface eth0 dport 80 accept", []string{
			"synproxy4 input inface eth0 dport 80 accept", "synproxy6 input inface eth0 dport 80 accept"}},
		{"synproxy46 in dst 192.0.2.1,2001:db8::1 dport 80 accept", []string{
			"synproxy4 input dst 192.0.2.1/32 dport 80 accept", "synproxy6 input dst 2001:db8::1/128 dport 80 accept"}},
		{"synproxy in dst 192.0.2.1 dport 80 accept", []string{"synproxy4 input dst 192.0.2.1/32 dport 80 accept"}},
		{"synproxy in src 2001:db8::/32 dport 80 accept", []string{"synproxy6 input src 2001:db8::/32 dport 80 accept"}},
		// A negated list that names only the other family excludes nothing in this one.
		{"synproxy in src not 10.0.0.0/8 dport 80 accept", []string{
			"synproxy4 input src not 10.0.0.0/8 dport 80 accept", "synproxy6 input dport 80 accept"}},
		{"synproxy in dport 80 dnat to 192.0.2.9", []string{"synproxy4 input dport 80 dnat to 192.0.2.9"}},
		{"synproxy in dport 80 dnat to [2001:db8::9]:80", []string{"synproxy6 input dport 80 dnat to [2001:db8::9]:80"}},
		{"synproxy in dport 80 dnat to :8080", []string{
			"synproxy4 input dport 80 dnat to :8080", "synproxy6 input dport 80 dnat to :8080"}},
		{"ipv6 synproxy in dport 80 redirect to 8080", []string{"synproxy6 input dport 80 redirect to 8080"}},
	} {
		cfg := mustParse(t, tc.src, nil)
		if got := stmtStrings(cfg); !slices.Equal(got, tc.want) {
			t.Errorf("%q:\n got %q\nwant %q", tc.src, got, tc.want)
		}
		for _, st := range cfg.Statements {
			if st.Text != tc.src || st.Pos.Line != 1 {
				t.Errorf("%q: %s has text %q, line %d", tc.src, st, st.Text, st.Pos.Line)
			}
		}
	}
}

func TestConfigFor(t *testing.T) {
	cfg := mustParse(t, `
synproxy4 in inface eth0 dst 192.0.2.1 dport 80 accept
synproxy4 in inface eth1,eth2 dst 192.0.2.2 dport 22 accept
synproxy4 in inface not eth0 dst 192.0.2.3 dport 25 accept
synproxy6 in dst 2001:db8::1 dport 443 accept
`, nil)
	if got, want := cfg.Interfaces(), []string{"eth0", "eth1", "eth2"}; !slices.Equal(got, want) {
		t.Errorf("Interfaces() = %q, want %q", got, want)
	}
	for _, tc := range []struct {
		iface    string
		lines    []int
		services []string
	}{
		{"eth0", []int{2, 5}, []string{"ipv4 192.0.2.1/32 port 80", "ipv6 2001:db8::1/128 port 443"}},
		{"eth1", []int{3, 4, 5}, []string{"ipv4 192.0.2.2/32 port 22", "ipv4 192.0.2.3/32 port 25", "ipv6 2001:db8::1/128 port 443"}},
		{"eth9", []int{4, 5}, []string{"ipv4 192.0.2.3/32 port 25", "ipv6 2001:db8::1/128 port 443"}},
	} {
		s, err := cfg.For(tc.iface)
		if err != nil {
			t.Errorf("For(%s): %v", tc.iface, err)
			continue
		}
		var lines []int
		for _, st := range s.Statements {
			lines = append(lines, st.Pos.Line)
		}
		var svcs []string
		for _, svc := range s.Services {
			svcs = append(svcs, svc.String())
		}
		if !slices.Equal(lines, tc.lines) || !slices.Equal(svcs, tc.services) || s.Settings != cfg.Settings {
			t.Errorf("For(%s): statements of lines %v, services %q; want lines %v, services %q",
				tc.iface, lines, svcs, tc.lines, tc.services)
		}
	}

	only := mustParse(t, "synproxy4 in inface eth0,eth1 dport 80 accept", nil)
	_, err := only.For("eth2")
	if !errors.Is(err, ErrNoStatement) || !strings.Contains(err.Error(), "test.conf names eth0, eth1") {
		t.Errorf("For(eth2) of a configuration for eth0, eth1: %v; want ErrNoStatement naming eth0, eth1", err)
	}
	if _, err := (Config{}).For("eth0"); !errors.Is(err, ErrNoStatement) || !strings.Contains(err.Error(), "no synproxy statement") {
		t.Errorf("For of an empty configuration: %v", err)
	}

	// Statements of different options for the same destinations: Compile refuses them, for the
	// interface both apply to.
	clash := mustParse(t, "synproxy4 in inface eth0 dport 80 accept\nsynproxy4 in dport 80 mss 1400 accept", nil)
	if _, err := clash.For("eth0"); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "different TCP options") {
		t.Errorf("For(eth0) of clashing statements: %v", err)
	}
	if _, err := clash.For("eth1"); err != nil {
		t.Errorf("For(eth1), where only one statement applies: %v", err)
	}
}

func TestParseConfigFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "xsyn.conf")
	if err := os.WriteFile(path, []byte("synproxy4 in dport 80 accept\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := ParseConfigFile(path, nil)
	if err != nil || len(cfg.Statements) != 1 || cfg.Statements[0].Pos != (Pos{File: path, Line: 1}) {
		t.Errorf("ParseConfigFile: %+v, %v", cfg.Statements, err)
	}
	if _, err := ParseConfigFile(path+".missing", nil); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ParseConfigFile of a missing file: %v; want fs.ErrNotExist", err)
	}
}

func TestParseConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		src  string
		pos  string // FILE:LINE:COL
		want string // in the message
	}{
		// The statement.
		{"interface eth0 lan", "b.conf:1:1", `unknown statement "interface": expected synproxy4, synproxy6, synproxy, options, mark, loopback or cookie-secret-file`},
		{"  synproxy7 in accept", "b.conf:1:3", `unknown statement "synproxy7"`},
		{"synproxy4", "b.conf:1:10", `expected input, in, forward or pass after "synproxy4"`},
		{"synproxy4 out accept", "b.conf:1:11", `expected input, in, forward or pass after "synproxy4", got "out"`},
		{"ipv4 synproxy6 in accept", "b.conf:1:6", "ipv4 synproxy6: the families disagree"},
		{"ipv4 server http accept", "b.conf:1:6", `expected synproxy after "ipv4", got "server"`},
		{"ipv6", "b.conf:1:5", `expected synproxy after "ipv6"`},
		{"synproxy4 in dstt 1.2.3.4 accept", "b.conf:1:14", `unknown parameter "dstt": expected inface, outface, src, dst, sport, dport, mss, wscale, sack, nosack, timestamps, notimestamps, ecn, noecn, ttl, path, on-demand or an action (accept, reject, drop, redirect, dnat, action)`},
		{"synproxy4 in dport 80 dport 81 accept", "b.conf:1:23", `"dport" given twice`},
		{"synproxy4 in sack nosack accept", "b.conf:1:19", `"nosack" contradicts "sack"`},
		{"synproxy4 in dport 80", "b.conf:1:22", "expected an action (accept, reject, drop, redirect, dnat, action) at the end of the statement"},
		{"synproxy4 in \\\n  dport 80 bogus accept", "b.conf:2:12", `unknown parameter "bogus"`},
		{"synproxy4 in \\\n  dport 80", "b.conf:2:11", "expected an action"},
		{"synproxy4 in accept with tcp-reset", "b.conf:1:21", `unexpected "with" after the action: only loglimit "TEXT" may follow it`},
		{`synproxy4 in loglimit "x" accept`, "b.conf:1:14", "loglimit goes after the action"},
		{"synproxy4 in accept loglimit", "b.conf:1:29", `expected the log text after "loglimit"`},
		{`synproxy4 in accept loglimit ""`, "b.conf:1:30", "loglimit text is empty"},
		{`synproxy4 in accept loglimit "much too long for an iptables LOG"`, "b.conf:1:30", "is 33 characters; iptables LOG prefixes hold at most 29"},
		{"synproxy4 in accept loglimit a loglimit b", "b.conf:1:32", `"loglimit" given twice`},

		// Lists.
		{"synproxy4 in dport", "b.conf:1:19", `expected ports after "dport"`},
		{"synproxy4 in dport not", "b.conf:1:23", `expected ports after "dport not"`},
		{`synproxy4 in dport "" accept`, "b.conf:1:20", `expected ports after "dport", got an empty list`},
		{"synproxy4 in dport 80,http accept", "b.conf:1:23", `expected a port or a range N-M after "dport", got "http" (service names are not looked up)`},
		{`synproxy4 in sport not "80 0" accept`, "b.conf:1:28", "port 0 is outside 1-65535"},
		{"synproxy4 in dport 90-80 accept", "b.conf:1:20", "port range 90-80 runs backwards"},
		{"synproxy4 in dport 1:70000 accept", "b.conf:1:20", "port 70000 is outside 1-65535"},
		{"synproxy4 in dst 10.0.0.1/8 accept", "b.conf:1:18", "dst 10.0.0.1/8 has host bits set (did you mean 10.0.0.0/8?)"},
		{"synproxy4 in dst 2001:db8::1 accept", "b.conf:1:18", "dst 2001:db8::1 is IPv6, but synproxy4 takes IPv4 addresses"},
		{"synproxy6 in src not 2001:db8::1,192.0.2.1 accept", "b.conf:1:34", "src not 192.0.2.1 is IPv4, but synproxy6 takes IPv6 addresses"},
		{"ipv4 synproxy in dst 2001:db8::1 accept", "b.conf:1:22", `is IPv6, but ipv4 synproxy takes IPv4 addresses`},
		{"synproxy in dst fe80::1%eth0 accept", "b.conf:1:17", "dst fe80::1%eth0 has a zone"},
		{"synproxy in dst ::ffff:192.0.2.1 accept", "b.conf:1:17", "dst ::ffff:192.0.2.1 is IPv4-mapped; write 192.0.2.1"},
		{"synproxy in dst 10.0.0.10-10.0.0.1 accept", "b.conf:1:17", "dst range 10.0.0.10-10.0.0.1 runs backwards"},
		{"synproxy in dst 10.0.0.1-2001:db8::1 accept", "b.conf:1:17", "mixes IPv4 and IPv6"},
		{"synproxy in dst example.com accept", "b.conf:1:17", `expected addresses, prefixes or ranges a-b after "dst", got "example.com" (host names are not resolved)`},
		{"synproxy in dst 10.0.0.0/33 accept", "b.conf:1:17", "dst 10.0.0.0/33: the prefix length must be 0-32"},
		{"synproxy4 in inface ppp+ accept", "b.conf:1:21", `expected interface names after "inface" (letters, digits, '.', '_' and '-'; no wildcards), got "ppp+"`},
		{"synproxy4 in outface eth0,averyveryverylongname accept", "b.conf:1:27", "interface names are at most 15 characters"},
		{`synproxy4 in inface "${wan}" accept`, "b.conf:1:22", "${wan}\": shell variables are not expanded; write the value"},

		// TCP options.
		{"synproxy4 in mss 100 accept", "b.conf:1:18", "mss 100 is outside 536-65495"},
		{"synproxy4 in mss big accept", "b.conf:1:18", `expected a number 536-65495 after "mss", got "big"`},
		{"synproxy4 in wscale 15 accept", "b.conf:1:21", "wscale 15 is outside 0-14"},
		{"synproxy4 in ttl 0 accept", "b.conf:1:18", "ttl 0 is outside 1-255"},
		{"synproxy4 in ttl", "b.conf:1:17", `expected a number 1-255 after "ttl"`},

		// Actions.
		{"synproxy4 in inface eth0 dst 203.0.113.10 dport 2200 redirect to ssh", "b.conf:1:66", `expected a port after "redirect to", got "ssh"`},
		{"synproxy4 in redirect", "b.conf:1:22", `expected a port after "redirect"`},
		{"synproxy4 in redirect to 0", "b.conf:1:26", "redirect to 0 is outside 1-65535"},
		{"synproxy4 in dnat to", "b.conf:1:21", `expected a target (IP, IP:PORT, [IPv6], [IPv6]:PORT or :PORT) after "dnat to"`},
		{"synproxy4 in dnat to 2001:db8::5", "b.conf:1:22", "dnat to 2001:db8::5 is IPv6, but synproxy4 takes IPv4 addresses"},
		{"synproxy6 in dnat to 192.0.2.5:80", "b.conf:1:22", "dnat to 192.0.2.5:80 is IPv4, but synproxy6 takes IPv6 addresses"},
		{"synproxy4 in dnat to 10.0.0.1-10.0.0.5", "b.conf:1:22", "address ranges are not supported"},
		{"synproxy4 in dnat to 10.0.0.1:80-90", "b.conf:1:22", "port ranges are not supported"},
		{"synproxy4 in dnat to 10.0.0.1:99999", "b.conf:1:22", "port 99999 is outside 1-65535"},
		{"synproxy4 in dnat to :", "b.conf:1:22", "expected IP, IP:PORT, [IPv6], [IPv6]:PORT or :PORT"},
		{"synproxy4 in dnat to 10.0.0.1:", "b.conf:1:22", "expected IP, IP:PORT"},
		{"synproxy6 in dnat to [2001:db8::1]:", "b.conf:1:22", "expected IP, IP:PORT"},
		{"synproxy6 in dnat to [2001:db8::1", "b.conf:1:22", "expected IP, IP:PORT"},
		{"synproxy6 in dnat to 2001:db8::1:80:x", "b.conf:1:22", "write an IPv6 address with a port as [ADDRESS]:PORT"},
		{"synproxy4 in action", "b.conf:1:20", `expected a chain name after "action"`},
		{"synproxy4 in action XSYN-FOO", "b.conf:1:21", `action: chain "XSYN-FOO" is one of xsyn's own`},
		{"synproxy4 in action ACCEPT", "b.conf:1:21", "is not a user chain; use accept, drop or reject"},

		// The path.
		{"synproxy4 in path", "b.conf:1:18", `expected auto, synproxy or handoff after "path"`},
		{"synproxy4 in path fast accept", "b.conf:1:19", `expected auto, synproxy or handoff after "path", got "fast"`},
		{"synproxy4 in path synproxy path handoff accept", "b.conf:1:28", `"path" given twice`},
		{"synproxy4 in dport 80 accept path handoff", "b.conf:1:30", `unexpected "path" after the action: only loglimit "TEXT" may follow it`},
		{"synproxy4 in dport 22 path handoff redirect to 2222", "b.conf:1:28",
			"path handoff is not possible: its action is redirect to 2222, which only netfilter can carry out; leave path out (or write path synproxy)"},
		{"synproxy4 in dport 25 path handoff reject", "b.conf:1:28", "path handoff is not possible: its action is reject, which only netfilter can carry out"},
		{"synproxy4 forward dport 80 path handoff dnat to 10.0.0.5", "b.conf:1:33", "path handoff is not possible: it forwards to another host (only SYNPROXY can open that connection)"},
		{"synproxy4 forward dport 80 path handoff accept", "b.conf:1:33", "path handoff is not possible: it forwards to another host"},
		{"synproxy4 in src 10.0.0.0/8 dport 80 path handoff accept", "b.conf:1:43", "path handoff is not possible: XDP cannot answer it: it matches the source address"},
		{"synproxy in path handoff action TRAP", "b.conf:1:18", "path handoff is not possible: its action is action TRAP"},
		{"synproxy4 in path handoff accept", "b.conf:1:19",
			"path handoff is not possible: XDP cannot answer it: it covers 65535 destination ports and prefixes; the XDP maps hold 4096"},
		{"options path handoff\n\nsynproxy4 in dport 80 drop", "b.conf:3:1",
			"path handoff, from the options line (line 1), is not possible here: its action is drop, which only netfilter can carry out; give this statement path auto or path synproxy"},

		// Families of synproxy / synproxy46.
		{"synproxy in src 192.0.2.1 dst 2001:db8::1 accept", "b.conf:1:1",
			"the statement applies to no family (ipv4: dst names no IPv4 address; ipv6: src names no IPv6 address)"},
		{"  synproxy46 in dst 2001:db8::1 dnat to 192.0.2.5", "b.conf:1:3", "ipv6: the dnat target is not IPv6"},

		// Lexing.
		{`synproxy4 in inface "eth0 accept`, "b.conf:1:21", `unterminated quote: no closing " on this line`},
		{"synproxy4 in inface 'eth0 accept\nsynproxy4 in accept", "b.conf:1:21", `unterminated quote: no closing ' on this line`},

		// Settings.
		{"options", "b.conf:1:8", `expected mss, wscale, sack, nosack, timestamps, notimestamps, ecn, noecn, ttl, path or on-demand after "options"`},
		{"options mss 1400 bogus", "b.conf:1:18", `unknown option "bogus"`},
		{"options wscale 20", "b.conf:1:16", "wscale 20 is outside 0-14"},
		{"options mss 1400\n\noptions wscale 3", "b.conf:3:1", `"options" given twice, first at line 1`},
		{"options mss 1400\nFIREHOL_SYNPROXY_OPTIONS=\"--mss 1400\"", "b.conf:2:1", `"FIREHOL_SYNPROXY_OPTIONS" given twice, first at line 1 as "options"`},
		{`FIREHOL_SYNPROXY_OPTIONS="--sack-perm --bogus"`, "b.conf:1:39", `unknown SYNPROXY option "--bogus": expected --mss N, --wscale N, --sack-perm, --timestamp or --ecn`},
		{`FIREHOL_SYNPROXY_OPTIONS="--mss"`, "b.conf:1:33", "expected a number after --mss"},
		{`FIREHOL_SYNPROXY_OPTIONS="--mss 100"`, "b.conf:1:33", "mss 100 is outside 536-65495"},
		{`FIREHOL_SYNPROXY_OPTIONS="--ecn --ecn"`, "b.conf:1:33", "--ecn given twice"},
		{`FIREHOL_SYNPROXY_OPTIONS="--ecn=1"`, "b.conf:1:27", "--ecn takes no value"},
		{"FIREHOL_SYNPROXY_OPTIONS=--mss 1460", "b.conf:1:32", `unexpected "1460" after FIREHOL_SYNPROXY_OPTIONS: quote the value`},
		{`FIREHOL_SYNPROXY_OPTIONS="$FIREHOL_SYNPROXY_OPTIONS --ecn"`, "b.conf:1:27", "shell variables are not expanded"},
		{"FIREHOL_LOG_MODE=NFLOG", "b.conf:1:1", "unknown setting FIREHOL_LOG_MODE: xsyn reads only FIREHOL_SYNPROXY_OPTIONS and FIREHOL_TRUST_LOOPBACK"},
		{"mark", "b.conf:1:5", `expected a mark VALUE[/MASK] (0x... or decimal) after "mark"`},
		{"mark xyz", "b.conf:1:6", `expected a mark VALUE[/MASK] after "mark" (32-bit, 0x... or decimal), got "xyz"`},
		{"mark 0x100000000", "b.conf:1:6", "expected a mark VALUE[/MASK]"},
		{"mark 0x1/0x1 extra", "b.conf:1:14", `unexpected "extra" after the mark`},
		{"mark 0x3/0x1", "b.conf:1:6", "mark 0x3 must be non-zero and inside its mask 0x1"},
		{"mark 0x1\nmark 0x2", "b.conf:2:1", `"mark" given twice, first at line 1`},
		{"loopback", "b.conf:1:9", `expected strict, loose or none after "loopback"`},
		{"loopback maybe", "b.conf:1:10", `expected strict, loose or none for the loopback policy, got "maybe"`},
		{"loopback loose strict", "b.conf:1:16", `unexpected "strict" after the loopback policy`},
		{"FIREHOL_TRUST_LOOPBACK=maybe", "b.conf:1:24", `got "maybe"`},
		{"options path", "b.conf:1:13", `expected auto, synproxy or handoff after "path"`},
		{"options path sometimes", "b.conf:1:14", `expected auto, synproxy or handoff after "path", got "sometimes"`},
		{"options path auto mss 1400 path handoff", "b.conf:1:28", `"path" given twice`},
		{"cookie-secret-file", "b.conf:1:19", `expected the file name of the cookie secret after "cookie-secret-file"`},
		{`cookie-secret-file ""`, "b.conf:1:20", `expected the file name of the cookie secret after "cookie-secret-file", got an empty word`},
		{"cookie-secret-file /etc/xsyn/a.key /etc/xsyn/b.key", "b.conf:1:36", `unexpected "/etc/xsyn/b.key" after the file name: quote a name with blanks`},
		{"cookie-secret-file a.key\ncookie-secret-file b.key", "b.conf:2:1", `"cookie-secret-file" given twice, first at line 1`},
		{`cookie-secret-file "$XSYN_KEY"`, "b.conf:1:21", "shell variables are not expanded"},
		{"cookie-secret /etc/xsyn/a.key", "b.conf:1:1", `unknown statement "cookie-secret"`},
		{"loopback strict\nFIREHOL_TRUST_LOOPBACK=strict", "b.conf:2:1", `"FIREHOL_TRUST_LOOPBACK" given twice, first at line 1 as "loopback"`},
		{"synproxy4 in dport 22 redirect to 2222\nFIREHOL_TRUST_LOOPBACK=loose", "b.conf:1:23", "redirect needs `loopback strict`, but line 2 sets loose"},
	} {
		wantConfigError(t, tc.src, tc.pos, tc.want)
	}
}

func TestParseConfigReportsEveryLine(t *testing.T) {
	src := `# xsyn.conf
options mss 1400 wscale 99
synproxy4 in inface eth0 dport 80 accept
synproxy4 in inface eth0 dport http accept
mark 0x0
synproxy4 in inface eth0 dport 443 accept
synproxy6 in dst 192.0.2.1 accept
synproxy4 in \
   redirect to 22
loopback loose
`
	cfg, err := ParseConfig("eth0.conf", []byte(src), nil)
	if err == nil || len(cfg.Statements) != 0 || cfg.Settings != (Settings{}) {
		t.Fatalf("ParseConfig = %+v, %v; want only errors", cfg, err)
	}
	var got []string
	for _, e := range configErrors(t, err) {
		got = append(got, e.Error()[:strings.Index(e.Error(), ": ")])
	}
	want := []string{"eth0.conf:2:25", "eth0.conf:4:32", "eth0.conf:5:6", "eth0.conf:7:18", "eth0.conf:9:4"}
	if !slices.Equal(got, want) {
		t.Errorf("errors at %q; want at %q:\n%v", got, want, err)
	}

	var many strings.Builder
	for range 30 {
		many.WriteString("synproxy4 in bogus accept\n")
	}
	errs := configErrors(t, func() error { _, err := ParseConfig("m.conf", []byte(many.String()), nil); return err }())
	if len(errs) != maxErrors+1 || errs[maxErrors-1].Line != maxErrors || errs[maxErrors].Msg != "too many errors (10 more)" {
		t.Errorf("30 wrong lines: %d errors, last %v; want %d and a last one saying 10 more", len(errs), errs[len(errs)-1], maxErrors+1)
	}
}

func TestConfigErrorFormat(t *testing.T) {
	e := &ConfigError{File: "x.conf", Line: 3, Col: 41, Msg: "boom"}
	if e.Error() != "x.conf:3:41: boom" || !errors.Is(e, ErrInvalid) {
		t.Errorf("%q, Is(ErrInvalid) %v", e.Error(), errors.Is(e, ErrInvalid))
	}
	if got := (&ConfigError{Line: 1, Col: 2, Msg: "boom"}).Error(); got != "1:2: boom" {
		t.Errorf("without a file: %q", got)
	}
}

// fuzzSeeds are the seed corpus of FuzzParseConfig.
var fuzzSeeds = []string{
	`synproxy4 in inface eth0 dst 203.0.113.10 dport 2200 redirect to 22 loglimit "SYNPROXY SSH"`,
	`synproxy6 forward inface eth0 dst 2001:db8::10 dport 80,443 dnat to [2001:db8:1::5]`,
	`ipv4 synproxy input inface eth0 src not "10.0.0.0/8 192.168.0.0/16" dst 10.0.0.1-10.0.0.10 dport 80 action TRAP_AND_DROP`,
	"options mss 1400 nosack ttl 9\nmark 0x100/0xf00\nloopback loose\nsynproxy in dport 1:65535 accept",
	"FIREHOL_SYNPROXY_OPTIONS=\"--sack-perm --timestamp --wscale 7 --mss 1460\"\nFIREHOL_TRUST_LOOPBACK=strict\n" +
		"synproxy46 pass inface not eth1 dst 192.0.2.0/24,2001:db8::/64 sport not 1-1023 dport 80 dnat to :8080",
	"synproxy4 in \\\n dport \"80 \\\n443\" accept # c\r\n",
	`synproxy4 in inface "eth0 accept`,
	"synproxy in src 192.0.2.1 dst 2001:db8::1 accept\nsynproxy4 in dport 0 mss 1 redirect to x\n\\",
	"synproxy6 in dst [::ffff:1.2.3.4] dnat to [fe80::1%eth0]:1 loglimit '",
	"\ufeffsynproxy4 in dst 0.0.0.0-255.255.255.255 dport 1,2,3 sport 5:4 accept",
	"options path synproxy\ncookie-secret-file ../k\nsynproxy4 in dport 80 path handoff accept\nsynproxy6 forward path handoff dnat to :1",
	"options path handoff mss 1400\nsynproxy in dst 192.0.2.1,2001:db8::1 dport 80 path auto accept\ncookie-secret-file ''",
}

func FuzzParseConfig(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		cfg, err := ParseConfig("f.conf", []byte(src), nil)
		if err != nil {
			if !errors.Is(err, ErrInvalid) || len(cfg.Statements) != 0 {
				t.Fatalf("error %v (Is ErrInvalid: %v) with %d statements", err, errors.Is(err, ErrInvalid), len(cfg.Statements))
			}
			lines := strings.Count(src, "\n") + 1
			for _, e := range configErrors(t, err) {
				if e.File != "f.conf" || e.Line < 1 || e.Line > lines || e.Col < 1 {
					t.Errorf("error at %s:%d:%d, outside the %d lines of the input: %s", e.File, e.Line, e.Col, lines, e.Msg)
				}
			}
			return
		}
		for _, st := range cfg.Statements {
			if err := st.Validate(cfg.Settings); err != nil {
				t.Errorf("accepted an invalid statement: %v", err)
			}
		}
		if len(cfg.Statements) <= 8 {
			for _, iface := range append(cfg.Interfaces(), "fuzz0") {
				_, _ = cfg.For(iface) // must not panic
			}
		}
	})
}

// wantConfigError parses src as b.conf and checks that it fails with one error, at pos, that
// says want and is ErrInvalid.
func wantConfigError(t *testing.T, src, pos, want string) {
	t.Helper()
	_, err := ParseConfig("b.conf", []byte(src), nil)
	if err == nil {
		t.Errorf("%q: no error; want %s: ...%s", src, pos, want)
		return
	}
	errs := configErrors(t, err)
	if len(errs) != 1 || !strings.HasPrefix(err.Error(), pos+": ") || !strings.Contains(err.Error(), want) || !errors.Is(err, ErrInvalid) {
		t.Errorf("%q:\n got %v\nwant %s: ...%s", src, err, pos, want)
	}
}
