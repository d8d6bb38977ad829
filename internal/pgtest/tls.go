package pgtest

import (
	"context"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/stagehand-dev/stagehand/internal/tlstest"
)

// TLSOptions turns TLS on for a cluster started by StartTLS or NewTLS.
// The cluster then accepts TCP connections over TLS only (pg_hba.conf
// has hostssl lines and no host lines), so a client that does not use TLS
// is refused rather than silently served in plaintext. The unix socket
// stays open (trust) for set-up.
type TLSOptions struct {
	// Server is the certificate (for 127.0.0.1/localhost) and key the
	// server presents: ssl_cert_file, ssl_key_file.
	Server tlstest.Pair
	// ClientCA, when set, is the bundle client certificates are checked
	// against (ssl_ca_file), and TCP connections must present a client
	// certificate whose common name is the role (clientcert=verify-full).
	ClientCA []byte
}

// StartTLS is Start with TLS on; see TLSOptions. The caller must Stop it.
func StartTLS(ctx context.Context, opts TLSOptions) (*Server, error) {
	return start(ctx, &opts)
}

// NewTLS is New with TLS on: a server owned by one test, stopped when the
// test ends; under -short it skips the test instead.
func NewTLS(t testing.TB, opts TLSOptions) *Server {
	t.Helper()
	return shared.NewWith(t, func(ctx context.Context) (*Server, error) { return StartTLS(ctx, opts) })
}

// configureTLS writes the certificate files into the data directory
// (owned by the server's user, the key 0600 as PostgreSQL demands) and the
// settings into postgresql.conf and pg_hba.conf, before the first start.
func (s *Server) configureTLS(opts TLSOptions) error {
	if len(opts.Server.CertPEM) == 0 || len(opts.Server.KeyPEM) == 0 {
		return fmt.Errorf("pgtest: TLSOptions.Server needs a certificate and a key")
	}
	type file struct {
		name string
		data []byte
		mode os.FileMode
	}
	files := []file{{"server.crt", opts.Server.CertPEM, 0o644}, {"server.key", opts.Server.KeyPEM, 0o600}}
	conf := "\n# pgtest TLS\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n"
	clientCert := ""
	if len(opts.ClientCA) > 0 {
		files = append(files, file{"client-ca.crt", opts.ClientCA, 0o644})
		conf += "ssl_ca_file = 'client-ca.crt'\n"
		clientCert = " clientcert=verify-full"
	}
	for _, f := range files {
		p := filepath.Join(s.DataDir, f.name)
		if err := os.WriteFile(p, f.data, f.mode); err != nil {
			return fmt.Errorf("pgtest: %w", err)
		}
		if err := chownToServerUser(p); err != nil {
			return err
		}
	}
	pc, err := os.OpenFile(filepath.Join(s.DataDir, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	if _, err := pc.WriteString(conf); err != nil {
		pc.Close()
		return fmt.Errorf("pgtest: postgresql.conf: %w", err)
	}
	if err := pc.Close(); err != nil {
		return fmt.Errorf("pgtest: postgresql.conf: %w", err)
	}
	hba := "# pgtest TLS: TCP over TLS only; a plaintext client matches no line and is refused.\n" +
		"local all all trust\n" +
		"hostssl all all 127.0.0.1/32 trust" + clientCert + "\n" +
		"hostssl all all ::1/128 trust" + clientCert + "\n"
	// WriteFile on the existing file keeps its owner (the server's user).
	if err := os.WriteFile(filepath.Join(s.DataDir, "pg_hba.conf"), []byte(hba), 0o600); err != nil {
		return fmt.Errorf("pgtest: pg_hba.conf: %w", err)
	}
	return nil
}

// chownToServerUser gives a file to the postgres user when we run as root
// (the server runs as postgres and must read its key).
func chownToServerUser(p string) error {
	if !asRoot() {
		return nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chown(p, uid, gid); err != nil {
		return fmt.Errorf("pgtest: chown %s: %w", p, err)
	}
	return nil
}
