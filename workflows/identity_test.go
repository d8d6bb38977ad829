package workflows_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"

	"github.com/stagehand-dev/stagehand/workflows"
)

func TestIdentityHelpers(t *testing.T) {
	assert.Equal(t, "stagehand-cli:alice@laptop", workflows.CLIIdentity("alice", "laptop"))
	assert.Equal(t, "stagehand-cli:unknown@unknown", workflows.CLIIdentity("", ""))

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "alice", Organization: []string{"acme"}},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	assert.Equal(t, "CN=alice,O=acme", workflows.CertIdentityFromTLS(tls.Certificate{Certificate: [][]byte{der}}))
	assert.Equal(t, "", workflows.CertIdentityFromTLS(tls.Certificate{}))

	opts := workflows.WithIdentityHeader(client.Options{HostPort: "x"})
	assert.Empty(t, opts.Interceptors, "no identity, no header")
	opts = workflows.WithIdentityHeader(client.Options{Identity: "CN=alice,O=acme"})
	assert.Len(t, opts.Interceptors, 1)
}
