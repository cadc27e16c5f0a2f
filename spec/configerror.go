package spec

// Errors of a configuration, each at FILE:LINE:COL.

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// ConfigError is one error at a position of a configuration file.
type ConfigError struct {
	File      string
	Line, Col int
	Msg       string
}

func (e *ConfigError) Error() string {
	if e.File == "" {
		return fmt.Sprintf("%d:%d: %s", e.Line, e.Col, e.Msg)
	}
	return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Col, e.Msg)
}

// Unwrap makes every configuration error an ErrInvalid.
func (e *ConfigError) Unwrap() error { return ErrInvalid }

// maxErrors is how many errors ParseConfig reports before it says there are more.
const maxErrors = 20

// err is every error found, in file order.
func (p *parser) err() error {
	if len(p.errs) == 0 {
		return nil
	}
	slices.SortStableFunc(p.errs, func(a, b *ConfigError) int {
		return cmp.Or(cmp.Compare(a.Line, b.Line), cmp.Compare(a.Col, b.Col))
	})
	if len(p.errs) == 1 {
		return p.errs[0]
	}
	errs := make([]error, 0, maxErrors+1)
	for _, e := range p.errs[:min(len(p.errs), maxErrors)] {
		errs = append(errs, e)
	}
	if n := len(p.errs) - maxErrors; n > 0 {
		e := *p.errs[maxErrors]
		e.Msg = fmt.Sprintf("too many errors (%d more)", n)
		errs = append(errs, &e)
	}
	return errors.Join(errs...)
}

// plainMsg is the message of a validation error without what ConfigError says itself.
func plainMsg(err error, pos string) string {
	msg := err.Error()
	for _, prefix := range []string{ErrInvalid.Error() + ": ", pos + ": ", ErrInvalid.Error() + ": "} {
		msg = strings.TrimPrefix(msg, prefix)
	}
	return msg
}
