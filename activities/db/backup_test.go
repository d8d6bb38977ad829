package db

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/stagehand-dev/stagehand/internal/steptest"
)

// TestBackupRestoreRoundTrip: back up every plugin database, drop a table,
// restore, and the table and its rows are back; a retry of the backup
// returns the verified files without dumping again; a corrupted dump is
// refused before anything is touched.
func TestBackupRestoreRoundTrip(t *testing.T) {
	for _, name := range engines {
		t.Run(name, func(t *testing.T) {
			e := upgraded(t, name)
			a := e.acts(t)
			catalogDB := "backstage_plugin_catalog"
			// The table to lose: knex_migrations, the table a hand-fix of a
			// failed rollback edits, with Backstage's 45 rows.
			table := "knex_migrations"
			count := func() string {
				if !slices.Contains(e.tables(t, catalogDB), table) {
					return "no table"
				}
				return e.query(t, catalogDB, "SELECT COUNT(*) FROM "+table)[0][0]
			}
			rowsBefore := count()
			if rowsBefore != "45" {
				t.Fatalf("%s has %s rows before the backup, want 45", table, rowsBefore)
			}
			snapBefore := decode[Snapshot](t, mustStep(t, a, "db.snapshot", map[string]any{"database": "main"}))

			out := decode[BackupOutput](t, mustStep(t, a, "db.backup", map[string]any{"database": "main", "to": "upgrade-1"}))
			if out.Reused || out.Key != "upgrade-1" || len(out.Files) < 2 {
				t.Fatalf("backup: %+v", out)
			}
			plugins := map[string]bool{}
			var total int64
			for _, f := range out.Files {
				plugins[f.Plugin] = true
				b, err := os.ReadFile(filepath.Join(a.BackupDir, f.File))
				if err != nil {
					t.Fatal(err)
				}
				sum := sha256.Sum256(b)
				if hex.EncodeToString(sum[:]) != f.SHA256 || int64(len(b)) != f.Size {
					t.Errorf("%s: output sha256/size %s/%d, file has %x/%d", f.File, f.SHA256, f.Size, sum, len(b))
				}
				total += f.Size
			}
			if !plugins["catalog"] || !plugins["auth"] || total != out.TotalBytes {
				t.Errorf("backup files %+v, totalBytes %d (sum %d)", out.Files, out.TotalBytes, total)
			}
			var m Manifest
			mb, err := os.ReadFile(filepath.Join(out.Dir, ManifestName))
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(mb, &m); err != nil || !reflect.DeepEqual(m.Files, out.Files) {
				t.Errorf("manifest %s does not list the output files (%v)", mb, err)
			}

			// A retry of the same backup verifies and returns it.
			again := decode[BackupOutput](t, mustStep(t, a, "db.backup", map[string]any{"database": "main", "to": "upgrade-1"}))
			if !again.Reused || !reflect.DeepEqual(again.Files, out.Files) {
				t.Errorf("retry: reused %v, files %+v", again.Reused, again.Files)
			}
			// Another run's backup under the same key is neither returned
			// nor overwritten.
			mb2 := strings.Replace(string(mb), `"workflowId": "`, `"workflowId": "another-run-`, 1)
			otherDir := filepath.Join(a.BackupDir, "other-run")
			if err := os.MkdirAll(otherDir, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(otherDir, ManifestName), []byte(mb2), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err = runStep(t, a, "db.backup", map[string]any{"database": "main", "to": "other-run"})
			steptest.WantAppError(t, err, "BackupFailed", true, []string{"other-run", "another-run-", "refusing"})
			if b, _ := os.ReadFile(filepath.Join(otherDir, ManifestName)); string(b) != mb2 {
				t.Error("another run's manifest was overwritten")
			}

			// A partial leftover (no manifest, a half-written temp file) is
			// replaced by a complete backup.
			partial := filepath.Join(a.BackupDir, "upgrade-2")
			if err := os.MkdirAll(partial, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(partial, catalogDB+".dump.tmp"), []byte("half"), 0o600); err != nil {
				t.Fatal(err)
			}
			second := decode[BackupOutput](t, mustStep(t, a, "db.backup", map[string]any{"database": "main", "to": "upgrade-2"}))
			if second.Reused || len(second.Files) != len(out.Files) {
				t.Errorf("backup over a partial leftover: %+v", second)
			}
			if left, _ := filepath.Glob(filepath.Join(partial, "*.tmp")); len(left) > 0 {
				t.Errorf("temp files left: %v", left)
			}

			// Drop a table, restore, and it is back with its rows.
			e.exec(t, catalogDB, "DROP TABLE "+table)
			if s := decode[Snapshot](t, mustStep(t, a, "db.snapshot", map[string]any{"database": "main"})); hasTable(s, table) {
				t.Fatal("table still there after DROP")
			}
			// A table made after the backup (as a newer version's migration
			// would) is gone after the restore too.
			e.exec(t, catalogDB, "CREATE TABLE stagehand_after_backup (id int)")
			res := decode[RestoreOutput](t, mustStep(t, a, "db.restore", map[string]any{"database": "main", "from": "upgrade-1"}))
			if slices.Contains(e.tables(t, catalogDB), "stagehand_after_backup") {
				t.Error("a table created after the backup survived the restore")
			}
			if name == "postgres" {
				for _, r := range res.Restored {
					if r.Plugin == "catalog" && !slices.Equal(r.DroppedTables, []string{"public.stagehand_after_backup"}) {
						t.Errorf("catalog droppedTables %q, want the table made after the backup", r.DroppedTables)
					}
				}
			}
			if len(res.Restored) != len(out.Files) || !contains(res.Plugins, "catalog") {
				t.Errorf("restore: %+v", res)
			}
			if got := count(); got != rowsBefore {
				t.Errorf("after restore %s has %s rows, want %s", table, got, rowsBefore)
			}
			snapAfter := decode[Snapshot](t, mustStep(t, a, "db.snapshot", map[string]any{"database": "main"}))
			assertSameSchema(t, snapBefore, snapAfter)

			// A dropped plugin database comes back from the backup's files
			// output (just that plugin's file).
			var authFile BackupFile
			for _, f := range out.Files {
				if f.Plugin == "auth" {
					authFile = f
				}
			}
			dropDatabase(t, e, "backstage_plugin_auth")
			res = decode[RestoreOutput](t, mustStep(t, a, "db.restore", map[string]any{"database": "main", "files": []any{mustJSON(t, authFile)}}))
			if len(res.Restored) != 1 || res.Plugins[0] != "auth" {
				t.Errorf("restore from files: %+v", res)
			}
			if got := e.query(t, "backstage_plugin_auth", "SELECT COUNT(*) FROM knex_migrations")[0][0]; got != fmt.Sprint(snapBefore.Plugins["auth"].Count) {
				t.Errorf("restored auth database has %s migrations, want %d", got, snapBefore.Plugins["auth"].Count)
			}
			assertSameSchema(t, snapBefore, decode[Snapshot](t, mustStep(t, a, "db.snapshot", map[string]any{"database": "main"})))

			// A corrupted dump is refused, and nothing is touched: drop the
			// table again, and after the refused restore it is still gone.
			dump := filepath.Join(a.BackupDir, second.Files[len(second.Files)-1].File)
			for _, f := range second.Files {
				if f.Plugin == "catalog" {
					dump = filepath.Join(a.BackupDir, f.File)
				}
			}
			b, err := os.ReadFile(dump)
			if err != nil {
				t.Fatal(err)
			}
			b[len(b)/2] ^= 0xff
			if err := os.WriteFile(dump, b, 0o600); err != nil {
				t.Fatal(err)
			}
			e.exec(t, catalogDB, "DROP TABLE "+table)
			dropped := decode[Snapshot](t, mustStep(t, a, "db.snapshot", map[string]any{"database": "main"}))
			_, err = runStep(t, a, "db.restore", map[string]any{"database": "main", "from": "upgrade-2"})
			steptest.WantAppError(t, err, "BackupChecksumMismatch", true, []string{filepath.Base(dump), "nothing was restored"})
			unchanged := decode[Snapshot](t, mustStep(t, a, "db.snapshot", map[string]any{"database": "main"}))
			if hasTable(unchanged, table) {
				t.Error("the refused restore touched the database: the dropped table is back")
			}
			assertSameSchema(t, dropped, unchanged)
			// A retried backup with the corrupted file dumps again.
			redo := decode[BackupOutput](t, mustStep(t, a, "db.backup", map[string]any{"database": "main", "to": "upgrade-2"}))
			if redo.Reused {
				t.Error("a backup with a corrupted file was reused")
			}
			// Put the shared database back.
			mustStep(t, a, "db.restore", map[string]any{"database": "main", "from": "upgrade-1"})
			if got := count(); got != rowsBefore {
				t.Errorf("after the final restore %s has %s rows, want %s", table, got, rowsBefore)
			}
		})
	}
}

func hasTable(s Snapshot, table string) bool {
	_, ok := s.Plugins["catalog"].Tables[table]
	return ok
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func mustJSON(t testing.TB, v any) map[string]any {
	return decode[map[string]any](t, v)
}

// assertSameSchema compares two snapshots' plugins, migrations and tables.
func assertSameSchema(t *testing.T, want, got Snapshot) {
	t.Helper()
	c := Compare(want, got, nil)
	if typ, msg := c.Failure(); typ != "" {
		t.Errorf("snapshots differ: %s: %s", typ, msg)
	}
	for p, d := range c.Plugins {
		if !d.empty() {
			t.Errorf("plugin %s changed: %+v", p, d)
		}
	}
	if len(want.Plugins) != len(got.Plugins) {
		t.Errorf("plugins %v, want %v", strings.Join(sortedKeys(got.Plugins), ","), strings.Join(sortedKeys(want.Plugins), ","))
	}
}
