package integration

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stagehand-dev/stagehand/internal/devserver"
	"github.com/stagehand-dev/stagehand/starter/cli"
	"github.com/stagehand-dev/stagehand/worker/app"
	"github.com/stagehand-dev/stagehand/worker/config"
)

func TestMain(m *testing.M) { devserver.Main(m) }

// runCLI runs one stagehand command in-process with env as its whole
// environment and returns the exit code and the combined output.
func runCLI(t *testing.T, env map[string]string, args ...string) (int, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	f := cli.NewFactory(&cli.IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut})
	f.Getenv = func(k string) string { return env[k] }
	f.RPCTimeout = 10 * time.Second
	f.DialTimeout = 10 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	code := cli.Main(ctx, args, f)
	return code, out.String() + errOut.String()
}

func mustCLI(t *testing.T, want int, env map[string]string, args ...string) string {
	t.Helper()
	code, out := runCLI(t, env, args...)
	if code != want {
		t.Fatalf("stagehand %s: exit %d, want %d\n%s", strings.Join(args, " "), code, want, out)
	}
	return out
}

// startWorker builds the worker exactly as stagehand-worker does (app.New
// dials from cfg.Temporal) and stops it when the test ends.
func startWorker(t *testing.T, cfg config.Config) *app.App {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a, err := app.New(ctx, cfg, app.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), DialTimeout: 20 * time.Second})
	if err != nil {
		t.Fatalf("worker: %v", err)
	}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			a.Stop()
		}
	})
	return a
}

// workerConfig is a worker on its own task queue and work directory.
func workerConfig(t *testing.T, address, namespace string) config.Config {
	cfg := config.Defaults()
	cfg.Temporal.Address, cfg.Temporal.Namespace = address, namespace
	cfg.Temporal.TaskQueue = fmt.Sprintf("conn-%s-%d", strings.ReplaceAll(t.Name(), "/", "-"), time.Now().UnixNano())
	cfg.WorkDir = t.TempDir()
	return cfg
}

func runID(t *testing.T) string {
	return fmt.Sprintf("%s-%d", strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-")), time.Now().UnixNano())
}

// closedPort is a local port nothing listens on.
func closedPort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return port
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func assertContains(t *testing.T, s string, subs ...string) {
	t.Helper()
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			t.Errorf("output lacks %q:\n%s", sub, s)
		}
	}
}
