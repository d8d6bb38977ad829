package enginetest

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/image"
)

func TestMain(m *testing.M) { Main(m) }

// The harness's promises: the engine answers, the base image is there, the
// open registry takes anonymous requests and the other one only the Env's
// credentials.
func TestEngineAndRegistriesAreUp(t *testing.T) {
	start := time.Now()
	e := Shared(t)
	t.Logf("engine, two registries and the base image ready in %v", time.Since(start).Round(time.Millisecond))
	ctx := context.Background()
	if !strings.HasPrefix(e.Host, "unix://") {
		t.Errorf("Host %q is not a unix socket address", e.Host)
	}
	v, err := e.Client().ServerVersion(ctx)
	if err != nil {
		t.Fatalf("engine version: %v", err)
	}
	t.Logf("engine API %s (%s)", v.APIVersion, v.Version)
	inspect, err := e.Client().ImageInspect(ctx, e.BaseImage)
	if err != nil {
		t.Fatalf("base image: %v", err)
	}
	if inspect.Size < 500_000 {
		t.Errorf("base image is %d bytes; busybox alone is larger", inspect.Size)
	}
	for _, c := range []struct {
		addr       string
		user, pass string
		want       int
	}{
		{e.RegistryAddr, "", "", http.StatusOK},
		{e.AuthRegistryAddr, "", "", http.StatusUnauthorized},
		{e.AuthRegistryAddr, e.Username, "wrong", http.StatusUnauthorized},
		{e.AuthRegistryAddr, e.Username, e.Password, http.StatusOK},
	} {
		req, _ := http.NewRequest(http.MethodGet, "http://"+c.addr+"/v2/", nil)
		if c.user != "" {
			req.SetBasicAuth(c.user, c.pass)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("GET %s/v2/ as %q: %d, want %d", c.addr, c.user, resp.StatusCode, c.want)
		}
	}
}

// Pushing the base image through the engine lands it in the registry with
// the digest the registry reports.
func TestPushBaseImage(t *testing.T) {
	e := Shared(t)
	ctx := context.Background()
	ref := e.RegistryAddr + "/enginetest/base:v1"
	if err := e.Client().ImageTag(ctx, e.BaseImage, ref); err != nil {
		t.Fatal(err)
	}
	rc, err := e.Client().ImagePush(ctx, ref, image.PushOptions{RegistryAuth: "e30="})
	if err != nil {
		t.Fatal(err)
	}
	err = drainStream(rc)
	rc.Close()
	if err != nil {
		t.Fatalf("push: %v", err)
	}
	img, err := e.ReadImage(ctx, e.RegistryAddr, "enginetest/base", "v1")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(img.Digest, "sha256:") || img.Layers != 1 {
		t.Errorf("pushed image %+v", img)
	}
	tags, err := e.Tags(ctx, e.RegistryAddr, "enginetest/base")
	if err != nil || len(tags) != 1 || tags[0] != "v1" {
		t.Errorf("tags %v, %v", tags, err)
	}
}

// Stop leaves nothing behind: no process answering, no scratch directory
// (vfs copies read-only directories out of layers; removal must cope).
func TestStopRemovesEverything(t *testing.T) {
	e := New(t)
	ctx := context.Background()
	// A build leaves layers with read-only directories in vfs storage.
	dockerfile := "FROM " + e.BaseImage + "\nRUN mkdir -p /ro/sub && touch /ro/sub/f && chmod 0555 /ro/sub /ro\n"
	var tarBuf bytes.Buffer
	tw := tar.NewWriter(&tarBuf)
	if err := tw.WriteHeader(&tar.Header{Name: "Dockerfile", Mode: 0o644, Size: int64(len(dockerfile))}); err != nil {
		t.Fatal(err)
	}
	tw.Write([]byte(dockerfile))
	tw.Close()
	resp, err := e.Client().ImageBuild(ctx, &tarBuf, build.ImageBuildOptions{Tags: []string{"localhost/readonly:test"}, Remove: true})
	if err != nil {
		t.Fatal(err)
	}
	err = drainStream(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	dir := e.Dir
	sock := strings.TrimPrefix(e.Host, "unix://")
	if err := e.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("scratch dir %s still there: %v", dir, err)
	}
	c := &http.Client{Timeout: 2 * time.Second}
	if resp, err := c.Get("http://" + e.RegistryAddr + "/v2/"); err == nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		t.Errorf("registry %s still answers after Stop", e.RegistryAddr)
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("socket %s still there", sock)
	}
}
