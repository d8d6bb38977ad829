package kube

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stagehand-dev/stagehand/activities/secrets"
)

// SecretResolver resolves secret:NAME/KEY references from the Secrets in
// namespace on this cluster: the value of KEY in Secret NAME's data. Only
// the worker reads it, at the moment a step needs it; references are what
// runbooks, history and logs carry. Errors name the Secret, the key and the
// namespace, never the value (and never the other keys' values).
func (c *Cluster) SecretResolver(namespace string) secrets.Resolver {
	return func(ctx context.Context, ref string) (string, error) {
		name, key, err := secrets.ParseSecretRef(ref)
		if err != nil {
			return "", err
		}
		s, err := c.Client.CoreV1().Secrets(namespace).Get(ctx, name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			return "", fmt.Errorf("Secret %s/%s not found on cluster %s", namespace, name, c.Name)
		case apierrors.IsForbidden(err):
			return "", fmt.Errorf("the worker may not read Secret %s/%s on cluster %s (RBAC: grant get on secrets in %s)", namespace, name, c.Name, namespace)
		case err != nil:
			return "", fmt.Errorf("read Secret %s/%s on cluster %s: %v", namespace, name, c.Name, err)
		}
		v, ok := s.Data[key]
		if !ok {
			return "", fmt.Errorf("Secret %s/%s has no key %q", namespace, name, key)
		}
		return string(v), nil
	}
}
