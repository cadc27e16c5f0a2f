package rules

import (
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/xsyn-project/xsyn/spec"
)

// NFTRuleset reads the namespace's whole nftables ruleset as `nft list ruleset` prints it; ""
// when nftables is not there to ask.
type NFTRuleset func() (string, error)

// SystemNFT runs nft(8) in the caller's network namespace; without nft it returns "".
func SystemNFT() (string, error) {
	path, err := exec.LookPath("nft")
	if errors.Is(err, exec.ErrNotFound) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	out, err := exec.Command(path, "list", "ruleset").Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return "", fmt.Errorf("nft list ruleset: %w: %s", err, strings.TrimSpace(string(ee.Stderr)))
		}
		return "", fmt.Errorf("nft list ruleset: %w", err)
	}
	return string(out), nil
}

// MarkUsers lists the firewall's rules, outside xsyn's own chains, that match, set, save or
// restore any of the packet mark bits set.MarkMask (iptables: --mark, --set-xmark, --set-mark,
// --or-mark, --and-mark, --xor-mark, CONNMARK's --nfmask and --ctmask, --tproxy-mark; native
// nftables tables: meta mark and ct mark expressions), each as "FAMILY TABLE: RULE". Such a rule
// can give a packet xsyn's bits (which the loopback accept then trusts for a new SYN) or take
// SYNPROXY's SYN to the server off xsyn's path. A rule that names no mask uses every bit.
//
// XXX: nftables expressions are read by their text (`& MASK`, `and MASK`, `| V`, `or V`, `^ V`,
// `xor V`), not
// evaluated; a rule the reading does not understand counts as using every bit.
func (a *Applier) MarkUsers(set spec.Settings) ([]string, error) {
	var out []string
	for _, fam := range families {
		ipt, err := a.tables(fam)
		if err != nil {
			return nil, err
		}
		for _, table := range []string{TableRaw, TableMangle, TableNat, TableFilter} {
			chains, err := ipt.ListChains(table)
			if err != nil {
				return nil, fmt.Errorf("list %s %s chains: %w", fam, table, err)
			}
			for _, c := range chains {
				if strings.HasPrefix(c, ChainPrefix) {
					continue
				}
				lines, err := ipt.List(table, c)
				if err != nil {
					return nil, fmt.Errorf("list %s: %w", where(fam, table, c), err)
				}
				for _, l := range lines {
					if strings.HasPrefix(l, "-A ") && iptablesMarkBits(l)&set.MarkMask != 0 {
						out = append(out, fmt.Sprintf("%s %s: %s", fam, table, l))
					}
				}
			}
		}
	}
	if a.nft == nil {
		return out, nil
	}
	text, err := a.nft()
	if err != nil {
		return nil, fmt.Errorf("read the nftables ruleset: %w", err)
	}
	return append(out, nftMarkUsers(text, set.MarkMask)...), nil
}

// MarkWarning is what attach tells the user when MarkUsers finds rules: "" when there are none.
func (a *Applier) MarkWarning(set spec.Settings) (string, error) {
	users, err := a.MarkUsers(set)
	if err != nil || len(users) == 0 {
		return "", err
	}
	const show = 5
	more := ""
	if len(users) > show {
		more = fmt.Sprintf(" (and %d more)", len(users)-show)
		users = users[:show]
	}
	return fmt.Sprintf("the firewall already uses xsyn's mark bits %s: %s%s; such a rule can give other packets xsyn's mark "+
		"or take SYNPROXY's SYN to the server off xsyn's rules: choose bits nothing else uses with a `mark VALUE/MASK` line (docs/config.md#mark)",
		set.MarkString(), strings.Join(users, "; "), more), nil
}

// markFlags are the iptables options whose value is a mark or a mask, and how each names the
// bits it touches.
var markFlags = map[string]func(v, m uint32, hasMask bool) uint32{
	"--mark":        maskOrAll,
	"--set-mark":    func(v, m uint32, hasMask bool) uint32 { return maskOrAll(v, m, hasMask) | v },
	"--set-xmark":   func(v, m uint32, hasMask bool) uint32 { return maskOrAll(v, m, hasMask) | v },
	"--tproxy-mark": maskOrAll,
	"--or-mark":     func(v, _ uint32, _ bool) uint32 { return v },
	"--xor-mark":    func(v, _ uint32, _ bool) uint32 { return v },
	"--and-mark":    func(v, _ uint32, _ bool) uint32 { return ^v },
	"--nfmask":      func(v, _ uint32, _ bool) uint32 { return v },
	"--ctmask":      func(v, _ uint32, _ bool) uint32 { return v },
	"--mask":        func(v, _ uint32, _ bool) uint32 { return v },
}

func maskOrAll(_, m uint32, hasMask bool) uint32 {
	if hasMask {
		return m
	}
	return ^uint32(0)
}

// iptablesMarkBits is the union of the mark bits an iptables -S line matches or changes. A
// value that cannot be read counts as every bit.
func iptablesMarkBits(line string) uint32 {
	args, err := SplitArgs(line)
	if err != nil {
		return 0
	}
	var bits uint32
	for i := 0; i+1 < len(args); i++ {
		f, ok := markFlags[args[i]]
		if !ok {
			continue
		}
		vs, ms, hasMask := strings.Cut(args[i+1], "/")
		v, err1 := strconv.ParseUint(vs, 0, 32)
		m, err2 := strconv.ParseUint(ms, 0, 32)
		if err1 != nil || hasMask && err2 != nil {
			return ^uint32(0)
		}
		bits |= f(uint32(v), uint32(m), hasMask)
	}
	return bits
}

// iptablesTables are the nftables tables iptables-nft manages: MarkUsers reads them through
// iptables already.
var iptablesTables = []string{"filter", "raw", "mangle", "nat", "security"}

var (
	nftTable = regexp.MustCompile(`^table (\S+) (\S+) \{`)
	nftChain = regexp.MustCompile(`^chain (\S+) \{`)
	nftMark  = regexp.MustCompile(`\b(meta mark|ct mark|mark set|mark (and|or|xor))\b`)
	nftOp    = regexp.MustCompile(`(&|\||\^|\band|\bor|\bxor)\s+(0x[0-9a-fA-F]+|\d+)`)
)

// nftMarkUsers lists the rules of an `nft list ruleset` text, outside iptables-nft's tables and
// xsyn's chains, whose mark expressions touch bits of mask.
func nftMarkUsers(text string, mask uint32) []string {
	var out []string
	table, chain := "", ""
	for _, raw := range strings.Split(text, "\n") {
		l := strings.TrimSpace(raw)
		if m := nftTable.FindStringSubmatch(l); m != nil {
			table, chain = m[1]+" "+m[2], ""
			if (m[1] == "ip" || m[1] == "ip6") && slices.Contains(iptablesTables, m[2]) {
				table = "" // iptables-nft's: read through iptables
			}
			continue
		}
		if m := nftChain.FindStringSubmatch(l); m != nil {
			chain = m[1]
			continue
		}
		if table == "" || strings.HasPrefix(chain, ChainPrefix) || !nftMark.MatchString(l) {
			continue
		}
		if nftMarkBits(l)&mask != 0 {
			out = append(out, fmt.Sprintf("nft %s %s: %s", table, chain, l))
		}
	}
	return out
}

// nftMarkBits reads the bits an nftables rule's mark expression touches: a match with a mask
// (`meta mark & 0xff00 == 0x100`) those of the mask; a change by `and M` the bits M clears and
// by `or`/`|`/`xor`/`^ V` those of V; anything else (a whole value compared or set, a mark copied) all.
func nftMarkBits(l string) uint32 {
	set := strings.Contains(l, " set ")
	var bits uint32
	seen := false
	for _, m := range nftOp.FindAllStringSubmatch(l, -1) {
		v, err := strconv.ParseUint(m[2], 0, 32)
		if err != nil {
			return ^uint32(0)
		}
		seen = true
		switch op := strings.TrimSpace(m[1]); {
		case (op == "&" || op == "and") && set:
			bits |= ^uint32(v)
		case op == "&" || op == "and":
			bits |= uint32(v)
		default:
			bits |= uint32(v)
		}
	}
	if !seen {
		return ^uint32(0)
	}
	return bits
}
