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

// FuzzParseDuration: whatever ParseRunbookDuration accepts lies within
// [0, MaxDuration], ParseDuration accepts too, and reads back the same from
// its own String form (recorded histories hold that form).
func FuzzParseDuration(f *testing.F) {
	for _, s := range []string{"30s", "7d", "90d", "-1d", "9999999999d", "1e400s", "99999999999h", "1h30m", "0", "2160h0m0s"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if d, err := runbooks.ParseDuration(s); err == nil && d < 0 {
			t.Fatalf("%q accepted as negative %s", s, d)
		}
		d, err := runbooks.ParseRunbookDuration(s)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			return
		}
		if d < 0 || d.D() > runbooks.MaxDuration {
			t.Fatalf("%q accepted as %s, outside [0, %s]", s, d, runbooks.MaxDuration)
		}
		back, err := runbooks.ParseRunbookDuration(d.String())
		if err != nil || back != d {
			t.Fatalf("%q -> %s -> %s, %v", s, d, back, err)
		}
	})
}
