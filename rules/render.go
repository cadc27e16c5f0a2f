package rules

import (
	"bufio"
	"fmt"
	"io"
	"strings"

	"github.com/xsyn-project/xsyn/spec"
)

// Render prints the rules of family f in iptables-save form, the way iptables-save shows them
// once installed, preceded by the sysctl changes and requirements as comments; an empty plan
// prints a comment saying so. Each chain is introduced by what it is for, and each run of rules
// by the statement it comes from and what it does in the SYNPROXY flow. Jumps print as -A
// although they are inserted at their Position.
func (p Plan) Render(w io.Writer, f spec.Family) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "# xsyn rules for %s, %s\n", p.Iface, f)
	for _, s := range p.Sysctls {
		fmt.Fprintf(bw, "# sysctl %s=%s: %s\n", s.Key, s.Value, s.Why)
	}
	for _, r := range p.Requires {
		if r.Family == f {
			fmt.Fprintf(bw, "# requires: %s\n", r)
		}
	}
	fp, ok := p.Family(f)
	switch {
	case p.Empty():
		fmt.Fprintf(bw, "# no statement takes the SYNPROXY path: no rules, no sysctl changes; applying this removes %s's rules\n", p.Iface)
		return bw.Flush()
	case !ok:
		fmt.Fprintf(bw, "# no %s statements\n", f)
		return bw.Flush()
	}
	for _, table := range tablesOf(fp) {
		fmt.Fprintf(bw, "*%s\n", table)
		for _, c := range fp.Chains {
			if c.Table == table {
				fmt.Fprintf(bw, ":%s - [0:0]\n", c.Name)
			}
		}
		for _, j := range fp.Jumps {
			if j.Table == table {
				fmt.Fprintf(bw, "-A %s %s\n", j.From, joinArgs(j.Args()))
			}
		}
		for _, c := range fp.Chains {
			if c.Table != table {
				continue
			}
			if c.Why != "" {
				fmt.Fprintf(bw, "# %s: %s\n", c.Name, c.Why)
			}
			var last Rule
			for _, r := range c.Rules {
				if r.Why != "" && (r.Why != last.Why || r.Origin != last.Origin) {
					fmt.Fprintf(bw, "#   [%s] %s\n", r.Origin, r.Why)
				}
				last = r
				fmt.Fprintf(bw, "-A %s %s\n", c.Name, joinArgs(r.Args))
			}
		}
		fmt.Fprintln(bw, "COMMIT")
	}
	return bw.Flush()
}

// tablesOf lists the tables of a family plan in the order they are first used.
func tablesOf(fp FamilyPlan) []string {
	var tables []string
	seen := map[string]bool{}
	for _, c := range fp.Chains {
		if !seen[c.Table] {
			seen[c.Table] = true
			tables = append(tables, c.Table)
		}
	}
	return tables
}

// joinArgs prints a rule specification as iptables -S and iptables-save do: a comment is
// quoted unless it is a plain word (xtables_save_string), a u32 test always, any other argument
// only if it could not be read back as one word.
func joinArgs(args []string) string {
	var b strings.Builder
	for i, a := range args {
		if i > 0 {
			b.WriteByte(' ')
		}
		if (i > 0 && args[i-1] == "--comment" && !plainWord(a)) || (i > 0 && args[i-1] == "--u32") || needsQuotes(a) {
			b.WriteString(quote(a))
		} else {
			b.WriteString(a)
		}
	}
	return b.String()
}

func plainWord(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !(r == '_' || r == '-' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return false
		}
	}
	return true
}

func needsQuotes(s string) bool {
	return s == "" || strings.ContainsAny(s, " \t\n\"'\\")
}

func quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		if r == '"' || r == '\\' || r == '\'' {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	b.WriteByte('"')
	return b.String()
}

// SplitArgs reads back a rule as iptables -S and iptables-save print it into arguments: words
// separated by blanks, double-quoted words with backslash escapes.
func SplitArgs(line string) ([]string, error) {
	var args []string
	var cur strings.Builder
	inWord, inQuote, escaped := false, false, false
	for _, r := range line {
		switch {
		case escaped:
			cur.WriteRune(r)
			escaped = false
		case inQuote && r == '\\':
			escaped = true
		case r == '"':
			inQuote = !inQuote
			inWord = true
		case !inQuote && (r == ' ' || r == '\t'):
			if inWord {
				args = append(args, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if inQuote || escaped {
		return nil, fmt.Errorf("parse rule %q: unterminated quote", line)
	}
	if inWord {
		args = append(args, cur.String())
	}
	return args, nil
}
