// Command bench floods xsyn with SYNs on a veth lab and measures how fast it answers, next to a
// reflect ceiling, a drop ceiling and netfilter's SYNPROXY alone. See bench/README.md.
//
//	go run ./bench [-duration 5s] [-family 4|6|both] [-shape 54|74|both] [-modes drop,reflect,xsyn,synproxy]
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
	duration time.Duration
	families []family
	shapes   []shape
	modes    []string
	out      string
	batch    uint32
	port     uint16
	genCPU   int
	dutCPU   int
}

const maxDuration = 5 * time.Minute

func parseFlags(args []string, stderr io.Writer) (config, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := config{genCPU: 0, dutCPU: 1}
	fs.DurationVar(&c.duration, "duration", 5*time.Second, "flood time per run (mode x family x shape)")
	fam := fs.String("family", "both", "IP version of the flood: 4, 6 or both")
	shp := fs.String("shape", "both", "SYN shape: 54 (no options), 74 (Linux options: MSS, SACK_PERM, TS, NOP, WS) or both; sizes are IPv4's, IPv6 frames are 20 bytes longer")
	modes := fs.String("modes", strings.Join(allModes, ","), "DUT modes to measure, in order")
	fs.StringVar(&c.out, "out", "bench/out/results.json", "JSON results file")
	batch := fs.Uint("batch", 64, "live-frame batch size of the generator (1-256)")
	port := fs.Uint("port", 8080, "protected TCP port on the DUT")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if c.duration <= 0 || c.duration > maxDuration {
		return c, fmt.Errorf("-duration %v: want more than 0 and at most %v", c.duration, maxDuration)
	}
	switch *fam {
	case "4":
		c.families = []family{4}
	case "6":
		c.families = []family{6}
	case "both":
		c.families = []family{4, 6}
	default:
		return c, fmt.Errorf("-family %q: want 4, 6 or both", *fam)
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
	for _, m := range strings.Split(*modes, ",") {
		m = strings.TrimSpace(m)
		if !slices.Contains(allModes, m) {
			return c, fmt.Errorf("-modes: unknown mode %q (want some of %s)", m, strings.Join(allModes, ","))
		}
		c.modes = append(c.modes, m)
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
	if len(rep.Results) > 0 {
		fmt.Fprintln(stdout, rep.Cores)
		fmt.Fprintf(stdout, "kernel %s, %d CPUs, load average at start %s\n\n", rep.Kernel, rep.CPUs, rep.LoadAvg)
		printTable(stdout, rep.Results)
		printTargets(stdout, rep.Results)
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

// benchmark builds the rig, measures every mode, family and shape, and removes the rig.
func benchmark(ctx context.Context, c config, log io.Writer) (rep report, err error) {
	var uts unix.Utsname
	unix.Uname(&uts)
	rep = report{
		Started: time.Now().UTC(), Kernel: unix.ByteSliceToString(uts.Release[:]), CPUs: runtime.NumCPU(),
		GenCPU: c.genCPU, DUTCPU: c.dutCPU, Duration: c.duration.String(), BatchSize: c.batch,
		Cores: fmt.Sprintf("cores: CPU %d: generator (BPF_PROG_RUN live frames, SCHED_FIFO %d), attacker's NAPI thread (sink, SCHED_FIFO %d), rest of this process; "+
			"CPU %d: the DUT's NAPI thread alone (SCHED_FIFO %d: driver, XDP, and in synproxy mode the stack).",
			c.genCPU, prioGenerator, prioNAPI, c.dutCPU, prioNAPI),
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
	for _, mode := range c.modes {
		if ctx.Err() != nil {
			break
		}
		res, err := r.measureMode(ctx, c, mode, s, log)
		rep.Results = append(rep.Results, res...)
		if err != nil {
			return rep, fmt.Errorf("%s: %w", mode, err)
		}
	}
	return rep, nil
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
