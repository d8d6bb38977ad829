// Command backstage-demo runs the real Backstage test backend on a
// throwaway PostgreSQL in the foreground, for trying runbooks' web.smoke
// steps by hand (`make backstage-up`). Ctrl-C stops both and removes their
// files.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/stagehand-dev/stagehand/internal/backstagetest"
	"github.com/stagehand-dev/stagehand/internal/pgtest"
)

func main() {
	port := flag.Int("port", 7007, "port for the Backstage backend")
	requireAuth := flag.Bool("require-auth", false, "keep Backstage's default auth policy on (API calls then need the printed static token)")
	flag.Parse()
	if err := run(*port, *requireAuth); err != nil {
		fmt.Fprintln(os.Stderr, "backstage-demo:", err)
		os.Exit(1)
	}
}

func run(port int, requireAuth bool) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	fmt.Println("starting PostgreSQL 15...")
	pg, err := pgtest.Start(ctx)
	if err != nil {
		return err
	}
	defer pg.Stop()
	fmt.Printf("PostgreSQL at %s; starting Backstage...\n", pg.DSN(""))
	bs, err := backstagetest.Start(ctx, backstagetest.Options{PG: pg, Port: port, RequireAuth: requireAuth})
	if err != nil {
		return err
	}
	defer bs.Stop()
	fmt.Printf("Backstage backend ready at %s (started in %s)\n", bs.URL, bs.StartupTime.Round(1e6))
	if requireAuth {
		fmt.Printf("static token (for tokenRef env:BACKSTAGE_TOKEN): export BACKSTAGE_TOKEN=%s\n", bs.StaticToken)
	}
	fmt.Println("Ctrl-C to stop")
	<-ctx.Done()
	fmt.Println("stopping")
	return nil
}
