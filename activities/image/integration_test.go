package image

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stagehand-dev/stagehand/activities"
	"github.com/stagehand-dev/stagehand/internal/enginetest"
	"github.com/stagehand-dev/stagehand/internal/steptest"
)

// These tests drive the steps against podman's Docker-API service and real
// registries (internal/enginetest), sharing one engine per package run.
func TestMain(m *testing.M) { enginetest.Main(m) }

// fixture is an engine, a context root and an Activities pointed at both.
type fixture struct {
	env  *enginetest.Env
	root string
	a    *Activities
	log  *syncBuffer
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	env := enginetest.Shared(t)
	root := t.TempDir()
	logger, buf := newLogger()
	return &fixture{env: env, root: root, log: buf,
		a: &Activities{Host: env.Host, ContextRoots: []string{root}, Logger: logger}}
}

// context writes files into a new context directory under the root.
func (f *fixture) context(t *testing.T, name string, files map[string]string) string {
	t.Helper()
	dir := filepath.Join(f.root, name)
	for p, content := range files {
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func strs(v any) []string {
	var out []string
	if l, ok := v.([]any); ok {
		for _, x := range l {
			out = append(out, fmt.Sprint(x))
		}
	}
	return out
}

// The core path: a Dockerfile with COPY and RUN built through podman, then
// pushed into a real registry; what the registry holds (read over its HTTP
// API) carries the labels, and the step's digest is the registry's.
func TestBuildAndPushIntoRegistry(t *testing.T) {
	f := newFixture(t)
	// The RUN steps check what the context delivered: the .dockerignore'd
	// file must not arrive, the build arg must.
	dir := f.context(t, "portal", map[string]string{
		"Dockerfile": "FROM " + f.env.BaseImage + "\n" +
			"ARG GREETING\n" +
			"COPY . /app\n" +
			"RUN test -f /app/src/index.js && test ! -e /app/secret.env && test ! -e /app/node_modules\n" +
			"RUN echo \"$GREETING from the build\" > /app/greeting && cat /app/greeting\n",
		"src/index.js":        "console.log('portal')\n",
		"secret.env":          "TOKEN=do-not-ship\n",
		"node_modules/x/a.js": "x\n",
		".dockerignore":       "secret.env\nnode_modules\n",
		"docs/README.md":      "docs\n",
	})
	revision := "4f1c2d3e5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d"
	repo := "backstage-portal/backend"
	tag := f.env.RegistryAddr + "/" + repo + ":pr-42-4f1c2d3e-1764500000"
	alias := f.env.RegistryAddr + "/" + repo + ":pr-42"
	run := mustStep(t, f.a, "image.build", map[string]any{
		"context":   dir,
		"buildArgs": map[string]any{"GREETING": "hello"},
		"labels":    map[string]any{"team": "platform"},
		"revision":  revision,
		"version":   "1.42.0",
		"source":    "https://github.com/example/portal",
		"tags":      []any{tag, alias},
	})
	out := run.Outputs
	if out["built"] != true || !strings.HasPrefix(fmt.Sprint(out["imageId"]), "sha256:") || out["revision"] != revision {
		t.Fatalf("build outputs %v", out)
	}
	if got := strs(out["tags"]); len(got) != 2 || got[0] != tag || got[1] != alias {
		t.Errorf("tags output %v", got)
	}
	for _, ref := range []string{tag, alias} {
		if insp, err := f.env.Client().ImageInspect(context.Background(), ref); err != nil || insp.ID != out["imageId"] {
			t.Errorf("%s: %v, %v; want it on %v", ref, insp.ID, err, out["imageId"])
		}
	}
	labels, _ := out["labels"].(map[string]any)
	if labels[LabelRevision] != revision || labels[LabelVersion] != "1.42.0" || labels["team"] != "platform" {
		t.Errorf("labels output %v", labels)
	}
	logText := f.log.String()
	for _, want := range []string{"hello from the build", "RUN test -f /app/src/index.js"} {
		if !strings.Contains(logText, want) {
			t.Errorf("build log lacks %q:\n%s", want, logText)
		}
	}
	sawStep := false
	for _, h := range run.Heartbeats {
		if strings.Contains(strings.ToLower(h), `"step":"step `) {
			sawStep = true
		}
	}
	if !sawStep {
		t.Errorf("no heartbeat named a build step: %v", run.Heartbeats)
	}

	push := mustStep(t, f.a, "image.push", map[string]any{"image": tag}).Outputs
	if push["image"] != tag || push["repository"] != f.env.RegistryAddr+"/"+repo || push["tag"] != "pr-42-4f1c2d3e-1764500000" {
		t.Errorf("push outputs %v", push)
	}
	img, err := f.env.ReadImage(context.Background(), f.env.RegistryAddr, repo, "pr-42-4f1c2d3e-1764500000")
	if err != nil {
		t.Fatal(err)
	}
	if push["digest"] != img.Digest {
		t.Errorf("step digest %v, registry's Docker-Content-Digest %s", push["digest"], img.Digest)
	}
	for k, want := range map[string]string{
		LabelRevision: revision, LabelVersion: "1.42.0", LabelSource: "https://github.com/example/portal", "team": "platform",
	} {
		if img.Labels[k] != want {
			t.Errorf("pushed image label %s = %q, want %q (all: %v)", k, img.Labels[k], want, img.Labels)
		}
	}
	if img.Layers < 2 {
		t.Errorf("pushed image has %d layers; base + COPY + RUN make more", img.Layers)
	}

	// Pushing again (a retry) reports the same digest.
	again := mustStep(t, f.a, "image.push", map[string]any{"image": tag}).Outputs
	if again["digest"] != img.Digest {
		t.Errorf("second push digest %v, want %s", again["digest"], img.Digest)
	}
}

// A failing RUN ends the step at once, non-retryable, with the step and the
// output that explains it.
func TestFailingRunReportsStepAndOutput(t *testing.T) {
	f := newFixture(t)
	dir := f.context(t, "broken", map[string]string{
		"Dockerfile": "FROM " + f.env.BaseImage + "\n" +
			"RUN echo fine\n" +
			"RUN echo boom-output && echo second-line && exit 3\n" +
			"RUN echo never-reached\n",
	})
	run := runStep(t, f.a, "image.build", map[string]any{
		"context": dir, "revision": "badbadbad", "tags": []any{f.env.RegistryAddr + "/broken/app:v1"},
	})
	steptest.WantAppError(t, run.Err, activities.ErrImageBuildFailed, true,
		[]string{"RUN echo boom-output", "boom-output", "second-line"}, "never-reached")
	// The step number (3 of 4, or of 5 where the engine adds a LABEL step).
	if !regexp.MustCompile(`(?i)step 3/[45]`).MatchString(run.Err.Error()) {
		t.Errorf("error does not name the step number: %v", run.Err)
	}
	if len(activities.CleanMessage(run.Err)) > 8192 {
		t.Errorf("failure message is %d bytes", len(activities.CleanMessage(run.Err)))
	}
	if !strings.Contains(f.log.String(), "boom-output") {
		t.Errorf("the worker log lacks the build output:\n%s", f.log.String())
	}
	if _, err := f.env.Client().ImageInspect(context.Background(), f.env.RegistryAddr+"/broken/app:v1"); err == nil {
		t.Errorf("a failed build left its tag behind")
	}
}

// A retry (or a re-run) of the same revision does not build again; a new
// revision does.
func TestSameRevisionIsNotBuiltTwice(t *testing.T) {
	f := newFixture(t)
	dir := f.context(t, "idem", map[string]string{
		"Dockerfile": "FROM " + f.env.BaseImage + "\nCOPY a.txt /a.txt\nRUN cat /a.txt\n",
		"a.txt":      "one\n",
	})
	first := f.env.RegistryAddr + "/idem/app:rev"
	second := f.env.RegistryAddr + "/idem/app:also"
	with := func(rev string, tags ...any) map[string]any {
		return map[string]any{"context": dir, "revision": rev, "tags": tags}
	}
	out1 := mustStep(t, f.a, "image.build", with("aaaa1111", first)).Outputs
	if out1["built"] != true {
		t.Fatalf("first build %v", out1)
	}
	logBefore := len(f.log.String())
	// The second tag is new: a skipped build still applies it.
	out2 := mustStep(t, f.a, "image.build", with("aaaa1111", first, second)).Outputs
	if out2["built"] != false || out2["imageId"] != out1["imageId"] {
		t.Fatalf("same revision: %v, want built=false and imageId %v", out2, out1["imageId"])
	}
	if strings.Contains(f.log.String()[logBefore:], "RUN cat /a.txt") {
		t.Errorf("the skipped build ran Dockerfile steps")
	}
	insp, err := f.env.Client().ImageInspect(context.Background(), second)
	if err != nil || insp.ID != out1["imageId"] {
		t.Errorf("second tag: %v, %v; want it on %v", insp.ID, err, out1["imageId"])
	}
	out3 := mustStep(t, f.a, "image.build", with("bbbb2222", first)).Outputs
	if out3["built"] != true || out3["imageId"] == out1["imageId"] {
		t.Errorf("new revision: %v, want a new image", out3)
	}
	labels, _ := out3["labels"].(map[string]any)
	if labels[LabelRevision] != "bbbb2222" {
		t.Errorf("new revision's labels %v", labels)
	}
	// Without a revision there is nothing to compare: it builds.
	out4 := mustStep(t, f.a, "image.build", map[string]any{"context": dir, "tags": []any{first}}).Outputs
	if out4["built"] != true {
		t.Errorf("build without revision: %v", out4)
	}
}

// Credentials come from a reference; the registry behind basic auth takes
// the right ones, and a wrong password is RegistryAuth with the password
// nowhere in the error, the outputs or the worker log.
func TestPushWithCredentials(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	tag := f.env.AuthRegistryAddr + "/private/app:v1"
	if err := f.env.Client().ImageTag(ctx, f.env.BaseImage, tag); err != nil {
		t.Fatal(err)
	}
	t.Setenv("STAGEHAND_TEST_REGISTRY_PASSWORD", f.env.Password)
	wrong := "wrong-" + f.env.Password[len(f.env.Password)-8:] + "-pass"
	t.Setenv("STAGEHAND_TEST_WRONG_PASSWORD", wrong)

	run := runStep(t, f.a, "image.push", map[string]any{
		"image": tag, "username": f.env.Username, "passwordRef": "env:STAGEHAND_TEST_WRONG_PASSWORD",
	})
	steptest.WantAppError(t, run.Err, activities.ErrRegistryAuth, true, []string{tag, f.env.AuthRegistryAddr}, wrong, f.env.Password)
	run = runStep(t, f.a, "image.push", map[string]any{"image": tag})
	steptest.WantAppError(t, run.Err, activities.ErrRegistryAuth, true, []string{tag})

	push := mustStep(t, f.a, "image.push", map[string]any{
		"image": tag, "username": f.env.Username, "passwordRef": "env:STAGEHAND_TEST_REGISTRY_PASSWORD",
		"registry": f.env.AuthRegistryAddr,
	}).Outputs
	img, err := f.env.ReadImage(ctx, f.env.AuthRegistryAddr, "private/app", "v1")
	if err != nil {
		t.Fatal(err)
	}
	if push["digest"] != img.Digest {
		t.Errorf("digest %v, registry says %s", push["digest"], img.Digest)
	}
	outJSON, _ := json.Marshal(push)
	for _, secret := range []string{f.env.Password, wrong} {
		if strings.Contains(string(outJSON), secret) || strings.Contains(f.log.String(), secret) {
			t.Errorf("a password leaked into the outputs or the log")
		}
	}

	run = runStep(t, f.a, "image.push", map[string]any{"image": tag, "username": f.env.Username, "passwordRef": "env:STAGEHAND_TEST_UNSET"})
	steptest.WantAppError(t, run.Err, activities.ErrSecretUnavailable, true, []string{"STAGEHAND_TEST_UNSET"})
	run = runStep(t, f.a, "image.push", map[string]any{
		"image": tag, "username": f.env.Username, "passwordRef": "env:STAGEHAND_TEST_REGISTRY_PASSWORD", "registry": "registry.example.com",
	})
	steptest.WantAppError(t, run.Err, activities.ErrInvalidArguments, true, []string{"registry.example.com"}, f.env.Password)
}

// image.tag gives an existing image a new name, which can then be pushed;
// a missing source is ImageNotFound, and so is pushing a missing image.
func TestTagThenPush(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	src := f.env.RegistryAddr + "/promote/app:pr-7-0123abcd-1764500000"
	if err := f.env.Client().ImageTag(ctx, f.env.BaseImage, src); err != nil {
		t.Fatal(err)
	}
	target := f.env.RegistryAddr + "/promote/app:prod-0123abcd-1764500100"
	out := mustStep(t, f.a, "image.tag", map[string]any{"source": src, "target": target}).Outputs
	base, err := f.env.Client().ImageInspect(ctx, f.env.BaseImage)
	if err != nil {
		t.Fatal(err)
	}
	if out["image"] != target || out["imageId"] != base.ID {
		t.Errorf("tag outputs %v, want image %s on %s", out, target, base.ID)
	}
	// Tagging again is fine.
	mustStep(t, f.a, "image.tag", map[string]any{"source": src, "target": target})

	push := mustStep(t, f.a, "image.push", map[string]any{"image": target}).Outputs
	img, err := f.env.ReadImage(ctx, f.env.RegistryAddr, "promote/app", "prod-0123abcd-1764500100")
	if err != nil {
		t.Fatal(err)
	}
	if push["digest"] != img.Digest || push["tag"] != "prod-0123abcd-1764500100" {
		t.Errorf("push outputs %v, registry digest %s", push, img.Digest)
	}

	run := runStep(t, f.a, "image.tag", map[string]any{"source": f.env.RegistryAddr + "/promote/app:missing", "target": target})
	steptest.WantAppError(t, run.Err, activities.ErrImageNotFound, true, []string{"promote/app:missing"})
	run = runStep(t, f.a, "image.push", map[string]any{"image": f.env.RegistryAddr + "/promote/app:missing"})
	steptest.WantAppError(t, run.Err, activities.ErrImageNotFound, true, []string{"promote/app:missing"})
}

// A RUN step that prints nothing for a while still heartbeats, naming the
// step, so the one-minute heartbeat timeout does not mistake it for a lost
// worker.
func TestQuietStepKeepsHeartbeating(t *testing.T) {
	f := newFixture(t)
	old := heartbeatInterval
	heartbeatInterval = 200 * time.Millisecond
	t.Cleanup(func() { heartbeatInterval = old })
	dir := f.context(t, "quiet", map[string]string{
		"Dockerfile": "FROM " + f.env.BaseImage + "\nRUN sleep 3 && echo woke-up\n",
	})
	var mu sync.Mutex
	var beats []BuildProgress
	f.a.recordHeartbeat = func(_ context.Context, d any) {
		mu.Lock()
		defer mu.Unlock()
		beats = append(beats, d.(BuildProgress))
	}
	mustStep(t, f.a, "image.build", map[string]any{"context": dir, "tags": []any{"localhost/quiet/app:v1"}})
	mu.Lock()
	defer mu.Unlock()
	during := 0
	for _, p := range beats {
		if strings.Contains(p.Step, "RUN sleep 3") && !slices.Contains(p.Lines, "woke-up") {
			during++
		}
	}
	// 3 s at 200 ms is about 15.
	if during < 3 {
		t.Errorf("%d heartbeats during the quiet step, want several: %+v", during, beats)
	}
}

// A cancelled build (the run was cancelled, the worker is stopping) stops
// reading the engine's stream and returns at once, not when the step in
// progress ends.
func TestCancelledBuildReturns(t *testing.T) {
	f := newFixture(t)
	dir := f.context(t, "cancel", map[string]string{
		"Dockerfile": "FROM " + f.env.BaseImage + "\nRUN echo long-step-started && sleep 120\n",
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := f.a.Build(ctx, BuildInput{Context: dir, Tags: []string{"localhost/cancel/app:v1"}})
		done <- err
	}()
	deadline := time.After(60 * time.Second)
	for !strings.Contains(f.log.String(), "long-step-started") {
		select {
		case err := <-done:
			t.Fatalf("build ended before the long step: %v\n%s", err, f.log.String())
		case <-deadline:
			t.Fatalf("the long step did not start:\n%s", f.log.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	cancel()
	start := time.Now()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("error %v, want the cancellation", err)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("the build returned %s after the cancellation", d)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the cancelled build did not return within 30 s")
	}
}
