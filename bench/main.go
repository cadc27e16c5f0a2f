// Command bench floods xsyn with SYNs and forged ACKs on a veth lab and measures how fast it
// answers and drops them, next to the kernel's own listener, a reflect ceiling, a drop ceiling,
// xsyn in generic XDP mode and netfilter's SYNPROXY alone; how legit clients fare under the
// flood; and what xsyn costs an established bulk TCP stream to the port it protects. It writes
// JSON, a Markdown report and two SVG plots. See bench/README.md.
//
//	go run ./bench [-scenario flood,ack,mix,legit,established] [-modes none,drop,reflect,xsyn,xsyn-generic,synproxy]
//	    [-duration 5s] [-rate 0] [-family 4|6|both] [-shape 54|74|both] [-ack-share 50]
//	    [-legit-duration 5s] [-legit-levels 0,10,25,50,100] [-legit-rate 200] [-legit-family 4|6|both]
//	    [-stream-duration 2s] [-stream-family 4|6|both] [-rounds 3] [-stream-wscale -1]
//	    [-listener-rates 500,1000,...,0] [-listener-duration 2s] [-out bench/out/results.json]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
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

// Scenarios.
const (
	scenarioFlood       = "flood"       // SYN flood against every mode, family and shape
	scenarioAck         = "ack"         // forged-ACK flood
	scenarioMix         = "mix"         // SYNs and forged ACKs mixed
	scenarioLegit       = "legit"       // legit clients connecting under a SYN flood
	scenarioEstablished = "established" // one bulk TCP stream through the protected port
)

var allScenarios = []string{scenarioFlood, scenarioAck, scenarioMix, scenarioLegit, scenarioEstablished, scenarioListener}

// defaultScenarios run without -scenario: the listener's own limits are measured on request
// (-scenario listener), since they change only with the machine and the kernel.
var defaultScenarios = allScenarios[:5]

// scenarioModes are the modes that make sense in each flood scenario, in the order they run.
// The reflect ceiling answers SYNs only; the ceilings would answer or drop the legit client's
// SYNs too.
var scenarioModes = map[string][]string{
	scenarioFlood: allModes,
	scenarioAck:   {modeNone, modeDrop, modeXsyn, modeXsynNF, modeGeneric, modeSynproxy},
	scenarioMix:   {modeNone, modeDrop, modeXsyn, modeXsynNF, modeGeneric, modeSynproxy},
	scenarioLegit: {modeNone, modeSynproxy, modeXsyn, modeXsynNF, modeGeneric},
}

// modesFor is the modes of scenario sc among the selected ones, in the selected order.
func modesFor(sc string, selected []string) []string {
	var out []string
	for _, m := range selected {
		if slices.Contains(scenarioModes[sc], m) {
			out = append(out, m)
		}
	}
	return out
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

	prog := newProgress(stderr, planRuns(c))
	rep, err := benchmark(ctx, c, prog)
	if rep.hasResults() {
		if b, lerr := os.ReadFile("/proc/loadavg"); lerr == nil {
			rep.LoadAvgEnd = strings.TrimSpace(string(b))
		}
		rep.Elapsed = time.Since(rep.Started).Round(time.Second).String()
		paths, werr := writeOutputs(c.out, rep)
		if werr != nil {
			fmt.Fprintln(stderr, "bench: write results:", werr)
			return 1
		}
		writeReport(stdout, rep)
		fmt.Fprintln(stdout, "\nwritten:", strings.Join(paths, " "))
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

// planRuns counts the runs c asks for, for the progress line.
func planRuns(c config) int {
	n := 0
	for _, sc := range c.scenarios {
		switch sc {
		case scenarioFlood:
			n += len(modesFor(sc, c.modes)) * len(c.families) * len(c.shapes)
		case scenarioAck, scenarioMix:
			n += len(modesFor(sc, c.modes)) * len(c.families)
		case scenarioLegit:
			n += len(modesFor(sc, c.modes)) * len(c.legitFamilies) * len(c.legitLevels)
		case scenarioEstablished:
			n += c.rounds * len(c.streamFamilies) * len(streamModes)
		case scenarioListener:
			n += len(c.listenerRates)
		}
	}
	return n
}

// benchmark builds the rig, runs the scenarios, and removes the rig.
func benchmark(ctx context.Context, c config, prog *progress) (rep report, err error) {
	var uts unix.Utsname
	unix.Uname(&uts)
	rep = report{
		Started: time.Now().UTC(), Kernel: unix.ByteSliceToString(uts.Release[:]), CPUs: runtime.NumCPU(),
		Command: strings.Join(append([]string{"go run ./bench"}, c.args...), " "),
		GenCPU:  c.genCPU, DUTCPU: c.dutCPU, Duration: c.duration.String(), BatchSize: c.batch, TargetPPS: c.rate,
		Cores: fmt.Sprintf("CPU %d: the generator (SCHED_FIFO %d; paced, nice -20) or the stream sender (SCHED_FIFO %d); "+
			"the attacker's NAPI thread (sink and the client's router, SCHED_FIFO %d); the legit client (SCHED_FIFO %[5]d) and the rest of this process (SCHED_RR %[5]d, idle but for short bursts) and the client link's NAPI threads (SCHED_FIFO %d). "+
			"CPU %d: the DUT's NAPI thread (SCHED_FIFO %d: driver, XDP, and in the modes none, xsyn-generic and synproxy the stack) and the DUT's application "+
			"(the server, or the stream receiver, SCHED_FIFO %d).",
			c.genCPU, prioGenerator, prioGenerator, prioNAPI, prioClient, prioClientNAPI, c.dutCPU, prioNAPI, prioServer),
	}
	if slices.Contains(c.scenarios, scenarioMix) {
		rep.AckShare = c.ackShare
	}
	if slices.Contains(c.scenarios, scenarioLegit) {
		rep.LegitDuration, rep.LegitRate = c.legitDuration.String(), c.legitRate
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
	// Everything of ours, including the iptables children, stays off the DUT's CPU, above the
	// generator.
	if err := placeProcess(c.genCPU, prioClient); err != nil {
		return rep, err
	}
	// run_time_ns and run_cnt of every BPF program, for as long as this fd is open (the same
	// switch as sysctl kernel.bpf_stats_enabled, but released by the kernel even if we die).
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		return rep, fmt.Errorf("enable BPF run-time statistics: %w", err)
	}
	defer stats.Close()

	prog.logf("bench: building the lab")
	r, err := newRig(c.genCPU, c.dutCPU, c.port, c.generator)
	if err != nil {
		return rep, fmt.Errorf("build the lab: %w", err)
	}
	rep.Generator, rep.GeneratorNote = r.genKind, r.genWhy
	if r.genWhy != "" {
		prog.logf("bench: generator: %s: %s", r.genKind, r.genWhy)
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
		case scenarioFlood, scenarioAck, scenarioMix:
			err = r.floods(ctx, c, sc, s, &rep, prog)
		case scenarioLegit:
			err = r.legit(ctx, c, s, &rep, prog)
		case scenarioEstablished:
			err = r.established(ctx, c, &rep, prog)
			rep.EstablishedSummary = summarize(rep.Established)
		case scenarioListener:
			err = r.listener(ctx, c, &rep, prog)
		}
		if err != nil {
			return rep, fmt.Errorf("%s: %w", sc, err)
		}
	}
	return rep, nil
}

// floods measures every mode, family (and for SYN floods, shape) under one kind of flood.
func (r *rig) floods(ctx context.Context, c config, sc string, s spec.Spec, rep *report, prog *progress) error {
	for _, mode := range modesFor(sc, c.modes) {
		if ctx.Err() != nil {
			break
		}
		res, err := r.measureMode(ctx, c, sc, mode, s, prog)
		rep.Results = append(rep.Results, res...)
		if err != nil {
			return fmt.Errorf("%s: %w", mode, err)
		}
	}
	return nil
}

// floodShapes are the SYN shapes a scenario runs: forged ACKs have no options, and a mix pairs
// them with SYNs of their length.
func floodShapes(sc string, c config) []shape {
	if sc == scenarioFlood {
		return c.shapes
	}
	return []shape{shapeBare}
}

// newFlood is what the generator sends in scenario sc.
func (r *rig) newFlood(sc string, f family, sh shape, c config) flood {
	dst := dutAddr(f)
	switch sc {
	case scenarioAck:
		return flood{ack: ackFrame(f, r.atkMAC, r.dutMAC, dst, c.port), ackPermille: 1000, pps: c.rate}
	case scenarioMix:
		return flood{syn: synFrame(f, shapeBare, r.atkMAC, r.dutMAC, dst, c.port), ack: ackFrame(f, r.atkMAC, r.dutMAC, dst, c.port),
			ackPermille: uint32(c.ackShare * 10), pps: c.rate}
	}
	return flood{syn: synFrame(f, sh, r.atkMAC, r.dutMAC, dst, c.port), pps: c.rate}
}

func dutAddr(f family) netip.Addr {
	if f == 6 {
		return dutAddr6.Addr()
	}
	return dutAddr4.Addr()
}

// setUp deploys mode and gives it a fresh listener and pinned NAPI threads; the returned
// function undoes it.
func (r *rig) setUp(mode string, s spec.Spec) (*deployment, func() error, error) {
	d, err := r.deploy(mode, s)
	if err != nil {
		return nil, nil, err
	}
	teardown := func() error {
		if terr := d.teardown(); terr != nil {
			return fmt.Errorf("tear down %s: %w", mode, terr)
		}
		return nil
	}
	if err := r.restartServer(); err != nil {
		return nil, nil, errors.Join(err, teardown())
	}
	if err := r.pinNAPI(); err != nil {
		return nil, nil, errors.Join(err, teardown())
	}
	return d, teardown, nil
}

func (r *rig) measureMode(ctx context.Context, c config, sc, mode string, s spec.Spec, prog *progress) (out []result, err error) {
	d, teardown, err := r.setUp(mode, s)
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, teardown()) }()
	for _, f := range c.families {
		for _, sh := range floodShapes(sc, c) {
			if ctx.Err() != nil {
				return out, nil
			}
			fl := r.newFlood(sc, f, sh, c)
			label := fmt.Sprintf("%s %s %s %d B", sc, mode, f, fl.frameLen())
			res, err := r.measure(ctx, d, c, sc, mode, f, sh, fl, prog.run(label, c.duration, r.counts))
			if err != nil {
				return out, fmt.Errorf("%s %s: %w", f, sh, err)
			}
			if ctx.Err() != nil {
				return out, nil // cut short: not comparable with the others
			}
			prog.logf("bench: %-6s %-12s %s %3d B: offered %s Mpps, DUT handled %s Mpps, answered %s Mpps",
				sc, mode, f, res.FrameBytes, mpps(res.OfferedPPS), mpps(res.DUTRxPPS), mpps(res.SynAckPPS+res.RstPPS))
			out = append(out, res)
		}
	}
	return out, nil
}

func (r *rig) measure(ctx context.Context, d *deployment, c config, sc, mode string, f family, sh shape, fl flood, done func()) (result, error) {
	before, err := r.sample(d)
	if err != nil {
		done()
		return result{}, err
	}
	elapsed, err := r.generate(ctx, fl, c.batch, c.duration)
	done()
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
	res := newResult(sc, mode, f, sh, fl.frameLen(), elapsed, before, after, ct)
	res.TargetPPS = fl.pps
	return res, nil
}
