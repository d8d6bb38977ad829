// Package git holds the merge step types: `git.merge` merges a pull request
// either with plain git against any remote (a bare repository on disk, an
// SSH or HTTPS URL) or through the GitHub REST API, and `git.headCommit`
// reads a branch's head from a remote.
//
// Merging is the one irreversible step of a patch run, and activities can run
// more than once (retries, a worker that crashes after the push and before
// Temporal records the completion). Both providers therefore look before they
// act: a pull request whose head is already in the target branch is reported
// as merged (alreadyMerged: true, with the commit that merged it) instead of
// being merged again, so a replayed step merges exactly once.
//
// Credentials never travel in workflow inputs, outputs or errors: runbooks
// pass references (tokenRef: env:GITHUB_TOKEN) that the activity resolves,
// git receives them through its environment rather than argv, and every error
// is scrubbed of URL user-info and of the resolved secret itself.
package git

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/log"

	"github.com/stagehand-dev/stagehand/activities"
	"github.com/stagehand-dev/stagehand/activities/secrets"
)

// SecretResolver turns a secret reference (env:NAME, secret:NAME/KEY) into
// its value.
type SecretResolver = secrets.Resolver

// Activities runs the git steps. The zero value works: git from PATH, cached
// clones under the system temp directory, references resolved from the
// worker's environment only.
type Activities struct {
	// WorkDir holds one cached bare repository per remote so a retry (or the
	// next run) fetches only what is new instead of cloning again.
	WorkDir string
	// GitPath is the git binary; default "git" from PATH.
	GitPath string
	// CommandTimeout bounds each git command (a fetch of a large repository
	// is the slow one); default 5 minutes. The activity's own deadline
	// still applies.
	CommandTimeout time.Duration
	// HTTPClient talks to the GitHub API; default a client with a 30 s
	// timeout.
	HTTPClient *http.Client
	// Secrets resolves tokenRef; nil resolves only env:NAME references.
	Secrets SecretResolver
	// LocalDirs are the directories of single-server environments that the
	// local steps (git.state, git.commit, git.restore) may work on,
	// besides this run's checkouts; the worker sets them from its config.
	// A dir must be one of them exactly (after resolving symbolic links)
	// and the top of a git work tree.
	LocalDirs []string
	// MaxPushAttempts bounds how often a merge is rebuilt after losing a push
	// race to another writer of the target branch; default 5.
	MaxPushAttempts int

	// beforePush runs between building the merge commit and pushing it;
	// tests use it to make another writer win the race.
	beforePush func(attempt int)
	// afterPush runs once the merge is on the remote and before the
	// activity returns; the crash test kills the process there.
	afterPush func()

	locks sync.Map // cache dir -> *sync.Mutex
}

func (a *Activities) gitPath() string {
	if a.GitPath != "" {
		return a.GitPath
	}
	return "git"
}

func (a *Activities) commandTimeout() time.Duration {
	if a.CommandTimeout > 0 {
		return a.CommandTimeout
	}
	return 5 * time.Minute
}

func (a *Activities) maxPushAttempts() int {
	if a.MaxPushAttempts > 0 {
		return a.MaxPushAttempts
	}
	return 5
}

func (a *Activities) workDir() string {
	if a.WorkDir != "" {
		return a.WorkDir
	}
	return filepath.Join(os.TempDir(), "stagehand-git")
}

func (a *Activities) httpClient() *http.Client {
	if a.HTTPClient != nil {
		return a.HTTPClient
	}
	return &http.Client{Timeout: 30 * time.Second}
}

// lock serialises work on one cache directory: two merges into the same
// remote on this worker must not fetch into the same refs at once.
func (a *Activities) lock(dir string) func() {
	m, _ := a.locks.LoadOrStore(dir, &sync.Mutex{})
	mu := m.(*sync.Mutex)
	mu.Lock()
	return mu.Unlock
}

// resolveSecret resolves a reference for one use (where the token goes);
// a failure is permanent (retrying does not set a missing variable), and a
// refusal by the worker's secret policy stays SecretNotAllowed.
func (a *Activities) resolveSecret(ctx context.Context, ref string, use secrets.Use) (string, error) {
	v, err := secrets.ResolveFor(ctx, a.Secrets, ref, use)
	if err != nil {
		if refused := secrets.Refusal(err); refused != nil {
			return "", refused
		}
		return "", nonRetryable(activities.ErrSecretUnavailable, err.Error())
	}
	return v, nil
}

// logger returns the activity logger, or a no-op one when the method is
// called outside an activity (unit tests calling it directly).
func logger(ctx context.Context) log.Logger {
	if activity.IsActivity(ctx) {
		return activity.GetLogger(ctx)
	}
	return nopLogger{}
}

type nopLogger struct{}

func (nopLogger) Debug(string, ...any) {}
func (nopLogger) Info(string, ...any)  {}
func (nopLogger) Warn(string, ...any)  {}
func (nopLogger) Error(string, ...any) {}
