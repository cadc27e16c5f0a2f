// Package backend learns the TCP options a protected server really offers, by connecting to it.
//
// SYNPROXY completes the handshake with the server using the options the client accepted from
// our SYN-ACK (xsyn's or SYNPROXY's own). If that SYN-ACK offers a window scale, SACK or
// timestamps the server would not, the two halves of the connection disagree: windows are
// scaled by the wrong shift, or options are used that one side never agreed to. Probe reads
// what the server's stack offers; Apply adopts it into a spec's options and Mismatches says
// where a spec differs.
package backend

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"
)

// Offer is what a server offered in its SYN-ACK, as seen by a client that connected to it.
//
// The probe learns only what our own stack asked for in its SYN: window scaling, SACK and
// timestamps are asked for by default (net.ipv4.tcp_window_scaling, tcp_sack, tcp_timestamps),
// ECN only with net.ipv4.tcp_ecn=1 or a route with `features ecn` (the default, 2, never asks).
// An option our stack did not ask for reads as not offered.
type Offer struct {
	Addr netip.AddrPort
	// MSS is the MSS option of the server's SYN-ACK (536, RFC 9293's default, if it sent
	// none); 0 if unknown. See Probe for how exact it is.
	MSS        uint16
	WScale     uint8 // the server's window scale shift (tcpi_snd_wscale), valid if WScaleOK
	WScaleOK   bool  // the server offered window scaling
	SACK       bool  // the server offered SACK-permitted
	Timestamps bool  // the server answered with timestamps
	ECN        bool  // the server agreed to ECN (only if we asked, see above)
	// Loopback: the probe went over a loopback route (both ends on this host), so MSS is the
	// loopback device's and says nothing about the path clients take.
	Loopback bool
}

// Probe connects to addr, reads the options the server offered from TCP_INFO and closes the
// connection again (with a FIN, as any client would). ctx bounds the connect; give it a
// deadline, or a server that drops SYNs keeps Probe waiting for the kernel's SYN retries
// (about two minutes).
//
// The MSS is exact when the caller has CAP_NET_ADMIN: the socket is put into repair mode for a
// moment, where TCP_MAXSEG reads rx_opt.mss_clamp, the MSS option of the SYN-ACK as received;
// no packet is sent for it. Without the capability it is computed from what the connection
// uses, tcpi_snd_mss plus the 12 bytes of the timestamp option when timestamps are on, which is
// the server's MSS bounded by our own route: min(server MSS, our path MTU - IP and TCP headers).
func Probe(ctx context.Context, addr netip.AddrPort) (Offer, error) {
	d := net.Dialer{KeepAlive: -1}
	c, err := d.DialContext(ctx, "tcp", addr.String())
	if err != nil {
		return Offer{}, connectError(addr, err)
	}
	defer c.Close()
	tc := c.(*net.TCPConn)
	local, remote := tc.LocalAddr().(*net.TCPAddr).AddrPort(), tc.RemoteAddr().(*net.TCPAddr).AddrPort()
	o := Offer{Addr: addr, Loopback: isLoopback(local.Addr(), remote.Addr())}
	rc, err := tc.SyscallConn()
	if err != nil {
		return Offer{}, fmt.Errorf("probe backend %s: %w", addr, err)
	}
	var rerr error
	if err := rc.Control(func(fd uintptr) { rerr = o.read(int(fd)) }); err != nil {
		return Offer{}, fmt.Errorf("probe backend %s: %w", addr, err)
	}
	if rerr != nil {
		return Offer{}, fmt.Errorf("probe backend %s: %w", addr, rerr)
	}
	return o, nil
}

// isLoopback reports whether a connection from local to remote goes over a loopback route.
// Linux sends to an address of its own (a local route) through lo, and, unless a local route
// names another preferred source, picks the destination itself as source address; a probe
// never binds its source. So the rule is: either end is a loopback address (127.0.0.0/8,
// ::1), or both ends are the same address. A local route with `src` set to another address
// (AnyIP setups) would escape it.
func isLoopback(local, remote netip.Addr) bool {
	local, remote = local.Unmap(), remote.Unmap()
	return local.IsLoopback() || remote.IsLoopback() || local == remote
}

// connectError explains a failed connect: "probe backend ADDR: connect: CAUSE[: HINT]", with
// Go's "dial tcp ADDR: connect:" and the syscall name taken off CAUSE. CAUSE stays wrapped:
// errors.Is finds syscall.ECONNREFUSED, context.DeadlineExceeded or context.Canceled.
func connectError(addr netip.AddrPort, err error) error {
	cause := err
	var op *net.OpError
	if errors.As(cause, &op) && op.Err != nil {
		cause = op.Err
	}
	var se *os.SyscallError
	if errors.As(cause, &se) {
		cause = se.Err
	}
	// ctx's deadline is the only one the dialer has (no Timeout, no Deadline). Go reports it
	// as "i/o timeout", or as os.ErrDeadlineExceeded when the copy set on the socket fires
	// before ctx is marked done: one error, which errors.Is knows, for both.
	if errors.Is(cause, context.DeadlineExceeded) || errors.Is(cause, os.ErrDeadlineExceeded) {
		cause = context.DeadlineExceeded
	}
	var hint string
	switch {
	case errors.Is(cause, syscall.ECONNREFUSED):
		hint = ": is the server listening?"
	case errors.Is(cause, context.DeadlineExceeded):
		hint = ": no answer, is the address reachable and not filtered?"
	case errors.Is(cause, syscall.EHOSTUNREACH), errors.Is(cause, syscall.ENETUNREACH):
		hint = ": is there a route to the server?"
	}
	return fmt.Errorf("probe backend %s: connect: %w%s", addr, cause, hint)
}
