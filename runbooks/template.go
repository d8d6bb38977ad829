package runbooks

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"text/template"
	"text/template/parse"
	"time"
)

// Template roots a runbook may reference.
const (
	RootParams = "params"
	RootSteps  = "steps"
	// RootRun describes the run itself; its keys are RunKeys.
	RootRun        = "run"
	RootFailedStep = "failedStep"
	RootError      = "error"
	// RootEnvironments holds the worker's environment settings (cluster,
	// namespace, deployment, url, ...), e.g. .environments.sandbox.url.
	RootEnvironments = "environments"
	// RootSettings holds the worker's team-wide settings, e.g. .settings.git.remote.
	RootSettings = "settings"
	// RootGate describes the open gate, in a gate's reminder step.
	RootGate = "gate"
)

// RunKeys are the keys of .run: id (the workflow id people type), runId
// (Temporal's run id), runbook, requestedBy, startedAt (the workflow's
// start, RFC 3339 in UTC) and startedUnix (the same in whole seconds, for
// tags such as upgrade-<release>-<sha8>-<unix>).
var RunKeys = []string{"id", "runId", "runbook", "requestedBy", "startedAt", "startedUnix"}

var knownRoots = map[string]bool{RootParams: true, RootSteps: true, RootRun: true, RootFailedStep: true, RootError: true, RootEnvironments: true, RootGate: true, RootSettings: true}

// captureFunc is the hidden function used to return a single-action
// template's value with its type intact (see RenderValue).
const captureFunc = "__stagehandCapture"

// funcs are deliberately pure: templates are rendered inside workflow code,
// which must be deterministic on replay, so nothing here reads the clock,
// randomness or the environment.
func funcs(capture func(any) string) template.FuncMap {
	return template.FuncMap{
		captureFunc: capture,
		"default": func(def, v any) any {
			if v == nil || reflect.ValueOf(v).IsZero() {
				return def
			}
			return v
		},
		"lower":     strings.ToLower,
		"upper":     strings.ToUpper,
		"trim":      strings.TrimSpace,
		"replace":   func(old, new, s string) string { return strings.ReplaceAll(s, old, new) },
		"contains":  func(sub, s string) bool { return strings.Contains(s, sub) },
		"hasPrefix": func(prefix, s string) bool { return strings.HasPrefix(s, prefix) },
		"hasSuffix": func(suffix, s string) bool { return strings.HasSuffix(s, suffix) },
		// count is len that takes nil (a list output that is empty may
		// arrive as null) as 0 instead of failing the template.
		"count": func(v any) int {
			switch rv := reflect.ValueOf(v); rv.Kind() {
			case reflect.Slice, reflect.Map, reflect.String, reflect.Array:
				return rv.Len()
			}
			return 0
		},
		"join": func(sep string, v any) string {
			if v == nil {
				return ""
			}
			rv := reflect.ValueOf(v)
			if rv.Kind() != reflect.Slice {
				return fmt.Sprint(v)
			}
			parts := make([]string, rv.Len())
			for i := range parts {
				parts[i] = fmt.Sprint(rv.Index(i).Interface())
			}
			return strings.Join(parts, sep)
		},
		// short truncates to n characters, e.g. a commit SHA to 8.
		"short": func(n int, s string) string {
			if len(s) <= n {
				return s
			}
			return s[:n]
		},
		"toJson": func(v any) (string, error) {
			b, err := json.Marshal(v)
			return string(b), err
		},
		// fromJson turns a JSON text (a param holding an object, such as
		// plugin-install's config) into a value a step argument of type
		// map or list can take.
		"fromJson": func(s string) (any, error) {
			var v any
			if err := json.Unmarshal([]byte(s), &v); err != nil {
				return nil, fmt.Errorf("fromJson: %w", err)
			}
			return v, nil
		},
		// seconds is a duration ("90s", "2h0m0s", a duration param) in
		// seconds, to compare with a bound: gt (seconds .params.t) 7200.0.
		"seconds": func(d string) (float64, error) {
			v, err := time.ParseDuration(d)
			if err != nil {
				return 0, fmt.Errorf("seconds: %w", err)
			}
			return v.Seconds(), nil
		},
		// fail stops a render with the message, for a preflight step that
		// must say which setting a run lacks: {{ if not .x }}{{ fail "..." }}{{ end }}.
		"fail": func(msg string) (string, error) { return "", errors.New(msg) },
		// dict builds a map from key/value pairs; with none it is the empty
		// map, so `index (index .settings "plugin" | default dict) "x"`
		// reads an optional settings block without failing.
		"dict": func(kv ...any) (map[string]any, error) {
			if len(kv)%2 != 0 {
				return nil, fmt.Errorf("dict: want key/value pairs, got %d arguments", len(kv))
			}
			m := make(map[string]any, len(kv)/2)
			for i := 0; i < len(kv); i += 2 {
				k, ok := kv[i].(string)
				if !ok {
					return nil, fmt.Errorf("dict: key %v is not a string", kv[i])
				}
				m[k] = kv[i+1]
			}
			return m, nil
		},
		// last is a list's last element (nil for an empty list), e.g. the
		// name of a scoped npm package: last (split "/" .params.package).
		"last": func(v any) any {
			rv := reflect.ValueOf(v)
			if (rv.Kind() != reflect.Slice && rv.Kind() != reflect.Array) || rv.Len() == 0 {
				return nil
			}
			return rv.Index(rv.Len() - 1).Interface()
		},
		"quote": func(s string) string { return fmt.Sprintf("%q", s) },
		"split": func(sep, s string) []string { return strings.Split(s, sep) },
		// imageTag is the tag of an image reference ("" without one), e.g.
		// pr-42-0123abcd-1763700000 for the conventions' PR images.
		"imageTag": func(image string) string {
			image, _, _ = strings.Cut(image, "@")
			slash, colon := strings.LastIndex(image, "/"), strings.LastIndex(image, ":")
			if colon <= slash {
				return ""
			}
			return image[colon+1:]
		},
	}
}

func newTemplate(name string, capture func(any) string) *template.Template {
	return template.New(name).Option("missingkey=error").Funcs(funcs(capture))
}

// isTemplate reports whether a string contains template actions at all;
// plain strings are passed through untouched.
func isTemplate(s string) bool { return strings.Contains(s, "{{") }

// singleAction returns the pipeline text when s is exactly one action
// ("{{ .params.replicas }}"), so its value keeps its type (an int stays an
// int) instead of becoming a string.
func singleAction(s string) (string, bool) {
	t := strings.TrimSpace(s)
	if !strings.HasPrefix(t, "{{") || !strings.HasSuffix(t, "}}") {
		return "", false
	}
	inner := t[2 : len(t)-2]
	if strings.Contains(inner, "{{") || strings.Contains(inner, "}}") {
		return "", false
	}
	inner = strings.TrimPrefix(strings.TrimSuffix(inner, "-"), "-")
	inner = strings.TrimSpace(inner)
	if inner == "" || strings.HasPrefix(inner, "/*") || strings.Contains(inner, ":=") ||
		strings.HasPrefix(inner, "if ") || strings.HasPrefix(inner, "range ") || strings.HasPrefix(inner, "with ") ||
		strings.HasPrefix(inner, "end") || strings.HasPrefix(inner, "else") || strings.HasPrefix(inner, "define ") ||
		strings.HasPrefix(inner, "template ") || strings.HasPrefix(inner, "block ") {
		return "", false
	}
	return inner, true
}

// RenderString renders one template string against data.
func RenderString(text string, data map[string]any) (string, error) {
	if !isTemplate(text) {
		return text, nil
	}
	tmpl, err := newTemplate("t", func(any) string { return "" }).Parse(text)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	if err := tmpl.Execute(&b, data); err != nil {
		return "", cleanExecError(err)
	}
	return b.String(), nil
}

// RenderValue renders every string inside v (maps and lists recursively).
// A string that is one action yields the action's value with its type.
func RenderValue(v any, data map[string]any) (any, error) {
	switch x := v.(type) {
	case string:
		if !isTemplate(x) {
			return x, nil
		}
		if inner, ok := singleAction(x); ok {
			var captured any
			capture := func(v any) string { captured = v; return "" }
			tmpl, err := newTemplate("t", capture).Parse("{{ " + captureFunc + " (" + inner + ") }}")
			if err == nil {
				if err := tmpl.Execute(&strings.Builder{}, data); err != nil {
					return nil, cleanExecError(err)
				}
				return captured, nil
			}
		}
		return RenderString(x, data)
	case map[string]any:
		out := make(map[string]any, len(x))
		// Sorted keys: rendering runs in workflow code, and which error is
		// reported first must not depend on map iteration order.
		for _, k := range sortedKeys(x) {
			val := x[k]
			r, err := RenderValue(val, data)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", k, err)
			}
			out[k] = r
		}
		return out, nil
	case []any:
		out := make([]any, len(x))
		for i, val := range x {
			r, err := RenderValue(val, data)
			if err != nil {
				return nil, fmt.Errorf("[%d]: %w", i, err)
			}
			out[i] = r
		}
		return out, nil
	default:
		return v, nil
	}
}

// RenderCondition renders an `if` and interprets it as a boolean: empty,
// "false", "0", "no" and "<no value>" are false; anything else is true.
func RenderCondition(text string, data map[string]any) (bool, error) {
	s, err := RenderString(text, data)
	if err != nil {
		return false, err
	}
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "false", "0", "no", "<no value>":
		return false, nil
	}
	return true, nil
}

func cleanExecError(err error) error {
	msg := err.Error()
	// "template: t:1:3: executing \"t\" at <.params.x>: map has no entry for key \"x\""
	if i := strings.Index(msg, "executing \"t\" at "); i >= 0 {
		msg = msg[i+len("executing \"t\" at "):]
	}
	msg = strings.ReplaceAll(msg, captureFunc+" ", "")
	return fmt.Errorf("template: %s", msg)
}

// templateRefs parses a template and returns the field chains it reads from
// the root data (e.g. ["params","image"], ["steps","build","outputs","tag"]).
// References inside range/with bodies are relative to a new dot and skipped.
func templateRefs(text string) ([][]string, error) {
	tmpl, err := newTemplate("t", func(any) string { return "" }).Parse(text)
	if err != nil {
		return nil, err
	}
	var refs [][]string
	walkTemplate(tmpl.Tree.Root, func(n parse.Node) {
		switch x := n.(type) {
		case *parse.FieldNode:
			refs = append(refs, x.Ident)
		case *parse.VariableNode:
			if len(x.Ident) > 1 && x.Ident[0] == "$" {
				refs = append(refs, x.Ident[1:])
			}
		}
	})
	return refs, nil
}

// walkTemplate calls leaf for every field, variable and chain node a
// template reads at its top level (a chain after the node it starts from).
// Bodies of range and with are not entered: a new dot there makes their
// references relative to something else.
func walkTemplate(n parse.Node, leaf func(parse.Node)) {
	walkPipe := func(p *parse.PipeNode) {
		if p != nil {
			for _, c := range p.Cmds {
				walkTemplate(c, leaf)
			}
		}
	}
	switch x := n.(type) {
	case *parse.ListNode:
		if x != nil {
			for _, c := range x.Nodes {
				walkTemplate(c, leaf)
			}
		}
	case *parse.ActionNode:
		walkPipe(x.Pipe)
	case *parse.CommandNode:
		for _, a := range x.Args {
			walkTemplate(a, leaf)
		}
	case *parse.PipeNode:
		walkPipe(x)
	case *parse.FieldNode, *parse.VariableNode:
		leaf(x)
	case *parse.ChainNode:
		walkTemplate(x.Node, leaf)
		leaf(x)
	case *parse.IfNode:
		walkPipe(x.Pipe)
		walkTemplate(x.List, leaf)
		if x.ElseList != nil {
			walkTemplate(x.ElseList, leaf)
		}
	case *parse.RangeNode:
		walkPipe(x.Pipe)
	case *parse.WithNode:
		walkPipe(x.Pipe)
	}
}
