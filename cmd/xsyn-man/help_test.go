package main

import (
	"reflect"
	"strings"
	"testing"
)

// The parsers read what flag.PrintDefaults and xsyn's usage() print; these are the shapes the
// binary in TestEveryCommandAndFlag does not show today.
func TestParseFlags(t *testing.T) {
	got, err := parseFlags("  -n\tone letter, usage on its line\n  -name value\n    \tfirst line\n    \tsecond line (default 3)\n")
	if err != nil {
		t.Fatal(err)
	}
	want := []flagHelp{{"n", "", "one letter, usage on its line"}, {"name", "value", "first line\nsecond line (default 3)"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	for _, bad := range []string{"    \tusage before a flag\n", "  -x\n", "Flags are:\n"} {
		if _, err := parseFlags(bad); err == nil {
			t.Errorf("parseFlags(%q): no error", bad)
		}
	}
}

func TestParseExits(t *testing.T) {
	got, rest, err := parseExits("0 ok, 1 error (a, b; c. d), 2 usage (wrong). Run it.")
	if err != nil {
		t.Fatal(err)
	}
	want := []exitCode{{"0", "ok"}, {"1", "error (a, b; c. d)"}, {"2", "usage (wrong)"}}
	if !reflect.DeepEqual(got, want) || rest != "Run it." {
		t.Errorf("got %q, rest %q; want %q, rest \"Run it.\"", got, rest, want)
	}
	for _, bad := range []string{"0 ok, 1 error", "ok, 1 error."} {
		if _, _, err := parseExits(bad); err == nil {
			t.Errorf("parseExits(%q): no error", bad)
		}
	}
}

// A paragraph the generator does not know is kept; a list line it cannot read is an error.
func TestParseTop(t *testing.T) {
	const help = "Intro.\n\nUsage: xsyn COMMAND\n\nCommands:\n  attach   protect\n\nA new paragraph.\n\nExit codes: 0 ok. Run.\n"
	p, err := parseTop(help)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"A new paragraph.", "Run."}; !reflect.DeepEqual(p.notes, want) {
		t.Errorf("notes %q, want %q", p.notes, want)
	}
	bad := strings.Replace(help, "  attach   protect", "  attach   protect\nnot indented", 1)
	if _, err := parseTop(bad); err == nil {
		t.Errorf("a command list line that cannot be read: no error")
	}
}

func TestEsc(t *testing.T) {
	for in, want := range map[string]string{
		`--port 80`:            `\-\-port 80`,
		`tr -d ' \n'`:          `tr \-d ' \en'`,
		`.conf files`:          `\&.conf files`,
		`'path' says the same`: `\&'path' says the same`,
	} {
		if got := esc(in); got != want {
			t.Errorf("esc(%q) = %q, want %q", in, got, want)
		}
	}
}
