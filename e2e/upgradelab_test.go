package e2e

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stagehand-dev/stagehand/activities/db"
	"github.com/stagehand-dev/stagehand/internal/localenv"
	"github.com/stagehand-dev/stagehand/internal/mysqltest"
	"github.com/stagehand-dev/stagehand/internal/pgtest"
	"github.com/stagehand-dev/stagehand/internal/podsim"
	"github.com/stagehand-dev/stagehand/internal/portalsim"
	"github.com/stagehand-dev/stagehand/internal/upgradelab"
	"github.com/stagehand-dev/stagehand/worker/app"
	"github.com/stagehand-dev/stagehand/worker/config"
	"github.com/stagehand-dev/stagehand/workflows"
)

// portals routes the pod simulator's probes to the portal simulator of the
// pod's namespace, so each upgrade test runs the real Backstage its images
// name against its own databases; pods elsewhere (the patch tests') are
// simulated as before.
var portals = &probeRouter{byNS: map[string]podProber{}}

// podProber plays the containers of one namespace's pods for the pod
// simulator: a portal simulator, or a test's own (e2e/fleet_test.go holds
// a rollout with one).
type podProber interface {
	Probe(pod *corev1.Pod, c corev1.Container) podsim.ProbeResult
	Terminating(pod *corev1.Pod) bool
}

type probeRouter struct {
	mu   sync.RWMutex
	byNS map[string]podProber
}

func (r *probeRouter) Probe(pod *corev1.Pod, c corev1.Container) podsim.ProbeResult {
	r.mu.RLock()
	s := r.byNS[pod.Namespace]
	r.mu.RUnlock()
	if s == nil {
		return podsim.ProbeResult{}
	}
	return s.Probe(pod, c)
}

// Terminating holds a deleted pod of a portal until its backend stopped.
func (r *probeRouter) Terminating(pod *corev1.Pod) bool {
	r.mu.RLock()
	s := r.byNS[pod.Namespace]
	r.mu.RUnlock()
	return s != nil && s.Terminating(pod)
}

func (r *probeRouter) add(s podProber, namespaces ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, ns := range namespaces {
		r.byNS[ns] = s
	}
}

func (r *probeRouter) remove(namespaces ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, ns := range namespaces {
		delete(r.byNS, ns)
	}
}

// upgradeLab is one upgrade test's world: sandbox and production
// namespaces whose pods run the real Backstage of their image, on a fresh
// PostgreSQL (sandbox) and MariaDB (production); the portal's git remote;
// the first image built and pushed; and the worker's configuration.
type upgradeLab struct {
	t             *testing.T
	sandbox, prod string
	pg            *pgtest.Server
	maria         *mysqltest.Server
	portal        *upgradelab.Portal
	sim           *portalsim.Sim
	initialImage  string
	imageRepo     string
	backupDir     string
	taskQueue     string
	// gitops deploys production by merge + CI + Flux instead of directly.
	gitops bool
	cfg    config.Config
}

const upgradeApprover = "bob"

func newUpgradeLab(t *testing.T, prepare ...func(*upgradeLab)) *upgradeLab {
	t.Helper()
	localenv.SkipIfShort(t, systemsNeeded)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	n := labSeq.Add(1)
	l := &upgradeLab{t: t, sandbox: fmt.Sprintf("up-sandbox-%d", n), prod: fmt.Sprintf("up-prod-%d", n),
		taskQueue: fmt.Sprintf("e2e-up-%d-%d", n, time.Now().UnixNano()), backupDir: t.TempDir()}

	var err error
	l.pg, err = pgtest.Start(ctx)
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.pg.Stop() })
	l.maria, err = mysqltest.Start(ctx)
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.maria.Stop() })

	root := t.TempDir()
	l.portal, err = upgradelab.NewPortal(root, engine.BaseImage)
	require.NoError(t, err)
	manifests := filepath.Join(root, "manifests")
	require.NoError(t, upgradelab.WriteManifests(manifests))
	l.imageRepo = fmt.Sprintf("%s/portal-%d", engine.RegistryAddr, n)
	head := l.portal.Head("main")
	l.initialImage = fmt.Sprintf("%s:prod-%s-%d", l.imageRepo, head[:8], time.Now().Unix())
	_, err = l.portal.BuildAndPush(ctx, engine.Client(), l.initialImage)
	require.NoError(t, err)
	for _, p := range prepare {
		p(l)
	}

	ports, err := localenv.FreePorts(2)
	require.NoError(t, err)
	pgDB := portalsim.Database{Client: "pg", Host: l.pg.Host, Port: l.pg.Port, User: l.pg.User}
	myDB := portalsim.Database{Client: "mysql2", Host: l.maria.Host, Port: l.maria.Port, User: l.maria.User, Password: l.maria.Password}
	l.sim = portalsim.New(kube.Client, []portalsim.Portal{
		{Namespace: l.sandbox, Deployment: "backstage", Container: "backstage", Port: ports[0], DB: pgDB},
		{Namespace: l.prod, Deployment: "backstage", Container: "backstage", Port: ports[1], DB: myDB},
	}, portalsim.Options{Logf: t.Logf})
	simCtx, stopSim := context.WithCancel(context.Background())
	simDone := make(chan struct{})
	go func() { defer close(simDone); _ = l.sim.Run(simCtx) }()
	portals.add(l.sim, l.sandbox, l.prod)
	t.Cleanup(func() {
		portals.remove(l.sandbox, l.prod)
		stopSim()
		<-simDone
	})

	for _, ns := range []string{l.sandbox, l.prod} {
		_, err := kube.CreateDeployment(ctx, ns, "backstage", l.initialImage, 2, func(d *appsv1.Deployment) {
			d.Spec.MinReadySeconds = 2
		})
		require.NoError(t, err)
	}
	for _, ns := range []string{l.sandbox, l.prod} {
		_, err := kube.WaitForRollout(ctx, ns, "backstage")
		require.NoError(t, err, "the first Backstage (%s) never became ready in %s", upgradelab.FromRelease, ns)
	}

	passwordEnv := fmt.Sprintf("E2E_MARIADB_PASSWORD_%d", n)
	require.NoError(t, os.Setenv(passwordEnv, l.maria.Password))
	spec := upgradelab.Lab{
		TemporalAddress: temporalSrv.Address, Namespace: temporalSrv.Namespace, TaskQueue: l.taskQueue,
		Kubeconfig: kube.Kubeconfig, Context: kube.Context,
		SandboxNamespace: l.sandbox, ProdNamespace: l.prod, Deployment: "backstage", Container: "backstage",
		SandboxURL: fmt.Sprintf("http://127.0.0.1:%d", ports[0]), ProdURL: fmt.Sprintf("http://127.0.0.1:%d", ports[1]),
		SandboxDB: db.Database{Driver: "postgres", Host: l.pg.Host, Port: l.pg.Port, User: l.pg.User},
		ProdDB:    db.Database{Driver: "mysql", Host: l.maria.Host, Port: l.maria.Port, User: l.maria.User, PasswordRef: "env:" + passwordEnv},
		Remote:    l.portal.Dir, DockerHost: engine.Host, ImageRepo: l.imageRepo,
		BumpBin: bumpBin, ManifestsDir: manifests,
		WorkDir: filepath.Join(root, "worker"), BackupDir: l.backupDir,
		Approvers: []string{upgradeApprover, "carol"},
	}
	if l.gitops {
		createPolicy(t, l.prod, l.initialImage)
		require.NoError(t, l.portal.InstallCIHook(upgradelab.CIHook{
			Bin: upgradeCI, ImageRepo: l.imageRepo, DockerHost: engine.Host,
			Kubeconfig: kube.Kubeconfig, Context: kube.Context, Namespace: l.prod,
			Deployment: "backstage", Container: "backstage", ImagePolicy: "backstage",
			Log: filepath.Join(root, "ci-sim.log"),
		}))
		spec.Deploy, spec.ImagePolicy = "gitops", "backstage"
		t.Cleanup(func() {
			if t.Failed() {
				b, _ := os.ReadFile(filepath.Join(root, "ci-sim.log"))
				t.Logf("CI + Flux stand-in log:\n%s", b)
			}
		})
	}
	l.cfg = spec.WorkerConfig()
	return l
}

func (l *upgradeLab) startWorker() {
	l.t.Helper()
	a, err := app.New(context.Background(), l.cfg, app.Options{Client: temporalSrv.Client, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(l.t, err)
	require.NoError(l.t, a.Start())
	l.t.Cleanup(a.Stop)
}

func (l *upgradeLab) startWorkerProcess() *workerProcess {
	l.t.Helper()
	return startWorkerBinary(l.t, l.cfg)
}

func (l *upgradeLab) start(id, release string) client.WorkflowRun {
	l.t.Helper()
	run, err := temporalSrv.Client.ExecuteWorkflow(context.Background(), client.StartWorkflowOptions{ID: id, TaskQueue: l.taskQueue},
		workflows.WorkflowType, workflows.RunInput{Runbook: "upgrade", RequestedBy: "alice", Params: map[string]any{
			"release": release, "soak": "2s", "smokeTimeout": "40s", "rolloutTimeout": "4m", "restoreTimeout": "10m", "prodTimeout": "5m",
		}})
	require.NoError(l.t, err)
	return run
}

func (l *upgradeLab) image(ns string) string {
	d, err := kube.Client.AppsV1().Deployments(ns).Get(context.Background(), "backstage", metav1.GetOptions{})
	require.NoError(l.t, err)
	return d.Spec.Template.Spec.Containers[0].Image
}

// catalogMigrations counts the catalog plugin's knex_migrations rows in the
// sandbox (PostgreSQL) or production (MariaDB) database.
func (l *upgradeLab) catalogMigrations(env string) int {
	l.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var n int
	if env == "sandbox" {
		conn, err := pgx.Connect(ctx, l.pg.DSN("backstage_plugin_catalog"))
		require.NoError(l.t, err)
		defer conn.Close(ctx)
		require.NoError(l.t, conn.QueryRow(ctx, "SELECT count(*) FROM knex_migrations").Scan(&n))
		return n
	}
	dbh, err := sql.Open("mysql", l.maria.DSN("backstage_plugin_catalog"))
	require.NoError(l.t, err)
	defer dbh.Close()
	require.NoError(l.t, dbh.QueryRowContext(ctx, "SELECT count(*) FROM knex_migrations").Scan(&n))
	return n
}

// backups lists the backup keys written so far.
func (l *upgradeLab) backups() []string {
	entries, err := os.ReadDir(l.backupDir)
	require.NoError(l.t, err)
	var keys []string
	for _, e := range entries {
		if e.IsDir() {
			keys = append(keys, e.Name())
		}
	}
	return keys
}
