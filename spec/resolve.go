package spec

// Resolution: the drafts of a configuration, with its settings and options known, become
// validated statements, one per family.

import (
	"fmt"
	"slices"
	"strings"
)

// resolve applies the settings to the drafts, splits them by family and validates them.
func (p *parser) resolve(stack *Stack) Config {
	c := &cursor{file: p.file}
	set := DefaultSettings()
	if p.mark != nil {
		set.Mark, set.MarkMask = p.mark[0], p.mark[1]
		if err := set.Validate(); err != nil {
			p.errs = append(p.errs, c.errAt(p.settings["mark"].val.pos, "%s", plainMsg(err, "")))
		}
	}
	set.Loopback = p.loopback
	set.CookieSecretFile = p.cookieFile
	cfg := Config{Settings: set}
	for _, d := range p.drafts {
		stmts, err := d.split(c)
		if err != nil {
			p.errs = append(p.errs, err)
			continue
		}
		if d.action.Kind == Redirect && set.Loopback != LoopbackStrict {
			lb := p.settings["loopback"]
			p.errs = append(p.errs, c.errAt(d.actionTok.pos, "redirect needs `loopback strict`, but line %d sets %s: "+
				"the redirected SYN loops through lo with the client's address, and only a strict policy keeps "+
				"such packets from reaching other local services", lb.line, set.Loopback))
			continue
		}
		for i := range stmts {
			st := &stmts[i]
			st.Options = DefaultOptions(st.Family)
			if stack != nil {
				st.Options = stack.Options(st.Family)
			}
			st.TTL = DefaultTTL
			p.global.apply(&st.Options, &st.TTL)
			d.opts.apply(&st.Options, &st.TTL)
			if err := st.Validate(set); err != nil {
				p.errs = append(p.errs, c.errAt(d.first.pos, "%s", plainMsg(err, st.Pos.String())))
				stmts = nil
				break
			}
			if err := p.via(c, d, st); err != nil {
				p.errs = append(p.errs, err)
				stmts = nil
				break
			}
			if err := p.onDemand(c, d, st); err != nil {
				p.errs = append(p.errs, err)
				stmts = nil
				break
			}
		}
		cfg.Statements = append(cfg.Statements, stmts...)
	}
	return cfg
}

// via sets the path the statement asks for (its own `path`, else the options line's) and
// refuses `path handoff` where the handoff cannot work, at the word that asked for it.
func (p *parser) via(c *cursor, d draft, st *Statement) *ConfigError {
	switch {
	case d.opts.via.set:
		st.Via = d.opts.via.v
	case p.global.via.set:
		st.Via = p.global.via.v
	}
	why := ""
	if st.Via == ViaHandoff {
		why = st.HandoffReason()
	}
	switch {
	case why == "":
		return nil
	case d.opts.via.set:
		return c.errAt(d.opts.viaTok.pos, "path handoff is not possible: %s; leave path out (or write path synproxy)", why)
	}
	return c.errAt(d.first.pos, "path handoff, from the options line (line %d), is not possible here: %s; give this statement path auto or path synproxy",
		p.settings["options"].line, why)
}

func (s NameSet) clone() NameSet { s.Names = slices.Clone(s.Names); return s }

func (s PortSet) clone() PortSet { s.Ranges = slices.Clone(s.Ranges); return s }

// split makes the draft's statement in each of its families. A statement for both families
// (synproxy, synproxy46) keeps in each the addresses of that family, and is left out of a
// family its src, dst or dnat target excludes.
func (d draft) split(c *cursor) ([]Statement, *ConfigError) {
	var out []Statement
	var why []string
	for _, f := range d.families {
		src, srcOK := d.src.forFamily(f)
		dst, dstOK := d.dst.forFamily(f)
		actOK := !d.action.Addr.IsValid() || addrFamily(d.action.Addr) == f
		switch {
		case !srcOK:
			why = append(why, fmt.Sprintf("%s: src names no %s address", f, familyName(f)))
		case !dstOK:
			why = append(why, fmt.Sprintf("%s: dst names no %s address", f, familyName(f)))
		case !actOK:
			why = append(why, fmt.Sprintf("%s: the dnat target is not %s", f, familyName(f)))
		default:
			out = append(out, Statement{
				Pos: d.pos, Text: d.text, Family: f, Direction: d.dir,
				Match: Match{Inface: d.inface.clone(), Outface: d.outface.clone(), Src: src, Dst: dst,
					Sport: d.sport.clone(), Dport: d.dport.clone()},
				Action: d.action, LogLimit: d.logLimit,
			})
		}
	}
	if len(out) == 0 {
		return nil, c.errAt(d.first.pos, "the statement applies to no family (%s)", strings.Join(why, "; "))
	}
	return out, nil
}
