package db

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stagehand-dev/stagehand/internal/steptest"
)

// TestUpgradeReportsBackstageMigrations: Backstage's catalog 3.9.1 made the
// plugin databases, db.snapshot read them, catalog 4.0.0 started on the
// same database; db.verifyMigrations reports exactly the migrations 4.0.0
// applied (read back here with plain SQL), the schema diff and that a
// rollback is not safe.
func TestUpgradeReportsBackstageMigrations(t *testing.T) {
	for _, name := range engines {
		t.Run(name, func(t *testing.T) {
			e := upgraded(t, name)
			before := decode[Snapshot](t, e.before)
			cat, ok := before.Plugins["catalog"]
			if !ok {
				t.Fatalf("before: no catalog plugin in %v", before.Summary)
			}
			if cat.Count != 43 || len(cat.Migrations) != 43 || cat.Database != "backstage_plugin_catalog" || cat.Locked || cat.NoKnex {
				t.Errorf("before: catalog %d migrations (%d listed), database %s, locked %v: want 43 from catalog 3.9.1",
					cat.Count, len(cat.Migrations), cat.Database, cat.Locked)
			}
			if _, ok := before.Plugins["auth"]; !ok {
				t.Errorf("before: no auth plugin: %v", before.Summary)
			}
			if len(cat.Tables) < 10 || len(cat.Tables["knex_migrations"].Columns) == 0 {
				t.Errorf("before: catalog tables %d, knex_migrations columns %v", len(cat.Tables), cat.Tables["knex_migrations"].Columns)
			}
			t.Logf("before: %s", strings.Join(before.Summary, " | "))

			// What Backstage applied, read directly: the rows of the newest batch.
			rows := e.query(t, "backstage_plugin_catalog",
				"SELECT name, batch FROM knex_migrations WHERE batch = (SELECT MAX(batch) FROM knex_migrations) ORDER BY id")
			var applied []NewMigration
			for _, r := range rows {
				b, _ := strconv.Atoi(r[1])
				applied = append(applied, NewMigration{Name: r[0], Batch: b})
			}
			if len(applied) != 2 {
				t.Fatalf("catalog 4.0.0 applied %d migrations in its batch, want 2: %v", len(applied), applied)
			}

			a := e.acts(t)
			out := mustStep(t, a, "db.verifyMigrations", map[string]any{
				"database": "main", "before": e.before,
				"expect": map[string]any{"catalog": applied[1].Name},
			})
			v := decode[VerifyOutput](t, out)
			got := v.Plugins["catalog"]
			if !slices.Equal(got.NewMigrations, applied) {
				t.Errorf("newMigrations %v, want exactly what Backstage applied: %v", got.NewMigrations, applied)
			}
			if got.NewPlugin {
				t.Error("catalog reported as a new plugin")
			}
			for p, d := range v.Plugins {
				if p != "catalog" && len(d.NewMigrations) > 0 {
					t.Errorf("plugin %s: new migrations %v, but only the catalog was upgraded", p, d.NewMigrations)
				}
			}
			// Catalog 4.0.0's two migrations tune PostgreSQL storage
			// parameters and do nothing on MySQL: refresh_state gets
			// autovacuum scale factors, and the search table's n_distinct,
			// which 3.9.1 set to -1, is reset because the table is empty.
			if name == "postgres" {
				want := []string{"refresh_state: +autovacuum_analyze_scale_factor=0.01", "refresh_state: +autovacuum_vacuum_scale_factor=0.01",
					"search: -entity_id.n_distinct=-1"}
				if !slices.Equal(got.OptionsChanged, want) {
					t.Errorf("optionsChanged %q, want %q", got.OptionsChanged, want)
				}
			} else if len(got.OptionsChanged) != 0 {
				t.Errorf("optionsChanged on MySQL: %q", got.OptionsChanged)
			}
			// Tables: exactly the difference of the table lists read with
			// plain SQL before and after (the backend's scheduler may
			// create its backstage_backend_tasks__* tables in the plugin
			// database on either start).
			tablesAfter := e.tables(t, "backstage_plugin_catalog")
			if want := minus(tablesAfter, e.tablesBefore); !slices.Equal(got.TablesAdded, want) && len(got.TablesAdded)+len(want) > 0 {
				t.Errorf("tablesAdded %q, want %q", got.TablesAdded, want)
			}
			if want := minus(e.tablesBefore, tablesAfter); !slices.Equal(got.TablesRemoved, want) && len(got.TablesRemoved)+len(want) > 0 {
				t.Errorf("tablesRemoved %q, want %q", got.TablesRemoved, want)
			}
			if n := len(got.ColumnsAdded) + len(got.ColumnsRemoved) + len(got.ColumnsChanged) + len(got.IndexesAdded) + len(got.IndexesRemoved); n != 0 {
				t.Errorf("column/index changes reported that catalog 4.0.0 does not make: %+v", got)
			}
			t.Logf("catalog diff: tables +%v -%v, columns +%v -%v ~%v, indexes +%v -%v, options %v",
				got.TablesAdded, got.TablesRemoved, got.ColumnsAdded, got.ColumnsRemoved, got.ColumnsChanged, got.IndexesAdded, got.IndexesRemoved, got.OptionsChanged)
			if v.RollbackSafe {
				t.Error("rollbackSafe is true after catalog 4.0.0 migrated")
			}
			for _, w := range []string{"catalog (2 new)", "The migration directory is corrupt"} {
				if !strings.Contains(v.RollbackReason, w) {
					t.Errorf("rollbackReason %q does not say %q", v.RollbackReason, w)
				}
			}
			summary := strings.Join(v.Summary, "\n")
			if !strings.Contains(summary, fmt.Sprintf("catalog: 2 new migrations in batch %d", applied[0].Batch)) {
				t.Errorf("summary:\n%s", summary)
			}
			if v.After.Plugins["catalog"].Count != 45 || v.After.Plugins["catalog"].Latest != applied[1].Name {
				t.Errorf("after: catalog %d migrations, latest %s; want 45, %s", v.After.Plugins["catalog"].Count, v.After.Plugins["catalog"].Latest, applied[1].Name)
			}
			t.Logf("verify: %s", strings.Join(v.Summary, " | "))

			// The fresh snapshot compares clean with itself: nothing migrated since.
			again := decode[VerifyOutput](t, mustStep(t, a, "db.verifyMigrations", map[string]any{"database": "main", "before": out["after"]}))
			if !again.RollbackSafe || len(again.Plugins["catalog"].NewMigrations) != 0 {
				t.Errorf("verify against the after snapshot: rollbackSafe %v, new %v", again.RollbackSafe, again.Plugins["catalog"].NewMigrations)
			}
		})
	}
}

// TestVerifyFailsNamingTheProblem: a held knex_migrations_lock, a deleted
// migration row and a dropped plugin database each fail verifyMigrations
// with a message naming plugin (and migration). Each change is undone.
func TestVerifyFailsNamingTheProblem(t *testing.T) {
	for _, name := range engines {
		t.Run(name, func(t *testing.T) {
			e := upgraded(t, name)
			a := e.acts(t)

			// A plugin database of our own to drop, with Knex's tables.
			probe := "backstage_plugin_probe"
			createProbe(t, e, probe)
			base := mustStep(t, a, "db.snapshot", map[string]any{"database": "main"})
			if _, ok := decode[Snapshot](t, base).Plugins["probe"]; !ok {
				t.Fatalf("snapshot does not list the probe plugin: %v", base["summary"])
			}
			verify := func() error {
				_, err := runStep(t, a, "db.verifyMigrations", map[string]any{"database": "main", "before": base})
				return err
			}
			if err := verify(); err != nil {
				t.Fatalf("unchanged databases: %v", err)
			}

			t.Run("held lock", func(t *testing.T) {
				e.exec(t, "backstage_plugin_catalog", "UPDATE knex_migrations_lock SET is_locked = 1")
				defer e.exec(t, "backstage_plugin_catalog", "UPDATE knex_migrations_lock SET is_locked = 0")
				steptest.WantAppError(t, verify(), "MigrationLocked", true, []string{"plugin catalog", "knex_migrations_lock", "backstage_plugin_catalog"})
			})
			t.Run("deleted migration row", func(t *testing.T) {
				row := e.query(t, "backstage_plugin_catalog", "SELECT id, name, batch, migration_time FROM knex_migrations ORDER BY id LIMIT 1 OFFSET 5")[0]
				e.exec(t, "backstage_plugin_catalog", "DELETE FROM knex_migrations WHERE name = "+e.ph(1), row[1])
				defer e.exec(t, "backstage_plugin_catalog",
					fmt.Sprintf("INSERT INTO knex_migrations (id, name, batch, migration_time) SELECT %s, %s, %s, migration_time FROM knex_migrations ORDER BY id LIMIT 1",
						e.ph(1), e.ph(2), e.ph(3)), row[0], row[1], row[2])
				steptest.WantAppError(t, verify(), "MigrationMissing", true, []string{"plugin catalog", row[1]})
			})
			t.Run("dropped plugin database", func(t *testing.T) {
				dropDatabase(t, e, probe)
				steptest.WantAppError(t, verify(), "PluginDatabaseMissing", true, []string{"plugin probe", probe})
			})
			if err := verify(); err == nil {
				t.Fatal("verify passed although the probe database is gone")
			}
		})
	}
}

func createProbe(t *testing.T, e *engine, dbname string) {
	t.Helper()
	if e.pg != nil {
		e.exec(t, "postgres", "DROP DATABASE IF EXISTS "+dbname)
		e.exec(t, "postgres", "CREATE DATABASE "+dbname)
		e.exec(t, dbname, `CREATE TABLE knex_migrations (id serial PRIMARY KEY, name varchar(255), batch int, migration_time timestamptz)`)
		e.exec(t, dbname, `CREATE TABLE knex_migrations_lock ("index" serial PRIMARY KEY, is_locked int)`)
		e.exec(t, dbname, `INSERT INTO knex_migrations (name, batch, migration_time) VALUES ('20240101_init.js', 1, now())`)
		e.exec(t, dbname, `INSERT INTO knex_migrations_lock (is_locked) VALUES (0)`)
		return
	}
	e.exec(t, "", "DROP DATABASE IF EXISTS "+dbname)
	e.exec(t, "", "CREATE DATABASE "+dbname)
	e.exec(t, dbname, "CREATE TABLE knex_migrations (id int unsigned NOT NULL AUTO_INCREMENT PRIMARY KEY, name varchar(255), batch int, migration_time timestamp NULL)")
	e.exec(t, dbname, "CREATE TABLE knex_migrations_lock (`index` int unsigned NOT NULL AUTO_INCREMENT PRIMARY KEY, is_locked int)")
	e.exec(t, dbname, "INSERT INTO knex_migrations (name, batch, migration_time) VALUES ('20240101_init.js', 1, NOW())")
	e.exec(t, dbname, "INSERT INTO knex_migrations_lock (is_locked) VALUES (0)")
}

func dropDatabase(t *testing.T, e *engine, dbname string) {
	t.Helper()
	if e.pg != nil {
		e.exec(t, "postgres", "DROP DATABASE IF EXISTS "+dbname)
		return
	}
	e.exec(t, "", "DROP DATABASE IF EXISTS "+dbname)
}
