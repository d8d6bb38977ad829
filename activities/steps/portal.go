package steps

import (
	"time"

	"github.com/stagehand-dev/stagehand/activities"
)

var portal = []activities.StepSpec{
	{
		Name:      "portal.versions",
		Resumable: true,
		Description: "Read the Backstage versions of a portal work tree: backstage.json's version and the @backstage/* " +
			"(or the named) dependencies of the root, packages/* and plugins/* package.json files, as written.",
		Args: []activities.Arg{
			req("dir", TString, "a work tree git.checkout made in this run (its dir output), or a single-server environment's directory"),
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
	}, {
		Name: "portal.setConfig",
		Description: "Set keys of a portal's app-config YAML with a structured edit that keeps comments, blank lines, " +
			"key order and quoting of everything it does not set; missing parent mappings are created. " +
			"Keys that already hold their value are reported unchanged and the file is left byte for byte as it was.",
		Args: []activities.Arg{
			req("dir", TString, "a work tree git.checkout made in this run, or a single-server environment's directory"),
			arg("file", TString, "the YAML file, relative to dir; default app-config.yaml"),
			req("set", TMap, "dotted key path → value (scalar, list or map; a map replaces the key's whole value), "+
				"e.g. {backend.listen.port: 7007}; at most 64 keys, values nested at most 8 deep and 64 KiB"),
		},
		Outputs: []activities.Output{
			out("file", TString, "the file edited, relative to dir"),
			out("changed", TList, "the keys whose value this attempt wrote"),
			out("unchanged", TList, "the keys that held their value already"),
		},
		Errors:         []string{activities.ErrPortalFileShape, activities.ErrPortalEditFailed, activities.ErrGitError},
		DefaultTimeout: time.Minute,
	},
	{
		Name: "portal.registerPlugin",
		Description: "Register a backend plugin with the new backend system: add backend.add(import('<package>')); on its own line " +
			"above backend.start(); in the backend's index.ts. The file must have one createBackend() and one start() line; " +
			"a plugin added already leaves the file untouched (added: false).",
		Args: []activities.Arg{
			req("dir", TString, "a work tree git.checkout made in this run, or a single-server environment's directory"),
			arg("file", TString, "the backend entry point, relative to dir; default packages/backend/src/index.ts"),
			req("package", TString, "the plugin's npm package, e.g. @backstage/plugin-todo-backend"),
			arg("subpath", TString, "a subpath of the package to import, e.g. alpha for '<package>/alpha'"),
			arg("modules", TList, "more packages to register after it, in order (the plugin's backend modules, e.g. "+
				"@backstage/plugin-search-backend-module-pg); an @version suffix is ignored; at most 8"),
		},
		Outputs: []activities.Output{
			out("file", TString, "the file edited, relative to dir"),
			out("added", TBool, "this attempt added a line; false when the backend adds the plugin (and its modules) already"),
			out("line", TInt, "the 1-based line of the plugin's backend.add (the new one or the existing one)"),
		},
		Errors:         []string{activities.ErrPortalFileShape, activities.ErrPortalEditFailed, activities.ErrGitError},
		DefaultTimeout: time.Minute,
	},
}
