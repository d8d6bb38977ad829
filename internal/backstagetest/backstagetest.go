// Package backstagetest runs a real Backstage backend (tools/backstage:
// backend-defaults with the catalog and the auth backend's guest provider)
// on a real PostgreSQL or MariaDB (MySQL protocol) for integration tests
// and the local demo. It writes
// an app-config from tools/backstage/app-config.template.yaml, starts
// `node index.js` in its own process group, waits for the readiness
// endpoint and kills the whole group on Stop.
//
// The npm packages are installed by `make backstage-tools`; a missing or
// stale install is an error that says so, never a skip, so a test that
// needs Backstage cannot silently stop running. The one skip is asked for:
// under `go test -short` (the unit tier) New skips before starting Node.
package backstagetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stagehand-dev/stagehand/internal/localenv"
	"github.com/stagehand-dev/stagehand/internal/mysqltest"
	"github.com/stagehand-dev/stagehand/internal/pgtest"
)

// ReadinessPath is Backstage's readiness probe; it answers 503 until every
// plugin has initialised (migrations included) and 200 after.
const ReadinessPath = "/.backstage/health/v1/readiness"

// Fault selects a deliberately broken backend for failure-path tests.
type Fault string

const (
	// NoFault starts the normal backend.
	NoFault Fault = ""
	// FaultNoCatalog starts without the catalog plugin: the backend is
	// ready, but /api/catalog/* answers 404, as a portal whose catalog
	// plugin failed to load would.
	FaultNoCatalog Fault = "no-catalog"
	// FaultNoAuth starts without the auth backend: sign-in endpoints 404.
	FaultNoAuth Fault = "no-auth"
)

// Catalog versions of the catalog backend (tools/backstage installs both).
const (
	// CatalogV3 is @backstage/plugin-catalog-backend 3.9.1 (43 migrations),
	// the default.
	CatalogV3 = "v3"
	// CatalogV4 is 4.0.0 (installed as an npm alias): started on a database
	// 3.9.1 created it applies two more migrations in a new batch (45).
	CatalogV4 = "v4"
)

// Options configures one backend.
type Options struct {
	// PG is the PostgreSQL server the plugins keep their databases on
	// (one database per plugin: backstage_plugin_catalog, ...), with
	// Knex client pg. Exactly one of PG and MySQL is required.
	PG *pgtest.Server
	// MySQL is a MariaDB server to use instead (Knex client mysql2), with
	// its password-protected user.
	MySQL *mysqltest.Server
	// DB is a database given by its connection alone (a server this
	// package did not start, e.g. from a command's flags), instead of PG
	// or MySQL.
	DB *Database
	// Catalog picks the catalog backend's version: CatalogV3 (default) or
	// CatalogV4.
	Catalog string
	// CatalogVersion, instead of Catalog, names the catalog backend by the
	// npm version a portal's package.json asks for: "3.9.1" is CatalogV3,
	// "4.0.0" CatalogV4, and any other version starts a backend that exits
	// at once with "Cannot find module @backstage/plugin-catalog-backend@<v>
	// (not installed)", before it touches the database, as a portal image
	// built for a version that is not there would.
	CatalogVersion string
	// StockStart starts the backend the way a stock packages/backend
	// index does (backend.start() with no handler of ours) instead of
	// exiting 1 when a plugin fails start-up, so what a real portal
	// process does then is what happens (with catalog 3.9.1 on a 4.0.0
	// schema: it stays up, readiness 503).
	StockStart bool
	// Port to listen on; 0 picks a free one.
	Port int
	// RequireAuth keeps Backstage's default auth policy on, so plugin
	// routes answer 401 without a token; StaticToken is then accepted.
	// Off (the default), unauthenticated requests are served.
	RequireAuth bool
	// Fault starts a deliberately broken backend.
	Fault Fault
	// Dir is the tools/backstage directory; empty finds it from the
	// module root (or $STAGEHAND_BACKSTAGE_DIR).
	Dir string
	// ReadyTimeout bounds start-up; default 3 minutes (about 10-20 s on
	// 2 cores, more when the machine is busy running other tests).
	ReadyTimeout time.Duration
}

// Database is a Knex connection for backend.database.
type Database struct {
	// Client is "pg" or "mysql2".
	Client         string
	Host           string
	Port           int
	User, Password string
}

// Server is a running backend.
type Server struct {
	// URL is the base URL, e.g. http://127.0.0.1:7007.
	URL string
	// Port is the listening port.
	Port int
	// StaticToken is a static external access token the backend accepts
	// (subject "stagehand-smoke"); it is random per start.
	StaticToken string
	// StartupTime is how long the backend took from exec to ready.
	StartupTime time.Duration

	cmd     *exec.Cmd
	begin   time.Time
	workDir string
	logs    *syncBuffer
	done    chan struct{}
	waitErr error

	stopOnce sync.Once
}

// InstallHint says how to install the npm packages.
const InstallHint = "run `make backstage-tools` (npm ci into tools/backstage)"

// Start writes the config, starts the backend and waits until it is ready.
func Start(ctx context.Context, opts Options) (*Server, error) {
	s, err := Launch(opts)
	if err != nil {
		return nil, err
	}
	timeout := opts.ReadyTimeout
	if timeout == 0 {
		timeout = 3 * time.Minute
	}
	if err := s.WaitReady(ctx, timeout); err != nil {
		_ = s.Stop()
		return nil, err
	}
	s.StartupTime = time.Since(s.begin)
	return s, nil
}

// CatalogFor maps a catalog backend npm version to the Catalog value that
// runs it, or "" if tools/backstage does not have it installed.
func CatalogFor(version string) string {
	switch version {
	case "3.9.1":
		return CatalogV3
	case "4.0.0":
		return CatalogV4
	}
	return ""
}

// Prepared is a backend ready to be started by someone else (a supervisor
// under test, such as activities/server): its config is written, and
// Argv, Dir and Env say how to run it. The caller runs and stops the
// process and calls Cleanup (which removes the config) when done.
type Prepared struct {
	// Dir is the tools/backstage directory, the process's working
	// directory.
	Dir string
	// Argv runs the backend: [<absolute path of node>, index.js, --config,
	// <config file>].
	Argv []string
	// Env is what the backend needs on top of a minimal environment (PATH,
	// HOME): NODE_ENV, NODE_OPTIONS and the STAGEHAND_BACKSTAGE_* switches.
	Env map[string]string
	// Port is the listening port; URL the base URL and HealthURL the
	// readiness endpoint (200 once every plugin started).
	Port      int
	URL       string
	HealthURL string
	// ConfigFile is the written app-config; WorkDir holds it.
	ConfigFile string
	WorkDir    string
	// StaticToken is the static external access token the config accepts.
	StaticToken string
}

// Cleanup removes the written config.
func (p *Prepared) Cleanup() { _ = os.RemoveAll(p.WorkDir) }

// Launch writes the config and starts the backend without waiting for it:
// the caller follows it with WaitReady, Exited and the readiness endpoint
// (a backend that fails its migrations stays up, answering 503). The
// caller must Stop it.
func Launch(opts Options) (*Server, error) {
	p, err := Prepare(opts)
	if err != nil {
		return nil, err
	}
	s := &Server{
		URL:         p.URL,
		Port:        p.Port,
		StaticToken: p.StaticToken,
		workDir:     p.WorkDir,
		logs:        &syncBuffer{max: 256 << 10},
		done:        make(chan struct{}),
	}
	// Not CommandContext: ctx bounds start-up only, and the backend must
	// outlive it; Stop kills the process group.
	cmd := exec.Command(p.Argv[0], p.Argv[1:]...)
	cmd.Dir = p.Dir
	cmd.Env = os.Environ()
	for _, k := range []string{"NODE_ENV", "NODE_OPTIONS", "STAGEHAND_BACKSTAGE_WITHOUT", "STAGEHAND_BACKSTAGE_CATALOG", "STAGEHAND_BACKSTAGE_STOCK_START"} {
		if v, ok := p.Env[k]; ok {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
	}
	cmd.Stdout = s.logs
	cmd.Stderr = s.logs
	// Own process group, so Stop reaches anything node spawns.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	s.begin = time.Now()
	if err := cmd.Start(); err != nil {
		p.Cleanup()
		return nil, fmt.Errorf("backstagetest: start node: %w", err)
	}
	s.cmd = cmd
	go func() {
		s.waitErr = cmd.Wait()
		close(s.done)
	}()
	return s, nil
}

// Prepare checks the install and writes the backend's config without
// starting anything; see Prepared.
func Prepare(opts Options) (*Prepared, error) {
	n := 0
	for _, set := range []bool{opts.PG != nil, opts.MySQL != nil, opts.DB != nil} {
		if set {
			n++
		}
	}
	if n != 1 {
		return nil, errors.New("backstagetest: exactly one of Options.PG, Options.MySQL and Options.DB is required")
	}
	if opts.DB != nil && opts.DB.Client != "pg" && opts.DB.Client != "mysql2" {
		return nil, fmt.Errorf("backstagetest: Options.DB.Client %q: want pg or mysql2", opts.DB.Client)
	}
	switch opts.Catalog {
	case "", CatalogV3, CatalogV4:
	default:
		return nil, fmt.Errorf("backstagetest: unknown Options.Catalog %q: want %q or %q", opts.Catalog, CatalogV3, CatalogV4)
	}
	catalogEnv := opts.Catalog
	if opts.CatalogVersion != "" {
		if opts.Catalog != "" {
			return nil, errors.New("backstagetest: set Options.Catalog or Options.CatalogVersion, not both")
		}
		if !validVersion(opts.CatalogVersion) {
			return nil, fmt.Errorf("backstagetest: Options.CatalogVersion %q is not an npm version", opts.CatalogVersion)
		}
		catalogEnv = CatalogFor(opts.CatalogVersion)
		if catalogEnv == "" {
			catalogEnv = opts.CatalogVersion // index.js reports it missing
		}
	}
	dir, err := toolsDir(opts.Dir)
	if err != nil {
		return nil, err
	}
	if err := CheckInstall(dir); err != nil {
		return nil, err
	}
	nodeBin, err := exec.LookPath("node")
	if err != nil {
		return nil, fmt.Errorf("backstagetest: node not found on PATH (Node 20+ is needed): %w", err)
	}
	port := opts.Port
	if port == 0 {
		if port, err = localenv.FreePort(); err != nil {
			return nil, err
		}
	}
	token, err := randomToken()
	if err != nil {
		return nil, err
	}
	workDir, err := os.MkdirTemp("", "backstagetest-")
	if err != nil {
		return nil, fmt.Errorf("backstagetest: temp dir: %w", err)
	}
	tmpl, err := os.ReadFile(filepath.Join(dir, "app-config.template.yaml"))
	if err != nil {
		_ = os.RemoveAll(workDir)
		return nil, fmt.Errorf("backstagetest: read config template: %w", err)
	}
	client, dbHost, dbPort, dbUser, dbPassword := "pg", "", 0, "", ""
	switch {
	case opts.DB != nil:
		client, dbHost, dbPort, dbUser, dbPassword = opts.DB.Client, opts.DB.Host, opts.DB.Port, opts.DB.User, opts.DB.Password
	case opts.PG != nil:
		dbHost, dbPort, dbUser = opts.PG.Host, opts.PG.Port, opts.PG.User
	default:
		client = "mysql2"
		dbHost, dbPort, dbUser, dbPassword = opts.MySQL.Host, opts.MySQL.Port, opts.MySQL.User, opts.MySQL.Password
	}
	cfg := strings.NewReplacer(
		"@PORT@", strconv.Itoa(port),
		"@DBCLIENT@", client,
		"@PGHOST@", dbHost,
		"@PGPORT@", strconv.Itoa(dbPort),
		"@PGUSER@", dbUser,
		"@PGPASSWORD@", strings.ReplaceAll(dbPassword, "'", "''"),
		"@DISABLE_AUTH_POLICY@", strconv.FormatBool(!opts.RequireAuth),
		"@STATIC_TOKEN@", token,
	).Replace(string(tmpl))
	cfgPath := filepath.Join(workDir, "app-config.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		_ = os.RemoveAll(workDir)
		return nil, fmt.Errorf("backstagetest: write config: %w", err)
	}

	env := map[string]string{
		// production: no dev-only file watching or source maps, faster start.
		"NODE_ENV":                    "production",
		"NODE_OPTIONS":                "--no-deprecation",
		"STAGEHAND_BACKSTAGE_WITHOUT": faultPlugins(opts.Fault),
		"STAGEHAND_BACKSTAGE_CATALOG": catalogEnv,
	}
	if opts.StockStart {
		env["STAGEHAND_BACKSTAGE_STOCK_START"] = "1"
	}
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	return &Prepared{
		Dir:         dir,
		Argv:        []string{nodeBin, "index.js", "--config", cfgPath},
		Env:         env,
		Port:        port,
		URL:         url,
		HealthURL:   url + ReadinessPath,
		ConfigFile:  cfgPath,
		WorkDir:     workDir,
		StaticToken: token,
	}, nil
}

// validVersion accepts an exact npm version (digits, dots, a prerelease
// suffix), which is all that is passed to index.js.
func validVersion(v string) bool {
	if v == "" || len(v) > 64 || v[0] < '0' || v[0] > '9' {
		return false
	}
	for _, r := range v {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r == '.' || r == '-' || r == '+') {
			return false
		}
	}
	return true
}

// Exited is closed when the backend's process has ended.
func (s *Server) Exited() <-chan struct{} { return s.done }

// ExitErr is how the process ended (nil for exit 0); valid once Exited is
// closed.
func (s *Server) ExitErr() error {
	<-s.done
	return s.waitErr
}

// ExitCode is the process's exit code once Exited is closed, -1 if it
// was killed by a signal.
func (s *Server) ExitCode() int {
	<-s.done
	if s.cmd.ProcessState == nil {
		return -1
	}
	return s.cmd.ProcessState.ExitCode()
}

// Pid is the backend's process (and process group) id.
func (s *Server) Pid() int { return s.cmd.Process.Pid }

// WaitReady waits until the readiness endpoint answers 200, failing with
// the log tail if the process exits first or timeout passes.
func (s *Server) WaitReady(ctx context.Context, timeout time.Duration) error {
	return s.waitReady(ctx, timeout)
}

func faultPlugins(f Fault) string {
	switch f {
	case FaultNoCatalog:
		return "catalog"
	case FaultNoAuth:
		return "auth"
	}
	return ""
}

func (s *Server) waitReady(ctx context.Context, timeout time.Duration) error {
	if err := localenv.WaitHTTPReady(ctx, s.URL+ReadinessPath, s.done, timeout); err != nil {
		select {
		case <-s.done:
			err = fmt.Errorf("%w (%v)", err, s.waitErr)
		default:
		}
		return fmt.Errorf("backstagetest: backend %w\n--- backend log (tail) ---\n%s", err, s.LogTail(4000))
	}
	return nil
}

// LogTail returns the last n bytes of the backend's output.
func (s *Server) LogTail(n int) string { return s.logs.Tail(n) }

// Stop kills the backend's process group and removes its config. Safe to
// call more than once.
func (s *Server) Stop() error {
	s.stopOnce.Do(func() {
		if s.cmd != nil && s.cmd.Process != nil {
			// SIGTERM lets Backstage close its database pools; SIGKILL
			// after a grace period, since a stuck plugin must not hang
			// tests, and for children that ignored SIGTERM while node exited.
			_, _ = localenv.StopGroup("node", s.cmd.Process.Pid, s.done, 10*time.Second)
		}
		_ = os.RemoveAll(s.workDir)
	})
	return nil
}

// New starts a backend for one test and stops it when the test ends; it
// fails the test (with the log tail) when the backend cannot start. Under
// -short (the unit tier) it skips the test instead.
func New(t testing.TB, opts Options) *Server {
	t.Helper()
	localenv.SkipIfShort(t, "a Backstage backend (Node, tools/backstage)")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	s, err := Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("backstage backend ready at %s in %s", s.URL, s.StartupTime.Round(time.Millisecond))
	t.Cleanup(func() { _ = s.Stop() })
	return s
}

// CheckInstall reports whether tools/backstage/node_modules was installed
// by `make backstage-tools` from the current package-lock.json.
func CheckInstall(dir string) error {
	stamp, err := os.ReadFile(filepath.Join(dir, "node_modules", ".stagehand-stamp"))
	if err != nil {
		return fmt.Errorf("backstagetest: the Backstage test backend is not installed in %s: %s", dir, InstallHint)
	}
	lock, err := os.ReadFile(filepath.Join(dir, "package-lock.json"))
	if err != nil {
		return fmt.Errorf("backstagetest: read package-lock.json: %w", err)
	}
	if !strings.HasPrefix(string(stamp), sha256Hex(lock)+" ") {
		return fmt.Errorf("backstagetest: %s/node_modules was installed from a different package-lock.json: %s", dir, InstallHint)
	}
	return nil
}

// toolsDir finds tools/backstage: explicit, $STAGEHAND_BACKSTAGE_DIR, or
// walking up from the working directory (a package dir under `go test`)
// to the module root.
func toolsDir(explicit string) (string, error) {
	if explicit != "" {
		return explicit, nil
	}
	if d := os.Getenv("STAGEHAND_BACKSTAGE_DIR"); d != "" {
		return d, nil
	}
	root, err := localenv.RepoRoot()
	if err != nil {
		return "", fmt.Errorf("backstagetest: %w; set STAGEHAND_BACKSTAGE_DIR", err)
	}
	p := filepath.Join(root, "tools", "backstage")
	if _, err := os.Stat(filepath.Join(p, "index.js")); err != nil {
		return "", fmt.Errorf("backstagetest: %s has no index.js; set STAGEHAND_BACKSTAGE_DIR", p)
	}
	return p, nil
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func randomToken() (string, error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// syncBuffer keeps the last max bytes of the backend's output.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
	max int
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Write(p)
	if b.buf.Len() > b.max {
		keep := b.buf.Bytes()[b.buf.Len()-b.max/2:]
		nb := make([]byte, len(keep))
		copy(nb, keep)
		b.buf.Reset()
		b.buf.Write(nb)
	}
	return len(p), nil
}

func (b *syncBuffer) Tail(n int) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.buf.String()
	if len(s) > n {
		s = s[len(s)-n:]
	}
	return s
}
