package image

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/docker/docker/pkg/jsonmessage"

	"github.com/stagehand-dev/stagehand/activities"
	"github.com/stagehand-dev/stagehand/activities/steps"
	"github.com/stagehand-dev/stagehand/internal/steptest"
)

// Unit tests: no engine, run under -short.

func TestStepTypesAgreeWithSpecs(t *testing.T) {
	var specs []activities.StepSpec
	for _, s := range steps.All() {
		if strings.HasPrefix(s.Name, "image.") {
			specs = append(specs, s)
		}
	}
	if len(specs) != 3 {
		t.Fatalf("want 3 image specs, got %d", len(specs))
	}
	if _, err := activities.Bind(specs, StepTypes(&Activities{})...); err != nil {
		t.Fatal(err)
	}
}

// followBuild runs a recorded stream through the same code Build uses.
func followBuild(t *testing.T, stream string) (*buildLog, []string) {
	t.Helper()
	var bl buildLog
	var logged []string
	if err := decodeStream(strings.NewReader(stream), func(m jsonmessage.JSONMessage) {
		lines, _ := bl.handle(m)
		logged = append(logged, lines...)
	}); err != nil {
		t.Fatal(err)
	}
	logged = append(logged, bl.finish()...)
	return &bl, logged
}

// Recorded from podman 4.3's /build (a failing RUN).
const podmanFailure = `{"stream":"STEP 1/4: FROM localhost/stagehand-busybox:test\n"}
{"stream":"STEP 2/4: COPY hello.txt /hello.txt\n"}
{"stream":"--\u003e 1356829d1d6\n"}
{"stream":"STEP 3/4: RUN echo boom-output \u0026\u0026 exit 3\n"}
{"stream":"boom-output\n"}
{"errorDetail":{"message":"building at STEP \"RUN echo boom-output \u0026\u0026 exit 3\": while running runtime: exit status 3\n"},"error":"building at STEP \"RUN echo boom-output \u0026\u0026 exit 3\": while running runtime: exit status 3\n"}
`

// What dockerd's classic builder sends for the same failure.
const dockerdFailure = `{"stream":"Step 1/3 : FROM busybox"}
{"stream":"\n"}
{"stream":" ---\u003e 1a2b3c4d\n"}
{"stream":"Step 2/3 : RUN echo boom-output \u0026\u0026 exit 3"}
{"stream":"\n"}
{"stream":" ---\u003e Running in 5e6f7a8b\n"}
{"stream":"boom-"}
{"stream":"output\n"}
{"errorDetail":{"code":3,"message":"The command '/bin/sh -c echo boom-output \u0026\u0026 exit 3' returned a non-zero code: 3"},"error":"The command '/bin/sh -c echo boom-output \u0026\u0026 exit 3' returned a non-zero code: 3"}
`

func TestBuildStreamFailureNamesStepAndOutput(t *testing.T) {
	for name, c := range map[string]struct{ stream, step string }{
		"podman":  {podmanFailure, "STEP 3/4: RUN echo boom-output && exit 3"},
		"dockerd": {dockerdFailure, "Step 2/3 : RUN echo boom-output && exit 3"},
	} {
		t.Run(name, func(t *testing.T) {
			bl, logged := followBuild(t, c.stream)
			if !bl.failed() {
				t.Fatal("the error line was not seen")
			}
			msg := bl.failure("reg/app:v1")
			for _, want := range []string{"build of reg/app:v1 failed at " + c.step, "exit", "last output of the step (1 lines):\n  boom-output"} {
				if !strings.Contains(msg, want) {
					t.Errorf("failure %q lacks %q", msg, want)
				}
			}
			if !slices.Contains(logged, "boom-output") || !slices.Contains(logged, c.step) {
				t.Errorf("logged lines %q", logged)
			}
			if p := bl.progress(); p.Step != c.step {
				t.Errorf("progress step %q, want %q", p.Step, c.step)
			}
		})
	}
}

// A step that prints a lot: the message keeps the last lines within the
// bounds, and a huge line is cut.
func TestBuildFailureOutputIsBounded(t *testing.T) {
	var sb strings.Builder
	sb.WriteString(`{"stream":"STEP 2/2: RUN make\n"}` + "\n")
	for i := range 500 {
		sb.WriteString(`{"stream":"line ` + strings.Repeat("x", i%50) + `-` + string(rune('a'+i%26)) + `\n"}` + "\n")
	}
	sb.WriteString(`{"stream":"` + strings.Repeat("y", 20000) + `\n"}` + "\n")
	sb.WriteString(`{"stream":"the-last-line\n"}` + "\n")
	sb.WriteString(`{"error":"` + strings.Repeat("e", 5000) + `"}` + "\n")
	bl, logged := followBuild(t, sb.String())
	msg := bl.failure("app:v1")
	if len(msg) > maxTailBytes+maxEngineErrBytes+200 {
		t.Errorf("failure message is %d bytes", len(msg))
	}
	if !strings.HasSuffix(msg, "the-last-line") || !strings.Contains(msg, "STEP 2/2: RUN make") {
		t.Errorf("failure message does not end with the last line or lacks the step: …%s", msg[max(0, len(msg)-200):])
	}
	if n := strings.Count(msg, "\n  "); n > maxTailLines {
		t.Errorf("%d output lines in the message, at most %d", n, maxTailLines)
	}
	for _, l := range logged {
		if len(l) > maxLogLineBytes+4 {
			t.Errorf("a logged line of %d bytes", len(l))
		}
	}
	if len(logged) != 503 {
		t.Errorf("%d lines logged, want every one (503)", len(logged))
	}
}

func TestBuildStreamSuccess(t *testing.T) {
	stream := `{"stream":"STEP 1/2: FROM base\n"}
{"stream":"STEP 2/2: RUN echo ok\n"}
{"stream":"ok\nno newline at the end"}
{"aux":{"ID":"sha256:55d573da0bcebb15f127cd0ad0168d052cee602e27c6cb1ab5a3a3b7cc3d449e"}}
{"status":"Pulling fs layer","progressDetail":{},"id":"abc"}
{"status":"Downloading","progressDetail":{"current":1,"total":2},"progress":"[=>  ]","id":"abc"}
`
	bl, logged := followBuild(t, stream)
	if bl.failed() {
		t.Fatal("no error in the stream, but failed")
	}
	if bl.imageID != "sha256:55d573da0bcebb15f127cd0ad0168d052cee602e27c6cb1ab5a3a3b7cc3d449e" {
		t.Errorf("image id %q", bl.imageID)
	}
	want := []string{"STEP 1/2: FROM base", "STEP 2/2: RUN echo ok", "ok", "no newline at the end", "abc: Pulling fs layer"}
	if !slices.Equal(logged, want) {
		t.Errorf("logged %q, want %q", logged, want)
	}
}

func TestDecodeStreamCutShort(t *testing.T) {
	err := decodeStream(strings.NewReader(`{"stream":"STEP 1/2: FROM base\n"}`+"\n"+`{"stream":"ha`), func(jsonmessage.JSONMessage) {})
	if err == nil {
		t.Fatal("a truncated stream decoded without error")
	}
}

func TestPushStream(t *testing.T) {
	const digest = "sha256:f5e969a1f09fead4278cbd52178321b37be962f9a52a7e444fb56195b9fbd9c2"
	cases := []struct {
		name, stream, digest, err string
	}{
		{"podman", `{"status":"The push refers to repository [127.0.0.1:5000/app:v1]"}
{"status":"v1: digest: ` + digest + ` size: 735"}
`, digest, ""},
		{"dockerd aux", `{"status":"The push refers to repository [127.0.0.1:5000/app]"}
{"status":"Preparing","progressDetail":{},"id":"47c87793581c"}
{"status":"Pushed","progressDetail":{},"id":"47c87793581c"}
{"status":"v1: digest: ` + digest + ` size: 528"}
{"progressDetail":{},"aux":{"Tag":"v1","Digest":"` + digest + `","Size":528}}
`, digest, ""},
		{"error in stream", `{"status":"The push refers to repository [127.0.0.1:5000/app:v1]"}
{"errorDetail":{"message":"checking whether a blob exists in 127.0.0.1:5000/app: unauthorized: authentication required"},"error":"checking whether a blob exists in 127.0.0.1:5000/app: unauthorized: authentication required"}
`, "", "unauthorized: authentication required"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var pl pushLog
			if err := decodeStream(strings.NewReader(c.stream), func(m jsonmessage.JSONMessage) { pl.handle(m) }); err != nil {
				t.Fatal(err)
			}
			d, _, errMsg := pl.result()
			if d != c.digest || !strings.Contains(errMsg, c.err) || (c.err == "") != (errMsg == "") {
				t.Errorf("digest %q error %q; want %q, %q", d, errMsg, c.digest, c.err)
			}
		})
	}
}

func TestPushErrorClassification(t *testing.T) {
	a := &Activities{}
	red := newRedactor()
	red.Add("hunter2-secret")
	cases := []struct {
		msg  string
		want string
	}{
		{"unauthorized: authentication required", activities.ErrRegistryAuth},
		{"denied: requested access to the resource is denied", activities.ErrRegistryAuth},
		{"unexpected status: 401 Unauthorized", activities.ErrRegistryAuth},
		{"no basic auth credentials", activities.ErrRegistryAuth},
		{"Get \"https://reg/v2/\": dial tcp 10.0.0.1:443: connect: connection refused", activities.ErrImagePushFailed},
		{"blob upload unknown", activities.ErrImagePushFailed},
		// A digest or an address that happens to contain 401 or
		// "denied" is not a refusal of the credentials.
		{"blob upload unknown to registry: sha256:9f401e2a", activities.ErrImagePushFailed},
		{"dial tcp 10.0.40.1:5000: connect: permission denied", activities.ErrImagePushFailed},
	}
	for _, c := range cases {
		err := a.pushError("reg/app:v1", "reg", c.msg+" (password hunter2-secret)", nil, red)
		var want bool
		if c.want == activities.ErrRegistryAuth {
			want = true
		}
		steptest.WantAppError(t, err, c.want, want, []string{"reg/app:v1", "REDACTED"}, "hunter2-secret")
	}
}

func TestBuildLabels(t *testing.T) {
	got, err := buildLabels(map[string]string{"team": "platform"}, "abc123", "1.2.3", "https://git.example/portal")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"team": "platform", LabelRevision: "abc123", LabelVersion: "1.2.3", LabelSource: "https://git.example/portal"}
	if len(got) != len(want) {
		t.Errorf("labels %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("label %s = %q, want %q", k, got[k], v)
		}
	}
	// Empty arguments add no label.
	if got, _ := buildLabels(nil, "", "", ""); len(got) != 0 {
		t.Errorf("labels from nothing: %v", got)
	}
	// The same value in both places is fine; another is not.
	if _, err := buildLabels(map[string]string{LabelRevision: "abc123"}, "abc123", "", ""); err != nil {
		t.Errorf("same revision twice: %v", err)
	}
	if _, err := buildLabels(map[string]string{LabelRevision: "other"}, "abc123", "", ""); err == nil || !strings.Contains(err.Error(), LabelRevision) {
		t.Errorf("conflicting revision: %v", err)
	}
	many := map[string]string{}
	for i := range MaxLabels {
		many[strings.Repeat("k", i+1)] = "v"
	}
	if _, err := buildLabels(many, "abc", "", ""); err == nil {
		t.Errorf("%d labels plus the revision accepted", MaxLabels)
	}
	if _, err := buildLabels(nil, strings.Repeat("r", MaxValueBytes+1), "", ""); err == nil {
		t.Errorf("an oversized revision accepted")
	}
}

func TestInputBounds(t *testing.T) {
	bad := []map[string]string{
		{"": "v"},
		{strings.Repeat("k", MaxKeyBytes+1): "v"},
		{"A=B": "v"},
		{"k": strings.Repeat("v", MaxValueBytes+1)},
		{"k": "a\x00b"},
	}
	for _, m := range bad {
		if err := checkMap("buildArgs", m, MaxBuildArgs); err == nil {
			t.Errorf("accepted %q", m)
		}
	}
	tooMany := map[string]string{}
	for i := range MaxBuildArgs + 1 {
		tooMany[strings.Repeat("a", i+1)] = "v"
	}
	if err := checkMap("buildArgs", tooMany, MaxBuildArgs); err == nil {
		t.Errorf("accepted %d build args", len(tooMany))
	}
	if err := checkMap("buildArgs", map[string]string{"NODE_VERSION": "22", "EMPTY": ""}, MaxBuildArgs); err != nil {
		t.Errorf("rejected ordinary build args: %v", err)
	}

	for _, tags := range [][]string{
		nil,
		{"registry.example.com/portal/backend"}, // no tag
		{"registry.example.com/portal/backend@sha256:" + strings.Repeat("a", 64)}, // digest
		{"Registry.example.com/UPPER:v1"},
		{"reg/app:v1", "reg/app:v1"},
		slices.Repeat([]string{"x"}, MaxTags+1),
		{"reg/" + strings.Repeat("a", maxRefBytes) + ":v1"},
	} {
		if err := checkTags(tags); err == nil {
			t.Errorf("accepted tags %.80q", tags)
		}
	}
	if err := checkTags([]string{"127.0.0.1:5000/portal/backend:pr-42-4f1c2d3e-1764500000", "portal:latest"}); err != nil {
		t.Errorf("rejected ordinary tags: %v", err)
	}
}

func TestCleanDockerfile(t *testing.T) {
	for in, want := range map[string]string{"": "Dockerfile", "docker/Dockerfile.prod": "docker/Dockerfile.prod", "./a/../Dockerfile": "Dockerfile"} {
		if got, err := cleanDockerfile(in); err != nil || got != want {
			t.Errorf("cleanDockerfile(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"/etc/Dockerfile", "../Dockerfile", "a/../../Dockerfile", ".", ".."} {
		if _, err := cleanDockerfile(in); err == nil {
			t.Errorf("cleanDockerfile(%q) accepted", in)
		}
	}
}

func TestServerAddress(t *testing.T) {
	for _, c := range []struct{ host, arg, want string }{
		{"127.0.0.1:5000", "", "127.0.0.1:5000"},
		{"127.0.0.1:5000", "127.0.0.1:5000", "127.0.0.1:5000"},
		{"registry.example.com", "https://registry.example.com/", "registry.example.com"},
		{"docker.io", "", dockerHubServer},
		{"docker.io", "https://index.docker.io/v1/", dockerHubServer},
		{"docker.io", "docker.io", dockerHubServer},
	} {
		if got, err := serverAddress(c.host, c.arg); err != nil || got != c.want {
			t.Errorf("serverAddress(%q, %q) = %q, %v; want %q", c.host, c.arg, got, err, c.want)
		}
	}
	for _, c := range []struct{ host, arg string }{{"127.0.0.1:5000", "evil.example.com"}, {"docker.io", "ghcr.io"}} {
		if _, err := serverAddress(c.host, c.arg); err == nil {
			t.Errorf("serverAddress(%q, %q) accepted another registry", c.host, c.arg)
		}
	}
}

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for p, content := range files {
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// The context honours .dockerignore like the docker CLI: exclusions,
// `!` re-inclusions, and the Dockerfile and .dockerignore always sent;
// symlinks go as links.
func TestContextFilesAndTar(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"Dockerfile":                  "FROM x\n",
		"src/a.js":                    "a",
		"src/a.test.js":               "t",
		"node_modules/lib/index.js":   "n",
		"docs/keep.md":                "k",
		"docs/drop.md":                "d",
		".git/HEAD":                   "ref",
		".dockerignore":               "node_modules\n.git\n**/*.test.js\ndocs\n!docs/keep.md\nDockerfile\n",
		"packages/app/node_modules/x": "nested is not excluded by a root pattern",
	})
	if err := os.Symlink("/etc/passwd", filepath.Join(dir, "src", "passwd")); err != nil {
		t.Fatal(err)
	}
	entries, size, err := contextFiles(dir, "Dockerfile", defaultContextLimits)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.rel)
	}
	for _, want := range []string{"Dockerfile", ".dockerignore", "src/a.js", "src/passwd", "docs/keep.md", "packages/app/node_modules/x"} {
		if !slices.Contains(names, want) {
			t.Errorf("context lacks %s: %v", want, names)
		}
	}
	for _, not := range []string{"src/a.test.js", "node_modules", "node_modules/lib/index.js", ".git/HEAD", "docs/drop.md"} {
		if slices.Contains(names, not) {
			t.Errorf("context has excluded %s", not)
		}
	}
	if size <= 0 {
		t.Errorf("size %d", size)
	}

	var buf bytes.Buffer
	if err := writeContext(&buf, dir, entries); err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(&buf)
	seen := map[string]*tar.Header{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		seen[h.Name] = h
		if h.Uid != 0 || h.Gid != 0 {
			t.Errorf("%s owned by %d:%d", h.Name, h.Uid, h.Gid)
		}
	}
	if h := seen["src/passwd"]; h == nil || h.Typeflag != tar.TypeSymlink || h.Linkname != "/etc/passwd" {
		t.Errorf("symlink sent as %+v", h)
	}
	if h := seen["src/a.js"]; h == nil || h.Size != 1 {
		t.Errorf("src/a.js sent as %+v", h)
	}
	if seen["src/"] == nil {
		t.Errorf("directory entries missing: %v", slices.Sorted(func(yield func(string) bool) {
			for k := range seen {
				if !yield(k) {
					return
				}
			}
		}))
	}
}

// A file or directory swapped for a link to outside the context after it
// was listed (something still running in the work tree) sends nothing
// from outside.
func TestContextSwappedForLinkAfterListing(t *testing.T) {
	outside := t.TempDir()
	writeFiles(t, outside, map[string]string{"secret": "outside-secret", "sub/a.js": "outside-a"})
	for _, swap := range []string{"secret", "sub"} {
		dir := t.TempDir()
		writeFiles(t, dir, map[string]string{"Dockerfile": "FROM x\n", "secret": "inside-secret", "sub/a.js": "inside-a"})
		entries, _, err := contextFiles(dir, "Dockerfile", defaultContextLimits)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.RemoveAll(filepath.Join(dir, swap)); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(filepath.Join(outside, swap), filepath.Join(dir, swap)); err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		err = writeContext(&buf, dir, entries)
		if err == nil {
			t.Errorf("%s swapped for a link: context sent without an error", swap)
		}
		if strings.Contains(buf.String(), "outside-") {
			t.Errorf("%s swapped for a link: the context carries a file from outside it", swap)
		}
	}
}

// A .dockerignore that links outside the context is refused, not read:
// its patterns would come from (and errors could quote) another file.
func TestDockerignoreLinkingOutsideIsRefused(t *testing.T) {
	outside := filepath.Join(t.TempDir(), "patterns")
	if err := os.WriteFile(outside, []byte("secret.txt\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"Dockerfile": "FROM x\n", "secret.txt": "s"})
	if err := os.Symlink(outside, filepath.Join(dir, ".dockerignore")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := contextFiles(dir, "Dockerfile", defaultContextLimits); err == nil || !strings.Contains(err.Error(), ".dockerignore") {
		t.Errorf("error %v, want the .dockerignore refused", err)
	}
}

func TestContextBounds(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"Dockerfile": "FROM x\n", "big.bin": strings.Repeat("x", 4096), "a": "1", "b": "2"})
	if _, _, err := contextFiles(dir, "Dockerfile", contextLimits{bytes: 1024, files: 100}); err == nil || !strings.Contains(err.Error(), "larger than 1024 bytes") {
		t.Errorf("oversized context: %v", err)
	}
	if _, _, err := contextFiles(dir, "Dockerfile", contextLimits{bytes: 1 << 20, files: 2}); err == nil || !strings.Contains(err.Error(), "more than 2 files") {
		t.Errorf("too many files: %v", err)
	}
	if _, _, err := contextFiles(dir, "docker/Dockerfile", defaultContextLimits); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("missing Dockerfile: %v", err)
	}
	if sizeString(MaxContextBytes) != "1 GiB" {
		t.Errorf("the default bound reads %q", sizeString(MaxContextBytes))
	}
}

// countingEngine is an HTTP server standing in for an engine: it counts
// requests and answers none usefully. Tests of refusals check it saw
// nothing.
func countingEngine(t *testing.T) (host string, requests *atomic.Int64) {
	t.Helper()
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		io.Copy(io.Discard, r.Body)
		http.Error(w, `{"message":"test engine refuses everything"}`, http.StatusInternalServerError)
	}))
	t.Cleanup(srv.Close)
	return "tcp://" + strings.TrimPrefix(srv.URL, "http://"), &n
}

// A context outside docker.contextRoots, by path, by `..` or through a
// symlink, is refused before the engine hears of it.
func TestContextOutsideRootsIsRefusedBeforeTheEngine(t *testing.T) {
	base := t.TempDir()
	root := filepath.Join(base, "checkouts")
	outside := filepath.Join(base, "elsewhere")
	writeFiles(t, root, map[string]string{"portal/Dockerfile": "FROM x\n"})
	writeFiles(t, outside, map[string]string{"Dockerfile": "FROM x\n"})
	if err := os.Symlink(outside, filepath.Join(root, "link")); err != nil {
		t.Fatal(err)
	}
	host, requests := countingEngine(t)
	a := &Activities{Host: host, APIVersion: "1.41", ContextRoots: []string{root}}
	tags := []any{"reg.example/app:v1"}

	for _, c := range []struct{ name, context string }{
		{"outside", outside},
		{"dot-dot", root + "/portal/../../elsewhere"},
		{"symlink", filepath.Join(root, "link")},
		{"root's parent", base},
	} {
		t.Run(c.name, func(t *testing.T) {
			run := runStep(t, a, "image.build", map[string]any{"context": c.context, "tags": tags})
			steptest.WantAppError(t, run.Err, activities.ErrImageContextNotAllowed, true, []string{"docker.contextRoots", c.context})
		})
	}
	run := runStep(t, &Activities{Host: host, APIVersion: "1.41"}, "image.build", map[string]any{"context": filepath.Join(root, "portal"), "tags": tags})
	steptest.WantAppError(t, run.Err, activities.ErrImageContextNotAllowed, true, []string{"docker.contextRoots", "allows no build contexts"})
	run = runStep(t, a, "image.build", map[string]any{"context": "portal", "tags": tags})
	steptest.WantAppError(t, run.Err, activities.ErrInvalidArguments, true, []string{"absolute"})
	run = runStep(t, a, "image.build", map[string]any{"context": filepath.Join(root, "portal"), "tags": []any{"reg.example/app"}})
	steptest.WantAppError(t, run.Err, activities.ErrInvalidArguments, true, []string{"no tag"})
	run = runStep(t, a, "image.build", map[string]any{"context": filepath.Join(root, "portal"), "dockerfile": "../../elsewhere/Dockerfile", "tags": tags})
	steptest.WantAppError(t, run.Err, activities.ErrInvalidArguments, true, []string{"outside the context"})
	if n := requests.Load(); n != 0 {
		t.Fatalf("the engine got %d requests for refused builds", n)
	}

	// The counter does count: an allowed context reaches the engine
	// (through a symlinked root, which is resolved too).
	if err := os.Symlink(root, filepath.Join(base, "root-link")); err != nil {
		t.Fatal(err)
	}
	a.ContextRoots = []string{filepath.Join(base, "root-link")}
	run = runStep(t, a, "image.build", map[string]any{"context": filepath.Join(root, "portal"), "tags": tags})
	steptest.WantAppError(t, run.Err, activities.ErrImageBuildFailed, true, []string{"test engine refuses everything"})
	if requests.Load() == 0 {
		t.Fatal("an allowed build never reached the engine")
	}
}

func TestUnreachableEngine(t *testing.T) {
	a := &Activities{Host: "unix://" + filepath.Join(t.TempDir(), "no-engine.sock"), ContextRoots: []string{t.TempDir()}}
	run := runStep(t, a, "image.tag", map[string]any{"source": "app:v1", "target": "app:v2"})
	steptest.WantAppError(t, run.Err, activities.ErrEngineUnavailable, false, []string{"no-engine.sock"})
	run = runStep(t, a, "image.push", map[string]any{"image": "127.0.0.1:5000/app:v1"})
	steptest.WantAppError(t, run.Err, activities.ErrEngineUnavailable, false, nil)
}
