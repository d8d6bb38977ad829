package db

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Bounds on what a snapshot reports: outputs go into workflow history,
// which is kept small. A plugin beyond a bound is marked truncated; the
// comparison treats what is missing from a truncated part as unknown.
const (
	MaxPlugins           = 200
	MaxMigrationsPerPlug = 2000
	MaxTablesPerPlugin   = 300
	MaxColumnsPerTable   = 200
	MaxIndexesPerTable   = 50
	// MaxSnapshotBytes bounds a snapshot's JSON: beyond it the table
	// details are left out (SchemaOmitted) and only migrations and locks
	// are kept, which is what the rollback decision needs.
	MaxSnapshotBytes = 1 << 20
)

// Migration is one row of knex_migrations.
type Migration struct {
	Name  string `json:"name"`
	Batch int    `json:"batch"`
	// Time is migration_time in RFC 3339, UTC.
	Time string `json:"time,omitempty"`
}

// Table is one table's columns (name → type, with "not null" when so) and
// its indexes ("name (col, ...)", with "unique"/"primary" markers).
type Table struct {
	Columns map[string]string `json:"columns"`
	Indexes []string          `json:"indexes,omitempty"`
	// Options are PostgreSQL storage parameters of the table
	// (autovacuum_vacuum_scale_factor=0.01) and of its columns
	// (entity_id.n_distinct=-0.5): migrations tune them too.
	Options []string `json:"options,omitempty"`
	// ColumnsTruncated counts columns left out beyond MaxColumnsPerTable.
	ColumnsTruncated int `json:"columnsTruncated,omitempty"`
}

// PluginSnapshot is one plugin database (or schema).
type PluginSnapshot struct {
	// Database is the plugin's database (or schema) name.
	Database   string      `json:"database"`
	Migrations []Migration `json:"migrations"`
	// Latest is the name of the last migration applied (by id).
	Latest string `json:"latest"`
	Count  int    `json:"count"`
	// Locked is knex_migrations_lock.is_locked.
	Locked bool `json:"locked"`
	// NoKnex is set when the database has no knex_migrations table
	// (not migrated yet, or not Knex's).
	NoKnex bool             `json:"noKnex,omitempty"`
	Tables map[string]Table `json:"tables"`
	// MigrationsTruncated / TablesTruncated count rows and tables left out
	// beyond the bounds.
	MigrationsTruncated int `json:"migrationsTruncated,omitempty"`
	TablesTruncated     int `json:"tablesTruncated,omitempty"`
}

// Snapshot is the output of db.snapshot (and verifyMigrations' `after`).
type Snapshot struct {
	Plugins map[string]PluginSnapshot `json:"plugins"`
	// Summary has one line per plugin, sorted.
	Summary  []string `json:"summary"`
	TakenAt  string   `json:"takenAt"`
	Database string   `json:"database"`
	Driver   string   `json:"driver"`
	// PluginsTruncated counts plugin databases left out beyond MaxPlugins.
	PluginsTruncated int `json:"pluginsTruncated,omitempty"`
	// SchemaOmitted: the tables were left out to keep the snapshot under
	// MaxSnapshotBytes; a comparison then reports migrations only.
	SchemaOmitted bool `json:"schemaOmitted,omitempty"`
}

// SnapshotInput is the `with` of db.snapshot.
type SnapshotInput struct {
	Database string `json:"database"`
}

// builder collects rows from either engine into a snapshot, applying the
// bounds in one place.
type builder struct {
	plugins map[string]*PluginSnapshot
	// dropped holds the tables left out by the bound, per plugin snapshot.
	dropped map[*PluginSnapshot]map[string]bool
}

func newBuilder() *builder {
	return &builder{plugins: map[string]*PluginSnapshot{}, dropped: map[*PluginSnapshot]map[string]bool{}}
}

func (b *builder) plugin(name, database string) *PluginSnapshot {
	p := b.plugins[name]
	if p == nil {
		p = &PluginSnapshot{Database: database, Tables: map[string]Table{}, Migrations: []Migration{}, NoKnex: true}
		b.plugins[name] = p
	}
	return p
}

func (b *builder) column(p *PluginSnapshot, table, column, typ string) {
	if table == "knex_migrations" {
		p.NoKnex = false
	}
	t, ok := p.Tables[table]
	if !ok {
		if len(p.Tables) >= MaxTablesPerPlugin {
			if b.dropped[p] == nil {
				b.dropped[p] = map[string]bool{}
			}
			if !b.dropped[p][table] {
				b.dropped[p][table] = true
				p.TablesTruncated++
			}
			return
		}
		t = Table{Columns: map[string]string{}}
	}
	if len(t.Columns) >= MaxColumnsPerTable {
		t.ColumnsTruncated++
	} else {
		t.Columns[column] = typ
	}
	p.Tables[table] = t
}

func (b *builder) index(p *PluginSnapshot, table, desc string) {
	t, ok := p.Tables[table]
	if !ok || len(t.Indexes) >= MaxIndexesPerTable {
		return
	}
	t.Indexes = append(t.Indexes, desc)
	p.Tables[table] = t
}

func (b *builder) option(p *PluginSnapshot, table, opt string) {
	t, ok := p.Tables[table]
	if !ok || slices.Contains(t.Options, opt) || len(t.Options) >= MaxIndexesPerTable {
		return
	}
	t.Options = append(t.Options, opt)
	p.Tables[table] = t
}

func (b *builder) migration(p *PluginSnapshot, m Migration) {
	p.Count++
	p.Latest = m.Name
	if len(p.Migrations) >= MaxMigrationsPerPlug {
		p.MigrationsTruncated++
		return
	}
	p.Migrations = append(p.Migrations, m)
}

func (b *builder) finish(database, driver string, takenAt time.Time, pluginsTruncated int) Snapshot {
	s := Snapshot{
		Plugins:          map[string]PluginSnapshot{},
		TakenAt:          takenAt.UTC().Format(time.RFC3339Nano),
		Database:         database,
		Driver:           driver,
		PluginsTruncated: pluginsTruncated,
	}
	for name, p := range b.plugins {
		for k, t := range p.Tables {
			slices.Sort(t.Indexes)
			slices.Sort(t.Options)
			p.Tables[k] = t
		}
		s.Plugins[name] = *p
	}
	if b, err := json.Marshal(s); err == nil && len(b) > MaxSnapshotBytes {
		s.SchemaOmitted = true
		for name, p := range s.Plugins {
			p.TablesTruncated += len(p.Tables)
			p.Tables = map[string]Table{}
			s.Plugins[name] = p
		}
	}
	s.Summary = summarize(s)
	if s.SchemaOmitted {
		s.Summary = append(s.Summary, fmt.Sprintf("(tables left out: the snapshot would exceed %d bytes)", MaxSnapshotBytes))
	}
	return s
}

func summarize(s Snapshot) []string {
	var lines []string
	for _, name := range sortedKeys(s.Plugins) {
		p := s.Plugins[name]
		var b strings.Builder
		fmt.Fprintf(&b, "%s: ", name)
		if p.NoKnex {
			b.WriteString("no knex_migrations")
		} else {
			fmt.Fprintf(&b, "%d migrations", p.Count)
			if p.Latest != "" {
				fmt.Fprintf(&b, ", latest %s", p.Latest)
			}
		}
		fmt.Fprintf(&b, ", %d tables", len(p.Tables)+p.TablesTruncated)
		if p.Locked {
			b.WriteString(", knex_migrations_lock HELD")
		}
		if p.TablesTruncated > 0 || p.MigrationsTruncated > 0 {
			fmt.Fprintf(&b, " (truncated: %d tables, %d migrations not listed)", p.TablesTruncated, p.MigrationsTruncated)
		}
		lines = append(lines, b.String())
	}
	if s.PluginsTruncated > 0 {
		lines = append(lines, fmt.Sprintf("(truncated: %d more plugin databases not listed)", s.PluginsTruncated))
	}
	if len(lines) == 0 {
		lines = append(lines, "no plugin databases")
	}
	return lines
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
