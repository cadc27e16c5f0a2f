package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"

	"github.com/xsyn-project/xsyn/internal/testutil"
)

const testVersion = "1.2.3-4-gabcdef0"

var xsynBin string // built by TestMain from the main module

func TestMain(m *testing.M) { os.Exit(runTests(m)) }

func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "xsyn-man-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	xsynBin = filepath.Join(dir, "xsyn")
	build := exec.Command(goTool(), "build", "-ldflags", "-X main.version="+testVersion, "-o", xsynBin, "./cmd/xsyn")
	build.Dir = "../.."
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build xsyn: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

// generate runs xsyn-man on the test's binary and returns the page.
func generate(t testing.TB) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	if code := run([]string{"xsyn-man", "-xsyn", xsynBin, "-date", "2026-01-02"}, &stdout, &stderr); code != 0 {
		t.Fatalf("xsyn-man exited %d: %s", code, stderr.String())
	}
	return stdout.String()
}

// xsynHelp is what a user sees: the binary's output for args.
func xsynHelp(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command(xsynBin, args...).Output()
	if err != nil {
		t.Fatalf("xsyn %s: %v", strings.Join(args, " "), err)
	}
	return string(out)
}

// helpCommands reads the command names from 'xsyn --help' on its own, not with the generator's
// parser: the first word of each indented line after "Commands:", up to the blank line.
func helpCommands(t testing.TB) []string {
	t.Helper()
	_, list, ok := strings.Cut(xsynHelp(t, "--help"), "\nCommands:\n")
	if !ok {
		t.Fatal("xsyn --help has no Commands: list")
	}
	list, _, _ = strings.Cut(list, "\n\n")
	var names []string
	for _, l := range strings.Split(list, "\n") {
		names = append(names, strings.Fields(l)[0])
	}
	if len(names) < 5 {
		t.Fatalf("xsyn --help lists %d commands: %q", len(names), names)
	}
	return names
}

var helpFlag = regexp.MustCompile(`(?m)^  -([^\s]+)`)

// section returns the part of the page about one command: from its .SS to the next heading.
func section(t testing.TB, page, name string) string {
	t.Helper()
	_, s, ok := strings.Cut(page, ".SS \"xsyn "+name+"\"\n")
	if !ok {
		t.Fatalf("the page has no section .SS \"xsyn %s\"", name)
	}
	if i := regexp.MustCompile(`(?m)^\.S[SH] `).FindStringIndex(s); i != nil {
		s = s[:i[0]]
	}
	return s
}

// TestEveryCommandAndFlag: every command 'xsyn --help' lists has a section and a synopsis line,
// and every flag its --help shows is an entry of that section, in roff as written.
func TestEveryCommandAndFlag(t *testing.T) {
	page := generate(t)
	_, synopsis, _ := strings.Cut(page, "\n.SH SYNOPSIS\n")
	synopsis, _, _ = strings.Cut(synopsis, ".SH ")
	for _, name := range helpCommands(t) {
		if !strings.Contains(synopsis, ".B xsyn "+name+"\n") {
			t.Errorf("SYNOPSIS lacks xsyn %s:\n%s", name, synopsis)
		}
		sec := section(t, page, name)
		_, list, _ := strings.Cut(xsynHelp(t, name, "--help"), "\nFlags:\n")
		flags := helpFlag.FindAllStringSubmatch(list, -1)
		for _, f := range flags {
			entry := `\fB\-\-` + esc(f[1]) + `\fR`
			if !strings.Contains(sec, ".TP\n"+entry) {
				t.Errorf("xsyn %s --help shows -%s; its section has no entry %q", name, f[1], entry)
			}
		}
		if got := strings.Count(sec, ".TP\n"); got != len(flags) {
			t.Errorf("xsyn %s: %d flag entries in the page, %d flags in --help", name, got, len(flags))
		}
		t.Logf("xsyn %s: %d flags", name, len(flags))
	}
	for _, want := range []string{`.TH XSYN 8 "2026\-01\-02" "xsyn 1.2.3\-4\-gabcdef0"`, "\n.SH NAME\nxsyn \\- ",
		"\n.SH DESCRIPTION\n", "\n.SH COMMANDS\n", "\n.SH EXAMPLES\n", "\n.SH EXIT STATUS\n", "\n.SH FILES\n", "\n.SH SEE ALSO\n"} {
		if !strings.Contains(page, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
}

// TestRendered reads the page as man(1) shows it: it renders without a warning, and every
// paragraph of every --help page (xsyn's own and each command's: text, examples, flags with
// their usage and defaults) and every exit code is in it, word for word. Whitespace is left out
// of the comparison: man refills paragraphs and indents lists.
func TestRendered(t *testing.T) {
	page := generate(t)
	file := filepath.Join(t.TempDir(), "xsyn.8")
	if err := os.WriteFile(file, []byte(page), 0o644); err != nil {
		t.Fatal(err)
	}
	text := renderMan(t, file)
	if !strings.HasPrefix(strings.TrimSpace(text), "XSYN(8)") {
		t.Errorf("rendered page does not start with XSYN(8):\n%.300s", text)
	}
	rendered := squeeze(text)

	// xsyn --help: its "Usage: xsyn" is the SYNOPSIS, its "Examples:" the heading EXAMPLES, and
	// "Exit codes: 0 ok, 1 error (...), ..." an entry per code in EXIT STATUS.
	top := xsynHelp(t, "--help")
	exits := regexp.MustCompile(`(?s)Exit codes: (.*?\.)\s`).FindStringSubmatch(top)
	if exits == nil {
		t.Fatalf("xsyn --help has no exit codes:\n%s", top)
	}
	codes := regexp.MustCompile(`(?s)(\d) ([^,(]+(?:\([^)]*\))?)`).FindAllStringSubmatch(exits[1], -1)
	if len(codes) < 3 {
		t.Fatalf("exit codes: read %d from %q", len(codes), exits[1])
	}
	_, status, _ := strings.Cut(text, "\nEXIT STATUS\n")
	status, _, _ = strings.Cut(status, "\nFILES\n")
	for _, c := range codes {
		if !strings.Contains(squeeze(status), squeeze(c[1]+" "+c[2])) {
			t.Errorf("EXIT STATUS lacks %s %s:\n%s", c[1], c[2], status)
		}
	}
	top = strings.NewReplacer("Usage: xsyn", "xsyn", "Examples:\n", "", exits[0], "").Replace(top)
	helps := []string{top}
	for _, name := range helpCommands(t) {
		// The synopsis reads "xsyn attach ..." in the page, "Usage: xsyn attach ..." in --help;
		// a flag "--port" in the page, as in the help texts, "-port" in the list under Flags:.
		help := strings.TrimPrefix(xsynHelp(t, name, "--help"), "Usage: ")
		if text, flags, ok := strings.Cut(help, "\nFlags:\n"); ok {
			help = text + "\nFlags:\n" + helpFlag.ReplaceAllString(flags, "  --$1")
		}
		helps = append(helps, help)
	}
	for _, help := range helps {
		for _, para := range strings.Split(help, "\n\n") {
			if !strings.Contains(rendered, squeeze(para)) {
				t.Errorf("rendered page lacks, from --help:\n%s", para)
			}
		}
	}
}

// squeeze leaves whitespace out.
func squeeze(s string) string {
	return strings.Join(strings.Fields(s), "")
}

// renderMan runs man -l on the page, as ASCII, with groff's warnings on: a warning is a failure.
func renderMan(t testing.TB, file string) string {
	t.Helper()
	testutil.RequireTool(t, "man", "Debian: apt-get install man-db; deploy/install-deps.sh installs it")
	cmd := exec.Command("man", "--warnings", "-E", "ascii", "-l", file)
	cmd.Env = append(os.Environ(), "MANWIDTH=80", "MANPAGER=cat", "PAGER=cat", "LC_ALL=C.UTF-8")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil || stderr.Len() > 0 {
		t.Fatalf("man -l %s: %v\n%s", file, err, stderr.String())
	}
	return stdout.String()
}
