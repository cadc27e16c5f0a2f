package repair

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	"github.com/xsyn-project/xsyn/rules"
	"github.com/xsyn-project/xsyn/spec"
)

func testRecord(iface string) Record {
	p := rules.Plan{Iface: iface, Settings: spec.DefaultSettings(), Families: []rules.FamilyPlan{{
		Family: spec.IPv4,
		Chains: []rules.Chain{{Table: rules.TableRaw, Name: "XSYN-RAW-" + iface, Rules: []rules.Rule{{Origin: "o", Args: []string{"-j", "CT", "--notrack"}}}}},
		Jumps:  []rules.Jump{{Table: rules.TableRaw, From: "PREROUTING", To: "XSYN-RAW-" + iface, Position: 1}},
	}}, Sysctls: []rules.SysctlSetting{{Key: "net.ipv4.tcp_syncookies", Value: "1"}}}
	return Record{Plan: p, Live: p, Originals: map[string]string{"net.ipv4.tcp_syncookies": "2"}, Ifindex: 7}
}

// A record reads back as written; Delete forgets it; Interfaces lists only records, not the
// temporary files of a writer.
func TestStore(t *testing.T) {
	s := &Store{Dir: filepath.Join(t.TempDir(), "netns-1")}
	if ifaces, err := s.Interfaces(); err != nil || ifaces != nil {
		t.Fatalf("Interfaces of a store never written: %q, %v", ifaces, err)
	}
	if _, ok, err := s.Load("eth0"); ok || err != nil {
		t.Fatalf("Load of nothing: %v, %v", ok, err)
	}
	for _, iface := range []string{"eth1", "eth0", "eth0.100"} {
		if err := s.Save(iface, testRecord(iface)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Save("eth0", testRecord("eth0")); err != nil { // replaced in place
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.Dir, "tmp:eth2:123"), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if ifaces, err := s.Interfaces(); err != nil || !slices.Equal(ifaces, []string{"eth0", "eth0.100", "eth1"}) {
		t.Errorf("Interfaces: %q, %v", ifaces, err)
	}
	got, ok, err := s.Load("eth0")
	if err != nil || !ok || !reflect.DeepEqual(got, testRecord("eth0")) {
		t.Errorf("Load: %+v, %v, %v; want %+v", got, ok, err, testRecord("eth0"))
	}
	if fi, err := os.Stat(filepath.Join(s.Dir, "eth0.json")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("record file: %v, %v; want mode 0600", fi, err)
	}
	if err := s.Delete("eth0"); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete("eth0"); err != nil {
		t.Errorf("Delete of nothing: %v", err)
	}
	if _, ok, err := s.Load("eth0"); ok || err != nil {
		t.Errorf("Load after Delete: %v, %v", ok, err)
	}
}

// Names that are no interface's never reach the file system; a record of another interface, or
// one that cannot be read, is an error, not a plan to apply.
func TestStoreRefuses(t *testing.T) {
	s := &Store{Dir: t.TempDir()}
	for _, name := range []string{"", ".", "..", "../x", "a/b", "tmp:eth0:1"} {
		if err := s.Save(name, testRecord(name)); !errors.Is(err, rules.ErrBadInterfaceName) {
			t.Errorf("Save(%q) = %v, want ErrBadInterfaceName", name, err)
		}
		if _, _, err := s.Load(name); !errors.Is(err, rules.ErrBadInterfaceName) {
			t.Errorf("Load(%q) = %v, want ErrBadInterfaceName", name, err)
		}
	}
	if err := s.Save("eth1", testRecord("eth1")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(s.Dir, "eth1.json"), filepath.Join(s.Dir, "eth0.json")); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := s.Load("eth0"); err == nil || ok {
		t.Errorf("Load of eth1's record under eth0's name: %v, %v; want an error", ok, err)
	}
	if err := os.WriteFile(filepath.Join(s.Dir, "eth2.json"), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := s.Load("eth2"); err == nil || ok {
		t.Errorf("Load of a truncated record: %v, %v; want an error", ok, err)
	}
}
