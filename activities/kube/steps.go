package kube

import (
	"time"

	"github.com/stagehand-dev/stagehand/activities"
)

// StepTypes lists the kube steps. a may be a zero Activities (validation
// only): handlers are not called then.
func StepTypes(a *Activities) []activities.StepType {
	deployment := []string{"namespace", "deployment"}

	setImage := activities.Step("kube.setImage",
		"Set a Deployment container's image (idempotent: an image already set is changed=false).", a.SetImage)
	setImage.Required = []string{"namespace", "deployment", "image"}
	setImage.DefaultTimeout = time.Minute

	waitRollout := activities.Step("kube.waitRollout",
		"Wait for a Deployment's rollout like `kubectl rollout status`, failing within seconds on crash-looping, image-pull or OOM-killed pods.",
		a.WaitRollout)
	waitRollout.Required = deployment
	waitRollout.DefaultTimeout = 15 * time.Minute
	waitRollout.HeartbeatTimeout = 30 * time.Second

	checkPods := activities.Step("kube.checkPods",
		"Check that all pods of a Deployment are Ready on the expected image and do not restart during `soak`.", a.CheckPods)
	checkPods.Required = deployment
	checkPods.DefaultTimeout = 15 * time.Minute
	checkPods.HeartbeatTimeout = 30 * time.Second

	events := activities.Step("kube.events",
		"List events since a time in time order; Warning events about the Deployment fail the step unless `allow` matches.", a.Events)
	events.Required = []string{"namespace"}
	events.DefaultTimeout = time.Minute

	rollback := activities.Step("kube.rollback",
		"Roll a Deployment back to its previous revision (or `toRevision`, or `toImage`) and wait for that rollout.", a.Rollback)
	rollback.Required = deployment
	rollback.DefaultTimeout = 15 * time.Minute
	rollback.HeartbeatTimeout = 30 * time.Second

	apply := activities.Step("kube.apply",
		"Server-side apply YAML manifests with field manager `stagehand`.", a.Apply)
	apply.Required = []string{"manifests"}
	apply.DefaultTimeout = 2 * time.Minute

	restart := activities.Step("kube.restart",
		"Restart a Deployment's pods like `kubectl rollout restart`.", a.Restart)
	restart.Required = deployment
	restart.DefaultTimeout = time.Minute

	getImage := activities.Step("kube.getImage",
		"Read a Deployment container's current image (record it before a change, to roll back to).", a.GetImage)
	getImage.Required = deployment
	getImage.DefaultTimeout = time.Minute

	return []activities.StepType{setImage, waitRollout, checkPods, events, rollback, apply, restart, getImage}
}
