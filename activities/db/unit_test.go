package db

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stagehand-dev/stagehand/activities"
	"github.com/stagehand-dev/stagehand/activities/steps"
)

// The handlers' Go inputs and outputs agree with the specs in
// activities/steps (the check the worker makes at start).
func TestStepTypesBindToSpecs(t *testing.T) {
	var specs []activities.StepSpec
	for _, s := range steps.All() {
		if strings.HasPrefix(s.Name, "db.") {
			specs = append(specs, s)
		}
	}
	if len(specs) != 4 {
		t.Fatalf("want 4 db specs, got %d", len(specs))
	}
	if _, err := activities.Bind(specs, StepTypes(&Activities{})...); err != nil {
		t.Fatal(err)
	}
}

func TestValidate(t *testing.T) {
	ok := Database{Driver: "postgres", Host: "db", User: "backstage", PasswordRef: "env:PGPW"}
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid entry: %v", err)
	}
	for _, tc := range []struct {
		name string
		d    Database
		want []string
	}{
		{"empty", Database{}, []string{"driver is required", "host is required", "user is required"}},
		{"bad driver", Database{Driver: "oracle", Host: "h", User: "u"}, []string{`driver "oracle"`}},
		{"literal password", Database{Driver: "mysql", Host: "h", User: "u", PasswordRef: "hunter2"}, []string{"passwordRef must be a reference"}},
		{"schema without database", Database{Driver: "postgres", Host: "h", User: "u", PluginDivisionMode: "schema"}, []string{"database is required"}},
		{"schema on mysql", Database{Driver: "mysql", Host: "h", User: "u", PluginDivisionMode: "schema", Database: "x"}, []string{"pluginDivisionMode schema is PostgreSQL's"}},
		{"bad mode", Database{Driver: "postgres", Host: "h", User: "u", PluginDivisionMode: "table"}, []string{`pluginDivisionMode "table"`}},
		{"bad sslmode", Database{Driver: "postgres", Host: "h", User: "u", SSLMode: "maybe"}, []string{`sslmode "maybe"`}},
		{"tls on postgres", Database{Driver: "postgres", Host: "h", User: "u", TLS: "true"}, []string{"tls is MySQL's"}},
		{"bad prefix", Database{Driver: "postgres", Host: "h", User: "u", PluginPrefix: "x%"}, []string{"pluginPrefix"}},
		{"bad port", Database{Driver: "postgres", Host: "h", User: "u", Port: 70000}, []string{"port 70000"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.d.Validate()
			if err == nil {
				t.Fatal("want an error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error echoes the literal password: %v", err)
			}
		})
	}
}

func snap(plugins map[string]PluginSnapshot) Snapshot {
	return Snapshot{Plugins: plugins, TakenAt: "2026-11-30T10:00:00Z", Driver: "postgres", Database: "main"}
}

func migs(batch int, names ...string) []Migration {
	out := make([]Migration, len(names))
	for i, n := range names {
		out[i] = Migration{Name: n, Batch: batch}
	}
	return out
}

func plugin(db string, m []Migration, tables map[string]Table) PluginSnapshot {
	p := PluginSnapshot{Database: db, Migrations: m, Count: len(m), Tables: tables}
	if len(m) > 0 {
		p.Latest = m[len(m)-1].Name
	}
	return p
}

func TestCompareUpgrade(t *testing.T) {
	before := snap(map[string]PluginSnapshot{
		"catalog": plugin("backstage_plugin_catalog", migs(1, "a.js", "b.js"), map[string]Table{
			"entities": {Columns: map[string]string{"id": "uuid not null", "name": "text"}, Indexes: []string{"entities_pkey: primary btree (id)"}},
			"old":      {Columns: map[string]string{"x": "int"}},
		}),
		"auth": plugin("backstage_plugin_auth", migs(1, "auth1.js"), map[string]Table{}),
	})
	after := snap(map[string]PluginSnapshot{
		"catalog": plugin("backstage_plugin_catalog", append(migs(1, "a.js", "b.js"), migs(2, "c.js", "d.js")...), map[string]Table{
			"entities": {Columns: map[string]string{"id": "uuid not null", "name": "character varying(255)", "kind": "text"},
				Indexes: []string{"entities_kind: btree (kind)", "entities_pkey: primary btree (id)"},
				Options: []string{"autovacuum_vacuum_scale_factor=0.01"}},
			"fresh": {Columns: map[string]string{"y": "int"}},
		}),
		"auth":    plugin("backstage_plugin_auth", migs(1, "auth1.js"), map[string]Table{}),
		"signals": plugin("backstage_plugin_signals", migs(1, "s1.js"), map[string]Table{"s": {Columns: map[string]string{"id": "int"}}}),
	})
	c := Compare(before, after, map[string]string{"catalog": "d.js"})
	if typ, msg := c.Failure(); typ != "" {
		t.Fatalf("unexpected failure %s: %s", typ, msg)
	}
	cat := c.Plugins["catalog"]
	if len(cat.NewMigrations) != 2 || cat.NewMigrations[0] != (NewMigration{"c.js", 2}) || cat.NewMigrations[1] != (NewMigration{"d.js", 2}) {
		t.Errorf("new migrations %+v", cat.NewMigrations)
	}
	eq := func(what string, got []string, want ...string) {
		t.Helper()
		if strings.Join(got, "|") != strings.Join(want, "|") {
			t.Errorf("%s = %q, want %q", what, got, want)
		}
	}
	eq("tablesAdded", cat.TablesAdded, "fresh")
	eq("tablesRemoved", cat.TablesRemoved, "old")
	eq("columnsAdded", cat.ColumnsAdded, "entities.kind text")
	eq("columnsChanged", cat.ColumnsChanged, "entities.name: text -> character varying(255)")
	eq("columnsRemoved", cat.ColumnsRemoved)
	eq("indexesAdded", cat.IndexesAdded, "entities.entities_kind: btree (kind)")
	eq("optionsChanged", cat.OptionsChanged, "entities: +autovacuum_vacuum_scale_factor=0.01")
	if cat.NewPlugin || !c.Plugins["signals"].NewPlugin {
		t.Errorf("newPlugin flags: catalog %v, signals %v", cat.NewPlugin, c.Plugins["signals"].NewPlugin)
	}
	if len(c.Plugins["auth"].NewMigrations) != 0 {
		t.Errorf("auth has new migrations: %+v", c.Plugins["auth"].NewMigrations)
	}
	if c.RollbackSafe {
		t.Error("rollbackSafe after catalog migrated")
	}
	for _, w := range []string{"catalog (2 new)", "The migration directory is corrupt"} {
		if !strings.Contains(c.RollbackReason, w) {
			t.Errorf("rollbackReason %q lacks %q", c.RollbackReason, w)
		}
	}
	if strings.Contains(c.RollbackReason, "signals (") && strings.Contains(c.RollbackReason, "signals (1 new)") {
		t.Errorf("a new plugin counted as migrated: %q", c.RollbackReason)
	}
	summary := strings.Join(c.Summary, "\n")
	for _, w := range []string{"auth: unchanged (1 migrations)", "catalog: 2 new migrations in batch 2 (c.js, d.js)", "signals: new plugin database", "rollback NOT safe"} {
		if !strings.Contains(summary, w) {
			t.Errorf("summary lacks %q:\n%s", w, summary)
		}
	}
}

func TestCompareUnchangedIsRollbackSafe(t *testing.T) {
	s := snap(map[string]PluginSnapshot{"catalog": plugin("backstage_plugin_catalog", migs(1, "a.js"), map[string]Table{})})
	c := Compare(s, s, nil)
	if !c.RollbackSafe || c.RollbackReason == "" {
		t.Errorf("unchanged: rollbackSafe %v (%q)", c.RollbackSafe, c.RollbackReason)
	}
	if typ, _ := c.Failure(); typ != "" {
		t.Errorf("failure %s", typ)
	}
}

func TestCompareFailures(t *testing.T) {
	before := snap(map[string]PluginSnapshot{
		"catalog": plugin("backstage_plugin_catalog", migs(1, "a.js", "b.js"), nil),
		"auth":    plugin("backstage_plugin_auth", migs(1, "auth1.js"), nil),
		"search":  plugin("backstage_plugin_search", migs(1, "s.js"), nil),
	})
	for _, tc := range []struct {
		name    string
		after   map[string]PluginSnapshot
		expect  map[string]string
		errType string
		want    []string
	}{
		{"deleted row", map[string]PluginSnapshot{
			"catalog": plugin("backstage_plugin_catalog", migs(1, "a.js"), nil),
			"auth":    plugin("backstage_plugin_auth", migs(1, "auth1.js"), nil),
			"search":  plugin("backstage_plugin_search", migs(1, "s.js"), nil),
		}, nil, activities.ErrMigrationMissing, []string{"plugin catalog", "b.js"}},
		{"held lock", map[string]PluginSnapshot{
			"catalog": plugin("backstage_plugin_catalog", migs(1, "a.js", "b.js"), nil),
			"auth": func() PluginSnapshot {
				p := plugin("backstage_plugin_auth", migs(1, "auth1.js"), nil)
				p.Locked = true
				return p
			}(),
			"search": plugin("backstage_plugin_search", migs(1, "s.js"), nil),
		}, nil, activities.ErrMigrationLocked, []string{"plugin auth", "knex_migrations_lock", "backstage_plugin_auth"}},
		{"vanished database", map[string]PluginSnapshot{
			"catalog": plugin("backstage_plugin_catalog", migs(1, "a.js", "b.js"), nil),
			"auth":    plugin("backstage_plugin_auth", migs(1, "auth1.js"), nil),
		}, nil, activities.ErrPluginDatabaseMissing, []string{"plugin search", "backstage_plugin_search"}},
		{"expected migration missing", map[string]PluginSnapshot{
			"catalog": plugin("backstage_plugin_catalog", migs(1, "a.js", "b.js"), nil),
			"auth":    plugin("backstage_plugin_auth", migs(1, "auth1.js"), nil),
			"search":  plugin("backstage_plugin_search", migs(1, "s.js"), nil),
		}, map[string]string{"catalog": "c.js"}, activities.ErrMigrationMissing, []string{"plugin catalog", "c.js", "latest is b.js"}},
		{"expected plugin missing", map[string]PluginSnapshot{
			"catalog": plugin("backstage_plugin_catalog", migs(1, "a.js", "b.js"), nil),
			"auth":    plugin("backstage_plugin_auth", migs(1, "auth1.js"), nil),
			"search":  plugin("backstage_plugin_search", migs(1, "s.js"), nil),
		}, map[string]string{"todo": "t1.js"}, activities.ErrPluginDatabaseMissing, []string{"plugin todo", "t1.js"}},
		{"several: the vanished database first", map[string]PluginSnapshot{
			"catalog": plugin("backstage_plugin_catalog", migs(1, "a.js"), nil),
			"auth":    plugin("backstage_plugin_auth", migs(1, "auth1.js"), nil),
		}, nil, activities.ErrPluginDatabaseMissing, []string{"plugin search", "b.js"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			typ, msg := Compare(before, snap(tc.after), tc.expect).Failure()
			if typ != tc.errType {
				t.Errorf("type %q, want %q (%s)", typ, tc.errType, msg)
			}
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("message %q lacks %q", msg, w)
				}
			}
		})
	}
}

func TestBuilderBounds(t *testing.T) {
	b := newBuilder()
	p := b.plugin("big", "backstage_plugin_big")
	for i := range MaxTablesPerPlugin + 5 {
		for c := range 3 {
			b.column(p, "t"+itoa(i), "c"+itoa(c), "int")
		}
	}
	for i := range MaxColumnsPerTable + 2 {
		b.column(p, "t0", "extra"+itoa(i), "int")
	}
	for i := range MaxMigrationsPerPlug + 3 {
		b.migration(p, Migration{Name: "m" + itoa(i)})
	}
	s := b.finish("x", "postgres", timeZero, 0)
	got := s.Plugins["big"]
	if len(got.Tables) != MaxTablesPerPlugin || got.TablesTruncated != 5 {
		t.Errorf("tables %d truncated %d", len(got.Tables), got.TablesTruncated)
	}
	if got.Tables["t0"].ColumnsTruncated != 5 {
		t.Errorf("columns truncated %d, want 5", got.Tables["t0"].ColumnsTruncated)
	}
	if len(got.Migrations) != MaxMigrationsPerPlug || got.MigrationsTruncated != 3 || got.Count != MaxMigrationsPerPlug+3 ||
		got.Latest != "m"+itoa(MaxMigrationsPerPlug+2) {
		t.Errorf("migrations %d truncated %d count %d latest %s", len(got.Migrations), got.MigrationsTruncated, got.Count, got.Latest)
	}
	if !strings.Contains(strings.Join(s.Summary, "\n"), "truncated: 5 tables, 3 migrations not listed") {
		t.Errorf("summary lacks the truncation marker: %q", s.Summary)
	}
}

func TestBackupKeys(t *testing.T) {
	root := t.TempDir()
	outside := t.TempDir()
	if err := os.Symlink(outside, filepath.Join(root, "escape")); err != nil {
		t.Fatal(err)
	}
	a := &Activities{BackupDir: root}
	for _, bad := range []string{"", "/etc", "../x", "a/../../x", ".", "escape", "escape/sub"} {
		if _, _, err := a.backupDir(bad, true); err == nil {
			t.Errorf("key %q accepted", bad)
		}
	}
	dir, key, err := a.backupDir("runs/upgrade-1/", true)
	if err != nil {
		t.Fatal(err)
	}
	if key != "runs/upgrade-1" || !strings.HasSuffix(dir, filepath.Join("runs", "upgrade-1")) {
		t.Errorf("dir %s key %s", dir, key)
	}
	if _, err := os.Stat(filepath.Join(outside, "sub")); err == nil {
		t.Error("a symlinked key created a directory outside the backup root")
	}
	if _, _, err := (&Activities{}).backupDir("x", true); err == nil || !strings.Contains(err.Error(), "no backup directory") {
		t.Errorf("no BackupDir: %v", err)
	}
}

func TestNotConfiguredDatabase(t *testing.T) {
	a := &Activities{Databases: map[string]Database{"main": {Driver: "postgres", Host: "h", User: "u"}}}
	_, err := a.Snapshot(context.Background(), SnapshotInput{Database: "other"})
	if err == nil || !strings.Contains(err.Error(), `"other" is not configured`) || !strings.Contains(err.Error(), "main") {
		t.Fatalf("got %v", err)
	}
}

var timeZero = time.Time{}

func itoa(i int) string { return strconv.Itoa(i) }

// A snapshot over the size bound keeps migrations and drops the tables;
// comparing with it reports migrations, not a bogus schema diff.
func TestSnapshotSizeBound(t *testing.T) {
	b := newBuilder()
	for i := range 40 {
		p := b.plugin("p"+itoa(i), "backstage_plugin_p"+itoa(i))
		for tbl := range 60 {
			for c := range 40 {
				b.column(p, "table_with_a_long_name_"+itoa(tbl), "column_with_a_long_name_"+itoa(c), "character varying(255) not null")
			}
		}
		b.migration(p, Migration{Name: "m1.js", Batch: 1})
	}
	s := b.finish("x", "postgres", timeZero, 0)
	if !s.SchemaOmitted || len(s.Plugins["p0"].Tables) != 0 || s.Plugins["p0"].TablesTruncated != 60 || s.Plugins["p0"].Count != 1 {
		t.Fatalf("schemaOmitted %v, p0 tables %d (truncated %d), count %d", s.SchemaOmitted, len(s.Plugins["p0"].Tables), s.Plugins["p0"].TablesTruncated, s.Plugins["p0"].Count)
	}
	if b, _ := json.Marshal(s); len(b) > MaxSnapshotBytes {
		t.Errorf("bounded snapshot is %d bytes", len(b))
	}
	full := snap(map[string]PluginSnapshot{"p0": plugin("backstage_plugin_p0", migs(1, "m1.js"), map[string]Table{"t": {Columns: map[string]string{"a": "int"}}})})
	c := Compare(full, s, nil)
	if d := c.Plugins["p0"]; len(d.TablesRemoved) != 0 || !strings.Contains(strings.Join(c.Summary, "\n"), "schema diff not available") {
		t.Errorf("diff against an omitted schema: %+v, summary %q", d, c.Summary)
	}
}

// A second attempt on the same backup directory waits for the first to
// release it.
func TestBackupDirLock(t *testing.T) {
	dir := t.TempDir()
	unlock, err := lockDir(context.Background(), dir, func(string) {})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 1200*time.Millisecond)
	defer cancel()
	var waits int
	if _, err := lockDir(ctx, dir, func(string) { waits++ }); err == nil || waits == 0 {
		t.Fatalf("second lock while held: err %v after %d waits", err, waits)
	}
	unlock()
	again, err := lockDir(context.Background(), dir, func(string) {})
	if err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	again()
}
