package config

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/stagehand-dev/stagehand/runbooks"
)

// WorkerOptions size the Temporal worker. The defaults suit Stagehand's
// workload: runs spend hours or days parked at approval gates and their
// steps mostly wait on other systems (watches, HTTP checks, builds on an
// image engine), so what matters is that parked runs do not pin memory and
// that a stop hands work over cleanly, not raw task throughput.
type WorkerOptions struct {
	// Identity names this worker process in Temporal (pollers, and each
	// step's StepStatus.Worker, shown by `stagehand status` and the
	// audit). Default: stagehand-worker@<hostname>:<pid>, which in a pod
	// is the pod's name.
	Identity string `yaml:"identity,omitempty"`
	// WorkflowCacheSize is how many runs the worker keeps in memory
	// between their workflow tasks (the SDK's sticky cache, one per
	// process). A run parked at a gate that falls out of the cache costs
	// nothing here; approving it replays its history (a few hundred
	// events: milliseconds). The SDK's own default (10,000) held 2,000
	// parked runs at 176 MiB, so 10,000 would not fit in 256 MiB.
	WorkflowCacheSize int `yaml:"workflowCacheSize,omitempty"`
	// MaxConcurrentActivities bounds the steps this worker runs at once.
	// Most are waits (rollout watches, HTTP checks) that cost a goroutine
	// and a connection each; builds and backups are bounded by what the
	// image engine and the databases take, not by this.
	MaxConcurrentActivities int `yaml:"maxConcurrentActivities,omitempty"`
	// MaxConcurrentWorkflowTasks bounds workflow tasks (interpreter turns,
	// replays of evicted runs) processed at once.
	MaxConcurrentWorkflowTasks int `yaml:"maxConcurrentWorkflowTasks,omitempty"`
	// ActivityPollers and WorkflowTaskPollers are the long polls kept open
	// on the task queue for each kind of task.
	ActivityPollers     int `yaml:"activityPollers,omitempty"`
	WorkflowTaskPollers int `yaml:"workflowTaskPollers,omitempty"`
	// StopTimeout is how long a stopping worker (SIGTERM, Ctrl-C) lets
	// running steps finish before it cancels them and exits; watch steps
	// hand over at once. Keep it below the pod's
	// terminationGracePeriodSeconds (deploy/kubernetes sets 40s).
	StopTimeout runbooks.Duration `yaml:"stopTimeout,omitempty"`
}

// Default worker options (see WorkerOptions for why).
const (
	DefaultWorkflowCacheSize          = 1000
	DefaultMaxConcurrentActivities    = 200
	DefaultMaxConcurrentWorkflowTasks = 50
	DefaultActivityPollers            = 2
	DefaultWorkflowTaskPollers        = 2
	DefaultStopTimeout                = 30 * time.Second
)

// DefaultWorkerOptions are the options a worker runs with unless the
// config, environment or flags say otherwise.
func DefaultWorkerOptions() WorkerOptions {
	return WorkerOptions{
		WorkflowCacheSize:          DefaultWorkflowCacheSize,
		MaxConcurrentActivities:    DefaultMaxConcurrentActivities,
		MaxConcurrentWorkflowTasks: DefaultMaxConcurrentWorkflowTasks,
		ActivityPollers:            DefaultActivityPollers,
		WorkflowTaskPollers:        DefaultWorkflowTaskPollers,
		StopTimeout:                runbooks.Duration(DefaultStopTimeout),
	}
}

// WorkerOption is one setting of WorkerOptions as the config file, the
// environment and the command line name it.
type WorkerOption struct {
	Key  string // in the config file's worker: block
	Env  string
	Flag string
	Help string
	set  func(*WorkerOptions, string) error
}

// Bounds of the numeric options: generous for a big worker, small enough
// that a typo (an extra zero or three) is refused rather than honoured.
const (
	maxCacheSize   = 100_000
	maxConcurrency = 10_000
	maxPollers     = 100
	maxStopTimeout = time.Hour
	maxIdentityLen = 200
)

// WorkerOptionTable lists every worker option, in the order --help shows
// them.
var WorkerOptionTable = []WorkerOption{
	{Key: "identity", Env: "STAGEHAND_WORKER_IDENTITY", Flag: "identity",
		Help: "this worker's name in Temporal and in each step's status (default stagehand-worker@<hostname>:<pid>)",
		set: func(o *WorkerOptions, v string) error {
			o.Identity = v
			return nil
		}},
	{Key: "workflowCacheSize", Env: "STAGEHAND_WORKFLOW_CACHE_SIZE", Flag: "workflow-cache-size",
		Help: fmt.Sprintf("runs kept in memory between workflow tasks; parked runs beyond it replay when they resume (default %d)", DefaultWorkflowCacheSize),
		set:  intSetter(func(o *WorkerOptions) *int { return &o.WorkflowCacheSize }, 1, maxCacheSize)},
	{Key: "maxConcurrentActivities", Env: "STAGEHAND_MAX_CONCURRENT_ACTIVITIES", Flag: "max-concurrent-activities",
		Help: fmt.Sprintf("steps this worker runs at once (default %d)", DefaultMaxConcurrentActivities),
		set:  intSetter(func(o *WorkerOptions) *int { return &o.MaxConcurrentActivities }, 1, maxConcurrency)},
	{Key: "maxConcurrentWorkflowTasks", Env: "STAGEHAND_MAX_CONCURRENT_WORKFLOW_TASKS", Flag: "max-concurrent-workflow-tasks",
		Help: fmt.Sprintf("workflow tasks processed at once (default %d)", DefaultMaxConcurrentWorkflowTasks),
		set:  intSetter(func(o *WorkerOptions) *int { return &o.MaxConcurrentWorkflowTasks }, 2, maxConcurrency)},
	{Key: "activityPollers", Env: "STAGEHAND_ACTIVITY_POLLERS", Flag: "activity-pollers",
		Help: fmt.Sprintf("long polls for step tasks (default %d)", DefaultActivityPollers),
		set:  intSetter(func(o *WorkerOptions) *int { return &o.ActivityPollers }, 1, maxPollers)},
	{Key: "workflowTaskPollers", Env: "STAGEHAND_WORKFLOW_TASK_POLLERS", Flag: "workflow-task-pollers",
		Help: fmt.Sprintf("long polls for workflow tasks (default %d)", DefaultWorkflowTaskPollers),
		set:  intSetter(func(o *WorkerOptions) *int { return &o.WorkflowTaskPollers }, 2, maxPollers)},
	{Key: "stopTimeout", Env: "STAGEHAND_STOP_TIMEOUT", Flag: "stop-timeout",
		Help: fmt.Sprintf("on SIGTERM, how long running steps may take to finish before they are cancelled and handed over (default %s)", DefaultStopTimeout),
		set: func(o *WorkerOptions, v string) error {
			d, err := runbooks.ParseDuration(v)
			if err != nil {
				return err
			}
			o.StopTimeout = d
			return nil
		}},
}

func intSetter(field func(*WorkerOptions) *int, lo, hi int) func(*WorkerOptions, string) error {
	return func(o *WorkerOptions, v string) error {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil {
			return fmt.Errorf("%q is not a whole number", v)
		}
		if n < lo || n > hi {
			return fmt.Errorf("%d is outside %d..%d", n, lo, hi)
		}
		*field(o) = n
		return nil
	}
}

// Set sets one option from its text (a flag's or an environment
// variable's value), checking it as Validate would.
func (opt WorkerOption) Set(o *WorkerOptions, value string) error {
	return opt.set(o, value)
}

// applyEnv sets the options whose environment variables are set; an
// unusable value is kept for Validate to report with everything else.
func (o *WorkerOptions) applyEnv(getenv Getenv) []string {
	var problems []string
	for _, opt := range WorkerOptionTable {
		if v := getenv(opt.Env); v != "" {
			if err := opt.set(o, v); err != nil {
				problems = append(problems, fmt.Sprintf("%s: %v", opt.Env, err))
			}
		}
	}
	return problems
}

// Problems lists what is wrong with the options, each naming its key.
func (o WorkerOptions) Problems() []string {
	var problems []string
	check := func(key string, n, lo, hi int) {
		if n < lo || n > hi {
			problems = append(problems, fmt.Sprintf("worker.%s %d: want %d..%d", key, n, lo, hi))
		}
	}
	check("workflowCacheSize", o.WorkflowCacheSize, 1, maxCacheSize)
	check("maxConcurrentActivities", o.MaxConcurrentActivities, 1, maxConcurrency)
	check("maxConcurrentWorkflowTasks", o.MaxConcurrentWorkflowTasks, 2, maxConcurrency)
	check("activityPollers", o.ActivityPollers, 1, maxPollers)
	check("workflowTaskPollers", o.WorkflowTaskPollers, 2, maxPollers)
	if d := o.StopTimeout.D(); d < time.Second || d > maxStopTimeout {
		problems = append(problems, fmt.Sprintf("worker.stopTimeout %s: want 1s..%s", d, maxStopTimeout))
	}
	if len(o.Identity) > maxIdentityLen {
		problems = append(problems, fmt.Sprintf("worker.identity: longer than %d characters", maxIdentityLen))
	}
	if strings.IndexFunc(o.Identity, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0 {
		problems = append(problems, "worker.identity: has control characters")
	}
	return problems
}

// EffectiveIdentity is Identity, or stagehand-worker@<hostname>:<pid>.
func (o WorkerOptions) EffectiveIdentity() string {
	if o.Identity != "" {
		return o.Identity
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown-host"
	}
	return fmt.Sprintf("stagehand-worker@%s:%d", host, os.Getpid())
}
