package db

import (
	"fmt"
	"slices"
	"strings"

	"github.com/stagehand-dev/stagehand/activities"
)

// NewMigration is a migration applied since the `before` snapshot.
type NewMigration struct {
	Name  string `json:"name"`
	Batch int    `json:"batch"`
}

// PluginDiff is what changed in one plugin database between two snapshots.
type PluginDiff struct {
	NewMigrations []NewMigration `json:"newMigrations"`
	TablesAdded   []string       `json:"tablesAdded"`
	TablesRemoved []string       `json:"tablesRemoved"`
	// Columns are "table.column type"; changed ones "table.column: old -> new".
	ColumnsAdded   []string `json:"columnsAdded"`
	ColumnsRemoved []string `json:"columnsRemoved"`
	ColumnsChanged []string `json:"columnsChanged"`
	IndexesAdded   []string `json:"indexesAdded"`
	IndexesRemoved []string `json:"indexesRemoved"`
	// OptionsChanged are storage parameters set or reset:
	// "table: +autovacuum_vacuum_scale_factor=0.01" or "table: -...".
	OptionsChanged []string `json:"optionsChanged"`
	// NewPlugin: the plugin database did not exist before.
	NewPlugin bool `json:"newPlugin"`
}

func (d PluginDiff) empty() bool {
	return len(d.NewMigrations) == 0 && len(d.TablesAdded) == 0 && len(d.TablesRemoved) == 0 &&
		len(d.ColumnsAdded) == 0 && len(d.ColumnsRemoved) == 0 && len(d.ColumnsChanged) == 0 &&
		len(d.IndexesAdded) == 0 && len(d.IndexesRemoved) == 0 && len(d.OptionsChanged) == 0 && !d.NewPlugin
}

// Problem is one reason verifyMigrations fails.
type Problem struct {
	// Type is the error type (MigrationMissing, MigrationLocked,
	// PluginDatabaseMissing).
	Type    string
	Plugin  string
	Message string
	// vanished: a plugin database or migration row of before is gone,
	// which RequireUnchanged's MigrationMismatch reports in its place.
	vanished bool
}

// Comparison is the pure result of comparing two snapshots.
type Comparison struct {
	Plugins        map[string]PluginDiff
	RollbackSafe   bool
	RollbackReason string
	Summary        []string
	Problems       []Problem
}

// problemOrder: when several problems occur the error's type is the first
// of these present, the one a person must deal with first; the message
// lists them all.
var problemOrder = []string{activities.ErrPluginDatabaseMissing, activities.ErrMigrationMissing, activities.ErrMigrationLocked}

// CorruptMigrationMessage is what Backstage logs when old code starts on a
// schema that newer code migrated.
const CorruptMigrationMessage = `old code will refuse this schema: Backstage fails start-up with "The migration directory is corrupt"`

// Compare compares a fresh snapshot with an earlier one. expect maps a
// plugin to the migration that must be its latest (present in after).
func Compare(before, after Snapshot, expect map[string]string) Comparison {
	c := Comparison{Plugins: map[string]PluginDiff{}}
	for _, name := range sortedKeys(before.Plugins) {
		if _, ok := after.Plugins[name]; !ok {
			c.Problems = append(c.Problems, Problem{activities.ErrPluginDatabaseMissing, name,
				fmt.Sprintf("plugin %s: database %s is gone (it existed in the snapshot of %s)", name, before.Plugins[name].Database, before.TakenAt), true})
		}
	}
	var migrated []string
	var newPlugins []string
	for _, name := range sortedKeys(after.Plugins) {
		a := after.Plugins[name]
		b, existed := before.Plugins[name]
		d := diffPlugin(b, a, existed, !before.SchemaOmitted && !after.SchemaOmitted)
		if existed {
			for _, m := range missingMigrations(b, a) {
				c.Problems = append(c.Problems, Problem{activities.ErrMigrationMissing, name,
					fmt.Sprintf("plugin %s: migration %s (batch %d) was deleted from knex_migrations", name, m.Name, m.Batch), true})
			}
		}
		if a.Locked {
			c.Problems = append(c.Problems, Problem{activities.ErrMigrationLocked, name,
				fmt.Sprintf("plugin %s: knex_migrations_lock in %s is held (is_locked = 1): a migration crashed or is still running", name, a.Database), false})
		}
		if existed && len(d.NewMigrations) == 0 && a.Count > b.Count {
			// The rows are listed up to a bound from the oldest, so new
			// ones can be past it: the count still shows that they ran.
			migrated = append(migrated, fmt.Sprintf("%s (%d new, beyond the %d listed)", name, a.Count-b.Count, len(a.Migrations)))
		}
		if len(d.NewMigrations) > 0 {
			if existed {
				migrated = append(migrated, fmt.Sprintf("%s (%d new)", name, len(d.NewMigrations)))
			} else {
				newPlugins = append(newPlugins, fmt.Sprintf("%s (%d migrations)", name, len(d.NewMigrations)))
			}
		}
		c.Plugins[name] = d
	}
	for _, name := range sortedKeys(expect) {
		want := expect[name]
		a, ok := after.Plugins[name]
		if !ok {
			if _, gone := before.Plugins[name]; !gone {
				c.Problems = append(c.Problems, Problem{activities.ErrPluginDatabaseMissing, name,
					fmt.Sprintf("plugin %s: expected latest migration %s, but the plugin has no database", name, want), false})
			}
			continue
		}
		if !hasMigration(a, want) {
			c.Problems = append(c.Problems, Problem{activities.ErrMigrationMissing, name,
				fmt.Sprintf("plugin %s: expected migration %s has not been applied (latest is %s)", name, want, orNone(a.Latest)), false})
		}
	}
	slices.SortStableFunc(c.Problems, func(x, y Problem) int {
		return slices.Index(problemOrder, x.Type) - slices.Index(problemOrder, y.Type)
	})

	c.RollbackSafe = len(migrated) == 0
	switch {
	case !c.RollbackSafe:
		c.RollbackReason = fmt.Sprintf("migrations ran since the snapshot in %s; %s", strings.Join(migrated, ", "), CorruptMigrationMessage)
	case len(newPlugins) > 0:
		c.RollbackReason = "no existing plugin applied migrations; new plugin databases " + strings.Join(newPlugins, ", ") +
			" are not used by the previous version"
	default:
		c.RollbackReason = "no plugin applied migrations since the snapshot"
	}
	c.Summary = summarizeDiff(c, after, before.SchemaOmitted || after.SchemaOmitted)
	return c
}

// RequireNew adds a problem for each plugin of ids that is not new since
// before with at least one migration applied: the check after a plugin
// install, whose database must have appeared and been migrated by the
// plugin's first start. A plugin that already had a database is refused
// too: then the install did not add it (it was installed before), and
// "migrations applied" would prove nothing about this install.
func (c *Comparison) RequireNew(before, after Snapshot, ids []string) {
	var problems []Problem
	for _, id := range ids {
		a, ok := after.Plugins[id]
		_, existed := before.Plugins[id]
		switch {
		case existed:
			problems = append(problems, Problem{activities.ErrMigrationMismatch, id,
				fmt.Sprintf("plugin %s: expected a new plugin database, but %s already existed in the snapshot of %s", id, before.Plugins[id].Database, before.TakenAt), false})
		case !ok:
			problems = append(problems, Problem{activities.ErrPluginDatabaseMissing, id,
				fmt.Sprintf("plugin %s: expected a new plugin database, but none appeared (plugin databases now: %s)", id, orNone(strings.Join(sortedKeys(after.Plugins), ", "))), false})
		case a.Count == 0:
			problems = append(problems, Problem{activities.ErrMigrationMissing, id,
				fmt.Sprintf("plugin %s: database %s appeared, but no migration has been applied to it", id, a.Database), false})
		}
	}
	// Ahead of the others: the install's own verdict is what a person
	// reads first.
	c.Problems = append(problems, c.Problems...)
}

// Failure is the error verifyMigrations fails with, or nil.
func (c Comparison) Failure() (errType, msg string) {
	if len(c.Problems) == 0 {
		return "", ""
	}
	lines := make([]string, len(c.Problems))
	for i, p := range c.Problems {
		lines[i] = p.Message
	}
	return c.Problems[0].Type, strings.Join(lines, "; ")
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func hasMigration(p PluginSnapshot, name string) bool {
	if p.Latest == name {
		return true
	}
	for _, m := range p.Migrations {
		if m.Name == name {
			return true
		}
	}
	return false
}

// missingMigrations are the rows of before that after lacks. A truncated
// after snapshot only lists its first rows, so rows beyond them are
// unknown rather than missing.
func missingMigrations(before, after PluginSnapshot) []Migration {
	have := make(map[string]bool, len(after.Migrations))
	for _, m := range after.Migrations {
		have[m.Name] = true
	}
	var out []Migration
	for _, m := range before.Migrations {
		if !have[m.Name] && after.MigrationsTruncated == 0 {
			out = append(out, m)
		}
	}
	return out
}

func diffPlugin(before, after PluginSnapshot, existed, schema bool) PluginDiff {
	d := PluginDiff{
		NewPlugin:     !existed,
		NewMigrations: []NewMigration{}, TablesAdded: []string{}, TablesRemoved: []string{},
		ColumnsAdded: []string{}, ColumnsRemoved: []string{}, ColumnsChanged: []string{},
		IndexesAdded: []string{}, IndexesRemoved: []string{}, OptionsChanged: []string{},
	}
	had := make(map[string]bool, len(before.Migrations))
	for _, m := range before.Migrations {
		had[m.Name] = true
	}
	for _, m := range after.Migrations {
		if !had[m.Name] {
			d.NewMigrations = append(d.NewMigrations, NewMigration{Name: m.Name, Batch: m.Batch})
		}
	}
	if !schema {
		return d
	}
	for _, t := range sortedKeys(after.Tables) {
		at := after.Tables[t]
		bt, ok := before.Tables[t]
		if !ok {
			d.TablesAdded = append(d.TablesAdded, t)
			continue
		}
		for _, col := range sortedKeys(at.Columns) {
			bc, ok := bt.Columns[col]
			switch {
			case !ok:
				d.ColumnsAdded = append(d.ColumnsAdded, fmt.Sprintf("%s.%s %s", t, col, at.Columns[col]))
			case bc != at.Columns[col]:
				d.ColumnsChanged = append(d.ColumnsChanged, fmt.Sprintf("%s.%s: %s -> %s", t, col, bc, at.Columns[col]))
			}
		}
		for _, col := range sortedKeys(bt.Columns) {
			if _, ok := at.Columns[col]; !ok {
				d.ColumnsRemoved = append(d.ColumnsRemoved, fmt.Sprintf("%s.%s %s", t, col, bt.Columns[col]))
			}
		}
		d.IndexesAdded = append(d.IndexesAdded, prefixed(t, minus(at.Indexes, bt.Indexes))...)
		d.IndexesRemoved = append(d.IndexesRemoved, prefixed(t, minus(bt.Indexes, at.Indexes))...)
		for _, o := range minus(at.Options, bt.Options) {
			d.OptionsChanged = append(d.OptionsChanged, t+": +"+o)
		}
		for _, o := range minus(bt.Options, at.Options) {
			d.OptionsChanged = append(d.OptionsChanged, t+": -"+o)
		}
	}
	for _, t := range sortedKeys(before.Tables) {
		if _, ok := after.Tables[t]; !ok && after.TablesTruncated == 0 {
			d.TablesRemoved = append(d.TablesRemoved, t)
		}
	}
	return d
}

func minus(a, b []string) []string {
	var out []string
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}

func prefixed(table string, items []string) []string {
	out := make([]string, len(items))
	for i, s := range items {
		out[i] = table + "." + s
	}
	return out
}

func summarizeDiff(c Comparison, after Snapshot, schemaOmitted bool) []string {
	var lines []string
	for _, name := range sortedKeys(c.Plugins) {
		d := c.Plugins[name]
		if d.empty() {
			lines = append(lines, fmt.Sprintf("%s: unchanged (%d migrations)", name, after.Plugins[name].Count))
			continue
		}
		var parts []string
		if d.NewPlugin {
			parts = append(parts, "new plugin database")
		}
		if n := len(d.NewMigrations); n > 0 {
			names := make([]string, n)
			for i, m := range d.NewMigrations {
				names[i] = m.Name
			}
			parts = append(parts, fmt.Sprintf("%d new migrations in batch %d (%s)", n, d.NewMigrations[n-1].Batch, strings.Join(names, ", ")))
		}
		add := func(n int, what string) {
			if n > 0 {
				parts = append(parts, fmt.Sprintf("%d %s", n, what))
			}
		}
		if !d.NewPlugin {
			add(len(d.TablesAdded), "tables added")
		}
		add(len(d.TablesRemoved), "tables removed")
		add(len(d.ColumnsAdded), "columns added")
		add(len(d.ColumnsRemoved), "columns removed")
		add(len(d.ColumnsChanged), "columns changed")
		add(len(d.IndexesAdded), "indexes added")
		add(len(d.IndexesRemoved), "indexes removed")
		add(len(d.OptionsChanged), "storage options changed")
		lines = append(lines, name+": "+strings.Join(parts, ", "))
	}
	for _, p := range c.Problems {
		if p.Type == activities.ErrPluginDatabaseMissing {
			lines = append(lines, p.Message)
		}
	}
	if len(lines) == 0 {
		lines = append(lines, "no plugin databases")
	}
	if schemaOmitted {
		lines = append(lines, "schema diff not available: a snapshot left its tables out (size bound)")
	}
	if !c.RollbackSafe {
		lines = append(lines, "rollback NOT safe: "+c.RollbackReason)
	}
	return lines
}

// Bounds of the MigrationMismatch message: it lands in workflow history and
// in notifications, and a restore gone wrong can differ by hundreds of rows.
const (
	maxMismatchPlugins = 20
	maxMismatchNames   = 5
)

// RequireUnchanged adds a MigrationMismatch problem, ahead of every other,
// when after's migrations or plugin databases differ from before's: a
// migration not in before, one of before's gone, or a plugin database that
// appeared or vanished. It is the check after restoring a backup taken
// with the before snapshot, when the schema must be the pre-upgrade one
// exactly; the other problems stay listed after it.
func (c *Comparison) RequireUnchanged(before, after Snapshot) {
	var lines []string
	for _, name := range sortedKeys(before.Plugins) {
		if _, ok := after.Plugins[name]; !ok {
			lines = append(lines, fmt.Sprintf("plugin %s: database %s is gone", name, before.Plugins[name].Database))
		}
	}
	for _, name := range sortedKeys(after.Plugins) {
		a := after.Plugins[name]
		b, existed := before.Plugins[name]
		if !existed {
			lines = append(lines, fmt.Sprintf("plugin %s: database %s appeared (%d migrations%s)", name, a.Database, a.Count,
				boundedNames(migrationNames(a.Migrations), a.Count, ": ")))
			continue
		}
		had := make(map[string]bool, len(b.Migrations))
		for _, m := range b.Migrations {
			had[m.Name] = true
		}
		var extra []string
		for _, m := range a.Migrations {
			if !had[m.Name] {
				extra = append(extra, m.Name)
			}
		}
		var parts []string
		switch {
		case len(extra) > 0:
			parts = append(parts, fmt.Sprintf("%d migrations not in the snapshot%s", len(extra), boundedNames(extra, len(extra), ": ")))
		case a.Count > b.Count:
			// New rows beyond the listed bound: only the count shows them.
			parts = append(parts, fmt.Sprintf("%d more migrations than the snapshot (beyond the %d listed)", a.Count-b.Count, len(a.Migrations)))
		}
		gone := migrationNames(missingMigrations(b, a))
		if len(gone) > 0 {
			parts = append(parts, fmt.Sprintf("%d migrations of the snapshot gone%s", len(gone), boundedNames(gone, len(gone), ": ")))
		} else if len(extra) == 0 && a.Count < b.Count {
			parts = append(parts, fmt.Sprintf("%d fewer migrations than the snapshot", b.Count-a.Count))
		}
		if len(parts) > 0 {
			lines = append(lines, fmt.Sprintf("plugin %s: %s", name, strings.Join(parts, ", ")))
		}
	}
	if len(lines) == 0 {
		return
	}
	more := ""
	if len(lines) > maxMismatchPlugins {
		more = fmt.Sprintf("; and %d more plugins", len(lines)-maxMismatchPlugins)
		lines = lines[:maxMismatchPlugins]
	}
	msg := fmt.Sprintf("migrations differ from the snapshot of %s (expectUnchanged): %s%s", before.TakenAt, strings.Join(lines, "; "), more)
	problems := []Problem{{Type: activities.ErrMigrationMismatch, Message: msg}}
	for _, p := range c.Problems {
		if !p.vanished {
			problems = append(problems, p)
		}
	}
	c.Problems = problems
}

func migrationNames(ms []Migration) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.Name
	}
	return out
}

// boundedNames is prefix and the first maxMismatchNames names, saying how
// many of total are left out ("" for no names).
func boundedNames(names []string, total int, prefix string) string {
	if len(names) == 0 {
		return ""
	}
	shown := names[:min(len(names), maxMismatchNames)]
	s := prefix + strings.Join(shown, ", ")
	if total > len(shown) {
		s += fmt.Sprintf(" and %d more", total-len(shown))
	}
	return s
}
