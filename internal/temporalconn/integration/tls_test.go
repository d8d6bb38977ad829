package integration

import (
	"maps"
	"testing"

	"github.com/stagehand-dev/stagehand/internal/temporaltlstest"
	"github.com/stagehand-dev/stagehand/internal/tlstest"
	"github.com/stagehand-dev/stagehand/starter/cli"
	"github.com/stagehand-dev/stagehand/worker/app"
	"github.com/stagehand-dev/stagehand/worker/config"
)

// tlsEnv is the CLI's environment for srv, in the SDK's variable names.
func tlsEnv(srv *temporaltlstest.Server, taskQueue string) map[string]string {
	return map[string]string{
		"TEMPORAL_ADDRESS":                 srv.Address,
		"TEMPORAL_NAMESPACE":               srv.Namespace,
		"TEMPORAL_TLS_CLIENT_CERT_PATH":    srv.ClientCert,
		"TEMPORAL_TLS_CLIENT_KEY_PATH":     srv.ClientKey,
		"TEMPORAL_TLS_SERVER_CA_CERT_PATH": srv.CAFile,
		"STAGEHAND_TASK_QUEUE":             taskQueue,
		"USER":                             "alice",
	}
}

func tlsWorkerConfig(t *testing.T, srv *temporaltlstest.Server) config.Config {
	cfg := workerConfig(t, srv.Address, srv.Namespace)
	cfg.Temporal.TLS.CertFile, cfg.Temporal.TLS.KeyFile, cfg.Temporal.TLS.CAFile = srv.ClientCert, srv.ClientKey, srv.CAFile
	return cfg
}

// approveFlow runs the built-in hello runbook to its gate, approves it and
// watches it finish: start (StartWorkflowExecution), status (a query the
// worker answers), approve (an update), watch.
func approveFlow(t *testing.T, env map[string]string) {
	t.Helper()
	id := runID(t)
	mustCLI(t, cli.ExitOK, env, "start", "hello", "--param", "image=registry.local/backend:pr-1", "--id", id)
	mustCLI(t, cli.ExitWaitingApproval, env, "watch", id, "--interval", "100ms")
	out := mustCLI(t, cli.ExitOK, env, "status", id)
	assertContains(t, out, "waiting_approval", "Requested by: alice")
	mustCLI(t, cli.ExitOK, env, "approve", id, "--as", "bob", "--comment", "over mTLS")
	out = mustCLI(t, cli.ExitOK, env, "watch", id, "--interval", "100ms")
	assertContains(t, out, "succeeded")
}

// TestMutualTLS: against a server that requires client certificates, the
// worker (temporal.tls in its config) and the CLI (TEMPORAL_TLS_* variables)
// run a workflow to the end; a client without a certificate, one trusting
// another CA, and one speaking plain gRPC are refused with a message naming
// the setting to fix.
func TestMutualTLS(t *testing.T) {
	srv := temporaltlstest.New(t, temporaltlstest.Options{})
	cfg := tlsWorkerConfig(t, srv)
	startWorker(t, cfg)
	env := tlsEnv(srv, cfg.Temporal.TaskQueue)
	approveFlow(t, env)

	t.Run("no client certificate", func(t *testing.T) {
		e := maps.Clone(env)
		delete(e, "TEMPORAL_TLS_CLIENT_CERT_PATH")
		delete(e, "TEMPORAL_TLS_CLIENT_KEY_PATH")
		code, out := runCLI(t, e, "status", "any-run")
		if code != cli.ExitTemporal {
			t.Fatalf("exit %d, want %d: %s", code, cli.ExitTemporal, out)
		}
		assertContains(t, out, "cannot reach Temporal", "client certificate", "TEMPORAL_TLS_CLIENT_CERT_PATH")

		wcfg := tlsWorkerConfig(t, srv)
		wcfg.Temporal.TLS.CertFile, wcfg.Temporal.TLS.KeyFile = "", ""
		_, err := app.New(t.Context(), wcfg, app.Options{DialTimeout: 5e9})
		if err == nil {
			t.Fatal("worker without a client certificate connected")
		}
		assertContains(t, err.Error(), "client certificate", "temporal.tls.certFile")
	})

	t.Run("wrong CA", func(t *testing.T) {
		other, err := tlstest.NewCA("some other CA")
		if err != nil {
			t.Fatal(err)
		}
		e := maps.Clone(env)
		e["TEMPORAL_TLS_SERVER_CA_CERT_PATH"] = writeFile(t, t.TempDir(), "other-ca.pem", string(other.CertPEM))
		code, out := runCLI(t, e, "status", "any-run")
		if code != cli.ExitTemporal {
			t.Fatalf("exit %d: %s", code, out)
		}
		assertContains(t, out, "certificate signed by unknown authority", "not signed by a CA in", "other-ca.pem")
	})

	t.Run("client certificate from another CA", func(t *testing.T) {
		other, err := tlstest.NewCA("rogue CA")
		if err != nil {
			t.Fatal(err)
		}
		pair, err := other.Client("mallory")
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		e := maps.Clone(env)
		e["TEMPORAL_TLS_CLIENT_CERT_PATH"] = writeFile(t, dir, "mallory.pem", string(pair.CertPEM))
		e["TEMPORAL_TLS_CLIENT_KEY_PATH"] = writeFile(t, dir, "mallory-key.pem", string(pair.KeyPEM))
		code, out := runCLI(t, e, "status", "any-run")
		if code != cli.ExitTemporal {
			t.Fatalf("exit %d: %s", code, out)
		}
		assertContains(t, out, "refused the client certificate", "mallory.pem")
	})

	t.Run("plain gRPC", func(t *testing.T) {
		e := map[string]string{"TEMPORAL_ADDRESS": srv.Address, "USER": "alice"}
		code, out := runCLI(t, e, "status", "any-run")
		if code != cli.ExitTemporal {
			t.Fatalf("exit %d: %s", code, out)
		}
		assertContains(t, out, "may require TLS")
	})

	t.Run("unreadable certificate file", func(t *testing.T) {
		e := maps.Clone(env)
		e["TEMPORAL_TLS_CLIENT_CERT_PATH"] = "/nonexistent/client.pem"
		_, out := runCLI(t, e, "status", "any-run")
		assertContains(t, out, "/nonexistent/client.pem")
	})
}

// TestAPIKey: the server (with --api-key-file) refuses workflow-service
// calls without "authorization: Bearer <key>". The worker (apiKeyRef) and
// the CLI (TEMPORAL_API_KEY) send it and run a workflow; without it the
// CLI is refused, and the key never appears in the error.
func TestAPIKey(t *testing.T) {
	const key = "planted-api-key-8c1f"
	srv := temporaltlstest.New(t, temporaltlstest.Options{APIKey: key})
	t.Setenv("STAGEHAND_TEST_TEMPORAL_KEY", key)
	cfg := tlsWorkerConfig(t, srv)
	cfg.Temporal.APIKeyRef = "env:STAGEHAND_TEST_TEMPORAL_KEY"
	startWorker(t, cfg)
	env := tlsEnv(srv, cfg.Temporal.TaskQueue)
	env["TEMPORAL_API_KEY"] = key
	approveFlow(t, env)

	without := maps.Clone(env)
	delete(without, "TEMPORAL_API_KEY")
	code, out := runCLI(t, without, "start", "hello", "--param", "image=registry.local/backend:pr-2", "--id", runID(t))
	if code == cli.ExitOK {
		t.Fatalf("started without the API key: %s", out)
	}
	assertContains(t, out, "lacks the expected API key")

	wrong := maps.Clone(env)
	wrong["TEMPORAL_API_KEY"] = "not-the-key"
	code, out = runCLI(t, wrong, "start", "hello", "--param", "image=registry.local/backend:pr-2", "--id", runID(t))
	if code == cli.ExitOK {
		t.Fatalf("started with a wrong API key: %s", out)
	}
	if contains := out; len(contains) > 0 && (indexOf(contains, key) >= 0 || indexOf(contains, "not-the-key") >= 0) {
		t.Errorf("error output shows an API key: %s", out)
	}
}

func indexOf(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return i
		}
	}
	return -1
}
