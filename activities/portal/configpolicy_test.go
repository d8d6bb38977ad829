package portal

import (
	"strings"
	"testing"
)

// TestConfigPolicy: what a run may write into app-config. The set comes
// from whoever can start runs, so keys that govern the backend's security,
// database or credentials, $-includes and ${...} substitutions are refused.
func TestConfigPolicy(t *testing.T) {
	for _, tc := range []struct {
		name    string
		set     map[string]any
		allowed []string
		want    string // "" = allowed
	}{
		{"plugin key", map[string]any{"search.maxTermLength": 5}, nil, ""},
		{"nested value", map[string]any{"search": map[string]any{"pg": map[string]any{"highlightOptions": map[string]any{"useHighlight": true}}}}, nil, ""},
		{"database host", map[string]any{"backend.database.connection.host": "evil.example"}, nil, "under backend"},
		{"auth off", map[string]any{"backend.auth.dangerouslyDisableDefaultAuthPolicy": true}, nil, "under backend"},
		{"dangerously anywhere", map[string]any{"search.dangerouslyAllowAll": true}, nil, "dangerously"},
		{"dangerously in a value", map[string]any{"search": map[string]any{"x": map[string]any{"dangerouslyOpen": true}}}, nil, "dangerously"},
		{"$file", map[string]any{"app.title": map[string]any{"$file": "/home/stagehand/.kube/config"}}, nil, "keys starting with $"},
		{"$env key part", map[string]any{"search.$env": "X"}, nil, "keys starting with $"},
		{"substitution", map[string]any{"app.title": "${POSTGRES_PASSWORD}"}, nil, "${...}"},
		{"substitution in a list", map[string]any{"search.terms": []any{"a", "${TOKEN}"}}, nil, "${...}"},
		{"integrations", map[string]any{"integrations.github": []any{map[string]any{"host": "x"}}}, nil, "under integrations"},
		{"allowlist refuses others", map[string]any{"catalog.rules": []any{}}, []string{"search"}, "not one the worker allows"},
		{"allowlist opens a denied subtree", map[string]any{"backend.listen.port": 7007}, []string{"backend.listen"}, ""},
		{"allowlist of a plugin does not open backend", map[string]any{"backend.listen.port": 7007}, []string{"search", "backend.listen.host"}, "not one the worker allows"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkConfigPolicy(tc.set, tc.allowed)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && err == nil:
				t.Fatalf("allowed, want %q", tc.want)
			case tc.want != "" && !strings.Contains(err.Error(), tc.want):
				t.Fatalf("error %q, want %q", err, tc.want)
			}
		})
	}
}
