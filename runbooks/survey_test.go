package runbooks_test

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/stagehand-dev/stagehand/runbooks"
)

// SurveyLibrary keeps the runbooks that load and reports the others, and
// marks a directory runbook that replaces a built-in one.
func TestSurveyLibrary(t *testing.T) {
	dir := t.TempDir()
	for name, src := range map[string]string{
		"hello.yaml":  "name: hello\nsteps:\n  - {id: a, uses: noop}\n",
		"mine.yml":    "name: mine\nsteps:\n  - {id: a, uses: noop}\n",
		"again.yaml":  "name: mine\nsteps:\n  - {id: a, uses: noop}\n",
		"broken.yaml": "name: broken\nsteps:\n  - {id: a, uses: nosuch}\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	entries, problems, err := runbooks.SurveyLibrary(dir, catalogue(t))
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]runbooks.LibraryEntry{}
	for _, e := range entries {
		byName[e.Runbook.Name] = e
	}
	if e := byName["hello"]; e.Builtin || e.Overrides != "builtin/hello.yaml" || e.File != filepath.Join(dir, "hello.yaml") {
		t.Errorf("hello: %+v", e)
	}
	if _, ok := byName["mine"]; !ok {
		t.Error("mine not loaded")
	}
	if e, ok := byName["patch"]; !ok || !e.Builtin {
		t.Errorf("patch: %+v", e)
	}
	var files []string
	for _, p := range problems {
		files = append(files, filepath.Base(p.File))
	}
	slices.Sort(files)
	// again.yaml sorts before mine.yml, so mine.yml is the duplicate.
	if !slices.Equal(files, []string{"broken.yaml", "mine.yml"}) {
		t.Errorf("problems in %v: %v", files, problems)
	}
	// NewLibrary refuses exactly when SurveyLibrary reports problems.
	if _, err := runbooks.NewLibrary(dir, catalogue(t)); err == nil {
		t.Error("NewLibrary accepted a directory with problems")
	}
}
