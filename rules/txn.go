package rules

import (
	"fmt"
	"strings"
)

// txn records how to undo each step done, to roll back a failed Apply.
type txn struct {
	undo []undoStep
}

type undoStep struct {
	what string
	fn   func() error
}

// do runs step and, if it succeeded, remembers undo (if any). A nil txn only runs the step.
func (t *txn) do(what string, step, undo func() error) error {
	if err := step(); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if t != nil && undo != nil {
		t.undo = append(t.undo, undoStep{what: what, fn: undo})
	}
	return nil
}

// rollback undoes every step in reverse order. It goes on past failures, so that as much as
// possible is restored, and reports them all.
func (t *txn) rollback() error {
	var errs undoErrors
	for i := len(t.undo) - 1; i >= 0; i-- {
		if err := t.undo[i].fn(); err != nil {
			errs = append(errs, fmt.Errorf("undo %s: %w", t.undo[i].what, err))
		}
	}
	t.undo = nil
	if len(errs) == 0 {
		return nil
	}
	return errs
}

// undoErrors are the failed steps of a rollback, printed on one line.
type undoErrors []error

func (e undoErrors) Error() string {
	msgs := make([]string, len(e))
	for i, err := range e {
		msgs[i] = err.Error()
	}
	return strings.Join(msgs, "; ")
}

func (e undoErrors) Unwrap() []error { return e }
