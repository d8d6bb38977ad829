package backstagetest

import (
	"context"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stagehand-dev/stagehand/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// TestStartStop starts the real backend, sees it ready, and checks Stop
// leaves nothing listening.
func TestStartStop(t *testing.T) {
	pg := pgtest.Shared(t)
	s := New(t, Options{PG: pg})
	resp, err := http.Get(s.URL + "/.backstage/health/v1/liveness")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("liveness: %s", resp.Status)
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port)), time.Second); err == nil {
		c.Close()
		t.Fatalf("port %d still open after Stop", s.Port)
	}
}

func TestMissingInstallSaysHowToFix(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "package-lock.json"), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := CheckInstall(dir)
	if err == nil || !strings.Contains(err.Error(), "make backstage-tools") {
		t.Fatalf("CheckInstall = %v, want a hint naming make backstage-tools", err)
	}
	_, err = Start(context.Background(), Options{PG: &pgtest.Server{}, Dir: dir})
	if err == nil || !strings.Contains(err.Error(), "make backstage-tools") {
		t.Fatalf("Start = %v, want a hint naming make backstage-tools", err)
	}
}
