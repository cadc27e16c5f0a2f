// Command xsyn protects TCP services against SYN floods: an XDP program answers SYNs with
// SYN cookies at line rate, and netfilter's SYNPROXY completes the handshakes it validated, or
// (the socket handoff) a TC program hands them straight to the listening socket.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// Exit codes.
const (
	exitOK    = 0
	exitError = 1 // the command failed; nothing was left half-changed
	exitUsage = 2 // the command line was wrong
)

// Set at build time: -ldflags "-X main.version=...".
var version = "dev"

func main() { os.Exit(run(os.Args, os.Stdout, os.Stderr)) }

type command struct {
	name, summary string
	run           func(args []string, stdout, stderr io.Writer) error
}

func commands() []command {
	return []command{
		{"attach", "protect TCP ports on an interface (XDP + netfilter SYNPROXY or the socket handoff)", runAttach},
		{"detach", "remove every trace of xsyn from an interface", runDetach},
		{"explain", "show what attach would install on an interface, and why (changes nothing)", runExplain},
		{"status", "show what is protected, how, and the counters", runStatus},
		{"serve", "serve the counters to Prometheus (127.0.0.1:9377); put back rules a firewall reload took", runServe},
		{"version", "print the version", runVersion},
	}
}

const versionHelp = `Prints the version of this xsyn binary: set when it is built (make build), "dev" for a plain
go build.

Example:
  xsyn version
`

func runVersion(args []string, stdout, _ io.Writer) error {
	fs := newFlags("version", "version", versionHelp, stdout)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("no arguments expected, got %q", pos)
	}
	fmt.Fprintln(stdout, "xsyn", version)
	return nil
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) < 2 || args[1] == "-h" || args[1] == "--help" || args[1] == "help" {
		usage(stdout)
		if len(args) < 2 {
			return exitUsage
		}
		return exitOK
	}
	for _, c := range commands() {
		if c.name != args[1] {
			continue
		}
		err := c.run(args[2:], stdout, stderr)
		switch {
		case err == nil:
			return exitOK
		case errors.Is(err, flag.ErrHelp):
			return exitOK
		case errors.As(err, new(usageError)):
			fmt.Fprintf(stderr, "xsyn %s: %v\nRun 'xsyn %s --help' for usage.\n", c.name, err, c.name)
			return exitUsage
		default:
			// One line per error: a configuration file reports every wrong line.
			for _, line := range strings.Split(err.Error(), "\n") {
				fmt.Fprintf(stderr, "xsyn %s: %s\n", c.name, line)
			}
			return exitError
		}
	}
	fmt.Fprintf(stderr, "xsyn: unknown command %q\n\n", args[1])
	usage(stderr)
	return exitUsage
}

func usage(w io.Writer) {
	fmt.Fprint(w, `xsyn answers SYN floods with SYN cookies from XDP, before any socket, conntrack entry or
skb exists. The handshakes that come back valid are handed straight to the listening socket
(the socket handoff, Linux 6.9+, the default for this host's own servers), or completed by
netfilter's SYNPROXY (forwarding, NAT and other actions, older kernels, MPTCP servers).

Usage: xsyn COMMAND [ARGS]

Commands:
`)
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, `
Examples:
  xsyn attach eth0 --port 80,443        protect the web server on every address of eth0
  xsyn explain eth0 --config eth0.conf  what attach would install from a configuration, and why
  xsyn attach eth0 --config eth0.conf   protect what the configuration says (docs/config.md)
  xsyn attach --config xsyn.conf        every interface its statements name, all or none
  xsyn status eth0                      what is protected, in which mode, with counters
  xsyn detach eth0                      remove program, pins, rules and sysctl changes

Exit codes: 0 ok, 1 error (nothing left half-changed; a configuration file with errors is one),
2 usage (the command line itself is wrong).
Run 'xsyn COMMAND --help' for the flags of a command.
`)
}

// usageError marks errors in the command line (exit code 2).
type usageError struct{ error }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// cmdFlags is a command's flag set and its help page.
type cmdFlags struct {
	*flag.FlagSet
	help func()
}

// newFlags returns a flag set whose --help prints the given text and the flags. A wrong flag
// is reported by run() in one line, not with the whole help page.
func newFlags(name, synopsis, help string, stdout io.Writer) *cmdFlags {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return &cmdFlags{FlagSet: fs, help: func() {
		fmt.Fprintf(stdout, "Usage: xsyn %s\n\n%s", synopsis, help)
		n := 0
		fs.VisitAll(func(*flag.Flag) { n++ })
		if n == 0 {
			return
		}
		fmt.Fprintf(stdout, "\nFlags:\n")
		fs.SetOutput(stdout)
		fs.PrintDefaults()
	}}
}

// parse parses flags that may come after positional arguments (xsyn attach eth0 --port 80).
func parse(fs *cmdFlags, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fs.help()
				return nil, err
			}
			return nil, usageError{err}
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}
