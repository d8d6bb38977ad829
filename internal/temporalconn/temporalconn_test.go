package temporalconn

import (
	"context"
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stagehand-dev/stagehand/internal/payloadcodec"
	"github.com/stagehand-dev/stagehand/internal/tlstest"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestApplyEnv(t *testing.T) {
	var o Options
	err := o.ApplyEnv(env(map[string]string{
		"TEMPORAL_ADDRESS": "t.example:7233", "TEMPORAL_NAMESPACE": "ops",
		"TEMPORAL_TLS": "true", "TEMPORAL_TLS_CLIENT_CERT_PATH": "/c.pem", "TEMPORAL_TLS_CLIENT_KEY_PATH": "/k.pem",
		"TEMPORAL_TLS_SERVER_CA_CERT_PATH": "/ca.pem", "TEMPORAL_TLS_SERVER_NAME": "temporal.internal",
		"TEMPORAL_API_KEY": "the-key-value", "STAGEHAND_CODEC_KEYS": "k2=env:B,k1=env:A",
	}))
	if err != nil {
		t.Fatal(err)
	}
	want := Options{Address: "t.example:7233", Namespace: "ops", APIKeyRef: "env:TEMPORAL_API_KEY",
		TLS:   TLS{Enabled: ptr(true), CertFile: "/c.pem", KeyFile: "/k.pem", CAFile: "/ca.pem", ServerName: "temporal.internal"},
		Codec: Codec{Keys: []payloadcodec.KeyRef{{ID: "k2", Ref: "env:B"}, {ID: "k1", Ref: "env:A"}}}}
	if o.Address != want.Address || o.Namespace != want.Namespace || o.APIKeyRef != want.APIKeyRef ||
		*o.TLS.Enabled != true || o.TLS.CertFile != "/c.pem" || o.TLS.KeyFile != "/k.pem" || o.TLS.CAFile != "/ca.pem" ||
		o.TLS.ServerName != "temporal.internal" || len(o.Codec.Keys) != 2 || o.Codec.Keys[0] != want.Codec.Keys[0] {
		t.Fatalf("got %+v", o)
	}
	if strings.Contains(o.Describe(), "the-key-value") {
		t.Fatal("Describe shows the API key")
	}
	for name, m := range map[string]map[string]string{
		"bad bool":           {"TEMPORAL_TLS": "yes please"},
		"no host verify":     {"TEMPORAL_TLS_DISABLE_HOST_VERIFICATION": "true"},
		"bad codec key list": {"STAGEHAND_CODEC_KEYS": "k1"},
	} {
		var o Options
		if err := o.ApplyEnv(env(m)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestTLSEnabled(t *testing.T) {
	for name, c := range map[string]struct {
		o    Options
		want bool
	}{
		"nothing":            {Options{}, false},
		"ca only":            {Options{TLS: TLS{CAFile: "x"}}, true},
		"api key implies":    {Options{APIKeyRef: "env:K"}, true},
		"api key, tls off":   {Options{APIKeyRef: "env:K", TLS: TLS{Enabled: ptr(false)}}, false},
		"forced on, no file": {Options{TLS: TLS{Enabled: ptr(true)}}, true},
	} {
		if got := c.o.TLSEnabled(); got != c.want {
			t.Errorf("%s: TLSEnabled = %v", name, got)
		}
	}
}

func TestValidate(t *testing.T) {
	for name, o := range map[string]Options{
		"cert without key":  {TLS: TLS{CertFile: "c"}},
		"off with files":    {TLS: TLS{Enabled: ptr(false), CAFile: "ca"}},
		"key value not ref": {APIKeyRef: "sk-live-abc"},
		"codec dup":         {Codec: Codec{Keys: []payloadcodec.KeyRef{{ID: "a", Ref: "env:A"}, {ID: "a", Ref: "env:B"}}}},
		"codec missing ref": {Codec: Codec{Keys: []payloadcodec.KeyRef{{ID: "a"}}}},
	} {
		if len(o.Validate()) == 0 {
			t.Errorf("%s: no problem reported", name)
		}
	}
	if p := (Options{}).Validate(); len(p) != 0 {
		t.Errorf("zero options: %v", p)
	}
	if p := strings.Join((Options{APIKeyRef: "sk-live-abc"}).Validate(), ""); p == "" || strings.Contains(p, "sk-live-abc") {
		t.Errorf("a key pasted as apiKeyRef: %q (must say so without repeating it)", p)
	}
}

// TestClientOptions: the TLS config has TLS 1.2 at least, the client
// certificate and the CA; the API key becomes credentials; errors name the
// unreadable file and never the key.
func TestClientOptions(t *testing.T) {
	dir := t.TempDir()
	ca, err := tlstest.NewCA("test CA")
	if err != nil {
		t.Fatal(err)
	}
	pair, err := ca.Client("worker")
	if err != nil {
		t.Fatal(err)
	}
	files, err := ca.WriteFiles(dir, "client", pair)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("TEST_TEMPORAL_KEY", "planted-api-key")
	o := Options{Address: "127.0.0.1:1", Namespace: "default", APIKeyRef: "env:TEST_TEMPORAL_KEY",
		TLS: TLS{CertFile: files.Cert, KeyFile: files.Key, CAFile: files.CA, ServerName: "localhost"}}
	co, err := o.ClientOptions(context.Background(), nil, ForWorker)
	if err != nil {
		t.Fatal(err)
	}
	c := co.ConnectionOptions.TLS
	if c == nil || c.MinVersion != tls.VersionTLS12 || len(c.Certificates) != 1 || c.RootCAs == nil || c.ServerName != "localhost" || c.InsecureSkipVerify {
		t.Fatalf("tls config: %+v", c)
	}
	if co.Credentials == nil {
		t.Fatal("no credentials")
	}
	if co.DataConverter != nil {
		t.Fatal("data converter set without codec keys")
	}

	missing := o
	missing.TLS.CAFile = filepath.Join(dir, "nope.pem")
	if _, err := missing.ClientOptions(context.Background(), nil, ForWorker); err == nil || !strings.Contains(err.Error(), "nope.pem") {
		t.Errorf("missing CA: %v", err)
	}
	notPEM := filepath.Join(dir, "garbage.pem")
	_ = os.WriteFile(notPEM, []byte("garbage"), 0o600)
	bad := o
	bad.TLS.CAFile = notPEM
	if _, err := bad.ClientOptions(context.Background(), nil, ForWorker); err == nil || !strings.Contains(err.Error(), "garbage.pem") {
		t.Errorf("bad CA: %v", err)
	}
	swapped := o
	swapped.TLS.KeyFile = files.CA
	if _, err := swapped.ClientOptions(context.Background(), nil, ForWorker); err == nil || !strings.Contains(err.Error(), files.CA) {
		t.Errorf("wrong key file: %v", err)
	}
	nokey := o
	nokey.APIKeyRef = "env:TEST_TEMPORAL_KEY_UNSET"
	if _, err := nokey.ClientOptions(context.Background(), nil, ForWorker); err == nil || !strings.Contains(err.Error(), "TEST_TEMPORAL_KEY_UNSET") {
		t.Errorf("unset key: %v", err)
	}
}

func TestClientOptionsCodec(t *testing.T) {
	t.Setenv("TEST_CODEC_KEY", strings.Repeat("ab", 32))
	o := Options{Address: "x:1", Namespace: "default", Codec: Codec{Keys: []payloadcodec.KeyRef{{ID: "k1", Ref: "env:TEST_CODEC_KEY"}}}}
	w, err := o.ClientOptions(context.Background(), nil, ForWorker)
	if err != nil || w.DataConverter == nil || w.FailureConverter == nil || w.ConnectionOptions.TLS != nil {
		t.Fatalf("worker: %+v %v", w, err)
	}
	c, err := o.ClientOptions(context.Background(), nil, ForCLI)
	if err != nil || c.DataConverter != nil || len(c.ConnectionOptions.DialOptions) != 1 {
		t.Fatalf("cli: %+v %v", c, err)
	}
}
