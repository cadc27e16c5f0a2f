// Package testutil holds what xsyn's tests share: the one decision whether a missing privilege
// skips or fails, waiting on a condition instead of sleeping, and labs of network namespaces that
// clean up after themselves. Helpers take testing.TB and fail the test themselves.
package testutil

import (
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/xsyn-project/xsyn/internal/netlab"
)

// InCI reports whether the tests run in continuous integration (CI set and not "false"), where
// the machine is prepared for every test and a skip would hide a failure.
func InCI() bool {
	v := os.Getenv("CI")
	return v != "" && v != "false" && v != "0"
}

// RequireRoot skips a test that needs root (network namespaces, XDP, netfilter) when it runs
// without, saying what for, except in CI: there the suite is meant to run as root, and a run
// that is not fails loudly instead of passing on skips.
func RequireRoot(tb testing.TB, what string) {
	tb.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if InCI() {
		tb.Fatalf("needs root (%s), and CI is set: run the suite as root (./quickstart test), or unset CI to skip such tests", what)
	}
	tb.Skipf("needs root (%s): run as root, or with sudo", what)
}

// RequireTool finds an installed program and returns its path. Where it is missing the test
// skips, saying how to install it (hint), except in CI, whose machine deploy/install-deps.sh
// prepares: there it fails.
func RequireTool(tb testing.TB, name, hint string) string {
	tb.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	if InCI() {
		tb.Fatalf("%s is not installed, and CI is set: %s", name, hint)
	}
	tb.Skipf("%s is not installed: %s", name, hint)
	return ""
}

// RequireFeature skips the test when err says the running kernel lacks a feature (errors.Is
// err, missing): the one skip allowed in CI too, as no preparation can add it. Any other error
// fails the test: a probe that breaks is not a missing feature.
func RequireFeature(tb testing.TB, err, missing error) {
	tb.Helper()
	switch {
	case err == nil:
	case errors.Is(err, missing):
		tb.Skipf("the kernel lacks what this test needs: %v", err)
	default:
		tb.Fatalf("probe the kernel: %v", err)
	}
}

// PollInterval is how often Eventually asks.
const PollInterval = 10 * time.Millisecond

// Eventually waits until cond returns nil, asking every PollInterval, and fails the test with
// cond's last error, and what it waited for, when timeout passes first. The timeout is a bound
// on a hang, not a measurement: tests never assert how soon something happens.
func Eventually(tb testing.TB, timeout time.Duration, what string, cond func() error) {
	tb.Helper()
	if err := Wait(timeout, cond); err != nil {
		tb.Fatalf("%s: still not so after %v: %v", what, timeout, err)
	}
}

// Wait is Eventually for code that must not fail the test itself (a goroutine, a cleanup): it
// returns cond's last error when timeout passes first, nil once cond holds.
func Wait(timeout time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(PollInterval)
	}
}

// Pair builds a client and a server namespace joined by one veth pair (netlab.NewPair) and
// removes them when the test ends. It needs root.
func Pair(tb testing.TB, prefix, clientIf string, clientAddrs []netip.Prefix, serverIf string, serverAddrs []netip.Prefix) *netlab.Pair {
	tb.Helper()
	RequireRoot(tb, "network namespaces")
	p, err := netlab.NewPair(prefix, clientIf, clientAddrs, serverIf, serverAddrs)
	if err != nil {
		tb.Fatalf("build the %s lab: %v", prefix, err)
	}
	tb.Cleanup(func() { p.Close() })
	return p
}

// Lab starts a lab of namespaces (netlab.New) removed when the test ends. It needs root.
func Lab(tb testing.TB, prefix string) *netlab.Lab {
	tb.Helper()
	RequireRoot(tb, "network namespaces")
	l := netlab.New(prefix)
	tb.Cleanup(func() { l.Close() })
	return l
}
