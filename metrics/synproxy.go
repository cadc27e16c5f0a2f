package metrics

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// DefaultSynproxyStats is where the kernel keeps netfilter SYNPROXY's statistics for the network
// namespace of the calling thread. /proc/net is the namespace of the process's main thread
// instead; thread-self also gives the right answer to a caller that switched one locked thread
// into another namespace (setns), as the tests do.
const DefaultSynproxyStats = "/proc/thread-self/net/stat/synproxy"

// ReadSynproxyStats reads a /proc/net/stat/synproxy file and sums its per-CPU rows, by column
// name: "syn_received", "cookie_invalid", "cookie_valid", "cookie_retrans", "conn_reopened" (and
// "entries", always 0). The file exists once the nf_synproxy module is loaded.
func ReadSynproxyStats(path string) (map[string]uint64, error) {
	return readProcStats(path, "synproxy statistics", parseSynproxyStats)
}

// readProcStats opens a /proc statistics file and parses it; what names it in errors.
func readProcStats(path, what string, parse func(io.Reader) (map[string]uint64, error)) (map[string]uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", what, err)
	}
	defer f.Close()
	stats, err := parse(f)
	if err != nil {
		return nil, fmt.Errorf("read %s %s: %w", what, path, err)
	}
	return stats, nil
}

// parseSynproxyStats parses the file's format: a header row of column names, then one row per
// possible CPU of hexadecimal numbers, whitespace separated. Columns are found by name, so the
// kernel may add or reorder them.
func parseSynproxyStats(r io.Reader) (map[string]uint64, error) {
	sc := bufio.NewScanner(r)
	if !sc.Scan() {
		if err := sc.Err(); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("empty file, want a header row")
	}
	names := strings.Fields(sc.Text())
	if len(names) == 0 {
		return nil, fmt.Errorf("empty header row")
	}
	sums := make(map[string]uint64, len(names))
	for _, n := range names {
		sums[n] = 0
	}
	for row := 1; sc.Scan(); row++ {
		vals := strings.Fields(sc.Text())
		if len(vals) == 0 {
			continue
		}
		if len(vals) != len(names) {
			return nil, fmt.Errorf("row %d has %d columns, the header %d", row, len(vals), len(names))
		}
		for i, v := range vals {
			n, err := strconv.ParseUint(v, 16, 64)
			if err != nil {
				return nil, fmt.Errorf("row %d, column %s: %w", row, names[i], err)
			}
			sums[names[i]] += n
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return sums, nil
}
