package portal

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"go.temporal.io/sdk/temporal"

	"github.com/stagehand-dev/stagehand/activities"
	"github.com/stagehand-dev/stagehand/activities/steps"
)

// app is a Backstage app's layout as `npx @backstage/create-app` makes it,
// with a plugin of the portal's own.
var app = map[string]string{
	"backstage.json": `{"version": "1.44.0"}`,
	"package.json": `{"name": "root", "private": true,
		"devDependencies": {"@backstage/cli": "^0.34.0", "@backstage/e2e-test-utils": "^0.1.1", "typescript": "~5.8.0"}}`,
	"packages/app/package.json": `{"name": "app", "dependencies": {"@backstage/plugin-catalog": "^1.31.0",
		"@backstage/core-plugin-api": "^1.10.9", "react": "^18.0.2"}}`,
	"packages/backend/package.json": `{"name": "backend", "dependencies": {"@backstage/plugin-catalog-backend": "3.9.1",
		"@backstage/backend-defaults": "^0.12.0", "pg": "^8.11.3"}}`,
	"plugins/tools/package.json": `{"name": "@internal/plugin-tools", "dependencies": {"@backstage/core-plugin-api": "^1.11.0"},
		"devDependencies": {"@backstage/cli": "^0.34.0"}}`,
	// Not workspaces: a directory without package.json and a file.
	"packages/README.md":      "# packages\n",
	"plugins/.keep/notes.txt": "nothing\n",
}

func writeTree(t testing.TB, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func read(t testing.TB, dir string, want []string) (VersionsOutput, error) {
	t.Helper()
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	return ReadVersions(root, want)
}

func tree(t testing.TB, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	writeTree(t, dir, files)
	return dir
}

// wantUnreadable checks err is a non-retryable VersionsUnreadable whose
// message contains every want.
func wantUnreadable(t testing.TB, err error, want ...string) {
	t.Helper()
	var ae *temporal.ApplicationError
	if !errors.As(err, &ae) || ae.Type() != activities.ErrVersionsUnreadable || !ae.NonRetryable() {
		t.Fatalf("error %v, want a non-retryable VersionsUnreadable", err)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not name %q", err, w)
		}
	}
}

func TestReadVersionsBackstageApp(t *testing.T) {
	out, err := read(t, tree(t, app), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := VersionsOutput{
		Backstage: "1.44.0",
		Packages: map[string]string{
			"@backstage/backend-defaults":       "^0.12.0",
			"@backstage/cli":                    "^0.34.0",
			"@backstage/core-plugin-api":        "^1.10.9 | ^1.11.0",
			"@backstage/e2e-test-utils":         "^0.1.1",
			"@backstage/plugin-catalog":         "^1.31.0",
			"@backstage/plugin-catalog-backend": "3.9.1",
		},
		Files: []string{"package.json", "packages/app/package.json", "packages/backend/package.json", "plugins/tools/package.json"},
		Summary: "backstage 1.44.0; @backstage/backend-defaults ^0.12.0; @backstage/cli ^0.34.0; " +
			"@backstage/core-plugin-api ^1.10.9 | ^1.11.0; @backstage/e2e-test-utils ^0.1.1; @backstage/plugin-catalog ^1.31.0; " +
			"@backstage/plugin-catalog-backend 3.9.1",
	}
	if !reflect.DeepEqual(out, want) {
		t.Errorf("got  %+v\nwant %+v", out, want)
	}
}

func TestReadVersionsNamedPackages(t *testing.T) {
	out, err := read(t, tree(t, app), []string{"@backstage/plugin-catalog-backend", "react", "@backstage/plugin-search"})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(out.Packages, map[string]string{"@backstage/plugin-catalog-backend": "3.9.1", "react": "^18.0.2"}) {
		t.Errorf("packages %v", out.Packages)
	}
	if want := "backstage 1.44.0; @backstage/plugin-catalog-backend 3.9.1; react ^18.0.2; not found: @backstage/plugin-search"; out.Summary != want {
		t.Errorf("summary %q, want %q", out.Summary, want)
	}
}

func TestReadVersionsPartialTrees(t *testing.T) {
	only, err := read(t, tree(t, map[string]string{"backstage.json": `{"version": "1.45.1"}`}), nil)
	if err != nil {
		t.Fatal(err)
	}
	if only.Backstage != "1.45.1" || len(only.Packages) != 0 || len(only.Files) != 0 ||
		only.Summary != "backstage 1.45.1; no @backstage/* dependencies" {
		t.Errorf("backstage.json only: %+v", only)
	}
	noJSON, err := read(t, tree(t, map[string]string{"packages/backend/package.json": `{"dependencies": {"@backstage/plugin-catalog-backend": "^3.9.1"}}`}), nil)
	if err != nil {
		t.Fatal(err)
	}
	if noJSON.Backstage != "" || noJSON.Summary != "no backstage.json; @backstage/plugin-catalog-backend ^3.9.1" {
		t.Errorf("without backstage.json: %+v", noJSON)
	}
}

func TestReadVersionsUnreadable(t *testing.T) {
	t.Run("empty tree", func(t *testing.T) {
		_, err := read(t, t.TempDir(), nil)
		wantUnreadable(t, err, "neither backstage.json nor a package.json")
	})
	t.Run("invalid package.json", func(t *testing.T) {
		files := map[string]string{"backstage.json": `{"version": "1.44.0"}`, "packages/app/package.json": `{"dependencies": {`}
		_, err := read(t, tree(t, files), nil)
		wantUnreadable(t, err, "packages/app/package.json is not a valid package.json")
	})
	t.Run("dependency not a string", func(t *testing.T) {
		_, err := read(t, tree(t, map[string]string{"package.json": `{"dependencies": {"@backstage/cli": 1}}`}), nil)
		wantUnreadable(t, err, "package.json is not a valid package.json")
	})
	t.Run("invalid backstage.json", func(t *testing.T) {
		_, err := read(t, tree(t, map[string]string{"backstage.json": `1.44.0`}), nil)
		wantUnreadable(t, err, "backstage.json is not valid JSON")
		_, err = read(t, tree(t, map[string]string{"backstage.json": `{"version": 1.44}`}), nil)
		wantUnreadable(t, err, "backstage.json: version is not a string")
	})
	t.Run("too large", func(t *testing.T) {
		big := `{"name": "x", "description": "` + strings.Repeat("x", MaxFileBytes) + `"}`
		_, err := read(t, tree(t, map[string]string{"backstage.json": `{"version": "1.44.0"}`, "plugins/big/package.json": big}), nil)
		wantUnreadable(t, err, "plugins/big/package.json is", "at most 1048576")
	})
	t.Run("link out of the tree", func(t *testing.T) {
		outside := tree(t, map[string]string{"package.json": `{"dependencies": {"@backstage/secret-outside": "9.9.9"}}`})
		dir := tree(t, app)
		if err := os.Symlink(outside, filepath.Join(dir, "packages", "evil")); err != nil {
			t.Fatal(err)
		}
		out, err := read(t, dir, nil)
		wantUnreadable(t, err, "packages/evil/package.json")
		if strings.Contains(fmt.Sprint(out), "secret-outside") {
			t.Errorf("read a file outside the tree: %+v", out)
		}
	})
}

func TestReadVersionsBounds(t *testing.T) {
	files := map[string]string{"backstage.json": `{"version": "1.44.0"}`}
	for i := range 250 {
		files[fmt.Sprintf("plugins/p%03d/package.json", i)] = fmt.Sprintf(`{"dependencies": {"@backstage/plugin-p%03d": "1.0.%d"}}`, i, i)
	}
	out, err := read(t, tree(t, files), nil)
	if err != nil {
		t.Fatal(err)
	}
	// The root package.json does not exist, so 199 plugins were read.
	if len(out.Files) != MaxPackageFiles-1 || len(out.Packages) != MaxPackageFiles-1 ||
		!strings.HasSuffix(out.Summary, "; 51 package.json files not read (at most 200)") {
		t.Errorf("files %d packages %d summary ...%s", len(out.Files), len(out.Packages), out.Summary[max(0, len(out.Summary)-120):])
	}
	if len(out.Summary) > maxSummaryBytes || !strings.Contains(out.Summary, "more packages (see packages)") {
		t.Errorf("summary is %d bytes", len(out.Summary))
	}

	deps := make([]string, 250)
	for i := range deps {
		deps[i] = fmt.Sprintf(`"@backstage/plugin-d%03d": "^1.0.0"`, i)
	}
	out, err = read(t, tree(t, map[string]string{"package.json": `{"dependencies": {` + strings.Join(deps, ", ") + `}}`}), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Packages) != MaxPackages || out.Packages["@backstage/plugin-d199"] == "" || out.Packages["@backstage/plugin-d200"] != "" {
		t.Errorf("%d packages", len(out.Packages))
	}
	if !strings.HasSuffix(out.Summary, "more packages (see packages); 50 more packages left out (at most 200)") || len(out.Summary) > maxSummaryBytes {
		t.Errorf("summary does not say packages were left out: ...%s", out.Summary[max(0, len(out.Summary)-120):])
	}
}

func TestVersionsRefusesWithoutTree(t *testing.T) {
	for _, a := range []*Activities{nil, {}} {
		_, err := a.Versions(context.Background(), VersionsInput{Dir: t.TempDir()})
		var ae *temporal.ApplicationError
		if !errors.As(err, &ae) || ae.Type() != activities.ErrInvalidArguments {
			t.Errorf("without Tree: %v", err)
		}
	}
	a := &Activities{Tree: func(context.Context, string) (string, error) { return "", nil }}
	for _, in := range []VersionsInput{{}, {Dir: "x", Packages: []string{""}}, {Dir: "x", Packages: make([]string, MaxPackages+1)}} {
		_, err := a.Versions(context.Background(), in)
		var ae *temporal.ApplicationError
		if !errors.As(err, &ae) || ae.Type() != activities.ErrInvalidArguments {
			t.Errorf("%+v: %v", in, err)
		}
	}
}

func TestStepTypesBindToSpecs(t *testing.T) {
	specs := []activities.StepSpec{steps.Spec("portal.versions"), steps.Spec("portal.setConfig"), steps.Spec("portal.registerPlugin")}
	if _, err := activities.Bind(specs, StepTypes(&Activities{})...); err != nil {
		t.Fatal(err)
	}
}
