package runbooks_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/stagehand-dev/stagehand/runbooks"
)

// billionLaughs nests aliases depth levels deep under a step's `with`
// (free-form, so the loader walks all of it): 9^depth nodes from a few
// hundred bytes.
func billionLaughs(depth int) string {
	var b strings.Builder
	b.WriteString("name: x\nsteps:\n  - id: a\n    uses: log\n    with:\n      message: hi\n")
	b.WriteString("      l0: &l0 [x, x, x, x, x, x, x, x, x]\n")
	for i := 1; i <= depth; i++ {
		ref := fmt.Sprintf("*l%d", i-1)
		fmt.Fprintf(&b, "      l%d: &l%d [%s]\n", i, i, strings.TrimSuffix(strings.Repeat(ref+", ", 9), ", "))
	}
	return b.String()
}

func TestAliasExpansionIsBounded(t *testing.T) {
	for name, src := range map[string]string{
		"billion laughs":       billionLaughs(8),
		"in a param's default": "name: x\nparams:\n  p:\n    default:\n      a: &a [x, x, x, x, x, x, x, x, x, x]\n      b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n      c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n      d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n      e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nsteps:\n  - id: a\n    uses: noop\n",
	} {
		t.Run(name, func(t *testing.T) {
			ps := problems(t, src)
			require.Len(t, ps, 1, "%v", ps)
			assert.Equal(t, "rb.yaml", ps[0].File)
			assert.Contains(t, ps[0].Message, fmt.Sprintf("aliases expand to more than %d nodes", runbooks.MaxAliasNodes))
			assert.Positive(t, ps[0].Line, "located at the alias: %v", ps[0])
		})
	}
}

func TestSelfReferencingAliasIsRefused(t *testing.T) {
	ps := problems(t, "name: x\nsteps:\n  - id: a\n    uses: log\n    with: &w\n      message: hi\n      again: *w\n")
	require.Len(t, ps, 1, "%v", ps)
	assert.Equal(t, 7, ps[0].Line, "%v", ps[0])
	assert.Equal(t, "steps[0].with.again", ps[0].Path)
	assert.Contains(t, ps[0].Message, "alias *w is inside its own anchor &w")
}

// Anchors used the way runbooks use them (a shared `with`, merged) stay
// far inside the budget.
func TestSharedAnchorsStillLoad(t *testing.T) {
	rb, err := runbooks.Parse("rb.yaml", []byte(`name: x
steps:
  - id: a
    uses: log
    with: &common
      message: hi
  - id: b
    uses: log
    with:
      <<: *common
  - id: c
    uses: log
    with: *common
`), catalogue(t))
	require.NoError(t, err)
	require.Len(t, rb.Steps, 3)
	assert.Equal(t, "hi", rb.Steps[1].With["message"])
	assert.Equal(t, "hi", rb.Steps[2].With["message"])
}

func TestRunbookSizeIsBounded(t *testing.T) {
	// Valid YAML, so it is the size that is refused, not the content.
	big := "name: x\nsteps:\n  - id: a\n    uses: noop\n#" + strings.Repeat("x", runbooks.MaxRunbookSize) + "\n"
	ps := problems(t, big)
	require.Len(t, ps, 1, "%v", ps)
	assert.Equal(t, "rb.yaml", ps[0].File)
	assert.Contains(t, ps[0].Message, fmt.Sprintf("larger than the limit of %d bytes", runbooks.MaxRunbookSize))

	path := filepath.Join(t.TempDir(), "big.yaml")
	require.NoError(t, os.WriteFile(path, []byte(big), 0o600))
	_, err := runbooks.LoadFile(path, catalogue(t))
	var ve *runbooks.ValidationError
	require.True(t, errors.As(err, &ve), "want a ValidationError, got %T: %v", err, err)
	require.Len(t, ve.Problems, 1)
	assert.Equal(t, path, ve.Problems[0].File)
	assert.Contains(t, ve.Problems[0].Message, "larger than the limit")

	// Exactly at the limit is allowed.
	atLimit := "name: x\nsteps:\n  - id: a\n    uses: noop\n#"
	atLimit += strings.Repeat("x", runbooks.MaxRunbookSize-len(atLimit)-1) + "\n"
	require.Len(t, atLimit, runbooks.MaxRunbookSize)
	_, err = runbooks.Parse("rb.yaml", []byte(atLimit), catalogue(t))
	require.NoError(t, err)
}

// BenchmarkParseBillionLaughs shows the refusal is cheap; compare with
// BenchmarkParseBuiltin, a real runbook parsed in the same process.
func BenchmarkParseBillionLaughs(b *testing.B) {
	src := []byte(billionLaughs(8))
	cat := catalogue(b)
	for b.Loop() {
		if _, err := runbooks.Parse("rb.yaml", src, cat); err == nil {
			b.Fatal("accepted")
		}
	}
}

func BenchmarkParseBuiltin(b *testing.B) {
	srcs, err := runbooks.BuiltinSources()
	require.NoError(b, err)
	var patch []byte
	for _, s := range srcs {
		if strings.HasSuffix(s.File, "patch.yaml") {
			patch = s.Data
		}
	}
	cat := catalogue(b)
	for b.Loop() {
		if _, err := runbooks.Parse("patch.yaml", patch, cat); err != nil {
			b.Fatal(err)
		}
	}
}
