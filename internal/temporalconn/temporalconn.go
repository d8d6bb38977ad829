// Package temporalconn turns Stagehand's connection settings (address,
// namespace, TLS or mutual TLS, an API key, the payload codec) into the
// Temporal SDK's client.Options, the same way for the worker and the CLI.
//
// Environment variables follow the Temporal SDK's envconfig and the
// temporal CLI (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_TLS,
// TEMPORAL_TLS_CLIENT_CERT_PATH, TEMPORAL_TLS_CLIENT_KEY_PATH,
// TEMPORAL_TLS_SERVER_CA_CERT_PATH, TEMPORAL_TLS_SERVER_NAME,
// TEMPORAL_API_KEY), so one environment serves `temporal`, the worker and
// `stagehand`. The API key itself is never stored: configuration holds a
// secret reference (env:NAME, secret:NAME/KEY) and TEMPORAL_API_KEY becomes
// the reference env:TEMPORAL_API_KEY. Disabling host verification is not
// offered: a test CA and TEMPORAL_TLS_SERVER_NAME cover every legitimate
// case.
package temporalconn

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/stagehand-dev/stagehand/activities/secrets"
	"github.com/stagehand-dev/stagehand/internal/payloadcodec"
)

// Environment variables read by ApplyEnv. The TEMPORAL_* names are the
// SDK's (go.temporal.io/sdk/contrib/envconfig); the codec's is ours.
const (
	EnvAddress    = "TEMPORAL_ADDRESS"
	EnvNamespace  = "TEMPORAL_NAMESPACE"
	EnvTLS        = "TEMPORAL_TLS"
	EnvCert       = "TEMPORAL_TLS_CLIENT_CERT_PATH"
	EnvKey        = "TEMPORAL_TLS_CLIENT_KEY_PATH"
	EnvCA         = "TEMPORAL_TLS_SERVER_CA_CERT_PATH"
	EnvServerName = "TEMPORAL_TLS_SERVER_NAME"
	EnvAPIKey     = "TEMPORAL_API_KEY"
	// EnvCodecKeys lists codec keys as ID=REF pairs, newest first:
	// "k2=env:STAGEHAND_CODEC_KEY_2,k1=env:STAGEHAND_CODEC_KEY_1".
	EnvCodecKeys = "STAGEHAND_CODEC_KEYS"
	// envDisableHostVerification is refused rather than ignored, so a
	// setting copied from another tool does not silently mean something else.
	envDisableHostVerification = "TEMPORAL_TLS_DISABLE_HOST_VERIFICATION"
)

// TLS configures the connection's TLS. With every field empty the
// connection is plain gRPC, unless an API key is set (API keys are only
// ever sent over TLS unless Enabled is explicitly false).
type TLS struct {
	// Enabled forces TLS on (true) or off (false); unset means "on when a
	// certificate, CA, server name or API key is configured".
	Enabled *bool `yaml:"enabled,omitempty" json:"enabled,omitempty"`
	// CertFile and KeyFile are the client certificate and key (PEM) for
	// mutual TLS.
	CertFile string `yaml:"certFile,omitempty" json:"certFile,omitempty"`
	KeyFile  string `yaml:"keyFile,omitempty" json:"keyFile,omitempty"`
	// CAFile holds the CA certificates (PEM) the server's certificate must
	// chain to; empty means the system's roots (Temporal Cloud).
	CAFile string `yaml:"caFile,omitempty" json:"caFile,omitempty"`
	// ServerName is the name expected in the server's certificate when it
	// differs from the address's host.
	ServerName string `yaml:"serverName,omitempty" json:"serverName,omitempty"`
}

// Codec lists the payload codec's keys, newest first. No keys: no codec.
type Codec struct {
	Keys []payloadcodec.KeyRef `yaml:"keys,omitempty" json:"keys,omitempty"`
}

// Options is everything needed to connect to Temporal.
type Options struct {
	Address   string
	Namespace string
	TLS       TLS
	// APIKeyRef is a secret reference to an API key, sent as
	// "authorization: Bearer <key>" on every call.
	APIKeyRef string
	Codec     Codec
}

// ApplyEnv overrides o with the environment variables that are set and
// non-empty. An unparsable value is an error naming the variable.
func (o *Options) ApplyEnv(getenv func(string) string) error {
	set := func(dst *string, key string) {
		if v := getenv(key); v != "" {
			*dst = v
		}
	}
	set(&o.Address, EnvAddress)
	set(&o.Namespace, EnvNamespace)
	set(&o.TLS.CertFile, EnvCert)
	set(&o.TLS.KeyFile, EnvKey)
	set(&o.TLS.CAFile, EnvCA)
	set(&o.TLS.ServerName, EnvServerName)
	if getenv(EnvAPIKey) != "" {
		o.APIKeyRef = "env:" + EnvAPIKey
	}
	var problems []string
	if v := getenv(EnvTLS); v != "" {
		switch strings.ToLower(v) {
		case "1", "true":
			o.TLS.Enabled = ptr(true)
		case "0", "false":
			o.TLS.Enabled = ptr(false)
		default:
			problems = append(problems, fmt.Sprintf("%s=%q: want true or false", EnvTLS, v))
		}
	}
	if v := strings.ToLower(getenv(envDisableHostVerification)); v == "1" || v == "true" {
		problems = append(problems, fmt.Sprintf("%s is not supported: give the server's CA (%s) and name (%s) instead", envDisableHostVerification, EnvCA, EnvServerName))
	}
	if v := getenv(EnvCodecKeys); v != "" {
		refs, err := payloadcodec.ParseKeyRefs(v)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", EnvCodecKeys, err))
		} else {
			o.Codec.Keys = refs
		}
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

func ptr[T any](v T) *T { return &v }

// TLSEnabled says whether the connection uses TLS.
func (o Options) TLSEnabled() bool {
	if o.TLS.Enabled != nil {
		return *o.TLS.Enabled
	}
	t := o.TLS
	return t.CertFile != "" || t.KeyFile != "" || t.CAFile != "" || t.ServerName != "" || o.APIKeyRef != ""
}

// Validate checks what can be checked without reading files or secrets;
// messages name the worker config's keys (temporal.tls...).
func (o Options) Validate() []string {
	var problems []string
	t := o.TLS
	if (t.CertFile == "") != (t.KeyFile == "") {
		problems = append(problems, "temporal.tls: certFile and keyFile go together (mutual TLS needs both)")
	}
	if t.Enabled != nil && !*t.Enabled && (t.CertFile != "" || t.KeyFile != "" || t.CAFile != "" || t.ServerName != "") {
		problems = append(problems, "temporal.tls: enabled is false but certificate, CA or server name settings are given")
	}
	if o.APIKeyRef != "" && !strings.Contains(o.APIKeyRef, ":") {
		// The value is not repeated: it may be the key pasted by mistake.
		problems = append(problems, "temporal.apiKeyRef is not a secret reference (env:NAME or secret:NAME/KEY); the key itself never goes in the config")
	}
	seen := map[string]bool{}
	for i, k := range o.Codec.Keys {
		switch {
		case k.ID == "" || k.Ref == "":
			problems = append(problems, fmt.Sprintf("temporal.codec.keys[%d]: needs both id and ref", i))
		case seen[k.ID]:
			problems = append(problems, fmt.Sprintf("temporal.codec.keys[%d]: id %q listed twice", i, k.ID))
		case !strings.Contains(k.Ref, ":"):
			problems = append(problems, fmt.Sprintf("temporal.codec.keys[%d] (%s): ref must be a secret reference such as env:NAME", i, k.ID))
		}
		seen[k.ID] = true
	}
	return problems
}

// Mode chooses where the codec applies.
type Mode int

const (
	// ForWorker wraps the data converter and failure converter with the
	// codec, the way workers must (workflow code sees decoded values).
	ForWorker Mode = iota
	// ForCLI applies the codec to the gRPC traffic instead, so every
	// payload the CLI reads (history events, memos, query results,
	// failures) arrives decoded and code that decodes history with the
	// default converter works unchanged.
	ForCLI
)

// ClientOptions builds client.Options: TLS (at least TLS 1.2, the CA pool,
// the client certificate), the API key credentials and the codec. resolve
// resolves secret references (nil: env:NAME only). Errors name the file or
// reference that failed, never key material.
func (o Options) ClientOptions(ctx context.Context, resolve secrets.Resolver, mode Mode) (client.Options, error) {
	if problems := o.Validate(); len(problems) > 0 {
		return client.Options{}, errors.New(strings.Join(problems, "; "))
	}
	opts := client.Options{HostPort: o.Address, Namespace: o.Namespace}
	if o.TLSEnabled() {
		cfg, err := o.TLS.config()
		if err != nil {
			return client.Options{}, err
		}
		opts.ConnectionOptions.TLS = cfg
	}
	if o.APIKeyRef != "" {
		key, err := secrets.Resolve(ctx, resolve, o.APIKeyRef)
		if err != nil {
			return client.Options{}, fmt.Errorf("temporal API key: %w", err)
		}
		opts.Credentials = client.NewAPIKeyStaticCredentials(strings.TrimSpace(key))
	}
	if len(o.Codec.Keys) > 0 {
		codec, err := payloadcodec.Load(ctx, resolve, o.Codec.Keys)
		if err != nil {
			return client.Options{}, err
		}
		if err := applyCodec(&opts, codec, mode); err != nil {
			return client.Options{}, err
		}
	}
	return opts, nil
}

// applyCodec installs codec. Failures get EncodeCommonAttributes, so error
// messages and stack traces travel inside the encrypted attributes instead
// of in the failure's clear-text message.
func applyCodec(opts *client.Options, codec converter.PayloadCodec, mode Mode) error {
	switch mode {
	case ForWorker:
		dc := converter.NewCodecDataConverter(converter.GetDefaultDataConverter(), codec)
		opts.DataConverter = dc
		opts.FailureConverter = temporal.NewDefaultFailureConverter(temporal.DefaultFailureConverterOptions{
			DataConverter:          dc,
			EncodeCommonAttributes: true,
		})
	case ForCLI:
		// The failure interceptor comes first in the chain, as the SDK
		// requires: inbound, payloads are decrypted before the failure's
		// attributes are read back into its message.
		failures, err := converter.NewFailureGRPCClientInterceptor(converter.NewFailureGRPCClientInterceptorOptions{EncodeCommonAttributes: true})
		if err != nil {
			return err
		}
		payloads, err := converter.NewPayloadCodecGRPCClientInterceptor(converter.PayloadCodecGRPCClientInterceptorOptions{Codecs: []converter.PayloadCodec{markedCodec{codec}}})
		if err != nil {
			return err
		}
		opts.ConnectionOptions.DialOptions = append(opts.ConnectionOptions.DialOptions,
			grpc.WithChainUnaryInterceptor(codecErrorStatus, failures, payloads))
	default:
		return fmt.Errorf("temporalconn: unknown mode %d", mode)
	}
	return nil
}

// markedCodec marks the codec's errors so codecErrorStatus can tell them
// from transport errors.
type markedCodec struct{ converter.PayloadCodec }

type codecError struct{ err error }

func (e codecError) Error() string { return e.err.Error() }
func (e codecError) Unwrap() error { return e.err }

func (c markedCodec) Encode(ps []*commonpb.Payload) ([]*commonpb.Payload, error) {
	out, err := c.PayloadCodec.Encode(ps)
	if err != nil {
		return out, codecError{err}
	}
	return out, nil
}

func (c markedCodec) Decode(ps []*commonpb.Payload) ([]*commonpb.Payload, error) {
	out, err := c.PayloadCodec.Decode(ps)
	if err != nil {
		return out, codecError{err}
	}
	return out, nil
}

// codecErrorStatus turns a codec failure (an unknown key id, a tampered
// payload) into a non-retryable gRPC status. Left as a plain error, the
// SDK would retry the call until its deadline and report only "context
// deadline exceeded", hiding which key is missing.
func codecErrorStatus(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	err := invoker(ctx, method, req, reply, cc, opts...)
	var ce codecError
	if errors.As(err, &ce) {
		return status.Error(codes.InvalidArgument, ce.Error())
	}
	return err
}

func (t TLS) config() (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
	if t.CertFile != "" {
		// Read the files ourselves so the error says which one failed;
		// tls.LoadX509KeyPair's messages do not always.
		certPEM, err := os.ReadFile(t.CertFile)
		if err != nil {
			return nil, fmt.Errorf("temporal TLS client certificate: %w", err)
		}
		keyPEM, err := os.ReadFile(t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("temporal TLS client key: %w", err)
		}
		cert, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			// The crypto/tls error describes the PEM structure, not its
			// content, so it is safe to pass on.
			return nil, fmt.Errorf("temporal TLS client certificate %s and key %s do not form a key pair: %v", t.CertFile, t.KeyFile, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	if t.CAFile != "" {
		caPEM, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("temporal TLS server CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(caPEM) {
			return nil, fmt.Errorf("temporal TLS server CA %s holds no PEM certificate", t.CAFile)
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}

// Describe is a one-line summary of the connection for logs and errors:
// the address, namespace, and which of TLS, client certificate, API key and
// codec are on (never their values).
func (o Options) Describe() string {
	var parts []string
	if o.TLSEnabled() {
		parts = append(parts, "TLS")
		if o.TLS.CertFile != "" {
			parts = append(parts, "client certificate "+o.TLS.CertFile)
		}
	} else {
		parts = append(parts, "plain gRPC")
	}
	if o.APIKeyRef != "" {
		parts = append(parts, "API key from "+o.APIKeyRef)
	}
	if len(o.Codec.Keys) > 0 {
		parts = append(parts, "payload codec (newest key "+o.Codec.Keys[0].ID+")")
	}
	return fmt.Sprintf("%s (namespace %s; %s)", o.Address, o.Namespace, strings.Join(parts, ", "))
}

// DialHint returns a sentence to append to a failed dial's error, naming
// the setting that most likely fixes it, or "" when there is no better
// guess than the error itself. TLS failures show up as terse transport
// errors ("broken pipe", "connection closed before server preface
// received"), which say nothing about certificates.
func (o Options) DialHint(err error) string {
	if err == nil {
		return ""
	}
	msg := err.Error()
	has := func(subs ...string) bool {
		for _, s := range subs {
			if strings.Contains(msg, s) {
				return true
			}
		}
		return false
	}
	switch {
	case has("certificate signed by unknown authority", "certificate is not trusted"):
		ca := "the system's roots"
		if o.TLS.CAFile != "" {
			ca = o.TLS.CAFile
		}
		return fmt.Sprintf("the server's certificate is not signed by a CA in %s: set temporal.tls.caFile (%s) to the CA that signed it", ca, EnvCA)
	case has("certificate is valid for", "doesn't contain any IP SANs", "not valid for"):
		return fmt.Sprintf("the server's certificate does not name the host dialled: set temporal.tls.serverName (%s) to a name it holds", EnvServerName)
	case !o.TLSEnabled() && has("connection closed before server preface", "EOF", "connection reset", "first record does not look like a TLS handshake"):
		return fmt.Sprintf("the server may require TLS: set temporal.tls.caFile (%s) or TEMPORAL_TLS=true", EnvCA)
	case o.TLSEnabled() && has("first record does not look like a TLS handshake", "server gave HTTP response"):
		return fmt.Sprintf("the server does not speak TLS: leave temporal.tls unset (or %s=false)", EnvTLS)
	case o.TLSEnabled() && o.TLS.CertFile == "" && has("certificate required", "bad certificate", "broken pipe", "connection reset", "EOF"):
		return fmt.Sprintf("the server may require a client certificate (mutual TLS): set temporal.tls.certFile and keyFile (%s, %s)", EnvCert, EnvKey)
	case o.TLSEnabled() && o.TLS.CertFile != "" && has("bad certificate", "unknown certificate authority", "certificate required", "broken pipe", "connection reset"):
		return fmt.Sprintf("the server refused the client certificate %s: it must be signed by a CA the server trusts for clients", o.TLS.CertFile)
	case has("Unauthenticated", "PermissionDenied", "lacks the expected API key", "authorization"):
		return fmt.Sprintf("the server refused the credentials: check temporal.apiKeyRef (%s)", EnvAPIKey)
	}
	return ""
}
