package spec

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
)

// Config is a parsed configuration file: settings and statements for every interface.
type Config struct {
	Settings   Settings
	Statements []Statement // options resolved, one per family, in file order
}

// ErrNoStatement: no statement of the configuration applies to the interface asked for.
var ErrNoStatement = errors.New("no synproxy statement applies to it")

// ParseConfigFile reads and parses a configuration file.
func ParseConfigFile(path string, stack *Stack) (Config, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("read config: %w", err)
	}
	return ParseConfig(path, src, stack)
}

// ParseConfig parses a configuration; name is the file named in errors and statement positions.
// The TCP options of each statement are, from weakest to strongest: stack.Options (when stack
// is non-nil, else DefaultOptions) and DefaultTTL, the `options` line, the statement's own. Every
// wrong line is reported (errors.Join of *ConfigError); nothing is returned with an error.
func ParseConfig(name string, src []byte, stack *Stack) (Config, error) {
	p := &parser{file: name, settings: map[string]setting{}}
	for _, l := range lex(name, src) {
		if l.err != nil {
			p.errs = append(p.errs, l.err)
			continue
		}
		p.line(l.toks)
	}
	cfg := p.resolve(stack)
	if len(p.errs) == 0 {
		cols := map[int]int{}
		for _, d := range p.drafts {
			cols[d.pos.Line] = d.first.pos.col
		}
		p.errs = cfg.interfaceConflicts(cols) // interfaces.go
	}
	if err := p.err(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// For returns the validated Spec of one interface: the statements whose inface matches it.
func (c Config) For(iface string) (Spec, error) {
	var stmts []Statement
	for _, st := range c.Statements {
		if st.Match.Inface.Has(iface) {
			stmts = append(stmts, st)
		}
	}
	if len(stmts) == 0 {
		names := "names no interface"
		if len(c.Statements) == 0 {
			names = "has no synproxy statement"
		} else if ifs := c.Interfaces(); len(ifs) > 0 {
			names = "names " + strings.Join(ifs, ", ")
		}
		where := "the configuration"
		if len(c.Statements) > 0 && c.Statements[0].Pos.File != "" {
			where = c.Statements[0].Pos.File
		}
		return Spec{}, fmt.Errorf("interface %s: %w; %s %s", iface, ErrNoStatement, where, names)
	}
	return Compile(iface, c.Settings, stmts)
}

// Interfaces lists the interfaces statements name in inface (sorted, unique). Interfaces only
// named after `inface not` are left out: the statement is not for them.
func (c Config) Interfaces() []string {
	var out []string
	for _, st := range c.Statements {
		if !st.Match.Inface.Not {
			out = append(out, st.Match.Inface.Names...)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}
