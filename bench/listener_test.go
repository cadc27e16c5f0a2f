package main

import (
	"io"
	"slices"
	"strings"
	"testing"
)

func TestListenerFlags(t *testing.T) {
	c, err := parseFlags([]string{"-scenario", "listener", "-listener-rates", "100,2000,0", "-listener-duration", "1s"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.listenerRates, []float64{100, 2000, 0}) || planRuns(c) != 3 {
		t.Errorf("rates %v, %d runs; want 3 steps", c.listenerRates, planRuns(c))
	}
	for _, bad := range []string{"2000,100", "0,100", "-5", "fast", "100,100"} {
		if _, err := parseFlags([]string{"-listener-rates", bad}, io.Discard); err == nil || !strings.Contains(err.Error(), "-listener-rates") {
			t.Errorf("-listener-rates %s: %v", bad, err)
		}
	}
	if c, _ := parseFlags(nil, io.Discard); slices.Contains(c.scenarios, scenarioListener) {
		t.Error("the listener scenario runs by default")
	}
}

func TestFindListener(t *testing.T) {
	steps := []listenerStep{
		{OfferedPPS: 500, Seconds: 2},
		{OfferedPPS: 1000, Seconds: 2},
		{OfferedPPS: 2000, Seconds: 2, SyncookiesSent: 10},
		{OfferedPPS: 5000, Seconds: 2, SyncookiesSent: 900, RingDropped: 1},                       // a ring drop in 10,000 SYNs is noise
		{OfferedPPS: 150000, Seconds: 2, SyncookiesSent: 900, RingDropped: 30000, ListenDrops: 3}, // saturated
	}
	f := findListener(steps)
	if f.cleanBelow != 1000 || f.firstCookies != 2000 || f.firstDrops != 150000 {
		t.Errorf("findings %+v; want clean to 1000, cookies from 2000, drops from 150000", f)
	}
	var b strings.Builder
	writeListener(&b, report{Listener: steps, ListenerBacklog: 4096, ListenerDuration: "2s"})
	for _, want := range []string{"the listener's own cookies from: 2000 SYN/s", "highest rate with neither cookies nor drops: 1000 SYN/s", "| 5000 |"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, b.String())
		}
	}
}
