package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/xsyn-project/xsyn/internal/netlab"
	"github.com/xsyn-project/xsyn/internal/packet"
	"github.com/xsyn-project/xsyn/internal/testutil"
)

func TestServeUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"serve", "eth0"}, `no arguments expected, got ["eth0"]`},
		{[]string{"serve", "--web.telemetry-path", "metrics"}, `want an absolute path other than /`},
		{[]string{"serve", "--web.telemetry-path", "/"}, `want an absolute path other than /`},
		{[]string{"serve", "--listen", ":9377"}, "flag provided but not defined: -listen"},
	} {
		code, out, errOut := runCLI(tc.args...)
		if code != exitUsage || !strings.Contains(out+errOut, tc.want) {
			t.Errorf("xsyn %s: exit %d, want %d saying %q\nstdout: %s\nstderr: %s", strings.Join(tc.args, " "), code, exitUsage, tc.want, out, errOut)
		}
	}
}

// The handler: metrics at the telemetry path, a landing page linking to it at /, 404 elsewhere.
func TestServeHandler(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector())
	srv := httptest.NewServer(newHandler(reg, "/x/metrics", log.New(io.Discard, "", 0)))
	defer srv.Close()
	for _, tc := range []struct {
		path string
		code int
		want string
	}{
		{"/", 200, `<a href="/x/metrics">`},
		{"/x/metrics", 200, "\ngo_goroutines "},
		{"/metrics", 404, ""},
	} {
		resp, err := http.Get(srv.URL + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.code || !strings.Contains(string(body), tc.want) {
			t.Errorf("GET %s: %d, want %d containing %q:\n%s", tc.path, resp.StatusCode, tc.code, tc.want, body)
		}
	}
}

// The exporter as an operator runs it: the built binary inside the protected namespace, scraped
// over HTTP during floods. Killing it changes nothing for protection, and a new one carries on
// with the same counters (daemon-less design).
func TestServeUnderFlood(t *testing.T) {
	requireRootForTest(t)
	l := newE2ELab(t, "xsynsrv", enterers["ip-netns-exec"])
	l.echoServer(t, 8080)
	l.mustXsyn(t, "attach", "d0", "--port", "8080")
	c := nsHTTPClient(l.dut)
	addr := freeLoopbackAddr(t, l.dut)
	url := "http://" + addr + "/metrics"
	synack4 := `xsyn_synack_sent_total{family="ipv4",iface="d0"}`

	first := l.startServe(t, addr)
	if page := c.mustGet(t, "http://"+addr+"/"); !strings.Contains(page, `href="/metrics"`) {
		t.Errorf("landing page does not link to /metrics:\n%s", page)
	}
	const flood1 = 500
	if _, err := l.cliL.Send(l.synFlood(t, flood1, 1)); err != nil {
		t.Fatal(err)
	}
	body := c.waitMetric(t, url, synack4, flood1)
	for _, series := range []string{`xsyn_attached{iface="d0",mode="native"}`, `xsyn_services{iface="d0",path="handoff"}`, `xsyn_services{iface="d0",path="synproxy"}`, "go_goroutines", "process_open_fds", "xsyn_collection_errors_total"} {
		if _, ok := metricValue(body, series); !ok {
			t.Errorf("scrape lacks %s", series)
		}
	}
	if v, _ := metricValue(body, "xsyn_collection_errors_total"); v != 0 {
		t.Errorf("xsyn_collection_errors_total %v, want 0:\n%s", v, first.stderr)
	}

	// Kill the exporter while a second flood is on the wire.
	const flood2 = 2000
	frames, sent := l.synFlood(t, flood2, 2), make(chan error, 1)
	go func() { _, err := l.cliL.Send(frames); sent <- err }()
	first.stop(syscall.SIGKILL)
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	// Protection stayed: a real client still gets XDP's SYN-ACK and through SYNPROXY.
	if _, err := l.connect("192.0.2.2:8080"); err != nil {
		t.Fatalf("client after the exporter was killed: %v", err)
	}

	// A new exporter resumes where the counters are: nothing was reset or missed.
	second := l.startServe(t, addr)
	body = c.waitMetric(t, url, synack4, flood1+flood2+1)
	if v, _ := metricValue(body, `xsyn_ack_cookie_valid_total{family="ipv4",iface="d0"}`); v != 1 {
		t.Errorf("xsyn_ack_cookie_valid_total ipv4 = %v after one client, want 1", v)
	}
	if v, _ := metricValue(body, `xsyn_attached{iface="d0",mode="native"}`); v != 1 {
		t.Errorf("xsyn_attached native = %v after the exporter was killed, want 1", v)
	}

	// SIGTERM: a graceful exit, status 0.
	if err := second.stop(syscall.SIGTERM); err != nil {
		t.Errorf("serve after SIGTERM: %v\n%s", err, second.stderr)
	}
	if !strings.Contains(second.stderr.String(), "shutting down") {
		t.Errorf("serve did not say it shut down:\n%s", second.stderr)
	}
}

// serveProc is a running `xsyn serve`; done is closed when it has exited, with err.
type serveProc struct {
	cmd    *exec.Cmd
	stderr *strings.Builder
	done   chan struct{}
	err    error
}

// stop sends sig and waits for the exit.
func (p *serveProc) stop(sig syscall.Signal) error {
	p.cmd.Process.Signal(sig)
	<-p.done
	return p.err
}

// startServe runs `xsyn serve` in the DUT's namespace, with flags besides the address, and
// waits until it answers.
func (l *e2eLab) startServe(t *testing.T, addr string, flags ...string) *serveProc {
	t.Helper()
	argv := append(append(l.enter(l.dut), xsynBin, "serve", "--web.listen-address", addr), flags...)
	p := &serveProc{cmd: exec.Command(argv[0], argv[1:]...), stderr: &strings.Builder{}, done: make(chan struct{})}
	p.cmd.Stderr = p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() { p.stop(syscall.SIGKILL) })
	c := nsHTTPClient(l.dut)
	testutil.Eventually(t, 10*time.Second, "xsyn serve answering on "+addr, func() error {
		select {
		case <-p.done:
			t.Fatalf("xsyn serve exited before answering (%v):\n%s", p.err, p.stderr)
		default:
		}
		if _, err := c.get("http://" + addr + "/"); err != nil {
			return fmt.Errorf("%w\n%s", err, p.stderr)
		}
		return nil
	})
	return p
}

// nsClient is an HTTP client whose connections are made inside a namespace.
type nsClient struct{ *http.Client }

func nsHTTPClient(h *netlab.Host) nsClient {
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := h.Do(func() (err error) {
			c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
	return nsClient{&http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: dial, DisableKeepAlives: true}}}
}

func (c nsClient) get(url string) (string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return string(b), err
}

func (c nsClient) mustGet(t *testing.T, url string) string {
	t.Helper()
	body, err := c.get(url)
	if err != nil {
		t.Fatal(err)
	}
	return body
}

// waitMetric scrapes until series reaches want (counters move asynchronously to the sender),
// then checks it is exactly want. Gives up after 10s. Returns the last scrape.
func (c nsClient) waitMetric(t *testing.T, url, series string, want float64) string {
	t.Helper()
	var body string
	var v float64
	var ok bool
	_ = testutil.Wait(10*time.Second, func() error { // the check below says what is wrong
		body = c.mustGet(t, url)
		if v, ok = metricValue(body, series); !ok || v < want {
			return errors.New("not yet")
		}
		return nil
	})
	if v != want {
		t.Errorf("%s = %v (found %v), want %v", series, v, ok, want)
	}
	return body
}

// metricValue finds a series (name with its labels as exposed, e.g. `x_total{a="b"}`) in a text
// exposition.
func metricValue(body, series string) (float64, bool) {
	for _, line := range strings.Split(body, "\n") {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			return v, err == nil
		}
	}
	return 0, false
}

// freeLoopbackAddr returns a loopback address with a port nothing listens on in h.
func freeLoopbackAddr(t *testing.T, h *netlab.Host) string {
	t.Helper()
	var addr string
	err := h.Do(func() error {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		addr = ln.Addr().String()
		return ln.Close()
	})
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// synFlood builds n spoofed IPv4 SYNs to the protected port, from random sources.
func (l *e2eLab) synFlood(t *testing.T, n int, seed uint64) [][]byte {
	t.Helper()
	dst, src := mustMAC(t, l.dutL.MAC), mustMAC(t, l.cliL.MAC)
	rng := rand.New(rand.NewPCG(seed, 7))
	frames := make([][]byte, 0, n)
	for range n {
		f := packet.Frame{Dst: dst, Src: src,
			IPv4: &packet.IPv4{Src: netip.AddrFrom4([4]byte{198, 18, byte(rng.IntN(256)), byte(rng.IntN(256))}), Dst: dut4.Addr(), TTL: 64},
			TCP:  &packet.TCP{SrcPort: uint16(1024 + rng.IntN(60000)), DstPort: 8080, Seq: rng.Uint32(), Flags: 0x02, Window: 64240}}
		frames = append(frames, f.Bytes())
	}
	return frames
}
