package temporaltlstest

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
)

// TestMutualTLS: the server answers a client with the test certificate and
// refuses one without a certificate, at the TLS handshake.
func TestMutualTLS(t *testing.T) {
	s := New(t, Options{})
	with, err := s.TLSConfig(true)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := client.DialContext(ctx, client.Options{HostPort: s.Address, ConnectionOptions: client.ConnectionOptions{TLS: with}, Logger: quietLogger{}})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	without, _ := s.TLSConfig(false)
	dctx, dcancel := context.WithTimeout(ctx, 5*time.Second)
	defer dcancel()
	c, err = client.DialContext(dctx, client.Options{HostPort: s.Address, ConnectionOptions: client.ConnectionOptions{TLS: without}, Logger: quietLogger{}})
	if err == nil {
		_, err = c.WorkflowService().DescribeNamespace(dctx, &workflowservice.DescribeNamespaceRequest{Namespace: "default"})
		c.Close()
	}
	if err == nil {
		t.Fatal("a client without a certificate was served")
	}
	// Under TLS 1.3 the client finishes its handshake before the server
	// checks the certificate, so the client sees either the server's
	// "certificate required" alert or the closed connection.
	if msg := err.Error(); !strings.Contains(msg, "certificate") && !strings.Contains(msg, "broken pipe") && !strings.Contains(msg, "connection reset") && !strings.Contains(msg, "EOF") {
		t.Errorf("unexpected refusal: %v", err)
	}
}
