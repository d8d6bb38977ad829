package image

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/jsonmessage"

	"github.com/stagehand-dev/stagehand/activities"
)

// BuildInput is the `with` of an image.build step.
type BuildInput struct {
	Context    string            `json:"context"`
	Dockerfile string            `json:"dockerfile,omitempty"`
	BuildArgs  map[string]string `json:"buildArgs,omitempty"`
	Labels     map[string]string `json:"labels,omitempty"`
	Revision   string            `json:"revision,omitempty"`
	Version    string            `json:"version,omitempty"`
	Source     string            `json:"source,omitempty"`
	Tags       []string          `json:"tags"`
	Pull       bool              `json:"pull,omitempty"`
}

// BuildOutput is the result of an image.build step.
type BuildOutput struct {
	// Built is false when the build was skipped: the first tag already
	// carried the same revision label.
	Built    bool              `json:"built"`
	ImageID  string            `json:"imageId"`
	Tags     []string          `json:"tags"`
	Revision string            `json:"revision"`
	Labels   map[string]string `json:"labels"`
}

// errRequestEnded stops the context writer when the engine is done with
// the request before reading all of it.
var errRequestEnded = errors.New("the build request ended")

// heartbeatInterval keeps a quiet build step (a long RUN printing nothing)
// well inside the specs' one-minute heartbeat timeout. A variable so a
// test can watch it work without waiting that long.
var heartbeatInterval = 10 * time.Second

// Build builds an image from a context directory and tags it. Everything
// about the inputs is checked before the engine hears of the build.
func (a *Activities) Build(ctx context.Context, in BuildInput) (BuildOutput, error) {
	dir, err := resolveContext(in.Context, a.contextRoots(ctx))
	if err != nil {
		return BuildOutput{}, err
	}
	dockerfile, err := cleanDockerfile(in.Dockerfile)
	if err != nil {
		return BuildOutput{}, nonRetryable(activities.ErrInvalidArguments, err.Error())
	}
	if err := checkTags(in.Tags); err != nil {
		return BuildOutput{}, nonRetryable(activities.ErrInvalidArguments, err.Error())
	}
	if err := checkMap("buildArgs", in.BuildArgs, MaxBuildArgs); err != nil {
		return BuildOutput{}, nonRetryable(activities.ErrInvalidArguments, err.Error())
	}
	labels, err := buildLabels(in.Labels, in.Revision, in.Version, in.Source)
	if err != nil {
		return BuildOutput{}, nonRetryable(activities.ErrInvalidArguments, err.Error())
	}
	entries, size, err := contextFiles(dir, dockerfile, defaultContextLimits)
	if err != nil {
		return BuildOutput{}, nonRetryable(activities.ErrInvalidArguments, err.Error())
	}
	cli, err := a.engine()
	if err != nil {
		return BuildOutput{}, err
	}
	first := in.Tags[0]
	log := a.logger(ctx).With("step", "image.build", "image", first)

	if out, done, err := a.alreadyBuilt(ctx, cli, in); err != nil || done {
		if done {
			log.Info("image already built for this revision; build skipped", "revision", in.Revision, "imageId", out.ImageID)
		}
		return out, err
	}

	args := make(map[string]*string, len(in.BuildArgs))
	for k, v := range in.BuildArgs {
		args[k] = &v
	}
	pr, pw := io.Pipe()
	sent := make(chan error, 1)
	go func() {
		err := writeContext(pw, dir, entries)
		pw.CloseWithError(err)
		sent <- err
	}()
	log.Info("building image", "context", dir, "dockerfile", dockerfile, "files", len(entries), "bytes", size, "tags", in.Tags)
	resp, err := cli.ImageBuild(ctx, pr, build.ImageBuildOptions{
		Tags:        in.Tags,
		Dockerfile:  dockerfile,
		BuildArgs:   args,
		Labels:      labels,
		PullParent:  in.Pull,
		Remove:      true,
		ForceRemove: true,
		Version:     build.BuilderV1,
	})
	if err != nil {
		pr.CloseWithError(errRequestEnded)
		// A context that could not be read (a file vanished or shrank)
		// explains the refusal better than the engine's half-read request.
		if werr := <-sent; werr != nil && !errors.Is(werr, errRequestEnded) && ctx.Err() == nil {
			return BuildOutput{}, nonRetryable(activities.ErrImageBuildFailed, fmt.Sprintf("send the build context %s: %v", dir, werr))
		}
		return BuildOutput{}, a.buildRequestError(ctx, first, err)
	}
	defer resp.Body.Close()
	defer pr.Close()

	var bl buildLog
	hb := a.startHeartbeats(ctx, heartbeatInterval)
	streamErr := decodeStream(resp.Body, func(m jsonmessage.JSONMessage) {
		lines, newStep := bl.handle(m)
		for _, l := range lines {
			log.Info(l)
		}
		hb.set(bl.progress(), newStep)
	})
	for _, l := range bl.finish() {
		log.Info(l)
	}
	hb.stop()
	if err := ctx.Err(); err != nil {
		return BuildOutput{}, err
	}
	if bl.failed() {
		msg := bl.failure(first)
		log.Error("image build failed", "error", msg)
		return BuildOutput{}, nonRetryable(activities.ErrImageBuildFailed, msg)
	}
	if streamErr != nil {
		// The engine went away mid-build; a retry builds again (cached
		// steps make it cheap).
		return BuildOutput{}, retryable(activities.ErrEngineUnavailable,
			fmt.Sprintf("build of %s: %v (last step: %s)", first, streamErr, bl.progress().Step))
	}

	insp, err := cli.ImageInspect(ctx, first)
	if err != nil {
		if unavailable(err) {
			return BuildOutput{}, a.engineUnavailable("inspect the built image "+first, err, nil)
		}
		return BuildOutput{}, nonRetryable(activities.ErrImageBuildFailed,
			fmt.Sprintf("build of %s reported no error but the image is not there: %s", first, bounded(err.Error(), maxEngineErrBytes)))
	}
	log.Info("image built", "imageId", insp.ID, "tags", in.Tags)
	return BuildOutput{Built: true, ImageID: insp.ID, Tags: in.Tags, Revision: in.Revision, Labels: imageLabels(insp)}, nil
}

// alreadyBuilt is the idempotency check: the first tag exists with the
// same, non-empty revision label. The other tags are then made to point at
// that image too (a retry after a partial tagging completes it).
func (a *Activities) alreadyBuilt(ctx context.Context, cli *client.Client, in BuildInput) (BuildOutput, bool, error) {
	if in.Revision == "" {
		return BuildOutput{}, false, nil
	}
	first := in.Tags[0]
	insp, err := cli.ImageInspect(ctx, first)
	switch {
	case err == nil:
	case cerrdefs.IsNotFound(err):
		return BuildOutput{}, false, nil
	case unavailable(err):
		return BuildOutput{}, false, a.engineUnavailable("inspect "+first, err, nil)
	default:
		// An engine that cannot say whether the tag exists can still
		// build; the build then reports what is wrong.
		return BuildOutput{}, false, nil
	}
	labels := imageLabels(insp)
	if labels[LabelRevision] != in.Revision {
		return BuildOutput{}, false, nil
	}
	for _, t := range in.Tags[1:] {
		other, err := cli.ImageInspect(ctx, t)
		if err == nil && other.ID == insp.ID {
			continue
		}
		if err := cli.ImageTag(ctx, insp.ID, t); err != nil {
			if unavailable(err) {
				return BuildOutput{}, false, a.engineUnavailable("tag "+t, err, nil)
			}
			return BuildOutput{}, false, nonRetryable(activities.ErrImageBuildFailed,
				fmt.Sprintf("tag the existing build of %s as %s: %s", first, t, bounded(err.Error(), maxEngineErrBytes)))
		}
	}
	return BuildOutput{Built: false, ImageID: insp.ID, Tags: in.Tags, Revision: in.Revision, Labels: labels}, true, nil
}

// buildRequestError classifies a build request the engine refused outright
// (as opposed to a build that failed in its stream).
func (a *Activities) buildRequestError(ctx context.Context, image string, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if unavailable(err) {
		return a.engineUnavailable("build "+image, err, nil)
	}
	return nonRetryable(activities.ErrImageBuildFailed, fmt.Sprintf("build of %s refused by the engine: %s", image, bounded(err.Error(), maxEngineErrBytes)))
}

func imageLabels(insp image.InspectResponse) map[string]string {
	if insp.Config == nil || insp.Config.Labels == nil {
		return map[string]string{}
	}
	return insp.Config.Labels
}

// contextRoots are ContextRoots, narrowed by Scope for this run.
func (a *Activities) contextRoots(ctx context.Context) []string {
	if a.Scope == nil {
		return a.ContextRoots
	}
	out := make([]string, len(a.ContextRoots))
	for i, r := range a.ContextRoots {
		out[i] = a.Scope(ctx, r)
	}
	return out
}
