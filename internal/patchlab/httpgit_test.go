package patchlab

import (
	"encoding/base64"
	"os/exec"
	"strings"
	"testing"

	"github.com/stagehand-dev/stagehand/internal/localenv"
)

// The HTTP remote is real git smart HTTP and refuses anyone without the
// token, so a run that merges through it proves the token was sent.
func TestHTTPRemoteNeedsToken(t *testing.T) {
	localenv.SkipIfShort(t, "git remotes")
	r, err := NewRemote(t.TempDir(), 42)
	if err != nil {
		t.Fatal(err)
	}
	const token = "tok-for-the-http-remote-test"
	h, err := r.ServeHTTP(token)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = h.Close() }()
	lsRemote := func(header string) (string, error) {
		args := []string{"-c", "credential.helper="}
		if header != "" {
			args = append(args, "-c", "http.extraHeader=Authorization: Basic "+base64.StdEncoding.EncodeToString([]byte(header)))
		}
		cmd := exec.Command("git", append(args, "ls-remote", h.URL, "refs/heads/pr-42")...)
		cmd.Env = append(cmd.Environ(), "GIT_TERMINAL_PROMPT=0", "GIT_CONFIG_NOSYSTEM=1")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := lsRemote(""); err == nil {
		t.Errorf("ls-remote without a token succeeded: %s", out)
	}
	if out, err := lsRemote("x-access-token:wrong"); err == nil {
		t.Errorf("ls-remote with a wrong token succeeded: %s", out)
	}
	if h.Refused.Load() < 2 {
		t.Errorf("refused %d requests, want at least 2", h.Refused.Load())
	}
	out, err := lsRemote("x-access-token:" + token)
	if err != nil || !strings.HasPrefix(out, r.PRHead) {
		t.Errorf("ls-remote with the token: %v: %q, want %s", err, out, r.PRHead)
	}
}
