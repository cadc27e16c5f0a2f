// Package repair keeps xsyn's netfilter rules in place after a firewall reload takes them: a
// Store of the rules each interface had applied, written by every attach through a Recorder and
// removed by detach, and a Repairer that `xsyn serve` runs each second to compare the live
// chains with it and apply them again.
package repair

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/xsyn-project/xsyn/loader"
	"github.com/xsyn-project/xsyn/rules"
)

// Record is what attach applied to one interface's netfilter rules.
type Record struct {
	// Plan is the plan applied: what a repair applies again.
	Plan rules.Plan
	// Live is the interface's rules as iptables listed them right after (rules.Applier.Snapshot):
	// what a check compares the live chains with.
	Live rules.Plan
	// Originals are the sysctls' values before xsyn changed them, as XSYN-SAVED recorded them:
	// a repair puts back the records a reload took.
	Originals map[string]string
	// Ifindex is the interface's index when the plan was applied: an interface deleted and made
	// again under the same name is not repaired (attach never protected it).
	Ifindex int
}

// Store keeps one Record per interface of a network namespace, as a file <iface>.json in Dir.
type Store struct{ Dir string }

// DefaultDir is where the records of the calling thread's network namespace live:
// /run/xsyn/netns-<cookie>/, beside the writers' lock of that namespace. /run is shared by
// `ip netns exec`, and the netns cookie is never reused while the kernel runs; a reboot, which
// takes the rules, empties it.
func DefaultDir() (string, error) {
	cookie, err := loader.NetnsCookie()
	if err != nil {
		return "", err
	}
	return filepath.Join(loader.LockDir, fmt.Sprintf("netns-%d", cookie)), nil
}

// NewStore returns the Store of the calling thread's network namespace.
func NewStore() (*Store, error) {
	dir, err := DefaultDir()
	if err != nil {
		return nil, err
	}
	return &Store{Dir: dir}, nil
}

const recordSuffix = ".json"

func (s *Store) path(iface string) (string, error) {
	// Interface names never hold '/' or ':' and are never "." or ".."; a name that does is no
	// record's. Temporary files have a ':' in their name, so they are never taken for a record.
	if iface == "" || iface == "." || iface == ".." || strings.ContainsAny(iface, "/:\x00") {
		return "", fmt.Errorf("%w %q", rules.ErrBadInterfaceName, iface)
	}
	return filepath.Join(s.Dir, iface+recordSuffix), nil
}

// Save writes r as iface's record, atomically: a reader sees the old record or the new one.
func (s *Store) Save(iface string, r Record) error {
	path, err := s.path(iface)
	if err != nil {
		return fmt.Errorf("save the applied rules: %w", err)
	}
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("save the applied rules of %s: %w", iface, err)
	}
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return fmt.Errorf("save the applied rules of %s: %w", iface, err)
	}
	f, err := os.CreateTemp(s.Dir, "tmp:"+iface+":*")
	if err != nil {
		return fmt.Errorf("save the applied rules of %s: %w", iface, err)
	}
	_, werr := f.Write(b)
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(f.Name(), path)
	}
	if werr != nil {
		os.Remove(f.Name())
		return fmt.Errorf("save the applied rules of %s: %w", iface, werr)
	}
	return nil
}

// Load reads iface's record; ok is false when there is none.
func (s *Store) Load(iface string) (r Record, ok bool, err error) {
	path, err := s.path(iface)
	if err != nil {
		return Record{}, false, fmt.Errorf("read the applied rules: %w", err)
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return Record{}, false, nil
	}
	if err != nil {
		return Record{}, false, fmt.Errorf("read the applied rules of %s: %w", iface, err)
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return Record{}, false, fmt.Errorf("read the applied rules of %s from %s: %w", iface, path, err)
	}
	if r.Plan.Iface != iface || r.Live.Iface != iface {
		return Record{}, false, fmt.Errorf("read the applied rules of %s from %s: the record is %q's", iface, path, r.Plan.Iface)
	}
	return r, true, nil
}

// Delete removes iface's record; none is fine.
func (s *Store) Delete(iface string) error {
	path, err := s.path(iface)
	if err != nil {
		return fmt.Errorf("forget the applied rules: %w", err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("forget the applied rules of %s: %w", iface, err)
	}
	return nil
}

// Interfaces lists, sorted, the interfaces that have a record.
func (s *Store) Interfaces() ([]string, error) {
	entries, err := os.ReadDir(s.Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list the applied rules: %w", err)
	}
	var out []string
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), recordSuffix)
		if ok && e.Type().IsRegular() && !strings.Contains(name, ":") {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out, nil
}
