package workflows

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// summaryParams are the params that say what a run is about, in the order
// they are shown: the image a patch rolls out, the release an upgrade
// reaches, the pull request, the plugin package.
var summaryParams = []string{"image", "release", "pr", "package", "packages", "environment"}

// RunSummary is the one line the Temporal UI shows for a run (its static
// summary, set by whoever starts it): the runbook, what it is about and who
// asked, e.g. "patch: image registry/backend:pr-42-1a2b3c4d · pr 42 ·
// requested by alice". Params hold references, never secrets.
func RunSummary(runbook string, params map[string]any, requestedBy string) string {
	var parts []string
	for _, k := range summaryParams {
		if v, ok := params[k]; ok && v != nil {
			if s := strings.TrimSpace(fmt.Sprint(v)); s != "" && s != "0" {
				parts = append(parts, k+" "+s)
			}
		}
	}
	line := runbook
	if len(parts) > 0 {
		line += ": " + strings.Join(parts, " · ")
	}
	if requestedBy != "" {
		line += " · requested by " + requestedBy
	}
	return truncate(line, 400)
}

// RunDetails is the static details (Markdown) shown beside the summary:
// every param as given at start.
func RunDetails(runbook string, params map[string]any, requestedBy string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Runbook **%s**", runbook)
	if requestedBy != "" {
		fmt.Fprintf(&b, ", requested by **%s**", requestedBy)
	}
	b.WriteString("\n\n")
	for _, k := range slices.Sorted(maps.Keys(params)) {
		fmt.Fprintf(&b, "- `%s`: %s\n", k, truncate(fmt.Sprint(params[k]), 200))
	}
	return b.String()
}
