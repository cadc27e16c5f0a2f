package main

// The established scenario: what xsyn costs the traffic it protects. For every segment to a
// protected service that is not a SYN, xsyn's program looks the connection up: on its default
// path (the socket handoff) in the socket table, on its SYNPROXY path in conntrack. This
// scenario measures one bulk TCP stream from the attacker's namespace (here: a client) to the
// DUT's protected port, with five things on the DUT:
//
//	none           no XDP program, no rules: the reference
//	pass           an XDP program that returns XDP_PASS, no rules: what any XDP program costs a
//	               veth (the veth then handles skbs in its XDP path, copying each one into a page)
//	synproxy       the netfilter rules alone: handshake by SYNPROXY, conntrack and its sequence
//	               number translation on every segment
//	xsyn           xsyn as deployed by default: the SYN-ACK comes from XDP, the handshake's ACK
//	               is handed to the listener, every segment is looked up in the socket table
//	xsyn-synproxy  xsyn on its SYNPROXY path: the SYN-ACK comes from XDP, SYNPROXY completes the
//	               handshake, every segment is looked up in conntrack from XDP and then by netfilter
//
// The stream is payload received per second. The clock starts when the receiver has its first
// byte, so whatever delays the start of a proxied connection is not counted (it is reported on
// its own: connect time, first byte, and when the server's first byte reached the client).

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/xsyn-project/xsyn/spec"
)

// What the DUT runs in the established scenario.
const (
	streamNone     = "none"          // no XDP program, no rules
	streamPass     = "pass"          // XDP_PASS only, no rules
	streamSynproxy = "synproxy"      // netfilter rules alone
	streamXsyn     = "xsyn"          // xsyn as deployed by default: handoff path, a socket lookup per segment
	streamXsynNF   = "xsyn-synproxy" // xsyn on the SYNPROXY path: rules, a conntrack lookup per segment
)

var streamModes = []string{streamNone, streamPass, streamSynproxy, streamXsyn, streamXsynNF}

// streamWrite is the size of the sender's writes and the receiver's reads.
const streamWrite = 256 << 10

// Limits for a stream that does not get going; none of them is part of a measurement.
const (
	streamConnectTimeout = 5 * time.Second
	streamStartTimeout   = 10 * time.Second
	streamStopTimeout    = 10 * time.Second
)

// streamQdisc goes on the client's veth for the established scenario. With a qdisc, a veth
// stops its queue while the peer's 256-slot ring is full (Linux 6.16 and later) instead of
// dropping, as a NIC with a qdisc does; without one, a stream into a slower DUT loses segments
// there all the time, and its rate then depends on how the congestion control takes the losses.
var streamQdisc = []string{"pfifo", "limit", "1000"}

// established measures one stream per (round, family, mode). The modes take turns within a
// round, so that anything else the machine does spreads over all of them.
func (r *rig) established(ctx context.Context, c config, rep *report, prog *progress) (err error) {
	// The sink drops every SYN-ACK, and the client needs xsyn's. A pass program keeps the
	// attacker's veth in NAPI mode (frames the DUT sends with XDP_TX arrive only then) and hands
	// everything to the attacker's stack.
	if err := r.atkL.AttachPass(); err != nil {
		return fmt.Errorf("replace the sink with a pass program: %w", err)
	}
	defer func() {
		if serr := r.setXDP(r.atk, atkIface, r.progs.BenchSink); serr != nil {
			err = errors.Join(err, fmt.Errorf("restore the sink: %w", serr))
		}
	}()
	if _, err := r.atk.Run("tc", append([]string{"qdisc", "replace", "dev", atkIface, "root"}, streamQdisc...)...); err != nil {
		return err
	}
	defer func() {
		if _, qerr := r.atk.Run("tc", "qdisc", "del", "dev", atkIface, "root"); qerr != nil {
			err = errors.Join(err, qerr)
		}
	}()
	rep.StreamQdisc = strings.Join(streamQdisc, " ")
	s, err := r.streamSpec(c, rep)
	if err != nil {
		return err
	}
	rep.StreamWScale = int(s.Services[0].Options.WScale)
	// No garbage collection while the streams run: see noGC.
	defer noGC()()
	prog.logf("bench: established: the DUT's stack offers window scale %d; xsyn and SYNPROXY offer %d", rep.DUTWScale, rep.StreamWScale)
	for round := 1; round <= c.rounds; round++ {
		for _, f := range c.streamFamilies {
			for _, mode := range streamModes {
				if ctx.Err() != nil {
					return nil
				}
				done := prog.run(fmt.Sprintf("established %s %s round %d", mode, f, round), c.streamDuration, nil)
				res, err := r.streamMode(ctx, c, mode, f, s)
				done()
				if err != nil {
					return fmt.Errorf("%s %s, round %d: %w", mode, f, round, err)
				}
				if ctx.Err() != nil {
					return nil // cut short: not comparable with the others
				}
				res.Round = round
				prog.logf("bench: established %-8s %s round %d: %.2f Gbit/s, DUT CPU %s, first byte after %.0f ms, %d retransmits (%d spurious)",
					mode, f, round, res.Gbps, pct(res.DUTNAPIUtil+res.ReceiverUtil), res.FirstByteMs, res.Retransmits, res.SpuriousRetransmits)
				rep.Established = append(rep.Established, res)
			}
		}
	}
	return nil
}

// streamSpec is the spec the established scenario protects the port with. SYNPROXY does not
// translate window scaling: the client scales the server's windows by the shift it got in the
// SYN-ACK (xsyn's or SYNPROXY's), so that shift has to be the one the server's own stack would
// offer. Unless -stream-wscale says otherwise, it is: a probe connection, with nothing on the
// DUT, reads the shift the DUT's stack offers.
func (r *rig) streamSpec(c config, rep *report) (spec.Spec, error) {
	ws, err := r.probeWScale()
	if err != nil {
		return spec.Spec{}, fmt.Errorf("probe the DUT's window scale: %w", err)
	}
	rep.DUTWScale = ws
	if c.streamWScale >= 0 {
		ws = c.streamWScale
	}
	return spec.Simple{Ports: []uint16{c.port}, WScale: ws}.Build()
}

// probeWScale connects to the DUT's port and returns the window scale its SYN-ACK offered.
func (r *rig) probeWScale() (int, error) {
	drainAccepted(r.accepted)
	var cli net.Conn
	if err := r.atk.Do(func() (err error) {
		cli, err = (&net.Dialer{Timeout: streamConnectTimeout}).Dial("tcp", netip.AddrPortFrom(dutAddr4.Addr(), r.port).String())
		return err
	}); err != nil {
		return 0, err
	}
	defer cli.Close()
	select {
	case srv := <-r.accepted:
		srv.Close()
	case <-time.After(streamConnectTimeout):
		return 0, fmt.Errorf("the DUT accepted no connection within %v", streamConnectTimeout)
	}
	rc, err := cli.(*net.TCPConn).SyscallConn()
	if err != nil {
		return 0, err
	}
	ws := -1
	var serr error
	if err := rc.Control(func(fd uintptr) { ws, serr = sendWScale(int(fd)) }); err != nil {
		return 0, err
	}
	return ws, serr
}

// sendWScale reads the window scale the peer offered (tcpi_snd_wscale) from TCP_INFO. x/sys's
// TCPInfo leaves the bit field out, so the first bytes of struct tcp_info are read as they are:
// tcpi_options in byte 5, tcpi_snd_wscale in the low 4 bits of byte 6.
func sendWScale(fd int) (int, error) {
	var info [8]byte
	n := uint32(len(info))
	if _, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.IPPROTO_TCP, unix.TCP_INFO,
		uintptr(unsafe.Pointer(&info[0])), uintptr(unsafe.Pointer(&n)), 0); errno != 0 {
		return 0, fmt.Errorf("getsockopt TCP_INFO: %w", errno)
	}
	if n < uint32(len(info)) {
		return 0, fmt.Errorf("getsockopt TCP_INFO: %d bytes", n)
	}
	const tcpiOptWScale = 4 // TCPI_OPT_WSCALE, linux/tcp.h
	if info[5]&tcpiOptWScale == 0 {
		return 0, errors.New("the DUT did not offer window scaling")
	}
	return int(info[6] & 0x0f), nil
}

// retransmits reads a connection's retransmitted segments so far, and how many of them the
// peer reported as duplicates (D-SACK): sent again although they had not been lost.
func retransmits(c net.Conn) (total, spurious uint32, err error) {
	rc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		return 0, 0, err
	}
	var info *unix.TCPInfo
	var ierr error
	if err := rc.Control(func(fd uintptr) { info, ierr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO) }); err != nil {
		return 0, 0, err
	}
	if ierr != nil {
		return 0, 0, fmt.Errorf("getsockopt TCP_INFO: %w", ierr)
	}
	return info.Total_retrans, info.Dsack_dups, nil
}

// drainAccepted closes a connection left from a run cut short.
func drainAccepted(ch chan net.Conn) {
	for {
		select {
		case c := <-ch:
			c.Close()
		default:
			return
		}
	}
}

func (r *rig) streamMode(ctx context.Context, c config, mode string, f family, s spec.Spec) (res streamResult, err error) {
	d, err := r.deployStream(mode, s)
	if err != nil {
		return res, err
	}
	defer func() {
		if terr := d.teardown(); terr != nil {
			err = errors.Join(err, fmt.Errorf("tear down: %w", terr))
		}
	}()
	if err := r.pinNAPI(); err != nil {
		return res, err
	}
	res, err = r.stream(ctx, d, mode, f, c.streamDuration)
	if err == nil && res.Xsyn != nil && (res.Xsyn.SynackSent == 0 || res.Xsyn.AckCookieValid == 0) {
		err = fmt.Errorf("the handshake did not go through xsyn (SYN-ACKs sent %d, valid cookies %d)", res.Xsyn.SynackSent, res.Xsyn.AckCookieValid)
	}
	return res, err
}

// deployStream sets an established-scenario mode up on the DUT.
func (r *rig) deployStream(mode string, s spec.Spec) (*deployment, error) {
	switch mode {
	case streamNone:
		return &deployment{teardown: func() error { return nil }}, nil
	case streamPass:
		if err := r.dutL.AttachPass(); err != nil {
			return nil, err
		}
		detach := func() error { return r.setXDP(r.dut, dutIface, nil) }
		p, err := r.dutXDP()
		if err != nil {
			return nil, errors.Join(err, detach())
		}
		return &deployment{prog: p, teardown: func() error { return errors.Join(p.Close(), detach()) }}, nil
	case streamSynproxy:
		return r.deploy(modeSynproxy, s)
	case streamXsyn:
		return r.deploy(modeXsyn, s)
	case streamXsynNF:
		return r.deploy(modeXsynNF, s)
	}
	return nil, fmt.Errorf("unknown established mode %q (want one of %v)", mode, streamModes)
}

// dutXDP opens the program attached to the DUT's veth, for its bpf_stats.
func (r *rig) dutXDP() (*ebpf.Program, error) {
	var id uint32
	if err := r.dut.Do(func() error {
		l, err := netlink.LinkByName(dutIface)
		if err != nil {
			return err
		}
		if x := l.Attrs().Xdp; x != nil {
			id = x.ProgId
		}
		return nil
	}); err != nil {
		return nil, err
	}
	if id == 0 {
		return nil, fmt.Errorf("no XDP program on %s", dutIface)
	}
	p, err := ebpf.NewProgramFromID(ebpf.ProgramID(id))
	if err != nil {
		return nil, fmt.Errorf("open XDP program %d of %s: %w", id, dutIface, err)
	}
	return p, nil
}
