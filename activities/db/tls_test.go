package db

// TLS tests against real servers with TLS on (internal/pgtest and
// internal/mysqltest with their TLS options), certificates made by a
// throwaway CA (internal/tlstest). The servers refuse plaintext (pg_hba
// hostssl only; MariaDB user REQUIRE SSL / X509), so a step that succeeds
// went through TLS, and one that succeeds with a verifying mode proves the
// CA file reached the driver or the dump tool: the test CA is in no
// system store.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stagehand-dev/stagehand/activities"
	"github.com/stagehand-dev/stagehand/internal/mysqltest"
	"github.com/stagehand-dev/stagehand/internal/pgtest"
	"github.com/stagehand-dev/stagehand/internal/steptest"
	"github.com/stagehand-dev/stagehand/internal/tlstest"
)

// testPKI is a CA with a server certificate and a client certificate, and
// a second, unrelated CA, all written to files.
type testPKI struct {
	caPEM      []byte
	caFile     string
	otherCA    string // a CA bundle that did not sign the server's certificate
	clientCert string
	clientKey  string
	serverPair tlstest.Pair
}

func newPKI(t *testing.T, clientUser string) testPKI {
	t.Helper()
	ca, err := tlstest.NewCA("stagehand test CA")
	if err != nil {
		t.Fatal(err)
	}
	other, err := tlstest.NewCA("some other CA")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ca.Server()
	if err != nil {
		t.Fatal(err)
	}
	cli, err := ca.Client(clientUser)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	files, err := ca.WriteFiles(dir, "client", cli)
	if err != nil {
		t.Fatal(err)
	}
	otherFile := filepath.Join(dir, "other-ca.pem")
	if err := os.WriteFile(otherFile, other.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	return testPKI{caPEM: ca.CertPEM, caFile: files.CA, otherCA: otherFile, clientCert: files.Cert, clientKey: files.Key, serverPair: srv}
}

func tlsActs(t *testing.T, dbs map[string]Database) *Activities {
	return &Activities{Databases: dbs, BackupDir: t.TempDir()}
}

// pgSocketExec runs statements over the server's unix socket (trusted,
// no TLS): set-up that does not go through the TCP rules under test.
func pgSocketExec(t *testing.T, s *pgtest.Server, dbname string, stmts ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=disable", s.SocketDir, s.Port, s.User, dbname))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, q := range stmts {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

// pluginTables are the statements that make a small Backstage-like plugin
// database: the Knex tables with two migrations, and a table with rows.
var pluginTables = []string{
	"CREATE TABLE knex_migrations (id int PRIMARY KEY, name varchar(255), batch int, migration_time timestamp NULL)",
	"CREATE TABLE knex_migrations_lock (`index` int PRIMARY KEY, is_locked int)",
	"INSERT INTO knex_migrations_lock VALUES (1, 0)",
	"INSERT INTO knex_migrations VALUES (1, '20240101_init.js', 1, NULL), (2, '20240202_more.js', 1, NULL)",
	"CREATE TABLE items (id int PRIMARY KEY, name varchar(50) NOT NULL)",
	"INSERT INTO items VALUES (1, 'one'), (2, 'two'), (3, 'three')",
}

func pgPluginTables() []string {
	out := make([]string, len(pluginTables))
	for i, s := range pluginTables {
		out[i] = strings.ReplaceAll(s, "`", `"`)
	}
	return out
}

func wantCatalogSnapshot(t *testing.T, a *Activities, database string) {
	t.Helper()
	s := decode[Snapshot](t, mustStep(t, a, "db.snapshot", map[string]any{"database": database}))
	if c := s.Plugins["catalog"]; c.Count != 2 || c.Latest != "20240202_more.js" || len(c.Tables) != 3 {
		t.Fatalf("snapshot over TLS: catalog %+v", c)
	}
}

// backupDropRestore backs up, drops items, restores, and checks the rows
// are back, reading them with count.
func backupDropRestore(t *testing.T, a *Activities, database string, drop func(), count func() string) {
	t.Helper()
	out := decode[BackupOutput](t, mustStep(t, a, "db.backup", map[string]any{"database": database, "to": "tls-" + database}))
	if len(out.Files) != 1 || out.Files[0].Plugin != "catalog" || out.Files[0].Size == 0 {
		t.Fatalf("backup over TLS: %+v", out)
	}
	drop()
	if got := count(); got != "gone" {
		t.Fatalf("items after drop: %s", got)
	}
	mustStep(t, a, "db.restore", map[string]any{"database": database, "from": "tls-" + database})
	if got := count(); got != "3" {
		t.Errorf("items after restore over TLS: %s rows, want 3", got)
	}
}

// dumpWith runs the dump tool directly (not through db.backup, whose
// driver connection would fail first): the tool's own TLS settings are
// what is tested.
func dumpWith(t *testing.T, d Database, password string) error {
	t.Helper()
	tools, err := d.findTools(activities.ErrBackupFailed)
	if err != nil {
		t.Fatal(err)
	}
	priv := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return d.dump(ctx, tools, priv, password, "backstage_plugin_catalog", filepath.Join(priv, "dump"), newRedactor())
}

func TestTLSPostgres(t *testing.T) {
	pki := newPKI(t, pgtest.SuperUser)
	srv := pgtest.NewTLS(t, pgtest.TLSOptions{Server: pki.serverPair})
	pgSocketExec(t, srv, "postgres", "CREATE DATABASE backstage_plugin_catalog")
	pgSocketExec(t, srv, "backstage_plugin_catalog", pgPluginTables()...)

	base := Database{Driver: DriverPostgres, Host: srv.Host, Port: srv.Port, User: srv.User}
	verified := base
	verified.SSLMode, verified.CAFile = "verify-full", pki.caFile
	plaintext := base
	plaintext.SSLMode = "disable"
	wrongCA := verified
	wrongCA.CAFile = pki.otherCA
	a := tlsActs(t, map[string]Database{"verified": verified, "plaintext": plaintext, "wrongca": wrongCA})

	t.Run("verify-full with caFile", func(t *testing.T) { wantCatalogSnapshot(t, a, "verified") })
	t.Run("plaintext refused", func(t *testing.T) {
		_, err := runStep(t, a, "db.snapshot", map[string]any{"database": "plaintext"})
		msg := steptest.WantAppError(t, err, activities.ErrDatabaseError, true, []string{"no pg_hba.conf entry", "no encryption"})
		t.Logf("refused: %s", msg)
	})
	t.Run("other CA refused", func(t *testing.T) {
		_, err := runStep(t, a, "db.snapshot", map[string]any{"database": "wrongca"})
		msg := steptest.WantAppError(t, err, activities.ErrDatabaseError, true, []string{"failed to verify certificate", "unknown authority"})
		t.Logf("refused: %s", msg)
	})
	t.Run("backup and restore over TLS", func(t *testing.T) {
		// pg_dump/pg_restore run with PGSSLMODE=verify-full: without
		// PGSSLROOTCERT they would look for ~/.postgresql/root.crt and fail.
		count := func() string {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			conn, err := pgx.Connect(ctx, fmt.Sprintf("host=%s port=%d user=%s dbname=backstage_plugin_catalog", srv.SocketDir, srv.Port, srv.User))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close(ctx)
			var n string
			if err := conn.QueryRow(ctx, "SELECT count(*)::text FROM items").Scan(&n); err != nil {
				if strings.Contains(err.Error(), "does not exist") {
					return "gone"
				}
				t.Fatal(err)
			}
			return n
		}
		backupDropRestore(t, a, "verified",
			func() { pgSocketExec(t, srv, "backstage_plugin_catalog", "DROP TABLE items") }, count)
	})
	t.Run("pg_dump verifies with caFile", func(t *testing.T) {
		if err := dumpWith(t, verified, ""); err != nil {
			t.Fatalf("pg_dump with the right CA: %v", err)
		}
		msg := steptest.WantAppError(t, dumpWith(t, wrongCA, ""), activities.ErrBackupFailed, true, []string{"certificate verify failed"})
		t.Logf("refused: %s", msg)
		msg = steptest.WantAppError(t, dumpWith(t, plaintext, ""), activities.ErrBackupFailed, true, []string{"no encryption"})
		t.Logf("refused: %s", msg)
	})
}

// TestTLSPostgresClientCert: a server that wants a client certificate
// (clientcert=verify-full) serves the steps with clientCertFile and
// clientKeyFile, through pgx and pg_dump/pg_restore, and refuses them
// without.
func TestTLSPostgresClientCert(t *testing.T) {
	pki := newPKI(t, pgtest.SuperUser)
	srv := pgtest.NewTLS(t, pgtest.TLSOptions{Server: pki.serverPair, ClientCA: pki.caPEM})
	pgSocketExec(t, srv, "postgres", "CREATE DATABASE backstage_plugin_catalog")
	pgSocketExec(t, srv, "backstage_plugin_catalog", pgPluginTables()...)

	noCert := Database{Driver: DriverPostgres, Host: srv.Host, Port: srv.Port, User: srv.User, SSLMode: "verify-full", CAFile: pki.caFile}
	withCert := noCert
	withCert.ClientCertFile, withCert.ClientKeyFile = pki.clientCert, pki.clientKey
	a := tlsActs(t, map[string]Database{"nocert": noCert, "mtls": withCert})

	_, err := runStep(t, a, "db.snapshot", map[string]any{"database": "nocert"})
	msg := steptest.WantAppError(t, err, activities.ErrDatabaseError, true, []string{"client certificate"})
	t.Logf("refused: %s", msg)

	wantCatalogSnapshot(t, a, "mtls")
	out := decode[BackupOutput](t, mustStep(t, a, "db.backup", map[string]any{"database": "mtls", "to": "mtls"}))
	if len(out.Files) != 1 {
		t.Fatalf("backup with a client certificate: %+v", out)
	}
	mustStep(t, a, "db.restore", map[string]any{"database": "mtls", "from": "mtls"})
}

const mysqlTLSPasswordEnv = "STAGEHAND_DBTEST_MYSQL_TLS_PASSWORD"

func mysqlPlugin(t *testing.T, srv *mysqltest.Server) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sql := "CREATE DATABASE backstage_plugin_catalog; USE backstage_plugin_catalog;\n" + strings.Join(pluginTables, ";\n") + ";\n"
	if out, err := srv.Exec(ctx, sql); err != nil {
		t.Fatalf("set up plugin database: %v\n%s", err, out)
	}
}

func mysqlItems(t *testing.T, srv *mysqltest.Server) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := srv.Exec(ctx, "SELECT COUNT(*) FROM backstage_plugin_catalog.items")
	if err != nil {
		if strings.Contains(out, "doesn't exist") {
			return "gone"
		}
		t.Fatal(err)
	}
	return strings.TrimSpace(out)
}

func TestTLSMariaDB(t *testing.T) {
	pki := newPKI(t, mysqltest.DefaultUser)
	srv := mysqltest.NewTLS(t, mysqltest.TLSOptions{Server: pki.serverPair, Require: "SSL"})
	t.Setenv(mysqlTLSPasswordEnv, srv.Password)
	mysqlPlugin(t, srv)

	base := Database{Driver: DriverMySQL, Host: srv.Host, Port: srv.Port, User: srv.User, PasswordRef: "env:" + mysqlTLSPasswordEnv}
	verified := base
	verified.TLS, verified.CAFile = "true", pki.caFile
	wrongCA := verified
	wrongCA.CAFile = pki.otherCA
	a := tlsActs(t, map[string]Database{"verified": verified, "plaintext": base, "wrongca": wrongCA})

	t.Run("tls true with caFile", func(t *testing.T) { wantCatalogSnapshot(t, a, "verified") })
	t.Run("plaintext refused", func(t *testing.T) {
		_, err := runStep(t, a, "db.snapshot", map[string]any{"database": "plaintext"})
		msg := steptest.WantAppError(t, err, activities.ErrDatabaseError, true, []string{"Access denied for user 'stagehand'", "without TLS"})
		t.Logf("refused: %s", msg)
	})
	t.Run("other CA refused", func(t *testing.T) {
		_, err := runStep(t, a, "db.snapshot", map[string]any{"database": "wrongca"})
		msg := steptest.WantAppError(t, err, activities.ErrDatabaseError, true, []string{"failed to verify certificate", "unknown authority"})
		t.Logf("refused: %s", msg)
	})
	t.Run("backup and restore over TLS", func(t *testing.T) {
		// mariadb-dump/mariadb get ssl and ssl-verify-server-cert from the
		// defaults file: without ssl-ca there they could not verify the
		// test CA, and without ssl the user (REQUIRE SSL) is refused.
		backupDropRestore(t, a, "verified", func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if out, err := srv.Exec(ctx, "DROP TABLE backstage_plugin_catalog.items"); err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
		}, func() string { return mysqlItems(t, srv) })
	})
	t.Run("backup with the other CA refused", func(t *testing.T) {
		_, err := runStep(t, a, "db.backup", map[string]any{"database": "wrongca", "to": "wrong"})
		if err == nil {
			t.Fatal("backup with a CA that did not sign the server's certificate succeeded")
		}
		t.Logf("refused: %s", steptest.FullText(err))
	})
	t.Run("mariadb-dump verifies with caFile", func(t *testing.T) {
		if err := dumpWith(t, verified, srv.Password); err != nil {
			t.Fatalf("mariadb-dump with the right CA: %v", err)
		}
		msg := steptest.WantAppError(t, dumpWith(t, wrongCA, srv.Password), activities.ErrBackupFailed, true, []string{"TLS/SSL error"})
		t.Logf("refused: %s", msg)
		msg = steptest.WantAppError(t, dumpWith(t, base, srv.Password), activities.ErrBackupFailed, true, []string{"Access denied"})
		t.Logf("refused: %s", msg)
	})
}

// TestTLSMariaDBClientCert: a user that REQUIRE X509 is served with
// clientCertFile/clientKeyFile, by the driver and the client tools, and
// refused without.
func TestTLSMariaDBClientCert(t *testing.T) {
	pki := newPKI(t, mysqltest.DefaultUser)
	srv := mysqltest.NewTLS(t, mysqltest.TLSOptions{Server: pki.serverPair, CA: pki.caPEM, Require: "X509"})
	t.Setenv(mysqlTLSPasswordEnv, srv.Password)
	mysqlPlugin(t, srv)

	noCert := Database{Driver: DriverMySQL, Host: srv.Host, Port: srv.Port, User: srv.User, PasswordRef: "env:" + mysqlTLSPasswordEnv, TLS: "true", CAFile: pki.caFile}
	withCert := noCert
	withCert.ClientCertFile, withCert.ClientKeyFile = pki.clientCert, pki.clientKey
	a := tlsActs(t, map[string]Database{"nocert": noCert, "mtls": withCert})

	_, err := runStep(t, a, "db.snapshot", map[string]any{"database": "nocert"})
	msg := steptest.WantAppError(t, err, activities.ErrDatabaseError, true, []string{"Access denied"})
	t.Logf("refused: %s", msg)

	wantCatalogSnapshot(t, a, "mtls")
	backupDropRestore(t, a, "mtls", func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if out, err := srv.Exec(ctx, "DROP TABLE backstage_plugin_catalog.items"); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
	}, func() string { return mysqlItems(t, srv) })
}
