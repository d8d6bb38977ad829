package db

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"go.temporal.io/sdk/converter"

	"github.com/stagehand-dev/stagehand/activities"
	"github.com/stagehand-dev/stagehand/internal/steptest"
)

// A restore waits for whoever holds the backup's lock (an earlier
// attempt still restoring, a backup still writing) before it reads
// anything.
func TestRestoreWaitsForTheBackupLock(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "pre-upgrade")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	unlock, err := lockDir(context.Background(), dir, func(string) {})
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	waited := false
	a := &Activities{
		Databases: map[string]Database{"main": {Driver: DriverPostgres, Host: "127.0.0.1", Port: closedPort(t), User: "u"}},
		BackupDir: root,
	}
	run := steptest.RunStep(t, StepTypes(a), "db.restore", map[string]any{"database": "main", "from": "pre-upgrade"},
		steptest.OnHeartbeat(func(d converter.EncodedValues) {
			var msg string
			_ = d.Get(&msg)
			if strings.Contains(msg, "waiting for another attempt") {
				once.Do(func() { waited = true; unlock() })
			}
		}))
	once.Do(unlock) // not released by the listener: the restore did not wait
	if !waited {
		t.Errorf("the restore did not wait for the held lock (heartbeats %q)", run.Heartbeats)
	}
	// Released, it goes on and finds no manifest.
	steptest.WantAppError(t, run.Err, activities.ErrBackupChecksumMismatch, true, []string{ManifestName})
}
