package portalsim_test

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/image"
	"github.com/jackc/pgx/v5"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"

	"github.com/stagehand-dev/stagehand/internal/enginetest"
	"github.com/stagehand-dev/stagehand/internal/kubetest"
	"github.com/stagehand-dev/stagehand/internal/localenv"
	"github.com/stagehand-dev/stagehand/internal/mysqltest"
	"github.com/stagehand-dev/stagehand/internal/pgtest"
	"github.com/stagehand-dev/stagehand/internal/podsim"
	"github.com/stagehand-dev/stagehand/internal/portalsim"
)

const (
	ns         = "portal"
	deployName = "backstage"
	selector   = "app.kubernetes.io/name=backstage"
)

// portalImage builds FROM the engine's base image an image whose /app holds
// a portal's package.json with the given catalog backend version, pushes it
// to the open registry and returns its reference.
func portalImage(t *testing.T, e *enginetest.Env, tag, catalog string, auth bool) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	deps := map[string]string{"@backstage/backend-defaults": "0.18.0", "@backstage/plugin-catalog-backend": catalog}
	if auth {
		deps["@backstage/plugin-auth-backend"] = "0.30.1"
	}
	pkg, _ := json.MarshalIndent(map[string]any{"name": "backend", "version": "1.0.0", "dependencies": deps}, "", "  ")
	files := map[string]string{
		"Dockerfile":     "FROM " + e.BaseImage + "\nCOPY package.json /app/package.json\nCOPY backstage.json /app/backstage.json\n",
		"package.json":   string(pkg),
		"backstage.json": `{"version": "1.45.0"}`,
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for name, content := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(content))}); err != nil {
			t.Fatal(err)
		}
		_, _ = tw.Write([]byte(content))
	}
	_ = tw.Close()
	ref := e.RegistryAddr + "/portal/backend:" + tag
	resp, err := e.Client().ImageBuild(ctx, &buf, build.ImageBuildOptions{Tags: []string{ref}, Remove: true})
	if err != nil {
		t.Fatalf("build %s: %v", ref, err)
	}
	err = drain(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("build %s: %v", ref, err)
	}
	rc, err := e.Client().ImagePush(ctx, ref, image.PushOptions{RegistryAuth: "e30="})
	if err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	err = drain(rc)
	rc.Close()
	if err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	return ref
}

// drain reads a Docker JSON message stream, returning its first error.
func drain(r io.Reader) error {
	dec := json.NewDecoder(r)
	for {
		var m struct {
			Error string `json:"error"`
		}
		if err := dec.Decode(&m); err == io.EOF {
			return nil
		} else if err != nil {
			return err
		}
		if m.Error != "" {
			return errors.New(m.Error)
		}
	}
}

type fixture struct {
	t     *testing.T
	kube  *kubetest.Env
	pg    *pgtest.Server
	sim   *portalsim.Sim
	url   string
	start time.Time
}

func (f *fixture) logf(format string, args ...any) {
	f.t.Logf("[%6.1fs] "+format, append([]any{time.Since(f.start).Seconds()}, args...)...)
}

// fail stops the test with the backends' states and log tails.
func (f *fixture) fatalf(format string, args ...any) {
	f.t.Helper()
	f.t.Fatalf(format+"\nbackends:\n%s", append(args, f.sim.Describe())...)
}

func (f *fixture) migrations(ctx context.Context) int {
	f.t.Helper()
	conn, err := pgx.Connect(ctx, f.pg.DSN("backstage_plugin_catalog"))
	if err != nil {
		f.fatalf("connect to the catalog database: %v", err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM knex_migrations`).Scan(&n); err != nil {
		f.fatalf("count knex_migrations: %v", err)
	}
	return n
}

func (f *fixture) get(path string) (int, string) {
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(f.url + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return resp.StatusCode, string(body)
}

// updateDeployment changes the Deployment, retrying when the controller
// wrote its status in between (a conflict, not a failure).
func (f *fixture) updateDeployment(ctx context.Context, change func(*appsv1.Deployment)) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		d, err := f.kube.Client.AppsV1().Deployments(ns).Get(ctx, deployName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		change(d)
		_, err = f.kube.Client.AppsV1().Deployments(ns).Update(ctx, d, metav1.UpdateOptions{})
		return err
	})
}

func (f *fixture) setImage(ctx context.Context, ref string) {
	f.t.Helper()
	if err := f.updateDeployment(ctx, func(d *appsv1.Deployment) { d.Spec.Template.Spec.Containers[0].Image = ref }); err != nil {
		f.fatalf("set image %s: %v", ref, err)
	}
	f.logf("deployment image set to %s", ref)
}

func (f *fixture) rollout(ctx context.Context) {
	f.t.Helper()
	if _, err := f.kube.WaitForRollout(ctx, ns, deployName); err != nil {
		f.fatalf("%v", err)
	}
	f.logf("rolled out")
}

// eventually polls cond every 250ms until it holds or d passes.
func (f *fixture) eventually(d time.Duration, what string, cond func() bool) {
	f.t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			f.fatalf("after %s: %s", d, what)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func (f *fixture) backend(image string) (portalsim.BackendStatus, bool) {
	for _, b := range f.sim.Backends() {
		if b.Image == image {
			return b, true
		}
	}
	return portalsim.BackendStatus{}, false
}

func (f *fixture) podsWithImage(ctx context.Context, image string) []corev1.Pod {
	pods, err := f.kube.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		f.fatalf("list pods: %v", err)
	}
	var out []corev1.Pod
	for _, p := range pods.Items {
		if p.Spec.Containers[0].Image == image && p.DeletionTimestamp == nil {
			out = append(out, p)
		}
	}
	return out
}

func ready(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// The whole story the upgrade runbook lives through, on real parts: a
// Deployment's pods run the Backstage their image names on a real
// PostgreSQL; the upgrade really migrates; rolling the image back onto the
// migrated schema really fails (readiness 503, the process stays up) while
// the upgraded pods keep serving; an image for a version that is not there
// crash-loops without touching the database; scaling to 0 stops everything.
func TestUpgradeMigratesAndRollbackFails(t *testing.T) {
	localenv.SkipIfShort(t, "a control plane, PostgreSQL, podman and Backstage")
	f := &fixture{t: t, start: time.Now()}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()

	engine := enginetest.New(t)
	f.pg = pgtest.New(t)
	f.logf("engine and PostgreSQL up")
	v3 := portalImage(t, engine, "v3", "3.9.1", true)
	v4 := portalImage(t, engine, "v4", "^4.0.0", true)
	v5 := portalImage(t, engine, "v5", "5.0.0", true)
	v4NoAuth := portalImage(t, engine, "v4-noauth", "4.0.0", false)
	missing := engine.RegistryAddr + "/portal/backend:never-pushed"
	f.logf("images built and pushed")

	port, err := localenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	f.url = fmt.Sprintf("http://127.0.0.1:%d", port)
	var logMu sync.Mutex
	f.sim = portalsim.New(nil, []portalsim.Portal{{
		Namespace: ns, Deployment: deployName, Container: deployName, Port: port,
		DB: portalsim.Database{Client: "pg", Host: f.pg.Host, Port: f.pg.Port, User: f.pg.User},
	}}, portalsim.Options{
		RestartBackOff: time.Second,
		Logf: func(format string, args ...any) {
			logMu.Lock()
			defer logMu.Unlock()
			f.logf(format, args...)
		},
	})
	f.kube, err = kubetest.Start(ctx, kubetest.Options{
		Namespaces: []string{ns},
		Sim:        podsim.Options{Probe: f.sim.Probe, Terminating: f.sim.Terminating, InitialBackOff: 2 * time.Second, MaxBackOff: 8 * time.Second},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.kube.Stop() })
	simCtx, stopSim := context.WithCancel(context.Background())
	simDone := make(chan error, 1)
	go func() { simDone <- f.sim.RunOn(simCtx, f.kube.Client) }()
	t.Cleanup(func() {
		stopSim()
		if err := <-simDone; err != nil {
			t.Errorf("portalsim: %v", err)
		}
	})
	f.logf("control plane and portalsim up")

	// Install: catalog 3.9.1 on an empty database.
	if _, err := f.kube.CreateDeployment(ctx, ns, deployName, v3, 2); err != nil {
		t.Fatal(err)
	}
	f.rollout(ctx)
	if code, body := f.get(portalsimReadiness); code != http.StatusOK {
		f.fatalf("service readiness after the v3 rollout: %d %s", code, body)
	}
	if n := f.migrations(ctx); n != 43 {
		f.fatalf("knex_migrations after catalog 3.9.1: %d rows, want 43", n)
	}
	if b, _ := f.backend(v3); b.Info.BackstageVersion != "1.45.0" || b.Info.CatalogVersion != "3.9.1" {
		f.fatalf("v3 backend read %+v from the image", b.Info)
	}

	// Upgrade: 4.0.0 applies two more migrations; the v3 backend goes.
	f.setImage(ctx, v4)
	f.rollout(ctx)
	if n := f.migrations(ctx); n != 45 {
		f.fatalf("knex_migrations after catalog 4.0.0: %d rows, want 45", n)
	}
	f.eventually(time.Minute, "the v3 backend stops once its pods are gone", func() bool {
		_, ok := f.backend(v3)
		return !ok
	})
	if code, body := f.get(portalsimReadiness); code != http.StatusOK {
		f.fatalf("service readiness after the v4 rollout: %d %s", code, body)
	}
	if code, body := f.get(signIn); code == http.StatusNotFound || code == 0 {
		f.fatalf("guest sign-in with the auth backend: %d %s", code, body)
	}

	// Rollback of the image alone: 3.9.1 on the migrated schema never
	// becomes ready; the v4 pods keep serving.
	f.setImage(ctx, v3)
	f.eventually(3*time.Minute, "the v3 backend reports the corrupt migration directory", func() bool {
		b, ok := f.backend(v3)
		return ok && b.URL != "" && strings.Contains(b.LogTail, "The migration directory is corrupt")
	})
	b, _ := f.backend(v3)
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(b.URL + portalsimReadiness)
	if err != nil {
		f.fatalf("v3 backend readiness: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		f.fatalf("v3 backend readiness on the migrated schema: %d, want 503", resp.StatusCode)
	}
	time.Sleep(3 * time.Second) // a few probe periods
	pods := f.podsWithImage(ctx, v3)
	if len(pods) == 0 {
		f.fatalf("no pod with the rolled-back image")
	}
	for _, p := range pods {
		if ready(&p) {
			f.fatalf("pod %s with catalog 3.9.1 on the migrated schema is Ready", p.Name)
		}
	}
	if b, _ := f.backend(v3); b.State != portalsim.StateStarting || b.Pid == 0 {
		f.fatalf("v3 backend state %s pid %d, want a live process that is not ready", b.State, b.Pid)
	}
	if old := f.podsWithImage(ctx, v4); len(old) < 2 {
		f.fatalf("%d v4 pods left, want 2 (maxUnavailable 0)", len(old))
	}
	if code, body := f.get(portalsimReadiness); code != http.StatusOK {
		f.fatalf("service readiness during the failed rollback: %d %s (the v4 pods should serve)", code, body)
	}
	if n := f.migrations(ctx); n != 45 {
		f.fatalf("knex_migrations after the failed rollback: %d rows, want 45", n)
	}

	// An image whose catalog version is not installed crash-loops before
	// touching the database.
	f.setImage(ctx, v5)
	f.eventually(2*time.Minute, "a v5 pod in CrashLoopBackOff, its last exit saying why", func() bool {
		for _, p := range f.podsWithImage(ctx, v5) {
			for _, cs := range p.Status.ContainerStatuses {
				term := cs.LastTerminationState.Terminated
				if w := cs.State.Waiting; w != nil && w.Reason == podsim.ReasonCrashLoopBackOff && cs.RestartCount >= 2 &&
					term != nil && term.ExitCode == 1 && strings.Contains(term.Message, "Cannot find module @backstage/plugin-catalog-backend@5.0.0") {
					return true
				}
			}
		}
		return false
	})
	if b, _ := f.backend(v5); !strings.Contains(b.Message+b.LogTail, "Cannot find module @backstage/plugin-catalog-backend@5.0.0 (not installed") {
		f.fatalf("v5 backend: %s / %s", b.Message, b.LogTail)
	}
	if n := f.migrations(ctx); n != 45 {
		f.fatalf("knex_migrations after the crash-looping image: %d rows, want 45", n)
	}
	if code, body := f.get(portalsimReadiness); code != http.StatusOK {
		f.fatalf("service readiness during the crash loop: %d %s", code, body)
	}

	// An image the registry does not have cannot be pulled.
	f.setImage(ctx, missing)
	f.eventually(time.Minute, "a pod in ImagePullBackOff for the missing image", func() bool {
		for _, p := range f.podsWithImage(ctx, missing) {
			for _, cs := range p.Status.ContainerStatuses {
				if w := cs.State.Waiting; w != nil && w.Reason == podsim.ReasonImagePullBackOff {
					return strings.Contains(w.Message, "not found")
				}
			}
		}
		return false
	})

	// An upgrade whose image lost the auth backend still rolls out and
	// serves the catalog, but sign-in is gone.
	f.setImage(ctx, v4NoAuth)
	f.rollout(ctx)
	if code, body := f.get(signIn); code != http.StatusNotFound {
		f.fatalf("guest sign-in without the auth backend: %d %s, want 404", code, body)
	}
	if code, body := f.get("/api/catalog/entities"); code != http.StatusOK {
		f.fatalf("catalog without the auth backend: %d %s", code, body)
	}

	// Scale to 0: every backend process stops; the Service has no endpoint.
	var pids []int
	for _, b := range f.sim.Backends() {
		if b.Pid != 0 {
			pids = append(pids, b.Pid)
		}
	}
	zero := int32(0)
	if err := f.updateDeployment(ctx, func(d *appsv1.Deployment) { d.Spec.Replicas = &zero }); err != nil {
		t.Fatal(err)
	}
	f.logf("scaled to 0; stopping pids %v", pids)
	f.eventually(time.Minute, "no pod left after scaling to 0", func() bool {
		pods, err := f.kube.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
		return err == nil && len(pods.Items) == 0
	})
	// Pods gone from the API means their processes are gone or stopping
	// (Terminating holds the deletions; its pod lister can lag one
	// deletion behind when two pods share an image, so allow the stop a
	// few seconds to finish).
	f.eventually(15*time.Second, "every backend stopped once every pod is gone", func() bool {
		if len(f.sim.Backends()) != 0 {
			return false
		}
		for _, pid := range pids {
			if syscall.Kill(pid, 0) == nil {
				return false
			}
		}
		return true
	})
	if code, body := f.get(portalsimReadiness); code != http.StatusServiceUnavailable || !strings.Contains(body, "no ready endpoints") {
		f.fatalf("service with no pods: %d %q, want 503 no ready endpoints", code, body)
	}
	f.logf("done")
}

const (
	portalsimReadiness = "/.backstage/health/v1/readiness"
	signIn             = "/api/auth/guest/refresh"
)

// On MariaDB (Knex client mysql2, a password-protected user) the same
// upgrade migrates 43 → 45 rows through the portal's pods.
func TestUpgradeOnMySQL(t *testing.T) {
	localenv.SkipIfShort(t, "a control plane, MariaDB, podman and Backstage")
	f := &fixture{t: t, start: time.Now()}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	engine := enginetest.New(t)
	my := mysqltest.New(t)
	v3 := portalImage(t, engine, "v3", "3.9.1", true)
	v4 := portalImage(t, engine, "v4", "4.0.0", true)
	port, err := localenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	f.url = fmt.Sprintf("http://127.0.0.1:%d", port)
	f.sim = portalsim.New(nil, []portalsim.Portal{{
		Namespace: ns, Deployment: deployName, Container: deployName, Port: port,
		DB: portalsim.Database{Client: "mysql2", Host: my.Host, Port: my.Port, User: my.User, Password: my.Password},
	}}, portalsim.Options{Logf: f.logf})
	f.kube, err = kubetest.Start(ctx, kubetest.Options{Namespaces: []string{ns},
		Sim: podsim.Options{Probe: f.sim.Probe, Terminating: f.sim.Terminating}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.kube.Stop() })
	simCtx, stopSim := context.WithCancel(context.Background())
	simDone := make(chan error, 1)
	go func() { simDone <- f.sim.RunOn(simCtx, f.kube.Client) }()
	t.Cleanup(func() {
		stopSim()
		if err := <-simDone; err != nil {
			t.Errorf("portalsim: %v", err)
		}
	})
	rows := func() string {
		out, err := my.Exec(ctx, "SELECT COUNT(*), MAX(batch) FROM backstage_plugin_catalog.knex_migrations")
		if err != nil {
			f.fatalf("count migrations: %v", err)
		}
		return strings.Join(strings.Fields(out), " ")
	}
	if _, err := f.kube.CreateDeployment(ctx, ns, deployName, v3, 1); err != nil {
		t.Fatal(err)
	}
	f.rollout(ctx)
	if got := rows(); got != "43 1" {
		f.fatalf("catalog 3.9.1 on MariaDB: %q, want \"43 1\"", got)
	}
	f.setImage(ctx, v4)
	f.rollout(ctx)
	if got := rows(); got != "45 2" {
		f.fatalf("catalog 4.0.0 on MariaDB: %q, want \"45 2\"", got)
	}
	if code, body := f.get(portalsimReadiness); code != http.StatusOK {
		f.fatalf("service readiness: %d %s", code, body)
	}
}
