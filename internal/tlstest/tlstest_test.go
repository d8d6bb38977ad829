package tlstest

import (
	"crypto/x509"
	"encoding/pem"
	"testing"
)

// TestServerCertificate: the server certificate verifies against its CA
// for 127.0.0.1 and localhost, and not against another CA or another name.
func TestServerCertificate(t *testing.T) {
	ca, err := NewCA("test CA")
	if err != nil {
		t.Fatal(err)
	}
	other, err := NewCA("other CA")
	if err != nil {
		t.Fatal(err)
	}
	pair, err := ca.Server()
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(pair.CertPEM)
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	pool := func(pemData []byte) *x509.CertPool {
		p := x509.NewCertPool()
		if !p.AppendCertsFromPEM(pemData) {
			t.Fatal("CA PEM does not parse")
		}
		return p
	}
	for _, name := range []string{"127.0.0.1", "localhost"} {
		if _, err := cert.Verify(x509.VerifyOptions{Roots: pool(ca.CertPEM), DNSName: name}); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool(other.CertPEM), DNSName: "localhost"}); err == nil {
		t.Error("verifies against an unrelated CA")
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool(ca.CertPEM), DNSName: "db.example.com"}); err == nil {
		t.Error("verifies for a name it does not hold")
	}
}
