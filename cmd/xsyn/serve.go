package main

import (
	"context"
	"errors"
	"fmt"
	"html"
	"io"
	"log"
	"net"
	"net/http"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/xsyn-project/xsyn/internal/protect"
	"github.com/xsyn-project/xsyn/metrics"
)

// defaultListen is loopback: the counters say what is protected and how well, which is not for
// every network to read. Listen elsewhere on purpose with --web.listen-address.
const defaultListen = "127.0.0.1:9377"

const serveHelp = `Serves Prometheus metrics: the XDP counters of every interface xsyn protects in this network
namespace (by family, and by reason for passed and dropped packets), netfilter SYNPROXY's
statistics, how each interface is protected (xsyn_attached{mode="netfilter-only"} is the
fallback without XDP), and the exporter's own Go and process metrics. The metrics are listed in
docs/metrics.md.

Every scrape reads the kernel afresh, read-only, from the state attach left behind; nothing is
polled between scrapes. Protection lives in the kernel: stopping or killing serve never affects
it, and a new serve carries on with the same counters. To export another network namespace, run
serve inside it. Listens on 127.0.0.1:9377 unless told otherwise; SIGINT or SIGTERM stop it after
the scrape (and the repair) in progress.

serve also keeps the netfilter rules of the SYNPROXY path in place (--repair, on by default).
A firewall reload (iptables -F, iptables-restore, nft flush ruleset) takes xsyn's chains, and
every port they protect is dead until attach runs again. Each second, serve compares the chains
(and sysctls) of every interface attach protected with what attach installed (recorded in
/run/xsyn/netns-<cookie>/IFACE.json) and, when some are gone, flushed or changed, installs them
again under the lock attach and detach take, logging one line naming the interface and what was
missing, and counting it in xsyn_rules_repairs_total (failures in
xsyn_rules_repair_failures_total). It never undoes a detach: detach forgets the record first.
Interfaces whose statements all take the handoff path have no rules to lose. --repair=false
leaves the rules alone: serve then changes nothing.

Examples:
  xsyn serve
  xsyn serve --web.listen-address 192.0.2.10:9377
  ip netns exec edge xsyn serve --web.listen-address 127.0.0.1:9378
`

func runServe(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("serve", "serve [--web.listen-address ADDR] [--web.telemetry-path PATH] [--repair=false]", serveHelp, stdout)
	addr := fs.String("web.listen-address", defaultListen, "`address` (host:port) to listen on")
	path := fs.String("web.telemetry-path", "/metrics", "`path` under which to serve the metrics")
	repairRules := fs.Bool("repair", true, "each second, put back the netfilter rules of attached interfaces that a firewall reload took")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("no arguments expected, got %q", pos)
	}
	if !strings.HasPrefix(*path, "/") || *path == "/" {
		return usagef("--web.telemetry-path %q: want an absolute path other than / (the landing page), e.g. /metrics", *path)
	}
	if err := requireRoot(); err != nil {
		return err
	}
	p, err := protect.New()
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		metrics.New(metrics.ProtectorSource(p), metrics.Options{Version: version}),
	)
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w (another exporter running? choose another with --web.listen-address)", *addr, err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	logger := log.New(stderr, "xsyn serve: ", log.LstdFlags)
	h := newHandler(reg, *path, logger)
	if *repairRules {
		var mu sync.Mutex
		rctx, cancel := context.WithCancel(ctx)
		wait, err := startRepair(rctx, p, reg, &mu, logger)
		if err != nil {
			cancel()
			return err
		}
		defer func() { cancel(); wait() }()
		h = exclusive(&mu, *path, h)
	}
	logger.Printf("serving metrics on http://%s%s", ln.Addr(), *path)
	return serve(ctx, ln, h, logger)
}

// serve serves h on ln until ctx is done, then shuts down gracefully: the scrape in progress
// finishes, for at most a few seconds.
func serve(ctx context.Context, ln net.Listener, h http.Handler, logger *log.Logger) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ErrorLog: logger}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve http: %w", err)
	case <-ctx.Done():
	}
	logger.Printf("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shut down: %w", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve http: %w", err)
	}
	return nil
}

// newHandler serves the registry at path, one scrape at a time (each reads the kernel), and a
// landing page at /. A scrape that could not read everything still returns what it read; the
// errors go to logger and to xsyn_collection_errors_total.
func newHandler(reg *prometheus.Registry, path string, logger *log.Logger) http.Handler {
	metricsHandler := promhttp.InstrumentMetricHandler(reg, promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorHandling:       promhttp.ContinueOnError,
		ErrorLog:            logger,
		MaxRequestsInFlight: 1,
		Registry:            reg,
	}))
	landing := fmt.Sprintf(`<!DOCTYPE html>
<html><head><title>xsyn exporter</title></head>
<body><h1>xsyn exporter</h1>
<p>xsyn %s: SYN-flood protection counters of this network namespace.</p>
<p><a href="%s">Metrics</a></p>
</body></html>
`, html.EscapeString(version), html.EscapeString(path))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case path:
			metricsHandler.ServeHTTP(w, r)
		case "/":
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			io.WriteString(w, landing)
		default:
			http.NotFound(w, r)
		}
	})
}
