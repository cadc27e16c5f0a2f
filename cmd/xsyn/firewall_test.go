package main

import (
	"strings"
	"testing"
)

// TestAttachKeepsTheFirewall: --port on the SYNPROXY path (mode netfilter, --path synproxy)
// refuses a port the host's INPUT rules restrict, exit 1, naming the port and the rule, with
// nothing changed; a port they leave open is protected, and attach says what became of the
// firewall's verdict.
func TestAttachKeepsTheFirewall(t *testing.T) {
	requireRootForTest(t)
	l := newE2ELab(t, "xsynfw", enterers["ip-netns-exec"])
	if _, err := l.dut.Run("iptables", "-A", "INPUT", "-s", "192.0.2.99", "-p", "tcp", "--dport", "8080", "-j", "DROP"); err != nil {
		t.Fatal(err)
	}
	before := l.state(t)
	for _, args := range [][]string{
		{"attach", "d0", "--port", "8080,8081", "--mode", "netfilter"},
		{"attach", "d0", "--port", "8080", "--path", "synproxy"},
	} {
		out, errOut, code := l.xsyn(t, args...)
		if code != 1 {
			t.Errorf("%s: exit %d, want 1\n%s%s", strings.Join(args, " "), code, out, errOut)
		}
		for _, want := range []string{"refusing to protect port 8080 of d0 on the SYNPROXY path: the host firewall's INPUT rules refuse some clients there",
			"ipv4 port 8080: -A INPUT -s 192.0.2.99/32 -p tcp -m tcp --dport 8080 -j DROP",
			"nothing was changed; to protect them, either write a statement that carries the firewall's restriction"} {
			if !strings.Contains(errOut, want) {
				t.Errorf("%s: stderr lacks %q:\n%s", strings.Join(args, " "), want, errOut)
			}
		}
		if after := l.state(t); after != before {
			t.Errorf("%s changed the namespace:\nbefore:\n%s\nafter:\n%s", strings.Join(args, " "), before, after)
		}
	}
	// explain, run as root, reads the firewall as attach does.
	if _, errOut, code := l.xsyn(t, "explain", "d0", "--port", "8080", "--path", "synproxy"); code != 1 ||
		!strings.Contains(errOut, "ipv4 port 8080: -A INPUT -s 192.0.2.99/32") || !strings.Contains(errOut, "attach would fail the same way") {
		t.Errorf("explain --port 8080 --path synproxy: exit %d, want 1 naming the rule:\n%s", code, errOut)
	}
	out := l.mustXsyn(t, "attach", "d0", "--port", "8081", "--mode", "netfilter")
	if !strings.Contains(out, "firewall: made by xsyn, not written, so attach protects its ports on this path only where your INPUT rules let every client in") {
		t.Errorf("attach output does not say what became of the firewall's verdict:\n%s", out)
	}
	l.mustXsyn(t, "detach", "d0")
}

// TestAttachInterfacesTogether: a configuration for two interfaces whose statements would
// decide each other's connections once both take the SYNPROXY path (--mode netfilter) is
// refused before anything changes, naming both lines; with the handoff (the default, Linux 6.9+)
// the same file protects both.
func TestAttachInterfacesTogether(t *testing.T) {
	requireRootForTest(t)
	l, _, _ := twoIfaceLab(t, "xsyntog")
	conf := writeConfig(t, "two.conf", "synproxy4 in inface d0 dst 192.0.2.2 dport 8080 drop\nsynproxy4 in inface d1 dport 8080 accept\n")
	pristine := l.ifacesState(t)
	_, errOut, code := l.xsyn(t, "attach", "--config", conf, "--mode", "netfilter")
	want := "xsyn attach: statements of two interfaces would decide each other's connections: " + conf + ":2: on d1 it covers connections that " +
		conf + ":1 covers on d0 with another action (accept / drop)"
	if code != 1 || !strings.Contains(errOut, want) || !strings.Contains(errOut, "xsyn attach: nothing was changed\n") {
		t.Errorf("attach --config --mode netfilter: exit %d, want 1 and %q\nstderr: %s", code, want, errOut)
	}
	if after := l.ifacesState(t); after != pristine {
		t.Errorf("the refused attach changed the namespace:\nbefore:\n%s\nafter:\n%s", pristine, after)
	}
	if out, errOut, code := l.xsyn(t, "attach", "--config", conf); code != 0 || !strings.Contains(out, "path: handoff") {
		t.Errorf("attach --config with the handoff: exit %d\n%s%s", code, out, errOut)
	}
	l.mustXsyn(t, "detach", "d0")
	l.mustXsyn(t, "detach", "d1")
}
