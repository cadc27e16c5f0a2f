package main

import (
	"context"
	"errors"
	"log"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xsyn-project/xsyn/internal/protect"
	"github.com/xsyn-project/xsyn/internal/repair"
)

// repairInterval is how often serve compares the rules with what attach installed.
const repairInterval = time.Second

// startRepair runs the repair of p's rules each second until ctx is done, with its metrics in
// reg and a line in logger per repair (and per new failure), holding mu during each check. wait
// returns once the repair in progress, if any, has finished: serve never exits half-way through
// putting rules back.
func startRepair(ctx context.Context, p *protect.Protector, reg prometheus.Registerer, mu sync.Locker, logger *log.Logger) (wait func(), err error) {
	rec, ok := p.Rules.(*repair.Recorder)
	if !ok {
		return nil, errors.New("repair the rules: the rules are not recorded") // protect.New always records
	}
	r := repair.New(rec, p.Loader)
	r.Metrics, r.Exclusive = repair.NewMetrics(), mu
	reg.MustRegister(r.Metrics.Collectors()...)
	// Rules without a record (attached by an xsyn from before the repair) cannot be repaired.
	if have, err := rec.Interfaces(); err == nil {
		recorded, _ := rec.Store.Interfaces()
		for _, iface := range have {
			if !slices.Contains(recorded, iface) {
				logger.Printf("%s: its netfilter rules have no record of what attach installed, so they cannot be put back after a firewall reload: run attach for it again", iface)
			}
		}
	}
	ticker := time.NewTicker(repairInterval)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer ticker.Stop()
		r.Run(ctx, ticker.C, repairLogger(logger))
	}()
	return func() { <-done }, nil
}

// repairLogger logs each repair, and each failure unless it is the one logged last for the
// interface (a failure that lasts is counted each second, not logged each second).
func repairLogger(logger *log.Logger) func(repair.Result) {
	failing := map[string]string{}
	return func(res repair.Result) {
		if res.Err == nil {
			delete(failing, res.Iface)
			logger.Printf("%s: put back netfilter rules that were gone: %s", res.Iface, strings.Join(res.Missing, "; "))
			return
		}
		msg := res.Err.Error()
		if len(res.Missing) > 0 {
			msg += " (missing: " + strings.Join(res.Missing, "; ") + ")"
		}
		if failing[res.Iface] == msg {
			return
		}
		failing[res.Iface] = msg
		if res.Iface == "" {
			logger.Printf("cannot check the netfilter rules: %s", msg)
			return
		}
		logger.Printf("%s: cannot put back its netfilter rules: %s", res.Iface, msg)
	}
}

// exclusive serves h, holding mu for the scrapes at path, so that a scrape never reads the rules
// half-way through a repair (it would count a collection error). The landing page, which the
// DaemonSet's probes ask for, never waits.
func exclusive(mu sync.Locker, path string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == path {
			mu.Lock()
			defer mu.Unlock()
		}
		h.ServeHTTP(w, r)
	})
}
