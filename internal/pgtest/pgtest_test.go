package pgtest

import (
	"context"
	"errors"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stagehand-dev/stagehand/internal/localenv"
)

func TestMain(m *testing.M) { Main(m) }

// TestStartStop proves a cluster comes up on its port, accepts TCP
// connections, and is gone (port closed, files removed) after Stop.
func TestStartStop(t *testing.T) {
	localenv.SkipIfShort(t, "a PostgreSQL server")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.DialTimeout("tcp", s.Addr(), 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", s.Addr(), err)
	}
	c.Close()
	if _, err := os.Stat(s.SocketDir); err != nil {
		t.Fatalf("socket dir: %v", err)
	}
	if got, want := s.DSN(""), "postgres://postgres@127.0.0.1:"; len(got) < len(want) || got[:len(want)] != want {
		t.Errorf("DSN = %q", got)
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := s.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	if _, err := os.Stat(s.DataDir); !os.IsNotExist(err) {
		t.Errorf("data dir still there after Stop: %v", err)
	}
	if c, err := net.DialTimeout("tcp", s.Addr(), time.Second); err == nil {
		c.Close()
		t.Errorf("%s still accepts connections after Stop", s.Addr())
	}
}

func TestSharedIsReused(t *testing.T) {
	a := Shared(t)
	b := Shared(t)
	if a != b {
		t.Fatal("Shared started two servers")
	}
}

func TestMissingBinariesGiveInstallHint(t *testing.T) {
	notFound := func(string) (string, error) { return "", errors.New("not found") }
	_, err := findBinDir([]string{t.TempDir()}, notFound)
	if err == nil {
		t.Fatal("no error for a directory without initdb")
	}
	for _, want := range []string{"apt-get install -y postgresql-15", "dpkg -L postgresql-15"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}
