package db

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stagehand-dev/stagehand/activities/secrets"
)

// pgConfig builds a pgx connection config for one database. The password
// is set on the parsed config, never formatted into a string.
func (d Database) pgConfig(dbname, password string) (*pgx.ConnConfig, error) {
	port := d.Port
	if port == 0 {
		port = 5432
	}
	kv := []string{
		"host=" + quoteConnValue(d.Host),
		"port=" + strconv.Itoa(port),
		"user=" + quoteConnValue(d.User),
		"dbname=" + quoteConnValue(dbname),
		"connect_timeout=15",
		"application_name=stagehand",
	}
	if d.SSLMode != "" {
		kv = append(kv, "sslmode="+d.SSLMode)
	}
	// pgx reads the files while parsing: a missing or unreadable one is a
	// configuration error naming the setting, before any connection.
	if d.CAFile != "" {
		kv = append(kv, "sslrootcert="+quoteConnValue(d.CAFile))
	}
	if d.ClientCertFile != "" {
		kv = append(kv, "sslcert="+quoteConnValue(d.ClientCertFile), "sslkey="+quoteConnValue(d.ClientKeyFile))
	}
	cfg, err := pgx.ParseConfig(strings.Join(kv, " "))
	if err != nil {
		return nil, fmt.Errorf("postgres connection settings: %v", err)
	}
	cfg.Password = password
	// Snapshots run few statements per connection: skip the statement
	// cache round trips.
	cfg.DefaultQueryExecMode = pgx.QueryExecModeExec
	return cfg, nil
}

func quoteConnValue(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

func (d Database) addr() string {
	port := d.Port
	if port == 0 {
		if d.Driver == DriverMySQL {
			port = 3306
		} else {
			port = 5432
		}
	}
	return net.JoinHostPort(d.Host, strconv.Itoa(port))
}

func (d Database) adminDatabase() string {
	if d.Database != "" {
		return d.Database
	}
	return "postgres"
}

// pgConnect opens a connection to dbname on d.
func (d Database) pgConnect(ctx context.Context, dbname, password string, red *secrets.Redactor) (*pgx.Conn, error) {
	cfg, err := d.pgConfig(dbname, password)
	if err != nil {
		return nil, notConfigured(err.Error())
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, classify(fmt.Sprintf("connect to PostgreSQL database %s on %s as %s", dbname, d.addr(), d.User), err, red)
	}
	return conn, nil
}

// pgListPlugins lists the plugin databases (database mode) or schemas
// (schema mode) by prefix from the server's catalog.
func (d Database) pgListPlugins(ctx context.Context, conn *pgx.Conn) ([]string, error) {
	q := `SELECT datname FROM pg_database WHERE NOT datistemplate AND datallowconn AND left(datname, length($1)) = $1 ORDER BY datname`
	if d.schemaMode() {
		q = `SELECT nspname FROM pg_namespace WHERE left(nspname, length($1)) = $1 ORDER BY nspname`
	}
	rows, err := conn.Query(ctx, q, d.prefix())
	if err != nil {
		return nil, err
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, err
	}
	return names, nil
}

// The catalog queries fetch every table's columns and every index of the
// given schemas at once: one round trip each, whatever the table count.
const pgColumnsQuery = `
SELECT n.nspname, c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
       coalesce(c.reloptions, '{}'), coalesce(a.attoptions, '{}')
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped AND @SCHEMAS@
ORDER BY n.nspname, c.relname, a.attnum`

const pgIndexesQuery = `
SELECT n.nspname, t.relname, i.relname, ix.indisprimary, ix.indisunique,
       coalesce(substring(pg_get_indexdef(ix.indexrelid) from ' USING (.*)$'), '')
FROM pg_index ix
JOIN pg_class i ON i.oid = ix.indexrelid
JOIN pg_class t ON t.oid = ix.indrelid
JOIN pg_namespace n ON n.oid = t.relnamespace
WHERE @SCHEMAS@
ORDER BY n.nspname, t.relname, i.relname`

// pgSchemaFilter selects the schemas read: the given ones ($1, schema
// mode), or with $1 NULL every schema but the system ones (database mode:
// a plugin database's tables, normally all in public).
const pgSchemaFilter = `(CASE WHEN $1::text[] IS NULL
  THEN n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_toast%' AND n.nspname NOT LIKE 'pg\_temp%'
  ELSE n.nspname = ANY($1::text[]) END)`

func withSchemas(q string) string { return strings.ReplaceAll(q, "@SCHEMAS@", pgSchemaFilter) }

// pgReadSchemas reads tables, columns, indexes, knex_migrations and
// knex_migrations_lock of the given schemas (nil: every user schema) into
// plugins, in a read-only transaction. tableKey maps (schema, table) to the plugin's table key;
// pluginOf maps a schema to its plugin snapshot.
func pgReadSchemas(ctx context.Context, conn *pgx.Conn, b *builder, schemas []string,
	pluginOf func(schema string) *PluginSnapshot, tableKey func(schema, table string) string) error {
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly, IsoLevel: pgx.RepeatableRead})
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // read-only: nothing to keep

	batch := &pgx.Batch{}
	batch.Queue(withSchemas(pgColumnsQuery), schemas)
	batch.Queue(withSchemas(pgIndexesQuery), schemas)
	br := tx.SendBatch(ctx, batch)
	rows, err := br.Query()
	if err != nil {
		br.Close()
		return fmt.Errorf("read columns: %w", err)
	}
	hasKnex := map[string]map[string]bool{} // schema → table → exists
	var schema, table, column, typ string
	var notNull bool
	var relOptions, attOptions []string
	_, err = pgx.ForEachRow(rows, []any{&schema, &table, &column, &typ, &notNull, &relOptions, &attOptions}, func() error {
		if table == "knex_migrations" || table == "knex_migrations_lock" {
			if hasKnex[schema] == nil {
				hasKnex[schema] = map[string]bool{}
			}
			hasKnex[schema][table] = true
		}
		if notNull {
			typ += " not null"
		}
		p, key := pluginOf(schema), tableKey(schema, table)
		b.column(p, key, column, typ)
		for _, o := range relOptions {
			b.option(p, key, o)
		}
		for _, o := range attOptions {
			b.option(p, key, column+"."+o)
		}
		return nil
	})
	if err != nil {
		br.Close()
		return fmt.Errorf("read columns: %w", err)
	}
	rows, err = br.Query()
	if err != nil {
		br.Close()
		return fmt.Errorf("read indexes: %w", err)
	}
	var index, def string
	var primary, unique bool
	_, err = pgx.ForEachRow(rows, []any{&schema, &table, &index, &primary, &unique, &def}, func() error {
		b.index(pluginOf(schema), tableKey(schema, table), indexDesc(index, def, primary, unique))
		return nil
	})
	if err != nil {
		br.Close()
		return fmt.Errorf("read indexes: %w", err)
	}
	if err := br.Close(); err != nil {
		return err
	}

	// Knex tables, all schemas in one more round trip.
	batch = &pgx.Batch{}
	type queued struct{ schema, table string }
	var order []queued
	for _, s := range sortedKeys(hasKnex) {
		if schemas == nil && s != "public" {
			// Database mode: Knex keeps its tables in the default schema.
			continue
		}
		if hasKnex[s]["knex_migrations"] {
			batch.Queue(fmt.Sprintf(`SELECT name, coalesce(batch, 0), migration_time FROM %s.knex_migrations ORDER BY id`, pgx.Identifier{s}.Sanitize()))
			order = append(order, queued{s, "knex_migrations"})
		}
		if hasKnex[s]["knex_migrations_lock"] {
			batch.Queue(fmt.Sprintf(`SELECT coalesce(bool_or(is_locked <> 0), false) FROM %s.knex_migrations_lock`, pgx.Identifier{s}.Sanitize()))
			order = append(order, queued{s, "knex_migrations_lock"})
		}
	}
	if len(order) == 0 {
		return nil
	}
	br = tx.SendBatch(ctx, batch)
	defer br.Close()
	for _, q := range order {
		p := pluginOf(q.schema)
		if q.table == "knex_migrations_lock" {
			if err := br.QueryRow().Scan(&p.Locked); err != nil {
				return fmt.Errorf("read %s.knex_migrations_lock: %w", q.schema, err)
			}
			continue
		}
		rows, err := br.Query()
		if err != nil {
			return fmt.Errorf("read %s.knex_migrations: %w", q.schema, err)
		}
		var name string
		var batchNo int
		var at *time.Time
		_, err = pgx.ForEachRow(rows, []any{&name, &batchNo, &at}, func() error {
			b.migration(p, Migration{Name: name, Batch: batchNo, Time: formatTime(at)})
			return nil
		})
		if err != nil {
			return fmt.Errorf("read %s.knex_migrations: %w", q.schema, err)
		}
	}
	return br.Close()
}

func formatTime(t *time.Time) string {
	if t == nil {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// indexDesc is an index as a snapshot lists it: "name (cols)" with its
// kind, so a changed definition shows as one removed and one added.
func indexDesc(name, def string, primary, unique bool) string {
	kind := ""
	switch {
	case primary:
		kind = "primary "
	case unique:
		kind = "unique "
	}
	return fmt.Sprintf("%s: %s%s", name, kind, def)
}

// pgSnapshot reads every plugin database (or schema) of d.
func (d Database) pgSnapshot(ctx context.Context, password string, red *secrets.Redactor, progress func(string)) (*builder, int, error) {
	b := newBuilder()
	admin, err := d.pgConnect(ctx, d.adminDatabase(), password, red)
	if err != nil {
		return nil, 0, err
	}
	defer admin.Close(context.WithoutCancel(ctx))
	names, err := d.pgListPlugins(ctx, admin)
	if err != nil {
		return nil, 0, classify("list plugin databases on "+d.addr(), err, red)
	}
	truncated := 0
	if len(names) > MaxPlugins {
		truncated = len(names) - MaxPlugins
		names = names[:MaxPlugins]
	}
	prefix := d.prefix()
	if d.schemaMode() {
		// One connection, one transaction, every plugin schema at once.
		if len(names) == 0 {
			return b, 0, nil
		}
		progress(fmt.Sprintf("reading %d plugin schemas in %s", len(names), d.Database))
		pluginOf := func(schema string) *PluginSnapshot { return b.plugin(strings.TrimPrefix(schema, prefix), schema) }
		for _, n := range names {
			pluginOf(n)
		}
		err := pgReadSchemas(ctx, admin, b, names, pluginOf, func(_, table string) string { return table })
		if err != nil {
			return nil, 0, classify("read plugin schemas of "+d.Database, err, red)
		}
		return b, truncated, nil
	}
	// Each plugin database needs its own connection (a new server
	// backend with cold catalog caches): that start-up, not the queries,
	// is most of the time, so a few are read at once.
	type result struct {
		i   int
		b   *builder
		err error
	}
	results := make(chan result)
	sem := make(chan struct{}, pgParallel)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for i, dbname := range names {
		go func() {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				results <- result{i: i, err: ctx.Err()}
				return
			}
			defer func() { <-sem }()
			sub := newBuilder()
			err := d.pgReadDatabase(ctx, sub, dbname, strings.TrimPrefix(dbname, prefix), password, red)
			results <- result{i: i, b: sub, err: err}
		}()
	}
	subs := make([]*builder, len(names))
	var firstErr error
	for done := range len(names) {
		r := <-results
		if r.err != nil && firstErr == nil {
			firstErr = r.err
			cancel()
		}
		subs[r.i] = r.b
		progress(fmt.Sprintf("read %d/%d plugin databases", done+1, len(names)))
	}
	if firstErr != nil {
		return nil, 0, firstErr
	}
	for _, sub := range subs {
		for name, p := range sub.plugins {
			b.plugins[name] = p
		}
	}
	return b, truncated, nil
}

// pgParallel bounds the plugin databases read at once: enough to overlap
// connection start-up, few enough not to crowd a production server.
const pgParallel = 4

func (d Database) pgReadDatabase(ctx context.Context, b *builder, dbname, plugin, password string, red *secrets.Redactor) error {
	p := b.plugin(plugin, dbname)
	conn, err := d.pgConnect(ctx, dbname, password, red)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	err = pgReadSchemas(ctx, conn, b, nil, func(string) *PluginSnapshot { return p }, func(schema, table string) string {
		if schema == "public" {
			return table
		}
		return schema + "." + table
	})
	if err != nil {
		return classify("read plugin database "+dbname, err, red)
	}
	return nil
}
