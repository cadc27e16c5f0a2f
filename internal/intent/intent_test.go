package intent

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xsyn-project/xsyn/internal/host"
	"github.com/xsyn-project/xsyn/spec"
)

var (
	v4 = netip.MustParseAddr("192.0.2.2")
	v6 = netip.MustParseAddr("2001:db8::2")
)

// fakeHost is a host with interface eth0 (MTU 9000, window scale 9) listening on 192.0.2.2:22
// and [2001:db8::2]:443.
func fakeHost() Host {
	stack := spec.Stack{MTU: 9000, WScale: 9}
	return Host{
		Stack: func(iface string) (spec.Stack, error) {
			if iface != "eth0" {
				return spec.Stack{}, fmt.Errorf("%w: %q", host.ErrNoInterface, iface)
			}
			return stack, nil
		},
		Addrs: func(string) ([]netip.Addr, error) {
			return []netip.Addr{netip.MustParseAddr("fe80::1"), v4, v6}, nil
		},
		Listening: func(string) (spec.Spec, error) {
			return spec.Spec{Services: []spec.Service{
				{Family: spec.IPv4, Dst: netip.PrefixFrom(v4, 32), Port: 22, Options: stack.Options(spec.IPv4), TTL: spec.DefaultTTL},
				{Family: spec.IPv6, Dst: netip.PrefixFrom(v6, 128), Port: 443, Options: stack.Options(spec.IPv6), TTL: spec.DefaultTTL},
			}}, nil
		},
	}
}

// Zero-config with option flags: the statements and the XDP services carry the flags' options
// alike, so netfilter and XDP cannot disagree.
func TestBuildListenersWithFlags(t *testing.T) {
	b, err := Build(Request{Iface: "eth0", Flags: spec.Simple{WScale: 4, MSS: 1400, NoSACK: true, TTL: 99}}, fakeHost())
	if err != nil {
		t.Fatal(err)
	}
	if b.Kind != FromListeners || len(b.Spec.Statements) != 2 || len(b.Spec.Services) != 2 {
		t.Fatalf("zero-config spec: kind %d, %d statements, %d services", b.Kind, len(b.Spec.Statements), len(b.Spec.Services))
	}
	want := spec.TCPOptions{MSS: 1400, WScale: 4, SACK: false, Timestamps: true}
	for _, st := range b.Spec.Statements {
		if st.Options != want || st.TTL != 99 {
			t.Errorf("statement %s: %s ttl %d; want %s ttl 99", st, st.Options, st.TTL, want)
		}
	}
	for _, svc := range b.Spec.Services {
		if svc.Options != want || svc.TTL != 99 {
			t.Errorf("service %s: %s ttl %d; want %s ttl 99", svc, svc.Options, svc.TTL, want)
		}
	}
	if got := b.Spec.Statements[0].String(); got != "synproxy4 input dst 192.0.2.2/32 dport 22 accept" {
		t.Errorf("statement = %q", got)
	}
}

func TestBuildSources(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "eth0.conf")
	if err := os.WriteFile(conf, []byte("synproxy4 in inface eth0 dst 192.0.2.2 dport 2200 redirect to 22\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.conf")
	if err := os.WriteFile(bad, []byte("synproxy4 in dport 70000 accept\nsynproxy4 in dport 22 bogus accept\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	// A configuration takes its default options from the interface's stack.
	b, err := Build(Request{Iface: "eth0", Config: conf}, fakeHost())
	if err != nil {
		t.Fatal(err)
	}
	if st := b.Spec.Statements[0]; b.Kind != FromConfig || st.Options.WScale != 9 || st.Options.MSS != 8960 || st.Pos.Line != 1 {
		t.Errorf("config statement: %+v", st)
	}
	// ... and from xsyn's defaults for an interface that does not exist, which is no error.
	b, err = Build(Request{Iface: "eth9", Config: filepath.Join(dir, "any.conf")}, fakeHost())
	if err == nil || !strings.Contains(err.Error(), "read config") {
		t.Errorf("missing file: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "any.conf"), []byte("synproxy in dport 80 accept\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	b, err = Build(Request{Iface: "eth9", Config: filepath.Join(dir, "any.conf")}, fakeHost())
	if err != nil {
		t.Fatal(err)
	}
	if b.Stack != nil || !errors.Is(b.StackErr, host.ErrNoInterface) || b.Spec.Statements[0].Options != spec.DefaultOptions(spec.IPv4) {
		t.Errorf("missing interface: stack %v, %v, options %s", b.Stack, b.StackErr, b.Spec.Statements[0].Options)
	}

	// Every wrong line of a configuration, with its position.
	_, err = Build(Request{Iface: "eth0", Config: bad}, fakeHost())
	if err == nil || !strings.Contains(err.Error(), "bad.conf:1:") || !strings.Contains(err.Error(), "bad.conf:2:") {
		t.Errorf("broken config: %v; want both lines", err)
	}

	// The flag form; its errors are FlagErrors.
	b, err = Build(Request{Iface: "eth0", Flags: spec.Simple{Ports: []uint16{80}, WScale: -1}}, fakeHost())
	if err != nil || b.Kind != FromFlags || len(b.Spec.Statements) != 2 || b.Spec.Statements[1].Options.WScale != 9 {
		t.Errorf("flag form: %+v, %v", b, err)
	}
	_, err = Build(Request{Iface: "eth0", Flags: spec.Simple{Ports: []uint16{80}, WScale: 15}}, fakeHost())
	if fe := new(FlagError); !errors.As(err, &fe) {
		t.Errorf("flag form with wscale 15: %v; want a FlagError", err)
	}
	// Zero-config needs the interface.
	if _, err := Build(Request{Iface: "eth9"}, fakeHost()); !errors.Is(err, host.ErrNoInterface) {
		t.Errorf("zero-config on a missing interface: %v", err)
	}
}

// Without an interface, a configuration is built for each interface its statements name, each
// with its own stack's options; naming one still narrows it to that one.
func TestBuildAllInterfaces(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "two.conf")
	text := "synproxy4 in inface eth1 dst 192.0.2.9 dport 80 accept\n" +
		"synproxy in inface eth0,eth1 dport 443 accept\n" +
		"synproxy4 in inface not eth9 dport 22 accept\n"
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	// Named: the statements that apply to eth0, `inface not eth9` among them.
	bs, err := BuildAll(Request{Iface: "eth0", Config: conf}, fakeHost())
	if err != nil {
		t.Fatal(err)
	}
	if len(bs) != 1 || bs[0].Iface != "eth0" || len(bs[0].Spec.Statements) != 3 {
		t.Fatalf("eth0 named: %d specs, want eth0's alone with 3 statements: %+v", len(bs), bs)
	}

	// Not named: the statement that names no interface of its own is an error, at its line,
	// saying what to do.
	_, err = BuildAll(Request{Config: conf}, fakeHost())
	want := conf + ":3:1: the statement applies to every interface but eth9 (inface not), and no interface was named: " +
		"name the one to protect on the command line (IFACE before --config), or give the statement inface IFACE"
	if ce := new(spec.ConfigError); !errors.As(err, &ce) || err.Error() != want {
		t.Errorf("inface not, no interface named: %v\nwant the ConfigError %s", err, want)
	}
	if err := os.WriteFile(conf, []byte(text[:strings.LastIndex(text[:len(text)-1], "\n")+1]+"  synproxy in dport 22 accept\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = BuildAll(Request{Config: conf}, fakeHost())
	if want := conf + ":3:3: the statement applies to every interface (it has no inface), and no interface was named"; err == nil ||
		!strings.HasPrefix(err.Error(), want) || strings.Count(err.Error(), "\n") != 0 {
		t.Errorf("no inface, no interface named: %v\nwant one error (not one per family) starting %s", err, want)
	}

	// Every statement names its interfaces: one spec each, in name order, with its stack's
	// options (eth1 does not exist: xsyn's defaults, and StackErr says so).
	if err := os.WriteFile(conf, []byte(text[:strings.LastIndex(text[:len(text)-1], "\n")+1]), 0o644); err != nil {
		t.Fatal(err)
	}
	bs, err = BuildAll(Request{Config: conf}, fakeHost())
	if err != nil {
		t.Fatal(err)
	}
	if len(bs) != 2 || bs[0].Iface != "eth0" || bs[1].Iface != "eth1" {
		t.Fatalf("specs for %d interfaces, want eth0 and eth1", len(bs))
	}
	if b := bs[0]; b.Kind != FromConfig || len(b.Spec.Statements) != 2 || b.Spec.Statements[0].Options.WScale != 9 || b.StackErr != nil {
		t.Errorf("eth0: kind %d, %d statements (want 2: both families of line 2), options %s, %v", b.Kind, len(b.Spec.Statements), b.Spec.Statements[0].Options, b.StackErr)
	}
	if b := bs[1]; len(b.Spec.Statements) != 3 || b.Spec.Statements[0].Pos.Line != 1 || b.Spec.Statements[0].Options != spec.DefaultOptions(spec.IPv4) ||
		!errors.Is(b.StackErr, host.ErrNoInterface) {
		t.Errorf("eth1: %d statements (want 3), first from line %d, options %s, %v", len(b.Spec.Statements), b.Spec.Statements[0].Pos.Line, b.Spec.Statements[0].Options, b.StackErr)
	}

	// Errors in the file are reported as they are with an interface; a file without a
	// statement has nothing to protect.
	if err := os.WriteFile(conf, []byte("synproxy4 in inface eth0 dport 70000 accept\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := BuildAll(Request{Config: conf}, fakeHost()); err == nil || !strings.Contains(err.Error(), conf+":1:") {
		t.Errorf("broken config, no interface named: %v", err)
	}
	if err := os.WriteFile(conf, []byte("# nothing yet\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := BuildAll(Request{Config: conf}, fakeHost()); err == nil || err.Error() != conf+" has no synproxy statement: nothing to protect" {
		t.Errorf("empty config, no interface named: %v", err)
	}
}
