// Command stagehand-portal-bump is an offline stand-in for
// `yarn backstage-cli versions:bump --release <version>`, for the local
// upgrade demo and the end-to-end tests, where the Backstage release
// manifests cannot be downloaded.
//
// Like the real command it reads the release's manifest — the list of
// every @backstage package and its version in that release, in the same
// JSON shape as Backstage's published manifests — sets each dependency a
// portal's package.json files name to the manifest's version, keeping the
// range prefix (^, ~) the file used, and writes backstage.json's version.
// The manifests come from a directory (--manifests DIR, one
// <release>.json each) instead of the network. A release without a manifest
// fails, as the real command does for an unknown release.
//
// Usage (the worker config's `commands:` fixes the first part):
//
//	stagehand-portal-bump --manifests DIR versions:bump --release 1.45.0
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// Manifest is a Backstage release manifest.
type Manifest struct {
	ReleaseVersion string    `json:"releaseVersion"`
	Packages       []Package `json:"packages"`
}

// Package is one package of a release.
type Package struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

var releaseRE = regexp.MustCompile(`^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$`)

func main() {
	if err := run(os.Args[1:], ".", os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "stagehand-portal-bump:", err)
		os.Exit(1)
	}
}

func run(args []string, dir string, out io.Writer) error {
	fs := flag.NewFlagSet("stagehand-portal-bump", flag.ContinueOnError)
	manifests := fs.String("manifests", "", "directory of release manifests, <release>.json each (required)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	rest := fs.Args()
	if len(rest) == 0 || rest[0] != "versions:bump" {
		return errors.New("usage: stagehand-portal-bump --manifests DIR versions:bump --release VERSION")
	}
	bump := flag.NewFlagSet("versions:bump", flag.ContinueOnError)
	release := bump.String("release", "", "the Backstage release to move to, e.g. 1.45.0")
	if err := bump.Parse(rest[1:]); err != nil {
		return err
	}
	if *manifests == "" {
		return errors.New("--manifests is required")
	}
	if !releaseRE.MatchString(*release) {
		return fmt.Errorf("--release %q is not a release version such as 1.45.0", *release)
	}
	m, err := readManifest(filepath.Join(*manifests, *release+".json"))
	if err != nil {
		return err
	}
	return bumpTree(dir, m, out)
}

func readManifest(path string) (Manifest, error) {
	var m Manifest
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return m, fmt.Errorf("no release manifest for %s (%s): unknown Backstage release", strings.TrimSuffix(filepath.Base(path), ".json"), path)
	}
	if err != nil {
		return m, err
	}
	if err := json.Unmarshal(data, &m); err != nil {
		return m, fmt.Errorf("release manifest %s: %w", path, err)
	}
	return m, nil
}

// bumpTree rewrites the package.json files of a Backstage app layout (the
// root, packages/*, plugins/*) and backstage.json.
func bumpTree(dir string, m Manifest, out io.Writer) error {
	versions := map[string]string{}
	for _, p := range m.Packages {
		versions[p.Name] = p.Version
	}
	files := []string{filepath.Join(dir, "package.json")}
	for _, pattern := range []string{"packages/*/package.json", "plugins/*/package.json"} {
		more, _ := filepath.Glob(filepath.Join(dir, pattern))
		files = append(files, more...)
	}
	changed := 0
	for _, f := range files {
		n, err := bumpFile(f, versions, out)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		changed += n
	}
	bs, err := json.MarshalIndent(map[string]string{"version": m.ReleaseVersion}, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "backstage.json"), append(bs, '\n'), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(out, "Backstage release %s: %d dependencies changed\n", m.ReleaseVersion, changed)
	return nil
}

// bumpFile updates one package.json in place, keeping its key order (the
// file is edited as text per dependency line, as a person would).
func bumpFile(path string, versions map[string]string, out io.Writer) (int, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	var pkg map[string]json.RawMessage
	if err := json.Unmarshal(data, &pkg); err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	changed := 0
	names := make([]string, 0, len(versions))
	for name := range versions {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		re := regexp.MustCompile(`("` + regexp.QuoteMeta(name) + `"\s*:\s*")([~^]?)([^"]*)(")`)
		next := re.ReplaceAllFunc(data, func(m []byte) []byte {
			sub := re.FindSubmatch(m)
			if string(sub[3]) == versions[name] {
				return m
			}
			fmt.Fprintf(out, "%s: %s %s%s -> %s%s\n", path, name, sub[2], sub[3], sub[2], versions[name])
			changed++
			return bytes.Join([][]byte{sub[1], sub[2], []byte(versions[name]), sub[4]}, nil)
		})
		data = next
	}
	if changed == 0 {
		return 0, nil
	}
	return changed, os.WriteFile(path, data, 0o644)
}
