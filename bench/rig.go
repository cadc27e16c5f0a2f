package main

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/xsyn-project/xsyn/internal/netlab"
	"github.com/xsyn-project/xsyn/internal/packet"
)

// The lab: an attacker namespace and a DUT namespace joined by one veth pair.
const (
	labPrefix = "xsynbench"
	atkIface  = "xbatk0"
	dutIface  = "xbdut0"
)

var (
	atkAddr4 = netip.MustParsePrefix("192.0.2.1/24")
	dutAddr4 = netip.MustParsePrefix("192.0.2.2/24")
	atkAddr6 = netip.MustParsePrefix("2001:db8::1/64")
	dutAddr6 = netip.MustParsePrefix("2001:db8::2/64")
)

// rig is the lab with the benchmark's programs loaded, the sink attached and the NAPI threads
// pinned: the generator and the attacker's receive work on genCPU, the DUT's receive work alone on
// dutCPU.
type rig struct {
	lab        *netlab.Lab
	atk, dut   *netlab.Host
	atkL, dutL *netlab.Link
	atkIfindex int
	atkMAC     packet.MAC
	dutMAC     packet.MAC
	progs      benchprogsObjects
	listener   net.Listener
	accepted   chan net.Conn // connections for the established scenario's receiver
	genCPU     int
	dutCPU     int
	port       uint16
}

// newRig builds the lab. On failure everything built so far is removed.
func newRig(genCPU, dutCPU int, port uint16) (_ *rig, err error) {
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
	r.atkL, r.dutL, err = netlab.Veth(r.atk, atkIface, []netip.Prefix{atkAddr4, atkAddr6}, r.dut, dutIface, []netip.Prefix{dutAddr4, dutAddr6})
	if err != nil {
		return nil, err
	}
	if r.atkMAC, err = parseMAC(r.atkL.MAC); err != nil {
		return nil, err
	}
	if r.dutMAC, err = parseMAC(r.dutL.MAC); err != nil {
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
	// reach it only then) and keeps the SYN-ACKs from its stack.
	if err := r.setXDP(r.atk, atkIface, r.progs.BenchSink); err != nil {
		return nil, err
	}
	// GRO gives the DUT's veth a NAPI instance without any XDP program, so the generator's
	// frames (sent with ndo_xdp_xmit) also arrive in the netfilter-only mode.
	if _, err := r.dut.Run("ethtool", "-K", dutIface, "gro", "on"); err != nil {
		return nil, err
	}
	// Threaded NAPI: each veth's receive work runs in a kthread we can pin, instead of in the
	// softirq of whichever CPU sent the frame (which for the DUT would be the generator's).
	for _, h := range []struct {
		host  *netlab.Host
		iface string
	}{{r.atk, atkIface}, {r.dut, dutIface}} {
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
	if err := r.dut.Do(func() error {
		r.listener, err = net.Listen("tcp", fmt.Sprintf(":%d", port))
		return err
	}); err != nil {
		return nil, fmt.Errorf("listen on the DUT: %w", err)
	}
	go r.acceptAll()
	return r, nil
}

// routes adds static neighbours both ways and, on the DUT, routes back to the flood's sources
// through the attacker, so the stack's own SYN-ACKs (netfilter mode) leave without ARP or ND.
func (r *rig) routes() error {
	for _, n := range []struct {
		l    *netlab.Link
		addr netip.Prefix
		mac  string
	}{
		{r.atkL, dutAddr4, r.dutL.MAC}, {r.atkL, dutAddr6, r.dutL.MAC},
		{r.dutL, atkAddr4, r.atkL.MAC}, {r.dutL, atkAddr6, r.atkL.MAC},
	} {
		if err := n.l.Neighbor(n.addr.Addr(), n.mac); err != nil {
			return err
		}
	}
	if _, err := r.dut.Run("ip", "route", "add", floodNet4.String(), "via", atkAddr4.Addr().String(), "dev", dutIface); err != nil {
		return err
	}
	_, err := r.dut.Run("ip", "-6", "route", "add", floodNet6.String(), "via", atkAddr6.Addr().String(), "dev", dutIface)
	return err
}

// acceptAll hands accepted connections to the established scenario's receiver, and closes them
// when it holds one already (a flood completes no handshake, so none arrive then).
func (r *rig) acceptAll() {
	for {
		c, err := r.listener.Accept()
		if err != nil {
			return
		}
		select {
		case r.accepted <- c:
		default:
			c.Close()
		}
	}
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
const (
	prioNAPI      = 50
	prioGenerator = 40
)

// pinNAPI moves the NAPI threads of the attacker's veth to genCPU and the DUT's to dutCPU, both
// at prioNAPI. It is called again after every mode change, in case the kernel recreated them.
func (r *rig) pinNAPI() error {
	for _, p := range []struct {
		iface string
		cpu   int
	}{{atkIface, r.genCPU}, {dutIface, r.dutCPU}} {
		pids, err := napiThreads(p.iface)
		if err != nil {
			return err
		}
		if len(pids) == 0 {
			return fmt.Errorf("no NAPI thread for %s (threaded NAPI not enabled?)", p.iface)
		}
		for _, pid := range pids {
			if err := placeTask(pid, p.cpu, prioNAPI); err != nil {
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
	if r.listener != nil {
		errs = append(errs, r.listener.Close())
	}
	errs = append(errs, r.lab.Close(), r.progs.Close())
	return errors.Join(errs...)
}

// linkStats reads the DUT veth's counters. A veth counts frames its NAPI handled (XDP or not)
// in rx_packets, and frames its peer could not queue to it (ring full) in rx_dropped.
func (r *rig) linkStats() (netlink.LinkStatistics, error) {
	var st netlink.LinkStatistics
	err := r.dut.Do(func() error {
		l, err := netlink.LinkByName(dutIface)
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

// taskRuntime is the CPU time a task (thread) has run, from /proc/<pid>/schedstat.
func taskRuntime(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/schedstat", pid))
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0, fmt.Errorf("empty schedstat of %d", pid)
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
	if err := pinTask(tid, cpu); err != nil {
		return err
	}
	attr := unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_FIFO, Priority: uint32(prio)}
	if err := unix.SchedSetAttr(tid, &attr, 0); err != nil {
		return fmt.Errorf("set SCHED_FIFO %d: %w", prio, err)
	}
	return nil
}

// pinProcess moves every thread of this process to cpu; threads started later inherit it.
func pinProcess(cpu int) error {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return err
	}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		if err := pinTask(tid, cpu); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("pin thread %d to CPU %d: %w", tid, cpu, err)
		}
	}
	return nil
}
