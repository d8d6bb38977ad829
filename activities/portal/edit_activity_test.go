package portal

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stagehand-dev/stagehand/activities"
	"github.com/stagehand-dev/stagehand/activities/git"
	"github.com/stagehand-dev/stagehand/internal/gittest"
	"github.com/stagehand-dev/stagehand/internal/steptest"
)

// serverDir is a single-server environment's directory holding the
// fixtures, and Activities that allow it (and no run checkouts).
func serverDir(t *testing.T) (string, *Activities) {
	t.Helper()
	dir := t.TempDir()
	for name, fixture := range map[string]string{"app-config.yaml": "testdata/app-config.yaml", "packages/backend/src/index.ts": "testdata/index.ts"} {
		b, err := os.ReadFile(fixture)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o640); err != nil {
			t.Fatal(err)
		}
	}
	return dir, &Activities{LocalDirs: []string{dir}}
}

func TestEditStepsOnSingleServerDir(t *testing.T) {
	dir, a := serverDir(t)
	// backend.* is denied unless the worker lists it: this one does.
	a.ConfigKeys = []string{"todo", "backend.listen", "app", "a", "x"}
	cfg := filepath.Join(dir, "app-config.yaml")
	before, _ := os.ReadFile(cfg)

	out := steptest.MustStep(t, StepTypes(a), "portal.setConfig", map[string]any{
		"dir": dir, "set": map[string]any{"todo.enabled": true, "backend.listen.port": 7007},
	}).Outputs
	if out["file"] != "app-config.yaml" || strings.Join(anyStrings(out["changed"]), ",") != "todo.enabled" || strings.Join(anyStrings(out["unchanged"]), ",") != "backend.listen.port" {
		t.Errorf("outputs %v", out)
	}
	after, _ := os.ReadFile(cfg)
	if string(after) != string(before)+"todo:\n  enabled: true\n" {
		t.Errorf("app-config.yaml:\n%s", after)
	}
	if fi, _ := os.Stat(cfg); fi.Mode().Perm() != 0o640 {
		t.Errorf("mode %v: the file's mode is kept", fi.Mode())
	}
	out = steptest.MustStep(t, StepTypes(a), "portal.setConfig", map[string]any{"dir": dir, "set": map[string]any{"todo.enabled": true}}).Outputs
	if len(anyStrings(out["changed"])) != 0 {
		t.Errorf("retry changed %v", out["changed"])
	}
	if again, _ := os.ReadFile(cfg); string(again) != string(after) {
		t.Error("retry changed the file")
	}

	reg := map[string]any{"dir": dir, "package": "@backstage-community/plugin-todo-backend"}
	out = steptest.MustStep(t, StepTypes(a), "portal.registerPlugin", reg).Outputs
	if out["added"] != true || out["file"] != "packages/backend/src/index.ts" || out["line"] != float64(59) {
		t.Errorf("outputs %v", out)
	}
	index, _ := os.ReadFile(filepath.Join(dir, "packages/backend/src/index.ts"))
	if !strings.HasSuffix(string(index), "\nbackend.add(import('@backstage-community/plugin-todo-backend'));\nbackend.start();\n") {
		t.Errorf("index.ts ends:\n%s", index[len(index)-200:])
	}
	out = steptest.MustStep(t, StepTypes(a), "portal.registerPlugin", reg).Outputs
	if out["added"] != false || out["line"] != float64(59) {
		t.Errorf("retry outputs %v", out)
	}
	if again, _ := os.ReadFile(filepath.Join(dir, "packages/backend/src/index.ts")); string(again) != string(index) {
		t.Error("retry changed index.ts")
	}
	if entries, _ := os.ReadDir(filepath.Join(dir, "packages/backend/src")); len(entries) != 1 {
		t.Errorf("left files behind: %v", entries)
	}

	// portal.versions reads the directory too (this fixture has no
	// package.json: refused for that, not for where it is).
	run0 := steptest.RunStep(t, StepTypes(a), "portal.versions", map[string]any{"dir": dir})
	steptest.WantAppError(t, run0.Err, activities.ErrVersionsUnreadable, true, []string{"neither backstage.json nor a package.json"})

	// Shapes the edits refuse reach the run as PortalFileShape.
	run := steptest.RunStep(t, StepTypes(a), "portal.setConfig", map[string]any{"dir": dir, "set": map[string]any{"app.title.x": 1}})
	steptest.WantAppError(t, run.Err, activities.ErrPortalFileShape, true, []string{"app-config.yaml: app.title is a scalar, not a mapping"})
	if err := os.WriteFile(filepath.Join(dir, "legacy.ts"), []byte("import { createServiceBuilder } from 'x';\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	run = steptest.RunStep(t, StepTypes(a), "portal.registerPlugin", map[string]any{"dir": dir, "file": "legacy.ts", "package": "x"})
	steptest.WantAppError(t, run.Err, activities.ErrPortalFileShape, true, []string{"legacy.ts: expected exactly one createBackend( call"})
	run = steptest.RunStep(t, StepTypes(a), "portal.setConfig", map[string]any{"dir": dir, "file": "app-config.production.yaml", "set": map[string]any{"a": 1}})
	steptest.WantAppError(t, run.Err, activities.ErrPortalFileShape, true, []string{"app-config.production.yaml does not exist in " + dir})
	run = steptest.RunStep(t, StepTypes(a), "portal.registerPlugin", map[string]any{"dir": dir, "package": "x');require('child_process"})
	steptest.WantAppError(t, run.Err, activities.ErrInvalidArguments, true, []string{"is not an npm package name"})

	// A plugin with its modules: one write, the plugin first, versions as
	// the package manager had them ignored; a bad module writes nothing.
	withModules := map[string]any{"dir": dir, "package": "@acme/plugin-foo-backend",
		"modules": []any{"@acme/plugin-foo-backend-module-a@0.5.59", "@acme/plugin-foo-backend-module-b"}}
	out = steptest.MustStep(t, StepTypes(a), "portal.registerPlugin", withModules).Outputs
	if out["added"] != true || out["line"] != float64(60) {
		t.Errorf("outputs with modules %v", out)
	}
	index, _ = os.ReadFile(filepath.Join(dir, "packages/backend/src/index.ts"))
	if !strings.HasSuffix(string(index), "\nbackend.add(import('@acme/plugin-foo-backend'));\n"+
		"backend.add(import('@acme/plugin-foo-backend-module-a'));\n"+
		"backend.add(import('@acme/plugin-foo-backend-module-b'));\nbackend.start();\n") {
		t.Errorf("index.ts ends:\n%s", index[len(index)-300:])
	}
	out = steptest.MustStep(t, StepTypes(a), "portal.registerPlugin", withModules).Outputs
	if out["added"] != false {
		t.Errorf("retry with modules %v", out)
	}
	run = steptest.RunStep(t, StepTypes(a), "portal.registerPlugin", map[string]any{"dir": dir, "package": "y", "modules": []any{"Bad Name"}})
	steptest.WantAppError(t, run.Err, activities.ErrInvalidArguments, true, []string{"is not an npm package name"})
	if again, _ := os.ReadFile(filepath.Join(dir, "packages/backend/src/index.ts")); string(again) != string(index) {
		t.Error("a refused module changed index.ts")
	}
}

// TestEditConfinement: only the configured directory (a link to it is
// the same directory), and only files inside it.
func TestEditConfinement(t *testing.T) {
	dir, a := serverDir(t)
	outside := t.TempDir()
	secret := filepath.Join(outside, "app-config.yaml")
	if err := os.WriteFile(secret, []byte("a: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(t.TempDir(), "server")
	if err := os.Symlink(dir, link); err != nil {
		t.Fatal(err)
	}
	steptest.MustStep(t, StepTypes(a), "portal.setConfig", map[string]any{"dir": link, "set": map[string]any{"b": 2}})

	for _, bad := range []string{outside, filepath.Join(dir, "packages"), filepath.Join(dir, "packages", "..", ".."), "relative"} {
		for step, with := range map[string]map[string]any{
			"portal.setConfig":      {"dir": bad, "set": map[string]any{"a": 2}},
			"portal.registerPlugin": {"dir": bad, "package": "x"},
			"portal.versions":       {"dir": bad},
		} {
			run := steptest.RunStep(t, StepTypes(a), step, with)
			steptest.WantAppError(t, run.Err, activities.ErrInvalidArguments, true,
				[]string{"dir " + bad + " is not a work tree git.checkout made in this run", "nor is it one of this worker's single-server environment directories (" + dir + ")"})
		}
	}
	// Files named relative to dir stay in it: .., absolute names, a link
	// to a file outside, a linked directory leading outside.
	if err := os.Symlink(secret, filepath.Join(dir, "linked.yaml")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(dir, "linkdir")); err != nil {
		t.Fatal(err)
	}
	for file, want := range map[string]string{
		"../app-config.yaml":                    "may not use '..'",
		"packages/../../x.yaml":                 "may not use '..'",
		secret:                                  "not an absolute one",
		"linked.yaml":                           "is a symbolic link",
		"linkdir/app-config.yaml":               "files must stay inside dir",
		"packages/backend/src/../../../../x.ts": "may not use '..'",
	} {
		run := steptest.RunStep(t, StepTypes(a), "portal.setConfig", map[string]any{"dir": dir, "file": file, "set": map[string]any{"a": 2}})
		steptest.WantAppError(t, run.Err, activities.ErrInvalidArguments, true, []string{want})
	}
	if b, _ := os.ReadFile(secret); string(b) != "a: 1\n" {
		t.Errorf("the file outside was changed: %q", b)
	}
}

// TestEditStepsOnCheckout: the edits work on this run's checkout, and
// git.restore takes them back.
func TestEditStepsOnCheckout(t *testing.T) {
	repo := gittest.New(t)
	idx, _ := os.ReadFile("testdata/index.ts")
	repo.Commit("main", "app", map[string]string{"app-config.yaml": "app:\n  title: x # the title\n", "packages/backend/src/index.ts": string(idx)})
	ga := &git.Activities{WorkDir: t.TempDir()}
	co := steptest.MustStep(t, git.StepTypes(ga), "git.checkout", map[string]any{"remote": repo.Origin}).Outputs
	dir := co["dir"].(string)
	a := &Activities{Tree: ga.RunTree}
	st := steptest.MustStep(t, git.StepTypes(ga), "git.state", map[string]any{"dir": dir}).Outputs
	steptest.MustStep(t, StepTypes(a), "portal.setConfig", map[string]any{"dir": dir, "set": map[string]any{"app.title": "y"}})
	steptest.MustStep(t, StepTypes(a), "portal.registerPlugin", map[string]any{"dir": dir, "package": "p"})
	if b, _ := os.ReadFile(filepath.Join(dir, "app-config.yaml")); string(b) != "app:\n  title: y # the title\n" {
		t.Errorf("app-config.yaml %q", b)
	}
	r := steptest.MustStep(t, git.StepTypes(ga), "git.restore", map[string]any{"dir": dir, "ref": st["head"]}).Outputs
	if got := strings.Join(anyStrings(r["restored"]), ","); got != "app-config.yaml,packages/backend/src/index.ts" {
		t.Errorf("restored %v", got)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "packages/backend/src/index.ts")); string(b) != string(idx) {
		t.Error("index.ts not restored")
	}
}

func anyStrings(v any) []string {
	l, _ := v.([]any)
	out := []string{}
	for _, e := range l {
		s, _ := e.(string)
		out = append(out, s)
	}
	return out
}
