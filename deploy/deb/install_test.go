package deb

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/xsyn-project/xsyn/internal/testutil"
)

// scratch is a root directory that dpkg --root installs into. dpkg runs the maintainer scripts
// chrooted into it, so it holds what they run: sh, sed and rm copied from the host with their
// libraries, /dev/null, and a stub systemctl that records its arguments. /run/systemd/system
// says whether systemd runs, as on a real host.
type scratch struct {
	t    *testing.T
	root string
}

// stubSystemctl stands in for systemctl: the test reads what the scripts asked of systemd.
const stubSystemctl = "#!/bin/sh\necho \"$*\" >> /systemctl.log\n"

func newScratch(t *testing.T) *scratch {
	t.Helper()
	requireRoot(t)
	for _, tool := range []string{"dpkg", "dpkg-query", "ldd"} {
		testutil.RequireTool(t, tool, "not a Debian system")
	}
	s := &scratch{t, t.TempDir()}
	for _, d := range []string{"var/lib/dpkg/info", "var/lib/dpkg/updates", "var/lib/dpkg/triggers", "bin", "dev",
		"usr/local/sbin", "tmp", "etc/systemd/system/multi-user.target.wants"} {
		s.mkdir(d)
	}
	s.write("var/lib/dpkg/status", "", 0o644)
	s.write("var/lib/dpkg/available", "", 0o644)
	s.write("usr/local/sbin/systemctl", stubSystemctl, 0o755)
	if err := syscall.Mknod(s.path("dev/null"), syscall.S_IFCHR|0o666, devNull); err != nil {
		t.Fatalf("mknod /dev/null in the scratch root: %v", err)
	}
	s.copyProgram("/bin/sh", "bin/sh")
	s.copyProgram("/bin/sed", "bin/sed")
	s.copyProgram("/bin/rm", "bin/rm")
	return s
}

const devNull = 1<<8 | 3 // makedev(1, 3)

// requireRoot is the one place that decides: dpkg --root must chroot, chown and mknod.
func requireRoot(t *testing.T) {
	t.Helper()
	testutil.RequireRoot(t, "installing with dpkg --root needs root (it chroots to run the maintainer scripts)")
}

func (s *scratch) path(name string) string { return filepath.Join(s.root, name) }

func (s *scratch) mkdir(name string) {
	s.t.Helper()
	if err := os.MkdirAll(s.path(name), 0o755); err != nil {
		s.t.Fatal(err)
	}
}

func (s *scratch) write(name, content string, mode os.FileMode) {
	s.t.Helper()
	if err := os.WriteFile(s.path(name), []byte(content), mode); err != nil {
		s.t.Fatal(err)
	}
	if err := os.Chmod(s.path(name), mode); err != nil {
		s.t.Fatal(err)
	}
}

func (s *scratch) exists(name string) bool {
	_, err := os.Lstat(s.path(name))
	return err == nil
}

// copyProgram copies a host program and the libraries ldd names into the scratch root.
func (s *scratch) copyProgram(from, to string) {
	s.t.Helper()
	real, err := filepath.EvalSymlinks(from)
	if err != nil {
		s.t.Fatal(err)
	}
	s.copy(real, to, 0o755)
	out, err := exec.Command("ldd", real).Output()
	if err != nil {
		s.t.Fatalf("ldd %s: %v", real, err)
	}
	for _, lib := range regexp.MustCompile(`(?m)(/\S+) \(0x`).FindAllStringSubmatch(string(out), -1) {
		s.mkdir(filepath.Dir(lib[1]))
		s.copy(lib[1], lib[1], 0o755)
	}
}

func (s *scratch) copy(from, to string, mode os.FileMode) {
	s.t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		s.t.Fatal(err)
	}
	s.write(to, string(b), mode)
}

// systemd says whether systemd runs (the scripts test for /run/systemd/system).
func (s *scratch) systemd(running bool) {
	s.t.Helper()
	if running {
		s.mkdir("run/systemd/system")
	} else if err := os.RemoveAll(s.path("run/systemd")); err != nil {
		s.t.Fatal(err)
	}
}

// dpkg runs dpkg --root on the scratch root, with what a root shell would have in PATH, and
// returns its output and what the scripts asked of systemctl. Dependencies are forced: the
// scratch root has no iptables, and the test is about this package. Every path is included: a
// host's dpkg.cfg.d may exclude docs and man pages (Debian's slim container images do). dpkg
// logs to the scratch root, not to the host's /var/log/dpkg.log, which dpkg.cfg names.
func (s *scratch) dpkg(args ...string) (output string, systemctl []string) {
	s.t.Helper()
	log := s.path("systemctl.log")
	os.Remove(log)
	cmd := exec.Command("dpkg", append([]string{"--root=" + s.root, "--log=" + s.path("dpkg.log"), "--force-depends", "--path-include=/*"}, args...)...)
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C", "DEBIAN_FRONTEND=noninteractive"}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr, cmd.Stdin = &out, &out, nil
	if err := cmd.Run(); err != nil {
		s.t.Fatalf("dpkg %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	if b, err := os.ReadFile(log); err == nil {
		systemctl = strings.Split(strings.TrimSpace(string(b)), "\n")
	}
	return out.String(), systemctl
}

// status is the package's state in the scratch root's dpkg database.
func (s *scratch) status() string {
	s.t.Helper()
	out, _ := exec.Command("dpkg-query", "--admindir="+s.path("var/lib/dpkg"), "-W", "-f=${Status}", "xsyn").Output()
	return string(out)
}

func wantCalls(t *testing.T, step string, got []string, want ...string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s: the maintainer scripts ran systemctl %q, want %q", step, got, want)
	}
}

// TestInstall installs, upgrades, removes and purges the package with dpkg --root, the maintainer
// scripts running as dpkg runs them, and checks the installed files: the units pass
// systemd-analyze verify where they are installed, man finds and renders the page, and systemd
// is told to reload its units, never to enable, start, reload or restart xsyn@.
func TestInstall(t *testing.T) {
	deb := pkg(t)
	s := newScratch(t)
	s.systemd(true)

	// A new install.
	_, calls := s.dpkg("--install", deb)
	wantCalls(t, "install", calls, "daemon-reload")
	if st := s.status(); st != "install ok installed" {
		t.Fatalf("after install: %q", st)
	}
	for name := range packaged(t) {
		if !s.exists(name) {
			t.Errorf("%s: not installed", name)
		}
	}
	if out, err := exec.Command("dpkg", "--root="+s.root, "--verify", "xsyn").CombinedOutput(); err != nil || len(out) > 0 {
		t.Errorf("dpkg --verify (md5sums of the installed files): %v\n%s", err, out)
	}
	if cf, _ := exec.Command("dpkg-query", "--admindir="+s.path("var/lib/dpkg"), "-W", "-f=${Conffiles}", "xsyn").Output(); !regexp.MustCompile(`^\s*/etc/xsyn/xsyn.conf [0-9a-f]{32}\s*$`).Match(cf) {
		t.Errorf("conffiles registered: %q, want /etc/xsyn/xsyn.conf and its md5sum", cf)
	}
	t.Run("systemd-analyze verify", func(t *testing.T) { verifyUnits(t, s) })
	t.Run("man", func(t *testing.T) { renderMan(t, s) })
	t.Run("FILES", func(t *testing.T) { manFiles(t, s) })

	// An upgrade (the same version again, as dpkg runs it: configure with the old version) keeps
	// the operator's edit of the conffile, asks nothing, and attaches nothing.
	conf := readFile(t, s.path("etc/xsyn/xsyn.conf")) + "synproxy in inface eth9 dport 8080 accept # edited\n"
	s.write("etc/xsyn/xsyn.conf", conf, 0o644)
	_, calls = s.dpkg("--install", deb)
	wantCalls(t, "upgrade", calls, "daemon-reload", "try-restart xsyn-exporter.service")
	if readFile(t, s.path("etc/xsyn/xsyn.conf")) != conf {
		t.Errorf("upgrade: the edited /etc/xsyn/xsyn.conf was replaced")
	}

	// Removal stops the units (stop detaches), and names what stays protected: here a stub xsyn
	// says eth1 is, as an interface attached by hand would be.
	s.write("usr/sbin/xsyn", "#!/bin/sh\nprintf '{\\n  \"interfaces\": [\\n    {\\n      \"interface\": \"eth1\",\\n      \"mode\": \"native\"\\n    }\\n  ]\\n}\\n'\n", 0o755)
	out, calls := s.dpkg("--remove", "xsyn")
	wantCalls(t, "remove", calls, "stop xsyn@*.service xsyn-exporter.service", "daemon-reload")
	if !strings.Contains(out, "xsyn: eth1 stays protected") || !strings.Contains(out, "xsyn detach eth1") {
		t.Errorf("remove: no word of eth1, still protected:\n%s", out)
	}
	if st := s.status(); st != "deinstall ok config-files" {
		t.Errorf("after remove: %q", st)
	}
	if s.exists("usr/sbin/xsyn") || s.exists("usr/lib/systemd/system/xsyn@.service") {
		t.Errorf("remove: the binary or the units are still there")
	}
	if readFile(t, s.path("etc/xsyn/xsyn.conf")) != conf {
		t.Errorf("remove: /etc/xsyn/xsyn.conf is gone or changed; a conffile stays until purge")
	}

	// Purge removes the conffile and the links systemctl enable made, and nothing else.
	wants := "etc/systemd/system/multi-user.target.wants/"
	for _, l := range []string{"xsyn@eth0.service", "xsyn-exporter.service", "ssh.service"} {
		if err := os.Symlink("/usr/lib/systemd/system/"+l, s.path(wants+l)); err != nil {
			t.Fatal(err)
		}
	}
	s.write("etc/xsyn/cookie.key", "00112233445566778899aabbccddeeff", 0o600)
	_, calls = s.dpkg("--purge", "xsyn")
	wantCalls(t, "purge", calls, "daemon-reload")
	if st := s.status(); st != "" && st != "unknown ok not-installed" {
		t.Errorf("after purge: %q", st)
	}
	for name, want := range map[string]bool{
		"etc/xsyn/xsyn.conf":            false,
		wants + "xsyn@eth0.service":     false,
		wants + "xsyn-exporter.service": false,
		wants + "ssh.service":           true, // not ours
		"etc/xsyn/cookie.key":           true, // the operator's
	} {
		if s.exists(name) != want {
			t.Errorf("after purge: /%s exists: %v, want %v", name, !want, want)
		}
	}

	// Without systemd (a container, a chroot) the scripts leave systemctl alone. The real
	// binary's status fails in the scratch root (no iptables): removal says nothing then.
	s.systemd(false)
	_, calls = s.dpkg("--install", deb)
	wantCalls(t, "install without systemd", calls)
	out, calls = s.dpkg("--purge", "xsyn")
	wantCalls(t, "purge without systemd", calls)
	if strings.Contains(out, "stays protected") {
		t.Errorf("purge without systemd: %s", out)
	}
}

// verifyUnits runs systemd-analyze verify on the installed units, with the host's own units in
// the scratch root's /lib/systemd/system for the targets they name (as deploy/systemd's test
// does), so that it checks the installed paths: the units where the package put them, and the
// binary they run where the package put it.
func verifyUnits(t *testing.T, s *scratch) {
	testutil.RequireTool(t, "systemd-analyze", "Debian: apt-get install systemd")
	const hostUnits = "/usr/lib/systemd/system"
	if _, err := os.Stat(filepath.Join(hostUnits, "sysinit.target")); err != nil {
		t.Skipf("no systemd units in %s to verify against: %v", hostUnits, err)
	}
	if err := os.MkdirAll(s.path("lib/systemd"), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", "-a", hostUnits, s.path("lib/systemd/")).CombinedOutput(); err != nil {
		t.Fatalf("copy %s: %v\n%s", hostUnits, err, out)
	}
	defer os.RemoveAll(s.path("lib/systemd"))
	out, err := exec.Command("systemd-analyze", "verify", "--root="+s.root, "xsyn@eth0.service", "xsyn-exporter.service").CombinedOutput()
	// verify exits 0 on unknown keys and bad values too; every line it prints is a finding.
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// renderMan: man finds the page where the package put it, by name, and renders it without a
// warning.
func renderMan(t *testing.T, s *scratch) {
	testutil.RequireTool(t, "man", "Debian: apt-get install man-db; deploy/install-deps.sh installs it")
	for _, args := range [][]string{
		{"-l", s.path("usr/share/man/man8/xsyn.8.gz")},
		{"--manpath=" + s.path("usr/share/man"), "8", "xsyn"},
	} {
		cmd := exec.Command("man", append([]string{"--warnings", "-E", "ascii"}, args...)...)
		cmd.Env = append(os.Environ(), "MANWIDTH=80", "MANPAGER=cat", "PAGER=cat", "LC_ALL=C.UTF-8")
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil || stderr.Len() > 0 {
			t.Errorf("man %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
			continue
		}
		text := stdout.String()
		for _, want := range []string{"XSYN(8)", "SYNOPSIS", "xsyn attach", "--cookie-secret-file", "EXIT STATUS", "FILES"} {
			if !strings.Contains(text, want) {
				t.Errorf("man %s: no %q in:\n%.400s", strings.Join(args, " "), want, text)
			}
		}
	}
}

// manFiles: every path the man page's FILES section names under /etc and /usr is installed.
func manFiles(t *testing.T, s *scratch) {
	_, files, ok := strings.Cut(gunzip(t, s.path("usr/share/man/man8/xsyn.8.gz")), "\n.SH FILES\n")
	if !ok {
		t.Fatal("xsyn.8 has no FILES section")
	}
	files, _, _ = strings.Cut(files, "\n.SH ")
	paths := regexp.MustCompile(`(?m)^\.I (\S+)$`).FindAllStringSubmatch(files, -1)
	if len(paths) == 0 {
		t.Fatal("xsyn.8: FILES names no path")
	}
	for _, p := range paths {
		name := strings.ReplaceAll(p[1], `\-`, "-")
		if strings.HasPrefix(name, "/etc/") || strings.HasPrefix(name, "/usr/") {
			if !s.exists(name) {
				t.Errorf("xsyn.8 FILES names %s; the package does not install it", name)
			}
		}
	}
}
