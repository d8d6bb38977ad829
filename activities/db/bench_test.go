package db

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stagehand-dev/stagehand/internal/benchreport"
	"github.com/stagehand-dev/stagehand/internal/pgtest"
)

// BenchmarkSnapshot: db.snapshot of a PostgreSQL server holding 10 plugin
// databases with 500 knex_migrations rows in total and a few tables each,
// against the manual way (the wiki's runbook): `pg_dump --schema-only` of
// the same 10 databases, measured in the same process. It reports the
// snapshot's time per op (ns/op), the baseline's (pgdump-ns/op) and how
// many times faster the snapshot is (speedup). Target: under 2 s.
func BenchmarkSnapshot(b *testing.B) {
	srv := pgtest.New(b)
	ctx := context.Background()
	const plugins, migrationsPer = 10, 50
	var names []string
	for i := range plugins {
		name := fmt.Sprintf("backstage_plugin_bench%02d", i)
		names = append(names, name)
		pgExec(b, srv.DSN("postgres"), "CREATE DATABASE "+name)
		stmts := []string{
			`CREATE TABLE knex_migrations (id serial PRIMARY KEY, name varchar(255), batch int, migration_time timestamptz)`,
			`CREATE TABLE knex_migrations_lock ("index" serial PRIMARY KEY, is_locked int)`,
			`INSERT INTO knex_migrations_lock (is_locked) VALUES (0)`,
			fmt.Sprintf(`INSERT INTO knex_migrations (name, batch, migration_time)
			 SELECT format('2024%%s_migration_%%s.js', lpad(g::text, 6, '0'), g), 1 + g / 20, now() FROM generate_series(1, %d) g`, migrationsPer),
		}
		for tbl := range 5 {
			stmts = append(stmts,
				fmt.Sprintf(`CREATE TABLE t%d (id uuid PRIMARY KEY, entity_ref text NOT NULL, body jsonb, updated_at timestamptz, n int)`, tbl),
				fmt.Sprintf(`CREATE INDEX t%d_ref ON t%d (entity_ref)`, tbl, tbl))
		}
		for _, s := range stmts {
			pgExec(b, srv.DSN(name), s)
		}
	}
	a := &Activities{Databases: map[string]Database{"main": {Driver: DriverPostgres, Host: srv.Host, Port: srv.Port, User: srv.User, SSLMode: "disable"}}}
	// A first run outside the timer proves the setup and warms the caches
	// for both sides alike.
	s, err := a.Snapshot(ctx, SnapshotInput{Database: "main"})
	if err != nil {
		b.Fatal(err)
	}
	total := 0
	for _, p := range s.Plugins {
		total += p.Count
	}
	if len(s.Plugins) != plugins || total != plugins*migrationsPer {
		b.Fatalf("snapshot saw %d plugins and %d migrations, want %d and %d", len(s.Plugins), total, plugins, plugins*migrationsPer)
	}
	pgDump := func() {
		for _, n := range names {
			cmd := exec.Command("pg_dump", "--schema-only", "--host", srv.Host, "--port", fmt.Sprint(srv.Port), "--username", srv.User, "--dbname", n)
			cmd.Env = append(os.Environ(), "PGCONNECT_TIMEOUT=15")
			if out, err := cmd.Output(); err != nil || !strings.Contains(string(out), "knex_migrations") {
				b.Fatalf("pg_dump %s: %v", n, err)
			}
		}
	}
	pgDump()

	b.ResetTimer()
	for b.Loop() {
		if _, err := a.Snapshot(ctx, SnapshotInput{Database: "main"}); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	perSnapshot := b.Elapsed() / time.Duration(b.N)

	const baselineRuns = 3
	begin := time.Now()
	for range baselineRuns {
		pgDump()
	}
	perDump := time.Since(begin) / baselineRuns
	b.ReportMetric(float64(perDump.Nanoseconds()), "pgdump-ns/op")
	b.ReportMetric(float64(perDump)/float64(perSnapshot), "speedup")
	b.Logf("db.snapshot of %d plugin databases (%d migrations): %s per op; pg_dump --schema-only of the same: %s (%.1fx)",
		plugins, total, perSnapshot.Round(time.Microsecond), perDump.Round(time.Microsecond), float64(perDump)/float64(perSnapshot))
	benchreport.Record(b, benchreport.Row{Benchmark: "BenchmarkSnapshot",
		Metric: fmt.Sprintf("db.snapshot, %d plugin databases, %d migrations", plugins, total),
		Value:  float64(perSnapshot) / float64(time.Millisecond), Unit: "ms",
		Baseline: float64(perDump) / float64(time.Millisecond), BaselineWhat: "pg_dump --schema-only", Target: "value < 2000"})
}

func pgExec(b testing.TB, dsn, stmt string) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, stmt); err != nil {
		b.Fatalf("%s: %v", stmt, err)
	}
}
