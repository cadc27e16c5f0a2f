package backend

import (
	"encoding/binary"
	"errors"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// tcpi_options bits (include/uapi/linux/tcp.h); x/sys/unix does not define them.
const (
	tcpiOptTimestamps = 1
	tcpiOptSACK       = 2
	tcpiOptWScale     = 4
	tcpiOptECN        = 8
)

// tcpOptTimestampLen is the timestamp option with its two NOPs (TCPOLEN_TSTAMP_ALIGNED): what
// the kernel takes off the MSS for every segment once timestamps are on.
const tcpOptTimestampLen = 12

// read fills in the options from the connected socket fd.
func (o *Offer) read(fd int) error {
	info, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
	if err != nil {
		return fmt.Errorf("read TCP_INFO: %w", err)
	}
	o.Timestamps = info.Options&tcpiOptTimestamps != 0
	o.SACK = info.Options&tcpiOptSACK != 0
	o.WScaleOK = info.Options&tcpiOptWScale != 0
	o.ECN = info.Options&tcpiOptECN != 0
	if o.WScaleOK {
		o.WScale = sndWScale(info)
	}
	mss, err := repairMSS(fd)
	switch {
	case errors.Is(err, unix.EPERM):
		mss = usedMSS(info)
	case err != nil:
		return err
	}
	o.MSS = uint16(min(mss, 0xffff))
	return nil
}

// repairMSS reads the MSS option the peer sent in its SYN-ACK (rx_opt.mss_clamp), which
// TCP_MAXSEG returns only in repair mode; otherwise it returns the MSS in use. Repair mode is
// left with TCP_REPAIR_OFF_NO_WP, which sends nothing (TCP_REPAIR_OFF sends a window probe).
// Entering repair mode needs CAP_NET_ADMIN: EPERM without it.
func repairMSS(fd int) (int, error) {
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_REPAIR, unix.TCP_REPAIR_ON); err != nil {
		return 0, fmt.Errorf("enter TCP repair mode: %w", err)
	}
	mss, err := unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_MAXSEG)
	if err2 := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_REPAIR, unix.TCP_REPAIR_OFF_NO_WP); err2 != nil {
		// A socket closed in repair mode goes away without a FIN.
		return 0, fmt.Errorf("leave TCP repair mode: %w", err2)
	}
	if err != nil {
		return 0, fmt.Errorf("read TCP_MAXSEG: %w", err)
	}
	return mss, nil
}

// usedMSS is the MSS the connection computes from the SYN-ACK without repair mode: the
// segment size in use (tcpi_snd_mss, which is also what TCP_MAXSEG returns outside repair
// mode) plus the timestamp option the kernel keeps room for. It equals the server's MSS
// unless our own route has the smaller MTU, which then bounds it.
func usedMSS(info *unix.TCPInfo) int {
	mss := int(info.Snd_mss)
	if info.Options&tcpiOptTimestamps != 0 {
		mss += tcpOptTimestampLen
	}
	return mss
}

// sndWScale returns tcpi_snd_wscale, the shift the peer offered. x/sys/unix's TCPInfo leaves
// out the bit fields `__u8 tcpi_snd_wscale : 4, tcpi_rcv_wscale : 4`: they are the byte after
// Options, which Go sees as padding before Rto. The kernel fills it like the rest of the
// struct, and it is read through the pointer GetsockoptTCPInfo returned, never from a copy.
// C bit fields are allocated from the least significant bit on little-endian targets and
// from the most significant on big-endian ones.
func sndWScale(info *unix.TCPInfo) uint8 {
	b := *(*byte)(unsafe.Add(unsafe.Pointer(info), unsafe.Offsetof(info.Options)+1))
	if bigEndian {
		return b >> 4
	}
	return b & 0x0f
}

var bigEndian = binary.NativeEndian.Uint16([]byte{0, 1}) == 1

// The wscale byte must be the first of the two padding bytes between Options and Rto; this
// fails to compile if x/sys/unix ever gives TCPInfo a different shape there (for example by
// adding the bit fields, which sndWScale should then read by name).
var _ = [1]struct{}{}[unsafe.Offsetof(unix.TCPInfo{}.Rto)-unsafe.Offsetof(unix.TCPInfo{}.Options)-3]
