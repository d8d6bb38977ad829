package steps

import (
	"time"

	"github.com/stagehand-dev/stagehand/activities"
)

var git = []activities.StepSpec{
	{
		Name: "git.merge",
		Description: "Merge a pull request exactly once, with plain git (provider: git) or the GitHub API (provider: github); " +
			"an already merged PR is a success with alreadyMerged: true.",
		Args: []activities.Arg{
			req("provider", TString, "git (merge with git against remote) or github (merge through the GitHub API)"),
			arg("pr", TInt, "the pull request number (42, \"42\" or \"#42\"): required for github, used in the merge message for git"),
			arg("tokenRef", TString, "a secret reference (env:NAME, secret:NAME/KEY): the API token for github, an HTTPS token for git"),
			arg("expectHead", TString, "the commit that was tested (full sha or a prefix); the merge is refused with HeadMoved if the PR moved on"),
			arg("remote", TString, "the git remote, a URL or a path (git only)"),
			arg("targetBranch", TString, "the branch merged into; default main (git only)"),
			arg("prBranch", TString, "the pull request's branch on remote, e.g. pr-42 or refs/pull/42/head (git only)"),
			arg("message", TString, "the merge commit message (git) or title (github)"),
			arg("authorName", TString, "the merge commit's author name (git only)"),
			arg("authorEmail", TString, "the merge commit's author email (git only)"),
			arg("repo", TString, "owner/name (github only)"),
			arg("method", TString, "merge (default), squash or rebase"),
			arg("apiURL", TString, "the REST API root; default https://api.github.com/ (github only)"),
		},
		Outputs: []activities.Output{
			out("provider", TString, "the provider that merged"),
			out("mergeCommit", TString, "the full sha of the commit on the target branch that merged the PR"),
			out("shortSha", TString, "mergeCommit's first 8 characters (production images are tagged prod-<shortSha>-<unix>)"),
			out("alreadyMerged", TBool, "the PR had been merged before this attempt (a retry, a replay, or by hand)"),
			out("targetBranch", TString, "the branch merged into"),
			out("prHead", TString, "the PR head commit that was merged"),
			out("pr", TInt, "the pull request number"),
		},
		Errors: []string{
			activities.ErrSecretUnavailable, activities.ErrSecretNotAllowed, activities.ErrMergeConflict, activities.ErrMergeBlocked, activities.ErrHeadMoved,
			activities.ErrBranchNotFound, activities.ErrRemoteNotFound, activities.ErrGitAuth, activities.ErrGitUnavailable,
			activities.ErrGitError, activities.ErrPushRejected, activities.ErrBranchMoving,
			activities.ErrGitHubAuth, activities.ErrGitHubNotFound, activities.ErrGitHubRateLimited,
			activities.ErrGitHubUnavailable, activities.ErrGitHubRejected,
		},
		DefaultTimeout: 10 * time.Minute,
		Irreversible:   true,
	},
	{
		Name:        "git.headCommit",
		Resumable:   true,
		Description: "Read a branch's head commit from a remote.",
		Args: []activities.Arg{
			req("remote", TString, "the git remote, a URL or a path"),
			arg("branch", TString, "default main"),
			arg("tokenRef", TString, "a secret reference for an HTTPS token (env:NAME, secret:NAME/KEY)"),
		},
		Outputs: []activities.Output{
			out("sha", TString, "the branch's head commit"),
			out("shortSha", TString, "its first 8 characters"),
		},
		Errors: []string{
			activities.ErrSecretUnavailable, activities.ErrSecretNotAllowed, activities.ErrBranchNotFound, activities.ErrRemoteNotFound,
			activities.ErrGitAuth, activities.ErrGitUnavailable, activities.ErrGitError,
		},
		DefaultTimeout: 2 * time.Minute,
	},
	{
		Name: "git.checkout",
		Description: "Clone a remote into this run's work tree (a retry fetches and resets it instead) and check out a branch, " +
			"tag or commit, optionally as a new branch; later steps run commands in its dir and git.commitPush it.",
		Args: []activities.Arg{
			req("remote", TString, "the git remote, a URL or a path"),
			arg("ref", TString, "the branch, tag or commit sha to check out; default main"),
			arg("branch", TString, "create this new branch at ref; fails with BranchExists if the remote has it at another commit"),
			arg("tokenRef", TString, "a secret reference for an HTTPS token (env:NAME, secret:NAME/KEY)"),
			arg("name", TString, "tells apart two work trees of one run; default the repository's name"),
		},
		Outputs: []activities.Output{
			out("dir", TString, "the work tree's path: the dir of exec.run and git.commitPush steps"),
			out("sha", TString, "the checked-out commit"),
			out("shortSha", TString, "its first 8 characters"),
			out("branch", TString, "the checked-out branch (the new one, or ref if it is a branch); empty for a tag or commit"),
		},
		Errors: []string{
			activities.ErrSecretUnavailable, activities.ErrSecretNotAllowed, activities.ErrBranchNotFound, activities.ErrBranchExists,
			activities.ErrRemoteNotFound, activities.ErrGitAuth, activities.ErrGitUnavailable, activities.ErrGitError,
		},
		DefaultTimeout: 15 * time.Minute,
	},
	{
		Name: "git.commitPush",
		Description: "Commit every change in a git.checkout work tree and push the branch (never forced). " +
			"Nothing changed is a success with committed: false and nothing pushed; a retry finds its earlier commit and push.",
		Args: []activities.Arg{
			req("dir", TString, "the dir output of a git.checkout step of this run; any other directory is refused"),
			req("message", TString, "the commit message"),
			arg("authorName", TString, "the commit's author and committer name; default Stagehand"),
			arg("authorEmail", TString, "the commit's author and committer email; default stagehand@localhost"),
			arg("branch", TString, "the remote branch pushed to; default the checked-out branch"),
			arg("remote", TString, "the remote pushed to; default the one the tree was checked out from"),
			arg("tokenRef", TString, "a secret reference for an HTTPS token (env:NAME, secret:NAME/KEY)"),
			arg("allowEmpty", TBool, "commit and push even when nothing changed"),
		},
		Outputs: []activities.Output{
			out("sha", TString, "the commit (HEAD when nothing was committed)"),
			out("shortSha", TString, "its first 8 characters"),
			out("branch", TString, "the branch pushed to"),
			out("committed", TBool, "a commit was made (by this attempt or an earlier one); false when nothing changed"),
			out("pushed", TBool, "this attempt pushed; false when the remote branch had the commit already, or nothing was committed"),
			out("changedFiles", TList, "the files the commit changed (at most 100)"),
			out("changedCount", TInt, "how many files the commit changed"),
		},
		Errors: []string{
			activities.ErrSecretUnavailable, activities.ErrSecretNotAllowed, activities.ErrRemoteNotFound, activities.ErrGitAuth,
			activities.ErrGitUnavailable, activities.ErrGitError, activities.ErrPushRejected,
		},
		DefaultTimeout: 5 * time.Minute,
		Irreversible:   true,
	},
	{
		Name:      "git.state",
		Resumable: true,
		Description: "Record a work tree's HEAD and branch before a run edits it, failing with GitDirty when it has " +
			"uncommitted or untracked (not ignored) files, so the run's edits never mix with someone's uncommitted work.",
		Args: []activities.Arg{
			req("dir", TString, "a work tree git.checkout made in this run, or a single-server environment's directory (the top of a git work tree)"),
			arg("requireClean", TBool, "fail with GitDirty when the tree has changes; default true"),
		},
		Outputs: []activities.Output{
			out("head", TString, "the HEAD commit: the ref to give git.restore"),
			out("shortHead", TString, "its first 8 characters"),
			out("branch", TString, "the checked-out branch; empty on a detached HEAD"),
			out("clean", TBool, "no changed or untracked (not ignored) paths"),
			out("dirty", TList, "the changed or untracked paths (at most 50; an untracked directory counts once)"),
		},
		Errors:         []string{activities.ErrGitDirty, activities.ErrNotGitWorkTree, activities.ErrGitError},
		DefaultTimeout: time.Minute,
	},
	{
		Name: "git.commit",
		Description: "Commit a run's edits in a work tree locally (nothing is pushed). " +
			"Nothing to commit is a success with committed: false and sha the current HEAD.",
		Args: []activities.Arg{
			req("dir", TString, "a work tree git.checkout made in this run, or a single-server environment's directory"),
			req("message", TString, "the commit message"),
			arg("paths", TList, "commit only these paths, relative to dir (at most 100); default every change"),
			arg("authorName", TString, "the commit's author and committer name; default Stagehand"),
			arg("authorEmail", TString, "the commit's author and committer email; default stagehand@localhost"),
		},
		Outputs: []activities.Output{
			out("sha", TString, "the commit (HEAD when nothing was committed)"),
			out("shortSha", TString, "its first 8 characters"),
			out("committed", TBool, "this attempt made a commit; false when there was nothing to commit"),
		},
		Errors:         []string{activities.ErrNotGitWorkTree, activities.ErrGitError},
		DefaultTimeout: 2 * time.Minute,
	},
	{
		Name: "git.restore",
		Description: "Put a work tree back to a commit git.state recorded: git reset --hard <ref> (dropping the run's " +
			"local commits and edits) and git clean -fd (untracked files go; ignored ones such as node_modules stay). " +
			"The compensation of edits; refused when ref is not in HEAD's history.",
		Args: []activities.Arg{
			req("dir", TString, "a work tree git.checkout made in this run, or a single-server environment's directory"),
			req("ref", TString, "the commit to go back to: git.state's head output"),
		},
		Outputs: []activities.Output{
			out("head", TString, "the commit the tree is at now"),
			out("restored", TList, "the paths that differed from ref and were put back or removed (at most 100)"),
		},
		Errors:         []string{activities.ErrGitRestoreRefused, activities.ErrNotGitWorkTree, activities.ErrGitError},
		DefaultTimeout: 5 * time.Minute,
		Irreversible:   true,
	},
}

var web = []activities.StepSpec{
	{
		Name:      "web.smoke",
		Resumable: true,
		Description: "HTTP smoke checks under a base `url`, each retried every `interval` until it answers as expected " +
			"or `timeout` runs out; Backstage presets: readiness, catalog, signin, templates, docs.",
		Args: []activities.Arg{
			req("url", TString, "the base URL the checks' paths are appended to"),
			req("checks", TList, "the checks: name, preset (readiness, catalog, signin, templates, docs), provider, path, method, "+
				"expectStatus, bodyContains, bodyMatches, headers, tokenRef"),
			arg("timeout", TDuration, "bounds the whole step (default 2m): checks that have not passed by then fail it"),
			arg("interval", TDuration, "the pause between attempts of a failing check (default 2s)"),
			arg("requestTimeout", TDuration, "bounds one request (default 10s)"),
			arg("tokenRef", TString, "the default tokenRef (env:NAME or secret:NAME/KEY, sent as a Bearer token) of every check that sets none"),
		},
		Outputs: []activities.Output{
			out("checks", TList, "each check's name, url, status, elapsedMs, attempts and ok"),
			out("passed", TInt, "the checks that passed"),
		},
		Errors: []string{activities.ErrSecretNotFound, activities.ErrSecretNotAllowed, activities.ErrSmokeCheckFailed},
		// The step's own `timeout` (default 2m) bounds the checks; this only
		// stops a wedged attempt when the runbook sets no step timeout.
		DefaultTimeout:   15 * time.Minute,
		HeartbeatTimeout: 30 * time.Second,
	},
	{
		Name:        "web.get",
		Resumable:   true,
		Description: "GET (or `method`) one `url` and return its status and a body snippet; fails unless the status is in `expectStatus` (default 200).",
		Args: []activities.Arg{
			req("url", TString, "the absolute URL to request"),
			arg("method", TString, "default GET"),
			arg("expectStatus", TList, "the statuses that count as success (a number or a list); default 200"),
			arg("headers", TMap, "extra, non-secret headers (credentials go in tokenRef)"),
			arg("tokenRef", TString, "a Bearer token reference, e.g. env:BACKSTAGE_TOKEN or secret:backstage/token"),
			arg("requestTimeout", TDuration, "bounds the request (default 30s)"),
		},
		Outputs: []activities.Output{
			out("status", TInt, "the HTTP status"),
			out("body", TString, "a sanitized snippet of the response (first ~300 bytes)"),
			out("elapsedMs", TInt, "how long the request took, in milliseconds"),
		},
		Errors:         []string{activities.ErrSecretNotFound, activities.ErrSecretNotAllowed, activities.ErrUnexpectedStatus, activities.ErrRequestFailed},
		DefaultTimeout: 2 * time.Minute,
	},
}

var notify = []activities.StepSpec{
	{
		Name:        "notify.send",
		Description: "Send a notification (gate opened, run failed, ...) to generic JSON or Slack webhooks; Slack URLs go in urlRef.",
		Args: []activities.Arg{
			req("webhooks", TList, "receivers: each {url} or {urlRef: env:NAME} (Slack's URLs are secret), and format generic (default) or slack"),
			req("event", TString, "gate_opened, gate_reminder, run_failed, run_succeeded, run_rejected or custom"),
			arg("title", TString, "the headline (title or text is required)"),
			arg("text", TString, "the body"),
			arg("run", TString, "the run's workflow id (.run.id), shown so people can approve or look it up"),
			arg("gate", TString, "the gate waiting for approval"),
			arg("approvers", TList, "who may approve the gate"),
			arg("fields", TMap, "extra key/value pairs shown with the message"),
		},
		Outputs: []activities.Output{
			out("sent", TInt, "the webhooks that accepted the message"),
		},
		Errors:         []string{activities.ErrSecretUnavailable, activities.ErrSecretNotAllowed, activities.ErrNotifyRejected, activities.ErrNotifyFailed},
		DefaultTimeout: time.Minute,
	},
}
