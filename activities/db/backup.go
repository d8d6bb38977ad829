package db

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"go.temporal.io/sdk/activity"

	"github.com/stagehand-dev/stagehand/activities"
	"github.com/stagehand-dev/stagehand/activities/secrets"
)

// ManifestName is the file in a backup directory that lists its dumps with
// their checksums. It is written last: a directory without it holds, at
// most, a partial backup that a retry replaces.
const ManifestName = "manifest.json"

// maxToolOutput bounds the dump tools' stderr kept for an error message.
const maxToolOutput = 2000

// BackupFile is one dump of a backup.
type BackupFile struct {
	Plugin   string `json:"plugin"`
	Database string `json:"database"`
	// File is the dump's path relative to the worker's backup directory
	// (the backup key, a slash, the file name).
	File   string `json:"file"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Manifest is manifest.json.
type Manifest struct {
	Version   int    `json:"version"`
	Database  string `json:"database"`
	Driver    string `json:"driver"`
	CreatedAt string `json:"createdAt"`
	// WorkflowID and RunID are the run that made the backup: only its
	// retries may reuse the directory, so a key used twice never returns
	// (or overwrites) another run's backup. The run ID matters: a
	// workflow ID is reused by every run started with it, and a later
	// run handed the earlier run's backup would restore old data.
	WorkflowID string       `json:"workflowId,omitempty"`
	RunID      string       `json:"runId,omitempty"`
	Files      []BackupFile `json:"files"`
}

// BackupInput is the `with` of db.backup.
type BackupInput struct {
	Database string `json:"database"`
	// To is the backup's key: a relative directory inside the worker's
	// backup directory, e.g. upgrade-<run id>.
	To string `json:"to"`
}

// BackupOutput is the outputs of db.backup.
type BackupOutput struct {
	// Dir is the backup's directory on the worker.
	Dir string `json:"dir"`
	// Key is `to`, cleaned: what db.restore takes as `from`.
	Key        string       `json:"key"`
	Files      []BackupFile `json:"files"`
	TotalBytes int64        `json:"totalBytes"`
	// Reused: an earlier attempt had completed this backup; its files were
	// verified and returned without dumping again.
	Reused bool `json:"reused"`
}

// RestoreInput is the `with` of db.restore.
type RestoreInput struct {
	Database string `json:"database"`
	// From is the backup's key (db.backup's `to`/`key`).
	From string `json:"from,omitempty"`
	// Files is db.backup's `files` output, instead of (or to narrow) From.
	Files []BackupFile `json:"files,omitempty"`
}

// RestoredPlugin is one restored plugin database.
type RestoredPlugin struct {
	Plugin   string `json:"plugin"`
	Database string `json:"database"`
	File     string `json:"file"`
	// DroppedTables were created after the backup (e.g. by the newer
	// version's migrations) and removed so the schema is the backup's.
	DroppedTables []string `json:"droppedTables,omitempty"`
}

// RestoreOutput is the outputs of db.restore.
type RestoreOutput struct {
	Restored []RestoredPlugin `json:"restored"`
	Plugins  []string         `json:"plugins"`
}

// backupDir resolves a backup key to a directory inside the backup root:
// relative, no "..", and no symlink leading out of the root.
func (a *Activities) backupDir(key string, create bool) (string, string, error) {
	if a.BackupDir == "" {
		return "", "", notConfigured("the worker has no backup directory configured (db backupDir)")
	}
	if key == "" {
		return "", "", nonRetryable(activities.ErrInvalidArguments, "a backup key is required (to/from), e.g. upgrade-{{ .run.id }}")
	}
	if filepath.IsAbs(key) || strings.HasPrefix(key, "/") || strings.Contains(key, "\\") {
		return "", "", nonRetryable(activities.ErrInvalidArguments, fmt.Sprintf("backup key %q must be a relative path inside the backup directory", key))
	}
	for _, part := range strings.Split(key, "/") {
		if part == ".." {
			return "", "", nonRetryable(activities.ErrInvalidArguments, fmt.Sprintf("backup key %q must not contain \"..\"", key))
		}
	}
	clean := filepath.ToSlash(filepath.Clean(key))
	if clean == "." {
		return "", "", nonRetryable(activities.ErrInvalidArguments, fmt.Sprintf("backup key %q names the backup directory itself", key))
	}
	if create {
		if err := os.MkdirAll(a.BackupDir, 0o700); err != nil {
			return "", "", nonRetryable(activities.ErrBackupFailed, fmt.Sprintf("create backup directory: %v", err))
		}
	}
	root, err := filepath.EvalSymlinks(a.BackupDir)
	if err != nil {
		return "", "", notConfigured(fmt.Sprintf("backup directory %s: %v", a.BackupDir, err))
	}
	dir := filepath.Join(root, filepath.FromSlash(clean))
	inside := func(p string) bool { return p == root || strings.HasPrefix(p, root+string(filepath.Separator)) }
	escape := nonRetryable(activities.ErrInvalidArguments, fmt.Sprintf("backup key %q leads out of the backup directory (through a symlink)", key))
	if create {
		// Check the part that exists before creating the rest, so a
		// symlink cannot make us create directories elsewhere.
		for p := dir; p != root; p = filepath.Dir(p) {
			if _, err := os.Lstat(p); err == nil {
				if real, err := filepath.EvalSymlinks(p); err != nil || !inside(real) {
					return "", "", escape
				}
				break
			}
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return "", "", nonRetryable(activities.ErrBackupFailed, fmt.Sprintf("create %s: %v", dir, err))
		}
	}
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", "", nonRetryable(activities.ErrBackupChecksumMismatch, fmt.Sprintf("backup %q does not exist in %s", clean, a.BackupDir))
		}
		return "", "", nonRetryable(activities.ErrBackupFailed, fmt.Sprintf("backup %q: %v", clean, err))
	}
	if !inside(real) || real == root {
		return "", "", escape
	}
	return real, clean, nil
}

// Backup implements db.backup.
func (a *Activities) Backup(ctx context.Context, in BackupInput) (BackupOutput, error) {
	d, password, red, err := a.database(ctx, in.Database)
	if err != nil {
		return BackupOutput{}, err
	}
	dir, key, err := a.backupDir(in.To, true)
	if err != nil {
		return BackupOutput{}, err
	}
	progress := heartbeat(ctx)
	unlock, err := lockDir(ctx, dir, progress)
	if err != nil {
		return BackupOutput{}, nonRetryable(activities.ErrBackupFailed, fmt.Sprintf("lock %s: %v", dir, err))
	}
	defer unlock()
	wfID, runID := workflowRun(ctx)
	if m, err := readManifest(dir); err == nil {
		if m.Database != in.Database || m.Driver != d.Driver || m.WorkflowID != wfID || m.RunID != runID {
			return BackupOutput{}, nonRetryable(activities.ErrBackupFailed, fmt.Sprintf(
				"backup key %q already holds a complete backup of database %q made by workflow %q run %q; refusing to reuse or overwrite it: use a key per run, e.g. upgrade-{{ .run.id }}",
				key, m.Database, m.WorkflowID, m.RunID))
		}
		if verifyFiles(a.BackupDir, m.Files) == nil {
			progress("backup " + key + " already complete")
			return backupOutput(dir, key, m.Files, true), nil
		}
	}
	// Whatever is here is an unfinished or damaged attempt: the manifest
	// goes first, so a crash from now on never leaves a manifest that
	// vouches for files being rewritten.
	if err := removeLeftovers(dir); err != nil {
		return BackupOutput{}, nonRetryable(activities.ErrBackupFailed, fmt.Sprintf("clear %s: %v", dir, err))
	}
	names, err := d.listPlugins(ctx, password, red)
	if err != nil {
		return BackupOutput{}, err
	}
	tools, err := d.findTools(activities.ErrBackupFailed)
	if err != nil {
		return BackupOutput{}, err
	}
	priv, err := os.MkdirTemp("", "stagehand-db-")
	if err != nil {
		return BackupOutput{}, nonRetryable(activities.ErrBackupFailed, fmt.Sprintf("private temp dir: %v", err))
	}
	defer os.RemoveAll(priv)
	var files []BackupFile
	for i, dbname := range names {
		plugin := strings.TrimPrefix(dbname, d.prefix())
		progress(fmt.Sprintf("dumping %s (%d/%d)", dbname, i+1, len(names)))
		ext := ".dump"
		if d.Driver == DriverMySQL {
			ext = ".sql"
		}
		final := filepath.Join(dir, dumpFileName(dbname)+ext)
		tmp := final + ".tmp"
		if err := d.dump(ctx, tools, priv, password, dbname, tmp, red); err != nil {
			_ = os.Remove(tmp)
			return BackupOutput{}, err
		}
		size, sum, err := syncAndHash(tmp)
		if err != nil {
			return BackupOutput{}, nonRetryable(activities.ErrBackupFailed, fmt.Sprintf("dump of %s: %v", dbname, err))
		}
		if err := os.Rename(tmp, final); err != nil {
			return BackupOutput{}, nonRetryable(activities.ErrBackupFailed, fmt.Sprintf("dump of %s: %v", dbname, err))
		}
		files = append(files, BackupFile{Plugin: plugin, Database: dbname, File: key + "/" + filepath.Base(final), Size: size, SHA256: sum})
	}
	m := Manifest{Version: 1, Database: in.Database, Driver: d.Driver, CreatedAt: time.Now().UTC().Format(time.RFC3339), WorkflowID: wfID, RunID: runID, Files: files}
	if m.Files == nil {
		m.Files = []BackupFile{}
	}
	if err := writeManifest(dir, m); err != nil {
		return BackupOutput{}, nonRetryable(activities.ErrBackupFailed, fmt.Sprintf("write %s: %v", ManifestName, err))
	}
	return backupOutput(dir, key, m.Files, false), nil
}

// dumpFileName is a plugin database's name made safe as one file name:
// the name comes from the server's catalog, where PostgreSQL and MySQL
// allow "/", ".." and the like, which must not lead the dump out of the
// backup directory. Letters, digits, _, - and non-ASCII bytes (UTF-8)
// are kept, so Backstage's names are unchanged; any other byte becomes
// %XX, which keeps distinct names distinct.
func dumpFileName(dbname string) string {
	var b strings.Builder
	for i := 0; i < len(dbname); i++ {
		c := dbname[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c >= 0x80 {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

func backupOutput(dir, key string, files []BackupFile, reused bool) BackupOutput {
	out := BackupOutput{Dir: dir, Key: key, Files: files, Reused: reused}
	for _, f := range files {
		out.TotalBytes += f.Size
	}
	return out
}

func removeLeftovers(dir string) error {
	if err := os.Remove(filepath.Join(dir, ManifestName)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		n := e.Name()
		if strings.HasSuffix(n, ".tmp") || strings.HasSuffix(n, ".dump") || strings.HasSuffix(n, ".sql") {
			if err := os.Remove(filepath.Join(dir, n)); err != nil {
				return err
			}
		}
	}
	return nil
}

func readManifest(dir string) (Manifest, error) {
	var m Manifest
	b, err := os.ReadFile(filepath.Join(dir, ManifestName))
	if err != nil {
		return m, err
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("%s: %v", ManifestName, err)
	}
	return m, nil
}

func writeManifest(dir string, m Manifest) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, ManifestName+".tmp")
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, ManifestName))
}

func syncAndHash(path string) (int64, string, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return 0, "", err
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return 0, "", err
	}
	return hashReader(f)
}

func hashReader(r io.Reader) (int64, string, error) {
	h := sha256.New()
	n, err := io.Copy(h, r)
	if err != nil {
		return 0, "", err
	}
	return n, hex.EncodeToString(h.Sum(nil)), nil
}

// verifyFiles checks every file's size and sha256; the error names each
// file that does not match.
func verifyFiles(root string, files []BackupFile) error {
	var bad []string
	for _, f := range files {
		p := filepath.Join(root, filepath.FromSlash(f.File))
		fh, err := os.Open(p)
		if err != nil {
			bad = append(bad, fmt.Sprintf("%s: %v", f.File, errors.Unwrap(err)))
			continue
		}
		size, sum, err := hashReader(fh)
		fh.Close()
		switch {
		case err != nil:
			bad = append(bad, fmt.Sprintf("%s: %v", f.File, err))
		case sum != f.SHA256:
			bad = append(bad, fmt.Sprintf("%s: sha256 %s, manifest says %s", f.File, sum, f.SHA256))
		case size != f.Size:
			bad = append(bad, fmt.Sprintf("%s: %d bytes, manifest says %d", f.File, size, f.Size))
		}
	}
	if len(bad) > 0 {
		return errors.New(strings.Join(bad, "; "))
	}
	return nil
}

// Restore implements db.restore: every file is checked against the
// manifest before anything is restored.
func (a *Activities) Restore(ctx context.Context, in RestoreInput) (RestoreOutput, error) {
	d, password, red, err := a.database(ctx, in.Database)
	if err != nil {
		return RestoreOutput{}, err
	}
	from := in.From
	if from == "" {
		if len(in.Files) == 0 {
			return RestoreOutput{}, nonRetryable(activities.ErrInvalidArguments, "from (a backup key) or files (db.backup's files output) is required")
		}
		from = filepath.ToSlash(filepath.Dir(filepath.FromSlash(in.Files[0].File)))
	}
	dir, key, err := a.backupDir(from, false)
	if err != nil {
		return RestoreOutput{}, err
	}
	// The backup's lock: an earlier attempt that the server gave up on may
	// still be restoring (two pg_restore --clean into one database at
	// once), or a backup may still be writing this directory.
	unlock, err := lockDir(ctx, dir, heartbeat(ctx))
	if err != nil {
		return RestoreOutput{}, nonRetryable(activities.ErrRestoreFailed, fmt.Sprintf("lock %s: %v", dir, err))
	}
	defer unlock()
	m, err := readManifest(dir)
	if err != nil {
		return RestoreOutput{}, nonRetryable(activities.ErrBackupChecksumMismatch, fmt.Sprintf("backup %s has no readable %s (incomplete backup?): %v", key, ManifestName, err))
	}
	if m.Driver != d.Driver {
		return RestoreOutput{}, nonRetryable(activities.ErrInvalidArguments, fmt.Sprintf("backup %s holds %s dumps, but database %q is %s", key, m.Driver, in.Database, d.Driver))
	}
	files := m.Files
	if len(in.Files) > 0 {
		// The files named must be the manifest's, with the same checksums:
		// both records have to agree before anything is touched.
		byFile := map[string]BackupFile{}
		for _, f := range m.Files {
			byFile[f.File] = f
		}
		files = nil
		for _, f := range in.Files {
			mf, ok := byFile[f.File]
			if !ok {
				return RestoreOutput{}, nonRetryable(activities.ErrBackupChecksumMismatch, fmt.Sprintf("%s is not in backup %s's manifest", f.File, key))
			}
			if f.SHA256 != "" && f.SHA256 != mf.SHA256 {
				return RestoreOutput{}, nonRetryable(activities.ErrBackupChecksumMismatch, fmt.Sprintf("%s: files says sha256 %s, the manifest %s", f.File, f.SHA256, mf.SHA256))
			}
			files = append(files, mf)
		}
	}
	for _, f := range files {
		if !strings.HasPrefix(f.File, key+"/") || strings.Contains(f.File, "..") {
			return RestoreOutput{}, nonRetryable(activities.ErrBackupChecksumMismatch, fmt.Sprintf("manifest entry %s is not inside backup %s", f.File, key))
		}
	}
	heartbeat(ctx)("verifying checksums of " + strconv.Itoa(len(files)) + " dumps")
	if err := verifyFiles(a.BackupDir, files); err != nil {
		return RestoreOutput{}, nonRetryable(activities.ErrBackupChecksumMismatch, fmt.Sprintf("backup %s refused, nothing was restored: %v", key, err))
	}
	tools, err := d.findTools(activities.ErrRestoreFailed)
	if err != nil {
		return RestoreOutput{}, err
	}
	priv, err := os.MkdirTemp("", "stagehand-db-")
	if err != nil {
		return RestoreOutput{}, nonRetryable(activities.ErrRestoreFailed, fmt.Sprintf("private temp dir: %v", err))
	}
	defer os.RemoveAll(priv)
	// Every dump's table list is read before the first restore: a dump
	// that cannot be read, or lists no tables, refuses the whole restore
	// rather than stopping it half-way with some plugins restored.
	tables := make([]map[string]bool, len(files))
	if d.Driver == DriverPostgres {
		for i, f := range files {
			heartbeat(ctx)(fmt.Sprintf("reading the table of contents of %s (%d/%d)", f.File, i+1, len(files)))
			if tables[i], err = pgDumpTables(ctx, tools, filepath.Join(a.BackupDir, filepath.FromSlash(f.File))); err != nil {
				return RestoreOutput{}, nonRetryable(activities.ErrRestoreFailed, red.Clean(fmt.Sprintf("backup %s refused, nothing was restored: %v", key, err)))
			}
		}
	}
	out := RestoreOutput{Restored: []RestoredPlugin{}, Plugins: []string{}}
	for i, f := range files {
		heartbeat(ctx)(fmt.Sprintf("restoring %s (%d/%d)", f.Database, i+1, len(files)))
		path := filepath.Join(a.BackupDir, filepath.FromSlash(f.File))
		dropped, err := d.restore(ctx, tools, priv, password, f.Database, path, tables[i], red)
		if err != nil {
			return out, err
		}
		out.Restored = append(out.Restored, RestoredPlugin{Plugin: f.Plugin, Database: f.Database, File: f.File, DroppedTables: dropped})
		out.Plugins = append(out.Plugins, f.Plugin)
	}
	return out, nil
}

// listPlugins lists the plugin databases (or schemas) by prefix.
func (d Database) listPlugins(ctx context.Context, password string, red *secrets.Redactor) ([]string, error) {
	if d.Driver == DriverMySQL {
		db, err := d.mysqlOpen(password)
		if err != nil {
			return nil, err
		}
		defer db.Close()
		conn, err := db.Conn(ctx)
		if err != nil {
			return nil, classify(d.mysqlConnectWhat(), err, red)
		}
		defer conn.Close()
		names, err := queryStrings(ctx, conn,
			`SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE LEFT(SCHEMA_NAME, CHAR_LENGTH(?)) = ? ORDER BY SCHEMA_NAME`, d.prefix(), d.prefix())
		if err != nil {
			return nil, classify("list plugin databases on "+d.addr(), err, red)
		}
		return names, nil
	}
	conn, err := d.pgConnect(ctx, d.adminDatabase(), password, red)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	names, err := d.pgListPlugins(ctx, conn)
	if err != nil {
		return nil, classify("list plugin databases on "+d.addr(), err, red)
	}
	return names, nil
}

type tools struct{ dump, restore string }

// findTools finds the dump and restore programs; errType is the step's
// (BackupFailed or RestoreFailed).
func (d Database) findTools(errType string) (tools, error) {
	look := func(names ...string) string {
		for _, n := range names {
			if p, err := exec.LookPath(n); err == nil {
				return p
			}
		}
		return ""
	}
	var t tools
	if d.Driver == DriverMySQL {
		t = tools{dump: look("mariadb-dump", "mysqldump"), restore: look("mariadb", "mysql")}
		if t.dump == "" || t.restore == "" {
			return t, nonRetryable(errType, "mariadb-dump/mysqldump and mariadb/mysql are needed on the worker: apt-get install -y mariadb-client")
		}
		return t, nil
	}
	t = tools{dump: look("pg_dump"), restore: look("pg_restore")}
	if t.dump == "" || t.restore == "" {
		return t, nonRetryable(errType, "pg_dump and pg_restore are needed on the worker: apt-get install -y postgresql-client")
	}
	return t, nil
}

// pgEnv is the environment of pg_dump/pg_restore: the worker's, without
// any PG* variable that could point them elsewhere, plus the password.
func (d Database) pgEnv(password string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") {
			env = append(env, kv)
		}
	}
	env = append(env, "PGCONNECT_TIMEOUT=15", "PGAPPNAME=stagehand")
	if password != "" {
		env = append(env, "PGPASSWORD="+password)
	}
	if d.SSLMode != "" {
		env = append(env, "PGSSLMODE="+d.SSLMode)
	}
	if d.CAFile != "" {
		env = append(env, "PGSSLROOTCERT="+d.CAFile)
	}
	if d.ClientCertFile != "" {
		env = append(env, "PGSSLCERT="+d.ClientCertFile, "PGSSLKEY="+d.ClientKeyFile)
	}
	return env
}

// pgDBName is a database name as pg_dump's and pg_restore's --dbname: a
// conninfo string naming it, since libpq reads a --dbname holding "=" (or
// starting postgres://) as connection settings, which a name from the
// server's catalog must not be able to supply.
func pgDBName(name string) string { return "dbname=" + quoteConnValue(name) }

// pgPattern is a schema name as pg_dump's --schema, which is a pattern:
// inside double quotes *, ?, . and upper case are taken literally.
func pgPattern(name string) string { return `"` + strings.ReplaceAll(name, `"`, `""`) + `"` }

func (d Database) pgConnArgs() []string {
	port := d.Port
	if port == 0 {
		port = 5432
	}
	return []string{"--host", d.Host, "--port", strconv.Itoa(port), "--username", d.User, "--no-password"}
}

// mysqlDefaultsFile writes the password and the TLS options into a 0600
// option file in the private temp dir; clients read it with
// --defaults-extra-file, which must be their first argument.
func (d Database) mysqlDefaultsFile(priv, password string) (string, error) {
	// Option files are read line by line: a newline in a value must be
	// written as \n, or the rest of the password would be read as
	// further options.
	quote := func(s string) string {
		return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`, "\r", `\r`).Replace(s) + `"`
	}
	var b strings.Builder
	b.WriteString("[client]\n")
	if password != "" {
		fmt.Fprintf(&b, "password=%s\n", quote(password))
	}
	// The same meaning as the driver's tls parameter (mysqlConnector).
	switch d.TLS {
	case "true":
		b.WriteString("ssl\nssl-verify-server-cert\n")
	case "skip-verify", "preferred":
		b.WriteString("ssl\n")
	default:
		b.WriteString("skip-ssl\n")
	}
	if d.CAFile != "" {
		fmt.Fprintf(&b, "ssl-ca=%s\n", quote(d.CAFile))
	}
	if d.ClientCertFile != "" {
		fmt.Fprintf(&b, "ssl-cert=%s\nssl-key=%s\n", quote(d.ClientCertFile), quote(d.ClientKeyFile))
	}
	p := filepath.Join(priv, "client.cnf")
	if err := os.WriteFile(p, []byte(b.String()), 0o600); err != nil {
		return "", err
	}
	return p, nil
}

func (d Database) mysqlConnArgs(defaults string) []string {
	port := d.Port
	if port == 0 {
		port = 3306
	}
	return []string{"--defaults-extra-file=" + defaults, "--host=" + d.Host, "--port=" + strconv.Itoa(port), "--user=" + d.User, "--protocol=TCP"}
}

func (d Database) dump(ctx context.Context, t tools, priv, password, dbname, to string, red *secrets.Redactor) error {
	var cmd *exec.Cmd
	if d.Driver == DriverMySQL {
		defaults, err := d.mysqlDefaultsFile(priv, password)
		if err != nil {
			return nonRetryable(activities.ErrBackupFailed, fmt.Sprintf("defaults file: %v", err))
		}
		args := append(d.mysqlConnArgs(defaults),
			"--single-transaction", "--routines", "--add-drop-database", "--result-file="+to, "--databases", dbname)
		cmd = exec.CommandContext(ctx, t.dump, args...)
	} else {
		args := append(d.pgConnArgs(), "--format=custom", "--file="+to)
		if d.schemaMode() {
			args = append(args, "--schema="+pgPattern(dbname), "--dbname="+pgDBName(d.Database))
		} else {
			args = append(args, "--dbname="+pgDBName(dbname))
		}
		cmd = exec.CommandContext(ctx, t.dump, args...)
		cmd.Env = d.pgEnv(password)
	}
	if out, err := runTool(ctx, cmd, "dump "+dbname); err != nil {
		return toolError(activities.ErrBackupFailed, "dump "+dbname, err, out, red)
	}
	return nil
}

// restore restores one dump; inDump is the tables it holds (PostgreSQL).
func (d Database) restore(ctx context.Context, t tools, priv, password, dbname, from string, inDump map[string]bool, red *secrets.Redactor) ([]string, error) {
	var cmd *exec.Cmd
	var dropped []string
	if d.Driver == DriverMySQL {
		defaults, err := d.mysqlDefaultsFile(priv, password)
		if err != nil {
			return nil, nonRetryable(activities.ErrRestoreFailed, fmt.Sprintf("defaults file: %v", err))
		}
		f, err := os.Open(from)
		if err != nil {
			return nil, nonRetryable(activities.ErrRestoreFailed, fmt.Sprintf("open %s: %v", filepath.Base(from), err))
		}
		defer f.Close()
		// The dump starts with DROP DATABASE / CREATE DATABASE / USE
		// (--add-drop-database --databases), so tables created after the
		// backup go too.
		cmd = exec.CommandContext(ctx, t.restore, append(d.mysqlConnArgs(defaults), "--batch")...)
		cmd.Stdin = f
	} else {
		target := dbname
		if d.schemaMode() {
			target = d.Database
		} else if err := d.pgEnsureDatabase(ctx, password, dbname, red); err != nil {
			return nil, err
		}
		// pg_restore --clean drops only what the dump holds: tables a newer
		// version created after the backup would stay, and its migrations
		// would fail on them when the upgrade is tried again.
		var err error
		if dropped, err = d.pgDropTablesNotInDump(ctx, password, target, dbname, inDump, red); err != nil {
			return nil, err
		}
		args := append(d.pgConnArgs(), "--clean", "--if-exists", "--single-transaction", "--exit-on-error", "--dbname="+pgDBName(target), from)
		cmd = exec.CommandContext(ctx, t.restore, args...)
		cmd.Env = d.pgEnv(password)
	}
	if out, err := runTool(ctx, cmd, "restore "+dbname); err != nil {
		return dropped, toolError(activities.ErrRestoreFailed, "restore "+dbname, err, out, red)
	}
	return dropped, nil
}

// tocTableRE matches a table entry of `pg_restore --list`:
// "215; 1259 16386 TABLE public knex_migrations postgres". The owner is
// the last word (empty with --no-owner), so a table name may hold spaces.
var tocTableRE = regexp.MustCompile(`^\d+; \d+ \d+ TABLE (\S+) (.+) (\S*)$`)

// pgDumpTables reads the tables ("schema.table") a custom-format dump
// holds from pg_restore --list.
func pgDumpTables(ctx context.Context, t tools, dump string) (map[string]bool, error) {
	cmd := exec.CommandContext(ctx, t.restore, "--list", dump)
	list, err := runToolLimit(ctx, cmd, "list "+filepath.Base(dump), maxTOC)
	if err != nil {
		text := strings.TrimSpace(string(list))
		if len(text) > maxToolOutput {
			text = text[:maxToolOutput] + "…"
		}
		return nil, fmt.Errorf("read the table of contents of %s: %v: %s", filepath.Base(dump), err, text)
	}
	if len(list) >= maxTOC {
		// A cut list would miss tables that are in the dump, and they
		// would be dropped as if created after the backup.
		return nil, fmt.Errorf("the table of contents of %s exceeds %d bytes", filepath.Base(dump), maxTOC)
	}
	inDump := map[string]bool{}
	for _, line := range strings.Split(string(list), "\n") {
		if m := tocTableRE.FindStringSubmatch(line); m != nil {
			inDump[m[1]+"."+m[2]] = true
		}
	}
	if len(inDump) == 0 {
		// An unreadable or empty list must not turn into "drop everything".
		return nil, fmt.Errorf("%s lists no tables", filepath.Base(dump))
	}
	return inDump, nil
}

// pgDropTablesNotInDump drops, in one transaction, the tables of the
// plugin's database (or schema) that the dump does not contain.
func (d Database) pgDropTablesNotInDump(ctx context.Context, password, target, plugin string, inDump map[string]bool, red *secrets.Redactor) ([]string, error) {
	conn, err := d.pgConnect(ctx, target, password, red)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var schemas []string
	if d.schemaMode() {
		schemas = []string{plugin}
	}
	rows, err := conn.Query(ctx, withSchemas(`SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND @SCHEMAS@ ORDER BY 1, 2`), schemas)
	if err != nil {
		return nil, classify("list tables of "+plugin, err, red)
	}
	var extra []string
	var idents []string
	var schema, table string
	_, err = pgx.ForEachRow(rows, []any{&schema, &table}, func() error {
		if !inDump[schema+"."+table] {
			extra = append(extra, schema+"."+table)
			idents = append(idents, pgx.Identifier{schema, table}.Sanitize())
		}
		return nil
	})
	if err != nil {
		return nil, classify("list tables of "+plugin, err, red)
	}
	if len(extra) == 0 {
		return nil, nil
	}
	if _, err := conn.Exec(ctx, "DROP TABLE IF EXISTS "+strings.Join(idents, ", ")+" CASCADE"); err != nil {
		return nil, classify("drop tables created after the backup in "+plugin, err, red)
	}
	return extra, nil
}

// pgEnsureDatabase creates a plugin database that was dropped since the
// backup, so pg_restore has something to restore into.
func (d Database) pgEnsureDatabase(ctx context.Context, password, dbname string, red *secrets.Redactor) error {
	conn, err := d.pgConnect(ctx, d.adminDatabase(), password, red)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, dbname).Scan(&exists); err != nil {
		return classify("look up database "+dbname, err, red)
	}
	if exists {
		return nil
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{dbname}.Sanitize()); err != nil {
		return classify("create database "+dbname, err, red)
	}
	return nil
}

// toolHeartbeatEvery is how often a running dump or restore heartbeats.
// It must stay well under the steps' heartbeat timeout: a dump of a big
// plugin database takes longer than that, and without heartbeats the
// server would time the attempt out and start another (a second restore
// into the same database) while this one still runs. Heartbeats are also
// how a cancellation reaches ctx, which kills the tool.
var toolHeartbeatEvery = 15 * time.Second

// runTool runs a dump or restore program, heartbeating "what" while it
// runs, and returns its (bounded) combined output.
func runTool(ctx context.Context, cmd *exec.Cmd, what string) ([]byte, error) {
	return runToolLimit(ctx, cmd, what, 64<<10)
}

// maxTOC bounds a pg_restore --list read into memory.
const maxTOC = 16 << 20

func runToolLimit(ctx context.Context, cmd *exec.Cmd, what string, limit int) ([]byte, error) {
	var buf bytes.Buffer
	cmd.Stdout = &limitedWriter{w: &buf, n: limit}
	cmd.Stderr = cmd.Stdout
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	progress := heartbeat(ctx)
	start := time.Now()
	tick := time.NewTicker(toolHeartbeatEvery)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			return buf.Bytes(), err
		case <-tick.C:
			progress(fmt.Sprintf("%s: running for %s", what, time.Since(start).Round(time.Second)))
		}
	}
}

func toolError(errType, what string, err error, out []byte, red *secrets.Redactor) error {
	// Scrub before cutting: a cut through the password would leave a part
	// of it that the redactor no longer recognises.
	text := strings.TrimSpace(red.Clean(string(out)))
	if len(text) > maxToolOutput {
		cut := len(text) - maxToolOutput
		for cut < len(text) && !utf8.RuneStart(text[cut]) {
			cut++
		}
		text = "…" + text[cut:]
	}
	msg := red.Clean(fmt.Sprintf("%s: %v", what, err))
	if text != "" {
		msg += ": " + text
	}
	if isUnavailableText(text) {
		return retryable(activities.ErrDatabaseUnavailable, msg)
	}
	return nonRetryable(errType, msg)
}

// isUnavailableText recognises the dump tools' connection failures, which
// a later attempt may get past.
func isUnavailableText(s string) bool {
	for _, m := range []string{"Connection refused", "could not connect to server", "Can't connect to", "timeout expired", "the database system is starting up", "Too many connections"} {
		if strings.Contains(s, m) {
			return true
		}
	}
	return false
}

type limitedWriter struct {
	w io.Writer
	n int
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	if l.n <= 0 {
		return len(p), nil
	}
	q := p
	if len(q) > l.n {
		q = q[:l.n]
	}
	l.n -= len(q)
	_, err := l.w.Write(q)
	return len(p), err
}

// lockDir takes an exclusive lock on a backup directory for one attempt.
// An earlier attempt of the same step that the server gave up on (lost
// heartbeat) may still be dumping into the same temp files until its
// context is cancelled; the new attempt waits for it instead of writing
// the same files at once.
func lockDir(ctx context.Context, dir string, progress func(string)) (func(), error) {
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	waited := false
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, err
		}
		if !waited {
			progress("waiting for another attempt to release " + dir)
			waited = true
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(500 * time.Millisecond):
			progress("waiting for another attempt to release " + dir)
		}
	}
}

// workflowRun is the workflow and run an activity belongs to ("", ""
// outside an activity).
func workflowRun(ctx context.Context) (string, string) {
	if activity.IsActivity(ctx) {
		w := activity.GetInfo(ctx).WorkflowExecution
		return w.ID, w.RunID
	}
	return "", ""
}
