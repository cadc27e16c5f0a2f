package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"

	"github.com/xsyn-project/xsyn/internal/protect"
	"github.com/xsyn-project/xsyn/loader"
	"github.com/xsyn-project/xsyn/spec"
)

const statusHelp = `Shows, for IFACE or every protected interface of this network namespace: the mode (native or
generic XDP, or netfilter-only), what holds the program attached, the protected services with
their SYN-ACK options, and the XDP counters by family. Reads the kernel's state only; changes
nothing. The --json output is stable; its fields are documented in docs/status-json.md.

Examples:
  xsyn status
  xsyn status eth0 --json
`

func runStatus(args []string, stdout, _ io.Writer) error {
	fs := newFlags("status", "status [IFACE] [--json]", statusHelp, stdout)
	asJSON := fs.Bool("json", false, "print JSON (stable format)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 1 {
		return usagef("at most one interface, got %d", len(pos))
	}
	iface := ""
	if len(pos) == 1 {
		iface = pos[0]
	}
	if err := requireRoot(); err != nil {
		return err
	}
	p, err := protect.New()
	if err != nil {
		return err
	}
	sts, err := p.Statuses(iface)
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(stdout, sts)
	}
	if len(sts) == 0 {
		fmt.Fprintln(stdout, "no interface is protected by xsyn in this network namespace")
		return nil
	}
	for i, st := range sts {
		if i > 0 {
			fmt.Fprintln(stdout)
		}
		writeText(stdout, st)
	}
	return nil
}

func describeMode(mode string, holder loader.Holder, dir string) string {
	switch {
	case mode == protect.ModeNetfilterOnly:
		return "netfilter-only: SYNPROXY rules without the XDP fast path"
	case holder == loader.HolderLink && dir != "":
		return fmt.Sprintf("%s XDP; held by a bpf link pinned in %s", mode, dir)
	case holder == loader.HolderLink:
		return fmt.Sprintf("%s XDP; held by a bpf link pinned outside this mount namespace", mode)
	default:
		return fmt.Sprintf("%s XDP; held by the interface through netlink, no bpffs mounted here", mode)
	}
}

// printServices shows what the SYN-ACK offers: without timestamps there is nowhere to keep the
// client's window scale, SACK or ECN in the cookie, so none of them is offered (shown as -).
func printServices(w io.Writer, svcs []spec.Service) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  FAMILY\tDESTINATION\tPORT\tMSS\tWSCALE\tSACK\tTIMESTAMPS\tECN\tTTL")
	for _, s := range svcs {
		o := s.Options
		wscale, sack, ecn := strconv.Itoa(int(o.WScale)), onOff(o.SACK), onOff(o.ECN)
		if !o.Timestamps {
			wscale, sack, ecn = "-", "-", "-"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\t%d\n", s.Family, s.Dst, s.Port, o.MSS, wscale, sack, onOff(o.Timestamps), ecn, s.TTL)
	}
	tw.Flush()
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

func writeText(w io.Writer, st protect.Status) {
	fmt.Fprintf(w, "%s: %s\n", st.Iface, describeMode(st.Mode, st.Holder, st.StateDir))
	if st.ProgID != 0 {
		fmt.Fprintf(w, "  program id %d; netfilter rules %s\n", st.ProgID, map[bool]string{true: "installed", false: "MISSING (run attach again)"}[st.Rules])
	}
	if len(st.Services) > 0 {
		printServices(w, st.Services)
	}
	if st.Counters == nil {
		return
	}
	v4, v6, other := loader.Fields(st.Counters.IPv4), loader.Fields(st.Counters.IPv6), loader.Fields(st.Counters.Other)
	var rows []string
	for i := range v4 {
		if v4[i].Value+v6[i].Value+other[i].Value != 0 {
			rows = append(rows, fmt.Sprintf("  %s\t%d\t%d\t%d\t", v4[i].Name, v4[i].Value, v6[i].Value, other[i].Value))
		}
	}
	if len(rows) == 0 {
		fmt.Fprintln(w, "  counters: no packets yet")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "  COUNTER\tIPV4\tIPV6\tOTHER\t")
	for _, r := range rows {
		fmt.Fprintln(tw, r)
	}
	tw.Flush()
}

// The --json format (docs/status-json.md). Fields are only ever added.
type statusJSON struct {
	Interfaces []ifaceJSON `json:"interfaces"`
}

type ifaceJSON struct {
	Interface      string                       `json:"interface"`
	Mode           string                       `json:"mode"`
	HeldBy         string                       `json:"held_by,omitempty"`
	StateDir       string                       `json:"state_dir,omitempty"`
	ProgramID      uint32                       `json:"program_id,omitempty"`
	NetfilterRules bool                         `json:"netfilter_rules"`
	Services       []serviceJSON                `json:"services"`
	Counters       map[string]map[string]uint64 `json:"counters,omitempty"`
}

type serviceJSON struct {
	Family      string `json:"family"`
	Destination string `json:"destination"`
	Port        uint16 `json:"port"`
	MSS         uint16 `json:"mss"`
	WScale      uint8  `json:"wscale"`
	SACK        bool   `json:"sack"`
	Timestamps  bool   `json:"timestamps"`
	ECN         bool   `json:"ecn"`
	TTL         uint8  `json:"ttl"`
}

func writeJSON(w io.Writer, sts []protect.Status) error {
	out := statusJSON{Interfaces: []ifaceJSON{}}
	for _, st := range sts {
		j := ifaceJSON{Interface: st.Iface, Mode: st.Mode, HeldBy: string(st.Holder), StateDir: st.StateDir,
			ProgramID: st.ProgID, NetfilterRules: st.Rules, Services: []serviceJSON{}}
		for _, s := range st.Services {
			o := s.Options
			j.Services = append(j.Services, serviceJSON{Family: s.Family.String(), Destination: s.Dst.String(),
				Port: s.Port, MSS: o.MSS, WScale: o.WScale, SACK: o.SACK, Timestamps: o.Timestamps, ECN: o.ECN, TTL: s.TTL})
		}
		if c := st.Counters; c != nil {
			j.Counters = map[string]map[string]uint64{}
			for fam, fc := range map[string]loader.Counters{"ipv4": c.IPv4, "ipv6": c.IPv6, "other": c.Other} {
				m := map[string]uint64{}
				for _, f := range loader.Fields(fc) {
					m[f.Name] = f.Value
				}
				j.Counters[fam] = m
			}
		}
		out.Interfaces = append(out.Interfaces, j)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}
