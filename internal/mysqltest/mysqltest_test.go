package mysqltest

import (
	"context"
	"database/sql"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"
)

func TestMain(m *testing.M) { os.Exit(Main(m)) }

// TestStartStop proves the server accepts the password-protected user over
// TCP (and refuses a wrong password), lets it create a database, and is
// gone (port closed, files removed) after Stop.
func TestStartStop(t *testing.T) {
	s := New(t)
	db, err := sql.Open("mysql", s.DSN(""))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var version string
	if err := db.QueryRowContext(ctx, "SELECT VERSION()").Scan(&version); err != nil {
		t.Fatalf("query as %s: %v", s.User, err)
	}
	if !strings.Contains(version, "MariaDB") {
		t.Errorf("version %q is not MariaDB", version)
	}
	if _, err := db.ExecContext(ctx, "CREATE DATABASE mysqltest_probe"); err != nil {
		t.Fatalf("the test user cannot create a database: %v", err)
	}
	bad, _ := sql.Open("mysql", s.User+":wrong@tcp("+s.Addr()+")/")
	defer bad.Close()
	if err := bad.PingContext(ctx); err == nil || !strings.Contains(err.Error(), "Access denied") {
		t.Errorf("a wrong password: %v, want Access denied", err)
	}
	if out, err := s.Exec(ctx, "SELECT COUNT(*) FROM mysql.global_priv WHERE User='"+s.User+"'"); err != nil || strings.TrimSpace(out) != "2" {
		t.Errorf("user rows for 127.0.0.1 and localhost: %q %v", out, err)
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if c, err := net.DialTimeout("tcp", s.Addr(), time.Second); err == nil {
		c.Close()
		t.Fatalf("port %d still open after Stop", s.Port)
	}
	if _, err := os.Stat(s.DataDir); !os.IsNotExist(err) {
		t.Errorf("data dir left behind: %v", err)
	}
}

func TestShared(t *testing.T) {
	a := Shared(t)
	b := Shared(t)
	if a != b {
		t.Fatal("Shared started two servers")
	}
}
