package runbooks_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

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

func TestParseDurationBounds(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		err  string
	}{
		{in: "0s", want: 0},
		{in: "90s", want: 90 * time.Second},
		{in: "1h30m", want: 90 * time.Minute},
		{in: "7d", want: 7 * 24 * time.Hour},
		{in: "90d", want: runbooks.MaxDuration},
		{in: "2160h", want: runbooks.MaxDuration},
		{in: "-1d", err: `invalid duration "-1d": must not be negative`},
		{in: "-5m", err: `invalid duration "-5m": must not be negative`},
		{in: "91d", err: `invalid duration "91d": longer than the limit of 90d`},
		{in: "2161h", err: `invalid duration "2161h": longer than the limit of 90d`},
		// Would wrap around in time.Duration arithmetic.
		{in: "9999999999d", err: `invalid duration "9999999999d": longer than the limit of 90d`},
		{in: "99999999999999999999d", err: `invalid duration "99999999999999999999d": longer than the limit of 90d`},
		{in: "99999999999h", err: `invalid duration "99999999999h": longer than the limit of 90d`},
		{in: "1e400s", err: `invalid duration "1e400s" (want e.g. 30s, 5m, 72h or 7d)`},
		{in: "1.5d", err: `invalid duration "1.5d"`},
		{in: "d", err: `invalid duration "d"`},
		{in: "", err: `invalid duration ""`},
	} {
		t.Run(tc.in, func(t *testing.T) {
			d, err := runbooks.ParseRunbookDuration(tc.in)
			if tc.err != "" {
				require.Error(t, err, "accepted as %s", d)
				assert.Contains(t, err.Error(), tc.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, d.D())
		})
	}
	// ParseDuration, which workflow code and recorded histories use, has
	// no upper bound below time.Duration's (a run recorded before the
	// bound must replay), but negative and overflowing values are refused.
	d, err := runbooks.ParseDuration("365d")
	require.NoError(t, err)
	assert.Equal(t, 365*24*time.Hour, d.D())
	_, err = runbooks.ParseDuration("9999999999d")
	assert.ErrorContains(t, err, "longer than the largest duration")
	_, err = runbooks.ParseDuration("99999999999h")
	assert.ErrorContains(t, err, "longer than the largest duration")
	_, err = runbooks.ParseDuration("-1d")
	assert.ErrorContains(t, err, "must not be negative")
	var js runbooks.Duration
	require.NoError(t, js.UnmarshalJSON([]byte(`"2400h0m0s"`)), "a recorded 100-day duration still decodes")
	assert.Equal(t, 100*24*time.Hour, js.D())
}

// Every place a runbook writes a duration refuses negative, overflowing
// and over-long values when it loads, and names the field.
func TestRunbookDurationsAreBounded(t *testing.T) {
	gate := func(timeout string) string {
		return "name: x\nsteps:\n  - id: g\n    approval:\n      approvers: [bob]\n      timeout: " + timeout + "\n"
	}
	for _, tc := range []struct {
		name, src, path, msg string
	}{
		{"gate timeout negative", gate("-1d"), "steps[0].approval.timeout", "must not be negative"},
		{"gate timeout overflow", gate("9999999999d"), "steps[0].approval.timeout", "longer than the limit of 90d"},
		{"gate timeout over the bound", gate("100d"), "steps[0].approval.timeout", "longer than the limit of 90d"},
		{"wait", "name: x\nsteps:\n  - id: w\n    uses: wait\n    with: {duration: 9999999999d}\n", "steps[0].with.duration", "longer than the limit of 90d"},
		{"wait negative", "name: x\nsteps:\n  - id: w\n    uses: wait\n    with: {duration: -1s}\n", "steps[0].with.duration", "must not be negative"},
		{"step timeout", "name: x\nsteps:\n  - id: a\n    uses: noop\n    timeout: -1d\n", "steps[0].timeout", "must not be negative"},
		{"heartbeat timeout", "name: x\nsteps:\n  - id: a\n    uses: noop\n    heartbeatTimeout: 1e400s\n", "steps[0].heartbeatTimeout", "invalid duration"},
		{"retry interval", "name: x\nsteps:\n  - id: a\n    uses: noop\n    retry: {initialInterval: 99999999999h}\n", "steps[0].retry.initialInterval", "longer than the limit"},
		{"remind every", "name: x\nsteps:\n  - id: g\n    approval:\n      approvers: [bob]\n      remind:\n        every: 9999999999d\n        uses: log\n        with: {message: hi}\n", "steps[0].approval.remind.every", "longer than the limit"},
		{"param default", "name: x\nparams:\n  t: {type: duration, default: -1d}\nsteps:\n  - id: a\n    uses: noop\n", "params.t.default", "must not be negative"},
		{"activity duration arg", "name: x\nsteps:\n  - id: a\n    uses: kube.waitRollout\n    with: {cluster: c, namespace: n, deployment: d, timeout: 9999999999d}\n", "steps[0].with.timeout", "longer than the limit of 90d"},
		{"activity arg in days", "name: x\nsteps:\n  - id: a\n    uses: kube.waitRollout\n    with: {cluster: c, namespace: n, deployment: d, timeout: 2d}\n", "steps[0].with.timeout", "Go durations"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ps := problems(t, tc.src)
			var found bool
			for _, p := range ps {
				if p.Path == tc.path && strings.Contains(p.Message, tc.msg) {
					found = true
				}
			}
			assert.True(t, found, "want %s: ...%s... in %v", tc.path, tc.msg, ps)
		})
	}
}

// Duration params given at start are held to the same bounds.
func TestDurationParamsAreBounded(t *testing.T) {
	rb, err := runbooks.Parse("rb.yaml", []byte("name: x\nparams:\n  gateTimeout: {type: duration, default: 72h}\nsteps:\n  - id: a\n    uses: noop\n"), catalogue(t))
	require.NoError(t, err)
	for in, msg := range map[string]string{"-1d": "must not be negative", "9999999999d": "longer than the limit of 90d", "1e400s": "invalid duration"} {
		_, err := runbooks.ResolveParams(rb, map[string]any{"gateTimeout": in})
		var pe *runbooks.ParamError
		require.ErrorAs(t, err, &pe, in)
		assert.Contains(t, err.Error(), "gateTimeout: invalid duration")
		assert.Contains(t, err.Error(), msg)
	}
	got, err := runbooks.ResolveParams(rb, map[string]any{"gateTimeout": "90d"})
	require.NoError(t, err)
	assert.Equal(t, "2160h0m0s", got["gateTimeout"])
}
