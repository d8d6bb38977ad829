package kube

import (
	"github.com/stagehand-dev/stagehand/activities"
	"github.com/stagehand-dev/stagehand/activities/steps"
)

// StepTypes binds the kube steps to their specs in activities/steps. a may
// be a zero Activities (tests that only need the catalogue).
func StepTypes(a *Activities) []activities.StepType {
	return []activities.StepType{
		activities.Implement(steps.Spec("kube.setImage"), a.SetImage),
		activities.Implement(steps.Spec("kube.waitRollout"), a.WaitRollout),
		activities.Implement(steps.Spec("kube.checkPods"), a.CheckPods),
		activities.Implement(steps.Spec("kube.events"), a.Events),
		activities.Implement(steps.Spec("kube.rollback"), a.Rollback),
		activities.Implement(steps.Spec("kube.apply"), a.Apply),
		activities.Implement(steps.Spec("kube.restart"), a.Restart),
		activities.Implement(steps.Spec("kube.getImage"), a.GetImage),
		activities.Implement(steps.Spec("kube.scale"), a.Scale),
	}
}
