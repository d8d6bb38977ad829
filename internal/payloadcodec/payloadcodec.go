// Package payloadcodec encrypts Temporal payloads with AES-256-GCM so that
// workflow histories (params, outputs, error texts, memos) hold ciphertext
// rather than plain values. It is a converter.PayloadCodec: the worker wraps
// its data converter with it (converter.NewCodecDataConverter), the CLI
// applies it to gRPC traffic, and `stagehand codec-server` serves it to the
// Temporal UI.
//
// Keys have ids so they can rotate: Encode always uses the first (newest)
// key and records its id in the payload's metadata; Decode picks the key by
// that id, so histories written under an older key still read while that
// key stays listed. A payload that is not encrypted passes through Decode
// unchanged, so histories written before the codec was switched on still
// read too. That makes the codec a matter of confidentiality only: a client
// without the keys can still send plain payloads (start params, signals,
// updates), as it could with no codec at all. Who may start or signal runs
// is decided by Temporal's authorization and the worker's checks, not here.
//
// Key material is 32 random bytes, written as 64 hex digits or as standard
// base64 (`openssl rand -base64 32`), and comes from a secret reference
// (env:NAME, secret:NAME/KEY); it never appears in an error.
package payloadcodec

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"
	"google.golang.org/protobuf/proto"

	"github.com/stagehand-dev/stagehand/activities/secrets"
)

const (
	// Encoding is the metadata "encoding" value of an encrypted payload.
	Encoding = "binary/encrypted"
	// MetadataKeyID names the key that encrypted a payload.
	MetadataKeyID = "encryption-key-id"
	// KeySize is the AES-256 key length in bytes.
	KeySize = 32
	// maxKeys bounds the key list: rotation needs the current key and the
	// few still found in live histories, not hundreds.
	maxKeys = 16
	// maxKeyIDLen bounds the id stored in every payload's metadata.
	maxKeyIDLen = 64
)

// ErrUnknownKey is returned (wrapped) when a payload names a key id the codec
// does not hold.
var ErrUnknownKey = errors.New("unknown encryption key id")

// Key is one AES-256 key and its id.
type Key struct {
	ID     string
	Secret []byte
}

// KeyRef is a key as configuration names it: an id and a secret reference
// to its material. In a list, the first is the newest.
type KeyRef struct {
	ID  string `yaml:"id" json:"id"`
	Ref string `yaml:"ref" json:"ref"`
}

// Codec is an AES-256-GCM converter.PayloadCodec.
type Codec struct {
	newest string
	aeads  map[string]cipher.AEAD
}

var _ converter.PayloadCodec = (*Codec)(nil)

// New builds a codec from keys, newest first. Ids must be unique, non-empty
// and printable; every secret must be exactly 32 bytes.
func New(keys []Key) (*Codec, error) {
	if len(keys) == 0 {
		return nil, errors.New("payload codec: no keys")
	}
	if len(keys) > maxKeys {
		return nil, fmt.Errorf("payload codec: %d keys, at most %d", len(keys), maxKeys)
	}
	c := &Codec{newest: keys[0].ID, aeads: make(map[string]cipher.AEAD, len(keys))}
	for i, k := range keys {
		if err := checkKeyID(k.ID); err != nil {
			return nil, fmt.Errorf("payload codec: key %d: %w", i+1, err)
		}
		if _, dup := c.aeads[k.ID]; dup {
			return nil, fmt.Errorf("payload codec: key id %q listed twice", k.ID)
		}
		if len(k.Secret) != KeySize {
			return nil, fmt.Errorf("payload codec: key %q is %d bytes, want %d (AES-256)", k.ID, len(k.Secret), KeySize)
		}
		block, err := aes.NewCipher(k.Secret)
		if err != nil {
			return nil, fmt.Errorf("payload codec: key %q: %w", k.ID, err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("payload codec: key %q: %w", k.ID, err)
		}
		c.aeads[k.ID] = aead
	}
	return c, nil
}

func checkKeyID(id string) error {
	if id == "" {
		return errors.New("empty key id")
	}
	if len(id) > maxKeyIDLen {
		return fmt.Errorf("key id longer than %d characters", maxKeyIDLen)
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return fmt.Errorf("key id %q: only letters, digits, '-', '_' and '.' are allowed", id)
		}
	}
	return nil
}

// NewestKeyID is the id Encode uses.
func (c *Codec) NewestKeyID() string { return c.newest }

// Encode encrypts each payload (its metadata and data, marshalled as a
// whole) with the newest key. The key id is also the AEAD's additional
// data, so a payload relabelled with another id fails to decrypt rather
// than decrypting under the wrong key's name.
func (c *Codec) Encode(payloads []*commonpb.Payload) ([]*commonpb.Payload, error) {
	aead := c.aeads[c.newest]
	out := make([]*commonpb.Payload, len(payloads))
	for i, p := range payloads {
		plain, err := proto.Marshal(p)
		if err != nil {
			return payloads, fmt.Errorf("payload codec: marshal payload: %w", err)
		}
		nonce := make([]byte, aead.NonceSize())
		if _, err := rand.Read(nonce); err != nil {
			return payloads, fmt.Errorf("payload codec: nonce: %w", err)
		}
		out[i] = &commonpb.Payload{
			Metadata: map[string][]byte{
				converter.MetadataEncoding: []byte(Encoding),
				MetadataKeyID:              []byte(c.newest),
			},
			Data: aead.Seal(nonce, nonce, plain, []byte(c.newest)),
		}
	}
	return out, nil
}

// Decode decrypts encrypted payloads with the key their metadata names and
// passes any other payload through unchanged.
func (c *Codec) Decode(payloads []*commonpb.Payload) ([]*commonpb.Payload, error) {
	out := make([]*commonpb.Payload, len(payloads))
	for i, p := range payloads {
		if string(p.GetMetadata()[converter.MetadataEncoding]) != Encoding {
			out[i] = p
			continue
		}
		id := string(p.GetMetadata()[MetadataKeyID])
		aead, ok := c.aeads[id]
		if !ok {
			// The id is whatever the payload's writer put there: say
			// no more of it than a real id can be long.
			shown := id
			if len(shown) > maxKeyIDLen {
				shown = shown[:maxKeyIDLen] + "…"
			}
			return payloads, fmt.Errorf("payload codec: payload encrypted with key id %q, which this codec does not hold (it has %s): %w",
				shown, strings.Join(c.ids(), ", "), ErrUnknownKey)
		}
		data := p.GetData()
		if len(data) < aead.NonceSize()+aead.Overhead() {
			return payloads, fmt.Errorf("payload codec: encrypted payload (key %q) is truncated", id)
		}
		plain, err := aead.Open(nil, data[:aead.NonceSize()], data[aead.NonceSize():], []byte(id))
		if err != nil {
			return payloads, fmt.Errorf("payload codec: payload (key %q) does not decrypt: altered, or encrypted with other key material under the same id", id)
		}
		var dec commonpb.Payload
		if err := proto.Unmarshal(plain, &dec); err != nil {
			return payloads, fmt.Errorf("payload codec: decrypted payload (key %q) does not parse: %w", id, err)
		}
		out[i] = &dec
	}
	return out, nil
}

func (c *Codec) ids() []string {
	ids := make([]string, 0, len(c.aeads))
	ids = append(ids, c.newest)
	for id := range c.aeads {
		if id != c.newest {
			ids = append(ids, id)
		}
	}
	return ids
}

// Load resolves each reference with resolve (nil: env:NAME only) and
// builds the codec, newest first. Errors name the key id and the
// reference, never the material.
func Load(ctx context.Context, resolve secrets.Resolver, refs []KeyRef) (*Codec, error) {
	if len(refs) == 0 {
		return nil, errors.New("payload codec: no keys configured")
	}
	keys := make([]Key, 0, len(refs))
	for i, r := range refs {
		if r.ID == "" || r.Ref == "" {
			return nil, fmt.Errorf("payload codec: key %d needs both id and ref", i+1)
		}
		v, err := secrets.Resolve(ctx, resolve, r.Ref)
		if err != nil {
			return nil, fmt.Errorf("payload codec: key %q: %w", r.ID, err)
		}
		secret, err := ParseKeyMaterial(v)
		if err != nil {
			return nil, fmt.Errorf("payload codec: key %q (%s): %w", r.ID, r.Ref, err)
		}
		keys = append(keys, Key{ID: r.ID, Secret: secret})
	}
	return New(keys)
}

// ParseKeyMaterial reads 32 bytes written as 64 hex digits or as standard
// (or URL-safe) base64. Surrounding white space (a trailing newline in a
// file or Secret) is ignored. The error never repeats the input.
func ParseKeyMaterial(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if len(s) == 2*KeySize {
		if b, err := hex.DecodeString(s); err == nil {
			return b, nil
		}
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil && len(b) == KeySize {
			return b, nil
		}
	}
	return nil, fmt.Errorf("key material is not %d bytes as 64 hex digits or base64 (make one with `openssl rand -base64 32`)", KeySize)
}

// ParseKeyRefs reads the compact form used in environment variables and
// flags: "k2=env:CODEC_KEY_2,k1=env:CODEC_KEY_1", newest first.
func ParseKeyRefs(s string) ([]KeyRef, error) {
	var refs []KeyRef
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		id, ref, ok := strings.Cut(item, "=")
		if !ok || id == "" || ref == "" {
			return nil, fmt.Errorf("codec key %q: want ID=REF, e.g. k1=env:STAGEHAND_CODEC_KEY_1", item)
		}
		refs = append(refs, KeyRef{ID: strings.TrimSpace(id), Ref: strings.TrimSpace(ref)})
	}
	if len(refs) == 0 {
		return nil, errors.New("no codec keys in list")
	}
	return refs, nil
}
