package cli

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/stagehand-dev/stagehand/activities/steps"
	"github.com/stagehand-dev/stagehand/runbooks"
	"github.com/stagehand-dev/stagehand/runbooks/explain"
)

// explainParamValues are values for the required params of the built-in
// runbooks, by param name. A new runbook whose required param is not here
// fails TestExplainEveryBuiltinRunbook by name: add a value matching its
// pattern.
var explainParamValues = map[string]string{
	"image":   "registry.example.com/backstage-portal/backend:pr-42-1a2b3c4d-1763779501",
	"pr":      "42",
	"release": "1.45.0",
	// plugin-install
	"package":     "@backstage/plugin-notifications-backend",
	"version":     "0.6.9",
	"environment": "sandbox",
	// server
	"action": "restart",
}

// builtinRunbooks parses every runbook embedded in the binary, read from
// the embedded files at test time so a new one is covered without a list.
func builtinRunbooks(t *testing.T) []*runbooks.Runbook {
	t.Helper()
	cat, err := steps.Catalogue()
	if err != nil {
		t.Fatal(err)
	}
	sources, err := runbooks.BuiltinSources()
	if err != nil {
		t.Fatal(err)
	}
	if len(sources) == 0 {
		t.Fatal("no built-in runbooks embedded")
	}
	var out []*runbooks.Runbook
	for _, src := range sources {
		rb, err := runbooks.Parse(src.File, src.Data, cat)
		if err != nil {
			t.Fatalf("built-in %s: %v", src.File, err)
		}
		out = append(out, rb)
	}
	return out
}

// paramArgs gives --param flags for every required param of rb that has
// no default.
func paramArgs(t *testing.T, rb *runbooks.Runbook) []string {
	t.Helper()
	var args []string
	for _, name := range sortedParamNames(rb.Params) {
		p := rb.Params[name]
		if !p.Required || p.Default != nil {
			continue
		}
		v, ok := explainParamValues[name]
		if !ok {
			t.Fatalf("runbook %s: required param %q has no test value; add one matching its pattern %q to explainParamValues", rb.Name, name, p.Pattern)
		}
		args = append(args, "--param", name+"="+v)
	}
	return args
}

// writeNowhereConfig writes a worker config whose every outside system is
// unreachable (Temporal on a closed port, clusters from a kubeconfig that
// does not exist, a database on a closed port): explain must not need any.
func writeNowhereConfig(t *testing.T, dir string) string {
	t.Helper()
	kubeconfig := filepath.Join(dir, "no-such-kubeconfig")
	cfg := `temporal: {address: "127.0.0.1:1", namespace: default, taskQueue: stagehand}
environments:
  sandbox: {kubeconfig: "` + kubeconfig + `", context: nowhere, namespace: backstage-sb, deployment: backstage, container: backstage, url: "http://127.0.0.1:1/sandbox", approvers: [bob], database: portal, smokeChecks: [{preset: catalog}]}
  prod: {kubeconfig: "` + kubeconfig + `", context: nowhere, namespace: backstage-prod, deployment: backstage, container: backstage, url: "http://127.0.0.1:1/prod", approvers: [bob, carol], imagePolicy: backstage, database: portal}
databases:
  portal: {driver: postgres, host: 127.0.0.1, port: 1, user: backstage, passwordRef: env:STAGEHAND_TEST_NO_PASSWORD}
settings:
  git: {provider: git, repository: "https://127.0.0.1:1/platform/portal.git", targetBranch: main, tokenRef: env:GIT_TOKEN}
  upgrade: {imageRepository: "127.0.0.1:1/backstage-portal/backend", deploy: gitops}
  notify: {webhooks: [{urlRef: env:STAGEHAND_TEST_HOOK}]}
`
	path := filepath.Join(t.TempDir(), "worker.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// explainHarness is a harness whose Temporal dial fails the test.
func explainHarness(t *testing.T) *harness {
	t.Helper()
	h := newHarness(t)
	h.f.Dial = func(context.Context, client.Options) (Client, error) {
		t.Error("explain dialled Temporal")
		h.dialed++
		return h.client, nil
	}
	return h
}

// `stagehand explain` on every built-in runbook, with and without a worker
// config, prints every step and every onFailure step, succeeds quickly,
// and touches nothing: no Temporal dial, and no file appears in HOME,
// TMPDIR or the cache directory.
func TestExplainEveryBuiltinRunbook(t *testing.T) {
	empty := t.TempDir()
	t.Setenv("HOME", empty)
	t.Setenv("TMPDIR", empty)
	t.Setenv("XDG_CACHE_HOME", empty)
	t.Setenv("XDG_CONFIG_HOME", empty)
	cfg := writeNowhereConfig(t, empty)
	for _, rb := range builtinRunbooks(t) {
		ids := stepIDs(rb.Steps)
		failIDs := stepIDs(rb.OnFailure)
		for _, variant := range []struct {
			name  string
			extra []string
		}{{"no config", nil}, {"config", []string{"--config", cfg}}} {
			t.Run(rb.Name+"/"+variant.name, func(t *testing.T) {
				args := append(append([]string{"explain", rb.Name}, paramArgs(t, rb)...), variant.extra...)

				h := explainHarness(t)
				start := time.Now()
				if code := h.run(args...); code != ExitOK {
					t.Fatalf("exit %d; stderr:\n%s", code, h.errOut)
				}
				if d := time.Since(start); d > 5*time.Second {
					t.Errorf("explain took %s; it should only read files", d)
				}
				out := h.out.String()
				assertContains(t, out, "Runbook "+rb.Name, "Steps, in order:")
				for _, id := range ids {
					if !strings.Contains(out, ". "+id+"  ") {
						t.Errorf("text output lacks step %s", id)
					}
				}
				for _, id := range failIDs {
					if !strings.Contains(out, ". "+id+"  ") {
						t.Errorf("text output lacks onFailure step %s", id)
					}
				}
				if len(failIDs) > 0 && !strings.Contains(out, "On failure (") {
					t.Error("text output has no on-failure section")
				}

				h = explainHarness(t)
				if code := h.run(append(args, "-o", "json")...); code != ExitOK {
					t.Fatalf("json: exit %d; stderr:\n%s", code, h.errOut)
				}
				var plan explain.Plan
				if err := json.Unmarshal(h.out.Bytes(), &plan); err != nil {
					t.Fatalf("json output does not parse: %v\n%s", err, h.out)
				}
				if got := explain.StepIDs(plan.Steps); !slices.Equal(got, ids) {
					t.Errorf("json steps %v, want %v", got, ids)
				}
				if got := explain.StepIDs(plan.OnFailure); !slices.Equal(got, failIDs) && !(len(got) == 0 && len(failIDs) == 0) {
					t.Errorf("json onFailure %v, want %v", got, failIDs)
				}
				if variant.extra != nil && plan.Config != cfg {
					t.Errorf("plan.config %q, want %q", plan.Config, cfg)
				}
			})
		}
	}
	entries, err := os.ReadDir(empty)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 0 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("explain created files in HOME/TMPDIR: %v", names)
	}
}

// What explain renders: params and config values in place, step outputs
// and the run's id left as templates marked as known at run time, config
// references as placeholders without a config, and an `if` decided from
// the config.
func TestExplainRendersWhatIsKnown(t *testing.T) {
	cfg := writeNowhereConfig(t, t.TempDir())
	patch := []string{"explain", "patch", "--param", "image=" + explainParamValues["image"], "--param", "pr=42", "--requested-by", "dana"}
	cases := []struct {
		name   string
		args   []string
		want   []string
		absent []string
	}{
		{
			name: "with config",
			args: append(slices.Clone(patch), "--config", cfg),
			want: []string{
				"Runbook patch (builtin/patch.yaml), requested by dana",
				"Worker config: " + cfg,
				"namespace: backstage-sb",
				"image: " + explainParamValues["image"],
				"since: {{ .steps.sandbox_before.outputs.readAt }}  (known at run time)",
				"approvers: bob, carol",
				"9. merge  [approval gate]",
				"timeout: 72h0m0s (then the gate rejects)",
				"10. merge_pr  git.merge  [irreversible]",
				"prBranch: pr-42",
				"tokenRef: env:GIT_TOKEN",
				"if: true, runs ({{ if (index .environments .params.sandbox).smokeChecks }}true{{ end }})",
				"if: false, SKIPPED ({{ if (index .environments .params.production).smokeChecks }}true{{ end }})",
				"if: decided at run time: {{ eq .steps.merge_pr.state \"succeeded\" }}",
				"run: {{ .run.id }}  (known at run time)",
				"kubectl -n backstage-prod get deploy backstage -o wide",
			},
			absent: []string{"<from worker config"},
		},
		{
			name: "without config",
			args: patch,
			want: []string{
				"No worker config given",
				"namespace: <from worker config: environments.sandbox.namespace>",
				"provider: <from worker config: settings.git.provider>",
				"if: decided by the worker config: {{ if index .settings \"notify\" }}true{{ end }}",
				"(known at run time)",
			},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := explainHarness(t)
			if code := h.run(c.args...); code != ExitOK {
				t.Fatalf("exit %d: %s", code, h.errOut)
			}
			assertContains(t, h.out.String(), c.want...)
			for _, a := range c.absent {
				if strings.Contains(h.out.String(), a) {
					t.Errorf("output has %q:\n%s", a, h.out)
				}
			}
		})
	}
}

// Bad input fails as a start would: exit 2 with the workflow's error.
func TestExplainRejectsBadInput(t *testing.T) {
	cfg := writeNowhereConfig(t, t.TempDir())
	image := "image=" + explainParamValues["image"]
	cases := []struct {
		name string
		args []string
		want []string
	}{
		{"param pattern", []string{"explain", "upgrade", "--param", "release=latest"}, []string{`invalid params for runbook "upgrade"`, "release"}},
		{"param pattern with config", []string{"explain", "upgrade", "--param", "release=latest", "--config", cfg}, []string{`invalid params for runbook "upgrade"`, "release"}},
		{"param type", []string{"explain", "patch", "--param", image, "--param", "pr=forty-two"}, []string{"pr:"}},
		{"missing required", []string{"explain", "patch", "--param", image}, []string{"pr: required param missing"}},
		{"unknown param", []string{"explain", "patch", "--param", image, "--param", "pr=1", "--param", "colour=blue"}, []string{"colour: unknown param"}},
		{"unknown environment with config", []string{"explain", "patch", "--param", image, "--param", "pr=1", "--param", "sandbox=staging", "--config", cfg}, []string{"sandbox", "staging", "configured: prod, sandbox"}},
		{"unknown runbook", []string{"explain", "nope"}, []string{`unknown runbook "nope"`, "hello", "patch", "upgrade"}},
		{"unknown runbook with config", []string{"explain", "nope", "--config", cfg}, []string{`unknown runbook "nope"`, "patch"}},
		{"no requester", []string{"explain", "hello", "--param", image, "--requested-by", ""}, []string{"--requested-by"}},
		{"missing config file", []string{"explain", "hello", "--config", filepath.Join(t.TempDir(), "none.yaml")}, []string{"read config"}},
		{"bad output", []string{"explain", "hello", "-o", "yaml"}, []string{`invalid --output "yaml"`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := explainHarness(t)
			if code := h.run(c.args...); code != ExitUsage {
				t.Fatalf("exit %d, want %d; stdout:\n%s\nstderr:\n%s", code, ExitUsage, h.out, h.errOut)
			}
			assertContains(t, h.errOut.String(), c.want...)
			if h.out.Len() != 0 {
				t.Errorf("printed a plan for bad input:\n%s", h.out)
			}
		})
	}
}

// A config without a key a runbook reads fails as the run's resolve would.
func TestExplainMissingConfigKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "worker.yaml")
	if err := os.WriteFile(path, []byte("environments:\n  sandbox: {namespace: a, deployment: b}\n  prod: {namespace: a, deployment: b}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	h := explainHarness(t)
	if code := h.run("explain", "upgrade", "--param", "release=1.45.0", "--config", path); code != ExitUsage {
		t.Fatalf("exit %d: %s", code, h.errOut)
	}
	assertContains(t, h.errOut.String(), "this worker's config does not set", "upgrade")
}

// The runbooks directory of the config (or --runbooks-dir) is where
// explain finds runbooks beyond the built-in ones.
func TestExplainRunbookFromDir(t *testing.T) {
	dir := t.TempDir()
	src := "name: mine\nparams:\n  who: {type: string, default: world}\nsteps:\n  - id: greet\n    uses: log\n    with: {message: 'hello {{ .params.who }} from {{ .run.requestedBy }}'}\n"
	if err := os.WriteFile(filepath.Join(dir, "mine.yaml"), []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(t.TempDir(), "worker.yaml")
	if err := os.WriteFile(cfg, []byte("runbooksDir: "+dir+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"explain", "mine", "--runbooks-dir", dir, "--param", "who=you"},
		{"explain", "mine", "--config", cfg, "--param", "who=you"},
	} {
		h := explainHarness(t)
		if code := h.run(args...); code != ExitOK {
			t.Fatalf("%v: exit %d: %s", args, code, h.errOut)
		}
		assertContains(t, h.out.String(), "Runbook mine ("+filepath.Join(dir, "mine.yaml")+")", "message: hello you from alice")
	}
}

// `stagehand runbooks` lists every built-in runbook with its params and
// every step type; `runbooks NAME` shows one.
func TestRunbooksListsEverything(t *testing.T) {
	h := newHarness(t)
	if code := h.run("runbooks"); code != ExitOK {
		t.Fatalf("exit %d: %s", code, h.errOut)
	}
	out := h.out.String()
	for _, rb := range builtinRunbooks(t) {
		if !hasRow(out, rb.Name, "built-in") {
			t.Errorf("no row for runbook %s", rb.Name)
		}
		for name, p := range rb.Params {
			typ := string(p.Type)
			if typ == "" {
				typ = "string"
			}
			if !hasRow(out, rb.Name, name, typ) {
				t.Errorf("no param row %s %s %s", rb.Name, name, typ)
			}
		}
	}
	for _, sp := range steps.All() {
		if !hasRow(out, sp.Name) {
			t.Errorf("no row for step type %s", sp.Name)
		}
	}
	assertContains(t, out, "IRREVERSIBLE", "PATTERN / VALUES", "built-in")

	h = newHarness(t)
	if code := h.run("runbooks", "-o", "json"); code != ExitOK {
		t.Fatal(code, h.errOut)
	}
	var doc catalogueJSON
	if err := json.Unmarshal(h.out.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, rb := range doc.Runbooks {
		names = append(names, rb.Name)
	}
	for _, rb := range builtinRunbooks(t) {
		if !slices.Contains(names, rb.Name) {
			t.Errorf("json lacks runbook %s", rb.Name)
		}
	}
	if len(doc.StepTypes) != len(steps.All()) {
		t.Errorf("json lists %d step types, want %d", len(doc.StepTypes), len(steps.All()))
	}

	for _, c := range []struct{ name, want string }{
		{"patch", "What a run would do: stagehand explain patch --param image=... --param pr=..."},
		{"kube.setImage", "Irreversible"},
	} {
		h = newHarness(t)
		if code := h.run("runbooks", c.name); code != ExitOK {
			t.Fatal(code, h.errOut)
		}
		assertContains(t, h.out.String(), c.want)
	}
	h = newHarness(t)
	if code := h.run("runbooks", "nope"); code != ExitUsage {
		t.Fatal(code)
	}
	assertContains(t, h.errOut.String(), `no runbook or step type "nope"`, "patch")
}

// A runbooks directory with an override, a new runbook and a broken file:
// the good ones are listed (the override marked), the broken one reported
// with its file and line, and the command exits 2.
func TestRunbooksReportsBrokenFiles(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"hello.yaml":  "name: hello\nsteps:\n  - id: only\n    uses: log\n    with: {message: hi}\n",
		"extra.yaml":  "name: extra\nsteps:\n  - id: one\n    uses: log\n    with: {message: hi}\n",
		"broken.yaml": "name: broken\nsteps:\n  - id: one\n    uses: kube.nosuch\n",
		"notes.txt":   "not a runbook",
	}
	for name, src := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	h := newHarness(t)
	if code := h.run("runbooks", "--runbooks-dir", dir); code != ExitUsage {
		t.Fatalf("exit %d, want %d: %s", code, ExitUsage, h.errOut)
	}
	assertContains(t, h.out.String(), filepath.Join(dir, "hello.yaml")+" (overrides built-in)", filepath.Join(dir, "extra.yaml"), "upgrade")
	assertContains(t, h.errOut.String(), filepath.Join(dir, "broken.yaml")+":4:", "kube.nosuch", "1 runbook file in "+dir+" failed to load")

	h = newHarness(t)
	if code := h.run("runbooks", "--runbooks-dir", dir, "-o", "json"); code != ExitUsage {
		t.Fatalf("json: exit %d", code)
	}
	var doc catalogueJSON
	if err := json.Unmarshal(h.out.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Problems) == 0 || doc.Problems[0].File != filepath.Join(dir, "broken.yaml") || doc.Problems[0].Line != 4 {
		t.Errorf("problems %+v", doc.Problems)
	}
	for _, rb := range doc.Runbooks {
		if rb.Name == "hello" && (rb.Builtin || rb.Overrides != "builtin/hello.yaml") {
			t.Errorf("hello: %+v", rb)
		}
	}

	// explain refuses a directory the worker would not start with.
	h = explainHarness(t)
	if code := h.run("explain", "extra", "--runbooks-dir", dir); code != ExitUsage {
		t.Fatalf("explain: exit %d", code)
	}
	assertContains(t, h.errOut.String(), "broken.yaml:4:", "the worker would not start")
}

// Both commands appear in the top-level help.
func TestHelpListsExplainAndRunbooks(t *testing.T) {
	h := newHarness(t)
	if code := h.run("--help"); code != ExitOK {
		t.Fatal(code)
	}
	assertContains(t, h.out.String(), "explain ", "runbooks ", "stagehand explain patch")
	for _, cmd := range []string{"explain", "runbooks"} {
		h := newHarness(t)
		if code := h.run(cmd, "--help"); code != ExitOK {
			t.Fatal(code)
		}
		assertContains(t, h.out.String(), "--config", "--runbooks-dir", "--output")
	}
}

// hasRow reports whether a line of out starts with the given cells.
func hasRow(out string, cells ...string) bool {
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= len(cells) && slices.Equal(f[:len(cells)], cells) {
			return true
		}
	}
	return false
}
