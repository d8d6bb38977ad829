package steps

import (
	"time"

	"github.com/stagehand-dev/stagehand/activities"
)

var generic = []activities.StepSpec{
	{
		Name:           "log",
		Description:    "Write a message to the worker's log.",
		Args:           []activities.Arg{req("message", TString, "the line to log"), arg("level", TString, "info (default), warn or error")},
		Outputs:        []activities.Output{out("message", TString, "the message, for later steps and the audit")},
		DefaultTimeout: 30 * time.Second,
	},
	{
		Name:           "noop",
		Description:    "Do nothing; return `echo`.",
		Args:           []activities.Arg{arg("echo", TAny, "any value, returned as the output echo")},
		Outputs:        []activities.Output{out("echo", TAny, "the echo argument")},
		DefaultTimeout: 30 * time.Second,
	},
	{
		Name:        "wait",
		Description: "Wait for `duration` on a durable timer (survives worker restarts).",
		Args:        []activities.Arg{req("duration", TDuration, "how long to wait, e.g. 30s or 2h")},
		Native:      true,
	},
}
