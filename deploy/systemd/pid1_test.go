package systemd

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestUnderSystemd runs the units as shipped under a real systemd, as PID 1 of private mount,
// PID, UTS and cgroup namespaces inside the DUT namespace: the sandboxing directives, which
// TestUnits cannot apply, are applied by systemd itself. Opt-in, because it starts a service
// manager: it sees only its own units (no generators, no host units), its own /run, /dev, cgroup
// tree and /etc overlay, and the global sysctls read-only while it starts.
func TestUnderSystemd(t *testing.T) {
	if os.Getenv("XSYN_TEST_SYSTEMD_PID1") == "" {
		t.Skip("opt-in: XSYN_TEST_SYSTEMD_PID1=1 runs the units under systemd as PID 1 in private namespaces")
	}
	l := newLab(t)
	t.Cleanup(func() {
		exec.Command("nsenter", "--net=/run/netns/"+l.pair.Server.Name, xsynBin, "detach", iface).Run()
	})
	l.echoServer(t, 8080)
	l.echoServer(t, 9090)
	m := startManager(t, l)

	m.setConfig(t, l.config(t, 8080))
	m.systemctl(t, "start", "xsyn@"+iface)
	st := l.protected(t, "after systemctl start", 8080)
	l.connect(t, dut4.Addr(), 8080)
	l.connect(t, dut6.Addr(), 8080)

	m.setConfig(t, l.config(t, 9090))
	m.systemctl(t, "reload", "xsyn@"+iface)
	if st2 := l.protected(t, "after systemctl reload", 9090); st2.ProgramID != st.ProgramID {
		t.Errorf("systemctl reload replaced program %d with %d", st.ProgramID, st2.ProgramID)
	}
	l.connect(t, dut6.Addr(), 9090)

	m.systemctl(t, "start", exportUnit)
	var body string
	var err error
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if body, err = l.get(); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatalf("exporter under systemd: %v\n%s", err, m.log())
	}
	mt := parseMetrics(body)
	if v, ok := mt.value("xsyn_collection_errors_total", nil); !ok || v != 0 {
		t.Errorf("exporter under systemd: xsyn_collection_errors_total %v (present %v), want 0\n%s", v, ok, m.log())
	}
	if v, ok := mt.value("xsyn_attached", map[string]string{"iface": iface, "mode": "native"}); !ok || v != 1 {
		t.Errorf("exporter under systemd: xsyn_attached{mode=native} %v (present %v), want 1", v, ok)
	}
	// In its sandbox, the exporter puts back what a firewall reload took and a sysctl set back:
	// it takes the lock and reads the records in /run/xsyn, and writes /proc/sys/net.
	if out, err := l.pair.Server.Run("sh", "-c", "iptables -F && sysctl -q -w net.netfilter.nf_conntrack_tcp_loose=1"); err != nil {
		t.Fatalf("the reload: %v\n%s", err, out)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		body, err = l.get()
		v, ok := parseMetrics(body).value("xsyn_rules_repairs_total", map[string]string{"iface": iface})
		if err == nil && ok && v >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("exporter under systemd: xsyn_rules_repairs_total %v (present %v) 10s after iptables -F: %v\n%s", v, ok, err, m.log())
		}
	}
	if v, ok := parseMetrics(body).value("xsyn_rules_repair_failures_total", map[string]string{"iface": iface}); !ok || v != 0 {
		t.Errorf("exporter under systemd: xsyn_rules_repair_failures_total %v (present %v), want 0\n%s", v, ok, m.log())
	}
	if out, _ := l.pair.Server.Run("sysctl", "-n", "net.netfilter.nf_conntrack_tcp_loose"); strings.TrimSpace(out) != "0" {
		t.Errorf("nf_conntrack_tcp_loose after the exporter's repair under systemd: %q, want 0\n%s", out, m.log())
	}
	l.connect(t, dut4.Addr(), 9090)

	m.systemctl(t, "stop", exportUnit, "xsyn@"+iface)
	for _, u := range []string{exportUnit, "xsyn@" + iface + ".service"} {
		if r := m.show(t, u, "Result"); r != "success" {
			t.Errorf("%s stopped with result %q\n%s", u, r, m.log())
		}
	}
	if sts := l.status(t); len(sts) != 0 {
		t.Errorf("after systemctl stop, status still lists %+v", sts)
	}
	if after := l.netfilterAndSysctls(t); strings.Contains(after, "XSYN") {
		t.Errorf("xsyn's rules left after systemctl stop:\n%s", after)
	}
}

// manager is a systemd running as PID 1 of its own namespaces.
type manager struct {
	pid int // in the host's PID namespace
	dir string
}

// managerSetup prepares the namespaces the manager runs in, then becomes it. $1: the test's
// directory; $2: the xsyn binary.
const managerSetup = `set -e
H=$1
mount --make-rprivate /
mount --bind /dev $H/hostdev
mount -t cgroup2 cgroup2 /sys/fs/cgroup
umount -R /run/netns 2>/dev/null || true
mount -t tmpfs -o mode=755 tmpfs /run
mkdir -p /run/lock
# PID 1 raises fs.file-max and fs.nr_open at start: global, so read-only until it runs.
mount --bind /proc/sys /proc/sys
mount --bind /proc/sys/net /proc/sys/net
mount -o remount,bind,ro /proc/sys
mount -t tmpfs -o mode=755 tmpfs /dev
for n in null zero full random urandom tty; do touch /dev/$n; mount --bind $H/hostdev/$n /dev/$n; done
mkdir -p /dev/shm /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t devpts -o newinstance,ptmxmode=0666 devpts /dev/pts
ln -s pts/ptmx /dev/ptmx
touch /dev/console
mount --bind $H/console /dev/console
umount $H/hostdev
mount -t overlay overlay -o lowerdir=/etc,upperdir=$H/etc-up,workdir=$H/etc-work /etc
for d in /usr/lib/systemd/system /etc/systemd/system /usr/lib/systemd/system-generators /usr/lib/systemd/system-environment-generators /usr/local/sbin; do
	mount -t tmpfs tmpfs $d
done
cp -a $H/units/. /usr/lib/systemd/system/
cp -a $H/dropins/. /etc/systemd/system/
cp $2 /usr/local/sbin/xsyn
mkdir -p /etc/xsyn
exec env -i container=xsyn-test PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
	/lib/systemd/systemd --system --unit=default.target --log-target=console \
	--default-standard-output=inherit --default-standard-error=inherit
`

// The units the manager needs besides xsyn's: the targets the default dependencies name, empty.
var stubTargets = []string{"default", "sysinit", "basic", "shutdown", "multi-user", "network", "network-online", "local-fs", "sockets", "timers", "paths", "slices"}

func startManager(t *testing.T, l *lab) *manager {
	t.Helper()
	if _, err := os.Stat("/lib/systemd/systemd"); err != nil {
		t.Skipf("no systemd to run: %v", err)
	}
	cg2, err := cgroup2Mount()
	if err != nil {
		t.Skip(err)
	}
	m := &manager{dir: t.TempDir()}
	for _, d := range []string{"hostdev", "units", "dropins", "etc-up", "etc-work"} {
		if err := os.MkdirAll(filepath.Join(m.dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(name, content string) {
		if err := os.WriteFile(filepath.Join(m.dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("console", "")
	write("setup.sh", managerSetup)
	for _, s := range stubTargets {
		write("units/"+s+".target", "[Unit]\nDescription=test stand-in for "+s+".target\n")
	}
	write("units/system.slice", "[Unit]\nDescription=System Slice\nDefaultDependencies=no\n")
	for _, u := range []string{attachUnit, exportUnit} {
		copyFile(t, u, filepath.Join(m.dir, "units", u), 0o644)
		// Only the output goes elsewhere: there is no journal.
		d := filepath.Join(m.dir, "dropins", u+".d")
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		log := filepath.Join(m.dir, "services.log")
		write(filepath.Join("dropins", u+".d", "output.conf"), fmt.Sprintf("[Service]\nStandardOutput=append:%s\nStandardError=append:%s\n", log, log))
	}

	cg := filepath.Join(cg2, fmt.Sprintf("xsyn-systemd-test-%d", os.Getpid()))
	if err := os.Mkdir(cg, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { removeCgroup(t, cg) })
	cmd := exec.Command("sh", "-c", `echo $$ > "$1/cgroup.procs" && exec nsenter --net="$2" unshare --mount --uts --pid --cgroup --fork --mount-proc --propagation private sh "$3" "$4" "$5"`,
		"sh", cg, "/run/netns/"+l.pair.Server.Name, filepath.Join(m.dir, "setup.sh"), m.dir, xsynBin)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		if m.pid != 0 {
			syscall.Kill(m.pid, syscall.SIGKILL) // the PID namespace goes with its init
		}
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	})

	// PID 1 is unshare's only child; it is up once systemctl says the system is running.
	children := fmt.Sprintf("/proc/%d/task/%d/children", cmd.Process.Pid, cmd.Process.Pid)
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case err := <-exited:
			t.Fatalf("systemd setup exited: %v\n%s", err, out.String())
		default:
		}
		if m.pid == 0 {
			if b, err := os.ReadFile(children); err == nil && len(bytes.Fields(b)) > 0 {
				m.pid, _ = strconv.Atoi(string(bytes.Fields(b)[0]))
			}
		}
		if m.pid != 0 {
			if state, _ := m.ctl("is-system-running"); strings.TrimSpace(state) == "running" {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("systemd (pid %d) not running after 20s\n%s", m.pid, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	// What PID 1 raises at start is raised; the units get the usual /proc/sys.
	fix := exec.Command("nsenter", "-t", strconv.Itoa(m.pid), "-m", "--", "sh", "-c", "umount /proc/sys/net && mount -o remount,bind,rw /proc/sys")
	if b, err := fix.CombinedOutput(); err != nil {
		t.Fatalf("make /proc/sys writable for the units: %v\n%s", err, b)
	}
	return m
}

// ctl runs systemctl against the manager.
func (m *manager) ctl(args ...string) (string, error) {
	cmd := exec.Command("nsenter", append([]string{"-t", strconv.Itoa(m.pid), "-m", "-p", "--", "systemctl", "--no-pager"}, args...)...)
	b, err := cmd.CombinedOutput()
	return string(b), err
}

func (m *manager) systemctl(t *testing.T, args ...string) {
	t.Helper()
	if out, err := m.ctl(args...); err != nil {
		status, _ := m.ctl("status", "--all")
		t.Fatalf("systemctl %s: %v\n%s\n%s\nservice output:\n%s", strings.Join(args, " "), err, out, status, m.log())
	}
}

func (m *manager) show(t *testing.T, unit, property string) string {
	t.Helper()
	out, err := m.ctl("show", "-p", property, "--value", unit)
	if err != nil {
		t.Fatalf("systemctl show %s: %v\n%s", unit, err, out)
	}
	return strings.TrimSpace(out)
}

// setConfig installs path as the manager's /etc/xsyn/xsyn.conf.
func (m *manager) setConfig(t *testing.T, path string) {
	t.Helper()
	cmd := exec.Command("nsenter", "-t", strconv.Itoa(m.pid), "-m", "--", "cp", path, unitConfig)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("install %s as %s: %v\n%s", path, unitConfig, err, b)
	}
}

// log is what the services printed.
func (m *manager) log() string {
	b, _ := os.ReadFile(filepath.Join(m.dir, "services.log"))
	return string(b)
}

// cgroup2Mount is where the host's cgroup v2 hierarchy is mounted.
func cgroup2Mount() (string, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(b), "\n") {
		// ... mount-point ... - fstype source options
		pre, post, ok := strings.Cut(line, " - ")
		if f, p := strings.Fields(post), strings.Fields(pre); ok && len(f) > 0 && f[0] == "cgroup2" && len(p) > 4 {
			return p[4], nil
		}
	}
	return "", errors.New("no cgroup v2 hierarchy mounted")
}

// removeCgroup removes the cgroup tree the manager built, deepest first, once its processes
// are gone.
func removeCgroup(t *testing.T, root string) {
	var dirs []string
	filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	for i := len(dirs) - 1; i >= 0; i-- {
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			err := os.Remove(dirs[i])
			if err == nil || errors.Is(err, os.ErrNotExist) {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("remove cgroup %s: %v", dirs[i], err)
				break
			}
		}
	}
}
