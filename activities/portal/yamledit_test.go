package portal

import (
	"errors"
	"os"
	"strings"
	"testing"
)

// appConfig is a realistic app-config.yaml: comments above and inline,
// blank lines, both quote styles, ${VAR} substitutions, flow lists.
func appConfig(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("testdata/app-config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// replace returns src with old (which must occur once) replaced by new:
// the expected file, byte for byte, is the original with only that change.
func replace(t *testing.T, src, old, new string) string {
	t.Helper()
	if n := strings.Count(src, old); n != 1 {
		t.Fatalf("%q occurs %d times in the fixture", old, n)
	}
	return strings.Replace(src, old, new, 1)
}

func TestEditConfigKeepsEverythingElse(t *testing.T) {
	src := appConfig(t)
	cases := []struct {
		name      string
		set       map[string]any
		want      string
		changed   []string
		unchanged []string
	}{
		{
			name:    "scalar with inline comment",
			set:     map[string]any{"app.title": "Stagehand Portal"},
			want:    replace(t, src, "  title: Scaffolded Backstage App   # inline\n", "  title: Stagehand Portal   # inline\n"),
			changed: []string{"app.title"},
		},
		{
			name:    "new keys in an existing mapping, after its last entry and before its trailing comments",
			set:     map[string]any{"backend.listen.port": 8000.0, "backend.listen.host": "0.0.0.0"},
			want:    replace(t, src, "    port: 7007\n    # Uncomment", "    port: 8000\n    host: 0.0.0.0\n    # Uncomment"),
			changed: []string{"backend.listen.host", "backend.listen.port"},
		},
		{
			name:    "quoting kept",
			set:     map[string]any{"organization.name": "Acme", "backend.database.connection.password": "${PG_PASSWORD}"},
			want:    replace(t, replace(t, src, `  name: "My Company"`, `  name: "Acme"`), "password: '${POSTGRES_PASSWORD}'", "password: '${PG_PASSWORD}'"),
			changed: []string{"backend.database.connection.password", "organization.name"},
		},
		{
			name: "new top-level section with a substitution and a list",
			set: map[string]any{
				"todo.secret":  "${TODO_SECRET}",
				"todo.origins": []any{"http://localhost:3000", "a: b"},
			},
			want:    src + "todo:\n  origins:\n    - http://localhost:3000\n    - \"a: b\"\n  secret: ${TODO_SECRET}\n",
			changed: []string{"todo.origins", "todo.secret"},
		},
		{
			name:      "same value: unchanged, byte-identical",
			set:       map[string]any{"backend.listen.port": 7007.0, "backend.database.connection.host": "${POSTGRES_HOST}", "backend.cors.credentials": true},
			want:      src,
			changed:   []string{},
			unchanged: []string{"backend.cors.credentials", "backend.database.connection.host", "backend.listen.port"},
		},
		{
			name:    "a map replaces a flow list, comment after it kept",
			set:     map[string]any{"backend.csp": map[string]any{"img-src": []any{"'self'", "data:"}}},
			want:    replace(t, src, "    connect-src: [\"'self'\", 'http:', 'https:']\n", "    img-src:\n      - \"'self'\"\n      - \"data:\"\n"),
			changed: []string{"backend.csp"},
		},
		{
			name: "a list of maps replaces a list",
			set:  map[string]any{"integrations.github": []any{map[string]any{"host": "ghe.example.com", "token": "${GHE_TOKEN}"}}},
			want: replace(t, src, "    - host: github.com\n      token: ${GITHUB_TOKEN}\n",
				"    - host: ghe.example.com\n      token: ${GHE_TOKEN}\n"),
			changed: []string{"integrations.github"},
		},
		{
			name:    "numbers, booleans, null and strings that look like them",
			set:     map[string]any{"app.x.n": 1.5, "app.x.b": false, "app.x.z": nil, "app.x.s": "true", "app.x.i": "7007"},
			want:    replace(t, src, "  baseUrl: http://localhost:3000\n", "  baseUrl: http://localhost:3000\n  x:\n    b: false\n    i: \"7007\"\n    n: 1.5\n    s: \"true\"\n    z: null\n"),
			changed: []string{"app.x.b", "app.x.i", "app.x.n", "app.x.s", "app.x.z"},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res, err := EditConfig([]byte(src), c.set)
			if err != nil {
				t.Fatal(err)
			}
			if string(res.Out) != c.want {
				t.Errorf("got:\n%s\nwant:\n%s", res.Out, c.want)
			}
			if strings.Join(res.Changed, ",") != strings.Join(c.changed, ",") || strings.Join(res.Unchanged, ",") != strings.Join(c.unchanged, ",") {
				t.Errorf("changed %v unchanged %v; want %v and %v", res.Changed, res.Unchanged, c.changed, c.unchanged)
			}
			// Setting it again is a no-op that leaves the bytes alone.
			again, err := EditConfig(res.Out, c.set)
			if err != nil {
				t.Fatal(err)
			}
			if len(again.Changed) != 0 || string(again.Out) != string(res.Out) {
				t.Errorf("second edit changed %v", again.Changed)
			}
		})
	}
}

func TestEditConfigSmallFiles(t *testing.T) {
	cases := []struct{ name, src, want string }{
		{"empty file", "", "a:\n  b: 1\n"},
		{"comments only", "# nothing yet\n", "# nothing yet\na:\n  b: 1\n"},
		{"null parent", "a:\n# c\nz: 2\n", "a:\n  b: 1\n# c\nz: 2\n"},
		{"tilde parent with comment", "a: ~ # later\n", "a: # later\n  b: 1\n"},
		{"empty map parent", "a: {}\n", "a:\n  b: 1\n"},
		{"crlf", "x: 1\r\na:\r\n  c: 2\r\n", "x: 1\r\na:\r\n  c: 2\r\n  b: 1\r\n"},
		{"four-space indent", "a:\n    c: 2\nd:\n    e: 3\n", "a:\n    c: 2\n    b: 1\nd:\n    e: 3\n"},
		{"no final newline", "z: 1", "z: 1\na:\n  b: 1\n"},
		{"block scalar replaced", "a:\n  b: |\n    line\n    # not a comment\n  c: 3\n", "a:\n  b: 1\n  c: 3\n"},
		{"multi-line flow replaced", "a:\n  b: [1,\n    2]\n  c: 3\n", "a:\n  b: 1\n  c: 3\n"},
		{"alias value replaced", "x: &v 5\na:\n  b: *v\n", "x: &v 5\na:\n  b: 1\n"},
		{"document start", "---\na:\n  c: 2\n", "---\na:\n  c: 2\n  b: 1\n"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res, err := EditConfig([]byte(c.src), map[string]any{"a.b": 1.0})
			if err != nil {
				t.Fatal(err)
			}
			if string(res.Out) != c.want {
				t.Errorf("got %q, want %q", res.Out, c.want)
			}
		})
	}
}

func TestEditConfigRefuses(t *testing.T) {
	src := appConfig(t)
	deep := any("x")
	for range MaxValueDepth + 1 {
		deep = []any{deep}
	}
	many := map[string]any{}
	for i := range MaxSetKeys + 1 {
		many["k"+strings.Repeat("x", i)] = 1
	}
	cases := []struct {
		name  string
		src   string
		set   map[string]any
		shape bool // PortalFileShape rather than an argument error
		want  string
	}{
		{"parent is a scalar", src, map[string]any{"app.title.x": 1}, true, "app.title is a scalar, not a mapping, so app.title.x cannot be set inside it"},
		{"parent is a list", src, map[string]any{"integrations.github.token": "x"}, true, "integrations.github is a list, not a mapping"},
		{"flow mapping parent", "a: {b: 1}\n", map[string]any{"a.c": 1}, true, "a is a flow mapping"},
		{"anchored mapping", "a: &base\n  b: 1\nc: *base\n", map[string]any{"a.b": 2}, true, "a carries a YAML anchor"},
		{"two documents", "a: 1\n---\nb: 2\n", map[string]any{"a": 2}, true, "has 2 YAML documents"},
		{"top-level list", "- a\n- b\n", map[string]any{"a": 2}, true, "is not a mapping of keys at the top (it is a list)"},
		{"not YAML", "a: [1\n", map[string]any{"a": 2}, true, "not valid YAML"},
		{"nothing to set", src, map[string]any{}, false, "set is empty"},
		{"too many keys", src, many, false, "at most 64"},
		{"too deep", src, map[string]any{"a": deep}, false, "nested 9 deep; at most 8"},
		{"too big", src, map[string]any{"a": strings.Repeat("x", MaxValueBytes)}, false, "at most 65536"},
		{"overlapping keys", src, map[string]any{"a.b": 1, "a.b.c": 2}, false, "set names both a.b and a.b.c"},
		{"empty part", src, map[string]any{"a..b": 1}, false, "is not a dotted key path"},
		{"comment key", src, map[string]any{"#a": 1}, false, "is not a dotted key path"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := EditConfig([]byte(c.src), c.set)
			var se *ShapeError
			var ae *argError
			switch {
			case err == nil:
				t.Fatal("no error")
			case c.shape && !errors.As(err, &se), !c.shape && !errors.As(err, &ae):
				t.Fatalf("error %T %v", err, err)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not say %q", err, c.want)
			}
		})
	}
}

func TestEditConfigKeysAndQuotes(t *testing.T) {
	cases := []struct {
		src  string
		set  map[string]any
		want string
	}{
		{"\"quoted\": 1\nb: 2\n", map[string]any{"quoted": 3.0}, "\"quoted\": 3\nb: 2\n"},
		{"tïtle: 1 # ü\nb: 2\n", map[string]any{"tïtle": 3.0}, "tïtle: 3 # ü\nb: 2\n"},
		// A key that comes from a merge (<<) is overridden by an explicit one.
		{"base: &b\n  x: 1\nm:\n  <<: *b\n  y: 2\n", map[string]any{"m.x": 5.0}, "base: &b\n  x: 1\nm:\n  <<: *b\n  y: 2\n  x: 5\n"},
		{"base: &b\n  x: 1\nm:\n  <<: *b\n  y: 2\n", map[string]any{"m.x": 1.0}, "base: &b\n  x: 1\nm:\n  <<: *b\n  y: 2\n"},
		{"a: 'it''s' # c\n", map[string]any{"a": "x'y"}, "a: 'x''y' # c\n"},
		{"a: \"q\\\"x\" # c\n", map[string]any{"a": "new"}, "a: \"new\" # c\n"},
		{"a: !!str 5\n", map[string]any{"a": "6"}, "a: \"6\"\n"},
	}
	for _, c := range cases {
		res, err := EditConfig([]byte(c.src), c.set)
		if err != nil || string(res.Out) != c.want {
			t.Errorf("%q with %v: got %q, %v; want %q", c.src, c.set, res.Out, err, c.want)
		}
	}
}
