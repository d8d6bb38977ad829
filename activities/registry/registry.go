// Package registry assembles the full step catalogue from every adapter
// package. The worker calls it with live clients; the CLI calls it with none,
// only to validate runbooks against the same names and argument keys.
package registry

import (
	"github.com/stagehand-dev/stagehand/activities"
	"github.com/stagehand-dev/stagehand/activities/generic"
)

// Deps carries the clients adapters need. Zero values are fine for
// validation-only catalogues: handlers are never called there.
type Deps struct{}

// Catalogue returns every step type Stagehand offers.
func Catalogue(deps Deps) (*activities.Catalogue, error) {
	var types []activities.StepType
	types = append(types, generic.StepTypes(&generic.Activities{})...)
	return activities.NewCatalogue(types...)
}
