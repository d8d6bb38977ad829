package image

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/distribution/reference"
)

// OCI annotation keys the build sets from revision, version and source.
const (
	LabelRevision = "org.opencontainers.image.revision"
	LabelVersion  = "org.opencontainers.image.version"
	LabelSource   = "org.opencontainers.image.source"
)

// Bounds on build inputs. The engine passes labels and build args in the
// request's query string, and runbooks are data anyone with access to the
// namespace can start: keep them small.
const (
	MaxTags       = 16
	MaxLabels     = 64
	MaxBuildArgs  = 64
	MaxKeyBytes   = 256
	MaxValueBytes = 4096
	maxRefBytes   = 512
)

// buildLabels assembles the image's labels: the user's plus the OCI ones
// from revision, version and source. A user label that names one of those
// keys with another value is an error rather than a silent override.
func buildLabels(user map[string]string, revision, version, source string) (map[string]string, error) {
	if err := checkMap("labels", user, MaxLabels); err != nil {
		return nil, err
	}
	labels := make(map[string]string, len(user)+3)
	maps.Copy(labels, user)
	for _, l := range []struct{ key, arg, value string }{
		{LabelRevision, "revision", revision},
		{LabelVersion, "version", version},
		{LabelSource, "source", source},
	} {
		if l.value == "" {
			continue
		}
		if len(l.value) > MaxValueBytes {
			return nil, fmt.Errorf("%s is longer than %d bytes", l.arg, MaxValueBytes)
		}
		if old, ok := user[l.key]; ok && old != l.value {
			return nil, fmt.Errorf("labels sets %s to %q but %s is %q: set it in one place", l.key, old, l.arg, l.value)
		}
		labels[l.key] = l.value
	}
	if len(labels) > MaxLabels {
		return nil, fmt.Errorf("%d labels: at most %d", len(labels), MaxLabels)
	}
	return labels, nil
}

// checkMap bounds a map of labels or build args.
func checkMap(what string, m map[string]string, max int) error {
	if len(m) > max {
		return fmt.Errorf("%s has %d entries: at most %d", what, len(m), max)
	}
	for _, k := range slices.Sorted(maps.Keys(m)) {
		switch {
		case strings.TrimSpace(k) == "":
			return fmt.Errorf("%s has an empty name", what)
		case len(k) > MaxKeyBytes:
			return fmt.Errorf("%s name %q… is longer than %d bytes", what, k[:32], MaxKeyBytes)
		case strings.ContainsAny(k, "=\n\x00"):
			return fmt.Errorf("%s name %q contains '=', a newline or NUL", what, k)
		case len(m[k]) > MaxValueBytes:
			return fmt.Errorf("%s %s: value longer than %d bytes", what, k, MaxValueBytes)
		case strings.ContainsRune(m[k], 0):
			return fmt.Errorf("%s %s: value contains NUL", what, k)
		}
	}
	return nil
}

// parseTag parses an image reference that must name a tag (repo:tag): a
// digest reference cannot be tagged or pushed by tag, and a missing tag
// would silently mean "latest".
func parseTag(what, ref string) (reference.NamedTagged, error) {
	if ref == "" {
		return nil, fmt.Errorf("%s is empty", what)
	}
	if len(ref) > maxRefBytes {
		return nil, fmt.Errorf("%s is longer than %d bytes", what, maxRefBytes)
	}
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return nil, fmt.Errorf("%s %q is not an image reference: %v", what, ref, err)
	}
	if _, ok := named.(reference.Digested); ok {
		return nil, fmt.Errorf("%s %q names a digest; want repo:tag", what, ref)
	}
	tagged, ok := named.(reference.NamedTagged)
	if !ok {
		return nil, fmt.Errorf("%s %q has no tag; want repo:tag", what, ref)
	}
	return tagged, nil
}

// checkTags validates a build's tags: at least one, at most MaxTags, each
// repo:tag, no duplicates.
func checkTags(tags []string) error {
	if len(tags) == 0 {
		return fmt.Errorf("tags: at least one repo:tag is required")
	}
	if len(tags) > MaxTags {
		return fmt.Errorf("tags: %d given, at most %d", len(tags), MaxTags)
	}
	seen := map[string]bool{}
	for _, t := range tags {
		if _, err := parseTag("tag", t); err != nil {
			return err
		}
		if seen[t] {
			return fmt.Errorf("tag %q listed twice", t)
		}
		seen[t] = true
	}
	return nil
}
