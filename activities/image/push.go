package image

import (
	"context"
	"fmt"
	"strings"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/distribution/reference"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/registry"
	"github.com/docker/docker/pkg/jsonmessage"

	"github.com/stagehand-dev/stagehand/activities"
	"github.com/stagehand-dev/stagehand/activities/secrets"
)

// PushInput is the `with` of an image.push step.
type PushInput struct {
	Image       string `json:"image"`
	Username    string `json:"username,omitempty"`
	PasswordRef string `json:"passwordRef,omitempty"`
	Registry    string `json:"registry,omitempty"`
}

// PushOutput is the result of an image.push step.
type PushOutput struct {
	Image string `json:"image"`
	// Digest is the manifest digest the registry stored, what a
	// Deployment can pin (repository@digest).
	Digest     string `json:"digest"`
	Repository string `json:"repository"`
	Tag        string `json:"tag"`
}

// Push pushes a tagged image to its registry. Pushing the same image again
// is a no-op for the registry, so retries are safe.
func (a *Activities) Push(ctx context.Context, in PushInput) (PushOutput, error) {
	ref, err := parseTag("image", in.Image)
	if err != nil {
		return PushOutput{}, nonRetryable(activities.ErrInvalidArguments, err.Error())
	}
	host := reference.Domain(ref)
	server, err := serverAddress(host, in.Registry)
	if err != nil {
		return PushOutput{}, nonRetryable(activities.ErrInvalidArguments, err.Error())
	}
	if (in.Username == "") != (in.PasswordRef == "") {
		return PushOutput{}, nonRetryable(activities.ErrInvalidArguments, "username and passwordRef go together: set both or neither")
	}
	red := newRedactor()
	auth := registry.AuthConfig{ServerAddress: server}
	if in.PasswordRef != "" {
		// The engine sends the credentials to the image's registry, so
		// that is the host the secret policy must allow.
		pw, err := secrets.ResolveFor(ctx, a.Resolve, in.PasswordRef, secrets.Use{Host: host})
		if refused := secrets.Refusal(err); refused != nil {
			return PushOutput{}, refused
		}
		if err != nil {
			return PushOutput{}, nonRetryable(activities.ErrSecretUnavailable, err.Error())
		}
		red.Add(pw)
		auth.Username, auth.Password = in.Username, pw
	}
	encoded, err := registry.EncodeAuthConfig(auth)
	if err != nil {
		return PushOutput{}, nonRetryable(activities.ErrInvalidArguments, "encode registry credentials: "+red.Clean(err.Error()))
	}
	if auth.Password != "" {
		red.Add(encoded)
	}
	out := PushOutput{Image: in.Image, Repository: ref.Name(), Tag: ref.Tag()}

	cli, err := a.engine()
	if err != nil {
		return PushOutput{}, err
	}
	log := a.logger(ctx).With("step", "image.push", "image", in.Image)
	if _, err := cli.ImageInspect(ctx, in.Image); err != nil {
		switch {
		case cerrdefs.IsNotFound(err):
			return PushOutput{}, nonRetryable(activities.ErrImageNotFound, fmt.Sprintf("image %s does not exist in the engine: build or tag it first", in.Image))
		case unavailable(err):
			return PushOutput{}, a.engineUnavailable("push "+in.Image, err, red)
		}
		return PushOutput{}, retryable(activities.ErrImagePushFailed, fmt.Sprintf("push %s: inspect: %s", in.Image, red.Clean(bounded(err.Error(), maxEngineErrBytes))))
	}

	log.Info("pushing image", "registry", server, "user", in.Username)
	rc, err := cli.ImagePush(ctx, in.Image, image.PushOptions{RegistryAuth: encoded})
	if err != nil {
		if ctx.Err() != nil {
			return PushOutput{}, ctx.Err()
		}
		return PushOutput{}, a.pushError(in.Image, server, err.Error(), err, red)
	}
	defer rc.Close()
	var pl pushLog
	hb := a.startHeartbeats(ctx, heartbeatInterval)
	streamErr := decodeStream(rc, func(m jsonmessage.JSONMessage) {
		if line := pl.handle(m); line != "" {
			log.Info(red.Clean(line))
		}
		hb.set(pl.progress(), false)
	})
	hb.stop()
	if err := ctx.Err(); err != nil {
		return PushOutput{}, err
	}
	digest, _, errMsg := pl.result()
	if errMsg != "" {
		log.Error("image push failed", "error", red.Clean(errMsg))
		return PushOutput{}, a.pushError(in.Image, server, errMsg, nil, red)
	}
	if streamErr != nil {
		return PushOutput{}, retryable(activities.ErrImagePushFailed, fmt.Sprintf("push %s: %s", in.Image, red.Clean(streamErr.Error())))
	}
	if digest == "" {
		digest = a.repoDigest(ctx, in.Image, ref.Name())
	}
	if digest == "" {
		return PushOutput{}, retryable(activities.ErrImagePushFailed, fmt.Sprintf("push %s finished without reporting the manifest digest", in.Image))
	}
	out.Digest = digest
	log.Info("image pushed", "digest", digest)
	return out, nil
}

// pushError classifies a failed push from the engine's or registry's text
// (the push stream carries no status codes) and scrubs it.
func (a *Activities) pushError(img, server, msg string, err error, red *secrets.Redactor) error {
	text := red.Clean(bounded(strings.TrimSpace(msg), maxEngineErrBytes))
	switch {
	case err != nil && unavailable(err):
		return a.engineUnavailable("push "+img, err, red)
	case err != nil && cerrdefs.IsNotFound(err):
		return nonRetryable(activities.ErrImageNotFound, fmt.Sprintf("push %s: %s", img, text))
	case (err != nil && (cerrdefs.IsUnauthorized(err) || cerrdefs.IsPermissionDenied(err))) || authFailure(msg):
		return nonRetryable(activities.ErrRegistryAuth, fmt.Sprintf("push %s: registry %s refused the credentials: %s", img, server, text))
	}
	return retryable(activities.ErrImagePushFailed, fmt.Sprintf("push %s: %s", img, text))
}

// repoDigest falls back to the engine's record of the pushed digest, for
// engines that put it in neither the aux message nor a status line.
func (a *Activities) repoDigest(ctx context.Context, img, repo string) string {
	cli, err := a.engine()
	if err != nil {
		return ""
	}
	insp, err := cli.ImageInspect(ctx, img)
	if err != nil {
		return ""
	}
	for _, rd := range insp.RepoDigests {
		if name, digest, ok := strings.Cut(rd, "@"); ok && name == repo {
			return digest
		}
	}
	return ""
}

// dockerHubHosts are the names of Docker Hub's registry; its credentials
// are keyed by its index address.
var dockerHubHosts = map[string]bool{
	"docker.io": true, "index.docker.io": true, "registry-1.docker.io": true, "https://index.docker.io/v1/": true,
}

const dockerHubServer = "https://index.docker.io/v1/"

// serverAddress is the registry the credentials are for. The engine sends
// X-Registry-Auth to the image's registry whatever it says, so naming
// another host would only mislead the reader of the runbook: refuse it.
func serverAddress(imageHost, registryArg string) (string, error) {
	if registryArg == "" {
		if dockerHubHosts[imageHost] {
			return dockerHubServer, nil
		}
		return imageHost, nil
	}
	h := strings.TrimPrefix(strings.TrimPrefix(registryArg, "https://"), "http://")
	h = strings.TrimSuffix(h, "/")
	if dockerHubHosts[imageHost] && (dockerHubHosts[registryArg] || dockerHubHosts[h] || dockerHubHosts[strings.TrimSuffix(h, "/v1")]) {
		return dockerHubServer, nil
	}
	if h != imageHost {
		return "", fmt.Errorf("registry %q is not the image's registry %q: the engine sends the credentials to the image's registry", registryArg, imageHost)
	}
	return imageHost, nil
}
