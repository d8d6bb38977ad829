// Package secrets resolves secret references (env:NAME, secret:NAME/KEY)
// for the activities that need credentials. Workflow inputs, history and
// logs only ever carry the reference; the value exists in the activity, for
// the one call that needs it, and no error ever contains it.
package secrets

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
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
			// A refusal by the policy stays one, so call sites can pass
			// it on as SecretNotAllowed (see Refusal).
			var na *NotAllowedError
			if errors.As(err, &na) {
				return "", err
			}
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

// Env resolves env:NAME from the worker's environment; it is what Resolve
// does with a nil Resolver, as a Resolver for Schemes.
func Env(ctx context.Context, ref string) (string, error) { return Resolve(ctx, nil, ref) }

// Schemes dispatches a reference to the resolver of its scheme (the text
// before the first colon: "env", "secret"), so a worker resolves env:NAME
// from its environment and secret:NAME/KEY from Kubernetes Secrets with one
// Resolver. A scheme without a resolver is an error that says which schemes
// this worker has, so a misconfigured reference fails at its first use with
// a message a person can act on. Errors never carry a value.
func Schemes(byScheme map[string]Resolver) Resolver {
	return func(ctx context.Context, ref string) (string, error) {
		scheme, _, ok := strings.Cut(ref, ":")
		if r := byScheme[scheme]; ok && r != nil {
			return r(ctx, ref)
		}
		known := make([]string, 0, len(byScheme))
		for s, r := range byScheme {
			if r != nil {
				known = append(known, s+":")
			}
		}
		slices.Sort(known)
		hint := ""
		if scheme == "secret" {
			hint = " (secret:NAME/KEY needs `secrets.kubernetes` in the worker config)"
		}
		return "", fmt.Errorf("cannot resolve %q: this worker resolves only %s references%s", ref, strings.Join(known, ", "), hint)
	}
}

// ParseSecretRef splits secret:NAME/KEY into the Secret's name and the key
// in its data, refusing anything else (a missing key, extra slashes, names
// that are not valid Kubernetes object names) before any API call.
func ParseSecretRef(ref string) (name, key string, err error) {
	rest, ok := strings.CutPrefix(ref, "secret:")
	if !ok {
		return "", "", fmt.Errorf("%q is not a secret:NAME/KEY reference", ref)
	}
	name, key, ok = strings.Cut(rest, "/")
	if !ok || name == "" || key == "" || strings.Contains(key, "/") {
		return "", "", fmt.Errorf("%q: want secret:NAME/KEY (the Secret's name, a slash, one key of its data)", ref)
	}
	if len(name) > 253 || !validName(name, ".-") {
		return "", "", fmt.Errorf("%q: %q is not a valid Secret name (lower-case letters, digits, '-' and '.')", ref, name)
	}
	if len(key) > 253 || !validKey(key) {
		return "", "", fmt.Errorf("%q: %q is not a valid Secret key (letters, digits, '-', '_' and '.')", ref, key)
	}
	return name, key, nil
}

func validName(s, extra string) bool {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || strings.ContainsRune(extra, r)) {
			return false
		}
	}
	return true
}

func validKey(s string) bool {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_.", r)) {
			return false
		}
	}
	return true
}
