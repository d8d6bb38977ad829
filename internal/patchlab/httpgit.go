package patchlab

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/cgi"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"
)

// HTTPRemote serves a Remote over git's smart HTTP protocol (the real
// git-http-backend behind a CGI handler) and refuses every request that
// does not carry the token as HTTPS remotes on GitHub expect it: basic auth
// with any user name and the token as password. It lets a run use a
// tokenRef against a real remote, so tests can follow the token.
type HTTPRemote struct {
	// URL is the repository's address, without credentials.
	URL string
	// Refused counts requests turned away for a missing or wrong token.
	Refused atomic.Int64

	srv *http.Server
	ln  net.Listener
}

// ServeHTTP starts serving r on 127.0.0.1; Close stops it. Pushes run the
// remote's hooks (the CI stand-in) as a push to the directory would.
func (r *Remote) ServeHTTP(token string) (*HTTPRemote, error) {
	if token == "" {
		return nil, errors.New("serve git over HTTP: empty token")
	}
	out, err := exec.Command("git", "--exec-path").Output()
	if err != nil {
		return nil, fmt.Errorf("find git-http-backend: git --exec-path: %w", err)
	}
	backend := filepath.Join(strings.TrimSpace(string(out)), "git-http-backend")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	h := &HTTPRemote{ln: ln, URL: fmt.Sprintf("http://%s/%s", ln.Addr(), filepath.Base(r.Dir))}
	cgiHandler := &cgi.Handler{
		Path: backend,
		Env: []string{
			"GIT_PROJECT_ROOT=" + filepath.Dir(r.Dir),
			"GIT_HTTP_EXPORT_ALL=1",
			// http-backend allows receive-pack only to authenticated users.
			"REMOTE_USER=stagehand",
			"GIT_CONFIG_NOSYSTEM=1",
		},
		InheritEnv: []string{"PATH", "HOME"},
	}
	h.srv = &http.Server{
		ReadHeaderTimeout: 10 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			_, pw, ok := req.BasicAuth()
			if !ok || subtle.ConstantTimeCompare([]byte(pw), []byte(token)) != 1 {
				h.Refused.Add(1)
				w.Header().Set("WWW-Authenticate", `Basic realm="patchlab"`)
				http.Error(w, "token required", http.StatusUnauthorized)
				return
			}
			cgiHandler.ServeHTTP(w, req)
		}),
	}
	go func() { _ = h.srv.Serve(ln) }()
	return h, nil
}

// Close stops the server.
func (h *HTTPRemote) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return h.srv.Shutdown(ctx)
}
