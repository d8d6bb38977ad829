package cli

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/stagehand-dev/stagehand/internal/payloadcodec"
)

func testCodec(t *testing.T) *payloadcodec.Codec {
	t.Helper()
	c, err := payloadcodec.New([]payloadcodec.Key{{ID: "k1", Secret: bytes.Repeat([]byte{9}, 32)}})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// encryptedBody is a /decode request body holding one encrypted payload.
func encryptedBody(t *testing.T, c *payloadcodec.Codec, v string) []byte {
	t.Helper()
	p, _ := converter.GetDefaultDataConverter().ToPayload(v)
	enc, err := c.Encode([]*commonpb.Payload{p})
	if err != nil {
		t.Fatal(err)
	}
	b, err := protojson.Marshal(&commonpb.Payloads{Payloads: enc})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestCodecHandler: /decode with the token decodes; without it, or with a
// wrong one, 401 and nothing decoded; a browser from another origin is
// refused; the preflight from the UI's origin allows Authorization and
// X-Namespace.
func TestCodecHandler(t *testing.T) {
	codec := testCodec(t)
	h, err := NewCodecHandler(codec, "s3cret-token", []string{"http://localhost:8233"})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	body := encryptedBody(t, codec, "planted-param-value")
	do := func(method, auth, origin string) (*http.Response, string) {
		req, _ := http.NewRequest(method, srv.URL+"/decode", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Namespace", "default")
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		if method == http.MethodOptions {
			req.Header.Set("Access-Control-Request-Method", "POST")
			req.Header.Set("Access-Control-Request-Headers", "authorization,content-type,x-namespace")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, string(b)
	}
	for _, auth := range []string{"", "Bearer wrong", "s3cret-token-x"} {
		resp, b := do(http.MethodPost, auth, "")
		if resp.StatusCode != http.StatusUnauthorized || strings.Contains(b, "planted") {
			t.Errorf("auth %q: %d %s", auth, resp.StatusCode, b)
		}
	}
	for _, auth := range []string{"Bearer s3cret-token", "s3cret-token"} {
		resp, b := do(http.MethodPost, auth, "http://localhost:8233")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("auth %q: %d %s", auth, resp.StatusCode, b)
		}
		var out commonpb.Payloads
		if err := protojson.Unmarshal([]byte(b), &out); err != nil {
			t.Fatal(err)
		}
		var s string
		if err := converter.GetDefaultDataConverter().FromPayload(out.Payloads[0], &s); err != nil || s != "planted-param-value" {
			t.Fatalf("decoded %q %v", s, err)
		}
		if got := resp.Header.Get("Access-Control-Allow-Origin"); got != "http://localhost:8233" {
			t.Errorf("Allow-Origin = %q", got)
		}
	}
	if resp, _ := do(http.MethodPost, "Bearer s3cret-token", "http://evil.example"); resp.StatusCode != http.StatusForbidden {
		t.Errorf("foreign origin: %d", resp.StatusCode)
	}
	resp, _ := do(http.MethodOptions, "", "http://localhost:8233")
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("preflight: %d", resp.StatusCode)
	}
	allow := strings.ToLower(resp.Header.Get("Access-Control-Allow-Headers"))
	for _, hdr := range []string{"authorization", "x-namespace", "content-type"} {
		if !strings.Contains(allow, hdr) {
			t.Errorf("preflight does not allow %s: %q", hdr, allow)
		}
	}
	if resp, _ := do(http.MethodOptions, "", "http://evil.example"); resp.StatusCode != http.StatusForbidden {
		t.Errorf("foreign preflight: %d", resp.StatusCode)
	}
	if resp, _ := do(http.MethodGet, "Bearer s3cret-token", ""); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET: %d", resp.StatusCode)
	}
	if _, err := NewCodecHandler(codec, "t", []string{"localhost:8233"}); err == nil {
		t.Error("origin without scheme accepted")
	}
}

// TestCodecServerFlags: --no-auth only on loopback; an unset token or
// missing keys stop the server before it listens.
func TestCodecServerFlags(t *testing.T) {
	h := newHarness(t)
	h.f.Getenv = func(k string) string {
		switch k {
		case "STAGEHAND_CODEC_KEYS":
			return "k1=env:TEST_CLI_CODEC_KEY"
		case "TEST_CLI_CODEC_KEY":
			return strings.Repeat("0f", 32)
		}
		return ""
	}
	if code := h.run("codec-server", "--no-auth", "--listen", "0.0.0.0:0"); code != ExitUsage || !strings.Contains(h.errOut.String(), "loopback") {
		t.Errorf("no-auth on 0.0.0.0: %d %s", code, h.errOut)
	}
	h.errOut.Reset()
	if code := h.run("codec-server", "--auth-token-ref", "env:TEST_CLI_CODEC_AUTH_UNSET"); code != ExitUsage || !strings.Contains(h.errOut.String(), "TEST_CLI_CODEC_AUTH_UNSET") {
		t.Errorf("unset token: %d %s", code, h.errOut)
	}
	h2 := newHarness(t)
	if code := h2.run("codec-server"); code != ExitUsage || !strings.Contains(h2.errOut.String(), "STAGEHAND_CODEC_KEYS") {
		t.Errorf("no keys: %d %s", code, h2.errOut)
	}
}

// TestConnectFlags: the TLS, API key and codec flags reach client.Options.
func TestConnectFlags(t *testing.T) {
	h := newHarness(t)
	var got client.Options
	h.f.Dial = func(_ context.Context, o client.Options) (Client, error) { got = o; return h.client, nil }
	h.f.Getenv = func(k string) string {
		return map[string]string{"TEST_CLI_API_KEY": "planted-api-key", "TEST_CLI_CODEC_KEY": strings.Repeat("0f", 32)}[k]
	}
	g := defaultGlobals(func(string) string { return "" })
	g.APIKeyRef, g.CodecKeys = "env:TEST_CLI_API_KEY", "k1=env:TEST_CLI_CODEC_KEY"
	if _, err := h.f.connect(context.Background(), &g); err != nil {
		t.Fatal(err)
	}
	if got.Credentials == nil || got.ConnectionOptions.TLS == nil || len(got.ConnectionOptions.DialOptions) != 1 || got.DataConverter != nil {
		t.Fatalf("options: %+v", got)
	}
	g.TLS = "maybe"
	if _, err := h.f.connect(context.Background(), &g); err == nil {
		t.Error("--tls maybe accepted")
	}
	bad := defaultGlobals(func(k string) string {
		if k == "TEMPORAL_TLS" {
			return "sure"
		}
		return ""
	})
	if _, err := h.f.connect(context.Background(), &bad); err == nil || !strings.Contains(err.Error(), "TEMPORAL_TLS") {
		t.Errorf("bad TEMPORAL_TLS: %v", err)
	}
}
