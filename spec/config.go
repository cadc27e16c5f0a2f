package spec

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Config is a parsed configuration file: settings and statements for every interface.
type Config struct {
	Settings   Settings
	Statements []Statement // options resolved, one per family, in file order
}

// ErrNoStatement: no statement of the configuration applies to the interface asked for.
var ErrNoStatement = errors.New("no synproxy statement applies to it")

// ConfigError is one error at a position of a configuration file.
type ConfigError struct {
	File      string
	Line, Col int
	Msg       string
}

func (e *ConfigError) Error() string {
	if e.File == "" {
		return fmt.Sprintf("%d:%d: %s", e.Line, e.Col, e.Msg)
	}
	return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Col, e.Msg)
}

// Unwrap makes every configuration error an ErrInvalid.
func (e *ConfigError) Unwrap() error { return ErrInvalid }

// maxErrors is how many errors ParseConfig reports before it says there are more.
const maxErrors = 20

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

// setting is where a settings line was given.
type setting struct {
	word string
	line int
	val  token // its value, for errors found once the file is read
}

// opt is a TCP option a line sets, or leaves to the layer below.
type opt[T any] struct {
	v   T
	set bool
}

// optSet is the TCP options an `options` line or a statement sets, and the path it asks for.
type optSet struct {
	mss, wscale, ttl opt[int]
	sack, ts, ecn    opt[bool]
	via              opt[Via]
	viaTok           token // the value of `path`, for errors
	onDemand         opt[int]
	onDemandTok      token // the word `on-demand`, for errors
}

func (s optSet) apply(o *TCPOptions, ttl *uint8) {
	if s.mss.set {
		o.MSS = uint16(s.mss.v)
	}
	if s.wscale.set {
		o.WScale = uint8(s.wscale.v)
	}
	if s.sack.set {
		o.SACK = s.sack.v
	}
	if s.ts.set {
		o.Timestamps = s.ts.v
	}
	if s.ecn.set {
		o.ECN = s.ecn.v
	}
	if s.ttl.set {
		*ttl = uint8(s.ttl.v)
	}
}

// addrList is a src or dst list as written, before it is split by family.
type addrList struct {
	set   bool
	not   bool
	items []netip.Prefix
}

// forFamily is the list's AddrSet in family f; ok is false when the list names addresses of
// the other family only, so the statement is not for f. A negated list naming only the other
// family excludes nothing in f.
func (l addrList) forFamily(f Family) (set AddrSet, ok bool) {
	if !l.set {
		return AddrSet{}, true
	}
	for _, p := range l.items {
		if familyOf(p) == f {
			set.Prefixes = append(set.Prefixes, p)
		}
	}
	if len(set.Prefixes) == 0 {
		return AddrSet{}, l.not
	}
	set.Not = l.not
	return set, true
}

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

// err is every error found, in file order.
func (p *parser) err() error {
	if len(p.errs) == 0 {
		return nil
	}
	slices.SortStableFunc(p.errs, func(a, b *ConfigError) int {
		return cmp.Or(cmp.Compare(a.Line, b.Line), cmp.Compare(a.Col, b.Col))
	})
	if len(p.errs) == 1 {
		return p.errs[0]
	}
	errs := make([]error, 0, maxErrors+1)
	for _, e := range p.errs[:min(len(p.errs), maxErrors)] {
		errs = append(errs, e)
	}
	if n := len(p.errs) - maxErrors; n > 0 {
		e := *p.errs[maxErrors]
		e.Msg = fmt.Sprintf("too many errors (%d more)", n)
		errs = append(errs, &e)
	}
	return errors.Join(errs...)
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

// given records a settings line starting with word t, which may appear once.
func (p *parser) given(c *cursor, key string, t, val token) *ConfigError {
	word, _, _ := strings.Cut(t.val, "=")
	if prev, ok := p.settings[key]; ok {
		if prev.word == word {
			return c.errAt(t.pos, "%q given twice, first at line %d", word, prev.line)
		}
		return c.errAt(t.pos, "%q given twice, first at line %d as %q", word, prev.line, prev.word)
	}
	p.settings[key] = setting{word: word, line: t.pos.line, val: val}
	return nil
}

// optionsLine: `options mss 1460 wscale 7 ...` or FIREHOL_SYNPROXY_OPTIONS="--mss 1460 ...".
func (p *parser) optionsLine(c *cursor) *ConfigError {
	first, _ := c.next()
	if err := p.given(c, "options", first, first); err != nil {
		return err
	}
	var o optSet
	if name, _, ok := strings.Cut(first.val, "="); ok {
		if t, ok := c.next(); ok {
			return c.errAt(t.pos, "unexpected %q after %s: quote the value", t.raw, name)
		}
		var err *ConfigError
		if o, err = synproxyFlags(c, first, len(name)+1); err != nil {
			return err
		}
	} else {
		seen := map[string]token{}
		for {
			t, ok := c.next()
			if !ok {
				break
			}
			isOpt, err := option(c, t, &o, seen)
			if err != nil {
				return err
			}
			if !isOpt {
				return c.errAt(t.pos, "unknown option %q: expected %s", t.raw, optionWords)
			}
		}
		if len(seen) == 0 {
			return c.missing("expected %s after \"options\"", optionWords)
		}
	}
	p.global = o
	return nil
}

const optionWords = "mss, wscale, sack, nosack, timestamps, notimestamps, ecn, noecn, ttl, path or on-demand"

// statementWords are the words a line may start with.
const statementWords = "synproxy4, synproxy6, synproxy, options, mark, loopback or cookie-secret-file"

// synproxyFlags parses FIREHOL_SYNPROXY_OPTIONS, the SYNPROXY target's flags: those absent are
// off, except mss and wscale, which keep the defaults.
func synproxyFlags(c *cursor, t token, off int) (optSet, *ConfigError) {
	o := optSet{sack: opt[bool]{false, true}, ts: opt[bool]{false, true}, ecn: opt[bool]{false, true}}
	words := split(t, off, " \t")
	seen := map[string]bool{}
	for i := 0; i < len(words); i++ {
		w := words[i]
		flag, arg, hasArg := strings.Cut(w.s, "=")
		key := flag
		if key == "--timestamps" { // as iptables' manual spells it
			key = "--timestamp"
		}
		if seen[key] {
			return o, c.errAt(w.pos, "%s given twice", flag)
		}
		seen[key] = true
		if hasArg && key != "--mss" && key != "--wscale" {
			return o, c.errAt(w.pos, "%s takes no value", flag)
		}
		switch key {
		case "--sack-perm":
			o.sack.v = true
		case "--timestamp":
			o.ts.v = true
		case "--ecn":
			o.ecn.v = true
		case "--mss", "--wscale":
			at := w.pos
			if !hasArg {
				if i+1 == len(words) {
					return o, c.errAt(t.end, "expected a number after %s", flag)
				}
				i++
				arg, at = words[i].s, words[i].pos
			}
			lo, hi, dst := MinMSS, MaxMSS, &o.mss
			if key == "--wscale" {
				lo, hi, dst = 0, MaxWScale, &o.wscale
			}
			n, err := number(c, flag, arg, at, lo, hi)
			if err != nil {
				return o, err
			}
			*dst = opt[int]{n, true}
		default:
			return o, c.errAt(w.pos, "unknown SYNPROXY option %q: expected --mss N, --wscale N, --sack-perm, --timestamp or --ecn", w.s)
		}
	}
	return o, nil
}

// option parses the TCP option override or `path` starting with word t; isOpt is false when t
// is neither.
func option(c *cursor, t token, o *optSet, seen map[string]token) (isOpt bool, err *ConfigError) {
	if t.val == "path" {
		return true, pathOption(c, t, o, seen)
	}
	flags := map[string]*opt[bool]{"sack": &o.sack, "timestamps": &o.ts, "ecn": &o.ecn}
	nums := map[string]struct {
		dst    *opt[int]
		lo, hi int
	}{"mss": {&o.mss, MinMSS, MaxMSS}, "wscale": {&o.wscale, 0, MaxWScale}, "ttl": {&o.ttl, 1, 255},
		"on-demand": {&o.onDemand, 0, MaxOnDemand}}
	key, on := strings.TrimPrefix(t.val, "no"), !strings.HasPrefix(t.val, "no")
	flag, isFlag := flags[key]
	num, isNum := nums[t.val]
	if !isFlag && !isNum {
		return false, nil
	}
	if isNum {
		key = t.val
	}
	if t.val == "on-demand" {
		o.onDemandTok = t
	}
	if err := once(c, t, key, seen); err != nil {
		return true, err
	}
	if isFlag {
		*flag = opt[bool]{on, true}
		return true, nil
	}
	v, err := c.value(t.val, fmt.Sprintf("a number %d-%d", num.lo, num.hi))
	if err != nil {
		return true, err
	}
	n, err := number(c, t.val, v.val, v.pos, num.lo, num.hi)
	if err != nil {
		return true, err
	}
	*num.dst = opt[int]{n, true}
	return true, nil
}

// pathOption parses `path auto|synproxy|handoff`: how a valid ACK becomes a connection.
func pathOption(c *cursor, t token, o *optSet, seen map[string]token) *ConfigError {
	if err := once(c, t, "path", seen); err != nil {
		return err
	}
	v, err := c.value("path", "auto, synproxy or handoff")
	if err != nil {
		return err
	}
	via, perr := ParseVia(v.val)
	if perr != nil {
		return c.errAt(v.pos, "expected auto, synproxy or handoff after \"path\", got %q", v.raw)
	}
	o.via, o.viaTok = opt[Via]{via, true}, v
	return nil
}

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

// number parses the decimal number s, the argument of kw, in lo-hi.
func number(c *cursor, kw, s string, at position, lo, hi int) (int, *ConfigError) {
	if s == "" || strings.Trim(s, "0123456789") != "" {
		return 0, c.errAt(at, "expected a number %d-%d after %q, got %q", lo, hi, kw, s)
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < lo || n > hi {
		return 0, c.errAt(at, "%s %s is outside %d-%d", strings.TrimLeft(kw, "-"), s, lo, hi)
	}
	return n, nil
}

// markLine: `mark VALUE[/MASK]`.
func (p *parser) markLine(c *cursor) *ConfigError {
	kw, _ := c.next()
	v, err := c.value("mark", "a mark VALUE[/MASK] (0x... or decimal)")
	if err != nil {
		return err
	}
	if err := p.given(c, "mark", kw, v); err != nil {
		return err
	}
	if t, ok := c.next(); ok {
		return c.errAt(t.pos, "unexpected %q after the mark: write mark VALUE[/MASK]", t.raw)
	}
	val, mask, hasMask := strings.Cut(v.val, "/")
	m, ok := parseMark(val)
	mk := m
	if hasMask {
		var okMask bool
		mk, okMask = parseMark(mask)
		ok = ok && okMask
	}
	if !ok {
		return c.errAt(v.pos, "expected a mark VALUE[/MASK] after \"mark\" (32-bit, 0x... or decimal), got %q", v.raw)
	}
	p.mark = &[2]uint32{m, mk}
	return nil
}

func parseMark(s string) (uint32, bool) {
	base := 10
	if h, ok := strings.CutPrefix(strings.ToLower(s), "0x"); ok {
		s, base = h, 16
	}
	if s == "" || strings.ContainsAny(s, "+-_") {
		return 0, false
	}
	n, err := strconv.ParseUint(s, base, 32)
	return uint32(n), err == nil
}

// loopbackLine: `loopback strict|loose|none` or FIREHOL_TRUST_LOOPBACK=strict|loose|no|0|1.
func (p *parser) loopbackLine(c *cursor) *ConfigError {
	first, _ := c.next()
	if err := p.given(c, "loopback", first, first); err != nil {
		return err
	}
	var val string
	var at position
	if name, v, ok := strings.Cut(first.val, "="); ok {
		val, at = v, first.posOf(len(name)+1)
		if v == "" {
			at = first.end
		}
	} else {
		v, err := c.value("loopback", "strict, loose or none")
		if err != nil {
			return err
		}
		val, at = v.val, v.pos
	}
	if t, ok := c.next(); ok {
		return c.errAt(t.pos, "unexpected %q after the loopback policy", t.raw)
	}
	pol, err := ParseLoopback(val)
	if err != nil {
		return c.errAt(at, "expected strict, loose or none for the loopback policy, got %q", val)
	}
	p.loopback = pol
	return nil
}

// cookieSecretLine: `cookie-secret-file PATH`, the handoff path's cookie secret. The file is
// not read here (attach reads it); a relative PATH is relative to the configuration's
// directory, so the file works from wherever xsyn runs.
func (p *parser) cookieSecretLine(c *cursor) *ConfigError {
	kw, _ := c.next()
	v, err := c.value("cookie-secret-file", "the file name of the cookie secret")
	if err != nil {
		return err
	}
	if err := p.given(c, "cookie-secret-file", kw, v); err != nil {
		return err
	}
	if t, ok := c.next(); ok {
		return c.errAt(t.pos, "unexpected %q after the file name: quote a name with blanks", t.raw)
	}
	if v.val == "" {
		return c.errAt(v.pos, "expected the file name of the cookie secret after \"cookie-secret-file\", got an empty word")
	}
	file := v.val
	if !filepath.IsAbs(file) {
		file = filepath.Join(filepath.Dir(p.file), file)
	}
	p.cookieFile = file
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
	items := split(v, 0, ", \t")
	if len(items) == 0 {
		return c.errAt(v.pos, "expected %s after %q, got an empty list", what, kw)
	}
	switch t.val {
	case "inface":
		d.inface, err = nameSet(c, items, kw, not)
	case "outface":
		d.outface, err = nameSet(c, items, kw, not)
	case "src":
		d.src, err = d.addrs(c, items, kw, not, cmd)
	case "dst":
		d.dst, err = d.addrs(c, items, kw, not, cmd)
	case "sport":
		d.sport, err = portSet(c, items, kw, not)
	case "dport":
		d.dport, err = portSet(c, items, kw, not)
	}
	return err
}

func nameSet(c *cursor, items []item, kw string, not bool) (NameSet, *ConfigError) {
	set := NameSet{Not: not}
	for _, it := range items {
		if msg := checkIface(it.s, kw); msg != "" {
			return set, c.errAt(it.pos, "%s", msg)
		}
		if !slices.Contains(set.Names, it.s) {
			set.Names = append(set.Names, it.s)
		}
	}
	return set, nil
}

// addrs parses addresses; a statement for one family takes only that family's.
func (d *draft) addrs(c *cursor, items []item, kw string, not bool, cmd string) (addrList, *ConfigError) {
	l := addrList{set: true, not: not}
	for _, it := range items {
		ps, msg := parseAddrItem(it.s, kw)
		if msg != "" {
			return l, c.errAt(it.pos, "%s", msg)
		}
		if f := d.single(); f != 0 && familyOf(ps[0]) != f {
			return l, c.errAt(it.pos, "%s %s is %s, but %s takes %s addresses (use synproxy for both families)",
				kw, it.s, familyName(familyOf(ps[0])), cmd, familyName(f))
		}
		l.items = append(l.items, ps...)
	}
	return l, nil
}

func portSet(c *cursor, items []item, kw string, not bool) (PortSet, *ConfigError) {
	set := PortSet{Not: not}
	for _, it := range items {
		r, msg := parsePortItem(it.s, kw)
		if msg != "" {
			return set, c.errAt(it.pos, "%s", msg)
		}
		set.Ranges = append(set.Ranges, r)
	}
	set.Ranges = mergeRanges(set.Ranges)
	return set, nil
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

func addrFamily(a netip.Addr) Family {
	if a.Is4() {
		return IPv4
	}
	return IPv6
}

func familyName(f Family) string {
	if f == IPv6 {
		return "IPv6"
	}
	return "IPv4"
}

// item is one element of a list word.
type item struct {
	s   string
	pos position
}

// split splits the value of t, from byte off on, at any of the bytes in seps.
func split(t token, off int, seps string) []item {
	var out []item
	start := -1
	for i := off; i <= len(t.val); i++ {
		if i == len(t.val) || strings.IndexByte(seps, t.val[i]) >= 0 {
			if start >= 0 {
				out = append(out, item{t.val[start:i], t.posOf(start)})
				start = -1
			}
		} else if start < 0 {
			start = i
		}
	}
	return out
}

// checkIface checks an interface name written after kw; it returns what is wrong, or "".
func checkIface(name, kw string) string {
	if len(name) > 15 {
		return fmt.Sprintf("%s %s: interface names are at most 15 characters", kw, name)
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return fmt.Sprintf("expected interface names after %q (letters, digits, '.', '_' and '-'; no wildcards), got %q", kw, name)
		}
	}
	return ""
}

// parseAddrItem parses an address, a prefix or a range a-b written after kw; it returns what
// is wrong, or "".
func parseAddrItem(s, kw string) ([]netip.Prefix, string) {
	if strings.Contains(s, "%") {
		return nil, fmt.Sprintf("%s %s has a zone; give the address without %%zone", kw, s)
	}
	if lo, hi, ok := strings.Cut(s, "-"); ok {
		a, msg := parseHost(lo, s, kw)
		if msg != "" {
			return nil, msg
		}
		b, msg := parseHost(hi, s, kw)
		if msg != "" {
			return nil, msg
		}
		if a.Is4() != b.Is4() {
			return nil, fmt.Sprintf("%s range %s mixes IPv4 and IPv6", kw, s)
		}
		if b.Less(a) {
			return nil, fmt.Sprintf("%s range %s runs backwards", kw, s)
		}
		ps, err := RangePrefixes(a, b)
		if err != nil {
			return nil, fmt.Sprintf("%s range %s: %v", kw, s, err)
		}
		return ps, ""
	}
	host, bits, isPrefix := strings.Cut(s, "/")
	a, msg := parseHost(host, s, kw)
	if msg != "" {
		return nil, msg
	}
	if !isPrefix {
		return []netip.Prefix{netip.PrefixFrom(a, a.BitLen())}, ""
	}
	n, err := strconv.Atoi(bits)
	if err != nil || n < 0 || n > a.BitLen() || strings.Trim(bits, "0123456789") != "" {
		return nil, fmt.Sprintf("%s %s: the prefix length must be 0-%d", kw, s, a.BitLen())
	}
	p := netip.PrefixFrom(a, n)
	if p != p.Masked() {
		return nil, fmt.Sprintf("%s %s has host bits set (did you mean %s?)", kw, s, p.Masked())
	}
	return []netip.Prefix{p}, ""
}

// parseHost parses one address h of item s, IPv6 bare or in brackets.
func parseHost(h, s, kw string) (netip.Addr, string) {
	if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") {
		h = h[1 : len(h)-1]
	}
	a, err := netip.ParseAddr(h)
	if err != nil {
		return a, fmt.Sprintf("expected addresses, prefixes or ranges a-b after %q, got %q (host names are not resolved)", kw, s)
	}
	if a.Is4In6() {
		return a, fmt.Sprintf("%s %s is IPv4-mapped; write %s", kw, h, a.Unmap())
	}
	return a, ""
}

// parsePortItem parses N, N-M or N:M; it returns what is wrong, or "".
func parsePortItem(s, kw string) (PortRange, string) {
	lo, hi, isRange := strings.Cut(s, "-")
	if !isRange {
		lo, hi, isRange = strings.Cut(s, ":")
	}
	if !isRange {
		hi = lo
	}
	var r [2]uint16
	for i, v := range []string{lo, hi} {
		if v == "" || strings.Trim(v, "0123456789") != "" {
			return PortRange{}, fmt.Sprintf("expected a port or a range N-M after %q, got %q (service names are not looked up)", kw, s)
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 65535 {
			return PortRange{}, fmt.Sprintf("port %s is outside 1-65535", v)
		}
		r[i] = uint16(n)
	}
	if r[1] < r[0] {
		return PortRange{}, fmt.Sprintf("port range %s runs backwards", s)
	}
	return PortRange{r[0], r[1]}, ""
}

// parseTarget parses a DNAT target: IP, IP:PORT, [IPv6], [IPv6]:PORT or :PORT; it returns what
// is wrong, or "".
func parseTarget(s string) (netip.Addr, uint16, string) {
	const want = "expected IP, IP:PORT, [IPv6], [IPv6]:PORT or :PORT"
	if strings.Contains(s, "%") {
		return netip.Addr{}, 0, "zones are not supported"
	}
	host, port, hasPort := s, "", false
	switch {
	case strings.HasPrefix(s, "["):
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return netip.Addr{}, 0, want
		}
		host, port = s[1:end], s[end+1:]
		if port != "" && !strings.HasPrefix(port, ":") {
			return netip.Addr{}, 0, want
		}
		port, hasPort = strings.CutPrefix(port, ":")
	case strings.HasPrefix(s, ":"):
		host, port, hasPort = "", s[1:], true
	default:
		if _, err := netip.ParseAddr(s); err != nil {
			if i := strings.LastIndexByte(s, ':'); i >= 0 {
				host, port, hasPort = s[:i], s[i+1:], true
				if strings.Contains(host, ":") {
					return netip.Addr{}, 0, "write an IPv6 address with a port as [ADDRESS]:PORT"
				}
			}
		}
	}
	var a netip.Addr
	if host != "" {
		if strings.Contains(host, "-") {
			return netip.Addr{}, 0, "address ranges are not supported; give one address"
		}
		var err error
		if a, err = netip.ParseAddr(host); err != nil {
			return netip.Addr{}, 0, want
		}
		if a.Is4In6() {
			return netip.Addr{}, 0, fmt.Sprintf("%s is IPv4-mapped; write %s", a, a.Unmap())
		}
	}
	var p uint16
	if hasPort || !a.IsValid() {
		if strings.Contains(port, "-") {
			return netip.Addr{}, 0, "port ranges are not supported; give one port"
		}
		if port == "" || strings.Trim(port, "0123456789") != "" {
			return netip.Addr{}, 0, want
		}
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 {
			return netip.Addr{}, 0, fmt.Sprintf("port %s is outside 1-65535", port)
		}
		p = uint16(n)
	}
	return a, p, ""
}

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

// plainMsg is the message of a validation error without what ConfigError says itself.
func plainMsg(err error, pos string) string {
	msg := err.Error()
	for _, prefix := range []string{ErrInvalid.Error() + ": ", pos + ": ", ErrInvalid.Error() + ": "} {
		msg = strings.TrimPrefix(msg, prefix)
	}
	return msg
}

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
