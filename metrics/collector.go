// Package metrics exports xsyn's state to Prometheus: the XDP program's verdict counters of every
// protected interface, netfilter SYNPROXY's statistics, the kernel TCP counters that tell whether
// a flood reaches the stack behind them, and how each interface is protected. It
// reads the kernel at scrape time only (read-only, from the pins and maps xsyn leaves behind), so
// an exporter that stops or crashes never affects protection. docs/metrics.md lists the metrics.
package metrics

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xsyn-project/xsyn/internal/protect"
	"github.com/xsyn-project/xsyn/loader"
	"github.com/xsyn-project/xsyn/spec"
)

const namespace = "xsyn"

// Families as labelled. "other" is the counters' slot for frames that are not IP.
const (
	familyIPv4  = "ipv4"
	familyIPv6  = "ipv6"
	familyOther = "other"
)

// Field name prefixes in struct counters (bpf/counters.h) that become a reason label.
const (
	passPrefix = "pass__"
	dropPrefix = "drop__"
)

// synproxyColumns are the columns of /proc/net/stat/synproxy that are exported, each as
// xsyn_netfilter_synproxy_<column>_total, with their help.
var synproxyColumns = []struct{ column, help string }{
	{"syn_received", "SYNs netfilter SYNPROXY answered itself with a cookie SYN-ACK (those XDP passed on, or all of them in netfilter-only mode), summed over CPUs."},
	{"cookie_invalid", "ACKs whose cookie SYNPROXY rejected, summed over CPUs."},
	{"cookie_valid", "ACKs whose cookie SYNPROXY accepted, opening the connection to the server, summed over CPUs."},
	{"cookie_retrans", "Client ACKs with a valid cookie that arrived again while SYNPROXY was still opening the connection to the server, summed over CPUs."},
	{"conn_reopened", "Connections SYNPROXY saw reopened by a new SYN from the client, summed over CPUs."},
}

// tcpExtCounters are the TcpExt counters of /proc/net/netstat that are exported, each as
// xsyn_kernel_<metric>_total, with their help: the kernel's own view, for the whole network
// namespace, of whether SYNs and ACKs reach the TCP stack behind XDP and SYNPROXY. A counter the
// running kernel does not have (TSEcrRejected before Linux 6.15) is not exported.
var tcpExtCounters = []struct{ counter, metric, help string }{
	{"SyncookiesSent", "syncookies_sent",
		"SYN cookies the kernel's TCP listeners sent themselves (TcpExtSyncookiesSent): SYNs that reached a listener whose SYN queue was full, or any SYN with tcp_syncookies=2. " +
			"XDP and SYNPROXY answer the SYNs of protected services before the stack sees them, so a rise means a flood reaches the stack: " +
			"a port or address xsyn does not protect, an interface without xsyn, or SYNs XDP passed on."},
	{"SyncookiesRecv", "syncookies_recv",
		"ACKs with a valid cookie of the kernel's listeners (TcpExtSyncookiesRecv): clients completing a handshake a listener answered with its own cookie. " +
			"xsyn's and SYNPROXY's cookies are not counted here."},
	{"SyncookiesFailed", "syncookies_failed",
		"ACKs to a listener that sent cookies in the last 2 minutes whose cookie was not valid (TcpExtSyncookiesFailed): an ACK flood or forged handshakes reaching the stack, answered with resets."},
	{"ListenOverflows", "listen_overflows",
		"SYNs and handshake ACKs a listener dropped because its accept queue was full (TcpExtListenOverflows): the server does not accept connections as fast as they complete; clients retry or fail."},
	{"ListenDrops", "listen_drops",
		"SYNs and handshake ACKs a listener dropped for any reason (TcpExtListenDrops): listen overflows, a full SYN queue without cookies, no route back, out of memory."},
	{"TCPReqQFullDrop", "reqq_full_drop",
		"SYNs dropped because a listener's SYN queue was full and cookies are off (TcpExtTCPReqQFullDrop, net.ipv4.tcp_syncookies=0): under a flood reaching the stack, the SYNs of real clients are dropped with it."},
	{"TSEcrRejected", "tsecr_rejected",
		"Handshake ACKs the stack rejected because their timestamp echo matches no SYN-ACK it sent (TcpExtTSEcrRejected, Linux 6.15 and later). " +
			"On the SYNPROXY path with timestamps each is a connection that stalls 1 second: the server rejects SYNPROXY's ACK and retransmits its SYN-ACK."},
}

// counterHelp describes the verdict counters that are not a pass or drop reason. A counter added
// to bpf/counters.h is exported without an entry here, with a generic help.
var counterHelp = map[string]string{
	"syn_received":       "SYNs to a protected service, whatever their verdict.",
	"synack_sent":        "SYNs answered from XDP with a SYN cookie SYN-ACK.",
	"ack_cookie_valid":   "ACKs that carried a valid xsyn cookie, passed on to netfilter SYNPROXY (on the handoff path, to the TC program that hands them to the listening socket).",
	"ack_cookie_invalid": "ACKs to a protected service with neither a connection nor a valid cookie, dropped in XDP.",
	"established_passed": "Packets of connections that exist (a confirmed conntrack entry, or on the handoff path a socket), passed to the kernel.",
	"handoff_assigned":   "Handoff path: ACKs with a valid cookie the TC program handed to the listening socket, each a new connection without netfilter.",
	"handoff_refused": "Handoff path: ACKs with a valid cookie the kernel refused to hand to the listening socket; the stack resets those clients. " +
		"Should stay 0: usually an MPTCP listener, or tcp_sack, tcp_timestamps or tcp_window_scaling turned off after the attach.",
}

// Options configure a Collector.
type Options struct {
	Version       string // the version label of xsyn_build_info
	SynproxyStats string // default DefaultSynproxyStats
	Netstat       string // default DefaultNetstat
}

// Collector is a prometheus.Collector that reads xsyn's state when scraped. It must be collected
// from the network namespace xsyn runs in; scrapes are served one at a time.
type Collector struct {
	src      Source
	synproxy string
	netstat  string
	version  string

	mu sync.Mutex // one scrape at a time

	// fields[i] is how counter field i of loader.Fields becomes a metric.
	fields    []fieldMetric
	synDescs  []*prometheus.Desc // by synproxyColumns
	tcpDescs  []*prometheus.Desc // by tcpExtCounters
	attached  *prometheus.Desc
	rules     *prometheus.Desc
	services  *prometheus.Desc
	buildInfo *prometheus.Desc
	onDemand  onDemandDescs
	errors    prometheus.Counter
}

type fieldMetric struct {
	desc   *prometheus.Desc
	reason string // "" unless a pass or drop reason
}

// New returns a Collector reading from src.
func New(src Source, opts Options) *Collector {
	if opts.SynproxyStats == "" {
		opts.SynproxyStats = DefaultSynproxyStats
	}
	if opts.Netstat == "" {
		opts.Netstat = DefaultNetstat
	}
	c := &Collector{
		src:      src,
		synproxy: opts.SynproxyStats,
		netstat:  opts.Netstat,
		version:  opts.Version,
		onDemand: newOnDemandDescs(),
		attached: prometheus.NewDesc("xsyn_attached",
			"1 for each interface xsyn protects, labelled with how: native or generic XDP (in front of netfilter SYNPROXY), or netfilter-only (the fallback without XDP).",
			[]string{"iface", "mode"}, nil),
		rules: prometheus.NewDesc("xsyn_netfilter_rules_complete",
			"1 when the interface has every netfilter chain and jump that xsyn attach installed; 0 when some are gone, "+
				"e.g. a firewall reload replaced the filter table: the ACKs of real clients may then meet no SYNPROXY and fail. "+
				"xsyn status IFACE names what is missing; xsyn attach again (systemctl reload xsyn@IFACE) repairs it.",
			[]string{"iface"}, nil),
		services: prometheus.NewDesc("xsyn_services",
			"Services (family, destination, port) the XDP program protects on the interface, by the path their valid ACKs take: "+
				"handoff (xsyn's cookie, handed to the listening socket) or synproxy (the kernel's cookie, netfilter SYNPROXY); absent in netfilter-only mode.",
			[]string{"iface", "path"}, nil),
		buildInfo: prometheus.NewDesc("xsyn_build_info",
			"1, labelled with the xsyn version and the Go version it was built with.",
			[]string{"version", "goversion"}, nil),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "collection_errors_total",
			Help: "Sources (an interface, the SYNPROXY statistics, the kernel's TCP counters, the list of interfaces) that could not be read during a scrape; the scrape returns everything else.",
		}),
	}
	passed := prometheus.NewDesc("xsyn_passed_total",
		"Packets the XDP program passed to the kernel untouched, by reason (pass__<reason> in bpf/counters.h).",
		[]string{"iface", "family", "reason"}, nil)
	dropped := prometheus.NewDesc("xsyn_dropped_total",
		"Packets the XDP program dropped, by reason (drop__<reason> in bpf/counters.h); forged ACKs are counted in xsyn_ack_cookie_invalid_total instead.",
		[]string{"iface", "family", "reason"}, nil)
	for _, f := range loader.Fields(loader.Counters{}) {
		switch {
		case strings.HasPrefix(f.Name, passPrefix):
			c.fields = append(c.fields, fieldMetric{desc: passed, reason: strings.TrimPrefix(f.Name, passPrefix)})
		case strings.HasPrefix(f.Name, dropPrefix):
			c.fields = append(c.fields, fieldMetric{desc: dropped, reason: strings.TrimPrefix(f.Name, dropPrefix)})
		default:
			help, ok := counterHelp[f.Name]
			if !ok {
				help = fmt.Sprintf("XDP verdict counter %s (struct counters in bpf/counters.h).", f.Name)
			}
			c.fields = append(c.fields, fieldMetric{desc: prometheus.NewDesc(
				prometheus.BuildFQName(namespace, "", f.Name+"_total"),
				help+" Summed over CPUs.", []string{"iface", "family"}, nil)})
		}
	}
	for _, col := range synproxyColumns {
		c.synDescs = append(c.synDescs, prometheus.NewDesc(
			prometheus.BuildFQName(namespace, "netfilter_synproxy", col.column+"_total"), col.help, nil, nil))
	}
	for _, k := range tcpExtCounters {
		c.tcpDescs = append(c.tcpDescs, prometheus.NewDesc(
			prometheus.BuildFQName(namespace, "kernel", k.metric+"_total"), k.help, nil, nil))
	}
	return c
}

// Describe sends every metric's descriptor: they are all known before the first scrape.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	seen := map[*prometheus.Desc]bool{}
	for _, f := range c.fields {
		if !seen[f.desc] {
			seen[f.desc] = true
			ch <- f.desc
		}
	}
	for _, d := range c.synDescs {
		ch <- d
	}
	for _, d := range c.tcpDescs {
		ch <- d
	}
	ch <- c.attached
	ch <- c.rules
	ch <- c.services
	ch <- c.buildInfo
	c.onDemand.describe(ch)
	c.errors.Describe(ch)
}

// Collect reads everything afresh. What cannot be read is counted in
// xsyn_collection_errors_total and reported to the registry as an invalid metric carrying the
// error (promhttp logs it); everything else is still sent.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()

	ch <- prometheus.MustNewConstMetric(c.buildInfo, prometheus.GaugeValue, 1, c.version, runtime.Version())
	if err := c.collectSynproxy(ch); err != nil {
		c.fail(ch, err)
	}
	if err := c.collectNetstat(ch); err != nil {
		c.fail(ch, err)
	}
	ifaces, err := c.src.Interfaces()
	if err != nil {
		c.fail(ch, fmt.Errorf("list protected interfaces: %w", err))
	}
	for _, iface := range ifaces {
		st, err := c.src.Status(iface)
		switch {
		case errors.Is(err, protect.ErrNotProtected):
			// Removed between listing and reading: not an error, just gone.
		case err != nil:
			c.fail(ch, fmt.Errorf("read %s: %w", iface, err))
		default:
			c.collectInterface(ch, st)
		}
	}
	ch <- c.errors
}

func (c *Collector) fail(ch chan<- prometheus.Metric, err error) {
	c.errors.Inc()
	ch <- prometheus.NewInvalidMetric(c.errors.Desc(), err)
}

func (c *Collector) collectSynproxy(ch chan<- prometheus.Metric) error {
	stats, err := ReadSynproxyStats(c.synproxy)
	if err != nil {
		return err
	}
	for i, col := range synproxyColumns {
		if v, ok := stats[col.column]; ok {
			ch <- prometheus.MustNewConstMetric(c.synDescs[i], prometheus.CounterValue, float64(v))
		}
	}
	return nil
}

func (c *Collector) collectNetstat(ch chan<- prometheus.Metric) error {
	stats, err := ReadNetstat(c.netstat)
	if err != nil {
		return err
	}
	for i, k := range tcpExtCounters {
		if v, ok := stats["TcpExt"+k.counter]; ok {
			ch <- prometheus.MustNewConstMetric(c.tcpDescs[i], prometheus.CounterValue, float64(v))
		}
	}
	return nil
}

func (c *Collector) collectInterface(ch chan<- prometheus.Metric, st protect.Status) {
	ch <- prometheus.MustNewConstMetric(c.attached, prometheus.GaugeValue, 1, st.Iface, st.Mode)
	complete := 0.0
	if st.RulesOK() {
		complete = 1
	}
	ch <- prometheus.MustNewConstMetric(c.rules, prometheus.GaugeValue, complete, st.Iface)
	if st.Counters == nil {
		return // netfilter-only: no XDP program, no maps
	}
	var handoff int
	for _, svc := range st.Services {
		if svc.Handoff {
			handoff++
		}
	}
	ch <- prometheus.MustNewConstMetric(c.services, prometheus.GaugeValue, float64(handoff), st.Iface, spec.PathHandoff.String())
	ch <- prometheus.MustNewConstMetric(c.services, prometheus.GaugeValue, float64(len(st.Services)-handoff), st.Iface, spec.PathSynproxy.String())
	c.onDemand.collect(ch, st)
	c.collectCounters(ch, st.Iface, familyIPv4, st.Counters.IPv4)
	c.collectCounters(ch, st.Iface, familyIPv6, st.Counters.IPv6)
	c.collectCounters(ch, st.Iface, familyOther, st.Counters.Other)
}

// collectCounters sends one family's counters. The "other" family (frames that are not IP) only
// has pass and drop reasons: the protected-service counters need an IP header to count anything,
// so their "other" series would be zero forever.
func (c *Collector) collectCounters(ch chan<- prometheus.Metric, iface, family string, cs loader.Counters) {
	for i, f := range loader.Fields(cs) {
		if i >= len(c.fields) {
			break
		}
		m := c.fields[i]
		switch {
		case m.reason != "":
			ch <- prometheus.MustNewConstMetric(m.desc, prometheus.CounterValue, float64(f.Value), iface, family, m.reason)
		case family != familyOther:
			ch <- prometheus.MustNewConstMetric(m.desc, prometheus.CounterValue, float64(f.Value), iface, family)
		}
	}
}
