// Package cli implements the stagehand command line: one cobra command per
// file, each with an Options struct that holds its flags and arguments and a
// run function that does the work against injected I/O streams and an
// injected Temporal client, so every command can be tested in-process.
//
// Commands report failures as *ExitError carrying one of the documented
// exit codes (ExitOK ... ExitWaitingApproval), so scripts can branch on the
// outcome without parsing text.
package cli

import (
	"io"
	"os"
)

// IOStreams are the standard streams a command reads and writes. Tests
// replace them with buffers.
type IOStreams struct {
	In     io.Reader
	Out    io.Writer
	ErrOut io.Writer
}

// System returns the process's standard streams.
func System() *IOStreams {
	return &IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr}
}
