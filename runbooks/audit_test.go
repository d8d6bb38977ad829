package runbooks_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/stagehand-dev/stagehand/runbooks"
)

// upgradeLike has the shape the built-in upgrade needs: a restore gate in
// onFailure that later compensation steps ask about, and an audit section.
const upgradeLike = `name: upgrade-like
params:
  release: {type: string, default: "1.45.0"}
  gateTimeout: {type: duration, default: 4h}
steps:
  - id: versions_before
    uses: noop
  - id: push
    uses: log
    with: {message: 'upgrade-{{ .params.release }}-{{ .run.startedUnix }} at {{ .run.startedAt }}'}
onFailure:
  - id: restore
    approval:
      approvers: [bob]
      message: 'Restore the backup taken before {{ .failedStep }} failed?'
      timeout: '{{ .params.gateTimeout }}'
  - id: do_restore
    if: '{{ eq .steps.restore.state "approved" }}'
    uses: log
    with: {message: restoring}
audit:
  summary:
    version: '{{ .steps.versions_before.outputs.backstage }} → {{ .params.release }}'
    outcome: '{{ .steps.do_restore.state }} {{ .error }}'
  details:
    schema: '{{ range $p, $v := .steps.push.outputs.plugins }}{{ $p }}: {{ $v }}{{ end }}'
`

func TestOnFailureGateAndAuditLoad(t *testing.T) {
	rb, err := runbooks.Parse("rb.yaml", []byte(upgradeLike), catalogue(t))
	require.NoError(t, err)
	require.Len(t, rb.OnFailure, 2)
	assert.Equal(t, runbooks.KindApproval, rb.OnFailure[0].Kind())
	require.NotNil(t, rb.Audit)
	assert.Len(t, rb.Audit.Summary, 2)
	assert.Contains(t, rb.Audit.Details["schema"], "range")
}

func TestOnFailureGateAndAuditProblems(t *testing.T) {
	base := "name: x\nsteps:\n  - id: a\n    uses: noop\n"
	many := func(n int) string {
		var b strings.Builder
		for i := 0; i < n; i++ {
			fmt.Fprintf(&b, "    f%d: x\n", i)
		}
		return b.String()
	}
	cases := []struct {
		name, src string
		line      int
		path, msg string
	}{
		{"onFailure gate without timeout", base + "onFailure:\n  - id: g\n    approval:\n      approvers: [bob]\n", 7, "onFailure[0].approval.timeout",
			"an onFailure gate needs approval.timeout: compensation must never wait forever"},
		{"onFailure gate with zero timeout", base + "onFailure:\n  - id: g\n    approval:\n      approvers: [bob]\n      timeout: 0s\n", 9, "onFailure[0].approval.timeout", "positive approval.timeout"},
		{"onFailure gate bad timeout template", base + "onFailure:\n  - id: g\n    approval:\n      approvers: [bob]\n      timeout: '{{ .params.nope }}'\n", 9, "onFailure[0].approval.timeout", `unknown param "nope"`},
		{"audit template syntax", base + "audit:\n  summary:\n    v: '{{ .steps.a.outputs.x '\n", 7, "audit.summary.v", "template syntax"},
		{"audit unknown step", base + "audit:\n  details:\n    v: '{{ .steps.zz.outputs.x }}'\n", 7, "audit.details.v", `step "zz"`},
		{"audit unknown param", base + "audit:\n  summary:\n    v: '{{ .params.zz }}'\n", 7, "audit.summary.v", `unknown param "zz"`},
		{"audit bad key", base + "audit:\n  summary:\n    my-key: x\n", 7, "audit.summary.my-key", "audit field name"},
		{"audit too many", base + "audit:\n  summary:\n" + many(11), 6, "audit.summary", "has 11 fields; at most 10"},
		{"audit unknown field", base + "audit:\n  sumary: {}\n", 6, "audit.sumary", `unknown field "sumary"`},
		{"unknown run key", "name: x\nsteps:\n  - id: a\n    uses: log\n    with: {message: '{{ .run.started }}'}\n", 5, "steps[0].with.message", "unknown key (.run has id, runId, runbook, requestedBy, startedAt, startedUnix)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ps := problems(t, tc.src)
			var found bool
			for _, p := range ps {
				if strings.Contains(p.Message, tc.msg) {
					found = true
					assert.Equal(t, tc.line, p.Line, "line of %v", p)
					assert.Equal(t, tc.path, p.Path, "path of %v", p)
				}
			}
			assert.True(t, found, "no problem mentions %q; got %v", tc.msg, ps)
		})
	}
}

func TestAuditSeesOnFailureData(t *testing.T) {
	// .failedStep and .error are allowed in audit (they are "" after a
	// success), and so are onFailure steps' states.
	src := "name: x\nsteps:\n  - id: a\n    uses: noop\nonFailure:\n  - id: b\n    uses: noop\naudit:\n  summary:\n    f: '{{ .failedStep }} {{ .error }} {{ .steps.b.state }} {{ .run.id }}'\n"
	_, err := runbooks.Parse("rb.yaml", []byte(src), catalogue(t))
	require.NoError(t, err)
}
