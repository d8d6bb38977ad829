// Package secrets resolves secret references (env:NAME, secret:NAME/KEY)
// for the activities that need credentials. Workflow inputs, history and
// logs only ever carry the reference; the value exists in the activity, for
// the one call that needs it, and no error ever contains it.
package secrets

import (
	"context"
	"fmt"
	"os"
	"strings"
)

// Resolver turns a reference into its value. Workers may supply one that
// understands more than env:NAME (for example Kubernetes Secrets).
type Resolver func(ctx context.Context, ref string) (string, error)

// Resolve resolves ref with r, or, when r is nil, as env:NAME from the
// worker's environment. An empty value is an error: a credential that is
// set but blank is a misconfiguration, not "no credential". Errors name the
// reference, never a value.
func Resolve(ctx context.Context, r Resolver, ref string) (string, error) {
	if r != nil {
		v, err := r(ctx, ref)
		if err != nil {
			return "", fmt.Errorf("resolve %s: %v", ref, err)
		}
		if v == "" {
			return "", fmt.Errorf("secret %s is empty", ref)
		}
		return v, nil
	}
	name, ok := strings.CutPrefix(ref, "env:")
	if !ok || name == "" {
		return "", fmt.Errorf("cannot resolve %q: this worker resolves only env:NAME references", ref)
	}
	v, ok := os.LookupEnv(name)
	if !ok || v == "" {
		return "", fmt.Errorf("secret %s: environment variable %s is not set on the worker", ref, name)
	}
	return v, nil
}
