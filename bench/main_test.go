package main

import (
	"io"
	"math"
	"slices"
	"testing"
	"time"
)

func TestParseFlagsDefaults(t *testing.T) {
	c, err := parseFlags(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.scenarios, []string{scenarioFlood, scenarioAck, scenarioMix, scenarioLegit, scenarioEstablished}) {
		t.Errorf("scenarios %v, want all five", c.scenarios)
	}
	if c.rate != 0 || c.ackShare != 50 || !slices.Equal(c.legitLevels, []int{0, 10, 25, 50, 100}) || c.legitRate != 200 || !slices.Equal(c.legitFamilies, []family{4}) {
		t.Errorf("rate %v, ack share %d, legit levels %v, legit rate %d, legit families %v", c.rate, c.ackShare, c.legitLevels, c.legitRate, c.legitFamilies)
	}
	if !slices.Equal(c.modes, allModes) || !slices.Equal(c.families, []family{4, 6}) || !slices.Equal(c.streamFamilies, []family{4}) {
		t.Errorf("modes %v, families %v, stream families %v", c.modes, c.families, c.streamFamilies)
	}
	if c.duration != 5*time.Second || c.streamDuration != 2*time.Second || c.rounds != 3 || c.streamWScale != -1 {
		t.Errorf("duration %v, stream duration %v, rounds %d, stream wscale %d", c.duration, c.streamDuration, c.rounds, c.streamWScale)
	}
}

func TestParseFlags(t *testing.T) {
	for _, tc := range []struct {
		args  []string
		check func(config) bool
	}{
		{[]string{"-scenario", "established"}, func(c config) bool { return slices.Equal(c.scenarios, []string{scenarioEstablished}) }},
		{[]string{"-scenario", "established, flood"}, func(c config) bool {
			return slices.Equal(c.scenarios, []string{scenarioEstablished, scenarioFlood})
		}},
		{[]string{"-stream-family", "both", "-family", "6"}, func(c config) bool {
			return slices.Equal(c.streamFamilies, []family{4, 6}) && slices.Equal(c.families, []family{6})
		}},
		{[]string{"-modes", "xsyn,drop"}, func(c config) bool { return slices.Equal(c.modes, []string{modeXsyn, modeDrop}) }},
		{[]string{"-modes", "none,xsyn-generic", "-rate", "250000"}, func(c config) bool {
			return slices.Equal(c.modes, []string{modeNone, modeGeneric}) && c.rate == 250000
		}},
		{[]string{"-scenario", "legit", "-legit-levels", "100, 0,50", "-legit-family", "both", "-legit-rate", "50"}, func(c config) bool {
			return slices.Equal(c.legitLevels, []int{100, 0, 50}) && slices.Equal(c.legitFamilies, []family{4, 6}) && c.legitRate == 50
		}},
		{[]string{"-stream-wscale", "7", "-rounds", "5", "-stream-duration", "1s"}, func(c config) bool {
			return c.streamWScale == 7 && c.rounds == 5 && c.streamDuration == time.Second
		}},
	} {
		c, err := parseFlags(tc.args, io.Discard)
		if err != nil {
			t.Errorf("%q: %v", tc.args, err)
			continue
		}
		if !tc.check(c) {
			t.Errorf("%q: parsed into %+v", tc.args, c)
		}
	}
}

func TestParseFlagsErrors(t *testing.T) {
	for _, args := range [][]string{
		{"-scenario", "syn"},
		{"-scenario", ""},
		{"-modes", "xsyn,pass"}, // pass is an established mode, not a flood mode
		{"-stream-family", "5"},
		{"-rounds", "0"},
		{"-stream-duration", "0s"},
		{"-stream-wscale", "15"},
		{"-stream-wscale", "-2"},
		{"-rate", "-1"},
		{"-ack-share", "0"},
		{"-ack-share", "100"},
		{"-legit-levels", "0,101"},
		{"-legit-levels", "50,50"},
		{"-legit-levels", ""},
		{"-legit-rate", "0"},
		{"-legit-duration", "0s"},
		{"extra"},
	} {
		if _, err := parseFlags(args, io.Discard); err == nil {
			t.Errorf("%q: no error", args)
		}
	}
}

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want float64
	}{
		{nil, 0}, {[]float64{3}, 3}, {[]float64{5, 1, 3}, 3}, {[]float64{4, 1, 3, 2}, 2.5},
	} {
		if got := median(tc.in); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestSummarize(t *testing.T) {
	run := func(mode string, gbps, util float64) streamResult {
		return streamResult{Mode: mode, Family: "ipv4", Gbps: gbps, DUTNAPIUtil: util, ServerDataMs: -1}
	}
	rs := []streamResult{
		run(streamNone, 10, 0.5), run(streamPass, 6, 0.9), run(streamXsyn, 5, 0.9),
		run(streamNone, 8, 0.4), run(streamPass, 5, 0.8), run(streamXsyn, 4.5, 1),
		run(streamNone, 9, 0.6), run(streamPass, 7, 0.7), run(streamXsyn, 5.5, 0.95),
	}
	got := summarize(rs)
	if len(got) != 3 {
		t.Fatalf("%d summaries, want 3", len(got))
	}
	want := []struct {
		mode                         string
		median, spread, ofNone, util float64
	}{
		{streamNone, 9, 2.0 / 9, 1, 0.5},
		{streamPass, 6, 2.0 / 6, 6.0 / 9, 0.8},
		{streamXsyn, 5, 1.0 / 5, 5.0 / 9, 0.95},
	}
	near := func(a, b float64) bool { return math.Abs(a-b) < 1e-9 }
	for i, w := range want {
		s := got[i]
		if s.Mode != w.mode || !near(s.Median, w.median) || !near(s.Spread, w.spread) || !near(s.OfNone, w.ofNone) || !near(s.DUTUtil, w.util) {
			t.Errorf("summary %d: %+v, want %+v", i, s, w)
		}
		if !slices.Equal(s.Gbps, []float64{rs[i].Gbps, rs[i+3].Gbps, rs[i+6].Gbps}) {
			t.Errorf("%s: rounds %v not in measured order", s.Mode, s.Gbps)
		}
	}
	if x := got[2]; !near(x.OfPass, 5.0/6) || x.ServerDataMs != -1 {
		t.Errorf("xsyn of pass %v, server data %v", x.OfPass, x.ServerDataMs)
	}
}
