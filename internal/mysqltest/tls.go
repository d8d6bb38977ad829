package mysqltest

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

// TLSOptions turns TLS on for a server started by StartTLS or NewTLS.
type TLSOptions struct {
	// Server is the certificate (for 127.0.0.1/localhost) and key the
	// server presents: --ssl-cert, --ssl-key.
	Server tlstest.Pair
	// CA is the CA bundle the server trusts (--ssl-ca), used to check
	// client certificates; optional.
	CA []byte
	// Require is the test user's REQUIRE clause: "SSL" (a connection
	// without TLS is refused), "X509" (a client certificate signed by CA
	// is needed too), or empty (TLS optional).
	Require string
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

// configureTLS writes the certificate files next to the data directory,
// readable by the server's user, and sets the server arguments and the
// user's REQUIRE clause that startServer and createUser apply.
func (s *Server) configureTLS(opts TLSOptions) error {
	if len(opts.Server.CertPEM) == 0 || len(opts.Server.KeyPEM) == 0 {
		return fmt.Errorf("mysqltest: TLSOptions.Server needs a certificate and a key")
	}
	switch opts.Require {
	case "", "SSL", "X509":
	default:
		return fmt.Errorf("mysqltest: TLSOptions.Require %q: want SSL, X509 or empty", opts.Require)
	}
	write := func(name string, data []byte, mode os.FileMode) (string, error) {
		p := filepath.Join(s.dir, name)
		if err := os.WriteFile(p, data, mode); err != nil {
			return "", fmt.Errorf("mysqltest: %w", err)
		}
		if asRoot() {
			u, err := user.Lookup("mysql")
			if err != nil {
				return "", fmt.Errorf("mysqltest: %w", err)
			}
			uid, _ := strconv.Atoi(u.Uid)
			gid, _ := strconv.Atoi(u.Gid)
			if err := os.Chown(p, uid, gid); err != nil {
				return "", fmt.Errorf("mysqltest: chown %s: %w", p, err)
			}
		}
		return p, nil
	}
	cert, err := write("server-cert.pem", opts.Server.CertPEM, 0o644)
	if err != nil {
		return err
	}
	key, err := write("server-key.pem", opts.Server.KeyPEM, 0o600)
	if err != nil {
		return err
	}
	s.tlsArgs = []string{"--ssl-cert=" + cert, "--ssl-key=" + key}
	if len(opts.CA) > 0 {
		ca, err := write("ca.pem", opts.CA, 0o644)
		if err != nil {
			return err
		}
		s.tlsArgs = append(s.tlsArgs, "--ssl-ca="+ca)
	}
	s.require = opts.Require
	return nil
}
