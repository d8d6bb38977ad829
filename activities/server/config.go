// Package server holds the single-server step types (server.start, stop,
// restart, status, logs): a Backstage backend run as a process on the
// worker's host, the way the administrator's guide runs it with `nohup
// yarn start > server.log &`, stop by pid, tail server.log, check the URL.
//
// The worker config is the trust boundary: a runbook names an environment
// (`environment: portal`), never a directory, argv or environment
// variables. The worker supervises the process itself: it runs in its own
// session and process group with stdout and stderr appended to the log
// file (no pipe to the worker), so it outlives the activity and the worker.
// A pid file records the pid, its process group, the process's start time
// from /proc and the argv, so a worker that restarted finds and stops the
// same process, and never signals a pid the kernel has since given to
// another program. Where systemd runs the portal, an environment names its
// unit instead (Config.Systemd) and the steps drive systemctl and read
// journalctl.
package server

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// Defaults of a Config's optional fields.
const (
	DefaultStopTimeout  = 30 * time.Second
	DefaultStartTimeout = 5 * time.Minute
	// DefaultLogLines is how many lines server.logs returns by default.
	DefaultLogLines = 100
)

// DefaultErrorPatterns are what server.logs (and a failed start's message)
// look for when the config names none: Backstage's own words for a
// backend that did not come up, and for a schema migrated by a newer
// version than the one starting.
var DefaultErrorPatterns = []string{"Backend failed to start up", "migration directory is corrupt"}

// DefaultInheritEnv are the worker's environment variables the server
// sees when its config lists none.
var DefaultInheritEnv = []string{"PATH", "HOME", "LANG", "TMPDIR"}

// Bounds on a configuration and on a run's arguments.
const (
	maxStopTimeout   = time.Hour
	maxStartTimeout  = 2 * time.Hour
	maxEnvEntries    = 64
	maxPatterns      = 32
	maxPatternBytes  = 512
	maxLogLines      = 1000
	maxLineBytes     = 2000
	maxTailReadBytes = 4 << 20
	// startFailLines is how many log lines a failed start's message quotes.
	startFailLines = 20
)

// Config is one single-server environment's process (the worker config's
// `environments.<name>.server`).
type Config struct {
	// Dir is the portal's directory (absolute), the process's working
	// directory.
	Dir string `yaml:"dir" json:"dir"`
	// Command is the argv, e.g. [node, packages/backend/dist/index.js,
	// --config, app-config.yaml] or [yarn, start]; Command[0] is absolute
	// or on the worker's PATH. Never run through a shell.
	Command []string `yaml:"command" json:"command"`
	// Env is the server's environment: VAR -> a literal value or a secret
	// reference (env:NAME, secret:NAME/KEY) resolved at each start.
	Env map[string]string `yaml:"env,omitempty" json:"env,omitempty"`
	// InheritEnv are the worker's variables passed through; default PATH,
	// HOME, LANG, TMPDIR. Nothing else of the worker's environment (its
	// own tokens) reaches the server.
	InheritEnv []string `yaml:"inheritEnv,omitempty" json:"inheritEnv,omitempty"`
	// LogFile receives stdout and stderr, appended (nohup-style); default
	// <dir>/.stagehand/server.log. Each start writes a marker line first, so logs and
	// errors can be read "since this start".
	LogFile string `yaml:"logFile,omitempty" json:"logFile,omitempty"`
	// HealthURL answers 200 once the server is ready, e.g.
	// http://127.0.0.1:7007/.backstage/health/v1/readiness.
	HealthURL string `yaml:"healthURL" json:"healthURL"`
	// PidFile records the supervised process; default
	// <dir>/.stagehand/server.pid.
	PidFile string `yaml:"pidFile,omitempty" json:"pidFile,omitempty"`
	// StopTimeout is how long the process group has between SIGTERM and
	// SIGKILL; default 30s, at most 1h.
	StopTimeout time.Duration `yaml:"stopTimeout,omitempty" json:"stopTimeout,omitempty"`
	// StartTimeout bounds the wait for the health URL; default 5m, at most
	// 2h.
	StartTimeout time.Duration `yaml:"startTimeout,omitempty" json:"startTimeout,omitempty"`
	// ErrorPatterns are regular expressions that server.logs fails on;
	// default DefaultErrorPatterns.
	ErrorPatterns []string `yaml:"errorPatterns,omitempty" json:"errorPatterns,omitempty"`
	// Systemd, when set, drives that unit instead of supervising a
	// process: Command, Env, InheritEnv, LogFile and PidFile are then
	// empty, and Dir optional.
	Systemd *Systemd `yaml:"systemd,omitempty" json:"systemd,omitempty"`
}

var (
	envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	envKeyRE  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)
)

// isRef reports whether an env value is a secret reference rather than a
// literal.
func isRef(v string) bool {
	return strings.HasPrefix(v, "env:") || strings.HasPrefix(v, "secret:")
}

// Validate checks one environment's config at worker start and reports
// every problem at once, each naming its field, so a typo stops the worker
// instead of failing a run hours later. name is the environment's name.
func (c Config) Validate(name string) error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("server environment %q: "+format, append([]any{name}, args...)...))
	}
	if !envKeyRE.MatchString(name) {
		bad("the name: use letters, digits, '.', '_' and '-'")
	}
	switch {
	case c.Dir == "" && c.Systemd != nil:
	case c.Dir == "":
		bad("dir is empty: give the portal's directory")
	case !filepath.IsAbs(c.Dir):
		bad("dir %q is not an absolute path", c.Dir)
	default:
		if fi, err := os.Stat(c.Dir); err != nil {
			bad("dir %s: %v", c.Dir, err)
		} else if !fi.IsDir() {
			bad("dir %s is not a directory", c.Dir)
		}
	}
	switch {
	case c.Systemd != nil:
		c.Systemd.validate(c, bad)
	case len(c.Command) == 0 || c.Command[0] == "":
		bad("command is empty: it needs at least the program, e.g. [node, packages/backend/dist/index.js]")
	default:
		if _, err := lookPath(c.Command[0]); err != nil {
			bad("command: program %q is not an executable file or not on PATH: %v", c.Command[0], err)
		}
	}
	if c.HealthURL == "" {
		bad("healthURL is empty: give the readiness URL, e.g. http://127.0.0.1:7007/.backstage/health/v1/readiness")
	} else if u, err := url.Parse(c.HealthURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		bad("healthURL %q: want an http:// or https:// URL with a host", c.HealthURL)
	} else if u.User != nil {
		bad("healthURL %q: must not carry credentials", u.Redacted())
	}
	if c.StopTimeout < 0 || c.StopTimeout > maxStopTimeout {
		bad("stopTimeout %s: want more than 0 and at most %s (0 means the default %s)", c.StopTimeout, maxStopTimeout, DefaultStopTimeout)
	}
	if c.StartTimeout < 0 || c.StartTimeout > maxStartTimeout {
		bad("startTimeout %s: want more than 0 and at most %s (0 means the default %s)", c.StartTimeout, maxStartTimeout, DefaultStartTimeout)
	}
	if len(c.ErrorPatterns) > maxPatterns {
		bad("errorPatterns: %d patterns, at most %d", len(c.ErrorPatterns), maxPatterns)
	}
	for i, p := range c.ErrorPatterns {
		if len(p) > maxPatternBytes {
			bad("errorPatterns[%d] is %d bytes long, at most %d", i, len(p), maxPatternBytes)
		} else if _, err := regexp.Compile(p); err != nil {
			bad("errorPatterns[%d]: %v", i, err)
		}
	}
	if len(c.Env) > maxEnvEntries {
		bad("env has %d variables, at most %d", len(c.Env), maxEnvEntries)
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
	for _, k := range c.InheritEnv {
		if !envNameRE.MatchString(k) {
			bad("inheritEnv: %q is not a variable name", k)
		}
	}
	for field, p := range map[string]string{"logFile": c.LogFile, "pidFile": c.PidFile} {
		if p != "" && !filepath.IsAbs(p) {
			bad("%s %q is not an absolute path", field, p)
		}
	}
	return errors.Join(errs...)
}

// lookPath finds a program: an absolute path as it is, a bare name on the
// worker's PATH. A relative path with a slash is refused: it would be
// taken from the worker's directory, not the portal's.
func lookPath(prog string) (string, error) {
	if strings.Contains(prog, "/") && !filepath.IsAbs(prog) {
		return "", errors.New("a relative path: give an absolute path or a program name on PATH")
	}
	return exec.LookPath(prog)
}

func (c Config) logFile() string {
	if c.LogFile != "" {
		return c.LogFile
	}
	// Next to the pid file, in the directory the git steps leave alone,
	// so a log in the work tree does not make it dirty.
	return filepath.Join(c.Dir, ".stagehand", "server.log")
}

func (c Config) pidFile() string {
	if c.PidFile != "" {
		return c.PidFile
	}
	return filepath.Join(c.Dir, ".stagehand", "server.pid")
}

func (c Config) stopTimeout() time.Duration {
	if c.StopTimeout > 0 {
		return c.StopTimeout
	}
	return DefaultStopTimeout
}

func (c Config) startTimeout() time.Duration {
	if c.StartTimeout > 0 {
		return c.StartTimeout
	}
	return DefaultStartTimeout
}

func (c Config) inheritEnv() []string {
	if len(c.InheritEnv) > 0 {
		return c.InheritEnv
	}
	return DefaultInheritEnv
}

func (c Config) errorPatterns() []string {
	if len(c.ErrorPatterns) > 0 {
		return c.ErrorPatterns
	}
	return DefaultErrorPatterns
}
