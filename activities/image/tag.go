package image

import (
	"context"
	"fmt"

	cerrdefs "github.com/containerd/errdefs"

	"github.com/stagehand-dev/stagehand/activities"
)

// TagInput is the `with` of an image.tag step.
type TagInput struct {
	Source string `json:"source"`
	Target string `json:"target"`
}

// TagOutput is the result of an image.tag step.
type TagOutput struct {
	Image   string `json:"image"`
	ImageID string `json:"imageId"`
}

// Tag adds Target to the image Source names. Tagging again is a no-op for
// the engine, so retries are safe.
func (a *Activities) Tag(ctx context.Context, in TagInput) (TagOutput, error) {
	if in.Source == "" || len(in.Source) > maxRefBytes {
		return TagOutput{}, nonRetryable(activities.ErrInvalidArguments, fmt.Sprintf("source must be an image reference or id of at most %d bytes", maxRefBytes))
	}
	if _, err := parseTag("target", in.Target); err != nil {
		return TagOutput{}, nonRetryable(activities.ErrInvalidArguments, err.Error())
	}
	cli, err := a.engine()
	if err != nil {
		return TagOutput{}, err
	}
	insp, err := cli.ImageInspect(ctx, in.Source)
	if err != nil {
		switch {
		case cerrdefs.IsNotFound(err):
			return TagOutput{}, nonRetryable(activities.ErrImageNotFound, fmt.Sprintf("image %s does not exist in the engine", in.Source))
		case unavailable(err):
			return TagOutput{}, a.engineUnavailable("tag "+in.Source, err, nil)
		}
		return TagOutput{}, retryable(activities.ErrEngineUnavailable, fmt.Sprintf("inspect %s: %s", in.Source, bounded(err.Error(), maxEngineErrBytes)))
	}
	if err := cli.ImageTag(ctx, insp.ID, in.Target); err != nil {
		if unavailable(err) {
			return TagOutput{}, a.engineUnavailable("tag "+in.Source, err, nil)
		}
		return TagOutput{}, nonRetryable(activities.ErrInvalidArguments, fmt.Sprintf("tag %s as %s: %s", in.Source, in.Target, bounded(err.Error(), maxEngineErrBytes)))
	}
	a.logger(ctx).Info("image tagged", "step", "image.tag", "source", in.Source, "target", in.Target, "imageId", insp.ID)
	return TagOutput{Image: in.Target, ImageID: insp.ID}, nil
}
