package backend

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/xsyn-project/xsyn/spec"
)

// Where names a statement in messages: where it was written, or else its text.
func Where(st spec.Statement) string {
	if st.Pos.Line > 0 {
		return st.Pos.String()
	}
	return strconv.Quote(st.Origin())
}

// Changes lists what differs from one set of options to another, in the words of the
// configuration: "wscale 7 -> 9", "sack -> nosack".
func Changes(from, to spec.TCPOptions) []string {
	var out []string
	if from.MSS != to.MSS {
		out = append(out, fmt.Sprintf("mss %d -> %d", from.MSS, to.MSS))
	}
	if from.WScale != to.WScale {
		out = append(out, fmt.Sprintf("wscale %d -> %d", from.WScale, to.WScale))
	}
	for _, b := range []struct {
		name     string
		from, to bool
	}{{"sack", from.SACK, to.SACK}, {"timestamps", from.Timestamps, to.Timestamps}, {"ecn", from.ECN, to.ECN}} {
		if b.from != b.to {
			out = append(out, onWord(b.name, b.from)+" -> "+onWord(b.name, b.to))
		}
	}
	return out
}

func onWord(name string, on bool) string {
	if on {
		return name
	}
	return "no" + name
}

// ConfigWords is how to write options `to` where a statement has `from`, as configuration
// words: "wscale 9 nosack".
func ConfigWords(from, to spec.TCPOptions) string {
	var out []string
	if from.MSS != to.MSS {
		out = append(out, "mss "+strconv.Itoa(int(to.MSS)))
	}
	if from.WScale != to.WScale {
		out = append(out, "wscale "+strconv.Itoa(int(to.WScale)))
	}
	for _, b := range []struct {
		name     string
		from, to bool
	}{{"sack", from.SACK, to.SACK}, {"timestamps", from.Timestamps, to.Timestamps}, {"ecn", from.ECN, to.ECN}} {
		if b.from != b.to {
			out = append(out, onWord(b.name, b.to))
		}
	}
	return strings.Join(out, " ")
}

// FlagWords is ConfigWords for the flag form: "--wscale 9 --no-sack".
func FlagWords(from, to spec.TCPOptions) string {
	var out []string
	if from.MSS != to.MSS {
		out = append(out, "--mss "+strconv.Itoa(int(to.MSS)))
	}
	if from.WScale != to.WScale {
		out = append(out, "--wscale "+strconv.Itoa(int(to.WScale)))
	}
	for _, b := range []struct {
		flag     string // the flag that turns it on (on: true) or off
		on       bool
		from, to bool
	}{{"--no-sack", false, from.SACK, to.SACK}, {"--no-timestamps", false, from.Timestamps, to.Timestamps}, {"--ecn", true, from.ECN, to.ECN}} {
		switch {
		case b.from == b.to:
		case b.to == b.on:
			out = append(out, b.flag)
		default:
			out = append(out, "without "+b.flag)
		}
	}
	return strings.Join(out, " ")
}
