// Package command holds the `exec.run` step type: it runs one of the
// commands the worker's configuration allows (`commands:`), e.g. `yarn
// backstage-cli versions:bump` in a work tree that git.checkout made.
//
// Runbooks come from whoever can start a run, so the worker's list is the
// trust boundary: a run names a command and may add only what the entry
// allows — arguments matching its pattern, a directory inside its roots,
// the environment variables it lists, a timeout up to its bound. Anything
// else is refused before a process starts. Commands run with argv (never a
// shell), with an environment built from scratch (a few inherited
// variables, the entry's fixed ones, the run's secret references resolved
// here), in their own process group, so a timeout or a cancelled run kills
// the command and everything it started. Secret values the command echoes
// are replaced by *** in the log, the outputs and errors.
package command

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"

	"github.com/stagehand-dev/stagehand/activities"
	"github.com/stagehand-dev/stagehand/activities/secrets"
	"github.com/stagehand-dev/stagehand/activities/steps"
)

// Defaults of a Command's optional fields.
const (
	DefaultMaxArgs = 16
	DefaultTimeout = 30 * time.Minute
	// DefaultTailLines is how many output lines results and errors keep.
	DefaultTailLines = 40
)

// DefaultInheritEnv are the worker's environment variables a command sees
// when its entry lists none.
var DefaultInheritEnv = []string{"PATH", "HOME", "LANG", "TMPDIR"}

// Bounds on what a configuration or a run may ask for.
const (
	maxMaxArgs    = 256
	maxArgBytes   = 4096
	maxTimeout    = 24 * time.Hour
	maxTailLines  = 1000
	maxLineBytes  = 2000
	maxEnvEntries = 64
)

// Command is one allowed command of the worker config.
type Command struct {
	// Argv is the fixed program and leading arguments, e.g. [yarn,
	// backstage-cli, versions:bump]. Argv[0] is an absolute path or a name
	// found on the worker's PATH.
	Argv []string `yaml:"argv" json:"argv"`
	// ArgPattern is a regular expression each extra argument of a run must
	// match in full; empty means a run may add no arguments.
	ArgPattern string `yaml:"argPattern,omitempty" json:"argPattern,omitempty"`
	// MaxArgs caps the extra arguments; default 16.
	MaxArgs int `yaml:"maxArgs,omitempty" json:"maxArgs,omitempty"`
	// Dirs are the roots a run's `dir` must resolve inside (symbolic links
	// followed); the first is the default. At least one is required.
	Dirs []string `yaml:"dirs" json:"dirs"`
	// Env is the fixed environment: VAR -> a literal value, or a secret
	// reference (env:NAME, secret:NAME/KEY) resolved when the command runs.
	Env map[string]string `yaml:"env,omitempty" json:"env,omitempty"`
	// AllowEnv lists the VARs a run's `env` may set; a run gives secret
	// references, never values.
	AllowEnv []string `yaml:"allowEnv,omitempty" json:"allowEnv,omitempty"`
	// Timeout is the default and the upper bound of a run's timeout;
	// default 30m.
	Timeout time.Duration `yaml:"timeout,omitempty" json:"timeout,omitempty"`
	// InheritEnv are the worker's environment variables passed through;
	// default PATH, HOME, LANG, TMPDIR. Nothing else of the worker's
	// environment (its own tokens, for one) reaches the command.
	InheritEnv []string `yaml:"inheritEnv,omitempty" json:"inheritEnv,omitempty"`
}

var (
	envNameRE     = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	commandNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)
)

// isRef reports whether an env value is a secret reference rather than a
// literal.
func isRef(v string) bool {
	return strings.HasPrefix(v, "env:") || strings.HasPrefix(v, "secret:")
}

// Validate checks an entry at worker start, so a typo in the config stops
// the worker instead of failing a run hours later. name is the entry's key.
func (c Command) Validate(name string) error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("command %q: "+format, append([]any{name}, args...)...))
	}
	if !commandNameRE.MatchString(name) {
		errs = append(errs, fmt.Errorf("command name %q: use letters, digits, '.', '_' and '-'", name))
	}
	if len(c.Argv) == 0 || c.Argv[0] == "" {
		bad("argv is empty: it needs at least the program")
	} else if _, err := exec.LookPath(c.Argv[0]); err != nil {
		bad("program %q is not an executable file or not on PATH: %v", c.Argv[0], err)
	}
	if c.ArgPattern != "" {
		if _, err := compilePattern(c.ArgPattern); err != nil {
			bad("argPattern: %v", err)
		}
	}
	if c.MaxArgs < 0 || c.MaxArgs > maxMaxArgs {
		bad("maxArgs %d: want 0 to %d", c.MaxArgs, maxMaxArgs)
	}
	if len(c.Dirs) == 0 {
		bad("dirs is empty: give at least one directory the command may run in")
	}
	for _, d := range c.Dirs {
		if !filepath.IsAbs(d) {
			bad("dir %q is not an absolute path", d)
		}
	}
	if len(c.Env)+len(c.AllowEnv) > maxEnvEntries {
		bad("env and allowEnv list more than %d variables", maxEnvEntries)
	}
	for k, v := range c.Env {
		if !envNameRE.MatchString(k) {
			bad("env: %q is not a variable name", k)
		}
		if ref, ok := strings.CutPrefix(v, "secret:"); ok && !strings.Contains(ref, "/") {
			bad("env %s: secret reference %q needs secret:NAME/KEY", k, v)
		}
		if ref, ok := strings.CutPrefix(v, "env:"); ok && !envNameRE.MatchString(ref) {
			bad("env %s: %q does not name an environment variable", k, v)
		}
	}
	for _, k := range c.AllowEnv {
		if !envNameRE.MatchString(k) {
			bad("allowEnv: %q is not a variable name", k)
		}
		if _, fixed := c.Env[k]; fixed {
			// A fixed value a run could replace would not be fixed.
			bad("%s is both in env and allowEnv", k)
		}
	}
	for _, k := range c.InheritEnv {
		if !envNameRE.MatchString(k) {
			bad("inheritEnv: %q is not a variable name", k)
		}
	}
	if c.Timeout < 0 || c.Timeout > maxTimeout {
		bad("timeout %s: want at most %s", c.Timeout, maxTimeout)
	}
	return errors.Join(errs...)
}

func compilePattern(p string) (*regexp.Regexp, error) {
	// Anchored here so that "[a-z]+" cannot be satisfied by one letter in
	// the middle of "--exec=rm".
	return regexp.Compile(`^(?:` + p + `)$`)
}

func (c Command) maxArgs() int {
	if c.MaxArgs > 0 {
		return c.MaxArgs
	}
	return DefaultMaxArgs
}

func (c Command) timeout() time.Duration {
	if c.Timeout > 0 {
		return c.Timeout
	}
	return DefaultTimeout
}

func (c Command) inheritEnv() []string {
	if len(c.InheritEnv) > 0 {
		return c.InheritEnv
	}
	return DefaultInheritEnv
}

// Activities runs exec.run. Commands is the worker's allow-list; a zero
// Activities refuses every command.
type Activities struct {
	Commands map[string]Command
	// Resolve resolves secret references; nil resolves env:NAME only.
	Resolve secrets.Resolver
	// TailLines is how many output lines results and errors keep; default
	// 40.
	TailLines int
	// Logger receives every output line (with the step and command); nil
	// drops them.
	Logger *slog.Logger
	// Scope narrows a configured root to what the current run may use; nil
	// keeps every root as it is. The worker narrows the git checkouts root
	// to the run's own work trees, so one run cannot run commands in (and
	// change) another run's checkout before that one builds or pushes it.
	Scope func(ctx context.Context, root string) string

	// KillGrace is how long a process group has between SIGTERM and
	// SIGKILL; default 5 s.
	KillGrace time.Duration
	// HeartbeatInterval is how often a running command heartbeats; default
	// 5 s.
	HeartbeatInterval time.Duration

	// onHeartbeat sees every heartbeat; the SDK batches them for the
	// server, so tests watch here.
	onHeartbeat func(Progress)
}

func (a *Activities) tailLines() int {
	switch {
	case a.TailLines <= 0:
		return DefaultTailLines
	case a.TailLines > maxTailLines:
		return maxTailLines
	}
	return a.TailLines
}

func (a *Activities) killGrace() time.Duration {
	if a.KillGrace > 0 {
		return a.KillGrace
	}
	return 5 * time.Second
}

func (a *Activities) heartbeatInterval() time.Duration {
	if a.HeartbeatInterval > 0 {
		return a.HeartbeatInterval
	}
	return 5 * time.Second
}

// RunInput is the `with` of an exec.run step.
type RunInput struct {
	Command string   `json:"command"`
	Args    []string `json:"args,omitempty"`
	Dir     string   `json:"dir,omitempty"`
	// Env maps VARs to secret references.
	Env map[string]string `json:"env,omitempty"`
	// Timeout is a Go duration such as 10m.
	Timeout string `json:"timeout,omitempty"`
}

// RunOutput is what a command that exited 0 returns.
type RunOutput struct {
	Command    string `json:"command"`
	ExitCode   int    `json:"exitCode"`
	Tail       string `json:"tail"`
	DurationMs int64  `json:"durationMs"`
}

// StepTypes binds exec.run to its spec in activities/steps.
func StepTypes(a *Activities) []activities.StepType {
	return []activities.StepType{
		activities.Implement(steps.Spec("exec.run"), a.Run),
	}
}

func nonRetryable(errType, msg string) error {
	return temporal.NewNonRetryableApplicationError(msg, errType, nil)
}

func notAllowed(name, format string, args ...any) error {
	return nonRetryable(activities.ErrCommandNotAllowed, fmt.Sprintf("command %q: ", name)+fmt.Sprintf(format, args...))
}

// plan is a run that passed every check: what to start, where and how.
type plan struct {
	name    string
	path    string
	argv    []string
	dir     string
	env     []string
	timeout time.Duration
	secrets []string
}

// Run runs an allowed command once. Nothing starts unless every part of the
// request is within what the command's entry allows.
func (a *Activities) Run(ctx context.Context, in RunInput) (RunOutput, error) {
	p, err := a.check(ctx, in)
	if err != nil {
		return RunOutput{}, err
	}
	return a.run(ctx, p)
}

// check turns a request into a plan, or refuses it.
func (a *Activities) check(ctx context.Context, in RunInput) (plan, error) {
	if in.Command == "" {
		return plan{}, nonRetryable(activities.ErrInvalidArguments, "command is required")
	}
	c, ok := a.Commands[in.Command]
	if !ok {
		allowed := "none: the worker's config has no commands"
		if len(a.Commands) > 0 {
			names := make([]string, 0, len(a.Commands))
			for n := range a.Commands {
				names = append(names, n)
			}
			slices.Sort(names)
			allowed = strings.Join(names, ", ")
		}
		return plan{}, nonRetryable(activities.ErrCommandNotAllowed,
			fmt.Sprintf("command %q is not in this worker's commands list (allowed: %s)", in.Command, allowed))
	}
	if len(c.Argv) == 0 {
		return plan{}, notAllowed(in.Command, "the worker's entry has no argv")
	}
	p := plan{name: in.Command}

	// Extra arguments.
	if len(in.Args) > 0 && c.ArgPattern == "" {
		return plan{}, notAllowed(in.Command, "takes no extra arguments (its entry has no argPattern), got %d", len(in.Args))
	}
	if len(in.Args) > c.maxArgs() {
		return plan{}, notAllowed(in.Command, "%d extra arguments, at most %d allowed", len(in.Args), c.maxArgs())
	}
	if len(in.Args) > 0 {
		re, err := compilePattern(c.ArgPattern)
		if err != nil {
			return plan{}, notAllowed(in.Command, "the worker's argPattern does not compile: %v", err)
		}
		for i, arg := range in.Args {
			if len(arg) > maxArgBytes {
				return plan{}, notAllowed(in.Command, "argument %d is %d bytes long, at most %d allowed", i+1, len(arg), maxArgBytes)
			}
			if !re.MatchString(arg) {
				return plan{}, notAllowed(in.Command, "argument %d %q does not match the allowed pattern %s", i+1, arg, c.ArgPattern)
			}
		}
	}
	path, err := exec.LookPath(c.Argv[0])
	if err != nil {
		return plan{}, nonRetryable(activities.ErrCommandFailed,
			fmt.Sprintf("command %q: program %s not found on the worker: %v", in.Command, c.Argv[0], err))
	}
	p.path = path
	p.argv = append(append([]string{c.Argv[0]}, c.Argv[1:]...), in.Args...)

	// Working directory.
	dir, err := resolveDir(in.Command, scopeRoots(ctx, a.Scope, c.Dirs), in.Dir)
	if err != nil {
		return plan{}, err
	}
	p.dir = dir

	// Timeout.
	p.timeout = c.timeout()
	if in.Timeout != "" {
		d, err := time.ParseDuration(in.Timeout)
		if err != nil || d <= 0 {
			return plan{}, nonRetryable(activities.ErrInvalidArguments, fmt.Sprintf("timeout %q: want a positive duration such as 10m", in.Timeout))
		}
		if d > c.timeout() {
			return plan{}, notAllowed(in.Command, "timeout %s is above its bound %s", d, c.timeout())
		}
		p.timeout = d
	}

	// Environment: checked before anything is resolved, so a refused
	// request resolves no secret.
	for _, k := range slices.Sorted(maps.Keys(in.Env)) {
		if !slices.Contains(c.AllowEnv, k) {
			allowed := "none"
			if len(c.AllowEnv) > 0 {
				allowed = strings.Join(c.AllowEnv, ", ")
			}
			return plan{}, notAllowed(in.Command, "env %s is not one it allows (allowEnv: %s)", k, allowed)
		}
		if !isRef(in.Env[k]) {
			// A value in the run's input would sit in workflow history.
			return plan{}, nonRetryable(activities.ErrInvalidArguments,
				fmt.Sprintf("env %s: want a secret reference (env:NAME or secret:NAME/KEY), not a value", k))
		}
	}
	env := map[string]string{}
	for _, k := range c.inheritEnv() {
		if v, ok := os.LookupEnv(k); ok {
			env[k] = v
		}
	}
	// The value goes to the command's process, not to a host the step
	// picks, so the secret policy checks only the step; a reference of the
	// command's own `env` in the worker config was chosen by the config for
	// this command and needs no rule.
	resolve := func(k, ref string, configured bool) error {
		v, err := secrets.ResolveFor(ctx, a.Resolve, ref, secrets.Use{Local: true, Configured: configured})
		if refused := secrets.Refusal(err); refused != nil {
			return refused
		}
		if err != nil {
			return nonRetryable(activities.ErrSecretUnavailable, fmt.Sprintf("command %q: env %s: %v", in.Command, k, err))
		}
		env[k] = v
		p.secrets = append(p.secrets, v)
		return nil
	}
	for _, k := range slices.Sorted(maps.Keys(c.Env)) {
		v := c.Env[k]
		if !isRef(v) {
			env[k] = v
			continue
		}
		if err := resolve(k, v, true); err != nil {
			return plan{}, err
		}
	}
	for _, k := range slices.Sorted(maps.Keys(in.Env)) {
		if err := resolve(k, in.Env[k], false); err != nil {
			return plan{}, err
		}
	}
	for _, k := range slices.Sorted(maps.Keys(env)) {
		p.env = append(p.env, k+"="+env[k])
	}
	return p, nil
}

// scopeRoots applies scope to every root (see Activities.Scope).
func scopeRoots(ctx context.Context, scope func(context.Context, string) string, roots []string) []string {
	if scope == nil {
		return roots
	}
	out := make([]string, len(roots))
	for i, r := range roots {
		out[i] = scope(ctx, r)
	}
	return out
}

// resolveDir returns the real path of the run's directory, refusing one
// that is not inside a root once symbolic links are followed: a work tree
// can contain a link to /, and `..` climbs out of any root.
func resolveDir(name string, roots []string, dir string) (string, error) {
	if len(roots) == 0 {
		return "", notAllowed(name, "the worker's entry has no dirs to run in")
	}
	want := dir
	if want == "" {
		want = roots[0]
	} else if !filepath.IsAbs(want) {
		want = filepath.Join(roots[0], want)
	}
	real, err := filepath.EvalSymlinks(want)
	if err != nil {
		return "", nonRetryable(activities.ErrInvalidArguments, fmt.Sprintf("command %q: dir %s: %v", name, dir, err))
	}
	if fi, err := os.Stat(real); err != nil || !fi.IsDir() {
		return "", nonRetryable(activities.ErrInvalidArguments, fmt.Sprintf("command %q: dir %s is not a directory", name, dir))
	}
	for _, root := range roots {
		r, err := filepath.EvalSymlinks(root)
		if err != nil {
			continue // a root that does not exist yet holds nothing
		}
		if within(r, real) {
			return real, nil
		}
	}
	shown := dir
	if shown == "" {
		shown = want
	}
	return "", notAllowed(name, "dir %s (%s) is outside the directories it may run in: %s", shown, real, strings.Join(roots, ", "))
}

// within reports whether path is root or below it; both are clean, real
// paths.
func within(root, path string) bool {
	rel, err := filepath.Rel(root, path)
	if err != nil {
		return false
	}
	return rel == "." || (rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) && !filepath.IsAbs(rel))
}
