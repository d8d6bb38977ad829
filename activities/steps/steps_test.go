package steps_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/stagehand-dev/stagehand/activities"
	"github.com/stagehand-dev/stagehand/activities/steps"
)

func TestSpecsAreComplete(t *testing.T) {
	cat, err := steps.Catalogue()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range cat.All() {
		if s.Description == "" {
			t.Errorf("%s has no description", s.Name)
		}
		if !s.Native && s.DefaultTimeout == 0 {
			t.Errorf("%s has no default timeout", s.Name)
		}
		for _, a := range s.Args {
			if a.Type == "" || a.Help == "" {
				t.Errorf("%s: argument %s needs a type and help", s.Name, a.Name)
			}
		}
		for _, o := range s.Outputs {
			if o.Type == "" || o.Help == "" {
				t.Errorf("%s: output %s needs a type and help", s.Name, o.Name)
			}
		}
		// Built-in step types are held to the table: its meanings are what
		// `stagehand runbooks` shows for them.
		for _, e := range s.Errors {
			if et, ok := activities.LookupErrorType(e); !ok || et.Scope != activities.ScopeStep {
				t.Errorf("%s: error type %s is not a step error type of activities/errortypes.go", s.Name, e)
			}
		}
	}
}

// Every step error type of the table is raised by something: a built-in
// step, the step adapter or the workflow. A stale entry would be offered to
// runbooks for retry.nonRetryable and never match.
func TestEveryStepErrorTypeIsRaised(t *testing.T) {
	raised := map[string]bool{
		// The step adapter and the workflow, for any step.
		activities.ErrInvalidOutputs: true, activities.ErrUnknownStepType: true,
	}
	for _, e := range activities.CommonStepErrors {
		raised[e] = true
	}
	for _, s := range steps.All() {
		for _, e := range s.Errors {
			raised[e] = true
		}
	}
	for _, n := range activities.StepErrorTypeNames() {
		if !raised[n] {
			t.Errorf("error type %s is in the table but no step declares it", n)
		}
	}
}

// An adapter that raises an error type must declare it in its steps' specs,
// or `stagehand runbooks` would not list it for them. Checked per adapter
// package (its steps share helpers, so a finer split would guess), from the
// activities.Err* constants its source uses.
func TestAdaptersDeclareTheErrorTypesTheyRaise(t *testing.T) {
	values := errorConstants(t)
	for _, pkg := range []string{"generic", "kube", "flux", "git", "web", "notify", "command", "image", "db", "portal", "server"} {
		t.Run(pkg, func(t *testing.T) {
			declared := map[string]bool{}
			for _, e := range activities.CommonStepErrors {
				declared[e] = true
			}
			for _, s := range steps.All() {
				if adapter(s.Name) == pkg {
					for _, e := range s.Errors {
						declared[e] = true
					}
				}
			}
			for _, name := range usedConstants(t, filepath.Join("..", pkg)) {
				v, ok := values[name]
				if !ok {
					continue // not an error type (e.g. ErrorTypes)
				}
				if !declared[v] {
					t.Errorf("package %s raises %s (activities.%s), which none of its specs declares", pkg, v, name)
				}
			}
		})
	}
}

// adapter names the package that implements a step type.
func adapter(step string) string {
	if p, _, ok := strings.Cut(step, "."); ok {
		// exec.run lives in activities/command: a package named exec
		// would shadow os/exec, which it uses.
		if p == "exec" {
			return "command"
		}
		return p
	}
	return "generic"
}

// errorConstants maps the Err* constant names of activities/errortypes.go
// to their values.
func errorConstants(t *testing.T) map[string]string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), filepath.Join("..", "errortypes.go"), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, sp := range g.Specs {
			vs := sp.(*ast.ValueSpec)
			for i, n := range vs.Names {
				if i < len(vs.Values) {
					if lit, ok := vs.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
						out[n.Name] = strings.Trim(lit.Value, `"`)
					}
				}
			}
		}
	}
	if len(out) < 20 {
		t.Fatalf("found only %d error constants in errortypes.go", len(out))
	}
	return out
}

// usedConstants lists the activities.Err* identifiers a package's non-test
// source refers to.
func usedConstants(t *testing.T, dir string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no Go files in %s: %v", dir, err)
	}
	seen := map[string]bool{}
	for _, file := range files {
		if strings.HasSuffix(file, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), file, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			sel, ok := n.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			if id, ok := sel.X.(*ast.Ident); ok && id.Name == "activities" && strings.HasPrefix(sel.Sel.Name, "Err") {
				seen[sel.Sel.Name] = true
			}
			return true
		})
	}
	out := make([]string, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// The point of describing steps apart from their handlers: reading the
// specs, as the CLI does, links no adapter and none of their client
// libraries.
func TestSpecsLinkNoClientLibrary(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go not in PATH: %v", err)
	}
	cases := []struct {
		pkg       string
		forbidden []string
	}{
		{"github.com/stagehand-dev/stagehand/activities/steps", []string{
			"k8s.io/client-go", "k8s.io/apimachinery", "github.com/google/go-github", "github.com/docker/docker",
			"github.com/stagehand-dev/stagehand/activities/kube", "github.com/stagehand-dev/stagehand/activities/git",
			"github.com/stagehand-dev/stagehand/activities/image",
			"github.com/stagehand-dev/stagehand/activities/registry",
		}},
		{"github.com/stagehand-dev/stagehand/starter", []string{
			"k8s.io/client-go", "github.com/google/go-github", "github.com/docker/docker",
			"github.com/jackc/pgx", "github.com/go-sql-driver/mysql",
			"github.com/stagehand-dev/stagehand/activities/registry",
		}},
	}
	for _, c := range cases {
		t.Run(c.pkg, func(t *testing.T) {
			out, err := exec.Command(goBin, "list", "-deps", c.pkg).CombinedOutput()
			if err != nil {
				t.Fatalf("go list -deps %s: %v\n%s", c.pkg, err, out)
			}
			deps := strings.Fields(string(out))
			if !slices.Contains(deps, "github.com/stagehand-dev/stagehand/activities") {
				t.Fatalf("go list printed no stagehand packages: %s", out)
			}
			for _, d := range deps {
				for _, f := range c.forbidden {
					if d == f || strings.HasPrefix(d, f+"/") {
						t.Errorf("%s depends on %s", c.pkg, d)
					}
				}
			}
		})
	}
}

// TestIrreversibleStepTypes pins which step types a cancel waits for: the
// ones whose effect is visible outside the run once an attempt is under
// way. Adding a step type that merges, pushes, restores or changes a
// cluster's workload means deciding here, on purpose.
func TestIrreversibleStepTypes(t *testing.T) {
	var got []string
	for _, s := range steps.All() {
		if s.Irreversible {
			if s.Native {
				t.Errorf("%s: a native step runs in the workflow; Irreversible means nothing there", s.Name)
			}
			got = append(got, s.Name)
		}
	}
	sort.Strings(got)
	want := []string{"db.restore", "git.commitPush", "git.merge", "git.restore", "image.push", "kube.setImage"}
	if !slices.Equal(got, want) {
		t.Errorf("irreversible step types: got %v, want %v", got, want)
	}
}
