package netlab

import (
	"fmt"
	"net"
	"time"

	"golang.org/x/sys/unix"
)

// Capture reads frames arriving on a link (before the stack, after XDP) from an AF_PACKET socket.
type Capture struct {
	fd int
}

// Capture opens a capture on the link; frames are buffered from now on.
func (l *Link) Capture() (*Capture, error) {
	var c *Capture
	err := l.Host.Do(func() error {
		ifi, err := net.InterfaceByName(l.Name)
		if err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return fmt.Errorf("open packet socket: %w", err)
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}); err != nil {
			unix.Close(fd)
			return fmt.Errorf("bind packet socket to %s: %w", l.Name, err)
		}
		c = &Capture{fd: fd}
		return nil
	})
	return c, err
}

// Next returns the first frame for which match is true, waiting at most timeout. Frames that do
// not match are consumed and dropped.
func (c *Capture) Next(timeout time.Duration, match func([]byte) bool) ([]byte, error) {
	deadline := time.Now().Add(timeout)
	buf := make([]byte, 65536)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return nil, fmt.Errorf("no matching frame within %v", timeout)
		}
		tv := unix.NsecToTimeval(left.Nanoseconds())
		if err := unix.SetsockoptTimeval(c.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			return nil, err
		}
		n, from, err := unix.Recvfrom(c.fd, buf, 0)
		if err == unix.EAGAIN || err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read capture: %w", err)
		}
		// Only frames received on the link, not our own transmissions.
		if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
			continue
		}
		if match(buf[:n]) {
			return append([]byte(nil), buf[:n]...), nil
		}
	}
}

// Close ends the capture.
func (c *Capture) Close() error { return unix.Close(c.fd) }

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// Sender writes raw frames out of a link, as a packet generator would: no checksum help, no
// neighbour resolution. The socket is opened once, inside the link's namespace.
type Sender struct {
	fd int
	to *unix.SockaddrLinklayer
}

// Sender opens a sender on the link.
func (l *Link) Sender() (*Sender, error) {
	var s *Sender
	err := l.Host.Do(func() error {
		ifi, err := net.InterfaceByName(l.Name)
		if err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open packet socket: %w", err)
		}
		s = &Sender{fd: fd, to: &unix.SockaddrLinklayer{Ifindex: ifi.Index}}
		return nil
	})
	return s, err
}

// Send writes the frames and returns how many were sent.
func (s *Sender) Send(frames [][]byte) (int, error) {
	for i, f := range frames {
		for {
			err := unix.Sendto(s.fd, f, 0, s.to)
			if err == unix.ENOBUFS || err == unix.EAGAIN {
				// The veth queue is full: give the receiver time to drain it.
				time.Sleep(50 * time.Microsecond)
				continue
			}
			if err != nil {
				return i, fmt.Errorf("send frame %d: %w", i, err)
			}
			break
		}
	}
	return len(frames), nil
}

// Close closes the sender.
func (s *Sender) Close() error { return unix.Close(s.fd) }

// Send writes frames out of the link once (see Sender).
func (l *Link) Send(frames [][]byte) (int, error) {
	s, err := l.Sender()
	if err != nil {
		return 0, err
	}
	defer s.Close()
	return s.Send(frames)
}
