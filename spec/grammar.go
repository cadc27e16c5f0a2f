package spec

// The grammar of a configuration line: which statement or setting it is, the words of a
// synproxy statement (type, parameters, action, loglimit) and the drafts they make. Values
// (values.go), TCP options (options.go) and settings lines (settings.go) are read apart.

import (
	"fmt"
	"slices"
	"strings"
)

// draft is a statement as parsed, before the settings are known and it is split by family.
type draft struct {
	first     token // its first word
	pos       Pos
	text      string
	families  []Family
	dir       Direction
	inface    NameSet
	outface   NameSet
	src, dst  addrList
	sport     PortSet
	dport     PortSet
	opts      optSet
	action    Action
	actionTok token
	logLimit  string
}

type parser struct {
	file       string
	errs       []*ConfigError
	settings   map[string]setting // "options", "mark", "loopback", "cookie-secret-file"
	global     optSet
	mark       *[2]uint32 // value, mask; nil: the default
	loopback   LoopbackPolicy
	cookieFile string
	drafts     []draft
}

// cursor walks the words of one line.
type cursor struct {
	file string
	toks []token
	i    int
}

func (c *cursor) next() (token, bool) {
	if c.i >= len(c.toks) {
		return token{}, false
	}
	c.i++
	return c.toks[c.i-1], true
}

// nextIs consumes the next word if it is w.
func (c *cursor) nextIs(w string) bool {
	if c.i < len(c.toks) && c.toks[c.i].val == w {
		c.i++
		return true
	}
	return false
}

func (c *cursor) errAt(p position, format string, args ...any) *ConfigError {
	return &ConfigError{File: c.file, Line: p.line, Col: p.col, Msg: fmt.Sprintf(format, args...)}
}

// missing is an error about a word that should follow the last one.
func (c *cursor) missing(format string, args ...any) *ConfigError {
	return c.errAt(c.toks[len(c.toks)-1].end, format, args...)
}

// value is the word after keyword kw, which must be there.
func (c *cursor) value(kw, what string) (token, *ConfigError) {
	t, ok := c.next()
	if !ok {
		return t, c.missing("expected %s after %q", what, kw)
	}
	return t, nil
}

// line parses one statement or settings line.
func (p *parser) line(toks []token) {
	c := &cursor{file: p.file, toks: toks}
	var err *ConfigError
	if err = noVariables(c); err == nil {
		err = p.dispatch(c)
	}
	if err != nil {
		p.errs = append(p.errs, err)
	}
}

func (p *parser) dispatch(c *cursor) *ConfigError {
	word := c.toks[0].val
	if word == "export" && len(c.toks) > 1 && strings.HasPrefix(c.toks[1].val, "FIREHOL_") {
		c.i++ // firehol.conf may export its variables
		word = c.toks[1].val
	}
	name, _, assign := strings.Cut(word, "=")
	switch {
	case word == "options" || assign && name == "FIREHOL_SYNPROXY_OPTIONS":
		return p.optionsLine(c)
	case word == "mark":
		return p.markLine(c)
	case word == "loopback" || assign && name == "FIREHOL_TRUST_LOOPBACK":
		return p.loopbackLine(c)
	case word == "cookie-secret-file":
		return p.cookieSecretLine(c)
	case assign && strings.HasPrefix(name, "FIREHOL_"):
		return c.errAt(c.toks[c.i].pos, "unknown setting %s: xsyn reads only FIREHOL_SYNPROXY_OPTIONS and FIREHOL_TRUST_LOOPBACK", name)
	case word == "ipv4" || word == "ipv6" || strings.HasPrefix(word, "synproxy"):
		return p.statement(c)
	}
	return c.errAt(c.toks[0].pos, "unknown statement %q: expected %s", word, statementWords)
}

// noVariables refuses shell variables, which firehol.conf often uses and xsyn cannot expand.
func noVariables(c *cursor) *ConfigError {
	for i, t := range c.toks {
		if i > 0 && c.toks[i-1].val == "loglimit" {
			continue
		}
		if j := strings.IndexByte(t.val, '$'); j >= 0 {
			return c.errAt(t.posOf(j), "%s: shell variables are not expanded; write the value", t.raw)
		}
	}
	return nil
}

// statementWords are the words a line may start with.
const statementWords = "synproxy4, synproxy6, synproxy, options, mark, loopback or cookie-secret-file"

// once refuses a parameter given twice, by the same word or its opposite (sack, nosack).
func once(c *cursor, t token, key string, seen map[string]token) *ConfigError {
	if prev, ok := seen[key]; ok {
		if prev.val == t.val {
			return c.errAt(t.pos, "%q given twice", t.val)
		}
		return c.errAt(t.pos, "%q contradicts %q before it", t.val, prev.val)
	}
	seen[key] = t
	return nil
}

// Words of a statement.
const (
	paramWords  = "inface, outface, src, dst, sport, dport, mss, wscale, sack, nosack, timestamps, notimestamps, ecn, noecn, ttl, path, on-demand"
	actionWords = "accept, reject, drop, redirect, dnat, action"
)

// statement parses `synproxy4|synproxy6|synproxy46|synproxy TYPE [params] ACTION [loglimit TEXT]`,
// also written `ipv4 synproxy ...`.
func (p *parser) statement(c *cursor) *ConfigError {
	d := draft{first: c.toks[0], pos: Pos{File: p.file, Line: c.toks[0].pos.line}}
	raws := make([]string, len(c.toks))
	for i, t := range c.toks {
		raws[i] = t.raw
	}
	d.text = strings.Join(raws, " ")

	cmd, err := d.command(c)
	if err != nil {
		return err
	}
	t, ok := c.next()
	switch {
	case !ok:
		return c.missing("expected input, in, forward or pass after %q", cmd)
	case t.val == "input" || t.val == "in":
		d.dir = Input
	case t.val == "forward" || t.val == "pass":
		d.dir = Forward
	default:
		return c.errAt(t.pos, "expected input, in, forward or pass after %q, got %q", cmd, t.raw)
	}

	seen := map[string]token{}
	for {
		t, ok := c.next()
		if !ok {
			return c.missing("expected an action (%s) at the end of the statement", actionWords)
		}
		if isAction(t.val) {
			if err := d.parseAction(c, t, cmd); err != nil {
				return err
			}
			break
		}
		if err := d.param(c, t, cmd, seen); err != nil {
			return err
		}
	}

	if err := d.afterAction(c, seen); err != nil {
		return err
	}
	p.drafts = append(p.drafts, d)
	return nil
}

// afterAction parses what may follow the action: loglimit "TEXT".
func (d *draft) afterAction(c *cursor, seen map[string]token) *ConfigError {
	for {
		t, ok := c.next()
		if !ok {
			return nil
		}
		if t.val != "loglimit" {
			return c.errAt(t.pos, "unexpected %q after the action: only loglimit \"TEXT\" may follow it", t.raw)
		}
		if err := once(c, t, "loglimit", seen); err != nil {
			return err
		}
		v, err := c.value("loglimit", "the log text")
		if err != nil {
			return err
		}
		if v.val == "" {
			return c.errAt(v.pos, "loglimit text is empty")
		}
		if len(v.val) > MaxLogPrefix {
			return c.errAt(v.pos, "loglimit %s is %d characters; iptables LOG prefixes hold at most %d", v.raw, len(v.val), MaxLogPrefix)
		}
		d.logLimit = v.val
	}
}

// command reads `synproxy4`, `ipv6 synproxy`, ... and sets the families; it returns the words
// as written, for messages.
func (d *draft) command(c *cursor) (string, *ConfigError) {
	famOf := map[string][]Family{
		"synproxy4": {IPv4}, "synproxy6": {IPv6}, "synproxy": {IPv4, IPv6}, "synproxy46": {IPv4, IPv6},
		"ipv4": {IPv4}, "ipv6": {IPv6},
	}
	t, _ := c.next()
	fams, ok := famOf[t.val]
	if !ok || t.val == "ipv4" || t.val == "ipv6" {
		if !ok {
			return "", c.errAt(t.pos, "unknown statement %q: expected %s", t.raw, statementWords)
		}
		s, ok := c.next()
		if !ok {
			return "", c.missing("expected synproxy after %q", t.val)
		}
		sf, isSyn := famOf[s.val]
		if !isSyn || strings.HasPrefix(s.val, "ipv") {
			return "", c.errAt(s.pos, "expected synproxy after %q, got %q: xsyn reads only synproxy statements", t.val, s.raw)
		}
		if !slices.Contains(sf, fams[0]) {
			return "", c.errAt(s.pos, "%s %s: the families disagree", t.val, s.val)
		}
		d.families = fams
		return t.val + " " + s.val, nil
	}
	d.families = fams
	return t.val, nil
}

// single is the statement's only family, or 0 when it is for both.
func (d *draft) single() Family {
	if len(d.families) == 1 {
		return d.families[0]
	}
	return 0
}

func isAction(w string) bool {
	switch w {
	case "accept", "reject", "drop", "redirect", "dnat", "action":
		return true
	}
	return false
}

// param parses one match parameter or TCP option override, starting with word t.
func (d *draft) param(c *cursor, t token, cmd string, seen map[string]token) *ConfigError {
	if isOpt, err := option(c, t, &d.opts, seen); isOpt || err != nil {
		return err
	}
	what := map[string]string{
		"inface": "interface names", "outface": "interface names",
		"src": "addresses", "dst": "addresses", "sport": "ports", "dport": "ports",
	}[t.val]
	switch {
	case what != "":
	case t.val == "loglimit":
		return c.errAt(t.pos, "loglimit goes after the action")
	default:
		return c.errAt(t.pos, "unknown parameter %q: expected %s or an action (%s)", t.raw, paramWords, actionWords)
	}
	if err := once(c, t, t.val, seen); err != nil {
		return err
	}
	kw := t.val
	not := c.nextIs("not")
	if not {
		kw += " not"
	}
	v, err := c.value(kw, what)
	if err != nil {
		return err
	}
	var bad *badItem
	switch t.val {
	case "inface":
		d.inface = NameSet{Not: not}
		d.inface.Names, bad = nameList(v, kw)
	case "outface":
		d.outface = NameSet{Not: not}
		d.outface.Names, bad = nameList(v, kw)
	case "src":
		d.src = addrList{set: true, not: not}
		d.src.items, bad = prefixList(v, kw, d.single(), cmd)
	case "dst":
		d.dst = addrList{set: true, not: not}
		d.dst.items, bad = prefixList(v, kw, d.single(), cmd)
	case "sport":
		d.sport = PortSet{Not: not}
		d.sport.Ranges, bad = portList(v, kw, "port")
	case "dport":
		d.dport = PortSet{Not: not}
		d.dport.Ranges, bad = portList(v, kw, "port")
	}
	if bad != nil {
		return c.errAt(bad.at, "%s", bad.msg)
	}
	return nil
}

// parseAction parses the action starting with word t.
func (d *draft) parseAction(c *cursor, t token, cmd string) *ConfigError {
	d.actionTok = t
	switch t.val {
	case "accept":
		d.action = Action{Kind: Accept}
	case "reject":
		d.action = Action{Kind: Reject}
	case "drop":
		d.action = Action{Kind: Drop}
	case "redirect":
		kw := "redirect"
		if c.nextIs("to") {
			kw = "redirect to"
		}
		v, err := c.value(kw, "a port")
		if err != nil {
			return err
		}
		if v.val == "" || strings.Trim(v.val, "0123456789") != "" {
			return c.errAt(v.pos, "expected a port after %q, got %q", kw, v.raw)
		}
		port, err := number(c, kw, v.val, v.pos, 1, 65535)
		if err != nil {
			return err
		}
		d.action = Action{Kind: Redirect, Port: uint16(port)}
	case "dnat":
		kw := "dnat"
		if c.nextIs("to") {
			kw = "dnat to"
		}
		const what = "a target (IP, IP:PORT, [IPv6], [IPv6]:PORT or :PORT)"
		v, err := c.value(kw, what)
		if err != nil {
			return err
		}
		addr, port, msg := parseTarget(v.val)
		if msg != "" {
			return c.errAt(v.pos, "%s %s: %s", kw, v.raw, msg)
		}
		if f := d.single(); f != 0 && addr.IsValid() && addrFamily(addr) != f {
			return c.errAt(v.pos, "%s %s is %s, but %s takes %s addresses", kw, v.raw,
				familyName(addrFamily(addr)), cmd, familyName(f))
		}
		d.action = Action{Kind: DNAT, Addr: addr, Port: port}
	case "action":
		v, err := c.value("action", "a chain name")
		if err != nil {
			return err
		}
		if err := CheckChainName(v.val); err != nil {
			return c.errAt(v.pos, "action: %v", err)
		}
		d.action = Action{Kind: Chain, Chain: v.val}
	}
	return nil
}
