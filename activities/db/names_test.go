package db

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Plugin database and schema names come from the server's catalog, so
// whoever can create a database there chooses them. TestHostileNames
// creates names that are SQL, path and command-line syntax and checks
// that every step treats them as plain names.

// pgExecIn runs statements in a PostgreSQL database whatever its name
// (the harness's DSN is a URL, which such names would break).
func pgExecIn(t *testing.T, e *engine, dbname string, stmts ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg, err := pgx.ParseConfig(e.pg.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Database = dbname
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, s := range stmts {
		if _, err := conn.Exec(ctx, s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

func pgCount(t *testing.T, e *engine, dbname, table string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg, err := pgx.ParseConfig(e.pg.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Database = dbname
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n string
	if err := conn.QueryRow(ctx, "SELECT count(*)::text FROM "+table).Scan(&n); err != nil {
		t.Fatalf("count %s in %s: %v", table, dbname, err)
	}
	return n
}

// noFilesOutside fails when anything but the backup directory appears in
// parent: a dump written through a name with "/.." in it.
func noFilesOutside(t *testing.T, parent string) {
	t.Helper()
	entries, err := os.ReadDir(parent)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() != "backups" {
			t.Errorf("a file appeared outside the backup directory: %s", filepath.Join(parent, e.Name()))
		}
	}
}

func TestHostileNamesPostgres(t *testing.T) {
	e := upgraded(t, "postgres")
	// "/.." leads a joined path up out of the backup directory; "=" makes
	// libpq read a --dbname as connection settings.
	names := []string{"backstage_plugin_/../../../escaped", "backstage_plugin_a=b port=1"}
	for _, n := range names {
		q := pgx.Identifier{n}.Sanitize()
		e.exec(t, "postgres", "DROP DATABASE IF EXISTS "+q)
		e.exec(t, "postgres", "CREATE DATABASE "+q)
		t.Cleanup(func() { e.exec(t, "postgres", "DROP DATABASE IF EXISTS "+q) })
		pgExecIn(t, e, n, "CREATE TABLE items (id int PRIMARY KEY)", "INSERT INTO items VALUES (1), (2)")
	}
	parent := t.TempDir()
	a := e.acts(t)
	a.BackupDir = filepath.Join(parent, "backups")

	out := decode[BackupOutput](t, mustStep(t, a, "db.backup", map[string]any{"database": "main", "to": "hostile"}))
	noFilesOutside(t, parent)
	dumped := map[string]string{}
	for _, f := range out.Files {
		dumped[f.Database] = f.File
		if !strings.HasPrefix(f.File, "hostile/") || strings.Count(f.File, "/") != 1 {
			t.Errorf("%s dumped to %s, not a file in the backup's directory", f.Database, f.File)
		}
	}
	for _, n := range names {
		if dumped[n] == "" {
			t.Errorf("%q was not dumped: files %+v", n, out.Files)
		}
		pgExecIn(t, e, n, "DELETE FROM items")
	}
	mustStep(t, a, "db.restore", map[string]any{"database": "main", "from": "hostile"})
	for _, n := range names {
		if got := pgCount(t, e, n, "items"); got != "2" {
			t.Errorf("%q: %s rows after the restore, want 2", n, got)
		}
	}
	noFilesOutside(t, parent)
}

// In schema mode pg_dump's --schema is a pattern: *, ., " and upper case
// in a schema's name must not select other schemas, or none.
func TestHostileSchemaNamesPostgres(t *testing.T) {
	e := upgraded(t, "postgres")
	const portal = "stagehand_hostile_schemas"
	e.exec(t, "postgres", "DROP DATABASE IF EXISTS "+portal)
	e.exec(t, "postgres", "CREATE DATABASE "+portal)
	t.Cleanup(func() { e.exec(t, "postgres", "DROP DATABASE IF EXISTS "+portal) })
	schemas := []string{"backstage_plugin_Odd.Name", `backstage_plugin_q"uote`, "backstage_plugin_*"}
	for _, s := range schemas {
		q := pgx.Identifier{s}.Sanitize()
		pgExecIn(t, e, portal, "CREATE SCHEMA "+q, "CREATE TABLE "+q+".items (id int PRIMARY KEY)", "INSERT INTO "+q+".items VALUES (1), (2)")
	}
	db := e.db
	db.PluginDivisionMode = DivisionSchema
	db.Database = portal
	a := e.acts(t)
	a.Databases["schemas"] = db

	out := decode[BackupOutput](t, mustStep(t, a, "db.backup", map[string]any{"database": "schemas", "to": "s"}))
	if len(out.Files) != len(schemas) {
		t.Fatalf("backup files %+v, want one per schema", out.Files)
	}
	for _, s := range schemas {
		pgExecIn(t, e, portal, "DELETE FROM "+pgx.Identifier{s}.Sanitize()+".items")
	}
	mustStep(t, a, "db.restore", map[string]any{"database": "schemas", "from": "s"})
	for _, s := range schemas {
		if got := pgCount(t, e, portal, pgx.Identifier{s, "items"}.Sanitize()); got != "2" {
			t.Errorf("%q: %s rows after the restore, want 2", s, got)
		}
	}
}

// A backslash ends a MySQL string literal early: a database named with
// one must be read as a name, not run as SQL.
func TestHostileNamesMariaDB(t *testing.T) {
	e := upgraded(t, "mariadb")
	name := `backstage_plugin_x\`
	q := quoteIdent(name)
	e.exec(t, "", "DROP DATABASE IF EXISTS "+q)
	e.exec(t, "", "CREATE DATABASE "+q)
	t.Cleanup(func() { e.exec(t, "", "DROP DATABASE IF EXISTS "+q) })
	e.exec(t, "", "CREATE TABLE "+q+".knex_migrations (id int unsigned NOT NULL AUTO_INCREMENT PRIMARY KEY, name varchar(255), batch int, migration_time timestamp NULL)")
	e.exec(t, "", "CREATE TABLE "+q+".knex_migrations_lock (`index` int unsigned NOT NULL AUTO_INCREMENT PRIMARY KEY, is_locked int)")
	e.exec(t, "", "INSERT INTO "+q+".knex_migrations (name, batch, migration_time) VALUES ('20240101_init.js', 1, NOW())")
	e.exec(t, "", "INSERT INTO "+q+".knex_migrations_lock (is_locked) VALUES (1)")

	a := e.acts(t)
	s := decode[Snapshot](t, mustStep(t, a, "db.snapshot", map[string]any{"database": "main"}))
	p, ok := s.Plugins[`x\`]
	if !ok || p.Database != name || p.Count != 1 || p.Latest != "20240101_init.js" || !p.Locked {
		t.Errorf("plugin x\\: %+v (present %v)", p, ok)
	}
	if cat := s.Plugins["catalog"]; cat.Count != 45 || cat.Locked {
		t.Errorf("catalog next to it: %d migrations, locked %v; want 45, not locked", cat.Count, cat.Locked)
	}
}
