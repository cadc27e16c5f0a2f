package main

import (
	"flag"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/xsyn-project/xsyn/spec"
)

// config is the parsed command line.
type config struct {
	scenarios      []string
	modes          []string
	duration       time.Duration
	rate           float64
	families       []family
	shapes         []shape
	ackShare       int
	legitDuration  time.Duration
	legitLevels    []int
	legitRate      int
	legitFamilies  []family
	streamDuration time.Duration
	rounds         int
	streamFamilies []family
	streamWScale   int
	listenerRates  []float64
	listenerDur    time.Duration
	out            string
	batch          uint32
	generator      string
	port           uint16
	genCPU         int
	dutCPU         int
	args           []string
}

const (
	maxDuration  = 5 * time.Minute
	maxRounds    = 99
	maxLegitRate = 2000
)

func parseFlags(args []string, stderr io.Writer) (config, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := config{genCPU: 0, dutCPU: 1, args: args}
	scenarios := fs.String("scenario", strings.Join(defaultScenarios, ","), "scenarios to run, in order: "+strings.Join(allScenarios, ", "))
	modes := fs.String("modes", strings.Join(allModes, ","), "DUT modes to measure, in order (each scenario runs those that apply to it)")
	fs.DurationVar(&c.duration, "duration", 5*time.Second, "flood time per run of flood, ack and mix (mode x family x shape)")
	fs.Float64Var(&c.rate, "rate", 0, "target flood rate of flood, ack and mix in frames per second; 0: as fast as the generator can")
	fam := fs.String("family", "both", "IP version of the floods: 4, 6 or both")
	shp := fs.String("shape", "both", "SYN shape: 54 (no options), 74 (Linux options: MSS, SACK_PERM, TS, NOP, WS) or both; sizes are IPv4's, IPv6 frames are 20 bytes longer")
	fs.IntVar(&c.ackShare, "ack-share", 50, "mix scenario: percentage of forged ACKs among the frames (the rest are option-less SYNs)")
	fs.DurationVar(&c.legitDuration, "legit-duration", 5*time.Second, "legit scenario: time over which the clients' connections start, per mode and flood level")
	levels := fs.String("legit-levels", "0,10,25,50,100", "legit scenario: flood rates in percent of the rig's maximum (the generator's rate against XDP_DROP); 100: as fast as the generator can in that mode")
	fs.IntVar(&c.legitRate, "legit-rate", 200, "legit scenario: new client connections per second")
	legitFam := fs.String("legit-family", "4", "legit scenario: IP version of the clients and the flood, 4, 6 or both")
	fs.DurationVar(&c.streamDuration, "stream-duration", 2*time.Second, "established scenario: measured time per stream, from its first byte")
	fs.IntVar(&c.streamWScale, "stream-wscale", -1, "established scenario: window scale xsyn and SYNPROXY offer; -1: the one the DUT's own stack offers")
	fs.IntVar(&c.rounds, "rounds", 3, "established scenario: streams per mode and family (the median is reported)")
	streamFam := fs.String("stream-family", "4", "established scenario: IP version of the stream, 4, 6 or both")
	listenerRates := fs.String("listener-rates", ratesString(listenerRatesDefault), "listener scenario: SYN rates of the steps, rising; 0 (last): as fast as the generator can")
	fs.DurationVar(&c.listenerDur, "listener-duration", 2*time.Second, "listener scenario: flood time per step")
	fs.StringVar(&c.out, "out", "bench/out/results.json", "JSON results file; report.md and the SVG plots go next to it")
	batch := fs.Uint("batch", 64, "frames per batch of the generator: per BPF_PROG_RUN flush (live) or per sendto (packet), 1-256")
	fs.StringVar(&c.generator, "generator", genAuto, "flood generator: live (BPF_PROG_RUN live frames), packet (AF_PACKET TX ring) or auto (live if the kernel runs it)")
	port := fs.Uint("port", 8080, "protected TCP port on the DUT")
	err := fs.Parse(args)
	if err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if c.scenarios, err = parseList("-scenario", *scenarios, allScenarios); err != nil {
		return c, err
	}
	if c.modes, err = parseList("-modes", *modes, allModes); err != nil {
		return c, err
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"-duration", c.duration}, {"-legit-duration", c.legitDuration}, {"-stream-duration", c.streamDuration}, {"-listener-duration", c.listenerDur}} {
		if d.v <= 0 || d.v > maxDuration {
			return c, fmt.Errorf("%s %v: want more than 0 and at most %v", d.name, d.v, maxDuration)
		}
	}
	if c.rate < 0 || math.IsNaN(c.rate) || math.IsInf(c.rate, 0) {
		return c, fmt.Errorf("-rate %v: want 0 (as fast as possible) or a rate in frames per second", c.rate)
	}
	if c.ackShare < 1 || c.ackShare > 99 {
		return c, fmt.Errorf("-ack-share %d: want 1-99 (percent)", c.ackShare)
	}
	if c.listenerRates, err = parseRates(*listenerRates); err != nil {
		return c, err
	}
	if c.legitLevels, err = parseLevels(*levels); err != nil {
		return c, err
	}
	if c.legitRate < 1 || c.legitRate > maxLegitRate {
		return c, fmt.Errorf("-legit-rate %d: want 1-%d connections per second", c.legitRate, maxLegitRate)
	}
	if c.streamWScale < -1 || c.streamWScale > spec.MaxWScale {
		return c, fmt.Errorf("-stream-wscale %d: want -1 (the DUT's) or 0-%d", c.streamWScale, spec.MaxWScale)
	}
	if c.rounds < 1 || c.rounds > maxRounds {
		return c, fmt.Errorf("-rounds %d: want 1-%d", c.rounds, maxRounds)
	}
	if c.families, err = parseFamily("-family", *fam); err != nil {
		return c, err
	}
	if c.legitFamilies, err = parseFamily("-legit-family", *legitFam); err != nil {
		return c, err
	}
	if c.streamFamilies, err = parseFamily("-stream-family", *streamFam); err != nil {
		return c, err
	}
	switch *shp {
	case "54":
		c.shapes = []shape{shapeBare}
	case "74":
		c.shapes = []shape{shapeLinux}
	case "both":
		c.shapes = []shape{shapeBare, shapeLinux}
	default:
		return c, fmt.Errorf("-shape %q: want 54, 74 or both", *shp)
	}
	if *batch < 1 || *batch > 256 {
		return c, fmt.Errorf("-batch %d: want 1-256", *batch)
	}
	c.batch = uint32(*batch)
	if !slices.Contains(generatorKinds, c.generator) {
		return c, fmt.Errorf("-generator %q: want %s", c.generator, strings.Join(generatorKinds, ", "))
	}
	if *port < 1 || *port > 65535 {
		return c, fmt.Errorf("-port %d: want 1-65535", *port)
	}
	c.port = uint16(*port)
	return c, nil
}

// parseLevels reads the legit scenario's flood levels: distinct percentages 0-100, run in the
// order given.
func parseLevels(v string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 0 || n > 100 {
			return nil, fmt.Errorf("-legit-levels: %q is not a percentage 0-100", f)
		}
		if slices.Contains(out, n) {
			return nil, fmt.Errorf("-legit-levels: %d twice", n)
		}
		out = append(out, n)
	}
	return out, nil
}

func parseFamily(name, value string) ([]family, error) {
	switch value {
	case "4":
		return []family{4}, nil
	case "6":
		return []family{6}, nil
	case "both":
		return []family{4, 6}, nil
	}
	return nil, fmt.Errorf("%s %q: want 4, 6 or both", name, value)
}

// parseList splits a comma-separated flag value and checks every element against allowed.
func parseList(name, value string, allowed []string) ([]string, error) {
	var out []string
	for _, v := range strings.Split(value, ",") {
		v = strings.TrimSpace(v)
		if !slices.Contains(allowed, v) {
			return nil, fmt.Errorf("%s: unknown %q (want some of %s)", name, v, strings.Join(allowed, ","))
		}
		out = append(out, v)
	}
	return out, nil
}
