package netlab

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"
)

// Pair is the smallest lab: a client host and a server host (the device under test) joined by
// one veth, with a pass-through XDP program on the client end so that frames the server sends
// with XDP_TX arrive.
type Pair struct {
	Lab                    *Lab
	Client, Server         *Host
	ClientLink, ServerLink *Link
}

// NewPair builds a Pair: namespaces prefix-client and prefix-server, interfaces clientIf and
// serverIf. On error everything created so far is removed.
func NewPair(prefix, clientIf string, clientAddrs []netip.Prefix, serverIf string, serverAddrs []netip.Prefix) (*Pair, error) {
	p := &Pair{Lab: New(prefix)}
	err := p.build(clientIf, clientAddrs, serverIf, serverAddrs)
	if err != nil {
		p.Lab.Close()
		return nil, err
	}
	return p, nil
}

func (p *Pair) build(clientIf string, clientAddrs []netip.Prefix, serverIf string, serverAddrs []netip.Prefix) error {
	var err error
	if p.Client, err = p.Lab.Host("client"); err != nil {
		return err
	}
	if p.Server, err = p.Lab.Host("server"); err != nil {
		return err
	}
	if p.ClientLink, p.ServerLink, err = Veth(p.Client, clientIf, clientAddrs, p.Server, serverIf, serverAddrs); err != nil {
		return err
	}
	return p.ClientLink.AttachPass()
}

// Close removes the lab.
func (p *Pair) Close() error { return p.Lab.Close() }

// ServeClientAddr listens on addr:port for each addr inside the host and answers every
// connection with the client address the server sees, one line, then closes it: the proof that
// a connection went through with the real client address. It speaks first, as SSH or SMTP do.
// It listens as Go does by default: with MPTCP where the kernel has it. stop closes the
// listeners.
func (h *Host) ServeClientAddr(port int, addrs ...netip.Addr) (stop func(), err error) {
	return h.serveClientAddr(port, true, addrs)
}

// ServeClientAddrTCP is ServeClientAddr listening with plain TCP, as sshd or nginx do: a server
// the socket handoff can serve (the kernel cannot hand connections to MPTCP listeners).
func (h *Host) ServeClientAddrTCP(port int, addrs ...netip.Addr) (stop func(), err error) {
	return h.serveClientAddr(port, false, addrs)
}

func (h *Host) serveClientAddr(port int, mptcp bool, addrs []netip.Addr) (stop func(), err error) {
	var lns []net.Listener
	stop = func() {
		for _, ln := range lns {
			ln.Close()
		}
	}
	for _, a := range addrs {
		var ln net.Listener
		err := h.Do(func() (err error) {
			var lc net.ListenConfig
			lc.SetMultipathTCP(mptcp)
			ln, err = lc.Listen(context.Background(), "tcp", netip.AddrPortFrom(a, uint16(port)).String())
			return err
		})
		if err != nil {
			stop()
			return nil, fmt.Errorf("listen on %s port %d in %s: %w", a, port, h.Name, err)
		}
		lns = append(lns, ln)
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				fmt.Fprintf(c, "%s\n", c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr())
				c.Close()
			}
		}()
	}
	return stop, nil
}

// ClientAddrSeen connects from inside the host to addr (host:port) of a ServeClientAddr server
// and returns the client address that server saw, within timeout.
func (h *Host) ClientAddrSeen(addr string, timeout time.Duration) (string, error) {
	var seen string
	err := h.Do(func() error {
		c, err := net.DialTimeout("tcp", addr, timeout)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(timeout))
		seen, err = bufio.NewReader(c).ReadString('\n')
		return err
	})
	return strings.TrimSpace(seen), err
}
