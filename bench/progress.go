package main

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/xsyn-project/xsyn/internal/term"
)

// progress is the live progress line on stderr: run number, scenario, mode, elapsed and planned
// time of the run, and the rates of the last interval. On a terminal it is one line rewritten in
// place; otherwise (a log, CI) a plain line every few seconds. Lines that stay (a run's result,
// messages) go through logf or Write, which first clear the progress line.
//
// Its goroutine is an ordinary one on the generator's CPU, behind the real-time generator: during
// a flood it runs in the kernel's share for ordinary tasks, so updates may bunch up. The rates are
// measured between two readings, whenever they happen.
type progress struct {
	w     io.Writer
	tty   bool
	every time.Duration
	start time.Time
	total int

	mu    sync.Mutex
	n     int
	shown bool // a progress line is on the terminal
}

func newProgress(w io.Writer, total int) *progress {
	p := &progress{w: w, tty: term.IsTerminal(w), every: 2 * time.Second, start: time.Now(), total: total}
	if p.tty {
		p.every = 250 * time.Millisecond
	}
	return p
}

// logf prints a line that stays.
func (p *progress) logf(format string, a ...any) {
	fmt.Fprintf(p, format+"\n", a...)
}

// Write prints lines that stay.
func (p *progress) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clearLocked()
	return p.w.Write(b)
}

func (p *progress) clearLocked() {
	if p.shown {
		fmt.Fprint(p.w, "\r\x1b[K")
		p.shown = false
	}
}

func (p *progress) show(line string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty {
		fmt.Fprint(p.w, "\r"+line+"\x1b[K")
		p.shown = true
		return
	}
	fmt.Fprintln(p.w, line)
}

// counter reads the frames sent and answered so far.
type counter func() (sent, answered uint64, err error)

// run shows one run's progress until the returned function is called. d is the run's planned
// time; count may be nil (no rates).
func (p *progress) run(label string, d time.Duration, count counter) (done func()) {
	p.mu.Lock()
	p.n++
	idx := p.n
	p.mu.Unlock()
	stop, finished := make(chan struct{}), make(chan struct{})
	start := time.Now()
	go func() {
		defer close(finished)
		t := time.NewTicker(p.every)
		defer t.Stop()
		var last [2]uint64
		lastAt := start
		if count != nil {
			last[0], last[1], _ = count()
		}
		for {
			select {
			case <-stop:
				return
			case now := <-t.C:
				p.show(progressLine(idx, p.total, now.Sub(p.start), label, now.Sub(start), d, rates(count, &last, &lastAt, now)))
			}
		}
	}()
	return func() {
		close(stop)
		<-finished
		p.mu.Lock()
		p.clearLocked()
		p.mu.Unlock()
	}
}

// rates reads count and returns the rates since the last reading, "" without a counter.
func rates(count counter, last *[2]uint64, lastAt *time.Time, now time.Time) string {
	if count == nil {
		return ""
	}
	sent, answered, err := count()
	if err != nil {
		return ""
	}
	sec := now.Sub(*lastAt).Seconds()
	out := fmt.Sprintf("%s Mpps offered, %s Mpps answered", mpps(float64(sent-last[0])/sec), mpps(float64(answered-last[1])/sec))
	*last, *lastAt = [2]uint64{sent, answered}, now
	return out
}

func progressLine(idx, total int, sinceStart time.Duration, label string, elapsed, planned time.Duration, rates string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "[%d/%d, %s] %s: %.1fs/%.1fs", idx, total, sinceStart.Round(time.Second), label, elapsed.Seconds(), planned.Seconds())
	if rates != "" {
		b.WriteString(", " + rates)
	}
	return b.String()
}

// counts is the rig's counter for the progress line: frames the generator sent, and answers
// (SYN-ACKs and RSTs) the sink counted.
func (r *rig) counts() (sent, answered uint64, err error) {
	var sink []benchprogsSinkCounters
	if err := r.progs.BenchSinkCounters.Lookup(uint32(0), &sink); err != nil {
		return 0, 0, err
	}
	for _, c := range sink {
		answered += c.Synack + c.Rst
	}
	sent, err = r.sent()
	return sent, answered, err
}
