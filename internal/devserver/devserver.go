// Package devserver starts a real Temporal server for integration tests: the
// dev server of the pinned Temporal CLI that `make tools` builds into
// bin/temporal, with every search attribute Stagehand's workflows set already
// registered.
//
// A package whose tests share one server per test binary wires it up once:
//
//	func TestMain(m *testing.M) { devserver.Main(m) }
//
//	func TestSomething(t *testing.T) {
//		srv := devserver.Shared(t)
//		... srv.Client, srv.Address, srv.Command(ctx, "workflow", "list") ...
//	}
//
// A test that needs a server of its own (to stop it, say) calls New(t).
//
// This package imports workflows (for SearchAttributeDefinitions), so tests
// inside package workflows must be external tests (package workflows_test)
// to use it; Go refuses the import cycle otherwise.
//
// Main and New stop the server when tests end, also when they fail. A test
// binary killed outright (go test's -timeout panic, SIGKILL) cannot, and its
// server lives on until killed by hand: its output is in LogPath, and it is a
// `temporal server start-dev --headless` on a random port.
//
// A missing binary is a test failure, never a skip: integration tests that
// silently do not run are worse than no tests. The one skip is asked for:
// under `go test -short` (the unit tier) New and Shared skip before
// starting anything.
package devserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	tlog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/testsuite"

	"github.com/stagehand-dev/stagehand/internal/localenv"
	"github.com/stagehand-dev/stagehand/workflows"
)

// EnvTemporalBin overrides where the temporal binary is looked for.
const EnvTemporalBin = "STAGEHAND_TEMPORAL_BIN"

// Namespace is the namespace the dev server creates and clients use.
const Namespace = "default"

// startTimeout bounds how long Start waits for the server to answer. A cold
// start on 2 busy cores (go test runs packages in parallel) has been seen to
// take several seconds; a minute is far beyond that and still fails CI
// quickly when something is truly wrong.
const startTimeout = 60 * time.Second

// Options tune Start; the zero value is what most tests want.
type Options struct {
	// DBFilename, when set, makes the server persist to that SQLite file, so
	// a test can stop a server and start another on the same state.
	DBFilename string
	// ExtraArgs are appended to `temporal server start-dev`.
	ExtraArgs []string
	// Port, when set, is the frontend port on 127.0.0.1 instead of a free
	// one: a server restarted on the same DBFilename and Port is, to its
	// clients and workers, the same server back from an outage.
	Port int
}

// Server is a running dev server.
type Server struct {
	// Address is the frontend's host:port, for client.Options.HostPort and
	// the CLI's --address.
	Address string
	// Namespace is the namespace Client uses.
	Namespace string
	// Client is connected to the server; Stop closes it.
	Client client.Client
	// TemporalPath is the temporal binary the server runs; Command runs the
	// same binary as a CLI.
	TemporalPath string
	// LogPath holds the server's own output, for a failing test to point at.
	LogPath string

	dev      *testsuite.DevServer
	logFile  *os.File
	logDir   string
	stopOnce sync.Once
	stopErr  error
}

// TemporalPath returns the temporal binary tests use: $STAGEHAND_TEMPORAL_BIN
// if set, otherwise bin/temporal in the repository root (the nearest
// directory above the working directory holding Stagehand's go.mod).
func TemporalPath() (string, error) {
	if p := os.Getenv(EnvTemporalBin); p != "" {
		if err := checkExecutable(p); err != nil {
			return "", fmt.Errorf("%s=%s: %w", EnvTemporalBin, p, err)
		}
		return p, nil
	}
	root, err := localenv.RepoRoot()
	if err != nil {
		return "", fmt.Errorf("bin/temporal not found: run `make tools` in the repository (or set %s): %w", EnvTemporalBin, err)
	}
	p := filepath.Join(root, "bin", "temporal")
	if err := checkExecutable(p); err != nil {
		return "", fmt.Errorf("bin/temporal not found: run `make tools` in %s (or set %s): %w", root, EnvTemporalBin, err)
	}
	return p, nil
}

func checkExecutable(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	if fi.IsDir() || fi.Mode()&0o111 == 0 {
		return fmt.Errorf("%s is not an executable file", p)
	}
	return nil
}

// SearchAttributeArgs returns the start-dev arguments that register every
// search attribute Stagehand's workflows set.
func SearchAttributeArgs() []string {
	args := make([]string, 0, 2*len(workflows.SearchAttributeDefinitions))
	for _, def := range workflows.SearchAttributeDefinitions {
		args = append(args, "--search-attribute", def)
	}
	return args
}

// Start starts a dev server on a free port and waits until a client can
// connect. The caller must call Stop.
func Start(ctx context.Context) (*Server, error) {
	return StartWith(ctx, Options{})
}

// StartWith is Start with options.
func StartWith(ctx context.Context, opts Options) (*Server, error) {
	bin, err := TemporalPath()
	if err != nil {
		return nil, err
	}
	// We pick the port rather than let the SDK do it so that, if start-up
	// fails, we can find and end the process the SDK leaves behind.
	port, err := opts.Port, error(nil)
	if port == 0 {
		port, err = localenv.FreePort()
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	if err != nil {
		return nil, fmt.Errorf("choosing a port for the dev server: %w", err)
	}
	logDir, err := os.MkdirTemp("", "stagehand-devserver-")
	if err != nil {
		return nil, fmt.Errorf("creating dev server log directory: %w", err)
	}
	logPath := filepath.Join(logDir, "temporal.log")
	// The server writes to a file, not to the test's stdout: an inherited
	// pipe would keep `go test` waiting if the server ever outlived the test
	// binary, and its output would interleave with test output.
	logFile, err := os.Create(logPath)
	if err != nil {
		_ = os.RemoveAll(logDir)
		return nil, fmt.Errorf("creating dev server log: %w", err)
	}

	startCtx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	started := time.Now()
	dev, err := testsuite.StartDevServer(startCtx, testsuite.DevServerOptions{
		ExistingPath: bin,
		ClientOptions: &client.Options{
			HostPort:  addr,
			Namespace: Namespace,
			Logger:    quietLogger(),
		},
		DBFilename: opts.DBFilename,
		LogLevel:   "warn",
		ExtraArgs:  append(SearchAttributeArgs(), opts.ExtraArgs...),
		Stdout:     logFile,
		Stderr:     logFile,
	})
	if err != nil {
		killLeftover(bin, addr)
		_ = logFile.Close()
		tail := logTail(logPath, 20)
		_ = os.RemoveAll(logDir)
		return nil, fmt.Errorf("starting temporal dev server (%s) on %s failed after %s: %w\nserver output:\n%s",
			bin, addr, time.Since(started).Round(time.Millisecond), err, tail)
	}
	return &Server{
		Address:      dev.FrontendHostPort(),
		Namespace:    Namespace,
		Client:       dev.Client(),
		TemporalPath: bin,
		LogPath:      logPath,
		dev:          dev,
		logFile:      logFile,
		logDir:       logDir,
	}, nil
}

// Stop closes the client and stops the server, waiting for it to exit. It is
// safe to call more than once.
func (s *Server) Stop() error {
	s.stopOnce.Do(func() {
		s.Client.Close()
		err := s.dev.Stop()
		// The CLI exits non-zero when interrupted; that is how it stops, not
		// a failure.
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			err = nil
		}
		_ = s.logFile.Close()
		if err != nil {
			s.stopErr = fmt.Errorf("stopping temporal dev server on %s: %w (log kept at %s)", s.Address, err, s.LogPath)
			return
		}
		_ = os.RemoveAll(s.logDir)
	})
	return s.stopErr
}

// NewClient dials another client to the server: a worker under test often
// wants a client of its own (its own interceptors, data converter, identity).
// opts.HostPort and an empty opts.Namespace are filled in.
func (s *Server) NewClient(opts client.Options) (client.Client, error) {
	opts.HostPort = s.Address
	if opts.Namespace == "" {
		opts.Namespace = s.Namespace
	}
	if opts.Logger == nil {
		opts.Logger = quietLogger()
	}
	return client.Dial(opts)
}

// Command prepares the real temporal CLI against this server, e.g.
// srv.Command(ctx, "workflow", "start", "--type", "RunbookWorkflow", ...).
// The address and namespace come through the CLI's own environment
// variables, so args need no --address and may end with anything.
func (s *Server) Command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, s.TemporalPath, args...)
	cmd.Env = append(os.Environ(),
		"TEMPORAL_ADDRESS="+s.Address,
		"TEMPORAL_NAMESPACE="+s.Namespace,
		// A developer's ~/.config/temporalio profile must not redirect tests
		// to some other server.
		"TEMPORAL_CONFIG_FILE="+os.DevNull,
	)
	return cmd
}

var shared = localenv.Shared[*Server]{
	Name:  "the Temporal dev server",
	Needs: "a Temporal dev server (bin/temporal)",
	// No Timeout: StartWith bounds the wait itself (startTimeout).
	Start:           Start,
	Stop:            (*Server).Stop,
	WithoutMain:     localenv.RequireMain,
	RequireMainHint: "devserver.Shared needs the package's TestMain to stop the server: add `func TestMain(m *testing.M) { devserver.Main(m) }` (or use devserver.New(t) for a server of this test's own)",
}

// New starts a server for one test and stops it when the test ends; under
// -short (the unit tier) it skips the test instead.
func New(t testing.TB) *Server {
	t.Helper()
	return shared.New(t)
}

// Main is a TestMain body: it runs the package's tests, stops the server
// that Shared started (if any), and exits with the tests' status.
func Main(m *testing.M) { os.Exit(shared.Main(m)) }

// Shared returns the test binary's one server, starting it on first use
// (under -short it skips the test instead).
// It needs TestMain to call Main, which stops the server at the end; without
// that the server would outlive the tests. A failed start fails every test
// sharing the server with the same cause rather than each retrying it.
func Shared(t testing.TB) *Server {
	t.Helper()
	return shared.Shared(t)
}

func quietLogger() tlog.Logger {
	// The SDK's default logger prints every connection and poll at INFO,
	// burying test output; warnings and errors still matter.
	return tlog.NewStructuredLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
}

// killLeftover ends a dev server the SDK started but gave up waiting for:
// StartDevServer returns an error without stopping the process it started.
// It is found among our own children by its binary and port (Linux /proc).
func killLeftover(bin, addr string) {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return
	}
	me := os.Getpid()
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || parentPID(pid) != me {
			continue
		}
		raw, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
		if len(args) == 0 || args[0] != bin || !hasFlag(args, "--port", port) {
			continue
		}
		if p, err := os.FindProcess(pid); err == nil {
			_ = p.Signal(syscall.SIGKILL)
			_, _ = p.Wait()
		}
	}
}

func parentPID(pid int) int {
	raw, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return -1
	}
	// The command name (field 2) is in parentheses and may contain spaces,
	// so fields are counted from the last ')'.
	i := bytes.LastIndexByte(raw, ')')
	if i < 0 {
		return -1
	}
	f := strings.Fields(string(raw[i+1:]))
	if len(f) < 2 {
		return -1
	}
	ppid, err := strconv.Atoi(f[1])
	if err != nil {
		return -1
	}
	return ppid
}

func hasFlag(args []string, name, value string) bool {
	for i := 0; i+1 < len(args); i++ {
		if args[i] == name && args[i+1] == value {
			return true
		}
	}
	return false
}

func logTail(path string, n int) string {
	raw, err := os.ReadFile(path)
	if err != nil {
		return "(no output: " + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(raw), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	if len(lines) == 1 && lines[0] == "" {
		return "(no output)"
	}
	return strings.Join(lines, "\n")
}
