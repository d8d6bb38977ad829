package runbooks_test

import (
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
	cat := catalogue(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		rb, err := runbooks.Parse("fuzz.yaml", data, cat)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			return
		}
		if rb.Name == "" || len(rb.Steps) == 0 {
			t.Fatalf("accepted a runbook without name or steps: %+v", rb)
		}
		_, _ = runbooks.ResolveParams(rb, map[string]any{})
	})
}
