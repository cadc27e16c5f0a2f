package main

// The DUT's application: TCP listeners on the protected port, served by one thread on the DUT's
// CPU. It is written with raw sockets and blocking system calls, not Go's net package: during a
// flood the generator takes the bench process's CPU at a real-time priority, and a listener
// served by Go's network poller, whose threads are ordinary ones on that CPU, would answer
// seconds late. This thread sleeps in poll(2) on the DUT's CPU at a real-time priority and is
// woken by the kernel itself.
//
// A connection from the legit client gets one line, the client address the server sees (the
// proof that it went through with its real address), and is closed; any other (the established
// scenario's stream) is handed over as a net.Conn.

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"

	"golang.org/x/sys/unix"
)

// listenBacklog is the listeners' accept queue and, for a listener with syncookies, the length of
// the SYN queue past which the kernel answers with cookies (capped by net.core.somaxconn, 4096
// by default).
const listenBacklog = 4096

type server struct {
	stop int // eventfd: written once to end the thread
	done chan error
}

// startServer listens on the protected port, IPv4 and IPv6, in the DUT's namespace.
func (r *rig) startServer() (*server, error) {
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	s := &server{stop: efd, done: make(chan error, 1)}
	ready := make(chan error, 1)
	go func() { s.done <- r.dut.Do(func() error { return r.serve(efd, ready) }) }()
	if err := <-ready; err != nil {
		<-s.done
		unix.Close(efd)
		return nil, err
	}
	return s, nil
}

// Close stops the thread and closes the listeners (and with them their SYN and accept queues).
func (s *server) Close() error {
	_, err := unix.Write(s.stop, []byte{1, 0, 0, 0, 0, 0, 0, 0})
	if err == nil {
		err = <-s.done
	}
	return errors.Join(err, unix.Close(s.stop))
}

func (r *rig) serve(stop int, ready chan<- error) error {
	var fds []int
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	for _, f := range []family{4, 6} {
		fd, err := listenTCP(f, r.port)
		if err != nil {
			ready <- err
			return err
		}
		fds = append(fds, fd)
	}
	// The thread ends with the goroutine (netlab's Do), and its policy with it.
	if err := placeTask(0, r.dutCPU, prioServer); err != nil {
		err = fmt.Errorf("place the server on CPU %d: %w", r.dutCPU, err)
		ready <- err
		return err
	}
	ready <- nil
	pfds := []unix.PollFd{{Fd: int32(fds[0]), Events: unix.POLLIN}, {Fd: int32(fds[1]), Events: unix.POLLIN}, {Fd: int32(stop), Events: unix.POLLIN}}
	for {
		if _, err := unix.Poll(pfds, -1); err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return fmt.Errorf("server: poll: %w", err)
		}
		if pfds[2].Revents != 0 {
			return nil
		}
		for i := range 2 {
			if pfds[i].Revents == 0 {
				continue
			}
			if err := r.acceptAll(fds[i]); err != nil {
				return err
			}
		}
	}
}

// acceptAll accepts until the listener's queue is empty.
func (r *rig) acceptAll(lfd int) error {
	for {
		fd, sa, err := unix.Accept4(lfd, unix.SOCK_CLOEXEC)
		switch {
		case errors.Is(err, unix.EAGAIN):
			return nil
		case errors.Is(err, unix.EINTR), errors.Is(err, unix.ECONNABORTED):
			continue
		case err != nil:
			return fmt.Errorf("server: accept: %w", err)
		}
		r.handle(fd, sa)
	}
}

func (r *rig) handle(fd int, sa unix.Sockaddr) {
	peer := sockaddrAddr(sa)
	if isClient(peer) {
		// A few bytes on a new connection: the write does not block.
		unix.Write(fd, []byte(peer.String()+"\n"))
		unix.Close(fd)
		return
	}
	f := os.NewFile(uintptr(fd), "accepted")
	c, err := net.FileConn(f) // a duplicate in Go's poller
	f.Close()
	if err != nil {
		return
	}
	select {
	case r.accepted <- c:
	default:
		c.Close()
	}
}

func listenTCP(f family, port uint16) (int, error) {
	domain, sa := unix.AF_INET, unix.Sockaddr(&unix.SockaddrInet4{Port: int(port)})
	if f == 6 {
		domain, sa = unix.AF_INET6, &unix.SockaddrInet6{Port: int(port)}
	}
	fd, err := unix.Socket(domain, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("listen %s: %w", f, err)
	}
	err = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	if err == nil && f == 6 {
		err = unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1)
	}
	if err == nil {
		err = unix.Bind(fd, sa)
	}
	if err == nil {
		err = unix.Listen(fd, listenBacklog)
	}
	if err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("listen %s port %d: %w", f, port, err)
	}
	return fd, nil
}

func sockaddrAddr(sa unix.Sockaddr) netip.Addr {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrFrom4(a.Addr)
	case *unix.SockaddrInet6:
		return netip.AddrFrom16(a.Addr).Unmap()
	}
	return netip.Addr{}
}

// isClient says whether addr is on the legit client's link.
func isClient(addr netip.Addr) bool {
	return cliAddr4.Masked().Contains(addr) || cliAddr6.Masked().Contains(addr)
}
