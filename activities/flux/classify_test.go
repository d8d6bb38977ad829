package flux

import (
	"errors"
	"testing"

	"go.temporal.io/sdk/temporal"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/stagehand-dev/stagehand/activities"
)

// The flux steps name apiserver errors like the kube steps do, so a
// runbook's nonRetryable list means the same for both.
func TestClassify(t *testing.T) {
	gr := schema.GroupResource{Group: "apps", Resource: "deployments"}
	cases := []struct {
		name      string
		err       error
		errType   string
		retryable bool
	}{
		{"forbidden", apierrors.NewForbidden(gr, "web", errors.New("no RBAC")), activities.ErrKubeForbidden, false},
		{"unauthorized", apierrors.NewUnauthorized("bad token"), activities.ErrKubeUnauthorized, false},
		{"not found", apierrors.NewNotFound(gr, "web"), activities.ErrKubeNotFound, false},
		{"unavailable", apierrors.NewServiceUnavailable("restarting"), activities.ErrKubeUnavailable, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var appErr *temporal.ApplicationError
			if !errors.As(classify("get deployment ns/web", c.err), &appErr) {
				t.Fatal("not an ApplicationError")
			}
			if appErr.Type() != c.errType || appErr.NonRetryable() == c.retryable {
				t.Errorf("type %s nonRetryable %v, want %s retryable %v", appErr.Type(), appErr.NonRetryable(), c.errType, c.retryable)
			}
		})
	}
}
