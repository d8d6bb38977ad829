// Package temporaltlstest starts a real Temporal server whose frontend
// requires TLS — by default mutual TLS — for tests of secured connections:
// bin/temporal-tls (tools/temporal-tls, built by `make temporal-tls`), with
// a throwaway CA (internal/tlstest), a server certificate for 127.0.0.1 and
// localhost, a client certificate for the tests, and every search attribute
// Stagehand's workflows set. With Options.APIKey the server also refuses
// workflow-service calls that lack `authorization: Bearer <key>`.
//
// A missing binary fails the test with the command that builds it; under
// `go test -short` New skips before starting anything.
package temporaltlstest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/stagehand-dev/stagehand/internal/devserver"
	"github.com/stagehand-dev/stagehand/internal/localenv"
	"github.com/stagehand-dev/stagehand/internal/tlstest"
)

// EnvBin overrides where the server binary is looked for.
const EnvBin = "STAGEHAND_TEMPORAL_TLS_BIN"

// Options choose the server's checks.
type Options struct {
	// APIKey, when set, must accompany every workflow-service call.
	APIKey string
	// NoClientAuth accepts clients without a certificate (server-side TLS).
	NoClientAuth bool
}

// Server is a running TLS-enabled Temporal server.
type Server struct {
	Address   string
	Namespace string
	// CAFile is the CA that signed the server's and the client's
	// certificates; ClientCert and ClientKey are a client pair (CN
	// "stagehand-test") the server accepts.
	CAFile, ClientCert, ClientKey string
	// CA issues more certificates (another client, say).
	CA *tlstest.CA
	// Dir holds the certificates and the server's log.
	Dir     string
	LogPath string
	proc    *localenv.Process
}

// BinPath returns $STAGEHAND_TEMPORAL_TLS_BIN or bin/temporal-tls in the
// repository root.
func BinPath() (string, error) {
	hint := "run `make temporal-tls` (scripts/build-temporal-tls.sh) in the repository"
	if p := os.Getenv(EnvBin); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("%s=%s: %w", EnvBin, p, err)
		}
		return p, nil
	}
	root, err := localenv.RepoRoot()
	if err != nil {
		return "", fmt.Errorf("bin/temporal-tls not found: %s: %w", hint, err)
	}
	p := filepath.Join(root, "bin", "temporal-tls")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("bin/temporal-tls not found: %s: %w", hint, err)
	}
	return p, nil
}

// New starts a server for t and stops it when t ends.
func New(t testing.TB, opts Options) *Server {
	t.Helper()
	localenv.SkipIfShort(t, "a TLS-enabled Temporal server (bin/temporal-tls)")
	bin, err := BinPath()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ca, err := tlstest.NewCA("stagehand temporal test CA")
	if err != nil {
		t.Fatal(err)
	}
	srvPair, err := ca.Server()
	if err != nil {
		t.Fatal(err)
	}
	srvFiles, err := ca.WriteFiles(dir, "server", srvPair)
	if err != nil {
		t.Fatal(err)
	}
	sysPair, err := ca.Client("temporal-system-worker")
	if err != nil {
		t.Fatal(err)
	}
	sysFiles, err := ca.WriteFiles(dir, "system-worker", sysPair)
	if err != nil {
		t.Fatal(err)
	}
	cliPair, err := ca.Client("stagehand-test")
	if err != nil {
		t.Fatal(err)
	}
	cliFiles, err := ca.WriteFiles(dir, "client", cliPair)
	if err != nil {
		t.Fatal(err)
	}
	port, err := localenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	args := []string{
		"--ip", "127.0.0.1", "--port", strconv.Itoa(port),
		"--tls-cert", srvFiles.Cert, "--tls-key", srvFiles.Key, "--tls-client-ca", srvFiles.CA,
		"--system-worker-cert", sysFiles.Cert, "--system-worker-key", sysFiles.Key,
	}
	if opts.NoClientAuth {
		args = append(args, "--no-client-auth")
	}
	if opts.APIKey != "" {
		keyFile := filepath.Join(dir, "api-key")
		if err := os.WriteFile(keyFile, []byte(opts.APIKey), 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--api-key-file", keyFile)
	}
	args = append(args, devserver.SearchAttributeArgs()...)
	s := &Server{
		Address: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), Namespace: "default",
		CAFile: cliFiles.CA, ClientCert: cliFiles.Cert, ClientKey: cliFiles.Key, CA: ca,
		Dir: dir, LogPath: filepath.Join(dir, "temporal-tls.log"),
	}
	s.proc = &localenv.Process{Name: "temporal-tls", Path: bin, Args: args, LogPath: s.LogPath}
	if err := s.proc.Start(); err != nil {
		t.Fatalf("starting %s: %v", bin, err)
	}
	t.Cleanup(func() {
		if err := s.proc.Stop(10 * time.Second); err != nil {
			t.Errorf("stopping temporal-tls: %v", err)
		}
	})
	if err := s.waitReady(opts.APIKey); err != nil {
		t.Fatalf("temporal-tls on %s: %v\nlog (%s):\n%s", s.Address, err, s.LogPath, s.proc.LogTail(30))
	}
	return s
}

// TLSConfig is a client TLS configuration trusting the server's CA and,
// with withCert, presenting the test client certificate.
func (s *Server) TLSConfig(withCert bool) (*tls.Config, error) {
	caPEM, err := os.ReadFile(s.CAFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	cfg := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if withCert {
		cert, err := tls.LoadX509KeyPair(s.ClientCert, s.ClientKey)
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// waitReady dials with the test client's certificate until the default
// namespace answers: the frontend listens before the namespace registry
// has loaded, and a worker polling then would fail.
func (s *Server) waitReady(apiKey string) error {
	cfg, err := s.TLSConfig(true)
	if err != nil {
		return err
	}
	opts := client.Options{HostPort: s.Address, Namespace: s.Namespace, ConnectionOptions: client.ConnectionOptions{TLS: cfg}, Logger: quietLogger{}}
	if apiKey != "" {
		opts.Credentials = client.NewAPIKeyStaticCredentials(apiKey)
	}
	deadline := time.Now().Add(90 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		if !s.proc.Running() {
			return fmt.Errorf("server exited: %v", s.proc.ExitErr())
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c, err := client.DialContext(ctx, opts)
		if err == nil {
			_, err = c.WorkflowService().DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: s.Namespace})
			c.Close()
		}
		cancel()
		if err == nil {
			return nil
		}
		last = err
		time.Sleep(250 * time.Millisecond)
	}
	return fmt.Errorf("not ready within 90s: %v", last)
}

// quietLogger drops the SDK's connection chatter while the server starts.
type quietLogger struct{}

func (quietLogger) Debug(string, ...any) {}
func (quietLogger) Info(string, ...any)  {}
func (quietLogger) Warn(string, ...any)  {}
func (quietLogger) Error(string, ...any) {}
