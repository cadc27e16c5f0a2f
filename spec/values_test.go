package spec

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"
)

// One parser per value: --port and dport, --dst and dst read the same value the same way
// (ranges, lists, repeated items merged) and refuse the same values, the flag's error naming
// the flag, the configuration's at FILE:LINE:COL of the wrong item.
func TestFlagsAndConfigShareValueParsers(t *testing.T) {
	for _, tc := range []struct {
		val       string
		ports     []uint16 // nil: an error
		flagErr   string
		configErr string // of `synproxy4 in dport "VAL" accept`
	}{
		{val: "80", ports: []uint16{80}},
		{val: "8000:8002", ports: []uint16{8000, 8001, 8002}},
		{val: "8000-8002", ports: []uint16{8000, 8001, 8002}},
		{val: "80,80", ports: []uint16{80}},
		{val: "443, 80 81,80-81", ports: []uint16{80, 81, 443}},
		{val: "8000:8010,8005", ports: []uint16{8000, 8001, 8002, 8003, 8004, 8005, 8006, 8007, 8008, 8009, 8010}},
		{val: "80,0", flagErr: "invalid service: --port 0 is outside 1-65535",
			configErr: "t.conf:1:24: port 0 is outside 1-65535"},
		{val: "80,90:80", flagErr: "invalid service: --port range 90:80 runs backwards",
			configErr: "t.conf:1:24: port range 90:80 runs backwards"},
		{val: "80,http", flagErr: `invalid service: expected a port or a range N-M after "--port", got "http" (service names are not looked up)`,
			configErr: `t.conf:1:24: expected a port or a range N-M after "dport", got "http" (service names are not looked up)`},
		{val: ", ", flagErr: `invalid service: expected ports after "--port", got an empty list`,
			configErr: `t.conf:1:20: expected ports after "dport", got an empty list`},
	} {
		flag, ferr := ParsePorts(tc.val)
		cfg, cerr := ParseConfig("t.conf", []byte(fmt.Sprintf("synproxy4 in dport %q accept", tc.val)), nil)
		if tc.ports == nil {
			if ferr == nil || ferr.Error() != tc.flagErr {
				t.Errorf("--port %q: %v; want %q", tc.val, ferr, tc.flagErr)
			}
			if cerr == nil || cerr.Error() != tc.configErr {
				t.Errorf("dport %q: %v; want %q", tc.val, cerr, tc.configErr)
			}
			continue
		}
		if ferr != nil || !slices.Equal(flag, tc.ports) {
			t.Errorf("--port %q = %v, %v; want %v", tc.val, flag, ferr, tc.ports)
		}
		if cerr != nil || len(cfg.Statements) != 1 || !slices.Equal(cfg.Statements[0].Match.Dport.Ports(), tc.ports) {
			t.Errorf("dport %q = %v, %v; want %v", tc.val, stmtStrings(cfg), cerr, tc.ports)
		}
	}

	for _, tc := range []struct {
		val       string
		v4, v6    string // the prefixes of each family, comma-separated; both "": an error
		flagErr   string
		configErr string // of `synproxy in dst "VAL" accept`
	}{
		{val: "192.0.2.1-192.0.2.9", v4: "192.0.2.1/32,192.0.2.2/31,192.0.2.4/30,192.0.2.8/31"},
		{val: "192.0.2.7,192.0.2.1-192.0.2.9,2001:db8::/64,2001:db8::5", v4: "192.0.2.1/32,192.0.2.2/31,192.0.2.4/30,192.0.2.8/31", v6: "2001:db8::/64"},
		{val: "[2001:db8::10]-[2001:db8::11] 2001:db8::10", v6: "2001:db8::10/127"},
		{val: "192.0.2.9-192.0.2.1", flagErr: "invalid service: --dst range 192.0.2.9-192.0.2.1 runs backwards",
			configErr: "t.conf:1:18: dst range 192.0.2.9-192.0.2.1 runs backwards"},
		{val: "192.0.2.1,192.0.2.0/24", v4: "192.0.2.0/24"},
		{val: "192.0.2.1/24", flagErr: "invalid service: --dst 192.0.2.1/24 has host bits set (did you mean 192.0.2.0/24?)",
			configErr: "t.conf:1:18: dst 192.0.2.1/24 has host bits set (did you mean 192.0.2.0/24?)"},
		{val: "192.0.2.1,www.example", flagErr: `invalid service: expected addresses, prefixes or ranges a-b after "--dst", got "www.example" (host names are not resolved)`,
			configErr: `t.conf:1:28: expected addresses, prefixes or ranges a-b after "dst", got "www.example" (host names are not resolved)`},
	} {
		flag, ferr := ParseDst(tc.val)
		cfg, cerr := ParseConfig("t.conf", []byte(fmt.Sprintf("synproxy in dst %q accept", tc.val)), nil)
		if tc.v4 == "" && tc.v6 == "" {
			if ferr == nil || ferr.Error() != tc.flagErr {
				t.Errorf("--dst %q: %v; want %q", tc.val, ferr, tc.flagErr)
			}
			if cerr == nil || cerr.Error() != tc.configErr {
				t.Errorf("dst %q: %v; want %q", tc.val, cerr, tc.configErr)
			}
			continue
		}
		var f4, f6 []netip.Prefix
		for _, p := range flag {
			if p.Addr().Is4() {
				f4 = append(f4, p)
			} else {
				f6 = append(f6, p)
			}
		}
		if ferr != nil || setString(false, f4) != tc.v4 || setString(false, f6) != tc.v6 {
			t.Errorf("--dst %q = %v, %v; want %q and %q", tc.val, flag, ferr, tc.v4, tc.v6)
		}
		got := map[Family]string{}
		for _, st := range cfg.Statements {
			got[st.Family] = st.Match.Dst.String()
		}
		if cerr != nil || got[IPv4] != tc.v4 || got[IPv6] != tc.v6 {
			t.Errorf("dst %q = %q, %v; want %q and %q", tc.val, stmtStrings(cfg), cerr, tc.v4, tc.v6)
		}
	}
}

// The flag form with a port range and an address range protects what the same statement in a
// configuration protects: the same XDP services, exactly the addresses of the range. A SYN to
// the next address up, or to a port beside the range, matches no service, so XDP does not
// answer it for xsyn.
func TestSimpleRangesAsConfig(t *testing.T) {
	ports, err := ParsePorts("8000:8002,8001")
	if err != nil {
		t.Fatal(err)
	}
	flags, err := Simple{Ports: ports, Dst: "192.0.2.1-192.0.2.9", WScale: -1}.Build()
	if err != nil {
		t.Fatal(err)
	}
	if got := stmtStrings(Config{Statements: flags.Statements}); !slices.Equal(got, []string{
		"synproxy4 input dst 192.0.2.1/32,192.0.2.2/31,192.0.2.4/30,192.0.2.8/31 dport 8000,8001,8002 accept"}) {
		t.Errorf("flag form statements: %q", got)
	}
	cfg := mustParse(t, "synproxy in inface eth0 dst 192.0.2.1-192.0.2.9 dport 8000:8002,8001 accept", nil)
	file, err := cfg.For("eth0")
	if err != nil {
		t.Fatal(err)
	}
	if len(flags.Services) != 4*3 || !slices.Equal(flags.Services, file.Services) {
		t.Errorf("services:\nflags  %v\nconfig %v\nwant the same 12 (4 prefixes x 3 ports)", flags.Services, file.Services)
	}

	answered := func(a string, port uint16) bool {
		return slices.ContainsFunc(flags.Services, func(svc Service) bool {
			return svc.Dst.Contains(netip.MustParseAddr(a)) && svc.Port == port
		})
	}
	for i := range 16 {
		a := fmt.Sprintf("192.0.2.%d", i)
		if want := i >= 1 && i <= 9; answered(a, 8001) != want {
			t.Errorf("a SYN to %s:8001 answered %v; want %v", a, !want, want)
		}
	}
	for _, port := range []uint16{7999, 8003} {
		if answered("192.0.2.5", port) {
			t.Errorf("a SYN to port %d, outside 8000:8002, is answered", port)
		}
	}
	if answered("2001:db8::1", 8001) {
		t.Error("a SYN to an IPv6 address is answered: --dst named IPv4 only")
	}
}
