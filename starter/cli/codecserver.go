package cli

import (
	"context"
	"crypto/subtle"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.temporal.io/sdk/converter"

	"github.com/stagehand-dev/stagehand/activities/secrets"
	"github.com/stagehand-dev/stagehand/internal/payloadcodec"
)

// CodecServerOptions are the inputs of `stagehand codec-server`.
type CodecServerOptions struct {
	Listen       string
	UIOrigins    []string
	AuthTokenRef string
	// NoAuth serves without the Authorization check; allowed only on a
	// loopback address (a local dev UI without login cannot send a token).
	NoAuth bool
}

// maxCodecBody bounds one /encode or /decode request: the UI batches a
// page of payloads, each at most a few MB (Temporal's own blob limit).
const maxCodecBody = 16 << 20

func newCodecServerCmd(f *Factory, g *GlobalOptions) *cobra.Command {
	opts := &CodecServerOptions{}
	cmd := &cobra.Command{
		Use:   "codec-server",
		Short: "Serve the payload codec over HTTP so the Temporal UI shows decrypted payloads",
		Long: `Serve Stagehand's payload codec (AES-256-GCM, keys from --codec-keys or
STAGEHAND_CODEC_KEYS) at /encode and /decode, the remote codec protocol of
the Temporal UI and CLI. Histories stay encrypted on the server; whoever
may call this endpoint sees them decrypted, so it checks the Authorization
header against a token from --auth-token-ref on every request (401
otherwise) and answers browsers only from the --ui-origin(s) (CORS,
including the preflight with Authorization and X-Namespace headers).

Point the Temporal UI at it:
  - dev server:  temporal server start-dev --ui-codec-endpoint http://127.0.0.1:8081
  - UI server:   TEMPORAL_CODEC_ENDPOINT=http://127.0.0.1:8081 (codec.endpoint); with UI
                 login on, TEMPORAL_CODEC_PASS_ACCESS_TOKEN=true makes the UI send the
                 user's access token as Authorization (this server compares it with
                 the --auth-token-ref token, so put an auth proxy that maps users to
                 it in front, or use --no-auth locally)
  - per user:    the UI's "Configure data encoder" dialog (top right) takes the
                 endpoint for one browser
The temporal CLI decodes through it too:
  temporal workflow show -w RUN --codec-endpoint http://127.0.0.1:8081 --codec-auth "$TOKEN"

A local UI without login sends no token; for that case only, --no-auth
serves without the check, and only on a loopback address.`,
		Example: `  export STAGEHAND_CODEC_KEYS=k1=env:STAGEHAND_CODEC_KEY_1 STAGEHAND_CODEC_AUTH=$(openssl rand -hex 16)
  stagehand codec-server --ui-origin http://localhost:8233 --auth-token-ref env:STAGEHAND_CODEC_AUTH`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runCodecServer(cmd.Context(), f, g, opts)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&opts.Listen, "listen", "127.0.0.1:8081", "address to serve on")
	fl.StringSliceVar(&opts.UIOrigins, "ui-origin", []string{"http://localhost:8233"}, "origin of the Temporal UI allowed to call from a browser (repeatable)")
	fl.StringVar(&opts.AuthTokenRef, "auth-token-ref", "env:STAGEHAND_CODEC_AUTH", "secret reference to the token every request's Authorization header must carry (as is or after 'Bearer ')")
	fl.BoolVar(&opts.NoAuth, "no-auth", false, "serve without the Authorization check (loopback --listen only; for a local UI without login)")
	return cmd
}

func runCodecServer(ctx context.Context, f *Factory, g *GlobalOptions, opts *CodecServerOptions) error {
	conn, err := g.conn()
	if err != nil {
		return usageError("%v", err)
	}
	if len(conn.Codec.Keys) == 0 {
		return usageError("codec-server needs the codec keys: --codec-keys ID=REF,... or STAGEHAND_CODEC_KEYS")
	}
	codec, err := payloadcodec.Load(ctx, f.resolveSecret, conn.Codec.Keys)
	if err != nil {
		return usageError("%v", err)
	}
	var token string
	if opts.NoAuth {
		host, _, err := net.SplitHostPort(opts.Listen)
		if ip := net.ParseIP(host); err != nil || (host != "localhost" && (ip == nil || !ip.IsLoopback())) {
			return usageError("--no-auth is allowed only on a loopback --listen address (127.0.0.1, ::1, localhost), not %q", opts.Listen)
		}
	} else {
		if token, err = secrets.Resolve(ctx, f.resolveSecret, opts.AuthTokenRef); err != nil {
			return usageError("--auth-token-ref: %v (or --no-auth for a loopback-only dev setup)", err)
		}
	}
	handler, err := NewCodecHandler(codec, token, opts.UIOrigins)
	if err != nil {
		return usageError("%v", err)
	}
	ln, err := net.Listen("tcp", opts.Listen)
	if err != nil {
		return usageError("codec-server: --listen: %v", err)
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute, WriteTimeout: time.Minute}
	auth := "Authorization checked against " + opts.AuthTokenRef
	if opts.NoAuth {
		auth = "NO Authorization check (--no-auth)"
	}
	fmt.Fprintf(f.IO.ErrOut, "codec server on http://%s (newest key %s; UI origins %s; %s)\n",
		ln.Addr(), codec.NewestKeyID(), strings.Join(opts.UIOrigins, ", "), auth)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return usageError("codec-server: %v", err)
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		return nil
	}
}

// NewCodecHandler serves codec at /encode and /decode (any path prefix) with
// CORS for origins and, when token is non-empty, an Authorization check:
// the header must equal token or "Bearer "+token. Preflight requests
// (OPTIONS) carry no credentials by design, so they are answered without
// the check but only for an allowed origin.
func NewCodecHandler(codec converter.PayloadCodec, token string, origins []string) (http.Handler, error) {
	allowed := map[string]bool{}
	for _, o := range origins {
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
			return nil, fmt.Errorf("--ui-origin %q: want scheme://host[:port], e.g. http://localhost:8233", o)
		}
		allowed[strings.TrimSuffix(o, "/")] = true
	}
	inner := converter.NewPayloadCodecHTTPHandler(codec)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		if origin != "" {
			if !allowed[origin] {
				http.Error(w, "origin not allowed", http.StatusForbidden)
				return
			}
			h := w.Header()
			h.Set("Access-Control-Allow-Origin", origin)
			h.Set("Access-Control-Allow-Credentials", "true")
			h.Add("Vary", "Origin")
		}
		if r.Method == http.MethodOptions {
			if origin == "" {
				http.Error(w, "preflight without Origin", http.StatusBadRequest)
				return
			}
			h := w.Header()
			h.Set("Access-Control-Allow-Methods", "POST, OPTIONS")
			h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, X-Namespace")
			h.Set("Access-Control-Max-Age", "600")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", "POST, OPTIONS")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		if token != "" && !tokenMatches(r.Header.Get("Authorization"), token) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="stagehand codec"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxCodecBody)
		inner.ServeHTTP(w, r)
	}), nil
}

func tokenMatches(header, token string) bool {
	got := strings.TrimSpace(header)
	if b, ok := strings.CutPrefix(got, "Bearer "); ok {
		got = strings.TrimSpace(b)
	}
	return subtle.ConstantTimeCompare([]byte(got), []byte(token)) == 1
}
