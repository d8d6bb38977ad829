package mysqltest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/stagehand-dev/stagehand/internal/tlstest"
)

// TestStartTLS: a TLS server with Require SSL serves the user over TLS
// verified against the test CA, and refuses it without TLS.
func TestStartTLS(t *testing.T) {
	ca, err := tlstest.NewCA("mysqltest CA")
	if err != nil {
		t.Fatal(err)
	}
	pair, err := ca.Server()
	if err != nil {
		t.Fatal(err)
	}
	s := NewTLS(t, TLSOptions{Server: pair, Require: "SSL"})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca.CertPEM)
	if err := mysql.RegisterTLSConfig("mysqltest-tls", &tls.Config{RootCAs: roots, ServerName: s.Host}); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("mysql", s.DSN("")+"?tls=mysqltest-tls")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var name, cipher string
	if err := db.QueryRowContext(ctx, "SHOW SESSION STATUS LIKE 'Ssl_cipher'").Scan(&name, &cipher); err != nil || cipher == "" {
		t.Errorf("connection over TLS: cipher %q, %v", cipher, err)
	}

	plain, err := sql.Open("mysql", s.DSN(""))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if err := plain.PingContext(ctx); err == nil || !strings.Contains(err.Error(), "Access denied") {
		t.Errorf("plaintext connection of a REQUIRE SSL user: %v, want access denied", err)
	}
}
