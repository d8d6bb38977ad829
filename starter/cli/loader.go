package cli

import (
	"errors"

	"github.com/stagehand-dev/stagehand/runbooks"
)

// RunbookLoader parses and validates one runbook file against a catalogue
// (runbooks.LoadFile in the binary). Problems come back as a
// *runbooks.ValidationError.
type RunbookLoader func(path string, cat runbooks.Catalogue) (*runbooks.Runbook, error)

// loadRunbookFile is the loader the binary uses: the same one the worker
// uses, so a runbook that validates here loads there.
var loadRunbookFile RunbookLoader = runbooks.LoadFile

// problemsOf returns the located problems an error from a RunbookLoader
// carries, or nil when it is some other failure (e.g. an unreadable file).
func problemsOf(err error) []runbooks.Problem {
	var ve *runbooks.ValidationError
	if errors.As(err, &ve) {
		return ve.Problems
	}
	return nil
}
