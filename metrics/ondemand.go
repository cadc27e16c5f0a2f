package metrics

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xsyn-project/xsyn/internal/protect"
)

// On-demand services: one series per service that has on-demand protection configured, so the
// cardinality is what the configuration makes it (at most the XDP maps' 4096 services), and
// none at all without on-demand.

var onDemandLabels = []string{"iface", "family", "destination", "port"}

type onDemandDescs struct {
	cookies, switches, threshold *prometheus.Desc
}

func newOnDemandDescs() onDemandDescs {
	return onDemandDescs{
		cookies: prometheus.NewDesc("xsyn_on_demand_cookies",
			"On-demand services: 1 while XDP answers the service's SYNs with cookies (a flood is on), 0 while the listener answers them itself. "+
				"It switches to 1 at the threshold and back to 0 with the first SYN after a second below half of it.",
			onDemandLabels, nil),
		switches: prometheus.NewDesc("xsyn_on_demand_switches_total",
			"On-demand services: switches between the listener and cookies, both ways, since the service was configured.",
			onDemandLabels, nil),
		threshold: prometheus.NewDesc("xsyn_on_demand_threshold_syns_per_second",
			"On-demand services: the SYN rate (a second) from which XDP answers with cookies (config on-demand, --on-demand).",
			onDemandLabels, nil),
	}
}

func (d onDemandDescs) describe(ch chan<- *prometheus.Desc) {
	ch <- d.cookies
	ch <- d.switches
	ch <- d.threshold
}

func (d onDemandDescs) collect(ch chan<- prometheus.Metric, st protect.Status) {
	for _, od := range st.OnDemand {
		s := od.Service
		labels := []string{st.Iface, s.Family.String(), s.Dst.String(), strconv.Itoa(int(s.Port))}
		cookies := 0.0
		if od.Cookies {
			cookies = 1
		}
		ch <- prometheus.MustNewConstMetric(d.cookies, prometheus.GaugeValue, cookies, labels...)
		ch <- prometheus.MustNewConstMetric(d.switches, prometheus.CounterValue, float64(od.Switches), labels...)
		ch <- prometheus.MustNewConstMetric(d.threshold, prometheus.GaugeValue, float64(od.Threshold), labels...)
	}
}
