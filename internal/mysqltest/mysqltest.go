// Package mysqltest starts a throwaway MariaDB 10.11 server (MySQL
// protocol) for tests: a fresh data directory (mariadb-install-db) in the
// system temp directory, a free TCP port on 127.0.0.1, a unix socket in the
// same directory, and a password-protected user with a global grant
// (Backstage runs CREATE DATABASE itself). Everything is removed on Stop.
// Tests talk to a real server, never a fake (DESIGN.md: "Real parts").
//
// The server runs as the `mysql` system user (mariadbd --user=mysql) when
// the process is root, which is why the data directory lives in the temp
// directory: that user cannot enter root's home.
//
// A missing install is a failure with an install hint, never a skip. The
// one skip is asked for: under `go test -short` (the unit tier) Shared and
// New skip before starting anything.
package mysqltest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stagehand-dev/stagehand/internal/localenv"
)

// InstallHint tells a person how to get the server programs.
const InstallHint = "MariaDB server programs (mariadb-install-db, mariadbd, mariadb) not found; install them with `apt-get install -y mariadb-server`"

// DefaultUser is the test user the harness creates.
const DefaultUser = "stagehand"

// Server is one running throwaway MariaDB.
type Server struct {
	// Host is the TCP address clients use (127.0.0.1).
	Host string
	// Port is the TCP port the server listens on.
	Port int
	// User and Password are a password-protected account with every
	// privilege (GRANT ALL ON *.* WITH GRANT OPTION), for both
	// 'user'@'127.0.0.1' and 'user'@'localhost'.
	User     string
	Password string
	// Socket is the server's unix socket.
	Socket string
	// DataDir is the server's data directory.
	DataDir string

	dir   string
	progs programs
	// tlsArgs and require are set by StartTLS (tls.go).
	tlsArgs  []string
	require  string
	cmd      *exec.Cmd
	done     chan struct{}
	waitErr  error
	stopOnce sync.Once
	stopErr  error
}

// DSN returns a go-sql-driver/mysql DSN for database db over TCP.
func (s *Server) DSN(db string) string {
	return fmt.Sprintf("%s:%s@tcp(%s)/%s", s.User, s.Password, s.Addr(), db)
}

// Addr is host:port.
func (s *Server) Addr() string { return net.JoinHostPort(s.Host, strconv.Itoa(s.Port)) }

type programs struct{ installDB, server, client string }

// findPrograms locates the server programs: on PATH, then /usr/sbin, where
// Debian puts mariadbd (root's PATH has it, other users' may not).
func findPrograms() (programs, error) {
	look := func(names ...string) string {
		for _, n := range names {
			if p, err := exec.LookPath(n); err == nil {
				return p
			}
			for _, d := range []string{"/usr/sbin", "/usr/bin"} {
				p := filepath.Join(d, n)
				if fi, err := os.Stat(p); err == nil && fi.Mode()&0o111 != 0 {
					return p
				}
			}
		}
		return ""
	}
	p := programs{
		installDB: look("mariadb-install-db", "mysql_install_db"),
		server:    look("mariadbd", "mysqld"),
		client:    look("mariadb", "mysql"),
	}
	if p.installDB == "" || p.server == "" || p.client == "" {
		return p, errors.New(InstallHint)
	}
	return p, nil
}

func asRoot() bool { return os.Geteuid() == 0 }

// Start creates and starts a new server. The caller must Stop it.
func Start(ctx context.Context) (*Server, error) { return start(ctx, nil) }

// start is Start, with TLS configured before the server starts when
// tlsOpts is set (StartTLS, tls.go).
func start(ctx context.Context, tlsOpts *TLSOptions) (*Server, error) {
	progs, err := findPrograms()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "mysqltest-")
	if err != nil {
		return nil, fmt.Errorf("mysqltest: temp dir: %w", err)
	}
	pw, err := randomPassword()
	if err != nil {
		return nil, err
	}
	s := &Server{
		Host: "127.0.0.1", User: DefaultUser, Password: pw,
		Socket: filepath.Join(dir, "mysqld.sock"), DataDir: filepath.Join(dir, "data"),
		dir: dir, progs: progs,
	}
	ok := false
	defer func() {
		if !ok {
			_ = s.Stop()
		}
	}()
	if asRoot() {
		u, err := user.Lookup("mysql")
		if err != nil {
			return nil, fmt.Errorf("mysqltest: running as root needs the `mysql` system user (created by mariadb-server): %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			return nil, fmt.Errorf("mysqltest: chown %s: %w", dir, err)
		}
	}
	// Root authenticates over the socket by its OS identity (root runs the
	// tests); run as another user, root gets no password instead.
	rootAuth := "--auth-root-authentication-method=socket"
	if !asRoot() {
		rootAuth = "--auth-root-authentication-method=normal"
	}
	// --tmpdir (passed on to the bootstrap mariadbd): with the shared /tmp,
	// two installs at once (parallel tests) have failed creating their
	// system tables ("Unknown table 'mysql.tmp_user_sys'").
	installArgs := []string{"--no-defaults", "--datadir=" + s.DataDir, rootAuth, "--skip-test-db", "--skip-name-resolve", "--tmpdir=" + s.dir}
	if asRoot() {
		installArgs = append(installArgs, "--user=mysql")
	}
	if out, err := s.run(ctx, progs.installDB, installArgs...); err != nil {
		return nil, fmt.Errorf("mysqltest: mariadb-install-db: %w\n%s", err, localenv.Tail(out, 2000))
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
	if err := s.createUser(ctx); err != nil {
		return nil, err
	}
	ok = true
	return s, nil
}

func (s *Server) startServer(ctx context.Context) error {
	logFile := filepath.Join(s.dir, "mysqld.err")
	args := []string{
		"--no-defaults", "--datadir=" + s.DataDir, "--socket=" + s.Socket,
		"--port=" + strconv.Itoa(s.Port), "--bind-address=127.0.0.1",
		"--pid-file=" + filepath.Join(s.dir, "mysqld.pid"), "--log-error=" + logFile,
		"--skip-name-resolve",
		// Its own temp directory: servers of concurrent test packages
		// sharing /tmp collided on internal temp-table files ("Error on
		// delete of '/tmp/#sql-temptable-…'").
		"--tmpdir=" + s.dir,
		// The data is thrown away: durability only costs time.
		"--innodb-flush-log-at-trx-commit=0", "--sync-binlog=0", "--innodb-doublewrite=0",
		"--max-connections=300",
	}
	if asRoot() {
		args = append(args, "--user=mysql")
	}
	args = append(args, s.tlsArgs...)
	cmd := exec.Command(s.progs.server, args...)
	cmd.Dir = s.dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("mysqltest: start mariadbd: %w", err)
	}
	done := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(done) }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if c, err := net.DialTimeout("unix", s.Socket, time.Second); err == nil {
			c.Close()
			if c, err := net.DialTimeout("tcp", s.Addr(), time.Second); err == nil {
				c.Close()
				s.cmd, s.done = cmd, done
				go func() { <-done; s.waitErr = waitErr }()
				return nil
			}
		}
		select {
		case <-done:
			logs, _ := os.ReadFile(logFile)
			return fmt.Errorf("mysqltest: mariadbd on port %d exited: %v\n%s\n--- mysqld.err ---\n%s", s.Port, waitErr, localenv.Tail(out.Bytes(), 1000), localenv.Tail(logs, 2000))
		case <-ctx.Done():
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
			return fmt.Errorf("mysqltest: mariadbd not ready: %w", ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
			logs, _ := os.ReadFile(logFile)
			return fmt.Errorf("mysqltest: mariadbd on port %d not ready after 60s\n--- mysqld.err ---\n%s", s.Port, localenv.Tail(logs, 2000))
		}
	}
}

// createUser makes the test account through the client as the server's
// root over the socket. The password goes through stdin, not argv.
func (s *Server) createUser(ctx context.Context) error {
	var sql strings.Builder
	for _, h := range []string{"127.0.0.1", "localhost"} {
		fmt.Fprintf(&sql, "CREATE USER '%s'@'%s' IDENTIFIED BY '%s';\n", s.User, h, s.Password)
		fmt.Fprintf(&sql, "GRANT ALL PRIVILEGES ON *.* TO '%s'@'%s' WITH GRANT OPTION;\n", s.User, h)
		if s.require != "" {
			fmt.Fprintf(&sql, "ALTER USER '%s'@'%s' REQUIRE %s;\n", s.User, h, s.require)
		}
	}
	cmd := exec.CommandContext(ctx, s.progs.client, "--no-defaults", "--socket="+s.Socket, "-u", "root")
	cmd.Dir = s.dir
	cmd.Stdin = strings.NewReader(sql.String())
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("mysqltest: create user %s: %w\n%s", s.User, err, strings.ReplaceAll(localenv.Tail(out, 1000), s.Password, "REDACTED"))
	}
	return nil
}

// Exec runs SQL statements as the server's root through the client (for
// test set-up and fault injection that the test user could also do, but
// without a driver dependency here).
func (s *Server) Exec(ctx context.Context, sql string) (string, error) {
	cmd := exec.CommandContext(ctx, s.progs.client, "--no-defaults", "--socket="+s.Socket, "-u", "root", "-N", "-B")
	cmd.Dir = s.dir
	cmd.Stdin = strings.NewReader(sql)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("mysqltest: %w: %s", err, localenv.Tail(out, 1000))
	}
	return string(out), nil
}

// Stop shuts the server down and removes its files. It is safe to call
// more than once.
func (s *Server) Stop() error {
	s.stopOnce.Do(func() {
		if s.cmd != nil && s.cmd.Process != nil {
			killed, err := localenv.StopGroup("mariadbd", s.cmd.Process.Pid, s.done, 30*time.Second)
			if err != nil {
				s.stopErr = fmt.Errorf("mysqltest: %w", err)
			} else if killed {
				s.stopErr = fmt.Errorf("mysqltest: mariadbd did not stop within 30s of SIGTERM; killed")
			}
		}
		if err := os.RemoveAll(s.dir); err != nil && s.stopErr == nil {
			s.stopErr = fmt.Errorf("mysqltest: remove %s: %w", s.dir, err)
		}
	})
	return s.stopErr
}

func (s *Server) run(ctx context.Context, prog string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, prog, args...)
	cmd.Dir = s.dir
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	err := cmd.Run()
	return buf.Bytes(), err
}

func randomPassword() (string, error) {
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	// A recognisable prefix lets tests scan outputs for the password.
	return "pw-" + hex.EncodeToString(b), nil
}

var shared = localenv.Shared[*Server]{
	Name:    "MariaDB",
	Needs:   "a MariaDB server",
	Timeout: 2 * time.Minute,
	Start:   Start,
	Stop:    (*Server).Stop,
}

// Main runs a package's tests with a shared server started lazily by
// Shared and stopped after all tests finish; it returns the exit code so
// TestMain can combine it with other harnesses' clean-up:
//
//	func TestMain(m *testing.M) { os.Exit(mysqltest.Main(m)) }
func Main(m *testing.M) int { return shared.Main(m) }

// StopShared stops the shared server, if one was started. For TestMain
// functions that combine several harnesses.
func StopShared() {
	if err := shared.StopShared(); err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
}

// Shared returns the package's shared server, starting it on first use.
// It fails the test (never skips) when the server cannot start; only under
// -short it skips before starting anything. Without Main in TestMain the
// server is stopped when the calling test ends.
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
