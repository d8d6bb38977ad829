package db

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/stagehand-dev/stagehand/activities"
	"github.com/stagehand-dev/stagehand/internal/steptest"
)

// TestPasswordNeverLeaks: with a real password-protected MariaDB user, the
// password appears in no output of any step; a wrong password fails with
// the server's "Access denied" and without echoing the password; the
// client defaults file holding it is gone after the step.
func TestPasswordNeverLeaks(t *testing.T) {
	e := upgraded(t, "mariadb")
	// The steps' private temp dirs go to a directory of this test's own
	// (after the shared servers are up, which must outlive it), so the
	// leftover check sees only them, not those of a backup another test
	// package runs at the same time.
	t.Setenv("TMPDIR", t.TempDir())
	pw := e.my.Password
	if os.Getenv(mysqlPasswordEnv) != pw || e.db.PasswordRef != "env:"+mysqlPasswordEnv {
		t.Fatal("the fixture does not pass the password by reference")
	}
	a := e.acts(t)
	var all strings.Builder
	record := func(v any) {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		all.Write(b)
	}
	snap := mustStep(t, a, "db.snapshot", map[string]any{"database": "main"})
	record(snap)
	record(mustStep(t, a, "db.verifyMigrations", map[string]any{"database": "main", "before": snap}))
	backup := mustStep(t, a, "db.backup", map[string]any{"database": "main", "to": "secrets"})
	record(backup)
	record(mustStep(t, a, "db.restore", map[string]any{"database": "main", "from": "secrets"}))
	if strings.Contains(all.String(), pw) {
		t.Fatal("a step output contains the database password")
	}
	if left := privateTempDirs(t); len(left) > 0 {
		t.Errorf("private temp dirs (defaults files) left behind: %v", left)
	}

	wrong := "wrong-" + pw[3:] + "-x"
	t.Setenv("STAGEHAND_DBTEST_WRONG_PASSWORD", wrong)
	bad := e.db
	bad.PasswordRef = "env:STAGEHAND_DBTEST_WRONG_PASSWORD"
	a.Databases["bad"] = bad
	for _, step := range []string{"db.snapshot", "db.backup"} {
		with := map[string]any{"database": "bad"}
		if step == "db.backup" {
			with["to"] = "wrong-password"
		}
		_, err := runStep(t, a, step, with)
		msg := steptest.WantAppError(t, err, activities.ErrDatabaseError, true, []string{"Access denied", e.my.User})
		if strings.Contains(msg, wrong) || strings.Contains(msg, pw) {
			t.Errorf("%s: the error echoes a password: %s", step, msg)
		}
	}
	if left := privateTempDirs(t); len(left) > 0 {
		t.Errorf("private temp dirs (defaults files) left behind after failures: %v", left)
	}

	// An unset reference names the reference, not a value.
	a.Databases["unset"] = Database{Driver: DriverMySQL, Host: e.db.Host, Port: e.db.Port, User: e.db.User, PasswordRef: "env:STAGEHAND_DBTEST_UNSET"}
	_, err := runStep(t, a, "db.snapshot", map[string]any{"database": "unset"})
	steptest.WantAppError(t, err, activities.ErrSecretUnavailable, true, []string{"env:STAGEHAND_DBTEST_UNSET"})
}

// TestUnreachableServerIsRetryable: nothing listens on the port, so the
// step fails with the retryable DatabaseUnavailable on both drivers.
func TestUnreachableServerIsRetryable(t *testing.T) {
	for _, driver := range []string{DriverPostgres, DriverMySQL} {
		t.Run(driver, func(t *testing.T) {
			a := &Activities{Databases: map[string]Database{"gone": {Driver: driver, Host: "127.0.0.1", Port: closedPort(t), User: "u"}}}
			_, err := runStep(t, a, "db.snapshot", map[string]any{"database": "gone"})
			steptest.WantAppError(t, err, activities.ErrDatabaseUnavailable, false, []string{"127.0.0.1"})
		})
	}
}

func privateTempDirs(t *testing.T) []string {
	t.Helper()
	left, err := globTemp("stagehand-db-*")
	if err != nil {
		t.Fatal(err)
	}
	return left
}
