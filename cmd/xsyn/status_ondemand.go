package main

import (
	"fmt"
	"io"

	"github.com/xsyn-project/xsyn/internal/protect"
	"github.com/xsyn-project/xsyn/loader"
	"github.com/xsyn-project/xsyn/spec"
)

// On-demand services in `xsyn status`: who answers their SYNs now, the rate it was decided on,
// and how often it switched.

// onDemandOf finds the switch of service s in st, nil when s is not on-demand.
func onDemandOf(st protect.Status, s spec.Service) *loader.ServiceOnDemand {
	for i, od := range st.OnDemand {
		if od.Service.Family == s.Family && od.Service.Dst == s.Dst && od.Service.Port == s.Port {
			return &st.OnDemand[i]
		}
	}
	return nil
}

// onDemandState names who answers the SYNs: "listener" or "cookies".
func onDemandState(od loader.ServiceOnDemand) string {
	if od.Cookies {
		return "cookies"
	}
	return "listener"
}

// writeOnDemand prints a line per on-demand service.
func writeOnDemand(w io.Writer, st protect.Status) {
	for _, od := range st.OnDemand {
		s := od.Service
		line := fmt.Sprintf("  on-demand %s %s port %d: ", s.Family, s.Dst, s.Port)
		if od.Cookies {
			line += "COOKIES (flooded)"
		} else {
			line += "the listener answers"
		}
		line += fmt.Sprintf(", %d SYN/s in the last 100 ms, threshold %d", od.Rate, od.Threshold)
		if od.Since > 0 {
			line += fmt.Sprintf(", switched %s ago", od.Since.Round(100_000_000))
		}
		line += fmt.Sprintf(", %d switches", od.Switches)
		if od.Quiet {
			line += "; quiet for a second: the next SYN switches back to the listener"
		}
		fmt.Fprintln(w, line)
	}
}

// onDemandJSON is a service's on_demand in --json (docs/status-json.md).
type onDemandJSON struct {
	Threshold    uint32   `json:"syns_per_second"`
	State        string   `json:"state"`
	Rate         uint64   `json:"rate"`
	SinceSeconds *float64 `json:"since_seconds,omitempty"`
	Switches     uint64   `json:"switches"`
	Quiet        bool     `json:"quiet"`
}

func onDemandToJSON(od *loader.ServiceOnDemand) *onDemandJSON {
	if od == nil {
		return nil
	}
	j := &onDemandJSON{Threshold: od.Threshold, State: onDemandState(*od), Rate: od.Rate, Switches: od.Switches, Quiet: od.Quiet}
	if od.Since > 0 {
		s := od.Since.Seconds()
		j.SinceSeconds = &s
	}
	return j
}
