package db

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stagehand-dev/stagehand/activities"
	"github.com/stagehand-dev/stagehand/internal/steptest"
)

// A backup key that an earlier run of the same workflow ID completed is
// that run's backup, not this one's: handing it back as "reused" would
// later restore older data. Only the same run's retries reuse it.
func TestBackupOfAnotherRunIsNotReused(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "pre-upgrade"), 0o700); err != nil {
		t.Fatal(err)
	}
	// What steptest's environment reports for every run: the same
	// workflow ID, here with another run's ID.
	manifest := `{"version": 1, "database": "main", "driver": "postgres", "workflowId": "default-test-workflow-id", "runId": "an-earlier-run", "files": []}`
	if err := os.WriteFile(filepath.Join(root, "pre-upgrade", ManifestName), []byte(manifest), 0o600); err != nil {
		t.Fatal(err)
	}
	a := &Activities{
		Databases: map[string]Database{"main": {Driver: DriverPostgres, Host: "127.0.0.1", Port: closedPort(t), User: "u"}},
		BackupDir: root,
	}
	run := steptest.RunStep(t, StepTypes(a), "db.backup", map[string]any{"database": "main", "to": "pre-upgrade"})
	steptest.WantAppError(t, run.Err, activities.ErrBackupFailed, true, []string{"an-earlier-run", "refusing to reuse"})
}
