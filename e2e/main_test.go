// Package e2e runs the built-in runbooks end to end: a real Temporal dev
// server, a real Kubernetes control plane (pods played by the simulator), a
// real Backstage backend on PostgreSQL as the smoke target, real git remotes
// with a CI + Flux stand-in hook (internal/patchlab), and Stagehand's own
// worker — in-process, or as a separate process that a test SIGKILLs.
package e2e

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stagehand-dev/stagehand/internal/backstagetest"
	"github.com/stagehand-dev/stagehand/internal/devserver"
	"github.com/stagehand-dev/stagehand/internal/enginetest"
	"github.com/stagehand-dev/stagehand/internal/kubetest"
	"github.com/stagehand-dev/stagehand/internal/pgtest"
	"github.com/stagehand-dev/stagehand/internal/podsim"
)

// The systems every test shares; each test gets its own namespaces, git
// remote and task queue, so tests do not see each other's runs.
var (
	temporalSrv *devserver.Server
	kube        *kubetest.Env
	backstage   *backstagetest.Server
	engine      *enginetest.Env
	workerBin   string
	cliBin      string
	bumpBin     string
	upgradeCI   string
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

// systemsNeeded is what every test here needs; under -short they skip
// with it and TestMain starts none of it.
const systemsNeeded = "a Temporal dev server, a Kubernetes control plane, PostgreSQL, MariaDB, an image engine and registry, Node and git remotes"

func run(m *testing.M) int {
	// testing.Short reads the flags, which m.Run has not parsed yet.
	flag.Parse()
	if testing.Short() {
		return m.Run()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	fail := func(what string, err error) int {
		fmt.Fprintf(os.Stderr, "e2e: %s: %v\n", what, err)
		return 1
	}
	var err error
	if temporalSrv, err = devserver.Start(ctx); err != nil {
		return fail("start Temporal dev server", err)
	}
	defer temporalSrv.Stop()
	if kube, err = kubetest.Start(ctx, kubetest.Options{Sim: podsim.Options{Probe: portals.Probe, Terminating: portals.Terminating}}); err != nil {
		return fail("start Kubernetes control plane", err)
	}
	defer kube.Stop()
	pg, err := pgtest.Start(ctx)
	if err != nil {
		return fail("start PostgreSQL", err)
	}
	defer pg.Stop()
	if backstage, err = backstagetest.Start(ctx, backstagetest.Options{PG: pg}); err != nil {
		return fail("start Backstage backend", err)
	}
	defer backstage.Stop()
	if engine, err = enginetest.Start(ctx); err != nil {
		return fail("start the image engine and registry", err)
	}
	defer engine.Stop()
	if err := installCRD(ctx); err != nil {
		return fail("install ImagePolicy CRD", err)
	}
	dir, err := os.MkdirTemp("", "stagehand-e2e-bin")
	if err != nil {
		return fail("temp dir", err)
	}
	defer os.RemoveAll(dir)
	// The kill test needs the worker as a process of its own.
	workerBin = filepath.Join(dir, "stagehand-worker")
	cliBin = filepath.Join(dir, "stagehand")
	bumpBin = filepath.Join(dir, "stagehand-portal-bump")
	upgradeCI = filepath.Join(dir, "upgrade-ci")
	for bin, pkg := range map[string]string{workerBin: "../worker", cliBin: "../starter", bumpBin: "../tools/stagehand-portal-bump", upgradeCI: "../tools/upgrade-ci"} {
		build := exec.CommandContext(ctx, "go", "build", "-o", bin, pkg)
		if out, err := build.CombinedOutput(); err != nil {
			return fail("build "+pkg, fmt.Errorf("%w: %s", err, out))
		}
	}
	return m.Run()
}
