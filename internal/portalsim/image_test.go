package portalsim

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// fakeRegistry serves manifests and blobs over the distribution API, enough
// to test the reader's parsing (the real registry is in the integration test).
type fakeRegistry struct {
	srv       *httptest.Server
	manifests map[string][]byte // by tag or digest
	types     map[string]string
	blobs     map[string][]byte
	blobGets  atomic.Int32
}

func newFakeRegistry(t *testing.T) *fakeRegistry {
	r := &fakeRegistry{manifests: map[string][]byte{}, types: map[string]string{}, blobs: map[string][]byte{}}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		parts := strings.Split(req.URL.Path, "/")
		last := parts[len(parts)-1]
		switch parts[len(parts)-2] {
		case "manifests":
			m, ok := r.manifests[last]
			if !ok {
				http.Error(w, `{"errors":[{"code":"MANIFEST_UNKNOWN"}]}`, http.StatusNotFound)
				return
			}
			w.Header().Set("Content-Type", r.types[last])
			w.Write(m)
		case "blobs":
			r.blobGets.Add(1)
			b, ok := r.blobs[last]
			if !ok {
				http.NotFound(w, req)
				return
			}
			w.Write(b)
		default:
			http.NotFound(w, req)
		}
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *fakeRegistry) host() string { return strings.TrimPrefix(r.srv.URL, "http://") }

func digestOf(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

type file struct{ name, body string }

func layer(t *testing.T, gz bool, files ...file) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(f.body))
	}
	tw.Close()
	if !gz {
		return buf.Bytes()
	}
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	zw.Write(buf.Bytes())
	zw.Close()
	return out.Bytes()
}

// push stores layers (oldest first) under tag and returns the manifest digest.
func (r *fakeRegistry) push(tag string, mediaType string, layers ...[]byte) string {
	var descs []map[string]any
	for _, l := range layers {
		d := digestOf(l)
		r.blobs[d] = l
		descs = append(descs, map[string]any{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": len(l)})
	}
	m, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": mediaType, "layers": descs})
	d := digestOf(m)
	r.manifests[tag], r.manifests[d] = m, m
	r.types[tag], r.types[d] = mediaType, mediaType
	return d
}

func newReader() *imageReader {
	return &imageReader{client: http.DefaultClient, maxLayerBytes: DefaultMaxLayerBytes, maxLayers: DefaultMaxLayers, cache: map[string]ImageInfo{}}
}

func pkg(deps map[string]string) string {
	b, _ := json.Marshal(map[string]any{"name": "backend", "dependencies": deps})
	return string(b)
}

func TestReadImageNewestLayerWins(t *testing.T) {
	reg := newFakeRegistry(t)
	base := layer(t, true, file{"bin/sh", "x"}, file{"app/package.json", pkg(map[string]string{catalogPackage: "3.9.1", authPackage: "0.30.1"})})
	top := layer(t, false, file{"./app/package.json", pkg(map[string]string{catalogPackage: "^4.0.0"})}, file{"app/backstage.json", `{"version":"1.45.0"}`})
	d := reg.push("v4", mediaDockerManifest, base, top)
	r := newReader()
	info, err := r.Read(context.Background(), reg.host()+"/portal/backend:v4")
	if err != nil {
		t.Fatal(err)
	}
	want := ImageInfo{Ref: reg.host() + "/portal/backend:v4", Digest: d, HasPackageJSON: true, CatalogVersion: "4.0.0", HasAuth: false, BackstageVersion: "1.45.0"}
	if info != want {
		t.Errorf("got %+v\nwant %+v", info, want)
	}
	// By digest, from the cache: the manifest is fetched, no blob again.
	gets := reg.blobGets.Load()
	info, err = r.Read(context.Background(), reg.host()+"/portal/backend@"+d)
	if err != nil || info.CatalogVersion != "4.0.0" || info.Ref != reg.host()+"/portal/backend@"+d {
		t.Errorf("by digest: %+v, %v", info, err)
	}
	if reg.blobGets.Load() != gets {
		t.Errorf("blobs read again for a cached digest")
	}
}

func TestReadImageWhiteoutAndIndex(t *testing.T) {
	reg := newFakeRegistry(t)
	base := layer(t, true, file{"app/package.json", pkg(map[string]string{catalogPackage: "3.9.1"})})
	wh := layer(t, true, file{"app/.wh.package.json", ""})
	d := reg.push("gone", mediaOCIManifest, base, wh)
	other := reg.push("other", mediaOCIManifest, base)
	idx, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": mediaOCIIndex, "manifests": []map[string]any{
		{"mediaType": mediaOCIManifest, "digest": other, "platform": map[string]string{"os": "linux", "architecture": "arm64"}},
		{"mediaType": mediaOCIManifest, "digest": d, "platform": map[string]string{"os": "linux", "architecture": "amd64"}},
	}})
	reg.manifests["multi"], reg.types["multi"] = idx, mediaOCIIndex
	info, err := newReader().Read(context.Background(), reg.host()+"/portal/backend:multi")
	if err != nil {
		t.Fatal(err)
	}
	if info.Digest != d || info.HasPackageJSON {
		t.Errorf("index → %+v, want the amd64 manifest %s with package.json whited out", info, d)
	}
}

func TestReadImageFailures(t *testing.T) {
	reg := newFakeRegistry(t)
	big := layer(t, true, file{"app/package.json", pkg(nil)})
	reg.push("ok", mediaDockerManifest, big)
	r := newReader()
	if _, err := r.Read(context.Background(), reg.host()+"/portal/backend:missing"); !errors.Is(err, ErrImageNotFound) {
		t.Errorf("missing tag: %v, want ErrImageNotFound", err)
	}
	if _, err := r.Read(context.Background(), "backstage:1.0"); err == nil || !strings.Contains(err.Error(), "no registry host") {
		t.Errorf("no host: %v", err)
	}
	r.maxLayerBytes = 10
	if _, err := r.Read(context.Background(), reg.host()+"/portal/backend:ok"); err == nil || !strings.Contains(err.Error(), "more than the 10 read") {
		t.Errorf("oversized layer: %v", err)
	}
	bad := layer(t, true, file{"app/package.json", "{not json"})
	reg.push("bad", mediaDockerManifest, bad)
	if _, err := newReader().Read(context.Background(), reg.host()+"/portal/backend:bad"); err == nil || !strings.Contains(err.Error(), "/app/package.json") {
		t.Errorf("malformed package.json: %v", err)
	}
}

func TestParseRef(t *testing.T) {
	for in, want := range map[string]imageRef{
		"127.0.0.1:5000/portal/backend:v1":        {"127.0.0.1:5000", "portal/backend", "v1"},
		"localhost/backend":                       {"localhost", "backend", "latest"},
		"reg.example/a/b:t@sha256:abc":            {"reg.example", "a/b", "sha256:abc"},
		"127.0.0.1:5000/portal/backend@sha256:ff": {"127.0.0.1:5000", "portal/backend", "sha256:ff"},
	} {
		got, err := parseRef(in)
		if err != nil || got != want {
			t.Errorf("parseRef(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{"backend:v1", "", "docker/backend:v1"} {
		if _, err := parseRef(in); err == nil {
			t.Errorf("parseRef(%q) accepted", in)
		}
	}
}
