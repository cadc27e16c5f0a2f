package testutil

import (
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestRequireRootHelper is run by TestRequireRoot as an unprivileged child; on its own it does
// nothing.
func TestRequireRootHelper(t *testing.T) {
	if os.Getenv("XSYN_TESTUTIL_CHILD") != "1" {
		return
	}
	RequireRoot(t, "a test of RequireRoot")
	t.Log("ran as root")
}

// TestRequireRoot runs a test that needs root as user nobody: without CI it skips, saying why;
// with CI set it fails, so that a CI run without root cannot pass on skips.
func TestRequireRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("runs the child as another user, which needs root") // the one skip that must stay
	}
	// The test binary sits in a directory only root may enter: a copy nobody can run.
	dir, err := os.MkdirTemp("", "xsyn-testutil-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "testutil.test")
	copyFile(t, os.Args[0], bin)
	for _, tc := range []struct {
		ci       string
		fail     bool
		contains string
	}{
		{"", false, "SKIP"},
		{"true", true, "CI is set"},
	} {
		cmd := exec.Command(bin, "-test.run=^TestRequireRootHelper$", "-test.v")
		cmd.Env = []string{"XSYN_TESTUTIL_CHILD=1", "CI=" + tc.ci, "PATH=" + os.Getenv("PATH")}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		out, err := cmd.CombinedOutput()
		var exit *exec.ExitError
		failed := errors.As(err, &exit)
		if err != nil && !failed {
			t.Fatalf("run the child: %v", err)
		}
		if failed != tc.fail || !strings.Contains(string(out), tc.contains) {
			t.Errorf("CI=%q as nobody: failed %v (want %v), output:\n%s\nwant it to contain %q", tc.ci, failed, tc.fail, out, tc.contains)
		}
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestWait(t *testing.T) {
	n := 0
	if err := Wait(time.Second, func() error {
		if n++; n < 3 {
			return errors.New("not yet")
		}
		return nil
	}); err != nil || n != 3 {
		t.Errorf("Wait: %v after %d calls; want nil after 3", err, n)
	}
	if err := Wait(30*time.Millisecond, func() error { return errors.New("never") }); err == nil || err.Error() != "never" {
		t.Errorf("Wait on a condition that never holds: %v; want its last error", err)
	}
}
