package git

import "context"

// RunTree returns the real path of dir when it is a work tree git.checkout
// made in the current run (ctx is an activity's) and refuses anything else
// with a non-retryable error: the check git.commitPush makes, exported for
// steps of other packages that read a checkout (portal.versions), so that a
// runbook cannot point them at another run's tree or any other directory.
func (a *Activities) RunTree(ctx context.Context, dir string) (string, error) {
	real, _, err := a.ownTree(ctx, dir)
	return real, err
}
