package main

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/image"
	"github.com/jackc/pgx/v5"
	appsv1 "k8s.io/api/apps/v1"

	"github.com/stagehand-dev/stagehand/internal/enginetest"
	"github.com/stagehand-dev/stagehand/internal/kubetest"
	"github.com/stagehand-dev/stagehand/internal/localenv"
	"github.com/stagehand-dev/stagehand/internal/pgtest"
)

// syncWriter lets the tool's logger and the test read the log safely.
type syncWriter struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// The command wires --portal into the node it simulates: a Deployment
// scheduled onto that node rolls out only once the real Backstage its image
// names is ready on the database, the portal port serves it, and stopping
// the command stops the backend.
func TestPortalFlagRunsRealBackstage(t *testing.T) {
	localenv.SkipIfShort(t, "a control plane, PostgreSQL, podman and Backstage")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	engine := enginetest.New(t)
	pg := pgtest.New(t)
	ref := buildPortalImage(ctx, t, engine, "3.9.1")
	kube, err := kubetest.Start(ctx, kubetest.Options{Namespaces: []string{"portal"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = kube.Stop() })

	port, err := localenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	var logs syncWriter
	runCtx, stopRun := context.WithCancel(ctx)
	runDone := make(chan error, 1)
	go func() {
		runDone <- run(runCtx, log.New(&logs, "", log.Lmicroseconds), kube.Kubeconfig, "", "tool-node", time.Second, false,
			[]string{fmt.Sprintf("portal/backstage/backstage=%d,client=pg,host=%s,port=%d,user=%s", port, pg.Host, pg.Port, pg.User)}, "")
	}()
	defer stopRun()

	// Only the command's node may run these pods, not the plane's own sim.
	if _, err := kube.CreateDeployment(ctx, "portal", "backstage", ref, 1, func(d *appsv1.Deployment) {
		d.Spec.Template.Spec.NodeSelector = map[string]string{"kubernetes.io/hostname": "tool-node"}
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := kube.WaitForRollout(ctx, "portal", "backstage"); err != nil {
		t.Fatalf("%v\n--- command log ---\n%s", err, logs.String())
	}
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/.backstage/health/v1/readiness", port))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("portal port readiness %d\n%s", resp.StatusCode, logs.String())
	}
	conn, err := pgx.Connect(ctx, pg.DSN("backstage_plugin_catalog"))
	if err != nil {
		t.Fatal(err)
	}
	var n int
	err = conn.QueryRow(ctx, `SELECT count(*) FROM knex_migrations`).Scan(&n)
	conn.Close(ctx)
	if err != nil || n != 43 {
		t.Fatalf("knex_migrations: %d rows (%v), want 43", n, err)
	}

	stopRun()
	select {
	case err := <-runDone:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("the command did not return within a minute of its context ending")
	}
	if !strings.Contains(logs.String(), "stopped catalog 3.9.1") {
		t.Errorf("no backend stop logged:\n%s", logs.String())
	}
	c := &http.Client{Timeout: 2 * time.Second}
	if resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/", port)); err == nil {
		resp.Body.Close()
		t.Errorf("portal port still answers after the command returned")
	}
}

func buildPortalImage(ctx context.Context, t *testing.T, e *enginetest.Env, catalog string) string {
	t.Helper()
	pkg, _ := json.Marshal(map[string]any{"name": "backend", "dependencies": map[string]string{
		"@backstage/plugin-catalog-backend": catalog, "@backstage/plugin-auth-backend": "0.30.1"}})
	dockerfile := "FROM " + e.BaseImage + "\nCOPY package.json /app/package.json\n"
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for name, content := range map[string]string{"Dockerfile": dockerfile, "package.json": string(pkg)} {
		_ = tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(content))})
		_, _ = tw.Write([]byte(content))
	}
	_ = tw.Close()
	ref := e.RegistryAddr + "/portal/backend:tool"
	resp, err := e.Client().ImageBuild(ctx, &buf, build.ImageBuildOptions{Tags: []string{ref}, Remove: true})
	if err == nil {
		err = drain(resp.Body)
		resp.Body.Close()
	}
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	rc, err := e.Client().ImagePush(ctx, ref, image.PushOptions{RegistryAuth: "e30="})
	if err == nil {
		err = drain(rc)
		rc.Close()
	}
	if err != nil {
		t.Fatalf("push: %v", err)
	}
	return ref
}

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
