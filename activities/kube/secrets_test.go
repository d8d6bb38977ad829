package kube

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestIntegrationSecretResolver reads secret:NAME/KEY references from a real
// apiserver, and checks that every failure names the Secret and key but
// never carries a value.
func TestIntegrationSecretResolver(t *testing.T) {
	t.Parallel()
	_, admin, ns := plane(t)
	c := admin.Clusters["local"]
	ctx := context.Background()
	const value = "p4ssw0rd-never-printed"
	_, err := c.Client.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "portal-db"},
		Data:       map[string][]byte{"password": []byte(value), "other": []byte("other-value")},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	resolve := c.SecretResolver(ns)
	got, err := resolve(ctx, "secret:portal-db/password")
	if err != nil || got != value {
		t.Fatalf("resolve = %q, %v; want the Secret's value", got, err)
	}
	for ref, want := range map[string]string{
		"secret:portal-db/missing": `Secret ` + ns + `/portal-db has no key "missing"`,
		"secret:absent/password":   "Secret " + ns + "/absent not found on cluster local",
		"secret:portal-db":         "want secret:NAME/KEY",
	} {
		_, err := resolve(ctx, ref)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want it to contain %q", ref, err, want)
		}
		if err != nil && (strings.Contains(err.Error(), value) || strings.Contains(err.Error(), "other-value")) {
			t.Errorf("%s: error carries a secret value: %v", ref, err)
		}
	}
}
