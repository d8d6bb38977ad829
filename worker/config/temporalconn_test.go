package config

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/stagehand-dev/stagehand/internal/payloadcodec"
)

// TestTemporalSecuritySettings: temporal.tls, apiKeyRef and codec load from
// the file, the SDK's variables override them, and Validate reports a
// half-configured client certificate, an API key written in place of a
// reference, and an unparsable TEMPORAL_TLS.
func TestTemporalSecuritySettings(t *testing.T) {
	cfg, err := Load(write(t, `temporal:
  address: temporal.example:7233
  tls: {certFile: /etc/stagehand/tls/client.pem, keyFile: /etc/stagehand/tls/client-key.pem, caFile: /etc/stagehand/tls/ca.pem, serverName: temporal.internal}
  apiKeyRef: secret:temporal/api-key
  codec:
    keys:
      - {id: k2, ref: env:STAGEHAND_CODEC_KEY_2}
      - {id: k1, ref: env:STAGEHAND_CODEC_KEY_1}
`))
	require.NoError(t, err)
	require.NoError(t, cfg.Validate())
	conn := cfg.Conn()
	assert.True(t, conn.TLSEnabled())
	assert.Equal(t, "/etc/stagehand/tls/client.pem", conn.TLS.CertFile)
	assert.Equal(t, "temporal.internal", conn.TLS.ServerName)
	assert.Equal(t, "secret:temporal/api-key", conn.APIKeyRef)
	assert.Equal(t, []payloadcodec.KeyRef{{ID: "k2", Ref: "env:STAGEHAND_CODEC_KEY_2"}, {ID: "k1", Ref: "env:STAGEHAND_CODEC_KEY_1"}}, conn.Codec.Keys)

	env := map[string]string{"TEMPORAL_TLS_CLIENT_CERT_PATH": "/run/c.pem", "TEMPORAL_API_KEY": "value-never-stored", "STAGEHAND_CODEC_KEYS": "k3=env:K3"}
	cfg.ApplyEnv(func(k string) string { return env[k] })
	require.NoError(t, cfg.Validate())
	assert.Equal(t, "/run/c.pem", cfg.Temporal.TLS.CertFile)
	assert.Equal(t, "env:TEMPORAL_API_KEY", cfg.Temporal.APIKeyRef, "the key becomes a reference, never a stored value")
	assert.Equal(t, "k3", cfg.Temporal.Codec.Keys[0].ID)

	bad := Defaults()
	bad.Temporal.TLS.CertFile = "/c.pem"
	bad.Temporal.APIKeyRef = "tk_live_123"
	bad.ApplyEnv(func(k string) string { return map[string]string{"TEMPORAL_TLS": "sometimes"}[k] })
	err = bad.Validate()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "certFile and keyFile go together")
	assert.Contains(t, err.Error(), "not a secret reference")
	assert.Contains(t, err.Error(), "TEMPORAL_TLS")

	_, err = Load(write(t, "temporal: {tls: {insecureSkipVerify: true}}\n"))
	require.Error(t, err, "there is no setting to skip verification")
}
