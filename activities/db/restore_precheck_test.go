package db

import (
	"slices"
	"testing"

	"github.com/stagehand-dev/stagehand/activities"
	"github.com/stagehand-dev/stagehand/internal/steptest"
)

// A dump that the restore refuses (here: of a plugin database with no
// tables, which the restore will not read as "drop everything") refuses
// the whole restore before any plugin is restored, not half-way.
func TestRestoreRefusesBeforeTouchingAnything(t *testing.T) {
	e := upgraded(t, "postgres")
	const empty = "backstage_plugin_zz_empty"
	e.exec(t, "postgres", "DROP DATABASE IF EXISTS "+empty)
	e.exec(t, "postgres", "CREATE DATABASE "+empty)
	t.Cleanup(func() { e.exec(t, "postgres", "DROP DATABASE IF EXISTS "+empty) })
	a := e.acts(t)
	mustStep(t, a, "db.backup", map[string]any{"database": "main", "to": "with-empty"})

	// Made after the backup: a restore of the catalog would drop it.
	const catalog = "backstage_plugin_catalog"
	e.exec(t, catalog, "CREATE TABLE stagehand_probe (id int)")
	t.Cleanup(func() { e.exec(t, catalog, "DROP TABLE IF EXISTS stagehand_probe") })

	_, err := runStep(t, a, "db.restore", map[string]any{"database": "main", "from": "with-empty"})
	steptest.WantAppError(t, err, activities.ErrRestoreFailed, true, []string{"nothing was restored", empty, "lists no tables"})
	if !slices.Contains(e.tables(t, catalog), "stagehand_probe") {
		t.Error("the catalog was restored before the restore was refused")
	}
}
