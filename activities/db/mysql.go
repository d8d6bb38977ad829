package db

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/stagehand-dev/stagehand/activities/secrets"
)

// mysqlConnector builds a connector; the password sits in the driver's
// Config, never in a DSN string that could be printed.
func (d Database) mysqlConnector(password string) (*mysql.Config, error) {
	cfg := mysql.NewConfig()
	cfg.User = d.User
	cfg.Passwd = password
	cfg.Net = "tcp"
	cfg.Addr = d.addr()
	cfg.ParseTime = true
	cfg.Loc = time.UTC
	cfg.Timeout = 15 * time.Second
	cfg.ReadTimeout = 2 * time.Minute
	cfg.WriteTimeout = 2 * time.Minute
	tlsCfg, err := d.mysqlTLS()
	if err != nil {
		return nil, err
	}
	if tlsCfg != nil {
		// The config goes on the connector itself rather than into the
		// driver's global registry (mysql.RegisterTLSConfig): no name to
		// keep unique per database entry, nothing left behind when the
		// config changes.
		cfg.TLS = tlsCfg
		cfg.AllowFallbackToPlaintext = d.TLS == "preferred"
	}
	return cfg, nil
}

// mysqlConnectWhat says what a failed connection was doing. It says when
// TLS was off: a server refuses an account that REQUIRE SSL with the same
// "Access denied" as a wrong password, and the operator needs to tell the
// two apart.
func (d Database) mysqlConnectWhat() string {
	what := fmt.Sprintf("connect to MySQL on %s as %s", d.addr(), d.User)
	if d.TLS == "" || d.TLS == "false" {
		what += " without TLS (tls: false)"
	}
	return what
}

// mysqlTLS is the TLS config of the driver's tls parameter values, with
// CAFile's roots and the client certificate; nil for no TLS.
func (d Database) mysqlTLS() (*tls.Config, error) {
	var c *tls.Config
	switch d.TLS {
	case "", "false":
		return nil, nil
	case "true":
		// RootCAs nil: the system roots.
		c = &tls.Config{ServerName: d.Host, MinVersion: tls.VersionTLS12}
	case "skip-verify", "preferred":
		c = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // asked for by tls: skip-verify/preferred
	default:
		return nil, fmt.Errorf("mysql tls %q: want false, true, skip-verify or preferred", d.TLS)
	}
	if d.CAFile != "" {
		pem, err := os.ReadFile(d.CAFile)
		if err != nil {
			return nil, fmt.Errorf("caFile: %v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("caFile %s: no PEM certificate in it", d.CAFile)
		}
		c.RootCAs = pool
	}
	if d.ClientCertFile != "" {
		pair, err := tls.LoadX509KeyPair(d.ClientCertFile, d.ClientKeyFile)
		if err != nil {
			return nil, fmt.Errorf("clientCertFile/clientKeyFile: %v", err)
		}
		c.Certificates = []tls.Certificate{pair}
	}
	return c, nil
}

func (d Database) mysqlOpen(password string) (*sql.DB, error) {
	cfg, err := d.mysqlConnector(password)
	if err != nil {
		return nil, notConfigured(err.Error())
	}
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, notConfigured(fmt.Sprintf("mysql connection settings: %v", err))
	}
	db := sql.OpenDB(conn)
	db.SetMaxOpenConns(2)
	return db, nil
}

func quoteIdent(s string) string { return "`" + strings.ReplaceAll(s, "`", "``") + "`" }

// mysqlSnapshot reads every plugin database over one connection, in one
// read-only, consistent-snapshot transaction: information_schema gives
// every table's columns and indexes at once, and the Knex tables of all
// plugins come back in one UNION query each.
func (d Database) mysqlSnapshot(ctx context.Context, password string, red *secrets.Redactor, progress func(string)) (*builder, int, error) {
	db, err := d.mysqlOpen(password)
	if err != nil {
		return nil, 0, err
	}
	defer db.Close()
	where := d.mysqlConnectWhat()
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, 0, classify(where, err, red)
	}
	defer conn.Close()
	if err := conn.PingContext(ctx); err != nil {
		return nil, 0, classify(where, err, red)
	}
	if _, err := conn.ExecContext(ctx, "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY"); err != nil {
		return nil, 0, classify("start a read-only transaction on "+d.addr(), err, red)
	}
	defer conn.ExecContext(context.WithoutCancel(ctx), "ROLLBACK") //nolint:errcheck // read-only

	b := newBuilder()
	prefix := d.prefix()
	names, err := queryStrings(ctx, conn,
		`SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE LEFT(SCHEMA_NAME, CHAR_LENGTH(?)) = ? ORDER BY SCHEMA_NAME`, prefix, prefix)
	if err != nil {
		return nil, 0, classify("list plugin databases on "+d.addr(), err, red)
	}
	truncated := 0
	if len(names) > MaxPlugins {
		truncated = len(names) - MaxPlugins
		names = names[:MaxPlugins]
	}
	if len(names) == 0 {
		return b, truncated, nil
	}
	progress(fmt.Sprintf("reading %d plugin databases", len(names)))
	pluginOf := func(schema string) *PluginSnapshot { return b.plugin(strings.TrimPrefix(schema, prefix), schema) }
	for _, n := range names {
		pluginOf(n)
	}
	in := strings.TrimSuffix(strings.Repeat("?,", len(names)), ",")
	args := make([]any, len(names))
	for i, n := range names {
		args[i] = n
	}

	rows, err := conn.QueryContext(ctx, `
SELECT c.TABLE_SCHEMA, c.TABLE_NAME, c.COLUMN_NAME, c.COLUMN_TYPE, c.IS_NULLABLE
FROM information_schema.COLUMNS c
JOIN information_schema.TABLES t ON t.TABLE_SCHEMA = c.TABLE_SCHEMA AND t.TABLE_NAME = c.TABLE_NAME
WHERE t.TABLE_TYPE = 'BASE TABLE' AND c.TABLE_SCHEMA IN (`+in+`)
ORDER BY c.TABLE_SCHEMA, c.TABLE_NAME, c.ORDINAL_POSITION`, args...)
	if err != nil {
		return nil, 0, classify("read columns of the plugin databases", err, red)
	}
	hasKnex := map[string]map[string]bool{}
	for rows.Next() {
		var schema, table, column, typ, nullable string
		if err := rows.Scan(&schema, &table, &column, &typ, &nullable); err != nil {
			rows.Close()
			return nil, 0, classify("read columns of the plugin databases", err, red)
		}
		if table == "knex_migrations" || table == "knex_migrations_lock" {
			if hasKnex[schema] == nil {
				hasKnex[schema] = map[string]bool{}
			}
			hasKnex[schema][table] = true
		}
		if nullable == "NO" {
			typ += " not null"
		}
		b.column(pluginOf(schema), table, column, typ)
	}
	if err := closeRows(rows); err != nil {
		return nil, 0, classify("read columns of the plugin databases", err, red)
	}

	rows, err = conn.QueryContext(ctx, `
SELECT TABLE_SCHEMA, TABLE_NAME, INDEX_NAME, MIN(NON_UNIQUE),
       GROUP_CONCAT(COLUMN_NAME ORDER BY SEQ_IN_INDEX SEPARATOR ', '), MIN(INDEX_TYPE)
FROM information_schema.STATISTICS
WHERE TABLE_SCHEMA IN (`+in+`)
GROUP BY TABLE_SCHEMA, TABLE_NAME, INDEX_NAME
ORDER BY TABLE_SCHEMA, TABLE_NAME, INDEX_NAME`, args...)
	if err != nil {
		return nil, 0, classify("read indexes of the plugin databases", err, red)
	}
	for rows.Next() {
		var schema, table, index, cols, kind string
		var nonUnique int
		if err := rows.Scan(&schema, &table, &index, &nonUnique, &cols, &kind); err != nil {
			rows.Close()
			return nil, 0, classify("read indexes of the plugin databases", err, red)
		}
		def := strings.ToLower(kind) + " (" + cols + ")"
		b.index(pluginOf(schema), table, indexDesc(index, def, index == "PRIMARY", nonUnique == 0))
	}
	if err := closeRows(rows); err != nil {
		return nil, 0, classify("read indexes of the plugin databases", err, red)
	}

	// Each UNION branch tags its rows with the database's index in knex
	// rather than its name as a string literal: a name comes from the
	// server's catalog, and MySQL string literals treat a backslash as an
	// escape (a database named `backstage_plugin_x\` would end the literal
	// early and turn the next name into SQL). Identifiers are quoted with
	// backticks, where a backslash is an ordinary character.
	knex := sortedKeys(hasKnex)
	var migQ, lockQ []string
	for i, s := range knex {
		if hasKnex[s]["knex_migrations"] {
			migQ = append(migQ, fmt.Sprintf("SELECT %d AS db, id, name, COALESCE(batch, 0), migration_time FROM %s.knex_migrations", i, quoteIdent(s)))
		}
		if hasKnex[s]["knex_migrations_lock"] {
			lockQ = append(lockQ, fmt.Sprintf("SELECT %d AS db, COALESCE(MAX(is_locked <> 0), 0) FROM %s.knex_migrations_lock", i, quoteIdent(s)))
		}
	}
	if len(migQ) > 0 {
		rows, err := conn.QueryContext(ctx, strings.Join(migQ, " UNION ALL ")+" ORDER BY db, id")
		if err != nil {
			return nil, 0, classify("read knex_migrations of the plugin databases", err, red)
		}
		for rows.Next() {
			var idx int
			var name string
			var id int64
			var batch int
			var at sql.NullTime
			if err := rows.Scan(&idx, &id, &name, &batch, &at); err != nil {
				rows.Close()
				return nil, 0, classify("read knex_migrations of the plugin databases", err, red)
			}
			var tp *time.Time
			if at.Valid {
				tp = &at.Time
			}
			b.migration(pluginOf(knex[idx]), Migration{Name: name, Batch: batch, Time: formatTime(tp)})
		}
		if err := closeRows(rows); err != nil {
			return nil, 0, classify("read knex_migrations of the plugin databases", err, red)
		}
	}
	if len(lockQ) > 0 {
		rows, err := conn.QueryContext(ctx, strings.Join(lockQ, " UNION ALL "))
		if err != nil {
			return nil, 0, classify("read knex_migrations_lock of the plugin databases", err, red)
		}
		for rows.Next() {
			var idx, locked int
			if err := rows.Scan(&idx, &locked); err != nil {
				rows.Close()
				return nil, 0, classify("read knex_migrations_lock of the plugin databases", err, red)
			}
			pluginOf(knex[idx]).Locked = locked != 0
		}
		if err := closeRows(rows); err != nil {
			return nil, 0, classify("read knex_migrations_lock of the plugin databases", err, red)
		}
	}
	return b, truncated, nil
}

func queryStrings(ctx context.Context, conn *sql.Conn, q string, args ...any) ([]string, error) {
	rows, err := conn.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			rows.Close()
			return nil, err
		}
		out = append(out, s)
	}
	return out, closeRows(rows)
}

func closeRows(rows *sql.Rows) error {
	err := rows.Err()
	if cerr := rows.Close(); err == nil {
		err = cerr
	}
	return err
}
