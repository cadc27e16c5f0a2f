package main

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/xsyn-project/xsyn/internal/intent"
)

// --port and --dst take what dport and dst take, ranges included, and the flag form protects
// what the same statement in a configuration protects: the same XDP services on lo, with lo's
// own stack options on both sides. A port repeated on the command line merges, as in dport.
func TestSpecFlagsRangesAsConfig(t *testing.T) {
	flags, err := parseSpecFlags(t, "--port", "8000:8002,8001", "--dst", "192.0.2.1-192.0.2.9")
	if err != nil {
		t.Fatal(err)
	}
	if flags.Kind != intent.FromFlags || len(flags.Spec.Statements) != 1 {
		t.Fatalf("flag form: %v statements %q; want one statement from the flags", flags.Kind, flags.Spec.Statements)
	}
	if got, want := flags.Spec.Statements[0].Text, "synproxy4 input dst 192.0.2.1/32,192.0.2.2/31,192.0.2.4/30,192.0.2.8/31 dport 8000,8001,8002 accept"; got != want {
		t.Errorf("flag form statement %q; want %q", got, want)
	}

	conf := filepath.Join(t.TempDir(), "lo.conf")
	if err := os.WriteFile(conf, []byte("synproxy in dst 192.0.2.1-192.0.2.9 dport 8000:8002,8001 accept\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	file, err := parseSpecFlags(t, "--config", conf)
	if err != nil {
		t.Fatal(err)
	}
	if len(flags.Spec.Services) != 12 || !slices.Equal(flags.Spec.Services, file.Spec.Services) {
		t.Errorf("services:\n--port/--dst %v\n--config     %v\nwant the same 12 (4 prefixes x 3 ports)", flags.Spec.Services, file.Spec.Services)
	}
}
