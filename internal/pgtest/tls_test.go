package pgtest

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stagehand-dev/stagehand/internal/tlstest"
)

// TestStartTLS: a TLS cluster serves a client that verifies its
// certificate (verify-full against the test CA, for 127.0.0.1) over TLS,
// and refuses a plaintext TCP client.
func TestStartTLS(t *testing.T) {
	ca, err := tlstest.NewCA("pgtest CA")
	if err != nil {
		t.Fatal(err)
	}
	pair, err := ca.Server()
	if err != nil {
		t.Fatal(err)
	}
	files, err := ca.WriteFiles(t.TempDir(), "server", pair)
	if err != nil {
		t.Fatal(err)
	}
	s := NewTLS(t, TLSOptions{Server: pair})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	conn, err := pgx.Connect(ctx, strings.Replace(s.DSN(""), "sslmode=disable", "sslmode=verify-full&sslrootcert="+filepath.ToSlash(files.CA), 1))
	if err != nil {
		t.Fatalf("verify-full: %v", err)
	}
	var ssl bool
	if err := conn.QueryRow(ctx, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").Scan(&ssl); err != nil || !ssl {
		t.Errorf("connection over TLS: ssl=%v, %v", ssl, err)
	}
	conn.Close(ctx)

	_, err = pgx.Connect(ctx, s.DSN(""))
	if err == nil || !strings.Contains(err.Error(), "no encryption") {
		t.Errorf("plaintext TCP connection: %v, want refused (no pg_hba.conf entry ... no encryption)", err)
	}
}
