package main

import (
	"fmt"
	"regexp"
	"strings"
)

// page is what the manual says, as xsyn's --help pages say it.
type page struct {
	version  string
	intro    []string // the paragraphs of 'xsyn --help' before its synopsis
	synopsis string   // "COMMAND [ARGS]"
	commands []command
	examples []example
	exits    []exitCode
	notes    []string // any other paragraph of 'xsyn --help', kept as it is
}

type command struct {
	name, summary string // from the command list of 'xsyn --help'
	synopsis      string // "attach [IFACE] [...]", from 'xsyn attach --help'
	text          string // the help text between the synopsis and the flags
	flags         []flagHelp
}

// flagHelp is one flag as flag.PrintDefaults prints it: "-name arg" and the usage text, which
// ends with "(default ...)" when the default is not the zero value.
type flagHelp struct{ name, arg, usage string }

type example struct{ command, what string }

type exitCode struct{ code, meaning string }

// readPage asks xsyn for its help pages and its version.
func readPage(help helpFunc) (*page, error) {
	top, err := help("--help")
	if err != nil {
		return nil, err
	}
	p, err := parseTop(top)
	if err != nil {
		return nil, fmt.Errorf("xsyn --help: %w", err)
	}
	v, err := help("version")
	if err != nil {
		return nil, err
	}
	p.version = strings.TrimPrefix(strings.TrimSpace(v), "xsyn ")
	for i := range p.commands {
		c := &p.commands[i]
		text, err := help(c.name, "--help")
		if err != nil {
			return nil, err
		}
		if err := parseCommand(c, text); err != nil {
			return nil, fmt.Errorf("xsyn %s --help: %w", c.name, err)
		}
	}
	return p, nil
}

var (
	commandLine = regexp.MustCompile(`^  ([a-z][a-z0-9-]*) +(\S.*)$`)
	exampleLine = regexp.MustCompile(`^  (\S.*?)(?: {2,}(\S.*))?$`)
	exitItem    = regexp.MustCompile(`^(\d+) (.+)$`)
)

// parseTop reads 'xsyn --help': paragraphs, then "Usage: xsyn SYNOPSIS", the "Commands:" and
// "Examples:" lists and "Exit codes: N what, ...". A paragraph it does not know is kept as a
// note; a list line it cannot read is an error, never dropped.
func parseTop(text string) (*page, error) {
	p := &page{}
	for _, block := range strings.Split(strings.TrimSpace(text), "\n\n") {
		lines := strings.Split(block, "\n")
		switch {
		case strings.HasPrefix(block, "Usage: xsyn "):
			if len(lines) > 1 {
				return nil, fmt.Errorf("synopsis of more than one line: %q", block)
			}
			p.synopsis = strings.TrimPrefix(block, "Usage: xsyn ")
		case p.synopsis == "":
			p.intro = append(p.intro, block)
		case lines[0] == "Commands:":
			for _, l := range lines[1:] {
				m := commandLine.FindStringSubmatch(l)
				if m == nil {
					return nil, fmt.Errorf("command list: cannot read %q", l)
				}
				p.commands = append(p.commands, command{name: m[1], summary: m[2]})
			}
		case lines[0] == "Examples:":
			for _, l := range lines[1:] {
				m := exampleLine.FindStringSubmatch(l)
				if m == nil {
					return nil, fmt.Errorf("examples: cannot read %q", l)
				}
				p.examples = append(p.examples, example{m[1], m[2]})
			}
		case strings.HasPrefix(block, "Exit codes: "):
			exits, rest, err := parseExits(strings.TrimPrefix(strings.Join(lines, " "), "Exit codes: "))
			if err != nil {
				return nil, err
			}
			p.exits = exits
			if rest != "" {
				p.notes = append(p.notes, rest)
			}
		default:
			p.notes = append(p.notes, block)
		}
	}
	switch {
	case p.synopsis == "":
		return nil, fmt.Errorf("no line \"Usage: xsyn ...\"")
	case len(p.commands) == 0:
		return nil, fmt.Errorf("no \"Commands:\" list")
	case len(p.exits) == 0:
		return nil, fmt.Errorf("no \"Exit codes:\"")
	}
	return p, nil
}

// parseExits splits "0 ok, 1 error (a, b; c), 2 usage (...). Anything else." at the commas
// and the full stop outside parentheses: the codes, and what follows them.
func parseExits(s string) ([]exitCode, string, error) {
	var items []string
	depth, start := 0, 0
	end := -1
	for i := 0; i < len(s) && end < 0; i++ {
		switch s[i] {
		case '(':
			depth++
		case ')':
			depth--
		case ',':
			if depth == 0 {
				items = append(items, strings.TrimSpace(s[start:i]))
				start = i + 1
			}
		case '.':
			if depth == 0 && (i+1 == len(s) || s[i+1] == ' ') {
				items = append(items, strings.TrimSpace(s[start:i]))
				end = i + 1
			}
		}
	}
	if end < 0 {
		return nil, "", fmt.Errorf("exit codes: no full stop after the list in %q", s)
	}
	var exits []exitCode
	for _, it := range items {
		m := exitItem.FindStringSubmatch(it)
		if m == nil {
			return nil, "", fmt.Errorf("exit codes: cannot read %q (want \"N meaning\")", it)
		}
		exits = append(exits, exitCode{m[1], m[2]})
	}
	return exits, strings.TrimSpace(s[end:]), nil
}

// parseCommand reads 'xsyn NAME --help': "Usage: xsyn SYNOPSIS", a blank line, the help text,
// and, when the command has flags, "Flags:" and what flag.PrintDefaults prints.
func parseCommand(c *command, text string) error {
	first, rest, _ := strings.Cut(text, "\n")
	syn, ok := strings.CutPrefix(first, "Usage: xsyn ")
	if !ok || (syn != c.name && !strings.HasPrefix(syn, c.name+" ")) {
		return fmt.Errorf("first line %q: want \"Usage: xsyn %s ...\"", first, c.name)
	}
	c.synopsis = syn
	flags := ""
	if i := strings.LastIndex(rest, "\nFlags:\n"); i >= 0 {
		rest, flags = rest[:i], rest[i+len("\nFlags:\n"):]
	}
	c.text = strings.Trim(rest, "\n")
	var err error
	c.flags, err = parseFlags(flags)
	return err
}

// parseFlags reads flag.PrintDefaults: "  -name arg" (a one-letter name without arg may have its
// usage on the same line after a tab), then usage lines, each indented by "    \t".
func parseFlags(text string) ([]flagHelp, error) {
	var flags []flagHelp
	for _, l := range strings.Split(strings.TrimRight(text, "\n"), "\n") {
		switch {
		case l == "":
		case strings.HasPrefix(l, "    \t"):
			if len(flags) == 0 {
				return nil, fmt.Errorf("flags: usage line before any flag: %q", l)
			}
			f := &flags[len(flags)-1]
			f.usage = strings.TrimPrefix(f.usage+"\n"+l[len("    \t"):], "\n")
		case strings.HasPrefix(l, "  -"):
			head, usage, _ := strings.Cut(l[len("  -"):], "\t")
			name, arg, _ := strings.Cut(head, " ")
			flags = append(flags, flagHelp{name: name, arg: arg, usage: usage})
		default:
			return nil, fmt.Errorf("flags: cannot read %q", l)
		}
	}
	for _, f := range flags {
		if f.name == "" || f.usage == "" {
			return nil, fmt.Errorf("flags: -%s has no name or no usage text", f.name)
		}
	}
	return flags, nil
}
