package steps

import (
	"time"

	"github.com/stagehand-dev/stagehand/activities"
)

var command = []activities.StepSpec{
	{
		Name: "exec.run",
		Description: "Run one of the worker's allowed commands (its `commands:` config) with argv, never through a shell, " +
			"in its own process group; fails with the exit code and the last output lines unless it exits 0.",
		Args: []activities.Arg{
			req("command", TString, "the name of a command in the worker's commands list; any other is refused before anything runs"),
			arg("args", TList, "extra arguments appended to the command's fixed argv; each must fully match the command's argPattern"),
			arg("dir", TString, "the working directory (e.g. a git.checkout's dir output; a relative path is taken from the command's first dir); must resolve, symbolic links followed, inside one of the command's dirs; default its first"),
			arg("env", TMap, "VAR: secret reference (env:NAME, secret:NAME/KEY), only for the VARs the command's allowEnv lists"),
			arg("timeout", TDuration, "kills the command (SIGTERM to its process group, then SIGKILL) after this long; default and upper bound: the command's timeout"),
		},
		Outputs: []activities.Output{
			out("command", TString, "the command's name"),
			out("exitCode", TInt, "the exit code (0 on success)"),
			out("tail", TString, "the last lines of stdout and stderr, merged, with secret values replaced by ***"),
			out("durationMs", TInt, "how long the command ran, in milliseconds"),
		},
		Errors: []string{
			activities.ErrSecretUnavailable, activities.ErrSecretNotAllowed, activities.ErrCommandNotAllowed,
			activities.ErrCommandFailed, activities.ErrCommandTimeout,
		},
		// The command's own timeout (default 30m, configurable per command)
		// bounds the run; this only has to be longer. A command allowed to
		// run longer needs a longer step timeout in the runbook too.
		DefaultTimeout:   2 * time.Hour,
		HeartbeatTimeout: time.Minute,
	},
}
