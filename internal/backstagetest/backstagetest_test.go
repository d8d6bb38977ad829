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

	"github.com/stagehand-dev/stagehand/internal/localenv"
	"github.com/stagehand-dev/stagehand/internal/mysqltest"
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

// TestOptionsNeedOneDatabaseAndAKnownCatalog: bad options are refused
// before anything starts.
func TestOptionsNeedOneDatabaseAndAKnownCatalog(t *testing.T) {
	for _, tc := range []struct {
		opts Options
		want string
	}{
		{Options{}, "exactly one of Options.PG, Options.MySQL and Options.DB"},
		{Options{PG: &pgtest.Server{}, MySQL: &mysqltest.Server{}}, "exactly one of Options.PG, Options.MySQL and Options.DB"},
		{Options{PG: &pgtest.Server{}, DB: &Database{Client: "pg"}}, "exactly one of Options.PG, Options.MySQL and Options.DB"},
		{Options{DB: &Database{Client: "sqlite3"}}, `Options.DB.Client "sqlite3"`},
		{Options{PG: &pgtest.Server{}, Catalog: "v9"}, `unknown Options.Catalog "v9"`},
		{Options{PG: &pgtest.Server{}, Catalog: CatalogV3, CatalogVersion: "4.0.0"}, "not both"},
		{Options{PG: &pgtest.Server{}, CatalogVersion: "latest; rm -rf"}, "is not an npm version"},
	} {
		if _, err := Start(context.Background(), tc.opts); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Start(%+v) = %v, want %q", tc.opts, err, tc.want)
		}
	}
}

// TestMySQLCatalogUpgrade: on MariaDB (Knex client mysql2, a password-
// protected user), catalog 3.9.1 records 43 migrations and 4.0.0, started
// on the same database, two more in a new batch.
func TestMySQLCatalogUpgrade(t *testing.T) {
	my := mysqltest.New(t)
	migrations := func() string {
		t.Helper()
		out, err := my.Exec(context.Background(), "SELECT COUNT(*), MAX(batch) FROM backstage_plugin_catalog.knex_migrations")
		if err != nil {
			t.Fatal(err)
		}
		return strings.Join(strings.Fields(out), " ")
	}
	s := New(t, Options{MySQL: my, Catalog: CatalogV3})
	_ = s.Stop()
	if got := migrations(); got != "43 1" {
		t.Fatalf("catalog 3.9.1: migrations and batch %q, want \"43 1\"", got)
	}
	s = New(t, Options{MySQL: my, Catalog: CatalogV4})
	_ = s.Stop()
	if got := migrations(); got != "45 2" {
		t.Fatalf("catalog 4.0.0: migrations and batch %q, want \"45 2\"", got)
	}
}

// TestUnknownCatalogVersionExitsBeforeTheDatabase: a catalog version that
// is not installed ends the process at once with "Cannot find module",
// without opening the database (none listens at the address given).
func TestUnknownCatalogVersionExitsBeforeTheDatabase(t *testing.T) {
	localenv.SkipIfShort(t, "Node and tools/backstage")
	s, err := Launch(Options{DB: &Database{Client: "pg", Host: "127.0.0.1", Port: 1, User: "nobody"}, CatalogVersion: "5.0.0"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	select {
	case <-s.Exited():
	case <-time.After(time.Minute):
		t.Fatalf("still running after a minute:\n%s", s.LogTail(2000))
	}
	if code := s.ExitCode(); code != 1 {
		t.Errorf("exit code %d, want 1", code)
	}
	if log := s.LogTail(2000); !strings.Contains(log, "Cannot find module @backstage/plugin-catalog-backend@5.0.0 (not installed") || strings.Contains(log, "ECONNREFUSED") {
		t.Errorf("log:\n%s", log)
	}
}
