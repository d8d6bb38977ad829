package portal

import (
	"errors"
	"os"
	"strings"
	"testing"
)

func stockIndex(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("testdata/index.ts")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestEditBackendIndex(t *testing.T) {
	stock := stockIndex(t)
	lines := strings.Count(stock, "\n")
	cases := []struct {
		name, src, spec, want string
		added                 bool
		line                  int
	}{
		{
			name: "stock index.ts: above backend.start()", src: stock, spec: "@backstage/plugin-todo-backend",
			want:  strings.Replace(stock, "\nbackend.start();\n", "\nbackend.add(import('@backstage/plugin-todo-backend'));\nbackend.start();\n", 1),
			added: true, line: lines,
		},
		{
			name: "subpath", src: stock, spec: "@backstage-community/plugin-todo-backend/alpha",
			want:  strings.Replace(stock, "\nbackend.start();\n", "\nbackend.add(import('@backstage-community/plugin-todo-backend/alpha'));\nbackend.start();\n", 1),
			added: true, line: lines,
		},
		{name: "present on one line", src: stock, spec: "@backstage/plugin-kubernetes-backend", want: stock, line: 53},
		{name: "present across lines", src: stock, spec: "@backstage/plugin-catalog-backend-module-scaffolder-entity-model", want: stock, line: 27},
		{
			name: "present in double quotes with spaces",
			src:  "const backend = createBackend();\nbackend . add( import( \"x-backend\" ) );\nbackend.start();\n", spec: "x-backend",
			want: "const backend = createBackend();\nbackend . add( import( \"x-backend\" ) );\nbackend.start();\n", line: 2,
		},
		{
			name: "a commented-out add does not count; the file's quotes are used",
			src:  "const backend = createBackend();\nbackend.add(import(\"a\"));\n// backend.add(import('x-backend'));\n/* backend.add(import('x-backend')); */\nbackend.start();\n", spec: "x-backend",
			want:  "const backend = createBackend();\nbackend.add(import(\"a\"));\nbackend.add(import(\"x-backend\"));\n// backend.add(import('x-backend'));\n/* backend.add(import('x-backend')); */\nbackend.start();\n",
			added: true, line: 3,
		},
		{
			name: "comments on start() stay on it",
			src:  "const backend = createBackend();\n\n// go\n// now\nbackend.start();\n", spec: "x",
			want:  "const backend = createBackend();\n\nbackend.add(import('x'));\n// go\n// now\nbackend.start();\n",
			added: true, line: 3,
		},
		{
			name: "another variable name, indented in a function, CRLF",
			src:  "async function main() {\r\n  const app = createBackend();\r\n  app.start();\r\n}\r\n", spec: "x",
			want:  "async function main() {\r\n  const app = createBackend();\r\n  app.add(import('x'));\r\n  app.start();\r\n}\r\n",
			added: true, line: 3,
		},
		{
			name: "a string with // in it is not a comment",
			src:  "const backend = createBackend();\nconst u = 'http://x'; backend.add(import('y'));\nbackend.start();\n", spec: "y",
			want: "const backend = createBackend();\nconst u = 'http://x'; backend.add(import('y'));\nbackend.start();\n", line: 2,
		},
		{
			name: "a prefix package is another package",
			src:  "const backend = createBackend();\nbackend.add(import('x-backend-module-y'));\nbackend.start();\n", spec: "x-backend",
			want:  "const backend = createBackend();\nbackend.add(import('x-backend-module-y'));\nbackend.add(import('x-backend'));\nbackend.start();\n",
			added: true, line: 3,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res, err := EditBackendIndex([]byte(c.src), c.spec)
			if err != nil {
				t.Fatal(err)
			}
			if string(res.Out) != c.want || res.Added != c.added || res.Line != c.line {
				t.Errorf("added %v line %d, got:\n%s\nwant added %v line %d:\n%s", res.Added, res.Line, res.Out, c.added, c.line, c.want)
			}
			if res.Added {
				again, err := EditBackendIndex(res.Out, c.spec)
				if err != nil || again.Added || string(again.Out) != string(res.Out) || again.Line != res.Line {
					t.Errorf("second edit: added %v line %d err %v", again.Added, again.Line, err)
				}
			}
		})
	}
}

func TestEditBackendIndexRefusesOtherShapes(t *testing.T) {
	cases := []struct{ name, src, want string }{
		{"legacy backend", "import { createServiceBuilder } from '@backstage/backend-common';\nasync function main() {}\nmain();\n", "expected exactly one createBackend( call (the new backend system's index.ts), found 0"},
		{"two backends", "const a = createBackend();\nconst b = createBackend();\na.start();\n", "found 2"},
		{"createBackend only in a comment", "// const backend = createBackend();\nbackend.start();\n", "found 0"},
		{"not assigned", "createBackend().start();\n", "expected createBackend() assigned to a variable"},
		{"no start", "const backend = createBackend();\nbackend.add(import('a'));\n", "expected exactly one backend.start() statement, found 0"},
		{"two starts", "const backend = createBackend();\nbackend.start();\nbackend.start();\n", "found 2"},
		{"start in a chain", "const backend = createBackend();\nbackend.start().catch(() => {});\n", "expected backend.start(); on a line of its own, found \"backend.start().catch(() => {});\""},
		{"start before create", "backend.start();\nconst backend = createBackend();\n", "comes before createBackend()"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := EditBackendIndex([]byte(c.src), "x")
			var se *ShapeError
			if !errors.As(err, &se) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v; want a ShapeError saying %q", err, c.want)
			}
		})
	}
}

func TestValidatePluginSpec(t *testing.T) {
	for _, ok := range [][2]string{{"@backstage/plugin-todo-backend", ""}, {"x", ""}, {"@a/b", "alpha"}, {"a.b_c-d", "x/y.z"}} {
		if _, err := ValidatePluginSpec(ok[0], ok[1]); err != nil {
			t.Errorf("%v: %v", ok, err)
		}
	}
	for _, bad := range [][2]string{{"", ""}, {"Upper", ""}, {"@scope", ""}, {"a b", ""}, {"a'", ""}, {"a');evil('", ""}, {strings.Repeat("a", 215), ""},
		{"a", "../x"}, {"a", "/x"}, {"a", "x/"}, {"a", "x//y"}, {"a", "x/./y"}, {"a", "x'"}} {
		if _, err := ValidatePluginSpec(bad[0], bad[1]); err == nil {
			t.Errorf("%q %q accepted", bad[0], bad[1])
		}
	}
}
