package cli

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/stagehand-dev/stagehand/worker/config"
)

// The CLI reads the worker config with its own small decoder (worker/config
// links database drivers); what it gives templates must be what the
// worker gives them. Every plain field of config.Environment is set, so a
// field the worker adds to .environments shows up here as a difference.
func TestWorkerFileMatchesWorkerConfig(t *testing.T) {
	env := map[string]any{}
	et := reflect.TypeOf(config.Environment{})
	for i := 0; i < et.NumField(); i++ {
		fl := et.Field(i)
		key, _, _ := strings.Cut(fl.Tag.Get("yaml"), ",")
		if key == "" || key == "-" {
			continue
		}
		switch {
		case fl.Type.Kind() == reflect.String:
			env[key] = "v-" + key
		case fl.Type.Kind() == reflect.Bool:
			env[key] = true
		case fl.Type == reflect.TypeOf([]string{}):
			env[key] = []string{"a-" + key, "b-" + key}
		case fl.Type == reflect.TypeOf([]map[string]any{}):
			env[key] = []map[string]any{{"preset": "catalog"}, {"path": "/x", "expectStatus": 200}}
		case fl.Type == reflect.TypeOf(map[string]any{}):
			env[key] = map[string]any{"team": "platform", "namespace": "shadowed", "n": 3}
		}
	}
	doc := map[string]any{
		"temporal":    map[string]any{"address": "127.0.0.1:1"},
		"runbooksDir": "~/runbooks",
		"environments": map[string]any{"sandbox": env, "prod": map[string]any{"namespace": "p"},
			"portal": map[string]any{"kind": "server", "url": "http://127.0.0.1:7007", "server": map[string]any{
				"dir": "/srv/portal", "command": []string{"node", "index.js"}, "env": map[string]any{"PGPASSWORD": "env:PG"},
				"healthURL": "http://127.0.0.1:7007/.backstage/health/v1/readiness", "logFile": "/var/log/portal.log", "stopTimeout": "10s"}}},
		"settings":  map[string]any{"git": map[string]any{"provider": "git", "tokenRef": "env:T"}, "list": []any{1, "a"}},
		"approvals": map[string]any{"identities": map[string]any{"CN=a": "alice"}, "requireIdentity": true},
	}
	data, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "worker.yaml")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatalf("worker config: %v\n%s", err, data)
	}
	h := newHarness(t)
	view, err := loadWorkerView(h.f, path, "")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := view.File.TemplateData(), cfg.TemplateData(); !reflect.DeepEqual(got, want) {
		t.Errorf(".environments differ:\n cli:    %#v\n worker: %#v", got, want)
	}
	if got, want := view.File.SettingsData(), cfg.SettingsData(); !reflect.DeepEqual(got, want) {
		t.Errorf(".settings differ:\n cli:    %#v\n worker: %#v", got, want)
	}
	if !reflect.DeepEqual(view.File.Approvals, cfg.Approvals) {
		t.Errorf("approvals differ: %+v vs %+v", view.File.Approvals, cfg.Approvals)
	}
	if want := cfg.ResolvePath(cfg.RunbooksDir); view.RunbooksDir != want {
		t.Errorf("runbooks dir %q, want %q", view.RunbooksDir, want)
	}

	// The environment and --runbooks-dir override the file, as for the worker.
	h.f.Getenv = func(k string) string {
		return map[string]string{"STAGEHAND_RUNBOOKS_DIR": "/from/env", "STAGEHAND_CONFIG": path}[k]
	}
	if view, err = loadWorkerView(h.f, "", ""); err != nil || view.RunbooksDir != "/from/env" || view.ConfigFile != path {
		t.Errorf("from env: %+v, %v", view, err)
	}
	if view, err = loadWorkerView(h.f, "", "/from/flag"); err != nil || view.RunbooksDir != "/from/flag" {
		t.Errorf("from flag: %+v, %v", view, err)
	}
}
