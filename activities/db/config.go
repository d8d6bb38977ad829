// Package db implements the database steps of an upgrade: db.snapshot
// (every Backstage plugin database's Knex migrations, lock and schema),
// db.verifyMigrations (what a start of new code changed, and whether old
// code can still run on it), db.backup and db.restore (pg_dump/pg_restore,
// mariadb-dump/mariadb). PostgreSQL is read with pgx, MySQL and MariaDB
// with go-sql-driver/mysql.
//
// Backstage keeps one database per plugin (backstage_plugin_<id>), or one
// schema per plugin inside one database (pluginDivisionMode: schema, on
// PostgreSQL); plugins are found by that prefix in the server's catalog,
// never from a fixed list, so a plugin added by an upgrade is seen too.
//
// Passwords are resolved from references at use and reach the server only
// through the driver, PGPASSWORD or a 0600 client defaults file: never
// argv, outputs, errors or logs.
package db

import (
	"errors"
	"fmt"
	"strings"

	"github.com/stagehand-dev/stagehand/activities/secrets"
)

// Drivers.
const (
	DriverPostgres = "postgres"
	DriverMySQL    = "mysql"
)

// Plugin division modes, as Backstage's backend.database.pluginDivisionMode.
const (
	DivisionDatabase = "database"
	DivisionSchema   = "schema"
)

// DefaultPluginPrefix is Backstage's default prefix of plugin databases.
const DefaultPluginPrefix = "backstage_plugin_"

// Database is one `databases:` entry of the worker config: the server that
// holds a portal's plugin databases.
type Database struct {
	// Driver is postgres or mysql (MySQL and MariaDB).
	Driver string `yaml:"driver" json:"driver"`
	Host   string `yaml:"host" json:"host"`
	Port   int    `yaml:"port" json:"port"`
	User   string `yaml:"user" json:"user"`
	// PasswordRef is a secret reference (env:NAME, secret:NAME/KEY),
	// resolved with Activities.Resolve when a step connects. Empty: no
	// password (trust or socket authentication).
	PasswordRef string `yaml:"passwordRef" json:"passwordRef"`
	// PluginPrefix selects plugin databases (or schemas) by name; default
	// backstage_plugin_. The plugin's name is what follows it.
	PluginPrefix string `yaml:"pluginPrefix" json:"pluginPrefix"`
	// PluginDivisionMode is database (default: one database per plugin) or
	// schema (PostgreSQL: one schema per plugin inside Database).
	PluginDivisionMode string `yaml:"pluginDivisionMode" json:"pluginDivisionMode"`
	// Database is the database holding the plugin schemas in schema mode
	// (PostgreSQL); in database mode, the database a PostgreSQL connection
	// lists the others from (default postgres).
	Database string `yaml:"database" json:"database"`
	// SSLMode is PostgreSQL's sslmode (disable, require, verify-ca,
	// verify-full); empty is pgx's default (prefer). The same mode reaches
	// pg_dump/pg_restore as PGSSLMODE. With CAFile, require behaves as
	// verify-ca (libpq's rule); verify-full also checks that the
	// certificate names Host (an IP address needs an IP SAN).
	SSLMode string `yaml:"sslmode" json:"sslmode"`
	// TLS is go-sql-driver/mysql's tls parameter: false (or empty): no TLS;
	// true: TLS, the certificate verified against CAFile (or the system
	// roots without it) and Host; skip-verify: TLS, certificate not
	// checked; preferred: TLS when the server offers it, unchecked,
	// plaintext otherwise. mariadb-dump/mariadb get the matching ssl,
	// ssl-ca and ssl-verify-server-cert options through their 0600
	// defaults file.
	TLS string `yaml:"tls" json:"tls"`
	// CAFile is a PEM bundle of the certificate authorities that sign the
	// server's certificate (a private CA, or a cloud provider's bundle
	// such as RDS's), used instead of the system roots. It needs a
	// verifying mode: sslmode require, verify-ca or verify-full
	// (PostgreSQL; sslrootcert/PGSSLROOTCERT) or tls true (MySQL; ssl-ca).
	// Read when a step connects, so a rotated bundle is picked up without
	// a restart.
	CAFile string `yaml:"caFile" json:"caFile"`
	// ClientCertFile and ClientKeyFile are a PEM client certificate and
	// its unencrypted key, for servers that authenticate clients by
	// certificate (mutual TLS); both or neither. They need TLS on
	// (sslmode other than disable, or tls other than false). libpq
	// (pg_dump) refuses a key file readable by group or others: keep it
	// 0600.
	ClientCertFile string `yaml:"clientCertFile" json:"clientCertFile"`
	ClientKeyFile  string `yaml:"clientKeyFile" json:"clientKeyFile"`
}

func (d Database) prefix() string {
	if d.PluginPrefix == "" {
		return DefaultPluginPrefix
	}
	return d.PluginPrefix
}

func (d Database) schemaMode() bool { return d.PluginDivisionMode == DivisionSchema }

// Validate reports every problem of the entry, each naming its field.
func (d Database) Validate() error {
	var errs []error
	switch d.Driver {
	case DriverPostgres, DriverMySQL:
	case "":
		errs = append(errs, errors.New("driver is required: postgres or mysql"))
	default:
		errs = append(errs, fmt.Errorf("driver %q: want postgres or mysql", d.Driver))
	}
	if d.Host == "" {
		errs = append(errs, errors.New("host is required"))
	}
	if d.Port < 0 || d.Port > 65535 {
		errs = append(errs, fmt.Errorf("port %d: want 1-65535 (or 0 for the driver's default)", d.Port))
	}
	if d.User == "" {
		errs = append(errs, errors.New("user is required"))
	}
	if d.PasswordRef != "" && !strings.HasPrefix(d.PasswordRef, "env:") && !strings.HasPrefix(d.PasswordRef, "secret:") {
		// A literal password in the config would end up wherever the config
		// is shown; only references are accepted.
		errs = append(errs, errors.New("passwordRef must be a reference (env:NAME or secret:NAME/KEY), not a password"))
	}
	if strings.ContainsAny(d.PluginPrefix, "%'\"`\\ ") {
		errs = append(errs, fmt.Errorf("pluginPrefix %q: only letters, digits, _ and - are allowed", d.PluginPrefix))
	}
	switch d.PluginDivisionMode {
	case "", DivisionDatabase:
	case DivisionSchema:
		if d.Driver == DriverMySQL {
			errs = append(errs, errors.New("pluginDivisionMode schema is PostgreSQL's; MySQL has one database per plugin"))
		}
		if d.Database == "" {
			errs = append(errs, errors.New("database is required with pluginDivisionMode schema: the database holding the plugin schemas"))
		}
	default:
		errs = append(errs, fmt.Errorf("pluginDivisionMode %q: want database or schema", d.PluginDivisionMode))
	}
	switch d.SSLMode {
	case "", "disable", "allow", "prefer", "require", "verify-ca", "verify-full":
		if d.SSLMode != "" && d.Driver == DriverMySQL {
			errs = append(errs, errors.New("sslmode is PostgreSQL's; use tls for mysql"))
		}
	default:
		errs = append(errs, fmt.Errorf("sslmode %q: want disable, require, verify-ca or verify-full", d.SSLMode))
	}
	switch d.TLS {
	case "", "false", "true", "skip-verify", "preferred":
		if d.TLS != "" && d.Driver == DriverPostgres {
			errs = append(errs, errors.New("tls is MySQL's; use sslmode for postgres"))
		}
	default:
		errs = append(errs, fmt.Errorf("tls %q: want false, true, skip-verify or preferred", d.TLS))
	}
	errs = append(errs, d.validateTLSFiles()...)
	return errors.Join(errs...)
}

// Activities implements the db.* steps. Its fields come from the worker
// config.
type Activities struct {
	// Databases are the configured servers by name; steps name one in
	// `database`.
	Databases map[string]Database
	// BackupDir is the root directory of backups; a step's `to`/`from` is a
	// relative key inside it.
	BackupDir string
	// Resolve resolves PasswordRef; nil resolves env:NAME only.
	Resolve secrets.Resolver
}

// validateTLSFiles checks that the certificate files go with a mode that
// uses them: a CA bundle with a mode that skips verification, or a client
// certificate with TLS off, would be silently ignored, and the operator
// would believe the connection is verified (or authenticated) when it is
// not. Whether the files are readable is left to use time, where the error
// names the file.
func (d Database) validateTLSFiles() []error {
	var errs []error
	if (d.ClientCertFile == "") != (d.ClientKeyFile == "") {
		errs = append(errs, errors.New("clientCertFile and clientKeyFile go together: set both (mutual TLS) or neither"))
	}
	switch d.Driver {
	case DriverPostgres:
		verifying := d.SSLMode == "require" || d.SSLMode == "verify-ca" || d.SSLMode == "verify-full"
		if d.CAFile != "" && !verifying {
			errs = append(errs, fmt.Errorf("caFile needs sslmode verify-full, verify-ca or require (sslmode is %q, which does not verify the server)", d.SSLMode))
		}
		if d.ClientCertFile != "" && d.SSLMode == "disable" {
			errs = append(errs, errors.New("clientCertFile needs TLS: sslmode is disable"))
		}
	case DriverMySQL:
		if d.CAFile != "" && d.TLS != "true" {
			errs = append(errs, fmt.Errorf("caFile needs tls true (tls is %q, which does not verify the server)", d.TLS))
		}
		if d.ClientCertFile != "" && (d.TLS == "" || d.TLS == "false") {
			errs = append(errs, errors.New("clientCertFile needs TLS: set tls to true"))
		}
	}
	return errs
}
