package enginetest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// manifestTypes are the manifest media types a test accepts back; podman
// pushes Docker schema 2 by default, OCI when asked.
var manifestTypes = []string{
	"application/vnd.docker.distribution.manifest.v2+json",
	"application/vnd.oci.image.manifest.v1+json",
}

// PushedImage is what a registry holds for one tag, read over its HTTP API
// (not through the engine), so tests see what a puller would get.
type PushedImage struct {
	// Digest is the Docker-Content-Digest header of HEAD /v2/<repo>/manifests/<tag>.
	Digest    string
	MediaType string
	// Labels are the image config's config.Labels.
	Labels map[string]string
	// Layers is the number of layers in the manifest.
	Layers int
}

// ReadImage reads repo:tag back from the registry at addr (RegistryAddr or
// AuthRegistryAddr; the latter with the Env's credentials): the manifest's
// digest from a HEAD request, then the manifest and its config blob.
func (e *Env) ReadImage(ctx context.Context, addr, repo, tag string) (PushedImage, error) {
	var img PushedImage
	base := "http://" + addr + "/v2/" + repo
	resp, err := e.registryRequest(ctx, addr, http.MethodHead, base+"/manifests/"+tag)
	if err != nil {
		return img, err
	}
	resp.Body.Close()
	img.Digest = resp.Header.Get("Docker-Content-Digest")
	if img.Digest == "" {
		return img, fmt.Errorf("HEAD %s/manifests/%s: no Docker-Content-Digest header", base, tag)
	}
	resp, err = e.registryRequest(ctx, addr, http.MethodGet, base+"/manifests/"+img.Digest)
	if err != nil {
		return img, err
	}
	var manifest struct {
		MediaType string `json:"mediaType"`
		Config    struct {
			Digest string `json:"digest"`
		} `json:"config"`
		Layers []json.RawMessage `json:"layers"`
	}
	err = json.NewDecoder(io.LimitReader(resp.Body, 4<<20)).Decode(&manifest)
	resp.Body.Close()
	if err != nil {
		return img, fmt.Errorf("decode manifest %s@%s: %w", repo, img.Digest, err)
	}
	img.MediaType = resp.Header.Get("Content-Type")
	img.Layers = len(manifest.Layers)
	resp, err = e.registryRequest(ctx, addr, http.MethodGet, base+"/blobs/"+manifest.Config.Digest)
	if err != nil {
		return img, err
	}
	defer resp.Body.Close()
	var config struct {
		Config struct {
			Labels map[string]string `json:"Labels"`
		} `json:"config"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&config); err != nil {
		return img, fmt.Errorf("decode config blob %s: %w", manifest.Config.Digest, err)
	}
	img.Labels = config.Config.Labels
	return img, nil
}

// Tags lists repo's tags in the registry at addr.
func (e *Env) Tags(ctx context.Context, addr, repo string) ([]string, error) {
	resp, err := e.registryRequest(ctx, addr, http.MethodGet, "http://"+addr+"/v2/"+repo+"/tags/list")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var list struct {
		Tags []string `json:"tags"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&list); err != nil {
		return nil, fmt.Errorf("decode tags of %s: %w", repo, err)
	}
	return list.Tags, nil
}

func (e *Env) registryRequest(ctx context.Context, addr, method, url string) (*http.Response, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		cancel()
		return nil, err
	}
	req.Header.Set("Accept", strings.Join(manifestTypes, ", "))
	if addr == e.AuthRegistryAddr {
		req.SetBasicAuth(e.Username, e.Password)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("%s %s: %w", method, url, err)
	}
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1000))
		resp.Body.Close()
		cancel()
		return nil, fmt.Errorf("%s %s: %s %s", method, url, resp.Status, body)
	}
	resp.Body = cancelOnClose{resp.Body, cancel}
	return resp, nil
}

type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (c cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.cancel()
	return err
}
