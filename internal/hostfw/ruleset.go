package hostfw

import (
	"errors"
	"fmt"
	"os/exec"
	"strings"
)

// Ruleset is what the host firewall has at the input hook.
type Ruleset struct {
	// IPv4 and IPv6 are the filter tables of iptables and ip6tables.
	IPv4, IPv6 *Table
	// Native are the nftables base chains at the input hook that iptables-save does not show
	// and that may refuse a packet (ParseNft).
	Native []NativeChain
}

// Judge is the firewall's verdict on the SYNs of q in one family (4 or 6): the iptables filter
// table's, unless a native nftables chain may refuse them too, which xsyn cannot judge.
func (r Ruleset) Judge(family int, q SYN) Verdict {
	t := r.IPv4
	if family == 6 {
		t = r.IPv6
	}
	if t != nil {
		if v := t.Judge(q); !v.Open {
			return v
		}
	}
	if len(r.Native) > 0 {
		return Verdict{Why: "xsyn cannot judge the " + r.Native[0].String() + ", which sees the SYN too"}
	}
	return Verdict{Open: true}
}

// Runner runs a command and returns its standard output.
type Runner func(name string, args ...string) ([]byte, error)

// Exec is the Runner of the calling thread's network namespace.
func Exec(name string, args ...string) ([]byte, error) {
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) && len(ee.Stderr) > 0 {
			return nil, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(ee.Stderr)))
		}
		return nil, fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	return out, nil
}

// Read reads the live ruleset through run: iptables-save -t filter, ip6tables-save -t filter
// and nft -j list ruleset. Without the nft tool, native nftables chains cannot be read, and that
// is an error: xsyn cannot tell they are not there.
func Read(run Runner) (Ruleset, error) {
	var r Ruleset
	for _, f := range []struct {
		cmd string
		t   **Table
	}{{"iptables-save", &r.IPv4}, {"ip6tables-save", &r.IPv6}} {
		out, err := run(f.cmd, "-t", "filter")
		if err != nil {
			return r, fmt.Errorf("read the host firewall: %w", err)
		}
		if *f.t, err = ParseSave(string(out)); err != nil {
			return r, fmt.Errorf("read the host firewall: %s: %w", f.cmd, err)
		}
	}
	out, err := run("nft", "-j", "list", "ruleset")
	if err != nil {
		return r, fmt.Errorf("read the host firewall's nftables chains (install nft, the nftables tool, so xsyn can): %w", err)
	}
	if r.Native, err = ParseNft(out); err != nil {
		return r, fmt.Errorf("read the host firewall: %w", err)
	}
	return r, nil
}
