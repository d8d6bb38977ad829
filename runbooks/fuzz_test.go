package runbooks_test

import (
	"errors"
	"testing"

	"github.com/stagehand-dev/stagehand/runbooks"
)

// FuzzParse feeds arbitrary bytes to the loader and validator: it must
// never panic, and a runbook it accepts must survive parameter resolution.
func FuzzParse(f *testing.F) {
	srcs, err := runbooks.BuiltinSources()
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range srcs {
		f.Add(s.Data)
	}
	f.Add([]byte("name: x\nsteps:\n  - id: a\n    uses: log\n    with: {message: '{{ .params.x }}'}\n"))
	f.Add([]byte("name: x\nsteps: [{id: p, parallel: [{id: a, uses: noop}, {id: b, uses: noop}]}]\n"))
	f.Add([]byte("&a [*a]"))
	// Shapes that once cost seconds and gigabytes (nested and
	// self-referencing aliases) and syntax errors that go to goccy for a
	// location; more in testdata/fuzz/FuzzParse.
	f.Add([]byte(billionLaughs(8)))
	f.Add([]byte("name: x\nsteps:\n  - id: a\n    uses: log\n    with: &w {message: hi, again: *w}\n"))
	f.Add([]byte("name: x\nsteps:\n  - id: a\n    uses: log\n  - id: b\n   uses: noop\n"))
	f.Add([]byte("name: x\nsteps: [{id: a, uses: noop}\n"))
	cat := catalogue(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		rb, err := runbooks.Parse("fuzz.yaml", data, cat)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			var ve *runbooks.ValidationError
			if errors.As(err, &ve) {
				for _, p := range ve.Problems {
					if p.Excerpt != "" && (p.Line <= 0 || p.Column <= 0) {
						t.Fatalf("excerpt without a position: %+v", p)
					}
				}
			}
			return
		}
		if rb.Name == "" || len(rb.Steps) == 0 {
			t.Fatalf("accepted a runbook without name or steps: %+v", rb)
		}
		_, _ = runbooks.ResolveParams(rb, map[string]any{})
	})
}
