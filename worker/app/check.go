package app

import (
	"context"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"time"
)

// BackendCheck is what --check found for one configured backend.
type BackendCheck struct {
	// What names it: "database portal-sandbox", "image engine".
	What string
	// Err is nil when it answered.
	Err error
	// Detail says what answered (plugin databases found, engine version).
	Detail string
}

// CheckBackends connects to every configured database (password resolved
// from its reference, plugin databases listed), when docker.host or
// DOCKER_HOST names one, the image engine, and every environment's cluster
// (see checkClusters) — as the steps would, each within timeout — so that a
// wrong host, password or grant is found when the worker is configured, not
// in the middle of an upgrade.
func (a *App) CheckBackends(ctx context.Context, timeout time.Duration) []BackendCheck {
	var out []BackendCheck
	for _, name := range slices.Sorted(maps.Keys(a.Config.Databases)) {
		cctx, cancel := context.WithTimeout(ctx, timeout)
		plugins, err := a.DB.Check(cctx, name)
		cancel()
		c := BackendCheck{What: "database " + name, Err: err}
		if err == nil {
			c.Detail = fmt.Sprintf("%d plugin databases", len(plugins))
			if len(plugins) > 0 {
				c.Detail += " (" + strings.Join(plugins, ", ") + ")"
			}
		}
		out = append(out, c)
	}
	if a.Config.Docker.Host != "" || os.Getenv("DOCKER_HOST") != "" {
		cctx, cancel := context.WithTimeout(ctx, timeout)
		v, err := a.Image.Check(cctx)
		cancel()
		out = append(out, BackendCheck{What: "image engine", Err: err, Detail: v})
	}
	out = append(out, a.checkClusters(ctx, timeout)...)
	return out
}
