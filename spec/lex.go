package spec

// The configuration language is read the way a shell reads firehol.conf: words separated by
// blanks, "double" and 'single' quotes, a backslash before the newline continuing a line, '#'
// starting a comment. Every byte of every word keeps the line and column it was written at, so
// an error can point at the item of a list that is wrong.

// position is a 1-based line and byte column in the source.
type position struct{ line, col int }

// token is one word of a statement.
type token struct {
	val    string     // the word, quotes and escapes removed
	raw    string     // the word as written (without line continuations)
	quoted bool       // some of it was quoted
	pos    position   // of its first byte
	end    position   // just past its last byte
	at     []position // of each byte of val
}

// posOf is where byte i of the token's value was written.
func (t token) posOf(i int) position {
	if i >= 0 && i < len(t.at) {
		return t.at[i]
	}
	return t.pos
}

// logical is one statement: the words of a line and the lines it continues on.
type logical struct {
	toks []token
	err  *ConfigError // a lexing error; toks are then incomplete
}

type lexer struct {
	file string
	src  []byte
	i    int
	pos  position
}

// lex splits src into statements.
func lex(file string, src []byte) []logical {
	lx := &lexer{file: file, src: src, pos: position{1, 1}}
	if len(src) >= 3 && string(src[:3]) == "\ufeff" {
		lx.i = 3 // a UTF-8 byte order mark, as some editors write
	}
	var out []logical
	var cur logical
	flush := func() {
		if len(cur.toks) > 0 || cur.err != nil {
			out = append(out, cur)
		}
		cur = logical{}
	}
	for lx.i < len(src) {
		c := src[lx.i]
		switch {
		case c == '\n':
			lx.advance()
			flush()
		case isBlank(c):
			lx.advance()
		case c == '#':
			lx.skipLine()
		case c == '\\' && lx.continuation():
			lx.skipContinuation()
		default:
			t, err := lx.word()
			if err != nil {
				cur.err = err
				lx.skipLine()
				continue
			}
			cur.toks = append(cur.toks, t)
		}
	}
	flush()
	return out
}

func isBlank(c byte) bool {
	return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f'
}

func (lx *lexer) advance() {
	if lx.src[lx.i] == '\n' {
		lx.pos = position{lx.pos.line + 1, 1}
	} else {
		lx.pos.col++
	}
	lx.i++
}

// skipLine moves to the newline ending the physical line (which it leaves to the caller).
func (lx *lexer) skipLine() {
	for lx.i < len(lx.src) && lx.src[lx.i] != '\n' {
		lx.advance()
	}
}

// continuation reports whether the backslash at lx.i ends its line: only blanks may follow it.
// Trailing blanks after the backslash are forgiven, since no one can see them.
func (lx *lexer) continuation() bool {
	for j := lx.i + 1; j < len(lx.src) && lx.src[j] != '\n'; j++ {
		if !isBlank(lx.src[j]) {
			return false
		}
	}
	return true
}

// skipContinuation skips a backslash, the blanks after it and the newline.
func (lx *lexer) skipContinuation() {
	lx.skipLine()
	if lx.i < len(lx.src) {
		lx.advance()
	}
}

// word reads one word: unquoted, escaped and quoted parts up to a blank, a newline or a comment.
func (lx *lexer) word() (token, *ConfigError) {
	t := token{pos: lx.pos, end: lx.pos}
	var val, raw []byte
	take := func(raw0 ...byte) { // the byte at lx.i is part of the value
		raw = append(raw, raw0...)
		raw = append(raw, lx.src[lx.i])
		val = append(val, lx.src[lx.i])
		t.at = append(t.at, lx.pos)
		lx.advance()
		t.end = lx.pos
	}
	for lx.i < len(lx.src) {
		c := lx.src[lx.i]
		switch {
		case isBlank(c) || c == '\n' || c == '#':
			t.val, t.raw = string(val), string(raw)
			return t, nil
		case c == '\\':
			if lx.continuation() {
				if lx.i+1 < len(lx.src) && lx.src[lx.i+1] == '\n' {
					lx.skipContinuation() // joins the word with the next line, as in sh
					continue
				}
				t.val, t.raw = string(val), string(raw)
				return t, nil // the caller continues the line
			}
			lx.advance()
			take('\\')
		case c == '"' || c == '\'':
			t.quoted = true
			if err := lx.quoted(c, &val, &raw, &t); err != nil {
				return t, err
			}
		default:
			take()
		}
	}
	t.val, t.raw = string(val), string(raw)
	return t, nil
}

// quoted reads a quoted part of a word, which must close on its line. In double quotes a
// backslash escapes ", \, $ and ` and continues the line before a newline, as in sh.
func (lx *lexer) quoted(q byte, val, raw *[]byte, t *token) *ConfigError {
	start := lx.pos
	*raw = append(*raw, q)
	lx.advance()
	for {
		if lx.i >= len(lx.src) || lx.src[lx.i] == '\n' {
			return &ConfigError{File: lx.file, Line: start.line, Col: start.col,
				Msg: "unterminated quote: no closing " + string(q) + " on this line"}
		}
		c := lx.src[lx.i]
		if c == q {
			*raw = append(*raw, q)
			lx.advance()
			t.end = lx.pos
			return nil
		}
		if q == '"' && c == '\\' && lx.i+1 < len(lx.src) {
			n := lx.src[lx.i+1]
			if n == '\r' && lx.i+2 < len(lx.src) && lx.src[lx.i+2] == '\n' {
				lx.advance() // a CRLF file
				n = '\n'
			}
			switch n {
			case '\n':
				lx.advance()
				lx.advance()
				continue
			case '"', '\\', '$', '`':
				*raw = append(*raw, c)
				lx.advance()
				c = n
			}
		}
		*raw = append(*raw, c)
		*val = append(*val, c)
		t.at = append(t.at, lx.pos)
		lx.advance()
	}
}
