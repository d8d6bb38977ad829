package portalsim

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path"
	"strings"
	"sync"
)

// Size bounds for what is read from a registry: an image is untrusted input.
const (
	maxManifestBytes = 4 << 20
	maxFileBytes     = 1 << 20
	// DefaultMaxLayerBytes caps one layer blob as stored (compressed).
	DefaultMaxLayerBytes = 512 << 20
	// DefaultMaxLayers caps how many layers are read.
	DefaultMaxLayers = 128
)

// Manifest media types asked for and understood.
const (
	mediaDockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
	mediaDockerList     = "application/vnd.docker.distribution.manifest.list.v2+json"
	mediaOCIManifest    = "application/vnd.oci.image.manifest.v1+json"
	mediaOCIIndex       = "application/vnd.oci.image.index.v1+json"
)

// Package names read from a portal's package.json.
const (
	catalogPackage = "@backstage/plugin-catalog-backend"
	authPackage    = "@backstage/plugin-auth-backend"
)

// ImageInfo is what a portal image says about the Backstage it runs, read
// from the image's own files.
type ImageInfo struct {
	// Ref is the image reference as the pod names it.
	Ref string
	// Digest is the manifest digest the reference resolved to.
	Digest string
	// HasPackageJSON is false when the image has no /app/package.json
	// (not a portal image: its container exits at once).
	HasPackageJSON bool
	// CatalogVersion is the dependencies' @backstage/plugin-catalog-backend
	// version ("" if absent), with a leading ^, ~ or = removed.
	CatalogVersion string
	// HasAuth is whether @backstage/plugin-auth-backend is a dependency.
	HasAuth bool
	// BackstageVersion is /app/backstage.json's version, if present.
	BackstageVersion string
}

// ErrImageNotFound is wrapped by errors for a reference the registry does
// not have.
var ErrImageNotFound = errors.New("image not found in the registry")

// imageRef is a parsed reference host[:port]/repo[:tag][@digest].
type imageRef struct {
	host, repo, ref string // ref is the tag or the digest
}

func parseRef(image string) (imageRef, error) {
	var r imageRef
	slash := strings.Index(image, "/")
	if slash < 0 {
		return r, fmt.Errorf("image %q names no registry host (want host:port/repo:tag)", image)
	}
	host, rest := image[:slash], image[slash+1:]
	if !strings.ContainsAny(host, ".:") && host != "localhost" {
		return r, fmt.Errorf("image %q names no registry host (want host:port/repo:tag)", image)
	}
	r.host = host
	if at := strings.Index(rest, "@"); at >= 0 {
		r.repo, r.ref = rest[:at], rest[at+1:]
		if i := strings.LastIndex(r.repo, ":"); i >= 0 {
			r.repo = r.repo[:i] // a tag next to a digest is ignored, as by a kubelet
		}
	} else if i := strings.LastIndex(rest, ":"); i >= 0 {
		r.repo, r.ref = rest[:i], rest[i+1:]
	} else {
		r.repo, r.ref = rest, "latest"
	}
	if r.repo == "" || r.ref == "" {
		return r, fmt.Errorf("image %q: empty repository or tag", image)
	}
	return r, nil
}

// imageReader reads portal images from plain-HTTP registries, caching what
// each manifest digest holds (a digest's content never changes).
type imageReader struct {
	client        *http.Client
	maxLayerBytes int64
	maxLayers     int

	mu    sync.Mutex
	cache map[string]ImageInfo // by manifest digest
}

type descriptor struct {
	MediaType string `json:"mediaType"`
	Digest    string `json:"digest"`
	Size      int64  `json:"size"`
	Platform  *struct {
		OS           string `json:"os"`
		Architecture string `json:"architecture"`
	} `json:"platform,omitempty"`
}

type manifest struct {
	MediaType string       `json:"mediaType"`
	Layers    []descriptor `json:"layers"`
	Manifests []descriptor `json:"manifests"`
}

// Read resolves image to its manifest and reads /app/package.json (and
// /app/backstage.json) from its layers, newest first.
func (r *imageReader) Read(ctx context.Context, image string) (ImageInfo, error) {
	ref, err := parseRef(image)
	if err != nil {
		return ImageInfo{}, err
	}
	m, digest, err := r.manifest(ctx, ref, ref.ref)
	if err != nil {
		return ImageInfo{}, err
	}
	if m.MediaType == mediaDockerList || m.MediaType == mediaOCIIndex || (len(m.Manifests) > 0 && len(m.Layers) == 0) {
		if len(m.Manifests) == 0 {
			return ImageInfo{}, fmt.Errorf("image %s: empty index", image)
		}
		pick := m.Manifests[0]
		for _, d := range m.Manifests {
			if d.Platform != nil && d.Platform.OS == "linux" && d.Platform.Architecture == "amd64" {
				pick = d
				break
			}
		}
		if m, digest, err = r.manifest(ctx, ref, pick.Digest); err != nil {
			return ImageInfo{}, err
		}
	}
	r.mu.Lock()
	info, ok := r.cache[digest]
	r.mu.Unlock()
	if ok {
		info.Ref = image
		return info, nil
	}
	if len(m.Layers) > r.maxLayers {
		return ImageInfo{}, fmt.Errorf("image %s has %d layers, more than the %d read", image, len(m.Layers), r.maxLayers)
	}
	files, err := r.appFiles(ctx, ref, m.Layers)
	if err != nil {
		return ImageInfo{}, fmt.Errorf("image %s: %w", image, err)
	}
	info = ImageInfo{Ref: image, Digest: digest}
	if pj, ok := files["package.json"]; ok {
		info.HasPackageJSON = true
		var p struct {
			Dependencies map[string]string `json:"dependencies"`
		}
		if err := json.Unmarshal(pj, &p); err != nil {
			return ImageInfo{}, fmt.Errorf("image %s: /app/package.json: %w", image, err)
		}
		info.CatalogVersion = strings.TrimLeft(strings.TrimSpace(p.Dependencies[catalogPackage]), "^~=v")
		_, info.HasAuth = p.Dependencies[authPackage]
	}
	if bj, ok := files["backstage.json"]; ok {
		var b struct {
			Version string `json:"version"`
		}
		if json.Unmarshal(bj, &b) == nil {
			info.BackstageVersion = b.Version
		}
	}
	r.mu.Lock()
	r.cache[digest] = info
	r.mu.Unlock()
	return info, nil
}

// manifest fetches one manifest (by tag or digest) and its digest.
func (r *imageReader) manifest(ctx context.Context, ref imageRef, tagOrDigest string) (manifest, string, error) {
	var m manifest
	url := "http://" + ref.host + "/v2/" + ref.repo + "/manifests/" + tagOrDigest
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return m, "", err
	}
	req.Header.Set("Accept", strings.Join([]string{mediaDockerManifest, mediaOCIManifest, mediaDockerList, mediaOCIIndex}, ", "))
	resp, err := r.client.Do(req)
	if err != nil {
		return m, "", fmt.Errorf("GET %s: %w", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxManifestBytes+1))
	if err != nil {
		return m, "", fmt.Errorf("GET %s: %w", url, err)
	}
	if resp.StatusCode == http.StatusNotFound {
		return m, "", fmt.Errorf("%s/%s:%s: %w (GET %s: %s)", ref.host, ref.repo, tagOrDigest, ErrImageNotFound, url, resp.Status)
	}
	if resp.StatusCode != http.StatusOK {
		return m, "", fmt.Errorf("GET %s: %s %s", url, resp.Status, bytes.TrimSpace(body[:min(len(body), 300)]))
	}
	if len(body) > maxManifestBytes {
		return m, "", fmt.Errorf("GET %s: manifest larger than %d bytes", url, maxManifestBytes)
	}
	if err := json.Unmarshal(body, &m); err != nil {
		return m, "", fmt.Errorf("GET %s: decode manifest: %w", url, err)
	}
	if m.MediaType == "" {
		m.MediaType = resp.Header.Get("Content-Type")
	}
	digest := resp.Header.Get("Docker-Content-Digest")
	if digest == "" {
		sum := sha256.Sum256(body)
		digest = "sha256:" + hex.EncodeToString(sum[:])
	}
	return m, digest, nil
}

// appFiles reads package.json and backstage.json under /app from the
// layers, newest first, honouring whiteouts of newer layers.
func (r *imageReader) appFiles(ctx context.Context, ref imageRef, layers []descriptor) (map[string][]byte, error) {
	want := map[string]bool{"package.json": true, "backstage.json": true}
	found := map[string][]byte{}
	hidden := map[string]bool{} // whited out by a newer layer
	for i := len(layers) - 1; i >= 0 && len(want) > 0; i-- {
		l := layers[i]
		if l.Size > r.maxLayerBytes {
			return nil, fmt.Errorf("layer %s is %d bytes, more than the %d read", l.Digest, l.Size, r.maxLayerBytes)
		}
		opaque, err := r.scanLayer(ctx, ref, l, want, found, hidden)
		if err != nil {
			return nil, err
		}
		if opaque {
			break // older layers' /app is hidden
		}
	}
	return found, nil
}

// scanLayer reads one layer blob; it reports whether the layer makes /app
// opaque (.wh..wh..opq).
func (r *imageReader) scanLayer(ctx context.Context, ref imageRef, l descriptor, want map[string]bool, found map[string][]byte, hidden map[string]bool) (bool, error) {
	url := "http://" + ref.host + "/v2/" + ref.repo + "/blobs/" + l.Digest
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false, err
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return false, fmt.Errorf("GET %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	br := bufio.NewReader(io.LimitReader(resp.Body, r.maxLayerBytes))
	var stream io.Reader = br
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		gz, err := gzip.NewReader(br)
		if err != nil {
			return false, fmt.Errorf("layer %s: %w", l.Digest, err)
		}
		defer gz.Close()
		// Decompressed size is bounded too: a small blob can expand a lot.
		stream = io.LimitReader(gz, 8*r.maxLayerBytes)
	} else if strings.Contains(l.MediaType, "zstd") {
		return false, fmt.Errorf("layer %s: zstd layers are not supported", l.Digest)
	}
	tr := tar.NewReader(stream)
	opaque := false
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return opaque, nil
		}
		if err != nil {
			return false, fmt.Errorf("layer %s: %w", l.Digest, err)
		}
		name := strings.TrimPrefix(path.Clean("/"+h.Name), "/")
		dir, base := path.Split(name)
		if dir != "app/" {
			continue
		}
		if base == ".wh..wh..opq" {
			opaque = true
			continue
		}
		if strings.HasPrefix(base, ".wh.") {
			hidden[strings.TrimPrefix(base, ".wh.")] = true
			continue
		}
		if !want[base] || hidden[base] || h.Typeflag != tar.TypeReg {
			continue
		}
		data, err := io.ReadAll(io.LimitReader(tr, maxFileBytes+1))
		if err != nil {
			return false, fmt.Errorf("layer %s: read /app/%s: %w", l.Digest, base, err)
		}
		if len(data) > maxFileBytes {
			return false, fmt.Errorf("layer %s: /app/%s is larger than %d bytes", l.Digest, base, maxFileBytes)
		}
		found[base] = data
		delete(want, base)
	}
}
