// Command bench floods xsyn with SYNs on a veth lab and measures how fast it answers, next to a
// reflect ceiling, a drop ceiling and netfilter's SYNPROXY alone; and it measures what xsyn costs
// an established bulk TCP stream to the port it protects. See bench/README.md.
//
//	go run ./bench [-scenario flood,established] [-duration 5s] [-family 4|6|both] [-shape 54|74|both]
//	    [-modes drop,reflect,xsyn,synproxy] [-stream-duration 2s] [-stream-family 4|6|both] [-rounds 3]
//	    [-stream-wscale -1]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/xsyn-project/xsyn/spec"
)

func main() { os.Exit(run(os.Args, os.Stdout, os.Stderr)) }

// config is the parsed command line.
type config struct {
	scenarios      []string
	duration       time.Duration
	streamDuration time.Duration
	rounds         int
	streamFamilies []family
	streamWScale   int
	families       []family
	shapes         []shape
	modes          []string
	out            string
	batch          uint32
	port           uint16
	genCPU         int
	dutCPU         int
}

// Scenarios.
const (
	scenarioFlood       = "flood"       // SYN flood against every mode, family and shape
	scenarioEstablished = "established" // one bulk TCP stream through the protected port
)

var allScenarios = []string{scenarioFlood, scenarioEstablished}

const (
	maxDuration = 5 * time.Minute
	maxRounds   = 99
)

func parseFlags(args []string, stderr io.Writer) (config, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := config{genCPU: 0, dutCPU: 1}
	scenarios := fs.String("scenario", strings.Join(allScenarios, ","), "scenarios to run, in order: flood, established")
	fs.DurationVar(&c.duration, "duration", 5*time.Second, "flood time per run (mode x family x shape)")
	fs.DurationVar(&c.streamDuration, "stream-duration", 2*time.Second, "established scenario: measured time per stream, from its first byte")
	fs.IntVar(&c.streamWScale, "stream-wscale", -1, "established scenario: window scale xsyn and SYNPROXY offer; -1: the one the DUT's own stack offers")
	fs.IntVar(&c.rounds, "rounds", 3, "established scenario: streams per mode and family (the median is reported)")
	fam := fs.String("family", "both", "IP version of the flood: 4, 6 or both")
	streamFam := fs.String("stream-family", "4", "established scenario: IP version of the stream, 4, 6 or both")
	shp := fs.String("shape", "both", "SYN shape: 54 (no options), 74 (Linux options: MSS, SACK_PERM, TS, NOP, WS) or both; sizes are IPv4's, IPv6 frames are 20 bytes longer")
	modes := fs.String("modes", strings.Join(allModes, ","), "DUT modes to measure, in order")
	fs.StringVar(&c.out, "out", "bench/out/results.json", "JSON results file")
	batch := fs.Uint("batch", 64, "live-frame batch size of the generator (1-256)")
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
	if c.duration <= 0 || c.duration > maxDuration {
		return c, fmt.Errorf("-duration %v: want more than 0 and at most %v", c.duration, maxDuration)
	}
	if c.streamDuration <= 0 || c.streamDuration > maxDuration {
		return c, fmt.Errorf("-stream-duration %v: want more than 0 and at most %v", c.streamDuration, maxDuration)
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
	if c.modes, err = parseList("-modes", *modes, allModes); err != nil {
		return c, err
	}
	if *batch < 1 || *batch > 256 {
		return c, fmt.Errorf("-batch %d: want 1-256", *batch)
	}
	c.batch = uint32(*batch)
	if *port < 1 || *port > 65535 {
		return c, fmt.Errorf("-port %d: want 1-65535", *port)
	}
	c.port = uint16(*port)
	return c, nil
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

func run(args []string, stdout, stderr io.Writer) int {
	c, err := parseFlags(args[1:], stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		return 2
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(stderr, "bench: must run as root (network namespaces, XDP, BPF_PROG_RUN, iptables)")
		return 1
	}
	if n := runtime.NumCPU(); n < 2 {
		fmt.Fprintf(stderr, "bench: needs 2 CPUs (generator and DUT apart), have %d\n", n)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	rep, err := benchmark(ctx, c, stderr)
	if len(rep.Results) > 0 || len(rep.Established) > 0 {
		fmt.Fprintln(stdout, rep.Cores)
		fmt.Fprintf(stdout, "kernel %s, %d CPUs, load average at start %s\n", rep.Kernel, rep.CPUs, rep.LoadAvg)
		if len(rep.Results) > 0 {
			fmt.Fprintln(stdout)
			printTable(stdout, rep.Results)
			printTargets(stdout, rep.Results)
		}
		if len(rep.Established) > 0 {
			fmt.Fprintln(stdout)
			printStreams(stdout, rep.Established)
		}
		if werr := writeJSON(c.out, rep); werr != nil {
			fmt.Fprintln(stderr, "bench: write results:", werr)
			return 1
		}
		fmt.Fprintln(stdout, "\nresults written to", c.out)
	}
	if err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		return 1
	}
	if ctx.Err() != nil {
		fmt.Fprintln(stderr, "bench: interrupted; partial results above")
		return 130
	}
	return 0
}

// benchmark builds the rig, runs the scenarios, and removes the rig.
func benchmark(ctx context.Context, c config, log io.Writer) (rep report, err error) {
	var uts unix.Utsname
	unix.Uname(&uts)
	rep = report{
		Started: time.Now().UTC(), Kernel: unix.ByteSliceToString(uts.Release[:]), CPUs: runtime.NumCPU(),
		GenCPU: c.genCPU, DUTCPU: c.dutCPU, Duration: c.duration.String(), BatchSize: c.batch,
		Cores: fmt.Sprintf("cores: CPU %d: generator (BPF_PROG_RUN live frames, SCHED_FIFO %d) or stream sender (SCHED_FIFO %d), attacker's NAPI thread (sink, SCHED_FIFO %d), rest of this process; "+
			"CPU %d: the DUT's NAPI thread (SCHED_FIFO %d: driver, XDP, and in synproxy mode the stack), alone but for the stream receiver (SCHED_FIFO %d).",
			c.genCPU, prioGenerator, prioGenerator, prioNAPI, c.dutCPU, prioNAPI, prioGenerator),
	}
	if slices.Contains(c.scenarios, scenarioEstablished) {
		rep.StreamDuration, rep.Rounds = c.streamDuration.String(), c.rounds
	}
	// Other work on the machine shows in the results (less offered load, more ring drops).
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		rep.LoadAvg = strings.TrimSpace(string(b))
	}
	s, err := spec.Simple{Ports: []uint16{c.port}, WScale: -1}.Build()
	if err != nil {
		return rep, err
	}
	// Everything of ours, including the iptables children, stays off the DUT's CPU.
	if err := pinProcess(c.genCPU); err != nil {
		return rep, err
	}
	// run_time_ns and run_cnt of every BPF program, for as long as this fd is open (the same
	// switch as sysctl kernel.bpf_stats_enabled, but released by the kernel even if we die).
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		return rep, fmt.Errorf("enable BPF run-time statistics: %w", err)
	}
	defer stats.Close()

	fmt.Fprintln(log, "bench: building the lab")
	r, err := newRig(c.genCPU, c.dutCPU, c.port)
	if err != nil {
		return rep, fmt.Errorf("build the lab: %w", err)
	}
	defer func() {
		if cerr := r.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("remove the lab: %w", cerr))
		}
	}()
	for _, sc := range c.scenarios {
		if ctx.Err() != nil {
			break
		}
		switch sc {
		case scenarioFlood:
			err = r.flood(ctx, c, s, &rep, log)
		case scenarioEstablished:
			err = r.established(ctx, c, &rep, log)
			rep.EstablishedSummary = summarize(rep.Established)
		}
		if err != nil {
			return rep, fmt.Errorf("%s: %w", sc, err)
		}
	}
	return rep, nil
}

// flood measures every mode, family and shape under a SYN flood.
func (r *rig) flood(ctx context.Context, c config, s spec.Spec, rep *report, log io.Writer) error {
	for _, mode := range c.modes {
		if ctx.Err() != nil {
			break
		}
		res, err := r.measureMode(ctx, c, mode, s, log)
		rep.Results = append(rep.Results, res...)
		if err != nil {
			return fmt.Errorf("%s: %w", mode, err)
		}
	}
	return nil
}

func (r *rig) measureMode(ctx context.Context, c config, mode string, s spec.Spec, log io.Writer) (out []result, err error) {
	d, err := r.deploy(mode, s)
	if err != nil {
		return nil, err
	}
	defer func() {
		if terr := d.teardown(); terr != nil {
			err = errors.Join(err, fmt.Errorf("tear down: %w", terr))
		}
	}()
	if err := r.pinNAPI(); err != nil {
		return nil, err
	}
	for _, f := range c.families {
		for _, sh := range c.shapes {
			if ctx.Err() != nil {
				return out, nil
			}
			res, err := r.measure(ctx, d, c, mode, f, sh)
			if err != nil {
				return out, fmt.Errorf("%s %s: %w", f, sh, err)
			}
			if ctx.Err() != nil {
				return out, nil // cut short: not comparable with the others
			}
			fmt.Fprintf(log, "bench: %-8s %s %3d B: offered %s Mpps, SYN-ACK %s Mpps\n", mode, f, res.FrameBytes, mpps(res.OfferedPPS), mpps(res.SynAckPPS))
			out = append(out, res)
		}
	}
	return out, nil
}

func (r *rig) measure(ctx context.Context, d *deployment, c config, mode string, f family, sh shape) (result, error) {
	dst := dutAddr4.Addr()
	if f == 6 {
		dst = dutAddr6.Addr()
	}
	frame := synFrame(f, sh, r.atkMAC, r.dutMAC, dst, c.port)
	before, err := r.sample(d)
	if err != nil {
		return result{}, err
	}
	elapsed, err := r.generate(ctx, frame, c.batch, c.duration)
	if err != nil {
		return result{}, err
	}
	after, err := r.settle(d, time.Second)
	if err != nil {
		return result{}, err
	}
	ct, err := r.conntrackCount()
	if err != nil {
		return result{}, err
	}
	return newResult(mode, f, sh, len(frame), elapsed, before, after, ct), nil
}
