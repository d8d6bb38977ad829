// Package portal holds step types that read and edit a Backstage portal's
// source: a work tree git.checkout made in the current run, or the
// directory of one of the worker's single-server environments.
//
//	portal.versions        backstage.json's version and the @backstage/*
//	                       dependencies of the app's package.json files
//	portal.setConfig       set keys of app-config.yaml, keeping comments
//	                       and formatting
//	portal.registerPlugin  add backend.add(import('<package>')) to the
//	                       backend's index.ts
//
// Files are read through an os.Root opened on the work tree, so a symbolic
// link a command (exec.run) left in the tree cannot make the step read
// anything outside it, and every read is bounded. Edits are idempotent (a
// retry finds its change made and reports it unchanged) and undone from
// git (git.state before, git.restore on failure).
package portal

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"slices"
	"sort"
	"strings"
	"syscall"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"

	"github.com/stagehand-dev/stagehand/activities"
	"github.com/stagehand-dev/stagehand/activities/steps"
)

// Bounds: a portal has a handful of workspaces and a few dozen Backstage
// packages; anything far beyond that is not a Backstage app layout and
// must not make the step read or report without end.
const (
	MaxFileBytes    = 1 << 20
	MaxPackageFiles = 200
	MaxPackages     = 200
	// maxDirEntries bounds the listing of packages/ and plugins/.
	maxDirEntries = 2000
	// maxSummaryBytes keeps the one-line summary readable in history and
	// notifications.
	maxSummaryBytes = 4 << 10
	// maxNameBytes is npm's limit on a package name.
	maxNameBytes = 214
)

// Activities runs the portal steps.
type Activities struct {
	// Tree returns the real path of dir when it is a work tree git.checkout
	// made in the current run, and a non-retryable error otherwise. The
	// worker sets it to (*git.Activities).RunTree; nil refuses every dir.
	Tree func(ctx context.Context, dir string) (string, error)
	// LocalDirs are the directories of single-server environments that
	// steps may read and edit, besides this run's checkouts (the worker
	// sets them from its config). A dir must be one of them exactly
	// (after resolving symbolic links), not a directory inside one.
	LocalDirs []string
	// ConfigKeys, when set, are the only app-config subtrees (dotted
	// prefixes such as search or catalog.providers) portal.setConfig may
	// write; it also opens a subtree of DefaultDeniedConfigKeys that it
	// names. The worker reads it from settings.plugin.configKeys.
	ConfigKeys []string
}

// StepTypes binds the portal steps to their specs in activities/steps. a
// may be a zero Activities (tests that only need the catalogue).
func StepTypes(a *Activities) []activities.StepType {
	return []activities.StepType{
		activities.Implement(steps.Spec("portal.versions"), a.Versions),
		activities.Implement(steps.Spec("portal.setConfig"), a.SetConfig),
		activities.Implement(steps.Spec("portal.registerPlugin"), a.RegisterPlugin),
	}
}

// VersionsInput is the `with` of portal.versions.
type VersionsInput struct {
	Dir string `json:"dir"`
	// Packages narrows the report to these npm packages; default every
	// @backstage/* dependency.
	Packages []string `json:"packages,omitempty"`
}

// VersionsOutput is what portal.versions reports.
type VersionsOutput struct {
	// Backstage is backstage.json's version, "" without backstage.json.
	Backstage string `json:"backstage"`
	// Packages maps a package to its version spec as written; specs that
	// differ between files are joined with " | " in file order.
	Packages map[string]string `json:"packages"`
	// Files are the package.json files read, relative to dir.
	Files   []string `json:"files"`
	Summary string   `json:"summary"`
}

// Versions implements portal.versions.
func (a *Activities) Versions(ctx context.Context, in VersionsInput) (VersionsOutput, error) {
	if len(in.Packages) > MaxPackages {
		return VersionsOutput{}, invalid(fmt.Sprintf("packages lists %d names; at most %d", len(in.Packages), MaxPackages))
	}
	for _, p := range in.Packages {
		if p == "" || len(p) > maxNameBytes || strings.ContainsAny(p, " \t\r\n") {
			return VersionsOutput{}, invalid(fmt.Sprintf("packages: %q is not an npm package name", p))
		}
	}
	real, err := a.resolveDir(ctx, in.Dir)
	if err != nil {
		return VersionsOutput{}, err
	}
	root, err := os.OpenRoot(real)
	if err != nil {
		return VersionsOutput{}, unreadable(fmt.Sprintf("open work tree %s: %v", in.Dir, err))
	}
	defer root.Close()
	return ReadVersions(root, in.Packages)
}

// ReadVersions reads the versions of the portal whose work tree is root:
// backstage.json, the root package.json and packages/*/package.json and
// plugins/*/package.json (the Backstage app layout). want narrows the
// packages reported; empty means every @backstage/* one.
func ReadVersions(root *os.Root, want []string) (VersionsOutput, error) {
	out := VersionsOutput{Packages: map[string]string{}, Files: []string{}}
	foundBackstageJSON := false
	if raw, ok, err := readBounded(root, "backstage.json"); err != nil {
		return VersionsOutput{}, err
	} else if ok {
		foundBackstageJSON = true
		var bj struct {
			Version *json.RawMessage `json:"version"`
		}
		if err := json.Unmarshal(raw, &bj); err != nil {
			return VersionsOutput{}, unreadable(fmt.Sprintf("backstage.json is not valid JSON: %v", err))
		}
		if bj.Version != nil {
			if err := json.Unmarshal(*bj.Version, &out.Backstage); err != nil {
				return VersionsOutput{}, unreadable(fmt.Sprintf("backstage.json: version is not a string: %s", bounded(string(*bj.Version), 80)))
			}
		}
	}

	files, skipped, err := packageFiles(root)
	if err != nil {
		return VersionsOutput{}, err
	}
	wanted := map[string]bool{}
	for _, p := range want {
		wanted[p] = true
	}
	specs := map[string][]string{} // name -> distinct specs in file order
	for _, f := range files {
		raw, ok, err := readBounded(root, f)
		if err != nil {
			return VersionsOutput{}, err
		}
		if !ok {
			continue
		}
		var pj struct {
			Dependencies         map[string]string `json:"dependencies"`
			DevDependencies      map[string]string `json:"devDependencies"`
			OptionalDependencies map[string]string `json:"optionalDependencies"`
		}
		if err := json.Unmarshal(raw, &pj); err != nil {
			return VersionsOutput{}, unreadable(fmt.Sprintf("%s is not a valid package.json: %v", f, err))
		}
		out.Files = append(out.Files, f)
		for _, deps := range []map[string]string{pj.Dependencies, pj.DevDependencies, pj.OptionalDependencies} {
			for _, name := range sortedKeys(deps) {
				if len(want) > 0 && !wanted[name] || len(want) == 0 && !strings.HasPrefix(name, "@backstage/") {
					continue
				}
				if !slices.Contains(specs[name], deps[name]) {
					specs[name] = append(specs[name], deps[name])
				}
			}
		}
	}
	if !foundBackstageJSON && len(out.Files) == 0 {
		return VersionsOutput{}, unreadable("neither backstage.json nor a package.json (root, packages/*, plugins/*) exists: is dir the root of a Backstage app?")
	}

	names := sortedKeys(specs)
	omitted := 0
	if len(names) > MaxPackages {
		omitted = len(names) - MaxPackages
		names = names[:MaxPackages]
	}
	for _, n := range names {
		out.Packages[n] = strings.Join(specs[n], " | ")
	}
	out.Summary = summary(out, names, want, specs, omitted, skipped, foundBackstageJSON)
	return out, nil
}

// packageFiles lists the package.json files to read, root's first, then
// packages/* and plugins/* sorted, up to MaxPackageFiles; skipped counts
// those beyond.
func packageFiles(root *os.Root) ([]string, int, error) {
	files := []string{"package.json"}
	for _, parent := range []string{"packages", "plugins"} {
		names, err := subdirs(root, parent)
		if err != nil {
			return nil, 0, err
		}
		for _, n := range names {
			files = append(files, path.Join(parent, n, "package.json"))
		}
	}
	if len(files) > MaxPackageFiles {
		return files[:MaxPackageFiles], len(files) - MaxPackageFiles, nil
	}
	return files, 0, nil
}

// subdirs lists the directories in parent (none when it does not exist).
func subdirs(root *os.Root, parent string) ([]string, error) {
	f, err := root.Open(parent)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, unreadable(fmt.Sprintf("open %s/: %v", parent, err))
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.IsDir() {
		return nil, nil
	}
	entries, err := f.ReadDir(maxDirEntries)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, unreadable(fmt.Sprintf("list %s/: %v", parent, err))
	}
	var out []string
	for _, e := range entries {
		// A link to a directory counts: workspaces are sometimes linked in.
		// The root refuses one that leads outside the tree when read.
		if e.IsDir() || e.Type()&fs.ModeSymlink != 0 {
			out = append(out, e.Name())
		}
	}
	sort.Strings(out)
	return out, nil
}

// readBounded reads name from root; ok is false when it does not exist.
func readBounded(root *os.Root, name string) ([]byte, bool, error) {
	f, err := root.Open(name)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		// ENOTDIR: packages/x is a file (or a link to one), not a workspace.
		return nil, false, nil
	}
	if err != nil {
		// Among others: a link that leads out of the work tree.
		return nil, false, unreadable(fmt.Sprintf("open %s: %v", name, err))
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, false, unreadable(fmt.Sprintf("stat %s: %v", name, err))
	}
	if fi.IsDir() {
		// packages/foo without a package.json of its own is not a
		// workspace; a package.json directory is not one either.
		return nil, false, nil
	}
	if !fi.Mode().IsRegular() {
		return nil, false, unreadable(fmt.Sprintf("%s is not a regular file", name))
	}
	if fi.Size() > MaxFileBytes {
		return nil, false, unreadable(fmt.Sprintf("%s is %d bytes; at most %d are read", name, fi.Size(), MaxFileBytes))
	}
	raw, err := io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
	if err != nil {
		return nil, false, unreadable(fmt.Sprintf("read %s: %v", name, err))
	}
	if len(raw) > MaxFileBytes {
		return nil, false, unreadable(fmt.Sprintf("%s grew past %d bytes while read", name, MaxFileBytes))
	}
	return raw, true, nil
}

func summary(out VersionsOutput, names, want []string, specs map[string][]string, omitted, skipped int, haveBackstageJSON bool) string {
	head := "backstage " + out.Backstage
	if !haveBackstageJSON {
		head = "no backstage.json"
	} else if out.Backstage == "" {
		head = "backstage.json has no version"
	}
	var notes []string
	if len(names) == 0 && len(want) == 0 {
		notes = append(notes, "no @backstage/* dependencies")
	}
	var missing []string
	for _, w := range want {
		if _, ok := specs[w]; !ok {
			missing = append(missing, w)
		}
	}
	if len(missing) > 0 {
		notes = append(notes, bounded("not found: "+strings.Join(missing, ", "), maxSummaryBytes/4))
	}
	if omitted > 0 {
		notes = append(notes, fmt.Sprintf("%d more packages left out (at most %d)", omitted, MaxPackages))
	}
	if skipped > 0 {
		notes = append(notes, fmt.Sprintf("%d package.json files not read (at most %d)", skipped, MaxPackageFiles))
	}
	// The packages fill what the head and notes leave of the bound, so the
	// notes (what was left out) are never what is cut.
	budget := maxSummaryBytes - len(head) - len(strings.Join(notes, "; ")) - 64
	parts := []string{head}
	for i, n := range names {
		p := n + " " + out.Packages[n]
		if budget -= len(p) + 2; budget < 0 {
			parts = append(parts, fmt.Sprintf("and %d more packages (see packages)", len(names)-i))
			break
		}
		parts = append(parts, p)
	}
	return strings.Join(append(parts, notes...), "; ")
}

func bounded(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !isRuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// logger returns the activity logger, or a no-op one outside an activity.
func logger(ctx context.Context) log.Logger {
	if activity.IsActivity(ctx) {
		return activity.GetLogger(ctx)
	}
	return log.NewStructuredLogger(slog.New(slog.DiscardHandler))
}

func invalid(msg string) error {
	return temporal.NewNonRetryableApplicationError(msg, activities.ErrInvalidArguments, nil)
}

func unreadable(msg string) error {
	return temporal.NewNonRetryableApplicationError(msg, activities.ErrVersionsUnreadable, nil)
}
