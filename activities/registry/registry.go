// Package registry binds every adapter's handlers to the step specs of
// activities/steps, making the worker's catalogue. It imports every client
// library (client-go, go-github, ...), so only the worker and tests use it;
// the CLI reads activities/steps alone.
package registry

import (
	"github.com/stagehand-dev/stagehand/activities"
	"github.com/stagehand-dev/stagehand/activities/command"
	"github.com/stagehand-dev/stagehand/activities/flux"
	"github.com/stagehand-dev/stagehand/activities/generic"
	"github.com/stagehand-dev/stagehand/activities/git"
	"github.com/stagehand-dev/stagehand/activities/kube"
	"github.com/stagehand-dev/stagehand/activities/notify"
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
}

// Catalogue returns every step type Stagehand offers, each built-in spec
// bound to its handler. It fails when a spec has no handler, a handler no
// spec, or a handler's Go input or output disagrees with its spec, so a
// worker with such a mismatch refuses to start.
func Catalogue(deps Deps) (*activities.Catalogue, error) {
	var types []activities.StepType
	types = append(types, generic.StepTypes(&generic.Activities{})...)
	kubeActs := deps.Kube
	if kubeActs == nil {
		kubeActs = &kube.Activities{}
	}
	types = append(types, kube.StepTypes(kubeActs)...)
	gitActs := deps.Git
	if gitActs == nil {
		gitActs = &git.Activities{}
	}
	types = append(types, git.StepTypes(gitActs)...)
	notifyActs := deps.Notify
	if notifyActs == nil {
		notifyActs = &notify.Activities{}
	}
	types = append(types, notify.StepTypes(notifyActs)...)
	webActs := deps.Web
	if webActs == nil {
		webActs = &web.Activities{}
	}
	types = append(types, web.StepTypes(webActs)...)
	commandActs := deps.Command
	if commandActs == nil {
		commandActs = &command.Activities{}
	}
	types = append(types, command.StepTypes(commandActs)...)
	// The flux steps read the same clusters as the kube steps.
	types = append(types, flux.StepTypes(&flux.Activities{Kube: kubeActs})...)
	return activities.Bind(steps.All(), types...)
}
