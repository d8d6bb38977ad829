package payloadcodec

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
)

func key(id string, b byte) Key { return Key{ID: id, Secret: bytes.Repeat([]byte{b}, KeySize)} }

func mustNew(t *testing.T, keys ...Key) *Codec {
	t.Helper()
	c, err := New(keys)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func plainPayload(t *testing.T, v any) *commonpb.Payload {
	t.Helper()
	p, err := converter.GetDefaultDataConverter().ToPayload(v)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestRoundTrip: encrypted payloads carry no plain text, say which key
// made them, and decode to the original.
func TestRoundTrip(t *testing.T) {
	c := mustNew(t, key("k1", 1))
	in := []*commonpb.Payload{plainPayload(t, "planted-secret-value"), plainPayload(t, map[string]int{"n": 42})}
	enc, err := c.Encode(in)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range enc {
		if got := string(p.Metadata[converter.MetadataEncoding]); got != Encoding {
			t.Errorf("encoding = %q, want %q", got, Encoding)
		}
		if got := string(p.Metadata[MetadataKeyID]); got != "k1" {
			t.Errorf("key id = %q", got)
		}
		if bytes.Contains(p.Data, []byte("planted-secret-value")) || bytes.Contains(p.Data, []byte("json/plain")) {
			t.Error("ciphertext contains plain text")
		}
	}
	dec, err := c.Decode(enc)
	if err != nil {
		t.Fatal(err)
	}
	var s string
	if err := converter.GetDefaultDataConverter().FromPayload(dec[0], &s); err != nil || s != "planted-secret-value" {
		t.Fatalf("decoded %q, %v", s, err)
	}
	// Two encodings of the same value differ (random nonce).
	again, _ := c.Encode(in[:1])
	if bytes.Equal(again[0].Data, enc[0].Data) {
		t.Error("same ciphertext twice: nonce reused")
	}
}

// TestRotation: a codec with [k2, k1] reads what k1 wrote and writes with k2;
// one holding only k2 cannot read k1's payloads and says which id is missing.
func TestRotation(t *testing.T) {
	old := mustNew(t, key("k1", 1))
	rotated := mustNew(t, key("k2", 2), key("k1", 1))
	byOld, _ := old.Encode([]*commonpb.Payload{plainPayload(t, "written-under-k1")})
	dec, err := rotated.Decode(byOld)
	if err != nil {
		t.Fatal(err)
	}
	var s string
	_ = converter.GetDefaultDataConverter().FromPayload(dec[0], &s)
	if s != "written-under-k1" {
		t.Fatalf("decoded %q", s)
	}
	byNew, _ := rotated.Encode([]*commonpb.Payload{plainPayload(t, "x")})
	if got := string(byNew[0].Metadata[MetadataKeyID]); got != "k2" {
		t.Errorf("new payload key id = %q, want k2", got)
	}
	onlyNew := mustNew(t, key("k2", 2))
	_, err = onlyNew.Decode(byOld)
	if !errors.Is(err, ErrUnknownKey) || !strings.Contains(err.Error(), `"k1"`) {
		t.Fatalf("decode with retired key: %v, want ErrUnknownKey naming k1", err)
	}
}

// TestTampered: a flipped bit, a truncated payload, or a payload relabelled
// with another key id fails to decode instead of yielding garbage.
func TestTampered(t *testing.T) {
	c := mustNew(t, key("k2", 2), key("k1", 1))
	enc, _ := c.Encode([]*commonpb.Payload{plainPayload(t, "value")})
	flip := &commonpb.Payload{Metadata: enc[0].Metadata, Data: bytes.Clone(enc[0].Data)}
	flip.Data[len(flip.Data)-5] ^= 0x01
	if _, err := c.Decode([]*commonpb.Payload{flip}); err == nil || !strings.Contains(err.Error(), "does not decrypt") {
		t.Errorf("flipped bit: %v", err)
	}
	short := &commonpb.Payload{Metadata: enc[0].Metadata, Data: enc[0].Data[:10]}
	if _, err := c.Decode([]*commonpb.Payload{short}); err == nil || !strings.Contains(err.Error(), "truncated") {
		t.Errorf("truncated: %v", err)
	}
	relabelled := &commonpb.Payload{Metadata: map[string][]byte{
		converter.MetadataEncoding: []byte(Encoding), MetadataKeyID: []byte("k1"),
	}, Data: enc[0].Data}
	if _, err := c.Decode([]*commonpb.Payload{relabelled}); err == nil {
		t.Error("relabelled payload decoded")
	}
}

// TestPassThrough: unencrypted payloads (histories from before the codec)
// decode unchanged.
func TestPassThrough(t *testing.T) {
	c := mustNew(t, key("k1", 1))
	p := plainPayload(t, "old")
	dec, err := c.Decode([]*commonpb.Payload{p})
	if err != nil || dec[0] != p {
		t.Fatalf("plain payload: %v, %v", dec, err)
	}
}

// TestDataConverterAndFailures: through the SDK's codec data converter and
// a failure converter with EncodeCommonAttributes, an error's message lands
// in the encrypted attributes and comes back on decode.
func TestDataConverterAndFailures(t *testing.T) {
	c := mustNew(t, key("k1", 1))
	dc := converter.NewCodecDataConverter(converter.GetDefaultDataConverter(), c)
	fc := temporal.NewDefaultFailureConverter(temporal.DefaultFailureConverterOptions{DataConverter: dc, EncodeCommonAttributes: true})
	f := fc.ErrorToFailure(temporal.NewApplicationError("planted error text", "SomeType"))
	if strings.Contains(f.GetMessage(), "planted") || bytes.Contains(f.GetEncodedAttributes().GetData(), []byte("planted")) {
		t.Fatalf("failure carries the message in clear: %q", f.GetMessage())
	}
	back := fc.FailureToError(f)
	if !strings.Contains(back.Error(), "planted error text") {
		t.Fatalf("decoded failure: %v", back)
	}
}

func TestNewRejects(t *testing.T) {
	for name, keys := range map[string][]Key{
		"none":      nil,
		"short key": {{ID: "k1", Secret: []byte("short")}},
		"dup id":    {key("k1", 1), key("k1", 2)},
		"empty id":  {key("", 1)},
		"bad id":    {key("k 1", 1)},
	} {
		if _, err := New(keys); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestLoad: material from env references, hex or base64; errors name the
// reference and never the material.
func TestLoad(t *testing.T) {
	raw := bytes.Repeat([]byte{7}, KeySize)
	t.Setenv("TEST_CODEC_HEX", hex.EncodeToString(raw))
	t.Setenv("TEST_CODEC_B64", base64.StdEncoding.EncodeToString(raw)+"\n")
	t.Setenv("TEST_CODEC_BAD", "not-a-key-but-a-secretish-string")
	c, err := Load(context.Background(), nil, []KeyRef{{ID: "k2", Ref: "env:TEST_CODEC_HEX"}, {ID: "k1", Ref: "env:TEST_CODEC_B64"}})
	if err != nil {
		t.Fatal(err)
	}
	if c.NewestKeyID() != "k2" {
		t.Errorf("newest = %s", c.NewestKeyID())
	}
	_, err = Load(context.Background(), nil, []KeyRef{{ID: "k1", Ref: "env:TEST_CODEC_BAD"}})
	if err == nil || !strings.Contains(err.Error(), "env:TEST_CODEC_BAD") || strings.Contains(err.Error(), "secretish") {
		t.Fatalf("bad material: %v", err)
	}
	_, err = Load(context.Background(), nil, []KeyRef{{ID: "k1", Ref: "env:TEST_CODEC_UNSET"}})
	if err == nil || !strings.Contains(err.Error(), "TEST_CODEC_UNSET") {
		t.Fatalf("unset: %v", err)
	}
}

func TestParseKeyRefs(t *testing.T) {
	refs, err := ParseKeyRefs("k2=env:A, k1=secret:codec/k1")
	if err != nil || len(refs) != 2 || refs[0] != (KeyRef{"k2", "env:A"}) || refs[1] != (KeyRef{"k1", "secret:codec/k1"}) {
		t.Fatalf("%v %v", refs, err)
	}
	for _, bad := range []string{"", "k1", "=env:A", "k1="} {
		if _, err := ParseKeyRefs(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestUnknownKeyIDBounded: whoever can write to the namespace can plant a
// payload naming any key id; the error (which reaches worker logs and
// failures) names a bounded, printable part of it, not megabytes.
func TestUnknownKeyIDBounded(t *testing.T) {
	c := mustNew(t, key("k1", 1))
	planted := &commonpb.Payload{Metadata: map[string][]byte{
		converter.MetadataEncoding: []byte(Encoding), MetadataKeyID: []byte(strings.Repeat("A", 100_000)),
	}, Data: bytes.Repeat([]byte{0}, 64)}
	_, err := c.Decode([]*commonpb.Payload{planted})
	if !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("planted key id: %v, want ErrUnknownKey", err)
	}
	if n := len(err.Error()); n > 500 {
		t.Errorf("error is %d bytes long; want the planted key id cut short", n)
	}
}
