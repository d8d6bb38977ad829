package runbooks_test

import (
	"errors"
	"testing"

	"github.com/stagehand-dev/stagehand/runbooks"
)

// errorCatalogue knows one step type and two error types: enough to show
// that nonRetryable names are checked against the catalogue's list.
type errorCatalogue struct{}

func (errorCatalogue) StepInfo(uses string) (runbooks.StepInfo, bool) {
	return runbooks.StepInfo{Keys: []string{}}, uses == "noop"
}
func (errorCatalogue) Names() []string      { return []string{"noop"} }
func (errorCatalogue) ErrorTypes() []string { return []string{"PodFailure", "Timeout"} }

func TestNonRetryableNamesAreKnownErrorTypes(t *testing.T) {
	cases := []struct {
		name string
		src  string
		// want is the one problem expected, as file:line:col: path: message;
		// empty when the runbook is valid.
		want string
	}{
		{
			name: "known names",
			src: `name: rb
steps:
  - id: a
    uses: noop
    retry: {nonRetryable: [PodFailure, Timeout]}
`,
		},
		{
			name: "a misspelt name in a flow list",
			src: `name: rb
steps:
  - id: a
    uses: noop
    retry: {nonRetryable: [PodFailure, PodFailur]}
`,
			want: `rb.yaml:5:40: steps[0].retry.nonRetryable[1]: unknown error type "PodFailur" (known: PodFailure, Timeout)`,
		},
		{
			name: "a name from another system, in a block list of an onFailure step",
			src: `name: rb
steps:
  - {id: a, uses: noop}
onFailure:
  - id: b
    uses: noop
    retry:
      nonRetryable:
        - Timeout
        - KubeForbiden
`,
			want: `rb.yaml:10:11: onFailure[0].retry.nonRetryable[1]: unknown error type "KubeForbiden" (known: PodFailure, Timeout)`,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := runbooks.Parse("rb.yaml", []byte(c.src), errorCatalogue{})
			if c.want == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			var ve *runbooks.ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("want a ValidationError, got %T: %v", err, err)
			}
			if len(ve.Problems) != 1 || ve.Problems[0].String() != c.want {
				t.Errorf("problems %q\nwant      %q", ve.Problems, c.want)
			}
		})
	}
}
