package activities

import "sort"

// Error types are the ApplicationError types a failed step (or run) carries.
// They are part of the runbook contract: runbooks list them in
// `retry.nonRetryable`, templates read them in onFailure, and the audit
// groups failures by them. So they live here, once, with what they mean and
// whether a retry can help; adapters use these constants, step specs list
// the ones each step type may raise, and the runbook validator rejects a
// name that is not one of them. Renaming one breaks runbooks: don't.
const (
	// Raised by the step adapter and the workflow for any step.
	ErrInvalidArguments = "InvalidArguments"
	ErrInvalidOutputs   = "InvalidOutputs"
	ErrTemplateError    = "TemplateError"
	ErrUnknownStepType  = "UnknownStepType"
	ErrTimeout          = "Timeout"
	// ErrStepInterrupted (worker.go) is the stop of the step's worker.

	// How a whole run ends; callers (CLI, UI, audit) see these, steps never do.
	ErrRunbookFailed   = "RunbookFailed"
	ErrRunbookRejected = "RunbookRejected"
	ErrInvalidRunbook  = "InvalidRunbook"
	ErrInvalidParams   = "InvalidParams"

	// Secrets.
	ErrSecretUnavailable = "SecretUnavailable"
	ErrSecretNotFound    = "SecretNotFound"
	ErrSecretNotAllowed  = "SecretNotAllowed"

	// Kubernetes.
	ErrKubeNoCluster       = "KubeNoCluster"
	ErrKubeUnknownCluster  = "KubeUnknownCluster"
	ErrKubeNoDynamicClient = "KubeNoDynamicClient"
	ErrKubeForbidden       = "KubeForbidden"
	ErrKubeUnauthorized    = "KubeUnauthorized"
	ErrKubeNotFound        = "KubeNotFound"
	ErrKubeInvalid         = "KubeInvalid"
	ErrKubeConflict        = "KubeConflict"
	ErrKubeApplyConflict   = "KubeApplyConflict"
	ErrKubeUnavailable     = "KubeUnavailable"
	ErrKubeError           = "KubeError"
	ErrKubeUnknownKind     = "KubeUnknownKind"
	ErrPodFailure          = "PodFailure"
	ErrProgressDeadline    = "ProgressDeadlineExceeded"
	ErrRolloutTimeout      = "RolloutTimeout"
	ErrDeploymentPaused    = "DeploymentPaused"
	ErrWarningEvents       = "WarningEvents"
	ErrPodsNotReady        = "PodsNotReady"
	ErrPodNotReady         = "PodNotReady"
	ErrPodRestarted        = "PodRestarted"
	ErrImageMismatch       = "ImageMismatch"
	ErrNoRollbackTarget    = "NoRollbackTarget"
	ErrProdImageNotRolled  = "ProdImageNotRolled"

	// Git and GitHub.
	ErrMergeConflict     = "MergeConflict"
	ErrMergeBlocked      = "MergeBlocked"
	ErrHeadMoved         = "HeadMoved"
	ErrBranchNotFound    = "BranchNotFound"
	ErrRemoteNotFound    = "RemoteNotFound"
	ErrGitAuth           = "GitAuth"
	ErrGitUnavailable    = "GitUnavailable"
	ErrGitError          = "GitError"
	ErrPushRejected      = "PushRejected"
	ErrBranchMoving      = "BranchMoving"
	ErrGitHubAuth        = "GitHubAuth"
	ErrGitHubNotFound    = "GitHubNotFound"
	ErrGitHubRateLimited = "GitHubRateLimited"
	ErrGitHubUnavailable = "GitHubUnavailable"
	ErrGitHubRejected    = "GitHubRejected"
	ErrBranchExists      = "BranchExists"

	// Commands (exec.run).
	ErrCommandNotAllowed = "CommandNotAllowed"
	ErrCommandFailed     = "CommandFailed"
	ErrCommandTimeout    = "CommandTimeout"

	// HTTP.
	ErrSmokeCheckFailed = "SmokeCheckFailed"
	ErrUnexpectedStatus = "UnexpectedStatus"
	ErrRequestFailed    = "RequestFailed"

	// Notifications.
	ErrNotifyRejected = "NotifyRejected"
	ErrNotifyFailed   = "NotifyFailed"

	// Images (Docker Engine API) and registries.
	ErrImageBuildFailed       = "ImageBuildFailed"
	ErrImagePushFailed        = "ImagePushFailed"
	ErrImageNotFound          = "ImageNotFound"
	ErrRegistryAuth           = "RegistryAuth"
	ErrEngineUnavailable      = "EngineUnavailable"
	ErrImageContextNotAllowed = "ImageContextNotAllowed"

	// Databases (Backstage plugin databases).
	ErrDatabaseNotConfigured  = "DatabaseNotConfigured"
	ErrDatabaseUnavailable    = "DatabaseUnavailable"
	ErrDatabaseError          = "DatabaseError"
	ErrPluginDatabaseMissing  = "PluginDatabaseMissing"
	ErrMigrationMissing       = "MigrationMissing"
	ErrMigrationLocked        = "MigrationLocked"
	ErrBackupFailed           = "BackupFailed"
	ErrBackupChecksumMismatch = "BackupChecksumMismatch"
	ErrRestoreFailed          = "RestoreFailed"

	// Upgrades (portal.versions, db.verifyMigrations expectUnchanged).
	ErrVersionsUnreadable = "VersionsUnreadable"
	ErrMigrationMismatch  = "MigrationMismatch"

	// Single-server environments (server.*).
	ErrServerNotConfigured  = "ServerNotConfigured"
	ErrServerError          = "ServerError"
	ErrServerStartFailed    = "ServerStartFailed"
	ErrServerNotReady       = "ServerNotReady"
	ErrServerPortInUse      = "ServerPortInUse"
	ErrServerStopFailed     = "ServerStopFailed"
	ErrServerStatusMismatch = "ServerStatusMismatch"
	ErrServerLogErrors      = "ServerLogErrors"
)

// Portal file edits and local git (portal.setConfig, portal.registerPlugin,
// git.state, git.commit, git.restore).
const (
	ErrPortalFileShape   = "PortalFileShape"
	ErrPortalEditFailed  = "PortalEditFailed"
	ErrGitDirty          = "GitDirty"
	ErrNotGitWorkTree    = "NotGitWorkTree"
	ErrGitRestoreRefused = "GitRestoreRefused"
)

// ErrorScope says who sees an error type.
type ErrorScope string

const (
	// ScopeStep: a step fails with it; runbooks may name it in
	// retry.nonRetryable and read it as .error / .steps.<id>.error.
	ScopeStep ErrorScope = "step"
	// ScopeRun: a whole run ends with it (the workflow's own failure), for
	// whoever started or audits the run; no step raises it.
	ScopeRun ErrorScope = "run"
)

// ErrorType is one entry of the error-type table.
type ErrorType struct {
	Name string `json:"name"`
	// Meaning is one line for a person deciding whether to list it in
	// retry.nonRetryable.
	Meaning string `json:"meaning"`
	// Retryable says whether the step is retried by its retry policy when
	// it fails this way. A non-retryable type ends the step on its first
	// occurrence whatever the runbook says; listing a retryable one in
	// nonRetryable stops the retries.
	Retryable bool       `json:"retryable"`
	Scope     ErrorScope `json:"scope"`
}

var errorTypes = []ErrorType{
	{ErrInvalidArguments, "a `with` argument is missing, unknown, of the wrong type or has a bad value", false, ScopeStep},
	{ErrInvalidOutputs, "the step's result could not be encoded as outputs (a bug in the step type)", false, ScopeStep},
	{ErrTemplateError, "a template in `with`, `if` or an approval field failed to render", false, ScopeStep},
	{ErrUnknownStepType, "the step names a native step type this workflow does not implement", false, ScopeStep},
	// Status and audit show this name; the interpreter maps it onto the
	// names Temporal's retry policy gives timeouts (TemporalTimeout:*).
	{ErrTimeout, "an attempt ran out of its timeout or stopped heartbeating (worker lost or step hung); retried unless the step lists Timeout in nonRetryable", true, ScopeStep},

	{ErrStepInterrupted, "the step's worker stopped (SIGTERM) while it ran; the run runs the step again on another worker without spending an attempt, and fails with this only when that keeps happening", false, ScopeStep},

	{ErrRunbookFailed, "the run failed: a step failed (see the status's failedStep and error)", false, ScopeRun},
	{ErrRunbookRejected, "the run was rejected at an approval gate, or the gate timed out", false, ScopeRun},
	{ErrInvalidRunbook, "the runbook could not be found, parsed or validated; nothing ran", false, ScopeRun},
	{ErrInvalidParams, "the run's parameters do not fit the runbook's params; nothing ran", false, ScopeRun},

	{ErrSecretUnavailable, "a secret reference (env:NAME, secret:NAME/KEY) could not be resolved on the worker", false, ScopeStep},
	{ErrSecretNotFound, "a tokenRef (env:NAME) is not set in the worker's environment (web steps)", false, ScopeStep},
	{ErrSecretNotAllowed, "the worker config does not allow this step to use the secret reference, or to send it to that host (secrets.allow); nothing was sent", false, ScopeStep},

	{ErrKubeNoCluster, "the worker has no Kubernetes cluster configured", false, ScopeStep},
	{ErrKubeUnknownCluster, "the step names a cluster the worker does not have", false, ScopeStep},
	{ErrKubeNoDynamicClient, "the worker's cluster has no dynamic client, so it cannot apply manifests or read Flux objects", false, ScopeStep},
	{ErrKubeForbidden, "the apiserver refused the request: the worker's identity lacks RBAC permission", false, ScopeStep},
	{ErrKubeUnauthorized, "the apiserver did not accept the worker's credentials", false, ScopeStep},
	{ErrKubeNotFound, "the Deployment (or other object) does not exist, or was deleted while the step ran", false, ScopeStep},
	{ErrKubeInvalid, "the apiserver rejected the request or object as invalid, or the object is unusable (e.g. a bad selector)", false, ScopeStep},
	{ErrKubeConflict, "the object changed under the request (optimistic concurrency) or already exists", true, ScopeStep},
	{ErrKubeApplyConflict, "server-side apply conflicts with another field manager (set force to take over)", false, ScopeStep},
	{ErrKubeUnavailable, "the apiserver could not be reached or is overloaded", true, ScopeStep},
	{ErrKubeError, "another apiserver error", true, ScopeStep},
	{ErrKubeUnknownKind, "the cluster does not serve a manifest's kind (CRD not installed?)", false, ScopeStep},
	{ErrPodFailure, "a pod is failing: CrashLoopBackOff, ImagePullBackOff, OOMKilled, ... (with pod, container, reason and last log lines)", false, ScopeStep},
	{ErrProgressDeadline, "the Deployment reported ProgressDeadlineExceeded", false, ScopeStep},
	{ErrRolloutTimeout, "the rollout did not finish within the step's `timeout`", false, ScopeStep},
	{ErrDeploymentPaused, "the Deployment is paused, so its rollout cannot progress", false, ScopeStep},
	{ErrWarningEvents, "Warning events about the Deployment that `allow` does not match", false, ScopeStep},
	{ErrPodsNotReady, "not every pod is Ready yet (a retry checks again)", true, ScopeStep},
	{ErrPodNotReady, "a pod stopped being Ready during the soak", false, ScopeStep},
	{ErrPodRestarted, "a container restarted during the soak", false, ScopeStep},
	{ErrImageMismatch, "pods do not run the expected image yet (a retry checks again)", true, ScopeStep},
	{ErrNoRollbackTarget, "the Deployment has no previous (or the requested) revision to roll back to", false, ScopeStep},
	{ErrProdImageNotRolled, "production did not get the merge commit's image in time (evidence and commands in the message)", false, ScopeStep},

	{ErrMergeConflict, "the pull request does not merge cleanly into the target branch", false, ScopeStep},
	{ErrMergeBlocked, "GitHub will not merge: closed PR, failing checks or reviews, or the head moved past the pinned sha", false, ScopeStep},
	{ErrHeadMoved, "the pull request's head is not the commit that was tested (expectHead)", false, ScopeStep},
	{ErrBranchNotFound, "a branch (PR branch, target or headCommit's branch) does not exist on the remote", false, ScopeStep},
	{ErrRemoteNotFound, "the git remote does not exist or is not a repository", false, ScopeStep},
	{ErrGitAuth, "the git remote refused the credentials", false, ScopeStep},
	{ErrGitUnavailable, "the git remote could not be reached or git timed out", true, ScopeStep},
	{ErrGitError, "git could not run on the worker (not installed, work directory unusable)", false, ScopeStep},
	{ErrPushRejected, "the remote refused the merge push (server-side hook or branch protection)", false, ScopeStep},
	{ErrBranchMoving, "the target branch kept moving while merging (every push lost the race); retried with backoff", true, ScopeStep},
	{ErrGitHubAuth, "GitHub refused the token (401/403)", false, ScopeStep},
	{ErrGitHubNotFound, "GitHub does not know the repository or pull request, or the token cannot see it", false, ScopeStep},
	{ErrGitHubRateLimited, "GitHub's rate limit was hit; retried after the reset time", true, ScopeStep},
	{ErrGitHubUnavailable, "GitHub could not be reached or answered 429/5xx", true, ScopeStep},
	{ErrGitHubRejected, "GitHub answered with another unexpected 4xx status", false, ScopeStep},
	{ErrBranchExists, "git.checkout was asked to create a branch that already exists on the remote at another commit", false, ScopeStep},

	{ErrCommandNotAllowed, "the command is not in the worker's commands list, or its args, dir, env or timeout are outside what the list allows; nothing ran", false, ScopeStep},
	{ErrCommandFailed, "the command could not start or exited non-zero (exit code and last output lines in the message)", false, ScopeStep},
	{ErrCommandTimeout, "the command ran past its timeout and was killed with its whole process group (last output lines in the message)", false, ScopeStep},

	{ErrSmokeCheckFailed, "smoke checks still failed when the step's own timeout ran out (each check's result in the message)", false, ScopeStep},
	{ErrUnexpectedStatus, "the URL answered with a status not in expectStatus", true, ScopeStep},
	{ErrRequestFailed, "the request got no answer (connection refused, DNS, timeout)", true, ScopeStep},

	{ErrNotifyRejected, "every failing webhook answered 4xx (other than 429): resending will not help", false, ScopeStep},
	{ErrNotifyFailed, "a webhook answered 5xx or 429, or could not be reached", true, ScopeStep},

	{ErrImageBuildFailed, "the image build failed: a Dockerfile step failed (the step and its last output lines in the message), or the Dockerfile or a base image is unusable", false, ScopeStep},
	{ErrImagePushFailed, "the engine could not push the image to the registry (connection, registry error); retried", true, ScopeStep},
	{ErrImageNotFound, "the image to push or tag does not exist in the engine", false, ScopeStep},
	{ErrRegistryAuth, "the registry refused the credentials, or refused access without them (401/denied)", false, ScopeStep},
	{ErrEngineUnavailable, "the image engine (Docker Engine API: dockerd, podman's service) could not be reached", true, ScopeStep},
	{ErrImageContextNotAllowed, "the build context is outside the worker's docker.contextRoots (after resolving symlinks and ..), or none are configured", false, ScopeStep},

	{ErrDatabaseNotConfigured, "the step names a database the worker's config does not have, or its entry is invalid", false, ScopeStep},
	{ErrDatabaseUnavailable, "the database server could not be reached, timed out or is overloaded", true, ScopeStep},
	{ErrDatabaseError, "the database refused the request (authentication, permissions, a failed query)", false, ScopeStep},
	{ErrPluginDatabaseMissing, "a plugin database (or schema) that existed before, or that expect names, is gone", false, ScopeStep},
	{ErrMigrationMissing, "a Knex migration recorded before is gone from knex_migrations, or an expected one was never applied (plugin and migration in the message)", false, ScopeStep},
	{ErrMigrationLocked, "a plugin's knex_migrations_lock is held: a migration crashed or is still running", false, ScopeStep},
	{ErrBackupFailed, "a dump could not be written (dump tool failed, disk, or a bad backup key)", false, ScopeStep},
	{ErrBackupChecksumMismatch, "a backup file does not match its manifest's sha256 (or is missing); nothing was restored", false, ScopeStep},
	{ErrRestoreFailed, "restoring a dump failed (the restore tool's message in the error)", false, ScopeStep},

	{ErrVersionsUnreadable, "the portal work tree has neither backstage.json nor a package.json, or one of them is not valid JSON or is too large (the file in the message)", false, ScopeStep},
	{ErrMigrationMismatch, "with expectUnchanged: the plugins' migrations differ from the `before` snapshot (a migration or plugin database added or gone, named in the message)", false, ScopeStep},

	{ErrServerNotConfigured, "the step names an environment that is not a server environment of the worker config (the known ones in the message)", false, ScopeStep},
	{ErrServerError, "the worker could not use the server's pid file, log file or process (unreadable pid file, permissions)", false, ScopeStep},
	{ErrServerStartFailed, "the server process could not start or exited before it was ready (exit status and last log lines in the message)", false, ScopeStep},
	{ErrServerNotReady, "the health URL did not answer 200 within the start timeout; the process was stopped (last status and log lines in the message)", false, ScopeStep},
	{ErrServerPortInUse, "something the worker did not start already answers on the health URL, so a new server could not listen there; nothing was started", false, ScopeStep},
	{ErrServerStopFailed, "the server's process group was still alive after SIGKILL, or could not be signalled", true, ScopeStep},
	{ErrServerStatusMismatch, "server.status found the server not as expect asks (healthy or stopped); what it found in the message", true, ScopeStep},
	{ErrServerLogErrors, "an error pattern matched the server's log since its last start (the pattern and the lines in the message)", false, ScopeStep},

	{ErrPortalFileShape, "a portal file to edit is missing, too large or not of the expected shape (app-config not one YAML mapping, a key inside a scalar or list, index.ts without exactly one createBackend() and one backend.start()); the message says what was expected and found", false, ScopeStep},
	{ErrPortalEditFailed, "an edited portal file could not be written (disk, permissions), or the edit would have changed more than asked (nothing written)", false, ScopeStep},
	{ErrGitDirty, "git.state with requireClean: the work tree has uncommitted or untracked files (named in the message), which a run must not mix with its own edits", false, ScopeStep},
	{ErrNotGitWorkTree, "dir is not the top of a git work tree, or its .git has settings that would make git run programs", false, ScopeStep},
	{ErrGitRestoreRefused, "git.restore: the ref is not a commit of the work tree, or not in HEAD's history (the branch was moved; resetting would drop commits)", false, ScopeStep},
}

var errorTypeByName = func() map[string]ErrorType {
	m := make(map[string]ErrorType, len(errorTypes))
	for _, e := range errorTypes {
		m[e.Name] = e
	}
	return m
}()

// ErrorTypes returns the error-type table, sorted by name.
func ErrorTypes() []ErrorType {
	out := append([]ErrorType(nil), errorTypes...)
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// LookupErrorType returns the table entry for name.
func LookupErrorType(name string) (ErrorType, bool) {
	e, ok := errorTypeByName[name]
	return e, ok
}

// StepErrorTypeNames lists, sorted, the error types a step can fail with:
// the names a runbook may write in retry.nonRetryable.
func StepErrorTypeNames() []string {
	var names []string
	for _, e := range errorTypes {
		if e.Scope == ScopeStep {
			names = append(names, e.Name)
		}
	}
	sort.Strings(names)
	return names
}

// CommonStepErrors are the error types every activity-backed step can fail
// with whatever it does: bad arguments (decoded by the step adapter),
// template errors and timeouts (from the workflow), and the stop of its
// worker (run again by the workflow; the run fails with it only when the
// step is interrupted over and over).
var CommonStepErrors = []string{ErrInvalidArguments, ErrTemplateError, ErrTimeout, ErrStepInterrupted}
