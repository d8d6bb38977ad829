// Package runbooks defines the runbook format: the Go types a YAML procedure
// decodes into, the loader that reports problems with file, line and field
// path, the validator that checks step types against the worker's catalogue,
// parameter resolution, and the templating used by step arguments.
//
// A runbook is data. The interpreter in package workflows walks it; nothing in
// this package knows about Kubernetes, images or Backstage.
package runbooks

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Runbook is one procedure: typed parameters and the steps that use them.
type Runbook struct {
	Name        string           `yaml:"name" json:"name"`
	Description string           `yaml:"description,omitempty" json:"description,omitempty"`
	Params      map[string]Param `yaml:"params,omitempty" json:"params,omitempty"`
	Steps       []Step           `yaml:"steps" json:"steps"`
	// OnFailure lists compensation steps that run, in order, when a step
	// fails, the run is rejected at a gate, or the run is cancelled.
	OnFailure []Step `yaml:"onFailure,omitempty" json:"onFailure,omitempty"`
	// Audit, if set, is rendered once when the run ends (after any
	// compensation, on success and failure alike) and kept with the run for
	// `stagehand audit`.
	Audit *Audit `yaml:"audit,omitempty" json:"audit,omitempty"`
}

// Audit names the facts a run of this runbook leaves for the audit trail,
// e.g. the version before and after an upgrade. Each value is a template
// with the data an onFailure step sees (.params, .steps incl. state and
// outputs, .run, .environments, .settings, .failedStep, .error; the last
// two are "" when the run succeeded). A template that fails to render (a
// step that never ran) yields "": audit never fails a run.
type Audit struct {
	// Summary holds short fields listed by `stagehand audit` and kept in
	// the run's memo: at most MaxAuditFields, each cut to MaxAuditSummaryLen.
	Summary map[string]string `yaml:"summary,omitempty" json:"summary,omitempty"`
	// Details holds longer text shown by `stagehand audit show`: at most
	// MaxAuditFields, each cut to MaxAuditDetailLen.
	Details map[string]string `yaml:"details,omitempty" json:"details,omitempty"`
}

// Bounds on a runbook's audit section: the summary travels in every
// visibility record of the run, the details in its result.
const (
	MaxAuditFields     = 10
	MaxAuditSummaryLen = 200
	MaxAuditDetailLen  = 8 << 10
)

// ParamType is the type a parameter value must have.
type ParamType string

// The parameter types a runbook may declare.
const (
	ParamString   ParamType = "string"
	ParamInt      ParamType = "int"
	ParamBool     ParamType = "bool"
	ParamDuration ParamType = "duration"
	// ParamEnvironment is a string naming one of the worker's configured
	// environments; the worker rejects other names before any step runs.
	ParamEnvironment ParamType = "environment"
)

// Param declares one input of a runbook.
type Param struct {
	Type        ParamType `yaml:"type,omitempty" json:"type,omitempty"`
	Description string    `yaml:"description,omitempty" json:"description,omitempty"`
	Required    bool      `yaml:"required,omitempty" json:"required,omitempty"`
	Default     any       `yaml:"default,omitempty" json:"default,omitempty"`
	Enum        []string  `yaml:"enum,omitempty" json:"enum,omitempty"`
	Pattern     string    `yaml:"pattern,omitempty" json:"pattern,omitempty"`
	// Secret marks the value as a reference to a secret (an environment
	// variable name or a Kubernetes Secret name), never the secret itself.
	// Activities resolve it; workflow history only ever holds the reference.
	Secret bool `yaml:"secret,omitempty" json:"secret,omitempty"`
	// UnsetIfMissing (environment params with a default only): when the
	// param is left at its default and the worker has no environment of
	// that name, it resolves to "" instead of refusing the run. The
	// upgrade runbook's sandbox uses it: a single-server worker has none.
	// A name given explicitly must still exist.
	UnsetIfMissing bool `yaml:"unsetIfMissing,omitempty" json:"unsetIfMissing,omitempty"`
}

// Step is one unit of work: an activity (Uses), an approval gate (Approval)
// or a group of steps that run in parallel (Parallel). Exactly one is set.
type Step struct {
	ID       string    `yaml:"id" json:"id"`
	Name     string    `yaml:"name,omitempty" json:"name,omitempty"`
	Uses     string    `yaml:"uses,omitempty" json:"uses,omitempty"`
	Approval *Approval `yaml:"approval,omitempty" json:"approval,omitempty"`
	Parallel []Step    `yaml:"parallel,omitempty" json:"parallel,omitempty"`
	// With holds the step's arguments; string values are Go templates over
	// .params, .steps.<id>.outputs, .run (id, runId, runbook, requestedBy,
	// startedAt, startedUnix) and (in onFailure) .failedStep and .error.
	With map[string]any `yaml:"with,omitempty" json:"with,omitempty"`
	// Timeout bounds one attempt of the step (start-to-close).
	Timeout Duration `yaml:"timeout,omitempty" json:"timeout,omitempty"`
	// HeartbeatTimeout overrides the step type's default heartbeat timeout.
	HeartbeatTimeout Duration     `yaml:"heartbeatTimeout,omitempty" json:"heartbeatTimeout,omitempty"`
	Retry            *RetryPolicy `yaml:"retry,omitempty" json:"retry,omitempty"`
	// If is a template that must render to a true value for the step to run.
	If              string `yaml:"if,omitempty" json:"if,omitempty"`
	ContinueOnError bool   `yaml:"continueOnError,omitempty" json:"continueOnError,omitempty"`
}

// Kind says which of the three step forms this is.
func (s Step) Kind() StepKind {
	switch {
	case s.Approval != nil:
		return KindApproval
	case len(s.Parallel) > 0:
		return KindParallel
	default:
		return KindActivity
	}
}

// StepKind distinguishes activity steps, approval gates and parallel groups.
type StepKind string

// The step kinds.
const (
	KindActivity StepKind = "activity"
	KindApproval StepKind = "approval"
	KindParallel StepKind = "parallel"
)

// Approval is a gate that waits for a human decision.
type Approval struct {
	// Message is a template shown to approvers.
	Message   string   `yaml:"message,omitempty" json:"message,omitempty"`
	Approvers []string `yaml:"approvers" json:"approvers"`
	// Timeout after which the run is rejected, e.g. "72h"; empty means wait
	// forever. It may be a template (e.g. "{{ .params.gateTimeout }}").
	// A gate in onFailure must have one, and its timeout or rejection only
	// skips what depends on it: the run's outcome is already decided.
	Timeout string `yaml:"timeout,omitempty" json:"timeout,omitempty"`
	// Remind, if set, runs a step (typically notify.send) every interval
	// while the gate stays open. After MaxRemindersAtInterval reminders the
	// interval doubles (up to MaxReminderInterval), so a gate left open for
	// weeks keeps its history small.
	Remind *Reminder `yaml:"remind,omitempty" json:"remind,omitempty"`
	// RequireIdentity refuses a decision unless the identity its connection
	// claims (see the worker's approvals.identities) maps to the person in
	// its `by`. The worker's approvals.requireIdentity turns it on for
	// every gate.
	RequireIdentity bool `yaml:"requireIdentity,omitempty" json:"requireIdentity,omitempty"`
}

// Reminder pacing: the first MaxRemindersAtInterval reminders of a gate
// come every remind.every; after that each waits twice as long as the one
// before, up to MaxReminderInterval. A gate open for four weeks with
// reminders every minute sends about 250, not 40,000, and its history
// stays far below Temporal's limits.
const (
	MaxRemindersAtInterval = 200
	MaxReminderInterval    = 24 * time.Hour
)

// Reminder re-announces an open gate. Its `with` templates also see
// .gate (id, message, approvers, waiting: how long it has been open).
type Reminder struct {
	Every Duration `yaml:"every" json:"every"`
	Uses  string   `yaml:"uses" json:"uses"`
	// If, like a step's, skips the reminder when it renders false.
	If   string         `yaml:"if,omitempty" json:"if,omitempty"`
	With map[string]any `yaml:"with,omitempty" json:"with,omitempty"`
}

// RetryPolicy maps onto Temporal's activity retry policy.
type RetryPolicy struct {
	MaxAttempts        int      `yaml:"maxAttempts,omitempty" json:"maxAttempts,omitempty"`
	InitialInterval    Duration `yaml:"initialInterval,omitempty" json:"initialInterval,omitempty"`
	BackoffCoefficient float64  `yaml:"backoffCoefficient,omitempty" json:"backoffCoefficient,omitempty"`
	MaximumInterval    Duration `yaml:"maximumInterval,omitempty" json:"maximumInterval,omitempty"`
	// NonRetryable lists error types (ApplicationError types) that end the
	// step at once.
	NonRetryable []string `yaml:"nonRetryable,omitempty" json:"nonRetryable,omitempty"`
}

// Duration is a time.Duration written as "90s", "5m" or "72h" in YAML and
// JSON, so runbooks and recorded histories stay readable.
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) String() string { return time.Duration(d).String() }

// MaxDuration is the longest duration a runbook may write anywhere: step
// and gate timeouts, waits, reminder and retry intervals, duration params.
// A gate that should wait longer than 90 days is a process problem, not a
// timer; and a bound keeps typos such as 9999999999d (which would overflow
// time.Duration and wrap to a negative or tiny value) from being accepted.
const MaxDuration = 90 * 24 * time.Hour

// ParseDuration accepts Go durations ("90s", "5m", "72h", "1h30m") and whole
// days ("7d"), from 0 up to what time.Duration holds (about 292 years):
// negative and overflowing values are errors that say which they are. It
// is what workflow code parses rendered durations with, so it must accept
// every value a recorded run may hold; runbooks are held to MaxDuration by
// ParseRunbookDuration when they load and their params resolve.
func ParseDuration(s string) (Duration, error) {
	return ParseDurationWithin(s, 0)
}

// ParseRunbookDuration is ParseDuration bounded by MaxDuration: what a
// runbook may write and a duration param may be given.
func ParseRunbookDuration(s string) (Duration, error) {
	return ParseDurationWithin(s, MaxDuration)
}

// ParseDurationWithin is ParseDuration with an upper bound (0: none beyond
// what time.Duration holds).
func ParseDurationWithin(s string, limit time.Duration) (Duration, error) {
	s = strings.TrimSpace(s)
	limitText := "the largest duration"
	if limit > 0 {
		limitText = "the limit of " + formatDays(limit)
	}
	if strings.HasPrefix(s, "-") && len(s) > 1 {
		return 0, fmt.Errorf("invalid duration %q: must not be negative", s)
	}
	if days, ok := strings.CutSuffix(s, "d"); ok && days != "" && strings.Trim(days, "0123456789") == "" {
		n, err := strconv.ParseInt(days, 10, 64)
		if err != nil || n > int64(math.MaxInt64/int64(24*time.Hour)) || (limit > 0 && time.Duration(n)*24*time.Hour > limit) {
			return 0, fmt.Errorf("invalid duration %q: longer than %s", s, limitText)
		}
		return Duration(time.Duration(n) * 24 * time.Hour), nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		if overflows(s) {
			return 0, fmt.Errorf("invalid duration %q: longer than %s", s, limitText)
		}
		return 0, fmt.Errorf("invalid duration %q (want e.g. 30s, 5m, 72h or 7d)", s)
	}
	if v < 0 {
		return 0, fmt.Errorf("invalid duration %q: must not be negative", s)
	}
	if limit > 0 && v > limit {
		return 0, fmt.Errorf("invalid duration %q: longer than %s", s, limitText)
	}
	return Duration(v), nil
}

// overflows tells a well-formed Go duration too large for time.Duration
// ("99999999999h") from a malformed one: time.ParseDuration gives the same
// error for both.
func overflows(s string) bool {
	if s == "" || strings.Trim(s, "0123456789.nsuµmh") != "" {
		return false
	}
	// Each unit's number is well formed if it parses as a float; a
	// malformed one keeps the plain "invalid" message.
	rest := s
	for rest != "" {
		i := strings.IndexFunc(rest, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
		if i <= 0 {
			return false
		}
		if _, err := strconv.ParseFloat(rest[:i], 64); err != nil {
			return false
		}
		j := strings.IndexFunc(rest[i:], func(r rune) bool { return (r >= '0' && r <= '9') || r == '.' })
		if j < 0 {
			j = len(rest) - i
		}
		switch rest[i : i+j] {
		case "ns", "us", "µs", "ms", "s", "m", "h":
		default:
			return false
		}
		rest = rest[i+j:]
	}
	return true
}

// formatDays writes a bound the way runbooks would, e.g. 90d.
func formatDays(d time.Duration) string {
	if d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	}
	return d.String()
}

// UnmarshalYAML accepts a duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	// A *yaml.TypeError lets the decoder carry on with the other fields,
	// so every problem in a runbook is reported in one pass.
	if n.Kind != yaml.ScalarNode {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: want a duration such as 30s", n.Line)}}
	}
	v, err := ParseRunbookDuration(n.Value)
	if err != nil {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %v", n.Line, err)}}
	}
	*d = v
	return nil
}

// MarshalYAML writes the duration string.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// MarshalJSON writes the duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// UnmarshalJSON accepts a duration string or a number of nanoseconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var n int64
		if err2 := json.Unmarshal(b, &n); err2 != nil {
			return fmt.Errorf("want a duration string: %w", err)
		}
		*d = Duration(n)
		return nil
	}
	// No upper bound here: this decodes recorded histories too, and a run
	// recorded before MaxDuration existed must still replay. Runbooks are
	// held to the bound when they are loaded and their params resolved.
	v, err := ParseDuration(s)
	if err != nil {
		return err
	}
	*d = v
	return nil
}
