package main

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/xsyn-project/xsyn/internal/netlab"
	"github.com/xsyn-project/xsyn/internal/packet"
	"github.com/xsyn-project/xsyn/rules"
)

// The lab: an attacker namespace and a DUT namespace joined by one veth pair, and a legit client
// namespace behind the attacker's, joined to it by a second pair. The attacker's namespace
// routes the client's traffic, so the client's SYNs reach the DUT through the same veth, ring
// and NAPI thread as the flood, as they would through one NIC queue.
const (
	labPrefix = "xsynbench"
	atkIface  = "xbatk0" // attacker, towards the DUT
	dutIface  = "xbdut0" // DUT, the protected interface
	atkCliIf  = "xbatk1" // attacker, towards the legit client
	cliIface  = "xbcli0" // legit client
)

var (
	atkAddr4 = netip.MustParsePrefix("192.0.2.1/24")
	dutAddr4 = netip.MustParsePrefix("192.0.2.2/24")
	atkAddr6 = netip.MustParsePrefix("2001:db8::1/64")
	dutAddr6 = netip.MustParsePrefix("2001:db8::2/64")

	// The legit client's link: the attacker's namespace is its router.
	gwAddr4  = netip.MustParsePrefix("203.0.113.1/24")
	cliAddr4 = netip.MustParsePrefix("203.0.113.2/24")
	gwAddr6  = netip.MustParsePrefix("2001:db8:1::1/64")
	cliAddr6 = netip.MustParsePrefix("2001:db8:1::2/64")
)

// rig is the lab with the benchmark's programs loaded, the sink attached and the NAPI threads
// pinned: the generator, the attacker's and the client's receive work on genCPU, the DUT's
// receive work alone on dutCPU.
type rig struct {
	lab        *netlab.Lab
	atk, dut   *netlab.Host
	cli        *netlab.Host
	atkL, dutL *netlab.Link
	gwL, cliL  *netlab.Link
	atkIfindex int
	atkMAC     packet.MAC
	dutMAC     packet.MAC
	progs      benchprogsObjects
	srv        *server
	accepted   chan net.Conn // connections for the established scenario's receiver
	gen        generator
	genKind    string // genLive or genPacket
	genWhy     string // why that one, when it is not what was asked for
	genCPU     int
	dutCPU     int
	port       uint16
}

// newRig builds the lab with the generator wantGen asks for (chooseGenerator). On failure
// everything built so far is removed.
func newRig(genCPU, dutCPU int, port uint16, wantGen string) (_ *rig, err error) {
	r := &rig{lab: netlab.New(labPrefix), genCPU: genCPU, dutCPU: dutCPU, port: port, accepted: make(chan net.Conn, 1)}
	defer func() {
		if err != nil {
			r.Close()
		}
	}()
	if err := loadBenchprogsObjects(&r.progs, nil); err != nil {
		return nil, fmt.Errorf("load benchmark programs: %w", err)
	}
	if r.atk, err = r.lab.Host("atk"); err != nil {
		return nil, err
	}
	if r.dut, err = r.lab.Host("dut"); err != nil {
		return nil, err
	}
	if r.cli, err = r.lab.Host("cli"); err != nil {
		return nil, err
	}
	r.atkL, r.dutL, err = netlab.Veth(r.atk, atkIface, []netip.Prefix{atkAddr4, atkAddr6}, r.dut, dutIface, []netip.Prefix{dutAddr4, dutAddr6})
	if err != nil {
		return nil, err
	}
	r.gwL, r.cliL, err = netlab.Veth(r.atk, atkCliIf, []netip.Prefix{gwAddr4, gwAddr6}, r.cli, cliIface, []netip.Prefix{cliAddr4, cliAddr6})
	if err != nil {
		return nil, err
	}
	if r.atkMAC, err = packet.ParseMAC(r.atkL.MAC); err != nil {
		return nil, err
	}
	if r.dutMAC, err = packet.ParseMAC(r.dutL.MAC); err != nil {
		return nil, err
	}
	if err := r.atk.Do(func() error {
		l, err := netlink.LinkByName(atkIface)
		if err != nil {
			return err
		}
		r.atkIfindex = l.Attrs().Index
		return nil
	}); err != nil {
		return nil, fmt.Errorf("look up %s: %w", atkIface, err)
	}
	// The sink gives the attacker's veth a NAPI instance (frames sent with XDP_TX by the DUT
	// reach it only then), keeps the answers to the flood from its stack and passes the legit
	// client's.
	if err := r.setXDP(r.atk, atkIface, r.progs.BenchSink); err != nil {
		return nil, err
	}
	// GRO gives a veth a NAPI instance without any XDP program: on the DUT so that the
	// generator's frames (sent with ndo_xdp_xmit) also arrive in the modes without XDP, on the
	// client's link so that its receive work runs in threads we can pin too.
	for _, h := range []struct {
		host  *netlab.Host
		iface string
	}{{r.dut, dutIface}, {r.atk, atkCliIf}, {r.cli, cliIface}} {
		if _, err := h.host.Run("ethtool", "-K", h.iface, "gro", "on"); err != nil {
			return nil, err
		}
	}
	// Threaded NAPI: each veth's receive work runs in a kthread we can pin, instead of in the
	// softirq of whichever CPU sent the frame (which for the DUT would be the generator's).
	for _, h := range []struct {
		host  *netlab.Host
		iface string
	}{{r.atk, atkIface}, {r.dut, dutIface}, {r.atk, atkCliIf}, {r.cli, cliIface}} {
		if _, err := h.host.Run("sh", "-c", "echo 1 > /sys/class/net/"+h.iface+"/threaded"); err != nil {
			return nil, fmt.Errorf("threaded NAPI on %s: %w", h.iface, err)
		}
	}
	if err := r.pinNAPI(); err != nil {
		return nil, err
	}
	if err := r.routes(); err != nil {
		return nil, err
	}
	if err := r.restartServer(); err != nil {
		return nil, fmt.Errorf("listen on the DUT: %w", err)
	}
	if r.genKind, r.genWhy, err = chooseGenerator(wantGen, func() error { return probeLive(&r.progs, r.atk, r.atkIfindex) }); err != nil {
		return nil, err
	}
	if r.genKind == genLive {
		r.gen = &liveGen{progs: &r.progs, host: r.atk, ifindex: r.atkIfindex, cpu: genCPU}
	} else {
		r.gen = &packetGen{host: r.atk, ifindex: r.atkIfindex, cpu: genCPU}
	}
	return r, nil
}

// restartServer replaces the DUT's listeners with new ones: a SYN queue a flood filled in the
// mode without protection (its entries wait for their SYN-ACK retransmits for a minute) is
// gone, and the next run starts from an empty one.
func (r *rig) restartServer() error {
	if r.srv != nil {
		err := r.srv.Close()
		r.srv = nil
		if err != nil {
			return err
		}
	}
	s, err := r.startServer()
	if err != nil {
		return err
	}
	r.srv = s
	return nil
}

// routes adds static neighbours on both links, makes the attacker's namespace the legit
// client's router, and on the DUT routes back to the flood's sources and to the client through
// the attacker, so the stack's own SYN-ACKs (modes without XDP) leave without ARP or ND.
func (r *rig) routes() error {
	for _, n := range []struct {
		l    *netlab.Link
		addr netip.Prefix
		mac  string
	}{
		{r.atkL, dutAddr4, r.dutL.MAC}, {r.atkL, dutAddr6, r.dutL.MAC},
		{r.dutL, atkAddr4, r.atkL.MAC}, {r.dutL, atkAddr6, r.atkL.MAC},
		{r.gwL, cliAddr4, r.cliL.MAC}, {r.gwL, cliAddr6, r.cliL.MAC},
		{r.cliL, gwAddr4, r.gwL.MAC}, {r.cliL, gwAddr6, r.gwL.MAC},
	} {
		if err := n.l.Neighbor(n.addr.Addr(), n.mac); err != nil {
			return err
		}
	}
	if err := r.atk.Do(func() error {
		return errors.Join(
			rules.ProcSys{Root: "/proc/sys"}.Set("net.ipv4.ip_forward", "1"),
			rules.ProcSys{Root: "/proc/sys"}.Set("net.ipv6.conf.all.forwarding", "1"))
	}); err != nil {
		return fmt.Errorf("forwarding in %s: %w", r.atk.Name, err)
	}
	for _, rt := range []struct {
		h        *netlab.Host
		dst      netip.Prefix
		via      netip.Addr
		dev      string
		inet6Opt bool
	}{
		{r.dut, floodNet4, atkAddr4.Addr(), dutIface, false},
		{r.dut, floodNet6, atkAddr6.Addr(), dutIface, true},
		{r.dut, cliAddr4.Masked(), atkAddr4.Addr(), dutIface, false},
		{r.dut, cliAddr6.Masked(), atkAddr6.Addr(), dutIface, true},
		{r.cli, dutAddr4.Masked(), gwAddr4.Addr(), cliIface, false},
		{r.cli, dutAddr6.Masked(), gwAddr6.Addr(), cliIface, true},
	} {
		args := []string{"route", "add", rt.dst.String(), "via", rt.via.String(), "dev", rt.dev}
		if rt.inet6Opt {
			args = append([]string{"-6"}, args...)
		}
		if _, err := rt.h.Run("ip", args...); err != nil {
			return err
		}
	}
	return nil
}

// setXDP attaches prog (nil: detaches whatever is there) to iface in native mode.
func (r *rig) setXDP(h *netlab.Host, iface string, prog *ebpf.Program) error {
	fd := -1
	if prog != nil {
		fd = prog.FD()
	}
	return h.Do(func() error {
		l, err := netlink.LinkByName(iface)
		if err != nil {
			return err
		}
		if err := netlink.LinkSetXdpFdWithFlags(l, fd, nl.XDP_FLAGS_DRV_MODE); err != nil {
			return fmt.Errorf("set XDP program on %s: %w", iface, err)
		}
		return nil
	})
}

// Real-time priorities (SCHED_FIFO) of the rig's threads. The machine may be shared: without
// them any busy process steals the DUT's CPU and the DUT looks slower than it is. The sink
// preempts the generator on their shared CPU, so no SYN-ACK is lost for want of a reader. The
// kernel keeps a share of every CPU for ordinary tasks (fair server / RT throttling: 5%).
//
// The legit client's own path on the generator's CPU (its thread, and the NAPI threads of the
// link between it and its router) runs above the generator and the sink: a real client's
// machine does not flood. Its SYNs still share the DUT's ring and NAPI thread with the flood,
// and its SYN-ACKs the sink's ring.
const (
	prioClientNAPI = 51
	prioNAPI       = 50
	prioClient     = 45 // the legit client, and every other thread of this process (placeProcess)
	prioGenerator  = 40
	prioServer     = 40 // the DUT's application, below the DUT's NAPI thread
)

// pinNAPI moves the NAPI threads of the attacker's and the client's veths to genCPU and the DUT's
// to dutCPU. It is called again after every mode change, in case the kernel recreated them.
func (r *rig) pinNAPI() error {
	for _, p := range []struct {
		iface string
		cpu   int
		prio  int
	}{{atkIface, r.genCPU, prioNAPI}, {dutIface, r.dutCPU, prioNAPI}, {atkCliIf, r.genCPU, prioClientNAPI}, {cliIface, r.genCPU, prioClientNAPI}} {
		pids, err := napiThreads(p.iface)
		if err != nil {
			return err
		}
		if len(pids) == 0 {
			return fmt.Errorf("no NAPI thread for %s (threaded NAPI not enabled?)", p.iface)
		}
		for _, pid := range pids {
			if err := placeTask(pid, p.cpu, p.prio); err != nil {
				return fmt.Errorf("pin NAPI thread %d of %s: %w", pid, p.iface, err)
			}
		}
	}
	return nil
}

// Close removes the lab (namespaces, veths, rules and XDP programs go with it) and unloads the
// benchmark's programs.
func (r *rig) Close() error {
	var errs []error
	if r.srv != nil {
		errs = append(errs, r.srv.Close())
	}
	if r.gen != nil {
		errs = append(errs, r.gen.close())
	}
	errs = append(errs, r.lab.Close(), r.progs.Close())
	return errors.Join(errs...)
}

// linkStats reads a veth's counters. A veth counts frames its NAPI handled (XDP or not) in
// rx_packets; frames that found its ring full in rx_dropped if they came as XDP frames
// (ndo_xdp_xmit), in the sending peer's tx_dropped if they came as skbs (veth_xmit).
func linkStats(h *netlab.Host, iface string) (netlink.LinkStatistics, error) {
	var st netlink.LinkStatistics
	err := h.Do(func() error {
		l, err := netlink.LinkByName(iface)
		if err != nil {
			return err
		}
		if s := l.Attrs().Statistics; s != nil {
			st = *s
		}
		return nil
	})
	return st, err
}

// conntrackCount is the number of conntrack entries in the DUT's namespace, -1 when conntrack
// has no table there.
func (r *rig) conntrackCount() (int, error) {
	n := -1
	err := r.dut.Do(func() error {
		b, err := os.ReadFile("/proc/sys/net/netfilter/nf_conntrack_count")
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		n, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err
	})
	return n, err
}

// napiThreads finds the kthreads of threaded NAPI for iface ("napi/<iface>-<id>", cut at 15
// characters).
func napiThreads(iface string) ([]int, error) {
	prefix := "napi/" + iface + "-"
	if len(prefix) > 15 {
		prefix = prefix[:15]
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if err == nil && strings.HasPrefix(string(comm), prefix) {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// taskRuntime is the CPU time another process has run (a NAPI kthread: one thread, its own
// leader), from /proc/<pid>/schedstat.
func taskRuntime(pid int) (uint64, error) {
	return readSchedstat(fmt.Sprintf("/proc/%d/schedstat", pid))
}

// threadRuntime is the CPU time a thread of this process has run, from
// /proc/self/task/<tid>/schedstat. /proc/<tid> would also find it on Linux, but only as a hidden
// entry that not every procfs has, and the task directory is where a thread's files are
// documented to be.
func threadRuntime(tid int) (uint64, error) {
	return readSchedstat(fmt.Sprintf("/proc/self/task/%d/schedstat", tid))
}

// readSchedstat reads the first field of a schedstat file: time spent on the CPU, in ns.
func readSchedstat(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0, fmt.Errorf("%s: empty", path)
	}
	return strconv.ParseUint(f[0], 10, 64)
}

func pinTask(tid, cpu int) error {
	var set unix.CPUSet
	set.Set(cpu)
	return unix.SchedSetaffinity(tid, &set)
}

// placeTask pins a thread (0: the calling one) to cpu and makes it SCHED_FIFO at prio.
func placeTask(tid, cpu, prio int) error {
	return placePolicy(tid, cpu, unix.SCHED_FIFO, prio)
}

func placePolicy(tid, cpu, policy, prio int) error {
	if err := pinTask(tid, cpu); err != nil {
		return err
	}
	attr := unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: uint32(policy), Priority: uint32(prio)}
	if err := unix.SchedSetAttr(tid, &attr, 0); err != nil {
		name := "SCHED_FIFO"
		if policy == unix.SCHED_RR {
			name = "SCHED_RR"
		}
		return fmt.Errorf("set %s %d: %w", name, prio, err)
	}
	return nil
}

// placeProcess moves every thread of this process to cpu at SCHED_RR prio; threads started
// later inherit both (Go starts new threads from its template thread, placed here too, or from
// the thread that needs one). The process's threads are idle but for short bursts; as ordinary
// tasks they would wait behind the real-time generator for the kernel's fair server, up to a
// second, and with them whatever needs the Go scheduler: the legit client's thread coming back
// from a system call, the timer that stops the generator, the progress line.
//
// Round-robin, not FIFO: they all share one CPU at one priority, and the Go runtime has loops
// that wait for another thread by rescheduling goroutines on their own (runtime.GC waiting for
// a sweeper, for one). Under SCHED_FIFO a thread at the same priority never gets the CPU from
// such a loop, and the process hung (seen: one thread spinning in runtime.GC's Gosched loop for
// minutes, two others of its priority runnable on the same CPU); SCHED_RR hands it over after a
// time slice.
func placeProcess(cpu, prio int) error {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return err
	}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		if err := placePolicy(tid, cpu, unix.SCHED_RR, prio); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("place thread %d on CPU %d: %w", tid, cpu, err)
		}
	}
	return nil
}

// noGC turns the garbage collector off; the function it returns turns it back on. Every thread of
// this process on the generator's CPU is real-time above the flood generator and the stream's
// sender (placeProcess), and a collector that has to stop a goroutine while that goroutine runs
// Go code (to scan its stack) spins until it has stopped: from a thread that outranks the
// goroutine's own on the same CPU, that spin never ends. The flood generators and the stream's
// ends therefore run with the collector off; they allocate nothing in their loops, and a run
// lasts seconds. It does not collect first: runtime.GC can spin the same way (placeProcess).
func noGC() (restore func()) {
	old := debug.SetGCPercent(-1)
	return func() { debug.SetGCPercent(old) }
}
