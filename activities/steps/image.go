package steps

import (
	"time"

	"github.com/stagehand-dev/stagehand/activities"
)

var image = []activities.StepSpec{
	{
		Name: "image.build",
		Description: "Build an image from a context directory through the Docker Engine API (Docker, podman's service), " +
			"with OCI labels and tags; skipped (built: false) when the first tag already exists with the same revision label.",
		Args: []activities.Arg{
			req("context", TString, "the build context: an absolute directory under one of the worker's docker.contextRoots"),
			arg("dockerfile", TString, "the Dockerfile's path relative to context; default Dockerfile"),
			arg("buildArgs", TMap, "build arguments (ARG values), name → value; not for secrets: they are kept in the image's history"),
			arg("labels", TMap, "extra image labels, name → value"),
			arg("revision", TString, "the commit the image is built from: label org.opencontainers.image.revision, and the key of the idempotency check"),
			arg("version", TString, "label org.opencontainers.image.version"),
			arg("source", TString, "label org.opencontainers.image.source (the repository URL)"),
			req("tags", TList, "the image references to tag, repo:tag (at least one; the first is the one checked for an existing build)"),
			arg("pull", TBool, "pull newer versions of the base images before building"),
		},
		Outputs: []activities.Output{
			out("built", TBool, "false when an image with the same revision was already tagged and the build was skipped"),
			out("imageId", TString, "the image's id (sha256:...)"),
			out("tags", TList, "the tags the image carries from this step"),
			out("revision", TString, "the revision label"),
			out("labels", TMap, "the image's labels"),
		},
		Errors: []string{
			activities.ErrImageContextNotAllowed, activities.ErrImageBuildFailed, activities.ErrEngineUnavailable,
		},
		DefaultTimeout:   30 * time.Minute,
		HeartbeatTimeout: time.Minute,
	},
	{
		Name:        "image.push",
		Description: "Push an image from the engine to its registry with credentials from a secret reference; outputs the pushed digest.",
		Args: []activities.Arg{
			req("image", TString, "the image to push, registry/repo:tag"),
			arg("username", TString, "the registry user (with passwordRef)"),
			arg("passwordRef", TString, "a secret reference for the registry password or token (env:NAME, secret:NAME/KEY)"),
			arg("registry", TString, "the registry the credentials are for; default the image's host (it must be that host)"),
		},
		Outputs: []activities.Output{
			out("image", TString, "the image pushed"),
			out("digest", TString, "the manifest digest the registry stored (sha256:...)"),
			out("repository", TString, "the image's repository (registry/repo)"),
			out("tag", TString, "the tag pushed"),
		},
		Errors: []string{
			activities.ErrSecretUnavailable, activities.ErrSecretNotAllowed, activities.ErrImagePushFailed, activities.ErrRegistryAuth,
			activities.ErrImageNotFound, activities.ErrEngineUnavailable,
		},
		DefaultTimeout:   15 * time.Minute,
		HeartbeatTimeout: time.Minute,
		Irreversible:     true,
	},
	{
		Name:        "image.tag",
		Description: "Add a tag to an image that exists in the engine (idempotent).",
		Args: []activities.Arg{
			req("source", TString, "the existing image: a reference or an image id"),
			req("target", TString, "the new reference, repo:tag"),
		},
		Outputs: []activities.Output{
			out("image", TString, "the new reference"),
			out("imageId", TString, "the image's id"),
		},
		Errors:         []string{activities.ErrImageNotFound, activities.ErrEngineUnavailable},
		DefaultTimeout: time.Minute,
	},
}
