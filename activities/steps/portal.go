package steps

import (
	"time"

	"github.com/stagehand-dev/stagehand/activities"
)

var portal = []activities.StepSpec{
	{
		Name: "portal.versions",
		Description: "Read the Backstage versions of a portal work tree: backstage.json's version and the @backstage/* " +
			"(or the named) dependencies of the root, packages/* and plugins/* package.json files, as written.",
		Args: []activities.Arg{
			req("dir", TString, "a work tree git.checkout made in this run (its dir output)"),
			arg("packages", TList, "npm package names to report; default: every @backstage/* dependency found"),
		},
		Outputs: []activities.Output{
			out("backstage", TString, "backstage.json's version (\"\" when there is no backstage.json)"),
			out("packages", TMap, "package name → version spec as written (e.g. ^1.2.3); specs that differ between files are joined with \" | \""),
			out("files", TList, "the package.json files read, relative to dir"),
			out("summary", TString, "one line: backstage 1.44.0; @backstage/plugin-catalog-backend 3.9.1; ..."),
		},
		// GitError: the work tree's .git was changed by a command (the check
		// git.commitPush makes, shared).
		Errors:         []string{activities.ErrVersionsUnreadable, activities.ErrGitError},
		DefaultTimeout: time.Minute,
	},
}
