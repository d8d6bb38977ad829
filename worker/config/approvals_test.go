package config

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/stagehand-dev/stagehand/workflows"
)

// The trust settings of issue #10: inline runbooks are opt-in, and the
// approval policy maps connection identities to approvers.
func TestApprovalSettings(t *testing.T) {
	cfg, err := Load(write(t, "temporal: {address: x:7233}\n"))
	require.NoError(t, err)
	assert.False(t, cfg.AllowInlineRunbooks, "inline runbooks are off by default")

	cfg, err = Load(write(t, `allowInlineRunbooks: true
approvals:
  requireIdentity: true
  identities:
    "CN=alice,O=acme": alice
    "stagehand-cli:bob@build-host": bob
`))
	require.NoError(t, err)
	require.NoError(t, cfg.Validate())
	assert.True(t, cfg.AllowInlineRunbooks)
	assert.Equal(t, workflows.ApprovalPolicy{RequireIdentity: true, Identities: map[string]string{
		"CN=alice,O=acme": "alice", "stagehand-cli:bob@build-host": "bob",
	}}, cfg.Approvals)

	cfg, err = Load(write(t, "approvals:\n  identities:\n    \"CN=x\": \"\"\n    \" CN=y\": y\n"))
	require.NoError(t, err)
	err = cfg.Validate()
	require.Error(t, err)
	assert.Contains(t, err.Error(), `approvals.identities["CN=x"] maps to no one`)
	assert.Contains(t, err.Error(), `approvals.identities[" CN=y"]: remove the surrounding spaces`)

	_, err = Load(write(t, "approvals: {requireIdentiy: true}\n"))
	require.Error(t, err, "a typo is an error, not a silently open gate")
}
