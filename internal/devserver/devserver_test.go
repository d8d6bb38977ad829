package devserver

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"

	"github.com/stagehand-dev/stagehand/internal/localenv"
	"github.com/stagehand-dev/stagehand/workflows"
)

func TestMain(m *testing.M) { Main(m) }

// TestSearchAttributesRegistered checks the server the integration tests get
// already knows every search attribute the workflows set, with its type: an
// unregistered one fails a workflow's UpsertSearchAttributes at run time.
func TestSearchAttributesRegistered(t *testing.T) {
	srv := Shared(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	resp, err := srv.Client.OperatorService().ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{
		Namespace: srv.Namespace,
	})
	if err != nil {
		t.Fatalf("listing search attributes: %v", err)
	}
	for _, def := range workflows.SearchAttributeDefinitions {
		name, typ, ok := strings.Cut(def, "=")
		if !ok {
			t.Fatalf("malformed definition %q", def)
		}
		got, ok := resp.GetCustomAttributes()[name]
		if !ok {
			t.Errorf("search attribute %s is not registered; registered: %v", name, resp.GetCustomAttributes())
			continue
		}
		want, err := enums.IndexedValueTypeFromString(typ)
		if err != nil {
			t.Fatalf("definition %q: %v", def, err)
		}
		if got != want {
			t.Errorf("search attribute %s has type %v, want %v", name, got, want)
		}
	}
}

// TestSharedIsShared guards the point of Shared: one server per test binary.
func TestSharedIsShared(t *testing.T) {
	if a, b := Shared(t), Shared(t); a != b {
		t.Fatalf("Shared returned two servers: %s and %s", a.Address, b.Address)
	}
}

// TestCommandTalksToServer runs the real temporal CLI the way scripts and
// docs do, proving Command points it at this server and not at a default
// 127.0.0.1:7233 (where `make dev` may be running).
func TestCommandTalksToServer(t *testing.T) {
	srv := Shared(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	out, err := srv.Command(ctx, "operator", "search-attribute", "list", "--output", "json").CombinedOutput()
	if err != nil {
		t.Fatalf("temporal operator search-attribute list: %v\n%s", err, out)
	}
	var attrs struct {
		Custom map[string]string `json:"customAttributes"`
	}
	if err := json.Unmarshal(out, &attrs); err != nil {
		t.Fatalf("parsing CLI output: %v\n%s", err, out)
	}
	for _, def := range workflows.SearchAttributeDefinitions {
		name, _, _ := strings.Cut(def, "=")
		if _, ok := attrs.Custom[name]; !ok {
			t.Errorf("CLI does not list %s; output:\n%s", name, out)
		}
	}
}

// TestStartStop covers a private server's whole life: it answers while up,
// Stop really ends the process (the port is free again), and a second Stop
// is harmless.
func TestStartStop(t *testing.T) {
	localenv.SkipIfShort(t, "a Temporal dev server (bin/temporal)")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	srv, err := Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Client.CheckHealth(ctx, nil); err != nil {
		_ = srv.Stop()
		t.Fatalf("health check: %v", err)
	}
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	l, err := net.Listen("tcp", srv.Address)
	if err != nil {
		t.Fatalf("port %s still taken after Stop: %v", srv.Address, err)
	}
	_ = l.Close()
	if _, err := os.Stat(srv.LogPath); !os.IsNotExist(err) {
		t.Errorf("log %s left behind after a clean stop (err=%v)", srv.LogPath, err)
	}
}

// TestMissingBinaryFails keeps the promise that a missing server is a clear
// failure with the fix in the message, never a silent skip.
func TestMissingBinaryFails(t *testing.T) {
	t.Setenv(EnvTemporalBin, filepath.Join(t.TempDir(), "temporal"))
	_, err := Start(context.Background())
	if err == nil {
		t.Fatal("Start succeeded without a binary")
	}
	if !strings.Contains(err.Error(), EnvTemporalBin) {
		t.Errorf("error does not name %s: %v", EnvTemporalBin, err)
	}

	t.Setenv(EnvTemporalBin, "")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	_, err = TemporalPath()
	if err == nil || !strings.Contains(err.Error(), "bin/temporal not found: run `make tools`") {
		t.Errorf("want the make tools instruction, got: %v", err)
	}
}
