package db

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stagehand-dev/stagehand/activities"
	"github.com/stagehand-dev/stagehand/internal/pgtest"
	"github.com/stagehand-dev/stagehand/internal/steptest"
)

func TestRequireUnchanged(t *testing.T) {
	base := snap(map[string]PluginSnapshot{
		"catalog":    plugin("backstage_plugin_catalog", migs(1, "a.js", "b.js"), nil),
		"scaffolder": plugin("backstage_plugin_scaffolder", migs(1, "s.js"), nil),
	})
	many := make([]string, 12)
	for i := range many {
		many[i] = fmt.Sprintf("2025%02d_new.js", i)
	}
	truncated := plugin("backstage_plugin_catalog", migs(1, "a.js", "b.js"), nil)
	truncated.Count, truncated.MigrationsTruncated = 5, 3
	locked := plugin("backstage_plugin_catalog", append(migs(1, "a.js", "b.js"), migs(2, "c.js")...), nil)
	locked.Locked = true
	for _, tc := range []struct {
		name      string
		after     map[string]PluginSnapshot
		want      []string
		forbidden []string
	}{
		{name: "same", after: base.Plugins},
		{name: "extra migration", after: map[string]PluginSnapshot{
			"catalog":    plugin("backstage_plugin_catalog", append(migs(1, "a.js", "b.js"), migs(2, "c.js")...), nil),
			"scaffolder": base.Plugins["scaffolder"],
		}, want: []string{"plugin catalog: 1 migrations not in the snapshot: c.js", "2026-11-30T10:00:00Z"}, forbidden: []string{"scaffolder"}},
		{name: "many extra migrations are bounded", after: map[string]PluginSnapshot{
			"catalog":    plugin("backstage_plugin_catalog", append(migs(1, "a.js", "b.js"), migs(2, many...)...), nil),
			"scaffolder": base.Plugins["scaffolder"],
		}, want: []string{"12 migrations not in the snapshot: 202500_new.js", "202504_new.js and 7 more"}, forbidden: []string{"202505_new.js"}},
		{name: "beyond the listed bound", after: map[string]PluginSnapshot{
			"catalog": truncated, "scaffolder": base.Plugins["scaffolder"],
		}, want: []string{"plugin catalog: 3 more migrations than the snapshot (beyond the 2 listed)"}},
		{name: "plugin appeared and vanished", after: map[string]PluginSnapshot{
			"catalog": base.Plugins["catalog"],
			"search":  plugin("backstage_plugin_search", migs(1, "x.js"), nil),
		}, want: []string{"plugin scaffolder: database backstage_plugin_scaffolder is gone",
			"plugin search: database backstage_plugin_search appeared (1 migrations: x.js)"}},
		{name: "other problems stay listed", after: map[string]PluginSnapshot{
			"catalog": locked, "scaffolder": base.Plugins["scaffolder"],
		}, want: []string{"not in the snapshot: c.js; plugin catalog: knex_migrations_lock"}},
		{name: "migration gone", after: map[string]PluginSnapshot{
			"catalog": plugin("backstage_plugin_catalog", migs(1, "a.js"), nil), "scaffolder": base.Plugins["scaffolder"],
		}, want: []string{"plugin catalog: 1 migrations of the snapshot gone: b.js"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			after := snap(tc.after)
			c := Compare(base, after, nil)
			withoutIt, _ := c.Failure()
			c.RequireUnchanged(base, after)
			typ, msg := c.Failure()
			if tc.want == nil {
				if typ != "" {
					t.Fatalf("unchanged snapshots fail: %s %s", typ, msg)
				}
				return
			}
			if typ != activities.ErrMigrationMismatch {
				t.Fatalf("type %q (%s), want MigrationMismatch", typ, msg)
			}
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("message %q lacks %q", msg, w)
				}
			}
			for _, f := range tc.forbidden {
				if strings.Contains(msg, f) {
					t.Errorf("message %q names %q", msg, f)
				}
			}
			t.Logf("%s (without expectUnchanged: %q)", msg, withoutIt)
		})
	}
}

func TestRequireUnchangedBoundsPlugins(t *testing.T) {
	after := map[string]PluginSnapshot{}
	for i := range 30 {
		after[fmt.Sprintf("p%02d", i)] = plugin(fmt.Sprintf("backstage_plugin_p%02d", i), migs(1, "x.js"), nil)
	}
	before := snap(map[string]PluginSnapshot{})
	c := Compare(before, snap(after), nil)
	c.RequireUnchanged(before, snap(after))
	typ, msg := c.Failure()
	if typ != activities.ErrMigrationMismatch || !strings.Contains(msg, "plugin p19:") || strings.Contains(msg, "plugin p20:") ||
		!strings.HasSuffix(msg, "and 10 more plugins") {
		t.Errorf("%s %s", typ, msg)
	}
}

// TestVerifyExpectUnchangedPostgres: against a real PostgreSQL, a knex
// migration row added after the snapshot fails verifyMigrations with
// expectUnchanged (naming plugin and migration) while the default verify
// passes; once the row is deleted, expectUnchanged passes.
func TestVerifyExpectUnchangedPostgres(t *testing.T) {
	srv := pgtest.New(t)
	pgSocketExec(t, srv, "postgres", "CREATE DATABASE backstage_plugin_catalog", "CREATE DATABASE backstage_plugin_scaffolder")
	pgSocketExec(t, srv, "backstage_plugin_catalog", pgPluginTables()...)
	pgSocketExec(t, srv, "backstage_plugin_scaffolder", pgPluginTables()...)
	a := tlsActs(t, map[string]Database{"main": {Driver: DriverPostgres, Host: srv.Host, Port: srv.Port, User: srv.User, SSLMode: "disable"}})

	before := mustStep(t, a, "db.snapshot", map[string]any{"database": "main"})
	verify := func(unchanged bool) (map[string]any, error) {
		return runStep(t, a, "db.verifyMigrations", map[string]any{"database": "main", "before": before, "expectUnchanged": unchanged})
	}
	if _, err := verify(true); err != nil {
		t.Fatalf("right after the snapshot: %v", err)
	}

	// What a started upgrade leaves behind.
	pgSocketExec(t, srv, "backstage_plugin_catalog",
		"INSERT INTO knex_migrations VALUES (3, '20251001_upgrade.js', 2, now())")
	out, err := verify(false)
	if err != nil {
		t.Fatalf("without expectUnchanged a new migration is reported, not failed: %v", err)
	}
	if out["rollbackSafe"] != false {
		t.Errorf("rollbackSafe %v after a migration", out["rollbackSafe"])
	}
	_, err = verify(true)
	msg := steptest.WantAppError(t, err, activities.ErrMigrationMismatch, true,
		[]string{"plugin catalog", "20251001_upgrade.js", "not in the snapshot"}, "plugin scaffolder")
	t.Logf("mismatch: %s", msg)

	// A plugin database the new version created is a mismatch too.
	pgSocketExec(t, srv, "postgres", "CREATE DATABASE backstage_plugin_notifications")
	pgSocketExec(t, srv, "backstage_plugin_notifications", pgPluginTables()...)
	_, err = verify(true)
	steptest.WantAppError(t, err, activities.ErrMigrationMismatch, true,
		[]string{"20251001_upgrade.js", "plugin notifications: database backstage_plugin_notifications appeared"})

	// The restore undoes both: the check passes.
	pgSocketExec(t, srv, "backstage_plugin_catalog", "DELETE FROM knex_migrations WHERE name = '20251001_upgrade.js'")
	pgSocketExec(t, srv, "postgres", "DROP DATABASE backstage_plugin_notifications")
	if _, err := verify(true); err != nil {
		t.Fatalf("after undoing the migration: %v", err)
	}
}
