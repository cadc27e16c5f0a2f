// Package deb holds the tests of the Debian package that `make deb` builds (README.md next to
// this file): they build it as a user would, read its metadata and file list as dpkg-deb shows
// them, compare every file with what the repository and `make build` make, and install, upgrade,
// remove and purge it with dpkg --root in a scratch directory (install_test.go).
package deb

import (
	"bytes"
	"compress/gzip"
	"debug/buildinfo"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/xsyn-project/xsyn/internal/testutil"
)

const repoRoot = "../.."

var (
	debFile  string // built by TestMain with make deb
	buildErr error  // why it could not be
	unpacked string // the package's files, dpkg-deb -x
	control  string // its control archive, dpkg-deb -e
)

func TestMain(m *testing.M) { os.Exit(runTests(m)) }

func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "xsyn-deb-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	debFile, buildErr = build(dir)
	return m.Run()
}

// build runs `make deb` into dir and unpacks the package next to it.
func build(dir string) (string, error) {
	for _, tool := range []string{"make", "dpkg-deb"} {
		if _, err := exec.LookPath(tool); err != nil {
			return "", fmt.Errorf("%w: %s is not installed (Debian: apt-get install make dpkg)", errMissing, tool)
		}
	}
	out := filepath.Join(dir, "out")
	if b, err := exec.Command("make", "-C", repoRoot, "deb", "DEB_OUT="+out).CombinedOutput(); err != nil {
		return "", fmt.Errorf("make deb: %v\n%s", err, b)
	}
	debs, _ := filepath.Glob(filepath.Join(out, "*.deb"))
	if len(debs) != 1 {
		return "", fmt.Errorf("make deb made %d .deb files in %s, want 1: %q", len(debs), out, debs)
	}
	unpacked, control = filepath.Join(dir, "files"), filepath.Join(dir, "control")
	for _, args := range [][]string{{"-x", debs[0], unpacked}, {"-e", debs[0], control}} {
		if b, err := exec.Command("dpkg-deb", args...).CombinedOutput(); err != nil {
			return "", fmt.Errorf("dpkg-deb %s: %v\n%s", strings.Join(args, " "), err, b)
		}
	}
	return debs[0], nil
}

// errMissing marks a tool missing to build or read the package: the tests skip.
var errMissing = errors.New("missing tool")

// pkg returns the .deb that make built; a tool missing to build or read it skips the test.
func pkg(t testing.TB) string {
	t.Helper()
	if buildErr != nil {
		if errors.Is(buildErr, errMissing) {
			t.Skip(buildErr)
		}
		t.Fatal(buildErr)
	}
	return debFile
}

// dpkgDeb runs dpkg-deb on the package.
func dpkgDeb(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command("dpkg-deb", append(args, pkg(t))...).Output()
	if err != nil {
		t.Fatalf("dpkg-deb %s: %v", strings.Join(args, " "), err)
	}
	return string(out)
}

func readFile(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// debVersion runs debversion.sh, as the Makefile does.
func debVersion(t testing.TB, v string) string {
	t.Helper()
	out, err := exec.Command("./debversion.sh", v).Output()
	if err != nil {
		t.Fatalf("debversion.sh %s: %v", v, err)
	}
	return strings.TrimSpace(string(out))
}

// TestVersion: every shape of `git describe --tags --always --dirty` becomes a version dpkg
// accepts, and they sort as the commits do.
func TestVersion(t *testing.T) {
	testutil.RequireTool(t, "dpkg", "not a Debian system")
	// In the order dpkg must sort them.
	prev := ""
	for _, c := range []struct{ describe, want string }{
		{"abcdef0", "0~gabcdef0"}, // no tag yet
		{"abcdef0-dirty", "0~gabcdef0+0.dirty"},
		{"v1.0.0-rc1", "1.0.0~rc1"},
		{"v1.0.0-rc1-2-g1234567", "1.0.0~rc1+2.g1234567"},
		{"v1.0.0", "1.0.0"},
		{"v1.0.0-dirty", "1.0.0+0.dirty"},
		{"v1.0.0-4-gabcdef0", "1.0.0+4.gabcdef0"},
		{"v1.0.0-4-gabcdef0-dirty", "1.0.0+4.gabcdef0.dirty"},
		{"v1.0.0-12-g0123456", "1.0.0+12.g0123456"},
		{"v1.0.1", "1.0.1"},
	} {
		got := debVersion(t, c.describe)
		if got != c.want {
			t.Errorf("debversion.sh %s = %s, want %s", c.describe, got, c.want)
		}
		if out, err := exec.Command("dpkg", "--validate-version", got).CombinedOutput(); err != nil {
			t.Errorf("debversion.sh %s = %s: dpkg --validate-version: %s", c.describe, got, out)
		}
		if prev != "" && exec.Command("dpkg", "--compare-versions", prev, "lt", got).Run() != nil {
			t.Errorf("dpkg does not sort %s before %s", prev, got)
		}
		prev = got
	}
	for _, v := range []string{"dev", "release/2", "v2.0.0-beta_1"} {
		if d := debVersion(t, v); exec.Command("dpkg", "--validate-version", d).Run() != nil {
			t.Errorf("debversion.sh %s = %s: dpkg --validate-version refuses it", v, d)
		}
	}
}

// TestMetadata: dpkg-deb -I shows the control fields, the conffile and the maintainer scripts
// the package is meant to have, the version is the binary's own made Debian-valid, and the file
// is named as Debian names packages.
func TestMetadata(t *testing.T) {
	pkg(t)
	version := binaryVersion(t)
	arch := hostArch(t)
	for name, want := range map[string]string{
		"Package":      "xsyn",
		"Version":      debVersion(t, version),
		"Architecture": arch,
		"Section":      "net",
		"Priority":     "optional",
		"Depends":      "iptables, nftables",
		"Homepage":     "https://github.com/xsyn-project/xsyn",
	} {
		if got := strings.TrimSpace(fieldOf(t, name)); got != want {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
	}
	if m := fieldOf(t, "Maintainer"); !regexp.MustCompile(`^[^<>]+ <[^<>@\s]+@[^<>\s]+>$`).MatchString(m) {
		t.Errorf("Maintainer %q: want \"Name <address>\"", m)
	}
	if d := fieldOf(t, "Description"); !strings.HasPrefix(d, "SYN-flood defence") || !strings.Contains(d, "\n .\n") {
		t.Errorf("Description: want a synopsis and paragraphs, got:\n%s", d)
	}
	if want := fmt.Sprintf("xsyn_%s_%s.deb", debVersion(t, version), arch); filepath.Base(pkg(t)) != want {
		t.Errorf("file name %s, want %s", filepath.Base(pkg(t)), want)
	}

	info := dpkgDeb(t, "-I")
	t.Logf("dpkg-deb -I:\n%s", info)
	// "   643 bytes,    15 lines   *  postinst   #!/bin/sh": * marks an executable.
	var members, executables []string
	for _, l := range strings.Split(info, "\n") {
		f := strings.Fields(l)
		if len(f) < 5 || f[1] != "bytes," || f[3] != "lines" {
			continue
		}
		if f[4] == "*" && len(f) > 5 {
			executables = append(executables, f[5])
			f[4] = f[5]
		}
		members = append(members, f[4])
	}
	slices.Sort(members)
	slices.Sort(executables)
	if want := []string{"conffiles", "control", "md5sums", "postinst", "postrm", "prerm"}; !slices.Equal(members, want) {
		t.Errorf("control archive: %q, want %q (no preinst: nothing to do before unpacking)", members, want)
	}
	if want := []string{"postinst", "postrm", "prerm"}; !slices.Equal(executables, want) {
		t.Errorf("executable control members: %q, want %q", executables, want)
	}
	if got := readFile(t, filepath.Join(control, "conffiles")); got != "/etc/xsyn/xsyn.conf\n" {
		t.Errorf("conffiles: %q, want only /etc/xsyn/xsyn.conf", got)
	}
	for _, s := range []string{"postinst", "prerm", "postrm"} {
		if readFile(t, filepath.Join(control, s)) != readFile(t, s) {
			t.Errorf("%s in the package differs from deploy/deb/%s", s, s)
		}
	}
}

// fieldOf is a control field as dpkg-deb -f prints it, continuation lines included.
func fieldOf(t testing.TB, name string) string {
	t.Helper()
	out, err := exec.Command("dpkg-deb", "-f", pkg(t), name).Output()
	if err != nil {
		t.Fatalf("dpkg-deb -f %s: %v", name, err)
	}
	return strings.TrimRight(string(out), "\n")
}

// binaryVersion is what the packaged binary says: xsyn VERSION.
func binaryVersion(t testing.TB) string {
	t.Helper()
	out, err := exec.Command(filepath.Join(unpacked, "usr/sbin/xsyn"), "version").Output()
	if err != nil {
		t.Fatalf("xsyn version: %v", err)
	}
	v, ok := strings.CutPrefix(strings.TrimSpace(string(out)), "xsyn ")
	if !ok || v == "dev" {
		t.Fatalf("xsyn version: %q, want the version make gave it", out)
	}
	return v
}

func hostArch(t testing.TB) string {
	t.Helper()
	out, err := exec.Command("dpkg", "--print-architecture").Output()
	if err != nil {
		t.Skipf("dpkg --print-architecture: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// packaged lists the files (not directories) the package installs, with mode and owner, from
// dpkg-deb -c: "/usr/sbin/xsyn" -> "-rwxr-xr-x root/root".
func packaged(t testing.TB) map[string]string {
	t.Helper()
	files := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(dpkgDeb(t, "-c")), "\n") {
		f := strings.Fields(l)
		if len(f) < 6 {
			t.Fatalf("dpkg-deb -c: cannot read %q", l)
		}
		if f[0][0] == 'd' {
			if f[0] != "drwxr-xr-x" || f[1] != "root/root" {
				t.Errorf("directory %s: %s %s, want drwxr-xr-x root/root", f[5], f[0], f[1])
			}
			continue
		}
		files[strings.TrimPrefix(f[5], ".")] = f[0] + " " + f[1]
	}
	return files
}

// TestFiles: dpkg-deb -c lists exactly the binary, the units, the conffile, the man page and the
// docs, root's, with their modes; nothing under /usr/local, where packages must not write.
func TestFiles(t *testing.T) {
	want := map[string]string{
		"/usr/sbin/xsyn":                                "-rwxr-xr-x root/root",
		"/usr/lib/systemd/system/xsyn@.service":         "-rw-r--r-- root/root",
		"/usr/lib/systemd/system/xsyn-exporter.service": "-rw-r--r-- root/root",
		"/etc/xsyn/xsyn.conf":                           "-rw-r--r-- root/root",
		"/usr/share/man/man8/xsyn.8.gz":                 "-rw-r--r-- root/root",
		"/usr/share/doc/xsyn/copyright":                 "-rw-r--r-- root/root",
		"/usr/share/doc/xsyn/README.Debian":             "-rw-r--r-- root/root",
		"/usr/share/doc/xsyn/README.md":                 "-rw-r--r-- root/root",
		"/usr/share/doc/xsyn/README.systemd.md":         "-rw-r--r-- root/root",
	}
	docs, _ := filepath.Glob(filepath.Join(repoRoot, "docs/*.md"))
	if len(docs) == 0 {
		t.Fatal("no docs/*.md in the repository")
	}
	for _, d := range docs {
		want["/usr/share/doc/xsyn/docs/"+filepath.Base(d)] = "-rw-r--r-- root/root"
	}
	got := packaged(t)
	for name, mode := range want {
		if got[name] != mode {
			t.Errorf("%s: %q, want %q", name, got[name], mode)
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("%s: in the package, not expected", name)
		}
	}
}

// TestContents: each packaged file is what the repository holds, or what make builds from it.
func TestContents(t *testing.T) {
	pkg(t)
	same := map[string]string{
		"etc/xsyn/xsyn.conf":                   "deploy/systemd/xsyn.conf.example",
		"usr/share/doc/xsyn/README.md":         "README.md",
		"usr/share/doc/xsyn/README.Debian":     "deploy/deb/README.Debian",
		"usr/share/doc/xsyn/README.systemd.md": "deploy/systemd/README.md",
	}
	docs, _ := filepath.Glob(filepath.Join(repoRoot, "docs/*.md"))
	for _, d := range docs {
		same["usr/share/doc/xsyn/docs/"+filepath.Base(d)] = "docs/" + filepath.Base(d)
	}
	for inPkg, inRepo := range same {
		if readFile(t, filepath.Join(unpacked, inPkg)) != readFile(t, filepath.Join(repoRoot, inRepo)) {
			t.Errorf("/%s differs from %s", inPkg, inRepo)
		}
	}

	// The units, with the binary where the package puts it.
	for _, u := range []string{"xsyn@.service", "xsyn-exporter.service"} {
		got := readFile(t, filepath.Join(unpacked, "usr/lib/systemd/system", u))
		orig := readFile(t, filepath.Join(repoRoot, "deploy/systemd", u))
		if want := strings.ReplaceAll(orig, "/usr/local/sbin/xsyn", "/usr/sbin/xsyn"); got != want || got == orig {
			t.Errorf("%s: want deploy/systemd/%s with /usr/sbin/xsyn for /usr/local/sbin/xsyn", u, u)
		}
		if strings.Contains(got, "/usr/local") {
			t.Errorf("%s names /usr/local, which a package does not install to", u)
		}
	}

	copyright := readFile(t, filepath.Join(unpacked, "usr/share/doc/xsyn/copyright"))
	if !strings.HasPrefix(copyright, readFile(t, filepath.Join(repoRoot, "LICENSE"))) || !strings.Contains(copyright, "/usr/share/common-licenses/GPL-2") {
		t.Errorf("copyright: want LICENSE and where Debian keeps the GPL-2's text, got:\n%s", copyright)
	}

	checkBinary(t, filepath.Join(unpacked, "usr/sbin/xsyn"))
	checkManPage(t, filepath.Join(unpacked, "usr/share/man/man8/xsyn.8.gz"))
}

// checkBinary: built as make build builds it: static, without cgo, trimmed paths, stripped, and
// with a version (TestMetadata).
func checkBinary(t *testing.T, bin string) {
	info, err := buildinfo.ReadFile(bin)
	if err != nil {
		t.Fatalf("%s: %v", bin, err)
	}
	settings := map[string]string{}
	for _, s := range info.Settings {
		settings[s.Key] = s.Value
	}
	if settings["-trimpath"] != "true" || settings["CGO_ENABLED"] != "0" {
		t.Errorf("xsyn built with -trimpath=%q CGO_ENABLED=%q, want true and 0 (make build)", settings["-trimpath"], settings["CGO_ENABLED"])
	}
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("xsyn has a program interpreter: dynamically linked, want static")
		}
	}
	// -ldflags '-s -w' (buildinfo leaves ldflags out under -trimpath): no symbol table, no DWARF.
	for _, sec := range []string{".symtab", ".debug_info"} {
		if f.Section(sec) != nil {
			t.Errorf("xsyn has a %s section: not built with make build's -ldflags '-s -w'", sec)
		}
	}
}

// checkManPage: the packaged page is what cmd/xsyn-man writes from the packaged binary, so it
// holds what that command's tests check (every command and flag of --help, rendered).
func checkManPage(t *testing.T, name string) {
	page := []byte(gunzip(t, name))
	th := regexp.MustCompile(`(?m)^\.TH XSYN 8 "([^"]*)" "xsyn ([^"]*)"`).FindSubmatch(page)
	if th == nil {
		t.Fatalf("xsyn.8: no .TH XSYN 8 line")
	}
	date := strings.ReplaceAll(string(th[1]), `\-`, "-")
	if v := strings.ReplaceAll(string(th[2]), `\-`, "-"); v != binaryVersion(t) {
		t.Errorf("xsyn.8 is of version %s, the binary %s", v, binaryVersion(t))
	}
	gen := exec.Command(goTool(), "run", "./cmd/xsyn-man", "-xsyn", filepath.Join(unpacked, "usr/sbin/xsyn"), "-date", date)
	gen.Dir = repoRoot
	var stderr bytes.Buffer
	gen.Stderr = &stderr
	want, err := gen.Output()
	if err != nil {
		t.Fatalf("xsyn-man: %v\n%s", err, stderr.String())
	}
	if !bytes.Equal(page, want) {
		t.Errorf("the packaged xsyn.8 is not what cmd/xsyn-man writes from the packaged binary")
	}
}

func gunzip(t testing.TB, name string) string {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return string(b)
}

func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}
