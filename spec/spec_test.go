package spec

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// --port goes through dport's parser: ranges N-M and N:M, items separated by commas or blanks,
// repeated and overlapping items merged (dport's policy), the ports sorted; the errors name
// --port and say what was wrong.
func TestParsePorts(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []uint16
		err  string // the whole error; "" for success
	}{
		{"80", []uint16{80}, ""},
		{"22, 80,443", []uint16{22, 80, 443}, ""},
		{"8000-8003,443", []uint16{443, 8000, 8001, 8002, 8003}, ""},
		{"8000:8003", []uint16{8000, 8001, 8002, 8003}, ""}, // iptables' spelling, as in dport
		{"1,65535", []uint16{1, 65535}, ""},
		{"80 443", []uint16{80, 443}, ""},
		{"80,80", []uint16{80}, ""},
		{"79-81,80", []uint16{79, 80, 81}, ""},
		{"443,80:81,80", []uint16{80, 81, 443}, ""},
		{"", nil, `invalid service: expected ports after "--port", got an empty list`},
		{" , ", nil, `invalid service: expected ports after "--port", got an empty list`},
		{"0", nil, "invalid service: --port 0 is outside 1-65535"},
		{"65536", nil, "invalid service: --port 65536 is outside 1-65535"},
		{"1:70000", nil, "invalid service: --port 70000 is outside 1-65535"},
		{"http", nil, `invalid service: expected a port or a range N-M after "--port", got "http" (service names are not looked up)`},
		{"90-80", nil, "invalid service: --port range 90-80 runs backwards"},
		{"80-x", nil, `invalid service: expected a port or a range N-M after "--port", got "80-x" (service names are not looked up)`},
		{"not 80", nil, `invalid service: expected a port or a range N-M after "--port", got "not" (service names are not looked up)`},
	} {
		got, err := ParsePorts(tc.in)
		if tc.err == "" {
			if err != nil || !slices.Equal(got, tc.want) {
				t.Errorf("ParsePorts(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
			}
			continue
		}
		if err == nil || err.Error() != tc.err || !errors.Is(err, ErrInvalid) {
			t.Errorf("ParsePorts(%q) error = %v; want ErrInvalid: %q", tc.in, err, tc.err)
		}
	}
}

// --dst goes through dst's parser: lists of addresses, prefixes and ranges a-b of either
// family, an item another covers merged into it; the errors name --dst.
func TestParseDst(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string // the prefixes, comma-separated
		err  string // the whole error; "" for success
	}{
		{"203.0.113.10", "203.0.113.10/32", ""},
		{"203.0.113.0/24", "203.0.113.0/24", ""},
		{"2001:db8::1", "2001:db8::1/128", ""},
		{"2001:db8::/64", "2001:db8::/64", ""},
		{"[2001:db8::1]", "2001:db8::1/128", ""},
		{"192.0.2.1-192.0.2.9", "192.0.2.1/32,192.0.2.2/31,192.0.2.4/30,192.0.2.8/31", ""},
		{"2001:db8::10-2001:db8::12", "2001:db8::10/127,2001:db8::12/128", ""},
		{"203.0.113.10, 2001:db8::1", "203.0.113.10/32,2001:db8::1/128", ""},
		{"203.0.113.10,203.0.113.10", "203.0.113.10/32", ""},
		{"203.0.113.10,203.0.113.0/24,192.0.2.5-192.0.2.6", "203.0.113.0/24,192.0.2.5/32,192.0.2.6/32", ""},
		{"0.0.0.0/0,192.0.2.1", "0.0.0.0/0", ""},
		{"203.0.113.10/24", "", "invalid service: --dst 203.0.113.10/24 has host bits set (did you mean 203.0.113.0/24?)"},
		{"::ffff:203.0.113.10", "", "invalid service: --dst ::ffff:203.0.113.10 is IPv4-mapped; write 203.0.113.10"},
		{"fe80::1%eth0", "", "invalid service: --dst fe80::1%eth0 has a zone; give the address without %zone"},
		{"example.com", "", `invalid service: expected addresses, prefixes or ranges a-b after "--dst", got "example.com" (host names are not resolved)`},
		{"10.0.0.0/33", "", "invalid service: --dst 10.0.0.0/33: the prefix length must be 0-32"},
		{"192.0.2.9-192.0.2.1", "", "invalid service: --dst range 192.0.2.9-192.0.2.1 runs backwards"},
		{"192.0.2.1-2001:db8::1", "", "invalid service: --dst range 192.0.2.1-2001:db8::1 mixes IPv4 and IPv6"},
		{",", "", `invalid service: expected addresses after "--dst", got an empty list`},
	} {
		got, err := ParseDst(tc.in)
		if tc.err == "" {
			if err != nil || setString(false, got) != tc.want {
				t.Errorf("ParseDst(%q) = %v, %v; want %s", tc.in, got, err, tc.want)
			}
			continue
		}
		if err == nil || err.Error() != tc.err || !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseDst(%q) error = %v; want ErrInvalid: %q", tc.in, err, tc.err)
		}
	}
}

func TestSimpleBuild(t *testing.T) {
	s, err := Simple{Ports: []uint16{80, 443}, WScale: -1}.Build()
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Services) != 4 {
		t.Fatalf("no --dst: %d services, want 2 ports x 2 families", len(s.Services))
	}
	for _, svc := range s.Services {
		want := DefaultOptions(svc.Family)
		if svc.Options != want || svc.TTL != DefaultTTL || svc.Dst != svc.Family.AnyAddr() {
			t.Errorf("%s: %+v ttl %d; want FireHOL defaults %+v, ttl %d, every address", svc, svc.Options, svc.TTL, want, DefaultTTL)
		}
	}
	if s.Services[0].Options.MSS != 1460 || s.Services[2].Options.MSS != 1440 {
		t.Errorf("default MSS: ipv4 %d, ipv6 %d; want 1460 and 1440", s.Services[0].Options.MSS, s.Services[2].Options.MSS)
	}

	s, err = Simple{Ports: []uint16{22}, Dst: "2001:db8::/64", MSS: 1400, WScale: 0, NoSACK: true, NoTimestamps: true, ECN: true, TTL: 9}.Build()
	if err != nil {
		t.Fatal(err)
	}
	want := Service{Family: IPv6, Dst: netip.MustParsePrefix("2001:db8::/64"), Port: 22, TTL: 9,
		Options: TCPOptions{MSS: 1400, WScale: 0, ECN: true}, Handoff: true}
	if len(s.Services) != 1 || s.Services[0] != want {
		t.Errorf("with every flag: %+v; want only %+v", s.Services, want)
	}

	for _, tc := range []struct {
		f   Simple
		err string
	}{
		{Simple{WScale: -1}, "nothing to protect"},
		{Simple{Ports: []uint16{80}, WScale: 15}, "wscale 15 is above 14"},
		{Simple{Ports: []uint16{80}, WScale: -1, MSS: 100}, "mss 100 is outside 536-65495"},
		{Simple{Ports: []uint16{80}, WScale: -1, TTL: 300}, "ttl 300 is outside 1-255"},
		{Simple{Ports: []uint16{80}, WScale: -1, Dst: "nonsense"}, `expected addresses, prefixes or ranges a-b after "--dst", got "nonsense"`},
	} {
		if _, err := tc.f.Build(); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("Build(%+v) error = %v; want one saying %q", tc.f, err, tc.err)
		}
	}
}

// --path applies to every statement the flags make: auto and handoff take the handoff (the flag
// form is input ... accept, by destination and port), synproxy moves them all to SYNPROXY.
func TestSimpleBuildPath(t *testing.T) {
	for _, tc := range []struct {
		via     Via
		path    Path
		handoff bool
	}{
		{ViaAuto, PathHandoff, true},
		{ViaHandoff, PathHandoff, true},
		{ViaSynproxy, PathSynproxy, false},
	} {
		s, err := Simple{Ports: []uint16{22, 80}, WScale: -1, Via: tc.via}.Build()
		if err != nil {
			t.Fatalf("--path %s: %v", tc.via, err)
		}
		for _, st := range s.Statements {
			if st.Via != tc.via || st.Path != tc.path {
				t.Errorf("--path %s: %s takes via %s, path %s; want %s, %s", tc.via, st, st.Via, st.Path, tc.via, tc.path)
			}
		}
		for _, svc := range s.Services {
			if svc.Handoff != tc.handoff {
				t.Errorf("--path %s: service %s handoff %v, want %v", tc.via, svc, svc.Handoff, tc.handoff)
			}
		}
	}
	// WithVia keeps the cookie key it was given.
	key := &CookieKey{1}
	s, err := Simple{Ports: []uint16{80}, WScale: -1}.Build()
	if err != nil {
		t.Fatal(err)
	}
	s.CookieKey = key
	if s, err = s.WithVia("", ViaSynproxy); err != nil || s.CookieKey != key || s.HasPath(PathHandoff) {
		t.Errorf("WithVia(synproxy): key %p (want %p), handoff left %v, %v", s.CookieKey, key, s.HasPath(PathHandoff), err)
	}
}

func TestValidate(t *testing.T) {
	ok := Service{Family: IPv4, Dst: netip.MustParsePrefix("192.0.2.0/24"), Port: 80, TTL: 64, Options: DefaultOptions(IPv4)}
	if err := (Spec{Services: []Service{ok}}).Validate(); err != nil {
		t.Fatalf("valid spec refused: %v", err)
	}
	bad := func(mod func(*Service)) Service { s := ok; mod(&s); return s }
	for _, tc := range []struct {
		svcs []Service
		err  string
	}{
		{nil, "nothing to protect"},
		{[]Service{ok, ok}, "given twice"},
		{[]Service{bad(func(s *Service) { s.Family = 5 })}, "family must be 4 or 6"},
		{[]Service{bad(func(s *Service) { s.Dst = netip.MustParsePrefix("2001:db8::/64") })}, "is not an ipv4 prefix"},
		{[]Service{bad(func(s *Service) { s.Dst = netip.MustParsePrefix("192.0.2.1/24") })}, "host bits set"},
		{[]Service{bad(func(s *Service) { s.Port = 0 })}, "port must be 1-65535"},
		{[]Service{bad(func(s *Service) { s.Options.MSS = 0 })}, "mss 0 is outside"},
		{[]Service{bad(func(s *Service) { s.TTL = 0 })}, "ttl must be 1-255"},
		{make([]Service, MaxServices+1), "at most 4096"},
	} {
		err := (Spec{Services: tc.svcs}).Validate()
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("Validate: %v; want an error saying %q", err, tc.err)
		}
	}
}

func TestWScaleForBuffer(t *testing.T) {
	for _, tc := range []struct {
		buf  int
		want uint8
	}{
		{6291456, 7},   // stock tcp_rmem[2], 6 MiB
		{33554432, 10}, // 32 MiB
		{65535, 0},
		{1 << 40, 14},
	} {
		if got := WScaleForBuffer(tc.buf); got != tc.want {
			t.Errorf("WScaleForBuffer(%d) = %d, want %d", tc.buf, got, tc.want)
		}
	}
}

func TestSimpleBuildFromStack(t *testing.T) {
	s, err := Simple{Ports: []uint16{80}, WScale: -1, Stack: &Stack{MTU: 9000, WScale: 10}}.Build()
	if err != nil {
		t.Fatal(err)
	}
	if o := s.Services[0].Options; o.MSS != 8960 || o.WScale != 10 {
		t.Errorf("ipv4 from a 9000-byte MTU, wscale 10 stack: %+v", o)
	}
	if o := s.Services[1].Options; o.MSS != 8940 || o.WScale != 10 {
		t.Errorf("ipv6 from a 9000-byte MTU, wscale 10 stack: %+v", o)
	}
	// Flags win over the stack.
	s, err = Simple{Ports: []uint16{80}, WScale: 5, MSS: 1400, Stack: &Stack{MTU: 9000, WScale: 10}}.Build()
	if err != nil || s.Services[0].Options.MSS != 1400 || s.Services[0].Options.WScale != 5 {
		t.Errorf("flags over stack: %+v, %v", s.Services, err)
	}
}
