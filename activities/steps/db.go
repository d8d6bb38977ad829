package steps

import (
	"time"

	"github.com/stagehand-dev/stagehand/activities"
)

var dbErrors = []string{
	activities.ErrDatabaseNotConfigured, activities.ErrSecretUnavailable, activities.ErrSecretNotAllowed,
	activities.ErrDatabaseUnavailable, activities.ErrDatabaseError,
}

// databaseArg names the worker-config database every db step works on.
var databaseArg = req("database", TString, "the name of a `databases:` entry of the worker config")

var db = []activities.StepSpec{
	{
		Name:      "db.snapshot",
		Resumable: true,
		Description: "Read every Backstage plugin database (or schema, found by prefix): its Knex migrations, knex_migrations_lock, " +
			"tables with columns and indexes, in a read-only transaction. Feed the outputs to db.verifyMigrations as `before`.",
		Args: []activities.Arg{
			databaseArg,
		},
		Outputs: []activities.Output{
			out("plugins", TMap, "plugin → {database, migrations [{name, batch, time}], latest, count, locked, tables {table: {columns {name: type}, indexes}}}; "+
				"bounded (…Truncated counts say what was left out)"),
			out("summary", TList, "one line per plugin: migrations, latest, tables"),
			out("takenAt", TTime, "when the snapshot was taken (RFC 3339)"),
			out("database", TString, "the database entry's name"),
			out("driver", TString, "postgres or mysql"),
			out("pluginsTruncated", TInt, "plugin databases left out beyond the bound (0 normally)"),
			out("schemaOmitted", TBool, "tables were left out to keep the snapshot under 1 MiB (migrations and locks are complete)"),
		},
		Errors:           dbErrors,
		DefaultTimeout:   5 * time.Minute,
		HeartbeatTimeout: time.Minute,
	},
	{
		Name:      "db.verifyMigrations",
		Resumable: true,
		Description: "Snapshot again and compare with `before`: the migrations applied since, per plugin, and the schema diff; " +
			"fails when a migration row or plugin database vanished, a knex_migrations_lock is held, or an `expect`ed migration is missing. " +
			"rollbackSafe is false when any plugin migrated: old code fails start-up with \"The migration directory is corrupt\".",
		Args: []activities.Arg{
			databaseArg,
			req("before", TMap, "a db.snapshot step's outputs (or a db.verifyMigrations step's `after`)"),
			arg("expect", TMap, "plugin → the migration that must have been applied (its latest), e.g. {catalog: 20250101_x.js}"),
			arg("expectNew", TList, "plugin ids (e.g. [notifications]) whose database must have appeared since `before` with "+
				"migrations applied, the check after a plugin install: fails PluginDatabaseMissing (none appeared), "+
				"MigrationMissing (no migration ran) or MigrationMismatch (the database existed before)"),
			arg("expectUnchanged", TBool, "fail (MigrationMismatch) unless every plugin has exactly the migrations of `before` "+
				"and no plugin database appeared or vanished: the check after restoring a backup taken with that snapshot"),
		},
		Outputs: []activities.Output{
			out("plugins", TMap, "plugin → {newMigrations [{name, batch}], tablesAdded, tablesRemoved, columnsAdded, columnsRemoved, "+
				"columnsChanged, indexesAdded, indexesRemoved, newPlugin}"),
			out("rollbackSafe", TBool, "no existing plugin applied migrations since `before`: the previous version can start on this schema"),
			out("rollbackReason", TString, "why rollbackSafe is what it is, naming plugins and counts"),
			out("summary", TList, "one line per plugin, then the rollback verdict when unsafe"),
			out("after", TMap, "the fresh snapshot, for a later step's `before`"),
		},
		Errors: errs(dbErrors, []string{
			activities.ErrPluginDatabaseMissing, activities.ErrMigrationMissing, activities.ErrMigrationLocked,
			activities.ErrMigrationMismatch,
		}),
		DefaultTimeout:   5 * time.Minute,
		HeartbeatTimeout: time.Minute,
	},
	{
		Name: "db.backup",
		Description: "Dump every plugin database (pg_dump -Fc, or mariadb-dump/mysqldump --single-transaction) into a directory " +
			"of the worker's backup directory, with manifest.json holding each file's sha256. A retry with the same `to` " +
			"returns the verified backup instead of dumping again; a key holding another run's backup is refused.",
		Args: []activities.Arg{
			databaseArg,
			req("to", TString, "the backup's key: a relative directory inside the worker's backup directory, e.g. upgrade-{{ .run.id }}"),
		},
		Outputs: []activities.Output{
			out("dir", TString, "the backup's directory on the worker"),
			out("key", TString, "the cleaned key, for db.restore's `from`"),
			out("files", TList, "one per plugin database: {plugin, database, file (relative to the backup directory), size, sha256}"),
			out("totalBytes", TInt, "the size of all dumps"),
			out("reused", TBool, "an earlier attempt had completed this backup; it was verified and returned"),
		},
		Errors:           errs(dbErrors, []string{activities.ErrBackupFailed}),
		DefaultTimeout:   time.Hour,
		HeartbeatTimeout: 2 * time.Minute,
	},
	{
		Name: "db.restore",
		Description: "Restore a db.backup: every dump's sha256 is checked against manifest.json first (a mismatch refuses " +
			"the restore before anything is touched), then pg_restore --clean --if-exists --single-transaction (after dropping tables made since " +
			"the backup), or the mysql client on a dump that recreates the database, per plugin. " +
			"Destructive: put it behind an approval gate.",
		Args: []activities.Arg{
			databaseArg,
			arg("from", TString, "the backup's key (db.backup's `key`)"),
			arg("files", TList, "db.backup's `files` output, instead of from (or to restore only some plugins)"),
		},
		Outputs: []activities.Output{
			out("restored", TList, "{plugin, database, file, droppedTables} per restored dump (droppedTables: created after the backup, removed)"),
			out("plugins", TList, "the restored plugins"),
		},
		Errors: errs(dbErrors, []string{
			activities.ErrBackupChecksumMismatch, activities.ErrRestoreFailed,
		}),
		DefaultTimeout:   time.Hour,
		HeartbeatTimeout: 2 * time.Minute,
		Irreversible:     true,
	},
}
