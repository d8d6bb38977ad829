package db

import (
	"strings"
	"testing"

	"github.com/stagehand-dev/stagehand/activities"
	"github.com/stagehand-dev/stagehand/internal/steptest"
)

// A dump tool's output long enough to be cut must not leave a piece of
// the password behind: it is scrubbed before it is cut.
func TestToolErrorScrubsBeforeCutting(t *testing.T) {
	const password = "s3cret-Passw0rd"
	red := newRedactor()
	red.Add(password)
	for shift := range len(password) {
		out := "error: " + password + strings.Repeat("x", maxToolOutput-len(password)+shift)
		err := toolError(activities.ErrBackupFailed, "dump backstage_plugin_catalog", errExit, []byte(out), red)
		text := steptest.WantAppError(t, err, activities.ErrBackupFailed, true, []string{"dump backstage_plugin_catalog"})
		for n := 4; n <= len(password); n++ {
			for i := 0; i+n <= len(password); i++ {
				if strings.Contains(text, password[i:i+n]) {
					t.Fatalf("shift %d: error holds %q, part of the password: %s", shift, password[i:i+n], text)
				}
			}
		}
	}
}

var errExit = exitError("exit status 1")

type exitError string

func (e exitError) Error() string { return string(e) }
