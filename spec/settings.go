package spec

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
)

// LoopbackPolicy is how xsyn treats traffic on the loopback interface, as FireHOL's
// FIREHOL_TRUST_LOOPBACK.
type LoopbackPolicy int

// The loopback policies.
const (
	// LoopbackStrict accepts on lo only traffic between loopback addresses (and xsyn's own
	// marked packets), and drops packets for loopback addresses arriving on any other
	// interface. The only policy REDIRECT accepts.
	LoopbackStrict LoopbackPolicy = iota
	// LoopbackLoose accepts everything on lo.
	LoopbackLoose
	// LoopbackNone installs no loopback rules: the rest of the firewall decides.
	LoopbackNone
)

func (p LoopbackPolicy) String() string {
	switch p {
	case LoopbackLoose:
		return "loose"
	case LoopbackNone:
		return "none"
	}
	return "strict"
}

// ParseLoopback parses a loopback policy; FireHOL's "no" is "none".
func ParseLoopback(s string) (LoopbackPolicy, error) {
	switch s {
	case "strict":
		return LoopbackStrict, nil
	case "loose", "1", "yes":
		return LoopbackLoose, nil
	case "none", "no", "0":
		return LoopbackNone, nil
	}
	return 0, fmt.Errorf("%w: loopback policy %q: expected strict, loose or none", ErrInvalid, s)
}

// Settings are the namespace-wide choices of a configuration.
type Settings struct {
	// Mark and MarkMask are the packet mark bits xsyn sets on the SYN that SYNPROXY sends
	// towards the server, so that only those packets pass xsyn's isolation rules.
	Mark, MarkMask uint32
	Loopback       LoopbackPolicy
	// CookieSecretFile is the file of the handoff path's cookie secret (config
	// `cookie-secret-file`, flag --cookie-secret-file); "" for none. It is only named here:
	// attach reads it (ReadCookieKey) into Spec.CookieKey.
	CookieSecretFile string
}

// DefaultSettings: mark bit 0x20000000 (FireHOL's marks use the low bits), strict loopback.
func DefaultSettings() Settings {
	return Settings{Mark: 0x20000000, MarkMask: 0x20000000, Loopback: LoopbackStrict}
}

// MarkString is the mark as iptables writes it: 0x20000000/0x20000000.
func (s Settings) MarkString() string {
	return fmt.Sprintf("0x%x/0x%x", s.Mark, s.MarkMask)
}

// Validate checks the settings on their own.
func (s Settings) Validate() error {
	if s.MarkMask == 0 {
		return fmt.Errorf("%w: mark mask is 0; xsyn needs at least one mark bit of its own", ErrInvalid)
	}
	if s.Mark&^s.MarkMask != 0 || s.Mark == 0 {
		return fmt.Errorf("%w: mark 0x%x must be non-zero and inside its mask 0x%x", ErrInvalid, s.Mark, s.MarkMask)
	}
	return nil
}

// setting is where a settings line was given.
type setting struct {
	word string
	line int
	val  token // its value, for errors found once the file is read
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
