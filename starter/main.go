// Command stagehand is the command-line client for Stagehand: it validates
// runbooks, starts RunbookWorkflow runs on Temporal, approves or rejects
// their gates, shows and watches their progress, and lists past runs for
// audit. The command logic lives in package cli so it can be tested with
// injected I/O; this file only wires it to the process.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/stagehand-dev/stagehand/starter/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], cli.NewFactory(cli.System()))
	stop()
	os.Exit(code)
}
