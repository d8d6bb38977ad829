package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stagehand-dev/stagehand/activities"
)

// `stagehand runbooks` lists every error type with its retryability and
// meaning, and per step type the error types it may fail with.
func TestCatalogueListsErrorTypes(t *testing.T) {
	cases := []struct {
		output string
		want   []string
	}{
		{"table", []string{
			"MAY FAIL WITH (besides InvalidArguments, TemplateError, Timeout, StepInterrupted)",
			"ERROR TYPE", "RETRIED", "SCOPE", "MEANING",
			"PodFailure                no       step",
			"PodsNotReady              yes      step",
			"RunbookFailed             no       run",
		}},
		{"markdown", []string{"| ERROR TYPE | RETRIED | SCOPE | MEANING |", "| SecretNotFound | no | step |"}},
	}
	for _, c := range cases {
		t.Run(c.output, func(t *testing.T) {
			h := newHarness(t)
			if code := h.run("runbooks", "-o", c.output); code != ExitOK {
				t.Fatalf("exit %d: %s", code, h.errOut)
			}
			assertContains(t, h.out.String(), c.want...)
			// The row of kube.events names its own error types.
			for _, line := range strings.Split(h.out.String(), "\n") {
				if strings.HasPrefix(strings.TrimLeft(line, "| "), "kube.events ") && strings.Contains(line, "WarningEvents") {
					return
				}
			}
			t.Errorf("no kube.events row naming WarningEvents in:\n%s", h.out)
		})
	}

	h := newHarness(t)
	if code := h.run("runbooks", "-o", "json"); code != ExitOK {
		t.Fatal(code)
	}
	var doc catalogueJSON
	if err := json.Unmarshal(h.out.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.ErrorTypes) != len(activities.ErrorTypes()) {
		t.Errorf("json lists %d error types, want %d", len(doc.ErrorTypes), len(activities.ErrorTypes()))
	}
	for _, st := range doc.StepTypes {
		if st.Name == "kube.rollback" {
			if !slices.Contains(st.Errors, activities.ErrNoRollbackTarget) || !slices.Contains(st.Errors, activities.ErrTimeout) ||
				st.DefaultTimeout == 0 || len(st.Args) == 0 || len(st.Outputs) == 0 {
				t.Errorf("kube.rollback in json: %+v", st)
			}
			return
		}
	}
	t.Error("no kube.rollback in json")
}

func TestValidateRejectsUnknownNonRetryable(t *testing.T) {
	file := filepath.Join(t.TempDir(), "rb.yaml")
	src := "name: rb\nsteps:\n  - id: a\n    uses: kube.getImage\n    with: {namespace: ns, deployment: web}\n    retry: {nonRetryable: [KubeForbidden, KubeForbiden]}\n"
	if err := os.WriteFile(file, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t)
	if code := h.run("validate", file); code != ExitUsage {
		t.Fatalf("exit %d: %s", code, h.out)
	}
	assertContains(t, h.out.String(),
		file+`:6:43: steps[0].retry.nonRetryable[1]: unknown error type "KubeForbiden" (known: `,
		"KubeForbidden, ", "WarningEvents)")
	if strings.Contains(h.out.String(), "RunbookFailed") {
		t.Error("the known names include a run's error type, which no step can fail with")
	}
}
