// Package intent builds the Spec that `xsyn attach` installs and `xsyn explain` describes: what
// the operator asks to protect, from one of three places: a configuration file, the flag form
// (--port and the option flags), or the TCP listeners of the interface (zero-config). Whatever
// the place, the result is made of statements compiled by package spec, so netfilter and XDP
// read one model. The package also checks the statements' TCP options against what their
// servers really offer (backend.Checker).
package intent

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"

	"github.com/xsyn-project/xsyn/internal/host"
	"github.com/xsyn-project/xsyn/spec"
)

// Kind says where a spec came from.
type Kind int

// The sources of a spec.
const (
	FromConfig    Kind = iota // --config FILE
	FromFlags                 // --port and the option flags
	FromListeners             // zero-config: what listens on the interface's addresses
)

// Request is what the command line asked for.
type Request struct {
	Iface  string
	Config string // path of a configuration file; "" for the flag form or zero-config
	// Flags is the flag form. Without Ports (and without Config) it is zero-config: the
	// listening ports of Iface, with the options the flags set. Flags.Stack is filled in by
	// Build.
	Flags spec.Simple
}

// Host is what Build reads of the system. Local reads the caller's network namespace; tests
// give their own.
type Host struct {
	// Stack is what the TCP stack offers on iface. Its error wraps host.ErrNoInterface when
	// there is no such interface.
	Stack func(iface string) (spec.Stack, error)
	// Addrs are the addresses of iface.
	Addrs func(iface string) ([]netip.Addr, error)
	// Listening is zero-config: the listening ports of iface as services.
	Listening func(iface string) (spec.Spec, error)
}

// Local is the Host of the caller's network namespace.
func Local() Host {
	return Host{Stack: host.LocalStack, Addrs: host.Addrs, Listening: ListeningSpec}
}

// Built is the spec of one interface and what it was built from.
type Built struct {
	Iface string
	Kind  Kind
	Spec  spec.Spec
	// Stack is the local stack the default TCP options come from. It is nil when the interface
	// could not be read (StackErr says why): the defaults are then xsyn's own
	// (spec.DefaultOptions), not this host's.
	Stack    *spec.Stack
	StackErr error
	Addrs    []netip.Addr // of the interface, for servers on a wildcard destination
}

// FlagError is an error in the flag form: a usage error.
type FlagError struct{ Err error }

func (e *FlagError) Error() string { return e.Err.Error() }
func (e *FlagError) Unwrap() error { return e.Err }

// Build makes the spec of req.Iface from the source the request names. A configuration file
// with errors returns them all (errors.Join of *spec.ConfigError); errors in the flag form are
// *FlagError. A missing interface is not an error here (a configuration can be read for an
// interface that does not exist yet) except for zero-config, which needs its listeners; it is
// in Built.StackErr.
func Build(req Request, h Host) (*Built, error) {
	b := &Built{Iface: req.Iface}
	if st, err := h.Stack(req.Iface); err != nil {
		b.StackErr = err
	} else {
		b.Stack = &st
		if b.Addrs, err = h.Addrs(req.Iface); err != nil {
			return nil, err
		}
	}
	f := req.Flags
	f.Stack = b.Stack
	var err error
	switch {
	case req.Config != "":
		b.Kind = FromConfig
		var cfg spec.Config
		if cfg, err = spec.ParseConfigFile(req.Config, b.Stack); err != nil {
			return nil, err
		}
		b.Spec, err = cfg.For(req.Iface)
	case len(f.Ports) > 0:
		b.Kind = FromFlags
		if b.Spec, err = f.Build(); err != nil {
			err = &FlagError{err}
		}
	default:
		b.Kind = FromListeners
		if b.StackErr != nil {
			return nil, b.StackErr
		}
		b.Spec, err = listening(req.Iface, f, h)
	}
	if err != nil {
		return nil, err
	}
	return b, nil
}

// BuildAll makes the spec of every interface req covers: req.Iface's alone when it names one
// (Build), else, for a configuration file, of each interface its statements name in inface,
// in name order, each with its own stack's default options. A statement that names none (no
// inface, or `inface not ...`) is an error then, at its line: it would apply to interfaces
// nobody named. Like Build, a missing interface is only in its Built.StackErr.
func BuildAll(req Request, h Host) ([]*Built, error) {
	if req.Iface != "" {
		b, err := Build(req, h)
		if err != nil {
			return nil, err
		}
		return []*Built{b}, nil
	}
	if req.Config == "" {
		return nil, errors.New("build spec: no interface and no configuration file")
	}
	ifaces, err := ConfigInterfaces(req.Config)
	if err != nil {
		return nil, err
	}
	out := make([]*Built, 0, len(ifaces))
	for _, iface := range ifaces {
		r := req
		r.Iface = iface
		b, err := Build(r, h)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

// ConfigInterfaces reads a configuration file and lists the interfaces its statements name
// (spec.Config.Interfaces), for a command line that names none. Every statement must name its
// interfaces then: one that names none is a *spec.ConfigError at its line, saying to name the
// interface, and so is a file without statements. Errors in the file are ParseConfigFile's.
func ConfigInterfaces(file string) ([]string, error) {
	src, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	cfg, err := spec.ParseConfig(file, src, nil)
	if err != nil {
		return nil, err
	}
	if len(cfg.Statements) == 0 {
		return nil, fmt.Errorf("%s has no synproxy statement: nothing to protect", file)
	}
	lines := strings.Split(string(src), "\n")
	var errs []error
	seen := map[spec.Pos]bool{}
	for _, st := range cfg.Statements {
		in := st.Match.Inface
		if !in.Any() && !in.Not || seen[st.Pos] {
			continue
		}
		seen[st.Pos] = true // one error for a statement, not one per family
		which := "every interface (it has no inface)"
		if in.Not {
			which = "every interface but " + strings.Join(in.Names, ", ") + " (inface not)"
		}
		errs = append(errs, &spec.ConfigError{File: st.Pos.File, Line: st.Pos.Line, Col: column(lines, st.Pos.Line),
			Msg: "the statement applies to " + which + ", and no interface was named: name the one to protect " +
				"on the command line (IFACE before --config), or give the statement inface IFACE"})
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return cfg.Interfaces(), nil
}

// column is where the text of line n (from 1) begins, counted from 1.
func column(lines []string, n int) int {
	if n < 1 || n > len(lines) {
		return 1
	}
	l := lines[n-1]
	return len(l) - len(strings.TrimLeft(l, " \t")) + 1
}

// listening is zero-config: the listening services of iface, with the options of the flags,
// compiled into statements as the flag form is.
func listening(iface string, f spec.Simple, h Host) (spec.Spec, error) {
	ls, err := h.Listening(iface)
	if err != nil {
		return spec.Spec{}, err
	}
	svcs := make([]spec.Service, len(ls.Services))
	for i, svc := range ls.Services {
		o, ttl, err := f.Options(svc.Family)
		if err != nil {
			return spec.Spec{}, &FlagError{err}
		}
		svc.Options, svc.TTL = o, ttl
		svcs[i] = svc
	}
	return spec.FromServices(spec.DefaultSettings(), iface, svcs)
}
