// Package registry binds every adapter's handlers to the step specs of
// activities/steps, making the worker's catalogue. It imports every client
// library (client-go, go-github, ...), so only the worker and tests use it;
// the CLI reads activities/steps alone.
package registry

import (
	"github.com/stagehand-dev/stagehand/activities"
	"github.com/stagehand-dev/stagehand/activities/command"
	"github.com/stagehand-dev/stagehand/activities/db"
	"github.com/stagehand-dev/stagehand/activities/flux"
	"github.com/stagehand-dev/stagehand/activities/generic"
	"github.com/stagehand-dev/stagehand/activities/git"
	"github.com/stagehand-dev/stagehand/activities/image"
	"github.com/stagehand-dev/stagehand/activities/kube"
	"github.com/stagehand-dev/stagehand/activities/notify"
	"github.com/stagehand-dev/stagehand/activities/portal"
	"github.com/stagehand-dev/stagehand/activities/server"
	"github.com/stagehand-dev/stagehand/activities/steps"
	"github.com/stagehand-dev/stagehand/activities/web"
)

// Deps carries the clients adapters need. Nil fields get adapters without
// clients, whose handlers fail if called: fine for tests that only need
// the catalogue.
type Deps struct {
	// Kube holds the Kubernetes clusters; nil means none (the kube steps
	// then fail with KubeNoCluster).
	Kube *kube.Activities
	// Git merges pull requests (plain git or GitHub); nil uses the zero
	// Activities.
	Git *git.Activities
	// Notify posts webhooks; nil uses the zero Activities.
	Notify *notify.Activities
	// Web runs HTTP smoke checks; nil uses a default HTTP client.
	Web *web.Activities
	// Command runs the worker's allowed commands (exec.run); nil allows
	// none.
	Command *command.Activities
	// Image builds, tags and pushes images through the Docker Engine API;
	// nil uses the zero Activities (DOCKER_HOST, no build context allowed).
	Image *image.Activities
	// DB reads, verifies, backs up and restores plugin databases; nil has
	// no databases (the db steps then fail with DatabaseNotConfigured).
	DB *db.Activities
	// Portal reads a portal work tree's Backstage versions; nil refuses
	// every directory.
	Portal *portal.Activities
	// Server runs the server.* steps for the worker's server environments;
	// nil has none (the steps then fail with ServerNotConfigured).
	Server *server.Activities
}

// Catalogue returns every step type Stagehand offers, each built-in spec
// bound to its handler. It fails when a spec has no handler, a handler no
// spec, or a handler's Go input or output disagrees with its spec, so a
// worker with such a mismatch refuses to start.
func Catalogue(deps Deps) (*activities.Catalogue, error) {
	kubeActs := orZero(deps.Kube)
	var types []activities.StepType
	types = append(types, generic.StepTypes(&generic.Activities{})...)
	types = append(types, kube.StepTypes(kubeActs)...)
	types = append(types, git.StepTypes(orZero(deps.Git))...)
	types = append(types, notify.StepTypes(orZero(deps.Notify))...)
	types = append(types, web.StepTypes(orZero(deps.Web))...)
	types = append(types, command.StepTypes(orZero(deps.Command))...)
	types = append(types, image.StepTypes(orZero(deps.Image))...)
	types = append(types, db.StepTypes(orZero(deps.DB))...)
	types = append(types, portal.StepTypes(orZero(deps.Portal))...)
	types = append(types, server.StepTypes(orZero(deps.Server))...)
	// The flux steps read the same clusters as the kube steps.
	types = append(types, flux.StepTypes(&flux.Activities{Kube: kubeActs})...)
	return activities.Bind(steps.All(), types...)
}

// orZero is p, or a zero value when p is nil: an adapter without its
// clients, whose handlers fail with a clear error if called.
func orZero[T any](p *T) *T {
	if p == nil {
		return new(T)
	}
	return p
}
