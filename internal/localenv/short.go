package localenv

import "testing"

// SkipIfShort skips t under `go test -short`, the fast unit tier that runs
// on a fresh clone with nothing built. The harnesses call it where they
// start something real — a server, a control plane, Node, git remotes —
// because that needs built tools and seconds to minutes each. `make test`
// never passes -short, so there a missing tool still fails the test instead
// of skipping it.
func SkipIfShort(t testing.TB, needs string) {
	t.Helper()
	if testing.Short() {
		t.Skipf("skipped in -short mode: needs %s (make test runs it)", needs)
	}
}
