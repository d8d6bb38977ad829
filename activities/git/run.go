package git

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/stagehand-dev/stagehand/activities"
	"github.com/stagehand-dev/stagehand/activities/secrets"
)

// remote is a parsed remote: the address git is given (never carrying a
// password) and the credentials that travel in git's environment instead.
type remote struct {
	// addr is what goes into argv: a path, scp-like address or URL without
	// a password.
	addr string
	// authHeader, when set, is an HTTP Authorization header value passed to
	// git as http.extraHeader through GIT_CONFIG_* environment variables,
	// so it is in neither argv (world-readable in /proc) nor the cache
	// repository's config.
	authHeader string
	red        *redactor
}

// parseRemote checks a remote and adds the token from tokenRef, if any.
// A remote with credentials in its URL (https://user:pw@host,
// https://TOKEN@host) is refused: the URL is in the run's history, so the
// credential would be too; it belongs in tokenRef. A token for a non-HTTP
// remote is a mistake worth reporting: SSH remotes authenticate with keys.
func parseRemote(raw, token string, red *redactor) (remote, error) {
	r := remote{addr: raw, red: red}
	if strings.HasPrefix(raw, "-") {
		return r, nonRetryable(activities.ErrInvalidArguments, "remote must not start with '-'")
	}
	u, err := url.Parse(raw)
	isHTTP := err == nil && (u.Scheme == "http" || u.Scheme == "https")
	if isHTTP && u.User != nil {
		_, hasPassword := u.User.Password()
		// A user name that long is a token; a short one
		// (https://deploy@host) is a real user name, left for the
		// worker's credential helper.
		if n := u.User.Username(); hasPassword || len(n) >= 20 {
			if pw, ok := u.User.Password(); ok {
				red.add(pw)
			}
			red.add(n)
			return r, nonRetryable(activities.ErrInvalidArguments,
				fmt.Sprintf("remote %s carries credentials in its URL, which would put them in the run's history: "+
					"remove them and pass tokenRef (env:NAME or secret:NAME/KEY) instead", red.clean(raw)))
		}
	}
	if token != "" {
		if !isHTTP {
			return r, nonRetryable(activities.ErrInvalidArguments,
				fmt.Sprintf("tokenRef needs an http(s) remote, not %s", red.clean(raw)))
		}
		red.add(token)
		r.authHeader = "Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte("x-access-token:"+token))
		red.add(r.authHeader)
	}
	return r, nil
}

// remoteFor parses raw and, when tokenRef is set, resolves it for this
// remote's host only (the secret policy refuses any other host), before
// git contacts the remote.
func (a *Activities) remoteFor(ctx context.Context, raw, tokenRef string, red *redactor) (remote, error) {
	rem, err := parseRemote(raw, "", red)
	if err != nil || tokenRef == "" {
		return rem, err
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return rem, nonRetryable(activities.ErrInvalidArguments,
			fmt.Sprintf("tokenRef needs an http(s) remote, not %s", red.clean(raw)))
	}
	host, _ := secrets.URLHost(raw)
	token, err := a.resolveSecret(ctx, tokenRef, secrets.Use{Host: host, Plaintext: u.Scheme == "http"})
	if err != nil {
		return rem, err
	}
	return parseRemote(raw, token, red)
}

// display is the remote as errors show it.
func (r remote) display() string { return r.red.clean(r.addr) }

// env is what every git command of this remote runs with.
func (r remote) env() []string {
	if r.authHeader == "" {
		return nil
	}
	// The policy allowed the token for this remote's host only. git
	// follows a redirect of its first request by default and then sends
	// extraHeader to the new base URL, so an allowed host that redirects
	// elsewhere would carry the token there: no redirects with a token.
	return []string{
		"GIT_CONFIG_COUNT=2",
		"GIT_CONFIG_KEY_0=http.extraHeader",
		"GIT_CONFIG_VALUE_0=" + r.authHeader,
		"GIT_CONFIG_KEY_1=http.followRedirects",
		"GIT_CONFIG_VALUE_1=false",
	}
}

// gitError is a git command that exited non-zero. Its text is scrubbed
// when it is built, so it is safe to print.
type gitError struct {
	sub      string // the subcommand, e.g. "fetch"
	exitCode int
	stderr   string
}

func (e *gitError) Error() string {
	if e.stderr == "" {
		return fmt.Sprintf("git %s: exit status %d", e.sub, e.exitCode)
	}
	return fmt.Sprintf("git %s: %s", e.sub, e.stderr)
}

// stripEnv lists inherited variables that would point git at another
// repository or inject configuration we did not choose (e.g. when the worker
// itself runs under a git hook).
var stripEnv = []string{
	"GIT_DIR=", "GIT_WORK_TREE=", "GIT_INDEX_FILE=", "GIT_OBJECT_DIRECTORY=",
	"GIT_ALTERNATE_OBJECT_DIRECTORIES=", "GIT_CONFIG_COUNT=", "GIT_CONFIG_KEY_",
	"GIT_CONFIG_VALUE_", "GIT_CONFIG_PARAMETERS=", "GIT_NAMESPACE=", "GIT_COMMON_DIR=",
	"LC_ALL=", "LANGUAGE=",
}

func baseEnv() []string {
	var env []string
	hasSSH := false
outer:
	for _, kv := range os.Environ() {
		for _, p := range stripEnv {
			if strings.HasPrefix(kv, p) {
				continue outer
			}
		}
		if strings.HasPrefix(kv, "GIT_SSH_COMMAND=") || strings.HasPrefix(kv, "GIT_SSH=") {
			hasSSH = true
		}
		env = append(env, kv)
	}
	env = append(env,
		// A worker has no terminal: fail instead of waiting for a password.
		"GIT_TERMINAL_PROMPT=0",
		// Messages are matched below (missing refs, rejected pushes).
		"LC_ALL=C",
	)
	if !hasSSH {
		// The SSH equivalent of GIT_TERMINAL_PROMPT=0: no passphrase or
		// host-key prompts.
		env = append(env, "GIT_SSH_COMMAND=ssh -o BatchMode=yes")
	}
	return env
}

// safeConfig comes first in every git command's argv; the command line
// overrides every configuration file.
var safeConfig = []string{"-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false"}

// runOpts are the optional parts of one git invocation.
type runOpts struct {
	dir   string
	env   []string
	stdin string
	red   *redactor
	// minimalEnv runs git with a few of the worker's variables (localEnv)
	// instead of all of them: the local steps run git in directories
	// whose commands (yarn install) are not the worker's, and nothing
	// there needs the worker's credentials.
	minimalEnv bool
}

// localEnv is the environment of a minimalEnv command.
func localEnv() []string {
	env := []string{"GIT_TERMINAL_PROMPT=0", "LC_ALL=C"}
	for _, k := range []string{"PATH", "HOME", "TMPDIR", "LANG"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return env
}

// git runs one git command with argv (no shell) under the command timeout
// and returns its trimmed stdout. A non-zero exit is a *gitError; the exit
// code is returned so callers can tell "no" (1) from "broken" (128).
func (a *Activities) git(ctx context.Context, o runOpts, args ...string) (string, int, error) {
	cmdCtx, cancel := context.WithTimeout(ctx, a.commandTimeout())
	defer cancel()
	// Every git command, not only commit and push: fetch, checkout and
	// update-ref run the reference-transaction hook, and add, diff and
	// status run core.fsmonitor, both with this process's environment
	// (a push's token included). A work tree's .git is writable by the
	// commands a run runs in it, so neither may come from there.
	args = append(append([]string{}, safeConfig...), args...)
	cmd := exec.CommandContext(cmdCtx, a.gitPath(), args...)
	cmd.Dir = o.dir
	cmd.Env = append(baseEnv(), o.env...)
	if o.minimalEnv {
		cmd.Env = append(localEnv(), o.env...)
	}
	if o.stdin != "" {
		cmd.Stdin = strings.NewReader(o.stdin)
	}
	// ssh or a credential helper may inherit the pipes and outlive git;
	// do not wait for them forever once git is gone.
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	out := strings.TrimRight(stdout.String(), "\n")
	if err == nil {
		return out, 0, nil
	}
	red := o.red
	if red == nil {
		red = newRedactor()
	}
	sub := args[0]
	for i := 0; i+2 < len(args) && args[i] == "-c"; i += 2 {
		sub = args[i+2]
	}
	if ctx.Err() != nil {
		// The activity was cancelled or ran out of time: say so as is.
		return out, -1, ctx.Err()
	}
	if cmdCtx.Err() != nil {
		return out, -1, retryable(activities.ErrGitUnavailable,
			fmt.Sprintf("git %s: timed out after %s", sub, time.Since(start).Round(time.Millisecond)))
	}
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) {
		// git itself could not start: a worker without git is broken
		// until someone installs it, so retrying does not help.
		return out, -1, nonRetryable(activities.ErrGitError, fmt.Sprintf("run git %s: %v", sub, err))
	}
	msg := strings.TrimSpace(stderr.String())
	if msg == "" {
		msg = strings.TrimSpace(out)
	}
	return out, exitErr.ExitCode(), &gitError{sub: sub, exitCode: exitErr.ExitCode(), stderr: red.clean(condense(msg, 6))}
}

// gitBoilerplate is advice git prints after every remote failure; it
// says nothing the fatal line above it does not.
var gitBoilerplate = []string{
	"Could not read from remote repository.",
	"Please make sure you have the correct access rights",
	"and the repository exists.",
}

// condense keeps the last n meaningful lines of git's stderr (the fatal
// line is at the end) on one line, so the step error reads as one sentence.
func condense(s string, n int) string {
	var lines []string
outer:
	for _, l := range strings.Split(s, "\n") {
		l = strings.TrimSpace(l)
		if l == "" {
			continue
		}
		for _, b := range gitBoilerplate {
			if strings.Contains(l, b) {
				continue outer
			}
		}
		lines = append(lines, l)
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "; ")
}

// classifyRemote turns a failed fetch, ls-remote or push into a step error:
// what a person can fix (missing repository, bad credentials) is permanent,
// anything else (network, a remote that is down) is worth retrying.
func classifyRemote(what string, err error) error {
	var ge *gitError
	if !errors.As(err, &ge) {
		return err // already a step error, or a cancellation
	}
	s := strings.ToLower(ge.stderr)
	msg := what + ": " + ge.Error()
	switch {
	case strings.Contains(s, "does not appear to be a git repository"),
		strings.Contains(s, "repository not found"),
		strings.Contains(s, "not found") && strings.Contains(s, "repository"),
		strings.Contains(s, "no such file or directory"):
		return nonRetryable(activities.ErrRemoteNotFound, msg)
	case strings.Contains(s, "authentication failed"),
		strings.Contains(s, "could not read username"),
		strings.Contains(s, "could not read password"),
		strings.Contains(s, "permission denied"),
		strings.Contains(s, "403"),
		strings.Contains(s, "401"):
		return nonRetryable(activities.ErrGitAuth, msg)
	default:
		return retryable(activities.ErrGitUnavailable, msg)
	}
}
