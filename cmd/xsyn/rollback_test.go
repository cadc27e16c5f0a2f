package main

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/xsyn-project/xsyn/internal/protect"
	"github.com/xsyn-project/xsyn/loader"
	"github.com/xsyn-project/xsyn/spec"
)

// fakeChanger records what attachAll does; fail and failRestore make one interface's Apply or
// restore fail.
type fakeChanger struct {
	fail, failRestore, failSnapshot string
	log                             []string
}

func (f *fakeChanger) Snapshot(iface string, _ spec.Spec) (func() error, error) {
	f.log = append(f.log, "snapshot "+iface)
	if iface == f.failSnapshot {
		return nil, errors.New("snapshot rules for " + iface + ": iptables-save: exit status 1")
	}
	return func() error {
		f.log = append(f.log, "restore "+iface)
		if iface == f.failRestore {
			return errors.New("apply rules for " + iface + ": iptables: exit status 4")
		}
		return nil
	}, nil
}

func (f *fakeChanger) Apply(iface string, s spec.Spec, _ loader.Mode) (*protect.Result, error) {
	f.log = append(f.log, "apply "+iface)
	if iface == f.fail {
		return nil, errors.New("another XDP program is attached to " + iface)
	}
	return &protect.Result{Iface: iface, Spec: s}, nil
}

// attach over several interfaces is all or none: each is snapshotted before it changes, and
// when one fails the ones changed before it are put back, last first, and the error says so;
// the failed one is left to protect.Apply, which leaves it as it was.
func TestAttachAllOrNone(t *testing.T) {
	steps := []attachStep{{iface: "d0"}, {iface: "d1"}, {iface: "d2"}}
	for _, tc := range []struct {
		name string
		f    fakeChanger
		log  []string
		err  string // "" : none
	}{
		{"all apply", fakeChanger{}, []string{"snapshot d0", "apply d0", "snapshot d1", "apply d1", "snapshot d2", "apply d2"}, ""},
		{"the first fails", fakeChanger{fail: "d0"}, []string{"snapshot d0", "apply d0"},
			"another XDP program is attached to d0"},
		{"the last fails", fakeChanger{fail: "d2"},
			[]string{"snapshot d0", "apply d0", "snapshot d1", "apply d1", "snapshot d2", "apply d2", "restore d1", "restore d0"},
			"another XDP program is attached to d2\nnothing was changed: d2 failed, and d0, d1, changed before it, were put back as they were"},
		{"the second fails", fakeChanger{fail: "d1"}, []string{"snapshot d0", "apply d0", "snapshot d1", "apply d1", "restore d0"},
			"another XDP program is attached to d1\nnothing was changed: d1 failed, and d0, changed before it, was put back as it was"},
		{"a snapshot fails", fakeChanger{failSnapshot: "d1"}, []string{"snapshot d0", "apply d0", "snapshot d1", "restore d0"},
			"snapshot rules for d1: iptables-save: exit status 1\nnothing was changed: d1 failed, and d0, changed before it, was put back"},
		{"a restore fails", fakeChanger{fail: "d2", failRestore: "d1"},
			[]string{"snapshot d0", "apply d0", "snapshot d1", "apply d1", "snapshot d2", "apply d2", "restore d1", "restore d0"},
			"another XDP program is attached to d2\nd2 failed, and putting back the interfaces changed before it failed too: " +
				"d1: apply rules for d1: iptables: exit status 4; 'xsyn status' shows what each has, 'xsyn detach IFACE' removes xsyn from one"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := attachAll(&tc.f, steps, "auto")
			if !slices.Equal(tc.f.log, tc.log) {
				t.Errorf("did %q, want %q", tc.f.log, tc.log)
			}
			switch {
			case tc.err == "" && err != nil:
				t.Errorf("error %v, want none", err)
			case tc.err == "" && (len(res) != 3 || res[0].Iface != "d0" || res[2].Iface != "d2"):
				t.Errorf("results %+v, want d0, d1, d2 in order", res)
			case tc.err != "" && (err == nil || !strings.HasPrefix(err.Error(), tc.err)):
				t.Errorf("error %v\nwant %s", err, tc.err)
			case tc.err != "" && res != nil:
				t.Errorf("results %+v beside the error", res)
			}
		})
	}
}
