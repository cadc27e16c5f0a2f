package main

// Two plots, written by hand as SVG: the SYN-ACK rate per mode (bars, grouped by family and
// frame), and the legit clients' p99 connect latency against the flood's offered rate (a line per
// mode, log scale).

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"math"
	"slices"
	"strings"
)

// modeColours are the modes' colours in both plots.
var modeColours = map[string]string{
	modeNone:     "#7f7f7f",
	modeDrop:     "#8172b3",
	modeReflect:  "#4c72b0",
	modeXsyn:     "#dd8452",
	modeXsynNF:   "#937860",
	modeGeneric:  "#c44e52",
	modeSynproxy: "#55a868",
}

func esc(s string) string {
	var b strings.Builder
	xml.EscapeText(&b, []byte(s))
	return b.String()
}

// niceStep is a round step (1, 2 or 5 times a power of ten) that cuts span into about n parts.
func niceStep(span float64, n int) float64 {
	if span <= 0 {
		return 1
	}
	raw := span / float64(n)
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= raw {
			return m * p
		}
	}
	return 10 * p
}

// svgDoc starts an SVG document of w x h with a white background and a title.
func svgDoc(b *bytes.Buffer, w, h int, title string) {
	fmt.Fprintf(b, `<?xml version="1.0" encoding="UTF-8"?>`+"\n")
	fmt.Fprintf(b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", w, h, w, h)
	fmt.Fprintf(b, `<rect width="%d" height="%d" fill="white"/>`+"\n", w, h)
	fmt.Fprintf(b, `<text x="%d" y="24" text-anchor="middle" font-size="15" font-weight="bold">%s</text>`+"\n", w/2, esc(title))
}

// legend writes one coloured box and name per entry, in a row from (x, y).
func legend(b *bytes.Buffer, x, y float64, names []string) {
	for _, n := range names {
		fmt.Fprintf(b, `<rect x="%.1f" y="%.1f" width="12" height="12" fill="%s"/>`+"\n", x, y-10, modeColours[n])
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f">%s</text>`+"\n", x+16, y, esc(n))
		x += 16 + 7*float64(len(n)) + 16
	}
}

// synackPlot draws the SYN flood's SYN-ACK rate per mode; nil without SYN flood results.
func synackPlot(results []result) []byte {
	rs := floodResults(results, scenarioFlood)
	var modes []string
	for _, m := range allModes {
		for _, r := range rs {
			if r.Mode == m && m != modeDrop && !slices.Contains(modes, m) {
				modes = append(modes, m)
			}
		}
	}
	gs := groups(rs)
	if len(modes) == 0 || len(gs) == 0 {
		return nil
	}
	const (
		w, h                     = 900, 480
		left, right, top, bottom = 70.0, 20.0, 70.0, 70.0
	)
	var top1 float64
	for _, r := range rs {
		top1 = math.Max(top1, r.SynAckPPS/1e6)
	}
	step := niceStep(top1, 5)
	ymax := math.Max(step, math.Ceil(top1*1.12/step)*step)
	pw, ph := w-left-right, h-top-bottom
	y := func(v float64) float64 { return top + ph*(1-v/ymax) }

	var b bytes.Buffer
	svgDoc(&b, w, h, "SYN flood: SYN-ACKs per second returned to the attacker, per mode")
	legend(&b, left, 48, modes)
	// Grid and y axis.
	for v := 0.0; v <= ymax+step/2; v += step {
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#dddddd"/>`+"\n", left, y(v), left+pw, y(v))
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="end">%s</text>`+"\n", left-6, y(v)+4, trimFloat(v))
	}
	fmt.Fprintf(&b, `<text transform="translate(18 %.1f) rotate(-90)" text-anchor="middle">SYN-ACK rate (Mpps)</text>`+"\n", top+ph/2)
	fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="black"/>`+"\n", left, top, left, top+ph)
	fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="black"/>`+"\n", left, top+ph, left+pw, top+ph)
	// Bars.
	gw := pw / float64(len(gs))
	bw := gw * 0.8 / float64(len(modes))
	for gi, g := range gs {
		x0 := left + float64(gi)*gw + gw*0.1
		for mi, m := range modes {
			r := findResult(rs, scenarioFlood, m, g[0], g[1])
			if r == nil {
				continue
			}
			v := r.SynAckPPS / 1e6
			x := x0 + float64(mi)*bw
			fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s %s %s: %.3f Mpps</title></rect>`+"\n",
				x+1, y(v), bw-2, top+ph-y(v), modeColours[m], esc(m), g[0], g[1], v)
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle" font-size="10">%.2f</text>`+"\n", x+bw/2, y(v)-4, v)
		}
		cx := left + (float64(gi)+0.5)*gw
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", cx, top+ph+18, esc(fmt.Sprintf("%s, %s SYNs", g[0], g[1])))
		if r := findResult(rs, scenarioFlood, modeDrop, g[0], g[1]); r != nil {
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle" fill="#555555">(drop handled %.2f)</text>`+"\n", cx, top+ph+33, r.DUTRxPPS/1e6)
		}
	}
	fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle" fill="#555555">family and SYN shape; the drop ceiling answers nothing (the rate it handled in brackets, Mpps)</text>`+"\n", left+pw/2, float64(h)-10)
	b.WriteString("</svg>\n")
	return b.Bytes()
}

func trimFloat(v float64) string {
	s := fmt.Sprintf("%.3f", v)
	s = strings.TrimRight(s, "0")
	return strings.TrimSuffix(s, ".")
}

// legitPlot draws the legit clients' p99 connect latency against the flood's offered rate, one
// line per mode (and family); nil without legit results. Points where not every client
// connected carry the share that did.
func legitPlot(ls []legitResult) []byte {
	if len(ls) == 0 {
		return nil
	}
	type series struct {
		mode, family string
		pts          []legitResult
	}
	var ss []series
	for _, l := range ls {
		i := slices.IndexFunc(ss, func(s series) bool { return s.mode == l.Mode && s.family == l.Family })
		if i < 0 {
			ss = append(ss, series{mode: l.Mode, family: l.Family})
			i = len(ss) - 1
		}
		ss[i].pts = append(ss[i].pts, l)
	}
	for i := range ss {
		slices.SortStableFunc(ss[i].pts, func(a, b legitResult) int {
			switch {
			case a.OfferedPPS() < b.OfferedPPS():
				return -1
			case a.OfferedPPS() > b.OfferedPPS():
				return 1
			}
			return 0
		})
	}
	const (
		w, h                     = 900, 500
		left, right, top, bottom = 80.0, 30.0, 70.0, 60.0
	)
	xmaxv, lo, hi := 0.0, 2.0, 2.0 // the 2 ms target is always in range
	for _, l := range ls {
		xmaxv = math.Max(xmaxv, l.OfferedPPS()/1e6)
		if c := l.Clients.ConnectMs; c.N > 0 {
			lo, hi = math.Min(lo, c.P99), math.Max(hi, c.P99)
		}
	}
	xstep := niceStep(xmaxv, 6)
	xmax := math.Max(xstep, math.Ceil(xmaxv*1.05/xstep)*xstep)
	dlo, dhi := math.Floor(math.Log10(lo)), math.Ceil(math.Log10(hi))
	if dhi <= dlo {
		dhi = dlo + 1
	}
	pw, ph := w-left-right, h-top-bottom
	x := func(v float64) float64 { return left + pw*v/xmax }
	y := func(ms float64) float64 { return top + ph*(1-(math.Log10(ms)-dlo)/(dhi-dlo)) }

	var b bytes.Buffer
	svgDoc(&b, w, h, "Legit clients under a SYN flood: p99 connect latency")
	var names []string
	for _, s := range ss {
		if !slices.Contains(names, s.mode) {
			names = append(names, s.mode)
		}
	}
	legend(&b, left, 48, names)
	for d := dlo; d <= dhi; d++ {
		v := math.Pow(10, d)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#dddddd"/>`+"\n", left, y(v), left+pw, y(v))
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="end">%s</text>`+"\n", left-6, y(v)+4, trimFloat(v))
	}
	for v := 0.0; v <= xmax+xstep/2; v += xstep {
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#dddddd"/>`+"\n", x(v), top, x(v), top+ph)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", x(v), top+ph+16, trimFloat(v))
	}
	fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="black"/>`+"\n", left, top, left, top+ph)
	fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="black"/>`+"\n", left, top+ph, left+pw, top+ph)
	fmt.Fprintf(&b, `<text transform="translate(20 %.1f) rotate(-90)" text-anchor="middle">p99 connect latency (ms, log scale)</text>`+"\n", top+ph/2)
	fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">offered flood rate (Mpps, measured)</text>`+"\n", left+pw/2, top+ph+40)
	// The target.
	fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="black" stroke-dasharray="6 4"/>`+"\n", left, y(2), left+pw, y(2))
	fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="end" fill="#333333">target: 2 ms</text>`+"\n", left+pw-4, y(2)-5)
	for _, s := range ss {
		dash := ""
		if s.family == "ipv6" {
			dash = ` stroke-dasharray="3 3"`
		}
		var pts []string
		for _, p := range s.pts {
			if p.Clients.ConnectMs.N > 0 {
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(p.OfferedPPS()/1e6), y(p.Clients.ConnectMs.P99)))
			}
		}
		col := modeColours[s.mode]
		fmt.Fprintf(&b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="2"%s/>`+"\n", strings.Join(pts, " "), col, dash)
		for _, p := range s.pts {
			c := p.Clients
			px := x(p.OfferedPPS() / 1e6)
			if c.ConnectMs.N == 0 {
				fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle" fill="%s" font-size="10">%s: none connected</text>`+"\n", px, top+12, col, esc(s.mode))
				continue
			}
			py := y(c.ConnectMs.P99)
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="4" fill="%s"><title>%s %s, flood %d%% (%.3f Mpps): p99 %.3f ms, %d/%d connected</title></circle>`+"\n",
				px, py, col, esc(s.mode), s.family, p.Level, p.OfferedPPS()/1e6, c.ConnectMs.P99, c.Connected, c.Attempted)
			if c.Connected < c.Attempted {
				fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" fill="%s" font-size="10">%s connected</text>`+"\n", px+6, py-6, col, pct(c.Success()))
			}
		}
	}
	if slices.ContainsFunc(ss, func(s series) bool { return s.family == "ipv6" }) {
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="end" fill="#555555">solid: IPv4, dotted: IPv6</text>`+"\n", left+pw, float64(h)-8)
	}
	b.WriteString("</svg>\n")
	return b.Bytes()
}
