package cli

import (
	"errors"
	"io"
	"os"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/stagehand-dev/stagehand/runbooks"
)

// parseParamFlags turns repeated --param KEY=VALUE flags into a map. Only
// the first '=' separates key from value, so values may contain '='. Values
// stay strings: the workflow converts them to the runbook's declared types.
func parseParamFlags(flags []string) (map[string]any, error) {
	out := map[string]any{}
	for _, kv := range flags {
		key, value, ok := strings.Cut(kv, "=")
		key = strings.TrimSpace(key)
		if !ok || key == "" || strings.ContainsAny(key, " \t") {
			return nil, usageError("invalid --param %q: want KEY=VALUE, e.g. --param image=registry/backend:pr-42", kv)
		}
		out[key] = value
	}
	return out, nil
}

// readParamsFile reads a YAML or JSON mapping of parameter values ("-"
// reads standard input). YAML is a superset of JSON, so one decoder does both;
// numbers and booleans keep their types.
func readParamsFile(path string, stdin io.Reader) (map[string]any, error) {
	var data []byte
	var err error
	if path == "-" {
		data, err = io.ReadAll(stdin)
	} else {
		data, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, usageError("read --params-file: %v", err)
	}
	var m map[string]any
	if err := yaml.Unmarshal(data, &m); err != nil {
		return nil, usageError("--params-file %s: want a YAML or JSON mapping of name: value: %v", path, err)
	}
	if m == nil {
		m = map[string]any{}
	}
	return m, nil
}

// mergeParams overlays flag values on file values: flags win, so a shared
// params file can be tweaked per run.
func mergeParams(file, flags map[string]any) map[string]any {
	out := make(map[string]any, len(file)+len(flags))
	for k, v := range file {
		out[k] = v
	}
	for k, v := range flags {
		out[k] = v
	}
	return out
}

// checkParams checks params against a local runbook's declarations
// (names, required, types, enums, patterns, secret references) before
// anything is started. The values sent stay as given: the workflow does the
// same conversion again when it runs.
func checkParams(rb *runbooks.Runbook, params map[string]any) error {
	if _, err := runbooks.ResolveParams(rb, params); err != nil {
		var pe *runbooks.ParamError
		if errors.As(err, &pe) {
			return usageError("runbook %s: invalid params: %s (set them with --param NAME=VALUE or --params-file)", rb.Name, strings.Join(pe.Problems, "; "))
		}
		return usageError("runbook %s: %v", rb.Name, err)
	}
	return nil
}
