package runbooks

// StepInfo is what validation needs to know about one step type.
type StepInfo struct {
	// Keys are the `with` keys the step accepts; nil means any.
	Keys []string
	// Required are the `with` keys that must be present.
	Required []string
}

// Catalogue is the worker's set of step types, as validation sees it.
type Catalogue interface {
	StepInfo(uses string) (StepInfo, bool)
	Names() []string
	// ErrorTypes lists the error types steps can fail with: the names a
	// runbook may write in retry.nonRetryable.
	ErrorTypes() []string
}
