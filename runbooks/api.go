package runbooks

// StepInfo is what validation needs to know about one step type.
type StepInfo struct {
	// Keys are the `with` keys the step accepts; nil means any.
	Keys []string
	// Required are the `with` keys that must be present.
	Required []string
	// Durations are the `with` keys whose values are durations; a literal
	// value is checked against ParseDuration's bounds when the runbook loads.
	Durations []string
	// Native steps run in the workflow and take ParseDuration's syntax
	// (days too); activity steps take Go durations only (30s, 5m, 72h).
	Native bool
}

// Catalogue is the worker's set of step types, as validation sees it.
type Catalogue interface {
	StepInfo(uses string) (StepInfo, bool)
	Names() []string
	// ErrorTypes lists the error types steps can fail with: the names a
	// runbook may write in retry.nonRetryable.
	ErrorTypes() []string
}
