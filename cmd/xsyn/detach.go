package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/xsyn-project/xsyn/internal/protect"
)

const detachHelp = `Removes xsyn from IFACE: the XDP program and its pinned state, the netfilter rules, and,
when it was the last protected interface of the namespace, the sysctl values xsyn changed are
put back as they were.

Example:
  xsyn detach eth0
`

func runDetach(args []string, stdout, _ io.Writer) error {
	fs := newFlags("detach", "detach IFACE", detachHelp, stdout)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("need exactly one interface, got %d arguments", len(pos))
	}
	if err := requireRoot(); err != nil {
		return err
	}
	p, err := protect.New()
	if err != nil {
		return err
	}
	if err := p.Remove(pos[0]); err != nil {
		if errors.Is(err, protect.ErrNotProtected) {
			return fmt.Errorf("%w\n'xsyn status' lists the interfaces xsyn protects in this network namespace", err)
		}
		return err
	}
	fmt.Fprintf(stdout, "%s: xsyn removed\n", pos[0])
	return nil
}
