package protect

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/xsyn-project/xsyn/rules"
	"github.com/xsyn-project/xsyn/spec"
)

// ErrInterfacesConflict: a statement of the interface being attached and one of another
// interface already attached would decide each other's connections (spec.Interference).
var ErrInterfacesConflict = errors.New("statements of two interfaces would decide each other's connections")

// CheckNeighbours refuses, with ErrInterfacesConflict, a spec for iface whose SYNPROXY statements
// and those of another interface xsyn protects would decide each other's connections: their
// mark, NAT and OUTPUT rules cannot tell interfaces apart (spec.Interference). The other
// interfaces' statements are read back from their rules: every rule carries its statement's
// text as a comment ("xsyn: ..."), and the mark chain (XSYN-MRK-<iface>) has one rule or more
// for each statement whose connections SYNPROXY opens, in order. It changes nothing.
func (p *Protector) CheckNeighbours(iface string, s spec.Spec) error {
	if !slices.ContainsFunc(s.Statements, spec.Statement.OpensFromOutput) {
		return nil
	}
	others, err := p.Rules.Interfaces()
	if err != nil {
		return err
	}
	for _, o := range others {
		if o == iface || slices.Contains(p.Together, o) {
			continue // CheckTogether judged it with the spec it is about to get
		}
		theirs, err := p.installedStatements(o)
		if err != nil {
			return fmt.Errorf("%w\nnothing was changed", err)
		}
		if a, b, ok := spec.Interference(s.Statements, theirs); ok {
			quote := func(st spec.Statement) string { return "'" + st.Origin() + "'" }
			return fmt.Errorf("%w: %s: %s\nnothing was changed", ErrInterfacesConflict, where(a),
				spec.InterferenceMessage(a, iface, b, o, quote))
		}
	}
	return nil
}

// CheckTogether refuses, with ErrInterfacesConflict, specs of several interfaces that one command
// applies together (specs[i] is ifaces[i]'s) whose SYNPROXY statements would decide each other's
// connections, naming both statements. Apply then judges each against the other interfaces only
// (Protector.Together): their rules are about to be replaced. It changes nothing.
func CheckTogether(ifaces []string, specs []spec.Spec) error {
	for i := range specs {
		for j := i + 1; j < len(specs); j++ {
			if a, b, ok := spec.Interference(specs[j].Statements, specs[i].Statements); ok {
				return fmt.Errorf("%w: %s: %s\nnothing was changed", ErrInterfacesConflict, where(a),
					spec.InterferenceMessage(a, ifaces[j], b, ifaces[i], where))
			}
		}
	}
	return nil
}

// where names a statement of the spec being applied: its position, or its text.
func where(st spec.Statement) string {
	if st.Pos != (spec.Pos{}) {
		return st.Pos.String()
	}
	return "'" + st.Origin() + "'"
}

// installedStatements reads back the statements whose connections SYNPROXY opens on iface, per
// family, in order, from the comments of its mark chains.
func (p *Protector) installedStatements(iface string) ([]spec.Statement, error) {
	plan, had, err := p.Rules.Snapshot(iface)
	if err != nil || !had {
		return nil, err
	}
	var out []spec.Statement
	for _, fp := range plan.Families {
		for _, c := range fp.Chains {
			if c.Table != rules.TableMangle || c.Name != rules.ChainPrefix+"MRK-"+iface {
				continue
			}
			var origins []string
			for _, r := range c.Rules {
				if o := commentOf(r.Args); o != "" && !slices.Contains(origins, o) {
					origins = append(origins, o)
				}
			}
			for _, o := range origins {
				cfg, err := spec.ParseConfig(iface, []byte(o+"\n"), nil)
				if err != nil {
					return nil, fmt.Errorf("read back the statements %s protects, to check that they and these do not decide each other's connections: "+
						"the comment %q of chain %s: %v; detach %s first, or shorten that statement (a comment holds 255 characters)", iface, o, c.Name, err, iface)
				}
				for _, st := range cfg.Statements {
					if st.Family == fp.Family {
						st.Path = spec.PathSynproxy
						out = append(out, st)
					}
				}
			}
		}
	}
	return out, nil
}

// commentOf is the statement text of a rule's "xsyn: ..." comment, "" if it has none.
func commentOf(args []string) string {
	i := slices.Index(args, "--comment")
	if i < 0 || i+1 >= len(args) {
		return ""
	}
	o, ok := strings.CutPrefix(args[i+1], "xsyn: ")
	if !ok {
		return ""
	}
	return o
}
