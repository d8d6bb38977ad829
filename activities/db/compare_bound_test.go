package db

import (
	"strings"
	"testing"
)

// Rows past the listing bound still count: new migrations beyond it make
// a rollback unsafe.
func TestCompareMigrationsBeyondTheBound(t *testing.T) {
	listed := migs(1, "a.js", "b.js")
	before := snap(map[string]PluginSnapshot{"catalog": plugin("backstage_plugin_catalog", listed, nil)})
	b := before.Plugins["catalog"]
	b.Count, b.Latest, b.MigrationsTruncated = 5, "e.js", 3
	before.Plugins["catalog"] = b
	after := snap(map[string]PluginSnapshot{"catalog": plugin("backstage_plugin_catalog", listed, nil)})
	a := after.Plugins["catalog"]
	a.Count, a.Latest, a.MigrationsTruncated = 7, "g.js", 5
	after.Plugins["catalog"] = a
	c := Compare(before, after, nil)
	if c.RollbackSafe || !strings.Contains(c.RollbackReason, "catalog (2 new, beyond the 2 listed)") {
		t.Fatalf("rollbackSafe %v: %s", c.RollbackSafe, c.RollbackReason)
	}
}
