package steps

import (
	"time"

	"github.com/stagehand-dev/stagehand/activities"
)

// The server.* steps run a Backstage backend as a process on the worker's
// host (a `kind: server` environment of the worker config). A run names
// the environment; the directory, argv and environment variables come
// from the worker config only. An environment with `systemd: {unit: ...}`
// is driven through systemctl and journalctl instead of a process the
// worker supervises.
var serverEnvArg = req("environment", TString, "the name of a server environment in the worker config (`environments.<name>.server`); any other is refused")

var serverErrors = []string{activities.ErrServerNotConfigured, activities.ErrServerError}

var serverStartOutputs = []activities.Output{
	out("pid", TInt, "the server's pid (and process group)"),
	out("startedAt", TTime, "when the process started (RFC 3339)"),
	out("alreadyRunning", TBool, "the supervised process was already running (a retry, or started earlier); nothing new was started"),
	out("readyAfter", TDuration, "how long until the health URL answered 200, e.g. 7.2s"),
	out("url", TString, "the server's base URL (the health URL's scheme and host)"),
}

var serverStartErrors = []string{
	activities.ErrSecretUnavailable, activities.ErrSecretNotAllowed,
	activities.ErrServerStartFailed, activities.ErrServerNotReady, activities.ErrServerPortInUse,
}

var server = []activities.StepSpec{
	{
		Name: "server.start",
		Description: "Start the environment's server process (its own session and process group, stdout and stderr appended to its log " +
			"file after a start marker, a pid file that a restarted worker finds) and wait until its health URL answers 200. " +
			"Idempotent: a supervised process that is already running is waited for and reported with alreadyRunning. " +
			"Fails with the exit status and the last log lines when the process exits during start; stops it and fails when " +
			"it is not ready in time; refuses to start when something else already answers on the health URL. " +
			"A systemd environment: `systemctl start --no-block` of its unit, then the same wait (failed: the journal's last lines).",
		Args: []activities.Arg{
			serverEnvArg,
			arg("timeout", TDuration, "how long to wait for the health URL; default the environment's startTimeout (5m), at most 2h"),
		},
		Outputs:          serverStartOutputs,
		Errors:           errs(serverErrors, serverStartErrors),
		DefaultTimeout:   3 * time.Hour,
		HeartbeatTimeout: time.Minute,
	},
	{
		Name: "server.stop",
		Description: "Stop the environment's supervised process: SIGTERM to its process group, SIGKILL after the stop timeout, " +
			"then remove the pid file. Only the process the pid file names is signalled, checked by its start time, so a pid " +
			"reused by another program is left alone. Idempotent: nothing running is a success with wasRunning false. " +
			"A systemd environment: `systemctl stop` of its unit (its TimeoutStopSec bounds the stop).",
		Args: []activities.Arg{
			serverEnvArg,
			arg("timeout", TDuration, "time between SIGTERM and SIGKILL; default the environment's stopTimeout (30s), at most 1h"),
		},
		Outputs: []activities.Output{
			out("wasRunning", TBool, "a supervised process was running and was stopped"),
			out("pid", TInt, "its pid (0 when none was running)"),
			out("signal", TString, "SIGTERM, SIGKILL (it outlived the stop timeout), or \"\" when nothing was running"),
			out("stoppedAfter", TDuration, "how long it took to stop"),
			out("note", TString, "what was found when nothing was stopped: no pid file, a stale one (removed), a process this worker did not start answering on the health URL"),
		},
		Errors:           errs(serverErrors, []string{activities.ErrServerStopFailed}),
		DefaultTimeout:   2 * time.Hour,
		HeartbeatTimeout: time.Minute,
	},
	{
		Name:        "server.restart",
		Description: "server.stop then server.start, with the outputs of both.",
		Args: []activities.Arg{
			serverEnvArg,
			arg("timeout", TDuration, "how long to wait for the health URL after the start; default the environment's startTimeout"),
		},
		Outputs: append([]activities.Output{
			out("stoppedPid", TInt, "the pid that was stopped (0 when none was running)"),
			out("wasRunning", TBool, "a supervised process was running before"),
			out("stopSignal", TString, "the signal that stopped it: SIGTERM, SIGKILL or \"\""),
		}, serverStartOutputs...),
		Errors:           errs(serverErrors, serverStartErrors, []string{activities.ErrServerStopFailed}),
		DefaultTimeout:   5 * time.Hour,
		HeartbeatTimeout: time.Minute,
	},
	{
		Name:      "server.status",
		Resumable: true,
		Description: "Report the supervised process (running, pid, uptime) and its health URL (status code; healthy is 200). " +
			"With expect, fail unless the server is healthy (running and 200) or stopped (not running and nothing answering on the health URL).",
		Args: []activities.Arg{
			serverEnvArg,
			arg("expect", TString, "healthy, stopped, or empty for no check"),
		},
		Outputs: []activities.Output{
			out("running", TBool, "the pid file's process runs (checked by its start time)"),
			out("pid", TInt, "its pid (0 when not running)"),
			out("healthy", TBool, "the health URL answered 200"),
			out("httpStatus", TInt, "the health URL's status code (0: no answer)"),
			out("uptime", TDuration, "how long it has been running (\"\" when not running)"),
			out("startedAt", TTime, "when it started (\"\" when not running)"),
			out("note", TString, "a stale pid file, or a process this worker did not start answering on the health URL"),
		},
		Errors:         errs(serverErrors, []string{activities.ErrServerStatusMismatch}),
		DefaultTimeout: time.Minute,
	},
	{
		Name:      "server.logs",
		Resumable: true,
		Description: "Return the end of the environment's log file (read from its end, never whole), by default only the lines " +
			"since the last start, with secret values of its environment replaced by ***; fail when an error pattern (the " +
			"environment's errorPatterns, default `Backend failed to start up` and `migration directory is corrupt`, plus " +
			"the step's) matches a line since the last start. A systemd environment reads its unit's journal.",
		Args: []activities.Arg{
			serverEnvArg,
			arg("lines", TInt, "how many lines to return; default 100, at most 1000"),
			arg("sinceStart", TBool, "only lines after the last start's marker; default true"),
			arg("errorPatterns", TList, "more regular expressions to fail on (at most 32, each at most 512 bytes)"),
		},
		Outputs: []activities.Output{
			out("tail", TList, "the last lines"),
			out("matches", TList, "\"<pattern>: <line>\" for every error-pattern match (empty on success)"),
			out("file", TString, "the log file"),
		},
		Errors:         errs(serverErrors, []string{activities.ErrSecretUnavailable, activities.ErrSecretNotAllowed, activities.ErrServerLogErrors}),
		DefaultTimeout: time.Minute,
	},
}
