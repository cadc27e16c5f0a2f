// Command xsyn-demo builds a two-namespace lab, protects a TCP server with xsyn, floods it with
// spoofed SYNs and forged ACKs while real clients connect, shows what happened, and cleans up.
// Run it with `./quickstart demo` (as root, or a user with sudo).
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/xsyn-project/xsyn/internal/netlab"
	"github.com/xsyn-project/xsyn/internal/packet"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

var (
	inetAddr4 = netip.MustParsePrefix("192.0.2.1/24")
	dutAddr4  = netip.MustParsePrefix("192.0.2.2/24")
	inetAddr6 = netip.MustParsePrefix("2001:db8::1/64")
	dutAddr6  = netip.MustParsePrefix("2001:db8::2/64")
)

const port = 8080

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("xsyn-demo", flag.ContinueOnError)
	xsyn := fs.String("xsyn", "bin/xsyn", "path of the xsyn binary to demonstrate")
	dur := fs.Duration("duration", 5*time.Second, "how long to flood")
	clients := fs.Int("clients", 200, "real client connections to make during the flood")
	rate := fs.Int("rate", 100000, "flood frames per second (the machine's two cores are shared by flood, XDP and clients)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(stderr, "xsyn-demo: must run as root (network namespaces, XDP, netfilter): ./quickstart demo")
		return 1
	}
	bin, err := exec.LookPath(*xsyn)
	if err != nil {
		fmt.Fprintf(stderr, "xsyn-demo: no xsyn binary at %s (make build): %v\n", *xsyn, err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := demo(ctx, bin, *dur, *clients, *rate, stdout); err != nil {
		fmt.Fprintf(stderr, "xsyn-demo: %v\n", err)
		return 1
	}
	return 0
}

func demo(ctx context.Context, bin string, dur time.Duration, clients, rate int, out io.Writer) error {
	say := func(format string, a ...any) { fmt.Fprintf(out, "\n== "+format+"\n", a...) }

	say("building the lab: namespace 'client' (real clients and the attacker) -- veth -- namespace 'server'")
	lab, err := netlab.NewPair("xsyndemo", "i0", []netip.Prefix{inetAddr4, inetAddr6}, "d0", []netip.Prefix{dutAddr4, dutAddr6})
	if err != nil {
		return err
	}
	defer func() {
		lab.Close()
		say("lab removed")
	}()
	inet, dut, il, dl := lab.Client, lab.Server, lab.ClientLink, lab.ServerLink
	stopServer, err := dut.ServeClientAddrTCP(port, dutAddr4.Addr(), dutAddr6.Addr())
	if err != nil {
		return err
	}
	defer stopServer()

	xsynTo := func(w io.Writer, args ...string) error {
		fmt.Fprintf(w, "$ ip netns exec %s xsyn %s\n", dut.Name, strings.Join(args, " "))
		cmd := exec.Command("ip", append([]string{"netns", "exec", dut.Name, bin}, args...)...)
		cmd.Stdout, cmd.Stderr = w, w
		return cmd.Run()
	}
	xsyn := func(args ...string) error { return xsynTo(out, args...) }
	say("protecting the server's port %d", port)
	if err := xsyn("attach", "d0", "--port", fmt.Sprint(port)); err != nil {
		return fmt.Errorf("attach: %w", err)
	}
	defer func() {
		say("detaching")
		xsyn("detach", "d0")
	}()

	say("flooding for %v with spoofed SYNs (random sources, 54- and 74-byte frames, IPv4 and IPv6) and forged ACKs,\n   while %d real clients connect", dur, clients)
	frames, err := floodFrames(il, dl)
	if err != nil {
		return err
	}
	fctx, cancel := context.WithTimeout(ctx, dur)
	defer cancel()
	var sent atomic.Int64
	floodDone := make(chan error, 1)
	go func() { floodDone <- flood(fctx, il, frames, rate, &sent) }()
	// What an operator sees during the attack: the rates over a second, a third of the way in.
	var during strings.Builder
	duringDone := make(chan error, 1)
	go func() {
		select {
		case <-time.After(dur / 3):
			duringDone <- xsynTo(&during, "status", "d0", "--interval", "1s")
		case <-fctx.Done():
			duringDone <- nil
		}
	}()
	res := connectLoop(fctx, inet, clients, dur)
	<-fctx.Done()
	if err := <-floodDone; err != nil {
		return err
	}
	if err := <-duringDone; err != nil {
		return fmt.Errorf("status during the flood: %w\n%s", err, during.String())
	}

	say("results")
	fmt.Fprintf(out, "flood frames sent:        %d (%.0f per second)\n", sent.Load(), float64(sent.Load())/dur.Seconds())
	fmt.Fprintf(out, "real clients served:      %d of %d (IPv4 and IPv6 alternating)\n", res.ok, res.tried)
	if len(res.connect) > 0 {
		fmt.Fprintf(out, "connect (SYN-ACK from XDP): p50 %v, p99 %v, max %v\n", pct(res.connect, 50), pct(res.connect, 99), pct(res.connect, 100))
	}
	if len(res.firstByte) > 0 {
		fmt.Fprintf(out, "first byte from the server: p50 %v, p99 %v, max %v\n", pct(res.firstByte, 50), pct(res.firstByte, 99), pct(res.firstByte, 100))
		if pct(res.firstByte, 50) > 900*time.Millisecond {
			fmt.Fprintln(out, "  (about 1s: this kernel rejects the timestamp echo in SYNPROXY's ACK to the server and the\n   server retransmits its SYN-ACK; see README, Known issues; --no-timestamps avoids it)")
		}
	}
	if res.wrongAddr > 0 {
		fmt.Fprintf(out, "WARNING: %d connections showed the server a wrong client address\n", res.wrongAddr)
	}
	if ct, err := dut.Run("cat", "/proc/sys/net/netfilter/nf_conntrack_count"); err == nil {
		fmt.Fprintf(out, "conntrack entries on the server: %s", ct)
	}
	if ns, err := dut.Run("nstat", "-az", "TcpPassiveOpens", "TcpExtSyncookiesSent"); err == nil {
		fmt.Fprintf(out, "the server's TCP stack (only real clients reach it):\n%s", ns)
	}
	if during.Len() > 0 {
		say("xsyn's view during the flood")
		fmt.Fprint(out, during.String())
	}
	say("xsyn's view after it")
	return xsyn("status", "d0", "--interval", "0")
}

type connectResult struct {
	mu                   sync.Mutex
	tried, ok, wrongAddr int
	connect, firstByte   []time.Duration
}

func pct(d []time.Duration, p int) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[(len(s)-1)*p/100].Round(time.Microsecond)
}

// connectLoop starts n clients spread over dur, alternating families, each on its own, and
// waits for all of them. Connect latency is the handshake, answered from XDP; first byte is when
// the server's greeting arrives, after SYNPROXY has opened the real connection.
func connectLoop(ctx context.Context, h *netlab.Host, n int, dur time.Duration) *connectResult {
	r := &connectResult{}
	var wg sync.WaitGroup
	gap := dur / time.Duration(n+1)
	for i := 0; i < n && ctx.Err() == nil; i++ {
		addr, want := fmt.Sprintf("%s:%d", dutAddr4.Addr(), port), inetAddr4.Addr().String()
		if i%2 == 1 {
			addr, want = fmt.Sprintf("[%s]:%d", dutAddr6.Addr(), port), inetAddr6.Addr().String()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			h.Do(func() error {
				start := time.Now()
				c, err := net.DialTimeout("tcp", addr, 3*time.Second)
				r.mu.Lock()
				defer r.mu.Unlock()
				r.tried++
				if err != nil {
					return nil
				}
				r.connect = append(r.connect, time.Since(start))
				r.mu.Unlock()
				c.SetDeadline(time.Now().Add(3 * time.Second))
				seen, err := bufio.NewReader(c).ReadString('\n')
				c.Close()
				r.mu.Lock()
				if err == nil {
					r.ok++
					r.firstByte = append(r.firstByte, time.Since(start))
					if strings.TrimSpace(seen) != want {
						r.wrongAddr++
					}
				}
				return nil
			})
		}()
		select {
		case <-ctx.Done():
		case <-time.After(gap):
		}
	}
	wg.Wait()
	return r
}

// floodFrames prebuilds spoofed SYNs and forged ACKs from the benchmark ranges 198.18.0.0/15 and
// 2001:2::/48, which no real host uses.
func floodFrames(src, dst *netlab.Link) ([][]byte, error) {
	sm, err := packet.ParseMAC(src.MAC)
	if err != nil {
		return nil, err
	}
	dm, err := packet.ParseMAC(dst.MAC)
	if err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(7, 11))
	var frames [][]byte
	for i := range 8192 {
		tcp := &packet.TCP{SrcPort: uint16(1024 + rng.IntN(60000)), DstPort: port, Seq: rng.Uint32(), Ack: rng.Uint32(), Flags: 0x02, Window: 64240}
		switch i % 4 {
		case 1: // Linux-like SYN, 74 bytes
			tcp.Options = packet.Options(packet.MSS(1460), packet.SACKPerm(), packet.Timestamp(rng.Uint32(), 0), packet.NOP(), packet.WScale(7))
		case 3: // forged ACK
			tcp.Flags = 0x10
		}
		f := packet.Frame{Dst: dm, Src: sm, TCP: tcp}
		if i%8 < 4 {
			f.IPv4 = &packet.IPv4{Src: netip.AddrFrom4([4]byte{198, 18 + byte(rng.IntN(2)), byte(rng.IntN(256)), byte(rng.IntN(256))}), Dst: dutAddr4.Addr(), TTL: 64, DF: true}
		} else {
			var a [16]byte
			copy(a[:], []byte{0x20, 0x01, 0x00, 0x02, 0x00, 0x00})
			for j := 6; j < 16; j++ {
				a[j] = byte(rng.IntN(256))
			}
			f.IPv6 = &packet.IPv6{Src: netip.AddrFrom16(a), Dst: dutAddr6.Addr(), HopLimit: 64}
		}
		frames = append(frames, f.Bytes())
	}
	return frames, nil
}

// flood sends frames round-robin at about rate frames per second, in batches of 256.
func flood(ctx context.Context, l *netlab.Link, frames [][]byte, rate int, sent *atomic.Int64) error {
	const batch = 256
	snd, err := l.Sender()
	if err != nil {
		return err
	}
	defer snd.Close()
	interval := time.Duration(float64(time.Second) * batch / float64(rate))
	next := time.Now()
	for i := 0; ctx.Err() == nil; i = (i + batch) % len(frames) {
		n, err := snd.Send(frames[i:min(i+batch, len(frames))])
		sent.Add(int64(n))
		if err != nil {
			return err
		}
		next = next.Add(interval)
		if d := time.Until(next); d > 0 {
			time.Sleep(d) // pacing, so the clients and the receiver keep a share of the CPUs
		}
	}
	return nil
}
