package db

import (
	"context"
	"fmt"
	"time"

	"go.temporal.io/sdk/activity"

	"github.com/stagehand-dev/stagehand/activities"
	"github.com/stagehand-dev/stagehand/activities/secrets"
	"github.com/stagehand-dev/stagehand/activities/steps"
)

// StepTypes binds the db steps to their specs in activities/steps. a may
// be a zero Activities (tests that only need the catalogue).
func StepTypes(a *Activities) []activities.StepType {
	return []activities.StepType{
		activities.Implement(steps.Spec("db.snapshot"), a.Snapshot),
		activities.Implement(steps.Spec("db.verifyMigrations"), a.VerifyMigrations),
		activities.Implement(steps.Spec("db.backup"), a.Backup),
		activities.Implement(steps.Spec("db.restore"), a.Restore),
	}
}

// database looks up a configured database and resolves its password.
func (a *Activities) database(ctx context.Context, name string) (Database, string, *secrets.Redactor, error) {
	red := newRedactor()
	if name == "" {
		return Database{}, "", red, nonRetryable(activities.ErrInvalidArguments, "database is required: the name of a `databases:` entry of the worker config")
	}
	d, ok := a.Databases[name]
	if !ok {
		return Database{}, "", red, notConfigured(fmt.Sprintf("database %q is not configured on this worker (configured: %v)", name, sortedKeys(a.Databases)))
	}
	if err := d.Validate(); err != nil {
		return Database{}, "", red, notConfigured(fmt.Sprintf("database %q: %v", name, err))
	}
	password := ""
	if d.PasswordRef != "" {
		// The reference and the server both come from the worker config
		// (a run picks only the database's name), so the policy needs no
		// rule for it.
		v, err := secrets.ResolveFor(ctx, a.Resolve, d.PasswordRef, secrets.Use{Host: d.Host, Configured: true})
		if refused := secrets.Refusal(err); refused != nil {
			return Database{}, "", red, refused
		}
		if err != nil {
			return Database{}, "", red, nonRetryable(activities.ErrSecretUnavailable, fmt.Sprintf("database %q: password: %v", name, err))
		}
		password = v
		red.Add(v)
	}
	return d, password, red, nil
}

func heartbeat(ctx context.Context) func(string) {
	return func(msg string) {
		if activity.IsActivity(ctx) {
			activity.RecordHeartbeat(ctx, msg)
		}
	}
}

// Snapshot implements db.snapshot.
func (a *Activities) Snapshot(ctx context.Context, in SnapshotInput) (Snapshot, error) {
	d, password, red, err := a.database(ctx, in.Database)
	if err != nil {
		return Snapshot{}, err
	}
	return d.snapshot(ctx, in.Database, password, red, heartbeat(ctx))
}

func (d Database) snapshot(ctx context.Context, name, password string, red *secrets.Redactor, progress func(string)) (Snapshot, error) {
	takenAt := time.Now()
	var b *builder
	var truncated int
	var err error
	if d.Driver == DriverMySQL {
		b, truncated, err = d.mysqlSnapshot(ctx, password, red, progress)
	} else {
		b, truncated, err = d.pgSnapshot(ctx, password, red, progress)
	}
	if err != nil {
		return Snapshot{}, err
	}
	return b.finish(name, d.Driver, takenAt, truncated), nil
}

// maxExpectNew bounds db.verifyMigrations' expectNew.
const maxExpectNew = 64

// VerifyInput is the `with` of db.verifyMigrations.
type VerifyInput struct {
	Database string `json:"database"`
	// Before is a db.snapshot's outputs (or a verify's `after`).
	Before Snapshot `json:"before"`
	// Expect maps a plugin to a migration that must have been applied.
	Expect map[string]string `json:"expect,omitempty"`
	// ExpectUnchanged fails the step (MigrationMismatch) unless the
	// migrations and plugin databases are exactly those of Before: the
	// check after a restore.
	ExpectUnchanged bool `json:"expectUnchanged,omitempty"`
	// ExpectNew lists plugin ids whose database must have appeared since
	// Before with migrations applied: the check after a plugin install.
	ExpectNew []string `json:"expectNew,omitempty"`
}

// VerifyOutput is the outputs of db.verifyMigrations.
type VerifyOutput struct {
	Plugins        map[string]PluginDiff `json:"plugins"`
	RollbackSafe   bool                  `json:"rollbackSafe"`
	RollbackReason string                `json:"rollbackReason"`
	Summary        []string              `json:"summary"`
	After          Snapshot              `json:"after"`
}

// VerifyMigrations implements db.verifyMigrations.
func (a *Activities) VerifyMigrations(ctx context.Context, in VerifyInput) (VerifyOutput, error) {
	if len(in.ExpectNew) > maxExpectNew {
		return VerifyOutput{}, nonRetryable(activities.ErrInvalidArguments,
			fmt.Sprintf("expectNew names %d plugins; at most %d", len(in.ExpectNew), maxExpectNew))
	}
	if in.Before.Plugins == nil || in.Before.TakenAt == "" {
		return VerifyOutput{}, nonRetryable(activities.ErrInvalidArguments,
			"before must be a db.snapshot step's outputs (e.g. before: \"{{ .steps.snapshot.outputs }}\"): it has no plugins or takenAt")
	}
	d, password, red, err := a.database(ctx, in.Database)
	if err != nil {
		return VerifyOutput{}, err
	}
	if in.Before.Driver != "" && in.Before.Driver != d.Driver {
		return VerifyOutput{}, nonRetryable(activities.ErrInvalidArguments,
			fmt.Sprintf("before is a snapshot of a %s database, but database %q is %s", in.Before.Driver, in.Database, d.Driver))
	}
	after, err := d.snapshot(ctx, in.Database, password, red, heartbeat(ctx))
	if err != nil {
		return VerifyOutput{}, err
	}
	c := Compare(in.Before, after, in.Expect)
	if in.ExpectUnchanged {
		c.RequireUnchanged(in.Before, after)
	}
	if len(in.ExpectNew) > 0 {
		c.RequireNew(in.Before, after, in.ExpectNew)
	}
	if errType, msg := c.Failure(); errType != "" {
		return VerifyOutput{}, nonRetryable(errType, fmt.Sprintf("database %q: %s", in.Database, red.Clean(msg)))
	}
	return VerifyOutput{
		Plugins: c.Plugins, RollbackSafe: c.RollbackSafe, RollbackReason: c.RollbackReason,
		Summary: c.Summary, After: after,
	}, nil
}

// Check connects to the named database as the steps would (its password
// resolved from its reference) and lists its plugin databases or schemas,
// for the worker's --check: a wrong host, password or grant shows up when
// the worker is configured rather than in the middle of an upgrade.
func (a *Activities) Check(ctx context.Context, name string) ([]string, error) {
	d, password, red, err := a.database(ctx, name)
	if err != nil {
		return nil, err
	}
	return d.listPlugins(ctx, password, red)
}
