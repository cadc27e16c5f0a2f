// Command xsyn-man writes xsyn's manual page, xsyn(8), from what an xsyn binary says in its
// --help: the commands, their synopses, help texts and flags, the examples and exit codes. The
// page is made of the very text that --help prints, so the two cannot disagree; what --help
// cannot say (the files the Debian package installs, the pages to see also) is written here.
//
//	go run ./cmd/xsyn-man -xsyn bin/xsyn -o bin/xsyn.8     # make man
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
)

func main() { os.Exit(run(os.Args, os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	bin := fs.String("xsyn", "bin/xsyn", "the xsyn `binary` whose --help the page is made of")
	out := fs.String("o", "", "write the page to `file` (default: standard output)")
	date := fs.String("date", "", "the `date` in the page's header, e.g. the commit's (YYYY-MM-DD)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: %s [-xsyn BINARY] [-o FILE] [-date YYYY-MM-DD]\n\nWrites xsyn(8), in man(7) roff, from the binary's --help.\n\n", args[0])
		fs.PrintDefaults()
	}
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "xsyn-man: no arguments expected, got %q\n", fs.Args())
		return 2
	}
	p, err := readPage(execHelp(*bin))
	if err != nil {
		fmt.Fprintf(stderr, "xsyn-man: %v\n", err)
		return 1
	}
	var page bytes.Buffer
	writePage(&page, p, *date)
	if *out == "" {
		_, err = stdout.Write(page.Bytes())
	} else {
		err = os.WriteFile(*out, page.Bytes(), 0o644)
	}
	if err != nil {
		fmt.Fprintf(stderr, "xsyn-man: %v\n", err)
		return 1
	}
	return 0
}

// helpFunc returns what xsyn prints for args: the --help pages and the version.
type helpFunc func(args ...string) (string, error)

// execHelp runs the binary: its help needs no root and changes nothing.
func execHelp(bin string) helpFunc {
	return func(args ...string) (string, error) {
		var stdout, stderr bytes.Buffer
		cmd := exec.Command(bin, args...)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			return "", fmt.Errorf("run %s %s: %w: %s", bin, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
		}
		return stdout.String(), nil
	}
}
