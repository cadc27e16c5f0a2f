package rules

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/xsyn-project/xsyn/spec"
)

// anyPort is the port alternative that matches every port.
var anyPort = [][]string{nil}

// maxMultiport is how many ports one multiport match holds (a range counts twice).
const maxMultiport = 15

func ifaceAlternatives(flag string, s spec.NameSet) ([][]string, error) {
	switch {
	case s.Any():
		return [][]string{nil}, nil
	case s.Not && len(s.Names) == 1:
		return [][]string{{"!", flag, s.Names[0]}}, nil
	case s.Not:
		return nil, fmt.Errorf("%w: %s not with several interfaces (%s); iptables negates one interface per rule", ErrUnsupported, flag, s)
	}
	var out [][]string
	for _, n := range s.Names {
		if err := checkIface(n); err != nil {
			return nil, err
		}
		out = append(out, []string{flag, n})
	}
	return out, nil
}

// portAlternatives renders a port set as alternative matches (to follow "-p tcp"): a single
// port or range with the tcp match, lists with multiport in chunks of what one match holds.
// Each alternative is marked by its first argument: "-m" for multiport, flag for tcp.
func portAlternatives(flag, multiFlag string, s spec.PortSet) [][]string {
	if s.Any() {
		return [][]string{nil}
	}
	if len(s.Ranges) == 1 {
		a := []string{flag, portRange(s.Ranges[0])}
		if s.Not {
			a = append([]string{"!"}, a...)
		}
		return [][]string{a}
	}
	ranges := s.Ranges
	not := s.Not
	if not && weight(ranges) > maxMultiport {
		ranges, not = s.Positive(), false
	}
	var out [][]string
	var chunk []string
	n := 0
	flush := func() {
		if len(chunk) == 0 {
			return
		}
		a := []string{"-m", "multiport"}
		if not {
			a = append(a, "!")
		}
		out = append(out, append(a, multiFlag, strings.Join(chunk, ",")))
		chunk, n = nil, 0
	}
	for _, r := range ranges {
		w := weight([]spec.PortRange{r})
		if n+w > maxMultiport {
			flush()
		}
		chunk = append(chunk, portRange(r))
		n += w
	}
	flush()
	return out
}

func weight(rs []spec.PortRange) int {
	n := 0
	for _, r := range rs {
		n++
		if r.Lo != r.Hi {
			n++
		}
	}
	return n
}

func portRange(r spec.PortRange) string {
	if r.Lo == r.Hi {
		return strconv.Itoa(int(r.Lo))
	}
	return fmt.Sprintf("%d:%d", r.Lo, r.Hi)
}

// tcp combines source and destination port alternatives behind "-p tcp": the tcp match's
// options (ports, flags) first, then multiport matches, then extra, the way iptables-save
// orders them.
func tcp(sport, dport [][]string, extra []string) [][]string {
	var flags []string
	if len(extra) >= 3 && extra[0] == "--tcp-flags" {
		flags, extra = extra[:3], extra[3:]
	}
	var out [][]string
	for _, s := range sport {
		for _, d := range dport {
			var tcpOpts, multi []string
			for _, alt := range [][]string{s, d} {
				if len(alt) > 0 && alt[0] == "-m" {
					multi = append(multi, alt...)
				} else {
					tcpOpts = append(tcpOpts, alt...)
				}
			}
			args := []string{"-p", "tcp"}
			if len(tcpOpts) > 0 || len(flags) > 0 {
				args = append(args, "-m", "tcp")
				args = append(args, tcpOpts...)
				args = append(args, flags...)
			}
			args = append(args, multi...)
			out = append(out, append(args, extra...))
		}
	}
	return out
}

// product concatenates one alternative of each group, for every combination, in order.
func product(groups ...[][]string) [][]string {
	out := [][]string{nil}
	for _, g := range groups {
		var next [][]string
		for _, prefix := range out {
			for _, alt := range g {
				r := append(append([]string{}, prefix...), alt...)
				next = append(next, r)
			}
		}
		out = next
	}
	return out
}
