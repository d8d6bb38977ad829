package db

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stagehand-dev/stagehand/activities"
	"github.com/stagehand-dev/stagehand/internal/steptest"
)

// TestValidateTLSFiles: certificate files that the mode would ignore are
// config errors, so nobody believes a connection is verified when it is
// not.
func TestValidateTLSFiles(t *testing.T) {
	pg := Database{Driver: DriverPostgres, Host: "db", User: "u"}
	my := Database{Driver: DriverMySQL, Host: "db", User: "u"}
	with := func(d Database, f func(*Database)) Database { f(&d); return d }
	for _, d := range []Database{
		with(pg, func(d *Database) { d.SSLMode, d.CAFile = "verify-full", "/ca.pem" }),
		with(pg, func(d *Database) { d.SSLMode, d.CAFile = "require", "/ca.pem" }),
		with(pg, func(d *Database) { d.SSLMode, d.ClientCertFile, d.ClientKeyFile = "require", "/c.pem", "/k.pem" }),
		with(my, func(d *Database) {
			d.TLS, d.CAFile, d.ClientCertFile, d.ClientKeyFile = "true", "/ca.pem", "/c.pem", "/k.pem"
		}),
		with(my, func(d *Database) { d.TLS, d.ClientCertFile, d.ClientKeyFile = "skip-verify", "/c.pem", "/k.pem" }),
	} {
		if err := d.Validate(); err != nil {
			t.Errorf("%+v: %v", d, err)
		}
	}
	for _, tc := range []struct {
		name string
		d    Database
		want string
	}{
		{"pg caFile without sslmode", with(pg, func(d *Database) { d.CAFile = "/ca.pem" }), `caFile needs sslmode verify-full, verify-ca or require (sslmode is ""`},
		{"pg caFile with prefer", with(pg, func(d *Database) { d.SSLMode, d.CAFile = "prefer", "/ca.pem" }), "caFile needs sslmode"},
		{"pg cert without key", with(pg, func(d *Database) { d.SSLMode, d.ClientCertFile = "verify-full", "/c.pem" }), "clientCertFile and clientKeyFile go together"},
		{"pg key without cert", with(pg, func(d *Database) { d.SSLMode, d.ClientKeyFile = "verify-full", "/k.pem" }), "clientCertFile and clientKeyFile go together"},
		{"pg client cert with disable", with(pg, func(d *Database) { d.SSLMode, d.ClientCertFile, d.ClientKeyFile = "disable", "/c", "/k" }), "clientCertFile needs TLS"},
		{"mysql caFile with skip-verify", with(my, func(d *Database) { d.TLS, d.CAFile = "skip-verify", "/ca.pem" }), `caFile needs tls true (tls is "skip-verify"`},
		{"mysql caFile without tls", with(my, func(d *Database) { d.CAFile = "/ca.pem" }), "caFile needs tls true"},
		{"mysql client cert without tls", with(my, func(d *Database) { d.ClientCertFile, d.ClientKeyFile = "/c", "/k" }), "clientCertFile needs TLS"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.d.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one naming %q", err, tc.want)
			}
		})
	}
}

// TestTLSClientSettings: the dump tools get the TLS settings through the
// environment (PostgreSQL) or the 0600 defaults file (MySQL), never argv.
func TestTLSClientSettings(t *testing.T) {
	pg := Database{Driver: DriverPostgres, Host: "db", User: "u", SSLMode: "verify-full", CAFile: "/etc/ca.pem", ClientCertFile: "/c.pem", ClientKeyFile: "/k.pem"}
	t.Setenv("PGSSLROOTCERT", "/elsewhere.pem") // the worker's own must not leak through
	env := pg.pgEnv("")
	for _, want := range []string{"PGSSLMODE=verify-full", "PGSSLROOTCERT=/etc/ca.pem", "PGSSLCERT=/c.pem", "PGSSLKEY=/k.pem"} {
		if !slices.Contains(env, want) {
			t.Errorf("pg_dump environment lacks %s", want)
		}
	}
	if slices.Contains(env, "PGSSLROOTCERT=/elsewhere.pem") {
		t.Error("the worker's PGSSLROOTCERT reached pg_dump")
	}

	my := Database{Driver: DriverMySQL, Host: "db", User: "u", TLS: "true", CAFile: `/etc/my "ca".pem`, ClientCertFile: "/c.pem", ClientKeyFile: "/k.pem"}
	priv := t.TempDir()
	p, err := my.mysqlDefaultsFile(priv, "s3cret")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	for _, want := range []string{"\nssl\n", "\nssl-verify-server-cert\n", `ssl-ca="/etc/my \"ca\".pem"`, `ssl-cert="/c.pem"`, `ssl-key="/k.pem"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("defaults file lacks %q:\n%s", want, b)
		}
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o600 {
		t.Errorf("defaults file mode %v", fi.Mode().Perm())
	}
	for _, a := range my.mysqlConnArgs(p) {
		if strings.Contains(a, "ssl") || strings.Contains(a, "ca.pem") {
			t.Errorf("TLS setting in argv: %s", a)
		}
	}
	off := Database{Driver: DriverMySQL, Host: "db", User: "u"}
	p, _ = off.mysqlDefaultsFile(t.TempDir(), "")
	if b, _ := os.ReadFile(p); !strings.Contains(string(b), "\nskip-ssl\n") {
		t.Errorf("tls false: defaults file lacks skip-ssl:\n%s", b)
	}
}

// TestTLSFileErrors: unreadable files fail the step as a config error
// naming the setting, before any connection.
func TestTLSFileErrors(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope.pem")
	notPEM := filepath.Join(t.TempDir(), "junk.pem")
	if err := os.WriteFile(notPEM, []byte("junk"), 0o644); err != nil {
		t.Fatal(err)
	}
	a := &Activities{BackupDir: t.TempDir(), Databases: map[string]Database{
		"pg":      {Driver: DriverPostgres, Host: "127.0.0.1", Port: closedPort(t), User: "u", SSLMode: "verify-full", CAFile: missing},
		"my":      {Driver: DriverMySQL, Host: "127.0.0.1", Port: closedPort(t), User: "u", TLS: "true", CAFile: missing},
		"myjunk":  {Driver: DriverMySQL, Host: "127.0.0.1", Port: closedPort(t), User: "u", TLS: "true", CAFile: notPEM},
		"mycert":  {Driver: DriverMySQL, Host: "127.0.0.1", Port: closedPort(t), User: "u", TLS: "true", ClientCertFile: missing, ClientKeyFile: missing},
		"pgcerts": {Driver: DriverPostgres, Host: "127.0.0.1", Port: closedPort(t), User: "u", SSLMode: "require", ClientCertFile: missing, ClientKeyFile: missing},
	}}
	for name, want := range map[string][]string{
		"pg":      {"unable to read CA file", "nope.pem"},
		"my":      {"caFile", "nope.pem"},
		"myjunk":  {"caFile", "no PEM certificate"},
		"mycert":  {"clientCertFile/clientKeyFile", "nope.pem"},
		"pgcerts": {"sslkey", "nope.pem"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := runStep(t, a, "db.snapshot", map[string]any{"database": name})
			steptest.WantAppError(t, err, activities.ErrDatabaseNotConfigured, true, want)
		})
	}
}
