package main

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

// attach would cut connections that conntrack does not track (their segments carry no cookie):
// it refuses, names them and changes nothing; once conntrack tracks a connection it survives
// attach; --cut-untracked cuts the others, as the refusal said it would. The SYNPROXY path,
// which judges every segment without a conntrack entry by its cookie (the handoff finds the
// socket: TestAttachHandoffByDefault).
func TestAttachRefusesToCutUntracked(t *testing.T) {
	requireRootForTest(t)
	l := newE2ELab(t, "xsynut", enterers["nsenter"])
	l.listen(t, net.ListenConfig{}, "tcp4", "192.0.2.2:9000", func(c net.Conn) {
		defer c.Close()
		sc := bufio.NewScanner(c)
		for sc.Scan() {
			fmt.Fprintln(c, sc.Text())
		}
	})
	dial := func() (net.Conn, *bufio.Reader) {
		t.Helper()
		var c net.Conn
		if err := l.cli.Do(func() (err error) { c, err = net.Dial("tcp4", "192.0.2.2:9000"); return err }); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c, bufio.NewReader(c)
	}
	echo := func(c net.Conn, r *bufio.Reader, msg string) error {
		c.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := fmt.Fprintln(c, msg); err != nil {
			return err
		}
		got, err := r.ReadString('\n')
		if err == nil && got != msg+"\n" {
			err = fmt.Errorf("echo %q, want %q", got, msg)
		}
		return err
	}

	a, ar := dial()
	if err := echo(a, ar, "a1"); err != nil {
		t.Fatal(err)
	}
	before := l.nsState(t)
	out, errOut, code := l.xsyn(t, "attach", "d0", "--port", "9000", "--path", "synproxy")
	if code != exitError || out != "" ||
		!strings.Contains(errOut, "xsyn attach: refusing to cut 1 established connection(s) to protected services that conntrack does not track:\nxsyn attach:   "+a.LocalAddr().String()+" -> 192.0.2.2:9000\n") ||
		!strings.Contains(errOut, "or cut them: --cut-untracked") {
		t.Errorf("attach with an untracked connection: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	if after := l.nsState(t); after != before {
		t.Errorf("the refused attach changed the namespace:\nbefore:\n%s\nafter:\n%s", before, after)
	}

	// The remedy the refusal gives: a conntrack rule, then traffic on the connection.
	accept := []string{"INPUT", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"}
	if _, err := l.dut.Run("iptables", append([]string{"-I"}, accept...)...); err != nil {
		t.Fatal(err)
	}
	if err := echo(a, ar, "a2"); err != nil {
		t.Fatal(err)
	}
	l.mustXsyn(t, "attach", "d0", "--port", "9000", "--path", "synproxy")
	if err := echo(a, ar, "a3"); err != nil {
		t.Errorf("a tracked connection after attach: %v", err)
	}
	l.mustXsyn(t, "detach", "d0")

	// Nothing uses conntrack any more: a new connection is untracked again, and the only one
	// listed. --cut-untracked cuts it; the tracked one carries on.
	if _, err := l.dut.Run("iptables", append([]string{"-D"}, accept...)...); err != nil {
		t.Fatal(err)
	}
	b, br := dial()
	if err := echo(b, br, "b1"); err != nil {
		t.Fatal(err)
	}
	_, errOut, code = l.xsyn(t, "attach", "d0", "--port", "9000", "--path", "synproxy")
	if code != exitError || !strings.Contains(errOut, "refusing to cut 1 established connection(s)") || !strings.Contains(errOut, b.LocalAddr().String()+" -> ") || strings.Contains(errOut, a.LocalAddr().String()) {
		t.Errorf("attach with one tracked and one untracked connection: exit %d, want 1 naming %s only:\n%s", code, b.LocalAddr(), errOut)
	}
	l.mustXsyn(t, "attach", "d0", "--port", "9000", "--path", "synproxy", "--cut-untracked")
	t.Cleanup(func() { l.xsyn(t, "detach", "d0") }) // pins in the host's bpffs outlive the namespace
	invalid := counter(l.status(t), "ipv4", "ack_cookie_invalid")
	if err := echo(b, br, "b2"); err == nil {
		t.Error("an untracked connection still works after attach --cut-untracked")
	}
	if st := l.waitStatus(t, func(s ifaceJSON) bool { return counter(s, "ipv4", "ack_cookie_invalid") > invalid }); counter(st, "ipv4", "ack_cookie_invalid") == invalid {
		t.Error("the cut connection's segment was not counted as ack_cookie_invalid")
	}
	if err := echo(a, ar, "a4"); err != nil {
		t.Errorf("the tracked connection after attach --cut-untracked: %v", err)
	}
}
