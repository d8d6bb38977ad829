package db

import (
	"path/filepath"
	"strings"
	"testing"
)

// Dump file names come from the server's catalog: whatever the name, the
// file stays one plain file inside the backup directory, and different
// names give different files.
func TestDumpFileName(t *testing.T) {
	seen := map[string]string{}
	for _, name := range []string{"backstage_plugin_catalog", "backstage_plugin_../../x", "backstage_plugin_a/b",
		"backstage_plugin_a%2Fb", "backstage_plugin_..", "backstage_plugin_ü", "backstage_plugin_a b", `backstage_plugin_\`} {
		f := dumpFileName(name) + ".dump"
		if strings.ContainsAny(f, `/\`) || strings.Contains(f, "..") || filepath.Base(f) != f {
			t.Errorf("%q: file %q is not one plain file name", name, f)
		}
		if other, ok := seen[f]; ok {
			t.Errorf("%q and %q share the file %q", name, other, f)
		}
		seen[f] = name
	}
	if got := dumpFileName("backstage_plugin_catalog"); got != "backstage_plugin_catalog" {
		t.Errorf("a Backstage name changed: %q", got)
	}
}
