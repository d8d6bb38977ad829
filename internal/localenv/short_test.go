package localenv

import "testing"

// The skip must follow -short exactly: skipping without it would let a
// missing tool pass `make test` silently.
func TestSkipIfShortFollowsTheFlag(t *testing.T) {
	var skipped bool
	t.Run("inner", func(t *testing.T) {
		defer func() { skipped = t.Skipped() }()
		SkipIfShort(t, "nothing")
	})
	if skipped != testing.Short() {
		t.Fatalf("skipped = %v under -short = %v", skipped, testing.Short())
	}
}
