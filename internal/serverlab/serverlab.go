// Package serverlab prepares, for end-to-end tests, a real Backstage portal
// deployed as a single server: a git work tree shaped like a create-app
// project (tools/backstage-server: packages/backend/src/index.ts, app-config.yaml,
// backstage.json, an npm workspace), installed with its pinned packages and
// built, plus everything a worker config needs to run it — the start
// command and environment (the database password as a secret reference),
// the port, health URL and log file, the database entry the db steps use,
// the release manifests of the offline version bump, and the allowed
// commands (install, build, bump, add a plugin) the runbooks call.
//
// It does not start the backend: starting, stopping and watching it is the
// worker's job (the server.* steps). Lab.Start is there for the harness's own
// tests and for tests that need the portal running before the worker does.
//
// Speed: `npm ci` of the template takes one to two minutes on 2 cores, so
// `make backstage-server-tools` installs it once (tools/backstage-server/prepare.sh,
// into bin/backstage-server/portal) and every lab copies that node_modules
// (cp -a, about 8 s for 360 MB): an independent copy, so npm rewriting
// files in one lab never touches another. A missing or stale preparation is
// a failure naming the make target, never a skip; under -short New skips
// before doing anything.
package serverlab

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stagehand-dev/stagehand/activities/command"
	"github.com/stagehand-dev/stagehand/activities/db"
	"github.com/stagehand-dev/stagehand/internal/localenv"
	"github.com/stagehand-dev/stagehand/internal/patchlab"
	"github.com/stagehand-dev/stagehand/internal/pgtest"
	"github.com/stagehand-dev/stagehand/internal/upgradelab"
)

// Releases of the portal. FromRelease (catalog backend 3.9.1, 43 Knex
// migrations) is what the template runs; ToRelease moves the catalog to
// 4.0.0, which applies 2 more migrations in a new batch. FailRelease has
// ToRelease's packages, but the template's test fault
// (plugins/catalog-backend-module-release-fault) makes the backend exit 1
// with "Backend failed to start up: Stagehand test fault: ..." right after
// every plugin initialised, so the catalog's 2 migrations have run: the
// upgrade whose new version fails to start after migrating. The numbers
// are upgradelab's, so the same bump tool moves the same packages.
const (
	FromRelease = upgradelab.FromRelease
	ToRelease   = upgradelab.ToRelease
	FailRelease = "1.45.1"
)

// Catalog backend migrations at FromRelease and ToRelease.
const (
	CatalogMigrationsFrom = 43
	CatalogMigrationsTo   = 45
)

// FaultMessage starts the line the failing release prints before exiting.
const FaultMessage = "Backend failed to start up: Stagehand test fault"

// The real backend plugin the plugin-install tests add: the search backend
// with its PostgreSQL engine module, two packages of the same dependency
// generation as catalog 3.9.1 and auth-backend 0.30.1 (backend-plugin-api
// ^1.10.1). The module keeps the plugin's database (backstage_plugin_search)
// with 2 Knex migrations; PluginRoute answers 200 without a token when the
// default auth policy is off, as the template has it.
//
// PluginConfigKey is a key the search backend reads at start-up: the
// longest query term it accepts (default 100). Set to PluginConfigValue, a
// query for a longer term answers 400 with "The term length "N" is greater
// than "5"", a shorter one 200.
//
// (Checked and not chosen: notifications-backend 0.6.9 and
// user-settings-backend 0.4.7 have migrations but every route demands a
// user token.)
var PluginPackages = []string{
	"@backstage/plugin-search-backend@2.1.7",
	"@backstage/plugin-search-backend-module-pg@0.5.59",
}

const (
	PluginID          = "search"
	PluginDatabase    = "backstage_plugin_search"
	PluginMigrations  = 2
	PluginRoute       = "/api/search/query?term=abc"
	PluginConfigKey   = "search.maxTermLength"
	PluginConfigValue = 5
)

// PluginImports are the lines that register PluginPackages in
// packages/backend/src/index.ts, before backend.start().
var PluginImports = []string{
	"backend.add(import('@backstage/plugin-search-backend'));",
	"backend.add(import('@backstage/plugin-search-backend-module-pg'));",
}

// PasswordEnv is the worker environment variable the database password
// reference names (Lab.Env's POSTGRES_PASSWORD is "env:" + PasswordEnv).
const PasswordEnv = "STAGEHAND_PORTAL_DB_PASSWORD"

// DatabaseName is the lab's entry in the worker config's `databases:`.
const DatabaseName = "portal-db"

// ReadinessPath is Backstage's readiness probe.
const ReadinessPath = "/.backstage/health/v1/readiness"

// PrepareHint says how to prepare the installed copy the labs copy.
const PrepareHint = "run `make backstage-server-tools` (npm ci of tools/backstage-server into bin/backstage-server)"

// portalFiles are the template's entries that make up the portal
// repository (tools/backstage-server's README.md and prepare.sh are not
// part of it); prepare.sh copies the same list.
var portalFiles = []string{"package.json", "package-lock.json", "backstage.json", "app-config.yaml", ".gitignore", "scripts", "packages", "plugins"}

// Releases are the manifests the lab's bump reads: upgradelab's and
// FailRelease.
func Releases() []upgradelab.Manifest {
	out := append([]upgradelab.Manifest(nil), upgradelab.Releases...)
	for _, m := range upgradelab.Releases {
		if m.ReleaseVersion == ToRelease {
			fail := upgradelab.Manifest{ReleaseVersion: FailRelease, Packages: append([]upgradelab.Package(nil), m.Packages...)}
			out = append(out, fail)
		}
	}
	return out
}

// WriteManifests writes <release>.json for every release into dir.
func WriteManifests(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, m := range Releases() {
		data, err := json.MarshalIndent(m, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, m.ReleaseVersion+".json"), append(data, '\n'), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// Options configures a lab.
type Options struct {
	// PG is the database server; nil starts one for the test (pgtest.New).
	// Give each lab its own server (or one no other lab uses at the same
	// time): the plugins' database names are fixed (backstage_plugin_<id>),
	// so a second lab on the same server would find the first one's
	// migrations, e.g. catalog 3.9.1 refusing a schema 4.0.0 migrated.
	PG *pgtest.Server
	// Root is the repository root; empty finds it from the working
	// directory.
	Root string
	// Prepared is the directory prepare.sh filled (holding portal/); empty
	// is $STAGEHAND_BACKSTAGE_SERVER_DIR or <root>/bin/backstage-server.
	Prepared string
	// BumpBin is stagehand-portal-bump; empty is <root>/bin/stagehand-portal-bump.
	BumpBin string
}

// Lab is one portal server's checkout, installed and built, and what a
// worker needs to run it.
type Lab struct {
	// Dir is the portal's work tree (a git repository with one commit on
	// main, node_modules and dist ignored), the `server` environment's
	// directory.
	Dir string
	// Command is the start command, argv run in Dir.
	Command []string
	// Env is the server process's environment: literal values, and the
	// database password as a secret reference (env:PasswordEnv).
	Env map[string]string
	// Secrets are the values the worker's own environment must hold for
	// the references in Env and Database (PasswordEnv -> password).
	Secrets map[string]string
	// Port is the backend's port; URL its base URL, HealthURL the
	// readiness probe.
	Port           int
	URL, HealthURL string
	// LogFile and PidFile are where the server's output and pid go
	// (under Dir/.stagehand, which .gitignore excludes).
	LogFile, PidFile string
	// Database is the worker config's `databases:` entry (named
	// DatabaseName) for the server the portal's plugins keep their
	// databases on.
	Database db.Database
	// ManifestsDir holds the release manifests; BumpBin reads them.
	ManifestsDir, BumpBin string
	// PG is the database server.
	PG *pgtest.Server
	// Timings of the lab's preparation.
	CopyTime, BuildTime time.Duration
}

// New prepares a lab for one test; the directory is removed when the test
// ends. Under -short it skips the test first.
func New(t testing.TB, opts Options) *Lab {
	t.Helper()
	localenv.SkipIfShort(t, "a Backstage portal server (Node, npm, bin/backstage-server)")
	if opts.PG == nil {
		opts.PG = pgtest.New(t)
	}
	dir := t.TempDir()
	l, err := Prepare(context.Background(), dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("serverlab: portal in %s (copy %s, build %s), port %d", l.Dir, l.CopyTime.Round(time.Millisecond), l.BuildTime.Round(time.Millisecond), l.Port)
	return l
}

// Prepare builds a lab in root (which must exist): root/portal is the work
// tree, root/manifests the release manifests. opts.PG is required.
func Prepare(ctx context.Context, root string, opts Options) (*Lab, error) {
	if opts.PG == nil {
		return nil, errors.New("serverlab: Options.PG is required")
	}
	repo := opts.Root
	if repo == "" {
		r, err := localenv.RepoRoot()
		if err != nil {
			return nil, fmt.Errorf("serverlab: %w", err)
		}
		repo = r
	}
	prepared := opts.Prepared
	if prepared == "" {
		prepared = os.Getenv("STAGEHAND_BACKSTAGE_SERVER_DIR")
	}
	if prepared == "" {
		prepared = filepath.Join(repo, "bin", "backstage-server")
	}
	template := filepath.Join(repo, "tools", "backstage-server")
	if err := CheckPrepared(template, prepared); err != nil {
		return nil, err
	}
	bump := opts.BumpBin
	if bump == "" {
		bump = filepath.Join(repo, "bin", "stagehand-portal-bump")
	}
	if _, err := os.Stat(bump); err != nil {
		return nil, fmt.Errorf("serverlab: %s is missing: run `make stagehand-portal-bump`", bump)
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		return nil, fmt.Errorf("serverlab: npm not found on PATH (Node 20+ with npm is needed): %w", err)
	}
	nodeBin, err := exec.LookPath("node")
	if err != nil {
		return nil, fmt.Errorf("serverlab: node not found on PATH (Node 20+ is needed): %w", err)
	}

	l := &Lab{Dir: filepath.Join(root, "portal"), ManifestsDir: filepath.Join(root, "manifests"), BumpBin: bump, PG: opts.PG}
	if err := WriteManifests(l.ManifestsDir); err != nil {
		return nil, fmt.Errorf("serverlab: write manifests: %w", err)
	}
	// The portal's files come from the template (so a change to it needs no
	// new preparation unless the lock file changed); node_modules from the
	// prepared install.
	begin := time.Now()
	if err := os.MkdirAll(l.Dir, 0o755); err != nil {
		return nil, err
	}
	args := []string{"-a"}
	for _, f := range portalFiles {
		args = append(args, filepath.Join(template, f))
	}
	args = append(args, filepath.Join(prepared, "portal", "node_modules"), l.Dir+"/")
	if out, err := exec.CommandContext(ctx, "cp", args...).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("serverlab: copy the portal: %w: %s", err, localenv.Tail(out, 2000))
	}
	l.CopyTime = time.Since(begin)
	for _, g := range [][]string{
		{"init", "--quiet", "--initial-branch=main"},
		{"add", "-A"},
		{"commit", "--quiet", "-m", "portal: Backstage " + FromRelease},
	} {
		if _, err := patchlab.Git(l.Dir, g...); err != nil {
			return nil, fmt.Errorf("serverlab: %w", err)
		}
	}
	begin = time.Now()
	if out, err := run(ctx, l.Dir, nil, npm, "run", "build"); err != nil {
		return nil, fmt.Errorf("serverlab: npm run build: %w\n%s", err, out)
	}
	l.BuildTime = time.Since(begin)

	port, err := localenv.FreePort()
	if err != nil {
		return nil, err
	}
	password, err := randomHex(16)
	if err != nil {
		return nil, err
	}
	// The cluster trusts local connections, so this password is not
	// checked; it is set on the role anyway so that the reference path
	// (worker env -> server env) carries a real value end to end.
	if out, err := run(ctx, "", nil, "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", opts.PG.DSN("postgres"),
		"-c", fmt.Sprintf("ALTER ROLE %s PASSWORD '%s'", opts.PG.User, password)); err != nil {
		return nil, fmt.Errorf("serverlab: set the database password: %w\n%s", err, out)
	}
	l.Port = port
	l.URL = fmt.Sprintf("http://127.0.0.1:%d", port)
	l.HealthURL = l.URL + ReadinessPath
	l.LogFile = filepath.Join(l.Dir, ".stagehand", "server.log")
	l.PidFile = filepath.Join(l.Dir, ".stagehand", "server.pid")
	l.Command = []string{nodeBin, "packages/backend/dist/index.js", "--config", "app-config.yaml"}
	l.Env = map[string]string{
		"BACKEND_PORT":      strconv.Itoa(port),
		"POSTGRES_HOST":     opts.PG.Host,
		"POSTGRES_PORT":     strconv.Itoa(opts.PG.Port),
		"POSTGRES_USER":     opts.PG.User,
		"POSTGRES_PASSWORD": "env:" + PasswordEnv,
		// production: no dev-only file watching, faster start.
		"NODE_ENV":     "production",
		"NODE_OPTIONS": "--no-deprecation",
	}
	l.Secrets = map[string]string{PasswordEnv: password}
	l.Database = db.Database{
		Driver: "postgres", Host: opts.PG.Host, Port: opts.PG.Port, User: opts.PG.User,
		PasswordRef: "env:" + PasswordEnv, PluginDivisionMode: "database", SSLMode: "disable",
	}
	return l, nil
}

// Commands are the worker config's `commands:` entries the single-server
// runbooks call, all confined to the lab's directory:
//
//	portal-install     npm install (after a bump: updates package-lock.json, as `yarn install`)
//	portal-ci          npm ci (exactly the lock file, e.g. after packages were restored)
//	portal-build       npm run build
//	backstage-bump     stagehand-portal-bump --manifests DIR versions:bump --release X
//	portal-add-plugin  npm install --save-exact -w packages/backend <@scope/name@x.y.z>...
//
// The npm ones use the machine's npm cache first (--prefer-offline) and run
// no package install scripts (--ignore-scripts; the backend needs none).
func (l *Lab) Commands() map[string]command.Command {
	npm := "npm"
	if p, err := exec.LookPath("npm"); err == nil {
		npm = p
	}
	dirs := []string{l.Dir}
	// npm finds node through PATH and keeps its cache under HOME.
	inherit := []string{"PATH", "HOME", "LANG", "TMPDIR"}
	npmFlags := []string{"--prefer-offline", "--no-audit", "--no-fund", "--ignore-scripts"}
	return map[string]command.Command{
		"portal-install": {Argv: append([]string{npm, "install"}, npmFlags...), Dirs: dirs, InheritEnv: inherit, Timeout: 15 * time.Minute},
		"portal-ci":      {Argv: append([]string{npm, "ci"}, npmFlags...), Dirs: dirs, InheritEnv: inherit, Timeout: 15 * time.Minute},
		"portal-build":   {Argv: []string{npm, "run", "build"}, Dirs: dirs, InheritEnv: inherit, Timeout: 5 * time.Minute},
		"backstage-bump": {
			Argv:       []string{l.BumpBin, "--manifests", l.ManifestsDir, "versions:bump"},
			ArgPattern: `--release|[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?`,
			MaxArgs:    2,
			Dirs:       dirs,
		},
		"portal-add-plugin": {
			Argv:       append(append([]string{npm, "install"}, npmFlags...), "--save-exact", "-w", "packages/backend"),
			ArgPattern: `@[a-z0-9][a-z0-9._-]*/[a-z0-9][a-z0-9._-]*@[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?`,
			MaxArgs:    8,
			Dirs:       dirs,
			InheritEnv: inherit,
			Timeout:    15 * time.Minute,
		},
	}
}

// ProcessEnv is Env with the references resolved from Secrets, as
// NAME=value entries for a process started outside the worker.
func (l *Lab) ProcessEnv() []string {
	out := make([]string, 0, len(l.Env))
	for k, v := range l.Env {
		if ref, ok := strings.CutPrefix(v, "env:"); ok {
			v = l.Secrets[ref]
		}
		out = append(out, k+"="+v)
	}
	return out
}

// CheckPrepared reports whether prepared/portal was installed by
// prepare.sh from the template's current package-lock.json.
func CheckPrepared(template, prepared string) error {
	stamp, err := os.ReadFile(filepath.Join(prepared, "portal", "node_modules", ".stagehand-stamp"))
	if err != nil {
		return fmt.Errorf("serverlab: the portal template is not prepared in %s: %s", prepared, PrepareHint)
	}
	lock, err := os.ReadFile(filepath.Join(template, "package-lock.json"))
	if err != nil {
		return fmt.Errorf("serverlab: read the template's package-lock.json: %w", err)
	}
	sum := sha256.Sum256(lock)
	fields := strings.Fields(string(stamp))
	if len(fields) < 3 || fields[0] != hex.EncodeToString(sum[:]) {
		return fmt.Errorf("serverlab: %s/portal was prepared from a different package-lock.json: %s", prepared, PrepareHint)
	}
	if want := strings.Join(PluginPackages, ","); fields[2] != want {
		return fmt.Errorf("serverlab: %s/portal primed the npm cache for %s, not %s: %s", prepared, fields[2], want, PrepareHint)
	}
	return nil
}

// Run runs a program in the lab's directory (npm, the bump tool, git) with
// the worker-like environment, returning its combined output; for tests
// that drive the portal by hand.
func (l *Lab) Run(ctx context.Context, argv ...string) (string, error) {
	out, err := run(ctx, l.Dir, nil, argv[0], argv[1:]...)
	if err != nil {
		return out, fmt.Errorf("%s: %w\n%s", strings.Join(argv, " "), err, localenv.Tail([]byte(out), 4000))
	}
	return out, nil
}

// Server is a backend process the harness started (Lab.Start).
type Server struct {
	*localenv.Process
	lab *Lab
}

// Start starts the backend as the worker would: the lab's Command in Dir,
// its Env (references resolved from Secrets), output appended to LogFile,
// in its own process group. It does not wait; see WaitReady. The test's
// cleanup stops it.
func (l *Lab) Start(t testing.TB) *Server {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(l.LogFile), 0o755); err != nil {
		t.Fatal(err)
	}
	s := &Server{lab: l, Process: &localenv.Process{
		Name: "backstage", Path: l.Command[0], Args: l.Command[1:], Dir: l.Dir, Env: l.ProcessEnv(), LogPath: l.LogFile,
	}}
	if err := s.Process.Start(); err != nil {
		t.Fatalf("serverlab: %v", err)
	}
	t.Cleanup(func() { _ = s.Stop(15 * time.Second) })
	return s
}

// ExitCode is the exit status once the process ended (-1: killed by a
// signal).
func (s *Server) ExitCode() int {
	<-s.Exited()
	var ee *exec.ExitError
	if errors.As(s.ExitErr(), &ee) {
		return ee.ExitCode()
	}
	return 0
}

// WaitReady waits until the readiness probe answers 200; it fails with the
// log tail when the process exits first or timeout passes.
func (s *Server) WaitReady(ctx context.Context, timeout time.Duration) error {
	if err := localenv.WaitHTTPReady(ctx, s.lab.HealthURL, s.Exited(), timeout); err != nil {
		return fmt.Errorf("serverlab: backend %w\n--- %s (tail) ---\n%s", err, s.lab.LogFile, s.LogTail(30))
	}
	return nil
}

func run(ctx context.Context, dir string, env []string, prog string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, prog, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}
