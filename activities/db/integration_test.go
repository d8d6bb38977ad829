package db

// Integration tests against real servers: PostgreSQL 15 (internal/pgtest)
// and MariaDB 10.11 (internal/mysqltest), on plugin databases that a real
// Backstage backend created and then upgraded (catalog 3.9.1 → 4.0.0,
// internal/backstagetest). Steps run as activities in Temporal's test
// activity environment, the way the worker runs them. The Backstage-made
// database of each engine is built once per package run and shared by the
// tests, which put back whatever they change.

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"

	"github.com/stagehand-dev/stagehand/internal/backstagetest"
	"github.com/stagehand-dev/stagehand/internal/localenv"
	"github.com/stagehand-dev/stagehand/internal/mysqltest"
	"github.com/stagehand-dev/stagehand/internal/pgtest"
	"github.com/stagehand-dev/stagehand/internal/steptest"
)

// The password of the MariaDB user reaches the steps through this
// environment variable, as a worker's passwordRef would.
const mysqlPasswordEnv = "STAGEHAND_DBTEST_MYSQL_PASSWORD"

func TestMain(m *testing.M) {
	code := m.Run()
	fixturesMu.Lock()
	for _, f := range fixtures {
		f.stop()
	}
	fixturesMu.Unlock()
	os.Exit(code)
}

// engine is one server with a Backstage-made, upgraded plugin database.
type engine struct {
	name string
	db   Database
	pg   *pgtest.Server
	my   *mysqltest.Server
	// before is db.snapshot's outputs taken after catalog 3.9.1 ran and
	// before 4.0.0 started.
	before map[string]any
	// tablesBefore are the catalog database's tables at that point, read
	// with plain SQL.
	tablesBefore []string
	err          error
}

var (
	fixturesMu sync.Mutex
	fixtures   = map[string]*engine{}
)

func (e *engine) stop() {
	if e.pg != nil {
		_ = e.pg.Stop()
	}
	if e.my != nil {
		_ = e.my.Stop()
	}
}

// upgraded returns the engine ("postgres" or "mariadb") whose plugin
// databases Backstage created with catalog 3.9.1 and then migrated with
// 4.0.0, with the snapshot taken in between.
func upgraded(t *testing.T, name string) *engine {
	t.Helper()
	localenv.SkipIfShort(t, "PostgreSQL, MariaDB and a Backstage backend")
	fixturesMu.Lock()
	defer fixturesMu.Unlock()
	if e, ok := fixtures[name]; ok {
		if e.err != nil {
			t.Fatalf("%s fixture: %v", name, e.err)
		}
		return e
	}
	e := &engine{name: name}
	fixtures[name] = e
	e.err = e.build(t)
	if e.err != nil {
		t.Fatalf("%s fixture: %v", name, e.err)
	}
	return e
}

func (e *engine) build(t *testing.T) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	opts := backstagetest.Options{}
	switch e.name {
	case "postgres":
		srv, err := pgtest.Start(ctx)
		if err != nil {
			return err
		}
		e.pg = srv
		opts.PG = srv
		e.db = Database{Driver: DriverPostgres, Host: srv.Host, Port: srv.Port, User: srv.User, SSLMode: "disable"}
	case "mariadb":
		srv, err := mysqltest.Start(ctx)
		if err != nil {
			return err
		}
		e.my = srv
		opts.MySQL = srv
		e.db = Database{Driver: DriverMySQL, Host: srv.Host, Port: srv.Port, User: srv.User, PasswordRef: "env:" + mysqlPasswordEnv}
		os.Setenv(mysqlPasswordEnv, srv.Password)
	}
	start := func(catalog string) error {
		opts.Catalog = catalog
		begin := time.Now()
		s, err := backstagetest.Start(ctx, opts)
		if err != nil {
			return fmt.Errorf("backstage with catalog %s: %w", catalog, err)
		}
		t.Logf("%s: backstage with catalog %s ready in %s", e.name, catalog, time.Since(begin).Round(time.Millisecond))
		return s.Stop()
	}
	if err := start(backstagetest.CatalogV3); err != nil {
		return err
	}
	out, err := runStep(t, e.acts(t), "db.snapshot", map[string]any{"database": "main"})
	if err != nil {
		return fmt.Errorf("snapshot after catalog 3.9.1: %w", err)
	}
	e.before = out
	e.tablesBefore = e.tables(t, "backstage_plugin_catalog")
	return start(backstagetest.CatalogV4)
}

func (e *engine) acts(t testing.TB) *Activities {
	return &Activities{Databases: map[string]Database{"main": e.db}, BackupDir: t.TempDir()}
}

// query runs a query in one plugin database directly (not through the
// steps) and returns every row's columns as strings.
func (e *engine) query(t testing.TB, dbname, q string, args ...any) [][]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out [][]string
	if e.pg != nil {
		conn, err := pgx.Connect(ctx, e.pg.DSN(dbname))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		rows, err := conn.Query(ctx, q, args...)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		defer rows.Close()
		for rows.Next() {
			vals, err := rows.Values()
			if err != nil {
				t.Fatal(err)
			}
			row := make([]string, len(vals))
			for i, v := range vals {
				row[i] = fmt.Sprint(v)
			}
			out = append(out, row)
		}
		if err := rows.Err(); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		return out
	}
	db, err := sql.Open("mysql", e.my.DSN(dbname))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	for rows.Next() {
		vals := make([]sql.NullString, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		row := make([]string, len(cols))
		for i, v := range vals {
			row[i] = v.String
		}
		out = append(out, row)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return out
}

// tables lists a database's base tables with plain SQL.
func (e *engine) tables(t testing.TB, dbname string) []string {
	q := "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY 1"
	if e.my != nil {
		q = "SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE() AND table_type = 'BASE TABLE' ORDER BY 1"
	}
	var out []string
	for _, r := range e.query(t, dbname, q) {
		out = append(out, r[0])
	}
	return out
}

// exec runs a statement directly in dbname.
func (e *engine) exec(t testing.TB, dbname, stmt string, args ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if e.pg != nil {
		conn, err := pgx.Connect(ctx, e.pg.DSN(dbname))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, stmt, args...); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
		return
	}
	db, err := sql.Open("mysql", e.my.DSN(dbname))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, stmt, args...); err != nil {
		t.Fatalf("%s: %v", stmt, err)
	}
}

// ph is the engine's n-th query placeholder.
func (e *engine) ph(n int) string {
	if e.pg != nil {
		return fmt.Sprintf("$%d", n)
	}
	return "?"
}

// runStep runs a step type the way a worker does (see steptest).
func runStep(t testing.TB, a *Activities, name string, with map[string]any) (map[string]any, error) {
	t.Helper()
	run := steptest.RunStep(t, StepTypes(a), name, with, steptest.StepID("db"))
	return run.Outputs, run.Err
}

func mustStep(t testing.TB, a *Activities, name string, with map[string]any) map[string]any {
	t.Helper()
	return steptest.MustStep(t, StepTypes(a), name, with, steptest.StepID("db")).Outputs
}

// decode turns outputs into a typed value through JSON, as a later step
// would receive them.
func decode[T any](t testing.TB, v any) T {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out T
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("decode %T: %v", out, err)
	}
	return out
}

var engines = []string{"postgres", "mariadb"}

func globTemp(pattern string) ([]string, error) {
	return filepath.Glob(filepath.Join(os.TempDir(), pattern))
}

// closedPort is a port nothing listens on.
func closedPort(t testing.TB) int {
	t.Helper()
	p, err := localenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return p
}
