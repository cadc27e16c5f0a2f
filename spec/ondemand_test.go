package spec

import (
	"errors"
	"strings"
	"testing"
)

func TestParseConfigOnDemand(t *testing.T) {
	for _, tc := range []struct {
		name, src string
		want      []uint32 // each statement's threshold
	}{
		{"off by default", "synproxy4 in dport 80 accept", []uint32{0}},
		{"a statement's", "synproxy4 in dport 80 on-demand 20000 accept", []uint32{20000}},
		{"both families", "synproxy in dport 80 on-demand 500 accept", []uint32{500, 500}},
		{"options line: handoff statements only", "options on-demand 9000\nsynproxy4 in dport 80 accept\nsynproxy4 in dport 2200 redirect to 22\nsynproxy4 in dport 81 path synproxy accept",
			[]uint32{9000, 0, 0}},
		{"a statement over the options line", "options on-demand 9000\nsynproxy4 in dport 80 on-demand 100 accept\nsynproxy4 in dport 81 on-demand 0 accept",
			[]uint32{100, 0}},
		{"0 on a SYNPROXY statement", "synproxy4 in dport 2200 on-demand 0 redirect to 22", []uint32{0}},
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
				if st.OnDemand != tc.want[i] {
					t.Errorf("%s: on-demand %d, want %d", st, st.OnDemand, tc.want[i])
				}
			}
			for _, svc := range s.Services {
				if svc.OnDemand != 0 && !svc.Handoff {
					t.Errorf("service %s: on-demand %d on the SYNPROXY path", svc, svc.OnDemand)
				}
			}
		})
	}
}

func TestParseConfigOnDemandErrors(t *testing.T) {
	for _, tc := range []struct {
		src  string
		pos  string // FILE:LINE:COL
		want string // in the message
	}{
		{"synproxy4 in dport 80 on-demand accept", "b.conf:1:33", `expected a number 0-100000000 after "on-demand", got "accept"`},
		{"synproxy4 in dport 80 on-demand -5 accept", "b.conf:1:33", `expected a number 0-100000000 after "on-demand", got "-5"`},
		{"synproxy4 in dport 80 on-demand 100000001 accept", "b.conf:1:33", "on-demand 100000001 is outside 0-100000000"},
		{"synproxy4 in dport 80 on-demand 5 on-demand 6 accept", "b.conf:1:35", `"on-demand" given twice`},
		{"synproxy4 in dport 80 on-demand", "b.conf:1:32", `expected a number 0-100000000 after "on-demand"`},
		{"synproxy4 in dport 2200 on-demand 500 redirect to 22", "b.conf:1:25",
			"on-demand needs the socket-handoff path: on the SYNPROXY path netfilter NOTRACKs every protected SYN, so only a cookie can answer it; " +
				"this statement takes the SYNPROXY path (its action is redirect to 22, which only netfilter can carry out): remove on-demand from it"},
		{"synproxy4 forward dport 80 on-demand 500 dnat to 10.0.0.5", "b.conf:1:28", "(it forwards to another host"},
		{"synproxy4 in dport 80 path synproxy on-demand 500 accept", "b.conf:1:37", "this statement takes the SYNPROXY path (asked for (path synproxy))"},
		{"options on-demand 10 on-demand 20", "b.conf:1:22", `"on-demand" given twice`},
	} {
		wantConfigError(t, tc.src, tc.pos, tc.want)
	}
}

// A statement on auto that follows a SYNPROXY neighbour leaves the handoff path: its own
// on-demand is then an error at its line, saying why.
func TestOnDemandFollowsSynproxy(t *testing.T) {
	src := "synproxy4 in dst 192.0.2.1 dport 80 on-demand 500 accept\nsynproxy4 in dport 80 reject"
	_, err := mustParse(t, src, nil).For("eth0")
	if !errors.Is(err, ErrInvalid) || !strings.HasPrefix(err.Error(), "test.conf:1: on-demand needs the socket-handoff path") ||
		!strings.Contains(err.Error(), "it matches destinations of test.conf:2, which takes the SYNPROXY path") {
		t.Errorf("got %v; want an error at test.conf:1 naming the SYNPROXY neighbour", err)
	}
}

func TestSimpleOnDemand(t *testing.T) {
	s, err := Simple{Ports: []uint16{80}, WScale: -1, OnDemand: 700}.Build()
	if err != nil {
		t.Fatal(err)
	}
	for _, svc := range s.Services {
		if !svc.Handoff || svc.OnDemand != 700 {
			t.Errorf("service %s: handoff %v on-demand %d, want the handoff with 700", svc, svc.Handoff, svc.OnDemand)
		}
	}
	// Moved to SYNPROXY (the kernel lacks the handoff): on-demand goes with the handoff.
	moved, err := s.WithoutHandoff("the kernel lacks it")
	if err != nil {
		t.Fatal(err)
	}
	for _, svc := range moved.Services {
		if svc.OnDemand != 0 {
			t.Errorf("service %s moved to SYNPROXY keeps on-demand %d", svc, svc.OnDemand)
		}
	}
	for _, st := range moved.Statements {
		if st.OnDemand != 0 {
			t.Errorf("statement %s moved to SYNPROXY keeps on-demand %d", st, st.OnDemand)
		}
	}
	if err := moved.Validate(); err != nil {
		t.Error(err)
	}
	// Asked for SYNPROXY: refused, saying why.
	_, err = Simple{Ports: []uint16{80}, WScale: -1, OnDemand: 700, Via: ViaSynproxy}.Build()
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "on-demand needs the socket-handoff path") {
		t.Errorf("--path synproxy --on-demand: %v", err)
	}
	for _, n := range []int{-1, MaxOnDemand + 1} {
		if _, err := (Simple{Ports: []uint16{80}, WScale: -1, OnDemand: n}).Build(); !errors.Is(err, ErrInvalid) {
			t.Errorf("on-demand %d: %v, want ErrInvalid", n, err)
		}
	}
	// A service on the SYNPROXY path with on-demand is invalid.
	bad := Service{Family: IPv4, Dst: IPv4.AnyAddr(), Port: 80, Options: DefaultOptions(IPv4), TTL: 64, OnDemand: 5}
	if err := bad.Validate(); !errors.Is(err, ErrInvalid) {
		t.Errorf("SYNPROXY service with on-demand: %v", err)
	}
}
