// Package pgtest starts a throwaway PostgreSQL 15 cluster for tests: a fresh
// data directory (initdb -A trust) in a temporary directory, a free TCP port
// on 127.0.0.1, the unix socket inside the same directory, and everything
// removed on Stop. Tests talk to a real server, never a fake (DESIGN.md:
// "Real parts").
//
// The server programs come from Debian's postgresql-15 package, which keeps
// them off PATH (/usr/lib/postgresql/15/bin). PostgreSQL refuses to run as
// root, and tests here run as root, so initdb and pg_ctl run as the
// `postgres` system user through runuser(1) when the process is root.
//
// A missing install is a failure with an install hint, never a skip: a
// silently skipped database test is a test that never runs on CI. The one
// skip is asked for: under `go test -short` (the unit tier) Shared and New
// skip before starting anything.
package pgtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stagehand-dev/stagehand/internal/localenv"
)

// InstallHint tells a person how to get the server programs.
const InstallHint = "PostgreSQL 15 server programs not found; install them with `apt-get install -y postgresql-15` " +
	"(check with `dpkg -L postgresql-15 | grep bin/initdb`), or set PGTEST_BINDIR to a directory holding initdb and pg_ctl"

// SuperUser is the cluster's superuser role; initdb names it after the OS
// user that ran it, which is always `postgres` here (see package doc).
const SuperUser = "postgres"

// Server is one running throwaway cluster.
type Server struct {
	// Host is the TCP address clients use (127.0.0.1).
	Host string
	// Port is the TCP port the server listens on.
	Port int
	// User is the superuser role; trust authentication needs no password.
	User string
	// SocketDir holds the server's unix socket (.s.PGSQL.<port>).
	SocketDir string
	// DataDir is the cluster's data directory.
	DataDir string

	dir      string
	bindir   string
	stopOnce sync.Once
	stopErr  error
}

// DSN returns a libpq/pgx URL for database db on this server over TCP.
func (s *Server) DSN(db string) string {
	if db == "" {
		db = "postgres"
	}
	return fmt.Sprintf("postgres://%s@%s:%d/%s?sslmode=disable", s.User, s.Host, s.Port, db)
}

// Addr is host:port.
func (s *Server) Addr() string { return net.JoinHostPort(s.Host, strconv.Itoa(s.Port)) }

// BinDir finds the directory holding initdb and pg_ctl: $PGTEST_BINDIR,
// then the Debian postgresql-15 location, then PATH.
func BinDir() (string, error) {
	candidates := []string{}
	if d := os.Getenv("PGTEST_BINDIR"); d != "" {
		candidates = append(candidates, d)
	}
	candidates = append(candidates, "/usr/lib/postgresql/15/bin")
	return findBinDir(candidates, exec.LookPath)
}

func findBinDir(candidates []string, lookPath func(string) (string, error)) (string, error) {
	for _, d := range candidates {
		if isExecutable(filepath.Join(d, "initdb")) && isExecutable(filepath.Join(d, "pg_ctl")) {
			return d, nil
		}
	}
	if p, err := lookPath("initdb"); err == nil {
		d := filepath.Dir(p)
		if isExecutable(filepath.Join(d, "pg_ctl")) {
			return d, nil
		}
	}
	return "", errors.New(InstallHint)
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// Start creates and starts a new cluster. The caller must Stop it.
func Start(ctx context.Context) (*Server, error) { return start(ctx, nil) }

// start is Start, with TLS configured between initdb and the first start
// when tlsOpts is set (StartTLS, tls.go).
func start(ctx context.Context, tlsOpts *TLSOptions) (*Server, error) {
	bindir, err := BinDir()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "pgtest-")
	if err != nil {
		return nil, fmt.Errorf("pgtest: temp dir: %w", err)
	}
	s := &Server{Host: "127.0.0.1", User: SuperUser, SocketDir: dir, DataDir: filepath.Join(dir, "data"), dir: dir, bindir: bindir}
	ok := false
	defer func() {
		if !ok {
			_ = os.RemoveAll(dir)
		}
	}()
	if err := s.chownForServer(); err != nil {
		return nil, err
	}
	if out, err := s.run(ctx, "initdb", "-A", "trust", "-U", SuperUser, "-E", "UTF8", "--locale=C", "--no-sync", "-D", s.DataDir); err != nil {
		return nil, fmt.Errorf("pgtest: initdb: %w\n%s", err, localenv.Tail(out, 2000))
	}
	if tlsOpts != nil {
		if err := s.configureTLS(*tlsOpts); err != nil {
			return nil, err
		}
	}
	if err := localenv.OnFreePort(ctx, func(port int) error {
		s.Port = port
		return s.startServer(ctx)
	}); err != nil {
		return nil, err
	}
	ok = true
	return s, nil
}

func (s *Server) startServer(ctx context.Context) error {
	logFile := filepath.Join(s.dir, "postgres.log")
	// fsync=off and friends: the data is thrown away, and durability costs
	// seconds per test run on slow disks.
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200",
		s.Port, s.SocketDir)
	out, err := s.run(ctx, "pg_ctl", "start", "-w", "-t", "60", "-D", s.DataDir, "-l", logFile, "-o", opts)
	if err != nil {
		logs, _ := os.ReadFile(logFile)
		return fmt.Errorf("pgtest: pg_ctl start on port %d: %w\n%s\n--- postgres.log ---\n%s", s.Port, err, localenv.Tail(out, 1000), localenv.Tail(logs, 2000))
	}
	return nil
}

// Stop shuts the server down (fast mode) and removes its files. It is safe
// to call more than once.
func (s *Server) Stop() error {
	s.stopOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if out, err := s.run(ctx, "pg_ctl", "stop", "-w", "-m", "fast", "-D", s.DataDir); err != nil {
			// An immediate stop still frees the port; the directory goes anyway.
			_, _ = s.run(ctx, "pg_ctl", "stop", "-w", "-m", "immediate", "-D", s.DataDir)
			s.stopErr = fmt.Errorf("pgtest: pg_ctl stop: %w\n%s", err, localenv.Tail(out, 1000))
		}
		if err := os.RemoveAll(s.dir); err != nil && s.stopErr == nil {
			s.stopErr = fmt.Errorf("pgtest: remove %s: %w", s.dir, err)
		}
	})
	return s.stopErr
}

// asRoot reports whether initdb/pg_ctl must be run as another user.
func asRoot() bool { return os.Geteuid() == 0 }

// chownForServer hands the temp dir to the postgres user when we are root,
// since the server must own its data directory and socket directory.
func (s *Server) chownForServer() error {
	if !asRoot() {
		return nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return fmt.Errorf("pgtest: running as root needs the `postgres` system user (created by the postgresql-15 package): %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chown(s.dir, uid, gid); err != nil {
		return fmt.Errorf("pgtest: chown %s: %w", s.dir, err)
	}
	// os.MkdirTemp makes 0700 dirs; the parent (/tmp) is world-traversable.
	return nil
}

func (s *Server) run(ctx context.Context, prog string, args ...string) ([]byte, error) {
	path := filepath.Join(s.bindir, prog)
	var cmd *exec.Cmd
	if asRoot() {
		cmd = exec.CommandContext(ctx, "runuser", append([]string{"-u", "postgres", "--", path}, args...)...)
	} else {
		cmd = exec.CommandContext(ctx, path, args...)
	}
	// Run from the temp dir: runuser keeps the caller's working directory,
	// which the postgres user may not be allowed to read.
	cmd.Dir = s.dir
	cmd.Env = append(os.Environ(), "LC_ALL=C", "LANG=C")
	var buf bytes.Buffer
	cmd.Stdout = &buf
	cmd.Stderr = &buf
	// pg_ctl start leaves postgres running with our stdout inherited unless
	// -l is given (it is), so Wait returns once pg_ctl itself exits.
	err := cmd.Run()
	return buf.Bytes(), err
}

var shared = localenv.Shared[*Server]{
	Name:    "PostgreSQL",
	Needs:   "a PostgreSQL server",
	Timeout: 2 * time.Minute,
	Start:   Start,
	Stop:    (*Server).Stop,
}

// Main runs a package's tests with a shared server started lazily by
// Shared and stopped after all tests finish. Use it from TestMain:
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
func Main(m *testing.M) { os.Exit(shared.Main(m)) }

// Shared returns the package's shared server, starting it on first use.
// It fails the test (never skips) when the server cannot start; only under
// -short (the unit tier) it skips before starting anything. Without
// Main in TestMain there is nothing to stop it after the last test, so it
// is stopped when the calling test ends instead (and restarted for the next).
func Shared(t testing.TB) *Server {
	t.Helper()
	return shared.Shared(t)
}

// New starts a server owned by one test and stops it when the test ends;
// under -short it skips the test instead.
func New(t testing.TB) *Server {
	t.Helper()
	return shared.New(t)
}
