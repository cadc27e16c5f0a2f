package spec

// TCP options and path: what an `options` line (or FIREHOL_SYNPROXY_OPTIONS) and a statement
// set, each over the layer below.

import (
	"fmt"
	"strings"
)

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
