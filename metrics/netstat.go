package metrics

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// DefaultNetstat is where the kernel keeps the TcpExt counters (and IpExt, MPTcpExt, ...) of the
// network namespace of the calling thread: /proc/net/netstat as seen by that thread, for the
// reason given at DefaultSynproxyStats.
const DefaultNetstat = "/proc/thread-self/net/netstat"

// ReadNetstat reads a /proc/net/netstat file and returns its counters by nstat's names: the
// section followed by the counter, as in "TcpExtSyncookiesSent". A counter the running kernel
// does not have is absent.
func ReadNetstat(path string) (map[string]uint64, error) {
	return readProcStats(path, "kernel TCP counters", parseNetstat)
}

// parseNetstat parses the file's format: pairs of lines, each starting with the same section
// name and a colon, the first naming the counters, the second giving their decimal values.
// Counters are found by name, so the kernel may add or reorder them.
func parseNetstat(r io.Reader) (map[string]uint64, error) {
	stats := map[string]uint64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024) // TcpExt's header row alone is over 2 KiB
	for line := 1; sc.Scan(); line++ {
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		section, names, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			return nil, fmt.Errorf("line %d: no section name", line)
		}
		if !sc.Scan() {
			if err := sc.Err(); err != nil {
				return nil, err
			}
			return nil, fmt.Errorf("line %d: section %s has names but no values", line, section)
		}
		line++
		vsection, values, _ := strings.Cut(sc.Text(), ":")
		if vsection != section {
			return nil, fmt.Errorf("line %d: values of section %q, want %q", line, vsection, section)
		}
		ns, vs := strings.Fields(names), strings.Fields(values)
		if len(ns) != len(vs) {
			return nil, fmt.Errorf("line %d: section %s has %d names and %d values", line, section, len(ns), len(vs))
		}
		for i, n := range ns {
			v, err := strconv.ParseUint(vs[i], 10, 64)
			if err != nil {
				return nil, fmt.Errorf("line %d, %s%s: %w", line, section, n, err)
			}
			stats[section+n] = v
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return stats, nil
}
