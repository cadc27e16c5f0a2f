package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// The README's quick start (../../quickstart, ../../README.md, ../../.ci/run): the commands it
// gives are what CI runs, and the entry script does what the README says for root and for a user
// with or without sudo. The script runs from a copy whose deploy/install-deps.sh and make are
// stand-ins, so nothing is ever installed.

// quickstartCommands are the commands of the README's Quick start section, comments cut.
func quickstartCommands(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, sec, ok := strings.Cut(string(b), "\n## Quick start\n")
	if !ok {
		t.Fatal("README.md has no Quick start section")
	}
	sec, _, _ = strings.Cut(sec, "\n## ")
	m := regexp.MustCompile("(?s)```sh\n(.*?)```").FindStringSubmatch(sec)
	if m == nil {
		t.Fatal("README.md's Quick start has no sh block")
	}
	var cmds []string
	for _, l := range strings.Split(m[1], "\n") {
		l, _, _ = strings.Cut(l, "#")
		if l = strings.TrimSpace(l); l != "" {
			cmds = append(cmds, l)
		}
	}
	return cmds
}

// CI runs the README's test command, exactly, and the README's commands are targets the script
// knows; none needs sudo or make to exist before it.
func TestQuickstartREADME(t *testing.T) {
	cmds := quickstartCommands(t)
	if !slices.Equal(cmds, []string{"./quickstart demo", "./quickstart test"}) {
		t.Errorf("README's quick start: %q, want ./quickstart demo and ./quickstart test", cmds)
	}
	b, err := os.ReadFile("../../.ci/run")
	if err != nil {
		t.Fatal(err)
	}
	var ci []string
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			ci = append(ci, l)
		}
	}
	if !slices.Contains(ci, "./quickstart test") || ci[len(ci)-1] != "./quickstart test" {
		t.Errorf(".ci/run does not end with the README's test command %q:\n%s", "./quickstart test", b)
	}
	for _, l := range ci {
		if strings.HasPrefix(l, "sudo ") {
			t.Errorf(".ci/run: %q: CI runs as root on a machine without sudo", l)
		}
	}
	// make is installed by install-deps, which must come before any make.
	deps, firstMake := slices.Index(ci, "./deploy/install-deps.sh"), slices.IndexFunc(ci, func(l string) bool { return strings.HasPrefix(l, "make ") })
	if firstMake >= 0 && (deps < 0 || deps > firstMake) {
		t.Errorf(".ci/run runs make before ./deploy/install-deps.sh installs it:\n%s", b)
	}
	out, err := exec.Command("../../quickstart", "--help").Output()
	if err != nil {
		t.Fatalf("quickstart --help: %v", err)
	}
	for _, c := range cmds {
		target := strings.TrimPrefix(c, "./quickstart ")
		if !strings.Contains(string(out), "\n  "+target+" ") {
			t.Errorf("quickstart --help does not list %q, which the README runs:\n%s", target, out)
		}
	}
	if b, err := os.ReadFile("../../deploy/install-deps.sh"); err != nil || !regexp.MustCompile(`(?m)^\s+make `).Match(b) {
		t.Errorf("deploy/install-deps.sh does not install make (%v): ./quickstart runs make after it", err)
	}
}

// quickstartCopy copies the script into a directory anyone may read, beside stand-ins for
// deploy/install-deps.sh; bin holds stand-ins for make, sudo and go, each logging its arguments
// (and make its PATH) to log.
func quickstartCopy(t *testing.T) (script, bin, log string) {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} { // t.TempDir makes both 0700
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	src, err := os.ReadFile("../../quickstart")
	if err != nil {
		t.Fatal(err)
	}
	repo, bin, log := filepath.Join(dir, "repo"), filepath.Join(dir, "bin"), filepath.Join(dir, "log")
	write := func(p, text string) {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	script = filepath.Join(repo, "quickstart")
	write(script, string(src))
	write(log, "")
	if err := os.Chmod(log, 0o666); err != nil {
		t.Fatal(err)
	}
	logs := func(name string) string { return "#!/bin/sh\necho \"" + name + " $*\" >>" + log + "\n" }
	write(filepath.Join(repo, "deploy", "install-deps.sh"), logs("install-deps"))
	write(filepath.Join(bin, "make"), logs("make")+"echo \"make PATH=$PATH\" >>"+log+"\n")
	write(filepath.Join(bin, "sudo"), logs("sudo"))
	write(filepath.Join(bin, "go"), logs("go"))
	// What the script itself runs, from the system.
	for _, tool := range []string{"id", "dirname", "cat"} {
		p, err := exec.LookPath(tool)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(p, filepath.Join(bin, tool)); err != nil {
			t.Fatal(err)
		}
	}
	return script, bin, log
}

// runQuickstart runs script with args and PATH=path, as nobody when asUser (and this test runs
// as root), and returns its exit code, stdout and stderr.
func runQuickstart(t *testing.T, script, path string, asUser bool, env []string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(script, args...)
	cmd.Env = append([]string{"PATH=" + path}, env...)
	if asUser && os.Geteuid() == 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	}
	if !asUser && os.Geteuid() != 0 {
		t.Skip("the root path of quickstart needs root")
	}
	var so, se strings.Builder
	cmd.Stdout, cmd.Stderr = &so, &se
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run quickstart %v: %v", args, err)
	}
	return code, so.String(), se.String()
}

func readLog(t *testing.T, log string) string {
	t.Helper()
	b, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(log, nil, 0o666); err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// The entry script: help and usage errors change nothing; a user without sudo is told to run it
// as root; a user with sudo has it run again with sudo, handing down the Go it runs; root
// installs the packages, then runs make with that Go on PATH.
func TestQuickstartScript(t *testing.T) {
	script, bin, log := quickstartCopy(t)
	for _, tc := range []struct {
		name      string
		args      []string
		code      int
		out, err  string
		logWanted string
	}{
		{name: "help", args: []string{"--help"}, out: "Usage: ./quickstart demo|test|deps\n"},
		{name: "no target", code: 2, err: "Usage: ./quickstart demo|test|deps\n"},
		{name: "unknown target", args: []string{"bench-all"}, code: 2, err: "quickstart: unknown target 'bench-all'\nUsage: "},
		{name: "two targets", args: []string{"demo", "test"}, code: 2, err: "quickstart: one target, got 2: demo test\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := runQuickstart(t, script, bin, true, nil, tc.args...)
			if code != tc.code || !strings.HasPrefix(out, tc.out) || !strings.HasPrefix(errOut, tc.err) || (tc.out == "") != (out == "") {
				t.Errorf("quickstart %q: exit %d, want %d; stdout %q, want %q...; stderr %q, want %q...", tc.args, code, tc.code, out, tc.out, errOut, tc.err)
			}
			if l := readLog(t, log); l != "" {
				t.Errorf("quickstart %q ran: %s", tc.args, l)
			}
		})
	}

	// Not root, no sudo (a PATH without it): say so, and how to run it as root.
	noSudo := t.TempDir()
	for _, tool := range []string{"id", "dirname", "go"} {
		if err := os.Symlink(filepath.Join(bin, tool), filepath.Join(noSudo, tool)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(noSudo, 0o755); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runQuickstart(t, script, noSudo, true, nil, "test")
	want := "quickstart: 'test' needs root (network namespaces, XDP, netfilter, apt), and sudo is not installed:\n" +
		"  run it as root: su -c '" + script + " test'\n"
	if code != 1 || out != "" || errOut != want {
		t.Errorf("quickstart test, not root, no sudo: exit %d, want 1; stdout %q; stderr %q, want %q", code, out, errOut, want)
	}
	if l := readLog(t, log); l != "" {
		t.Errorf("quickstart test, not root, no sudo, ran: %s", l)
	}

	// Not root, with sudo: itself again, under sudo, with this user's Go.
	code, out, errOut = runQuickstart(t, script, bin, true, nil, "demo")
	if want := "sudo -- env GO=" + filepath.Join(bin, "go") + " " + script + " demo\n"; code != 0 || readLog(t, log) != want {
		t.Errorf("quickstart demo, not root, with sudo: exit %d (stdout %q, stderr %q), want 0 and %q run", code, out, errOut, want)
	}

	// Root, as sudo runs it: install, then make, with the Go handed down on PATH.
	goDir := t.TempDir()
	code, out, errOut = runQuickstart(t, script, "/nonexistent:"+bin, false, []string{"GO=" + filepath.Join(goDir, "go")}, "test")
	got := readLog(t, log)
	if want := "install-deps \nmake test\nmake PATH=" + goDir + ":/nonexistent:" + bin + "\n"; code != 0 || got != want {
		t.Errorf("quickstart test as root: exit %d (stdout %q, stderr %q), ran:\n%s\nwant:\n%s", code, out, errOut, got, want)
	}
	// deps installs, and has nothing left for make to do.
	code, _, errOut = runQuickstart(t, script, bin, false, nil, "deps")
	if got := readLog(t, log); code != 0 || got != "install-deps \n" {
		t.Errorf("quickstart deps as root: exit %d (stderr %q), ran:\n%s\nwant install-deps alone", code, errOut, got)
	}
}
