package db

import (
	"slices"
	"strings"
	"testing"
)

// TestSchemaDivisionMode: with pluginDivisionMode schema (PostgreSQL), the
// plugins are schemas of one database; snapshot, verify, backup and
// restore work on them and leave other schemas alone.
func TestSchemaDivisionMode(t *testing.T) {
	e := upgraded(t, "postgres")
	const portal = "stagehand_schema_portal"
	e.exec(t, "postgres", "DROP DATABASE IF EXISTS "+portal)
	e.exec(t, "postgres", "CREATE DATABASE "+portal)
	for _, s := range []string{"backstage_plugin_catalog", "backstage_plugin_scaffolder"} {
		e.exec(t, portal, "CREATE SCHEMA "+s)
		e.exec(t, portal, "CREATE TABLE "+s+".knex_migrations (id serial PRIMARY KEY, name varchar(255), batch int, migration_time timestamptz)")
		e.exec(t, portal, "CREATE TABLE "+s+`.knex_migrations_lock ("index" serial PRIMARY KEY, is_locked int)`)
		e.exec(t, portal, "INSERT INTO "+s+".knex_migrations_lock (is_locked) VALUES (0)")
		e.exec(t, portal, "INSERT INTO "+s+".knex_migrations (name, batch, migration_time) VALUES ('20240101_init.js', 1, now()), ('20240202_more.js', 1, now())")
		e.exec(t, portal, "CREATE TABLE "+s+".items (id int PRIMARY KEY, name text NOT NULL)")
		e.exec(t, portal, "INSERT INTO "+s+".items VALUES (1, 'one'), (2, 'two')")
	}
	// Not a plugin: must not be listed, dumped or touched.
	e.exec(t, portal, "CREATE TABLE public.unrelated (id int)")

	db := e.db
	db.PluginDivisionMode = DivisionSchema
	db.Database = portal
	a := e.acts(t)
	a.Databases["schemas"] = db

	before := mustStep(t, a, "db.snapshot", map[string]any{"database": "schemas"})
	s := decode[Snapshot](t, before)
	if got := sortedKeys(s.Plugins); !slices.Equal(got, []string{"catalog", "scaffolder"}) {
		t.Fatalf("plugins %v, want catalog and scaffolder", got)
	}
	cat := s.Plugins["catalog"]
	if cat.Count != 2 || cat.Latest != "20240202_more.js" || cat.Database != "backstage_plugin_catalog" || len(cat.Tables) != 3 ||
		cat.Tables["items"].Columns["name"] != "text not null" {
		t.Errorf("catalog schema: %+v", cat)
	}

	// A migration in one schema: reported for that plugin only.
	e.exec(t, portal, "INSERT INTO backstage_plugin_scaffolder.knex_migrations (name, batch, migration_time) VALUES ('20250303_new.js', 2, now())")
	e.exec(t, portal, "ALTER TABLE backstage_plugin_scaffolder.items ADD COLUMN note text")
	v := decode[VerifyOutput](t, mustStep(t, a, "db.verifyMigrations", map[string]any{"database": "schemas", "before": before}))
	if got := v.Plugins["scaffolder"]; len(got.NewMigrations) != 1 || got.NewMigrations[0] != (NewMigration{"20250303_new.js", 2}) ||
		!slices.Equal(got.ColumnsAdded, []string{"items.note text"}) {
		t.Errorf("scaffolder diff: %+v", got)
	}
	if len(v.Plugins["catalog"].NewMigrations) != 0 || v.RollbackSafe || !strings.Contains(v.RollbackReason, "scaffolder (1 new)") {
		t.Errorf("verify: catalog %+v, rollbackSafe %v (%s)", v.Plugins["catalog"], v.RollbackSafe, v.RollbackReason)
	}

	backup := decode[BackupOutput](t, mustStep(t, a, "db.backup", map[string]any{"database": "schemas", "to": "schemas"}))
	if len(backup.Files) != 2 {
		t.Fatalf("backup files %+v", backup.Files)
	}
	e.exec(t, portal, "DROP TABLE backstage_plugin_catalog.items")
	e.exec(t, portal, "INSERT INTO public.unrelated VALUES (7)")
	mustStep(t, a, "db.restore", map[string]any{"database": "schemas", "from": "schemas"})
	if got := e.query(t, portal, "SELECT count(*) FROM backstage_plugin_catalog.items")[0][0]; got != "2" {
		t.Errorf("restored items: %s rows, want 2", got)
	}
	if got := e.query(t, portal, "SELECT count(*) FROM public.unrelated")[0][0]; got != "1" {
		t.Errorf("the restore touched a non-plugin table: %s rows", got)
	}
	after := decode[VerifyOutput](t, mustStep(t, a, "db.verifyMigrations", map[string]any{"database": "schemas", "before": v.After}))
	for p, d := range after.Plugins {
		if !d.empty() {
			t.Errorf("plugin %s differs after backup and restore: %+v", p, d)
		}
	}
	e.exec(t, "postgres", "DROP DATABASE "+portal)
}
