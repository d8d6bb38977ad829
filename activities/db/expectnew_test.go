package db

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/stagehand-dev/stagehand/activities"
)

// TestRequireNew: after a plugin install the plugin's database must have
// appeared with migrations; anything else names the plugin and why.
func TestRequireNew(t *testing.T) {
	base := snap(map[string]PluginSnapshot{
		"catalog": plugin("backstage_plugin_catalog", migs(1, "a.js"), nil),
	})
	empty := plugin("backstage_plugin_notifications", nil, nil)
	for _, tc := range []struct {
		name     string
		after    map[string]PluginSnapshot
		ids      []string
		wantType string
		wantMsg  string
	}{
		{name: "appeared and migrated", ids: []string{"notifications"}, after: map[string]PluginSnapshot{
			"catalog":       base.Plugins["catalog"],
			"notifications": plugin("backstage_plugin_notifications", migs(1, "n1.js", "n2.js"), nil),
		}},
		{name: "did not appear", ids: []string{"notifications"}, after: base.Plugins,
			wantType: activities.ErrPluginDatabaseMissing, wantMsg: "plugin notifications: expected a new plugin database, but none appeared (plugin databases now: catalog)"},
		{name: "appeared without migrations", ids: []string{"notifications"}, after: map[string]PluginSnapshot{
			"catalog": base.Plugins["catalog"], "notifications": empty,
		}, wantType: activities.ErrMigrationMissing, wantMsg: "database backstage_plugin_notifications appeared, but no migration has been applied"},
		{name: "existed before", ids: []string{"catalog"}, after: base.Plugins,
			wantType: activities.ErrMigrationMismatch, wantMsg: "plugin catalog: expected a new plugin database, but backstage_plugin_catalog already existed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			after := snap(tc.after)
			c := Compare(base, after, nil)
			c.RequireNew(base, after, tc.ids)
			typ, msg := c.Failure()
			assert.Equal(t, tc.wantType, typ)
			if tc.wantMsg == "" {
				assert.Empty(t, msg)
			} else {
				assert.Contains(t, msg, tc.wantMsg)
			}
		})
	}
}
