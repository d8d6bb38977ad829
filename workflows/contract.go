package workflows

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"

	"github.com/stagehand-dev/stagehand/activities"
)

// The names that the Temporal UI, the CLI and scripts rely on. Changing any of
// them breaks running workflows and users' scripts.
const (
	// WorkflowType is the registered name of the runbook interpreter.
	WorkflowType = "RunbookWorkflow"
	// DefaultTaskQueue is where the worker listens unless configured otherwise.
	DefaultTaskQueue = "stagehand"
	// ApprovalSignal carries an ApprovalDecision; invalid ones are recorded
	// as refused (the newest MaxRefusedDecisions), logged by the worker
	// (RefusedApprovalLog) and otherwise ignored. The sender's identity
	// travels in the IdentityHeader header.
	ApprovalSignal = "approval"
	// ApproveUpdate carries an ApprovalDecision; its validator refuses
	// invalid decisions before they reach history, so the worker's log
	// (RefusedApprovalLog) is their only trace. The sender's identity
	// travels in the IdentityHeader header.
	ApproveUpdate = "approve"
	// StatusQuery returns a Status.
	StatusQuery = "status"
	// ResolveActivity loads, validates and records the runbook and params.
	ResolveActivity = "runbook.resolve"
)

// Search attributes kept current by every run. Each must be registered on the
// namespace with its type before a run sets it: the server rejects an upsert
// of an unknown attribute by failing the workflow task, over and over, so the
// run never ends. The worker checks them at start-up (worker/app).
var (
	SearchRunbook     = temporal.NewSearchAttributeKeyKeyword("StagehandRunbook")
	SearchEnvironment = temporal.NewSearchAttributeKeyKeyword("StagehandEnvironment")
	SearchImage       = temporal.NewSearchAttributeKeyKeyword("StagehandImage")
	SearchOutcome     = temporal.NewSearchAttributeKeyKeyword("StagehandOutcome")
	SearchRequestedBy = temporal.NewSearchAttributeKeyKeyword("StagehandRequestedBy")
	SearchApprovers   = temporal.NewSearchAttributeKeyKeywordList("StagehandApprovers")
	// SearchPR is the `pr` param of runs that have one (patches).
	SearchPR = temporal.NewSearchAttributeKeyKeyword("StagehandPR")
	// SearchFailedStep is the step a failed or rejected run stopped at.
	SearchFailedStep = temporal.NewSearchAttributeKeyKeyword("StagehandFailedStep")
)

// SearchAttribute is one search attribute of the contract: its typed key
// (name and type) and what a run puts in it, for people reading the README
// or an error naming it.
type SearchAttribute struct {
	Key     temporal.SearchAttributeKey
	Meaning string
}

// Name is the attribute's registered name, e.g. StagehandPR.
func (a SearchAttribute) Name() string { return a.Key.GetName() }

// Type is the attribute's type as the temporal CLI, start-dev and tcld spell
// it, e.g. Keyword or KeywordList.
func (a SearchAttribute) Type() string { return a.Key.GetValueType().String() }

// SearchAttributes is the single list of every search attribute a run sets:
// the README's contract, the dev servers, the compose one-shot and the
// worker's start-up check all derive from it.
var SearchAttributes = []SearchAttribute{
	{SearchRunbook, "the runbook's name, from the start of the run"},
	{SearchEnvironment, "the environments the run acts on (the `environment` param, else every environment-typed param, comma-separated)"},
	{SearchImage, "the `image` param, when the run has one"},
	{SearchOutcome, "`running`, `waiting_approval`, then `succeeded`, `failed`, `rejected` or `cancelled`"},
	{SearchRequestedBy, "who started the run (`requestedBy`)"},
	{SearchApprovers, "who approved the run's gates"},
	{SearchPR, "the `pr` param of runs that have one (patches)"},
	{SearchFailedStep, "the step a failed or rejected run stopped at"},
}

// SearchAttributeDefinitions lists every search attribute with its type, in
// the NAME=Type form `temporal server start-dev --search-attribute` takes.
var SearchAttributeDefinitions = searchAttributeDefinitions()

func searchAttributeDefinitions() []string {
	defs := make([]string, len(SearchAttributes))
	for i, a := range SearchAttributes {
		defs[i] = a.Name() + "=" + a.Type()
	}
	return defs
}

// RunInput starts a run. Exactly one of Runbook (a name the worker knows) or
// Definition (inline YAML) is set; a worker accepts Definition only when its
// config says allowInlineRunbooks: true (off by default: otherwise anyone
// who can start a workflow could run any step, ungated). Params hold plain
// values or secret references, never secret values. RequestedBy is
// required: a run without it is refused before any step (four-eyes needs
// it).
type RunInput struct {
	Runbook     string         `json:"runbook,omitempty"`
	Definition  string         `json:"definition,omitempty"`
	Params      map[string]any `json:"params,omitempty"`
	RequestedBy string         `json:"requestedBy,omitempty"`
}

// Decision values of an ApprovalDecision.
const (
	DecisionApprove = "approve"
	DecisionReject  = "reject"
)

// ApprovalDecision is the payload of the approval signal and update. Names
// (By, a gate's approvers, the run's RequestedBy) compare trimmed and
// case-folded: "Alice " is alice. Who is on the other end of the
// connection travels in the IdentityHeader header, not here (see
// identity.go).
type ApprovalDecision struct {
	Gate     string `json:"gate"`
	Decision string `json:"decision"`
	By       string `json:"by"`
	Comment  string `json:"comment,omitempty"`
}

// RunState is the state of a whole run.
type RunState string

// Run states. The terminal ones are also the StagehandOutcome values.
const (
	RunRunning         RunState = "running"
	RunWaitingApproval RunState = "waiting_approval"
	RunSucceeded       RunState = "succeeded"
	RunFailed          RunState = "failed"
	RunRejected        RunState = "rejected"
	RunCancelled       RunState = "cancelled"
)

// Terminal reports whether the run has ended.
func (s RunState) Terminal() bool {
	switch s {
	case RunSucceeded, RunFailed, RunRejected, RunCancelled:
		return true
	}
	return false
}

// StepState is the state of one step.
type StepState string

// Step states.
const (
	StepPending         StepState = "pending"
	StepRunning         StepState = "running"
	StepWaitingApproval StepState = "waiting_approval"
	StepSucceeded       StepState = "succeeded"
	StepFailed          StepState = "failed"
	StepSkipped         StepState = "skipped"
	StepApproved        StepState = "approved"
	StepRejected        StepState = "rejected"
	StepCancelled       StepState = "cancelled"
)

// StepStatus is the progress of one step (or compensation step).
type StepStatus struct {
	ID        string         `json:"id"`
	Uses      string         `json:"uses,omitempty"`
	Kind      string         `json:"kind"`
	State     StepState      `json:"state"`
	Attempts  int32          `json:"attempts,omitempty"`
	StartedAt *time.Time     `json:"startedAt,omitempty"`
	EndedAt   *time.Time     `json:"endedAt,omitempty"`
	Error     string         `json:"error,omitempty"`
	ErrorType string         `json:"errorType,omitempty"`
	Outputs   map[string]any `json:"outputs,omitempty"`
	// Parent is the id of the parallel group this step belongs to.
	Parent string `json:"parent,omitempty"`
	// Worker is the identity of the worker that ran the step's last
	// attempt (worker.identity), when several share the task queue.
	Worker string `json:"worker,omitempty"`
}

// GateStatus describes an approval gate that is waiting.
type GateStatus struct {
	Gate      string     `json:"gate"`
	Message   string     `json:"message"`
	Approvers []string   `json:"approvers"`
	OpenedAt  time.Time  `json:"openedAt"`
	Deadline  *time.Time `json:"deadline,omitempty"`
	// RequireIdentity: a decision counts only if its connection identity
	// maps to the approver (the gate's requireIdentity or the worker's
	// approvals.requireIdentity).
	RequireIdentity bool `json:"requireIdentity,omitempty"`
}

// DecisionRecord is an approval decision as the run saw it.
type DecisionRecord struct {
	ApprovalDecision
	// Identity is what the decision's connection claimed to be (the
	// client's IdentityHeader, e.g. "CN=alice,O=acme" or
	// "stagehand-cli:alice@laptop"); "" when it carried none. It is as
	// trustworthy as the connection's authentication: see identity.go.
	Identity string    `json:"identity,omitempty"`
	At       time.Time `json:"at"`
	// Refused holds why the decision was not applied (signals cannot be
	// validated before they land, so refused ones are kept for audit;
	// refused updates are only in the worker's log, RefusedApprovalLog).
	Refused string `json:"refused,omitempty"`
}

// ApprovalPolicy is the worker's say on approvals beyond each gate's
// approvers (worker config `approvals:`). It is recorded with the resolved
// run, so replays and audits see the policy the run was decided under.
type ApprovalPolicy struct {
	// Identities maps a connection identity (a client certificate subject
	// such as "CN=alice,O=acme", or "stagehand-cli:bob@build-host") to the
	// approver it stands for. A decision whose identity is listed here must
	// be by that approver.
	Identities map[string]string `yaml:"identities,omitempty" json:"identities,omitempty"`
	// RequireIdentity makes every gate refuse decisions whose identity is
	// missing or not in Identities (as a gate's requireIdentity does).
	RequireIdentity bool `yaml:"requireIdentity,omitempty" json:"requireIdentity,omitempty"`
}

// approverFor is the approver an identity stands for.
func (p *ApprovalPolicy) approverFor(identity string) (string, bool) {
	if p == nil || identity == "" {
		return "", false
	}
	name, ok := p.Identities[identity]
	if !ok || strings.TrimSpace(name) == "" {
		return "", false
	}
	return strings.TrimSpace(name), true
}

// Problems lists what is wrong with the policy, as worker config paths
// under approvals, e.g. `approvals.identities["CN=x"] maps to no one`.
func (p ApprovalPolicy) Problems() []string {
	var out []string
	for _, id := range slices.Sorted(maps.Keys(p.Identities)) {
		switch {
		case strings.TrimSpace(id) == "":
			out = append(out, "approvals.identities has an empty identity")
		case strings.TrimSpace(id) != id:
			out = append(out, fmt.Sprintf("approvals.identities[%q]: remove the surrounding spaces (identities compare exactly)", id))
		case strings.TrimSpace(p.Identities[id]) == "":
			out = append(out, fmt.Sprintf("approvals.identities[%q] maps to no one: give the approver's name", id))
		}
	}
	return out
}

func (p *ApprovalPolicy) requireAll() bool { return p != nil && p.RequireIdentity }

func (p ApprovalPolicy) isZero() bool { return len(p.Identities) == 0 && !p.RequireIdentity }

// Status is what the status query returns and, at the end, the run's
// result: everything the CLI, the UI and the audit need.
type Status struct {
	Runbook     string         `json:"runbook"`
	Description string         `json:"description,omitempty"`
	RequestedBy string         `json:"requestedBy,omitempty"`
	Environment string         `json:"environment,omitempty"`
	Image       string         `json:"image,omitempty"`
	Params      map[string]any `json:"params,omitempty"`
	State       RunState       `json:"state"`
	// RequesterIdentity is what the connection that started the run claimed
	// to be (IdentityHeader); "" when it carried none. Where the worker's
	// approvals.identities maps it, that approver cannot approve the run.
	RequesterIdentity string `json:"requesterIdentity,omitempty"`
	// CurrentStep is the step (or comma-separated parallel steps) running now.
	CurrentStep string       `json:"currentStep,omitempty"`
	Steps       []StepStatus `json:"steps"`
	PendingGate *GateStatus  `json:"pendingGate,omitempty"`
	// Decisions are the gates' decisions in order, with at most
	// MaxRefusedDecisions refused signals (the newest); RefusedDropped
	// counts the older refused ones no longer listed.
	Decisions      []DecisionRecord `json:"decisions,omitempty"`
	RefusedDropped int              `json:"refusedDropped,omitempty"`
	StartedAt      time.Time        `json:"startedAt"`
	EndedAt        *time.Time       `json:"endedAt,omitempty"`
	FailedStep     string           `json:"failedStep,omitempty"`
	Error          string           `json:"error,omitempty"`
	Compensation   []StepStatus     `json:"compensation,omitempty"`
	// Compensated lists the onFailure steps that ran to success.
	Compensated []string `json:"compensated,omitempty"`
	// Audit holds the runbook's audit section as rendered when the run
	// ended; nil for runbooks without one (and while the run goes on).
	Audit *AuditRecord `json:"audit,omitempty"`
}

// AuditRecord is a runbook's `audit:` section rendered at the end of a run:
// short Summary fields (also in the workflow memo under MemoAudit, so
// `stagehand audit` lists them without reading each run) and longer Details.
// A field whose template could not render is "".
type AuditRecord struct {
	Summary map[string]string `json:"summary,omitempty"`
	Details map[string]string `json:"details,omitempty"`
}

// MemoAudit is the workflow memo key holding an AuditRecord's Summary (a
// map[string]string), set once when a run of a runbook with an audit
// section ends.
const MemoAudit = "audit"

// RunFailedErrorType is the ApplicationError type of a run that failed,
// was rejected or timed out at a gate; its details hold the final Status.
const RunFailedErrorType = activities.ErrRunbookFailed

// RunRejectedErrorType is the ApplicationError type of a rejected run.
const RunRejectedErrorType = activities.ErrRunbookRejected
