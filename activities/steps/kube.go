package steps

import (
	"time"

	"github.com/stagehand-dev/stagehand/activities"
)

var (
	clusterArg    = arg("cluster", TString, "the worker's cluster to act on; default: the only one, or \"default\"")
	namespaceArg  = req("namespace", TString, "the Deployment's namespace")
	deploymentArg = req("deployment", TString, "the Deployment's name")

	// kubeAPIErrors are what any call to the apiserver may fail with.
	kubeAPIErrors = []string{
		activities.ErrKubeNoCluster, activities.ErrKubeUnknownCluster,
		activities.ErrKubeForbidden, activities.ErrKubeUnauthorized, activities.ErrKubeNotFound,
		activities.ErrKubeInvalid, activities.ErrKubeConflict, activities.ErrKubeUnavailable, activities.ErrKubeError,
	}
	rolloutErrors = []string{
		activities.ErrRolloutTimeout, activities.ErrPodFailure, activities.ErrProgressDeadline, activities.ErrDeploymentPaused,
	}
)

var kube = []activities.StepSpec{
	{
		Name:        "kube.setImage",
		Description: "Set a Deployment container's image (idempotent: an image already set is changed=false).",
		Args: []activities.Arg{
			clusterArg, namespaceArg, deploymentArg,
			arg("container", TString, "the container to change; default: the pod template's only container"),
			req("image", TString, "the image reference to set"),
		},
		Outputs: []activities.Output{
			out("container", TString, "the container changed"),
			out("previousImage", TString, "its image before the step (a rollback target)"),
			out("image", TString, "its image now"),
			out("revision", TString, "the Deployment's revision before the change: what a rollback to \"before this step\" goes back to"),
			out("changed", TBool, "false when the image was already set"),
			out("generation", TInt, "the Deployment's metadata.generation after the change"),
			out("changedAt", TTime, "when the step ran (RFC 3339); a later kube.events step can use it as since"),
		},
		Errors:         kubeAPIErrors,
		DefaultTimeout: time.Minute,
		Irreversible:   true,
	},
	{
		Name:        "kube.waitRollout",
		Resumable:   true,
		Description: "Wait for a Deployment's rollout like `kubectl rollout status`, failing within seconds on crash-looping, image-pull or OOM-killed pods.",
		Args: []activities.Arg{
			clusterArg, namespaceArg, deploymentArg,
			arg("timeout", TDuration, "bounds the wait (e.g. 10m); default: the step's own timeout"),
		},
		Outputs: []activities.Output{
			out("revision", TString, "the Deployment's revision that rolled out"),
			out("image", TString, "the image of the first container"),
			out("replicas", TInt, "desired replicas"),
			out("updatedReplicas", TInt, "replicas on the new template"),
			out("availableReplicas", TInt, "available replicas"),
			out("elapsed", TDuration, "how long the wait took"),
		},
		Errors:           errs(kubeAPIErrors, rolloutErrors),
		DefaultTimeout:   15 * time.Minute,
		HeartbeatTimeout: 30 * time.Second,
	},
	{
		Name:        "kube.checkPods",
		Resumable:   true,
		Description: "Check that all pods of a Deployment are Ready on the expected image and do not restart during `soak`.",
		Args: []activities.Arg{
			clusterArg, namespaceArg, deploymentArg,
			arg("image", TString, "the expected image; default: the Deployment's current one"),
			arg("container", TString, "the container whose image is checked; default: the first"),
			arg("soak", TDuration, "how long the pods must stay Ready without restarting; empty or 0s checks once"),
		},
		Outputs: []activities.Output{
			out("pods", TList, "the pods checked"),
			out("image", TString, "the image they run"),
			out("soak", TDuration, "the soak that was applied"),
		},
		Errors: errs(kubeAPIErrors, []string{
			activities.ErrPodFailure, activities.ErrImageMismatch, activities.ErrPodsNotReady,
			activities.ErrPodNotReady, activities.ErrPodRestarted,
		}),
		DefaultTimeout:   15 * time.Minute,
		HeartbeatTimeout: 30 * time.Second,
	},
	{
		Name:        "kube.events",
		Resumable:   true,
		Description: "List events since a time in time order; Warning events about the Deployment fail the step unless `allow` matches.",
		Args: []activities.Arg{
			clusterArg, namespaceArg,
			arg("deployment", TString, "narrows the events to the Deployment, its ReplicaSets and their pods; default: the whole namespace"),
			arg("since", TString, "an RFC 3339 time (e.g. setImage's changedAt) or a duration back from now (15m); default: when the step was first scheduled"),
			arg("allow", TList, "regular expressions; a Warning whose reason or message matches one does not fail the step"),
		},
		Outputs: []activities.Output{
			out("events", TList, "the events in scope: time, type, reason, object, message, count, allowed"),
			out("warnings", TInt, "Warning events in scope, allowed or not"),
			out("since", TTime, "the start of the window"),
		},
		Errors:         errs(kubeAPIErrors, []string{activities.ErrWarningEvents}),
		DefaultTimeout: time.Minute,
	},
	{
		Name:        "kube.rollback",
		Description: "Roll a Deployment back to its previous revision (or `toRevision`, or `toImage`) and wait for that rollout.",
		Args: []activities.Arg{
			clusterArg, namespaceArg, deploymentArg,
			arg("toImage", TString, "roll back by setting this image (e.g. setImage's previousImage) instead of restoring a ReplicaSet's template"),
			arg("container", TString, "the container toImage applies to; default: the only one"),
			arg("toRevision", TInt, "the revision to restore; 0 (default) means the previous one, as `kubectl rollout undo`"),
			arg("timeout", TDuration, "bounds the wait for the rollback's rollout; default: the step's own timeout"),
		},
		Outputs: []activities.Output{
			out("fromImage", TString, "the image before the rollback"),
			out("toImage", TString, "the image after it"),
			out("revision", TString, "the Deployment's revision once rolled back"),
			out("changed", TBool, "false when the Deployment already ran the target"),
			out("elapsed", TDuration, "how long the rollback took"),
		},
		Errors:           errs(kubeAPIErrors, rolloutErrors, []string{activities.ErrNoRollbackTarget}),
		DefaultTimeout:   15 * time.Minute,
		HeartbeatTimeout: 30 * time.Second,
	},
	{
		Name:        "kube.apply",
		Description: "Server-side apply YAML manifests with field manager `stagehand`.",
		Args: []activities.Arg{
			clusterArg,
			req("manifests", TString, "one or more YAML (or JSON) documents separated by ---"),
			arg("namespace", TString, "the namespace of namespaced objects that name none"),
			arg("force", TBool, "take over fields another field manager owns; without it such a conflict fails the step (KubeApplyConflict)"),
		},
		Outputs: []activities.Output{
			out("applied", TList, "the objects applied, as Kind/name"),
		},
		Errors: errs(kubeAPIErrors, []string{
			activities.ErrKubeNoDynamicClient, activities.ErrKubeApplyConflict, activities.ErrKubeUnknownKind,
		}),
		DefaultTimeout: 2 * time.Minute,
	},
	{
		Name:        "kube.restart",
		Description: "Restart a Deployment's pods like `kubectl rollout restart`.",
		Args:        []activities.Arg{clusterArg, namespaceArg, deploymentArg},
		Outputs: []activities.Output{
			out("restartedAt", TTime, "the restartedAt annotation set on the pod template"),
			out("generation", TInt, "the Deployment's metadata.generation after the change"),
		},
		Errors:         kubeAPIErrors,
		DefaultTimeout: time.Minute,
	},
	{
		Name:        "kube.getImage",
		Resumable:   true,
		Description: "Read a Deployment container's current image (record it before a change, to roll back to).",
		Args: []activities.Arg{
			clusterArg, namespaceArg, deploymentArg,
			arg("container", TString, "the container to read; default: the only one"),
		},
		Outputs: []activities.Output{
			out("container", TString, "the container read"),
			out("image", TString, "its image"),
			out("revision", TString, "the Deployment's revision"),
			out("replicas", TInt, "its spec.replicas: what a later kube.scale scales back to"),
			out("readAt", TTime, "when it was read (RFC 3339)"),
		},
		Errors:         kubeAPIErrors,
		DefaultTimeout: time.Minute,
	},
	{
		Name: "kube.scale",
		Description: "Set a Deployment's replicas (idempotent: already at that count is changed=false) and wait until exactly " +
			"that many are available, or, for 0, until none of its pods remains; crash-looping pods fail the wait within seconds.",
		Args: []activities.Arg{
			clusterArg, namespaceArg, deploymentArg,
			req("replicas", TInt, "the replica count to set, 0 to 100 (e.g. 0 to stop the portal before a database restore)"),
			arg("wait", TBool, "wait for the count to be reached; default true"),
			arg("timeout", TDuration, "bounds the wait (e.g. 10m); default: the step's own timeout"),
		},
		Outputs: []activities.Output{
			out("previousReplicas", TInt, "spec.replicas before the step (what to scale back to)"),
			out("replicas", TInt, "spec.replicas now"),
			out("changed", TBool, "false when the Deployment already had that count"),
			out("elapsed", TDuration, "how long the step took, wait included"),
		},
		Errors:           errs(kubeAPIErrors, rolloutErrors),
		DefaultTimeout:   15 * time.Minute,
		HeartbeatTimeout: 30 * time.Second,
	},
}

var flux = []activities.StepSpec{
	{
		Name:        "flux.waitImage",
		Resumable:   true,
		Description: "Wait until a Deployment (and optionally a Flux ImagePolicy) carries the prod-<sha8>- image the merge commit produced.",
		Args: []activities.Arg{
			clusterArg, namespaceArg, deploymentArg,
			arg("container", TString, "the container to watch; default: the first"),
			arg("commitSha", TString, "the merge commit: the tag must start with tagPrefix and its first 8 characters"),
			arg("tagPrefix", TString, "default prod-"),
			arg("tagPattern", TString, "a regular expression the tag must match, instead of the commit"),
			arg("imagePolicy", TString, "a Flux ImagePolicy (name in namespace, or namespace/name) whose latest image must match too"),
			arg("timeout", TDuration, "bounds the wait (e.g. 30m); default: the step's own timeout"),
		},
		Outputs: []activities.Output{
			out("image", TString, "the image production runs"),
			out("tag", TString, "its tag"),
			out("policyImage", TString, "the ImagePolicy's latest image, when one is named"),
			out("elapsedMs", TInt, "how long the wait took, in milliseconds"),
		},
		Errors: []string{
			activities.ErrKubeNoCluster, activities.ErrKubeUnknownCluster, activities.ErrKubeNoDynamicClient,
			activities.ErrKubeForbidden, activities.ErrKubeUnauthorized, activities.ErrKubeNotFound,
			activities.ErrKubeUnavailable, activities.ErrProdImageNotRolled,
		},
		DefaultTimeout:   30 * time.Minute,
		HeartbeatTimeout: 30 * time.Second,
	},
}
