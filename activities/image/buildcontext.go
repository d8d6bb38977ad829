package image

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"

	"github.com/stagehand-dev/stagehand/activities"
)

// Bounds of a build context. A context is sent to the engine as one tar
// stream; these keep a runbook pointing at the wrong directory (a home
// directory, a whole checkout with node_modules) from streaming it all.
const (
	MaxContextBytes = 1 << 30 // 1 GiB of file content
	MaxContextFiles = 200_000
	maxIgnoreBytes  = 1 << 20 // .dockerignore
)

// contextLimits bounds one context; tests use small ones.
type contextLimits struct {
	bytes int64
	files int
}

var defaultContextLimits = contextLimits{bytes: MaxContextBytes, files: MaxContextFiles}

func sizeString(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n >= 1<<20:
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d bytes", n)
}

// contextRootsKey is the worker config key that lists the allowed roots;
// refusals name it so the person reading the error knows what to change.
const contextRootsKey = "docker.contextRoots"

// resolveContext checks dir against the allowed roots and returns it with
// symlinks resolved. Nothing is read from the directory before this passes.
func resolveContext(dir string, roots []string) (string, error) {
	if dir == "" {
		return "", nonRetryable(activities.ErrInvalidArguments, "context is required: the build context directory")
	}
	if !filepath.IsAbs(dir) {
		return "", nonRetryable(activities.ErrInvalidArguments, fmt.Sprintf("context %q must be an absolute path", dir))
	}
	if len(roots) == 0 {
		return "", nonRetryable(activities.ErrImageContextNotAllowed,
			fmt.Sprintf("build context %s refused: this worker allows no build contexts (set %s in the worker config)", dir, contextRootsKey))
	}
	resolved, err := filepath.EvalSymlinks(filepath.Clean(dir))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", nonRetryable(activities.ErrInvalidArguments, fmt.Sprintf("build context %s does not exist", dir))
		}
		return "", nonRetryable(activities.ErrInvalidArguments, fmt.Sprintf("build context %s: %v", dir, err))
	}
	allowed := false
	for _, root := range roots {
		r, err := filepath.EvalSymlinks(filepath.Clean(root))
		if err != nil || !filepath.IsAbs(r) {
			continue // a root that does not exist allows nothing
		}
		if resolved == r || strings.HasPrefix(resolved, strings.TrimSuffix(r, string(filepath.Separator))+string(filepath.Separator)) {
			allowed = true
			break
		}
	}
	if !allowed {
		shown := dir
		if resolved != filepath.Clean(dir) {
			shown = fmt.Sprintf("%s (resolves to %s)", dir, resolved)
		}
		return "", nonRetryable(activities.ErrImageContextNotAllowed,
			fmt.Sprintf("build context %s is outside the worker's %s %v", shown, contextRootsKey, roots))
	}
	fi, err := os.Stat(resolved)
	if err != nil || !fi.IsDir() {
		return "", nonRetryable(activities.ErrInvalidArguments, fmt.Sprintf("build context %s is not a directory", dir))
	}
	return resolved, nil
}

// cleanDockerfile checks the Dockerfile path: relative to the context and
// inside it. It returns it slash-separated, as the engine expects.
func cleanDockerfile(p string) (string, error) {
	if p == "" {
		return "Dockerfile", nil
	}
	if filepath.IsAbs(p) || strings.HasPrefix(p, "/") {
		return "", fmt.Errorf("dockerfile %q must be relative to the context", p)
	}
	c := path.Clean(filepath.ToSlash(p))
	if c == "." || c == ".." || strings.HasPrefix(c, "../") {
		return "", fmt.Errorf("dockerfile %q is outside the context", p)
	}
	return c, nil
}

// contextEntry is one file, directory or symlink sent to the engine.
type contextEntry struct {
	rel  string // slash-separated, relative to the context
	abs  string
	info fs.FileInfo
}

// contextFiles lists what a build sends: every entry of dir not excluded
// by its .dockerignore (the Dockerfile and .dockerignore always go, as with
// the docker CLI), with the total size checked against the bounds before
// anything is sent. Symlinks are sent as links, never followed, so a link
// cannot pull in files from outside the context.
func contextFiles(dir, dockerfile string, lim contextLimits) ([]contextEntry, int64, error) {
	excludes, err := readDockerignore(dir)
	if err != nil {
		return nil, 0, err
	}
	pm, err := patternmatcher.New(excludes)
	if err != nil {
		return nil, 0, fmt.Errorf("bad .dockerignore: %v", err)
	}
	always := map[string]bool{dockerfile: true, ".dockerignore": true}
	var entries []contextEntry
	var total int64
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == dir {
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if !always[rel] && len(excludes) > 0 {
			excluded, err := pm.MatchesOrParentMatches(rel)
			if err != nil {
				return fmt.Errorf(".dockerignore on %s: %v", rel, err)
			}
			if excluded {
				// With `!` patterns something below may be included
				// again, so the walk goes on without this directory.
				if d.IsDir() && !pm.Exclusions() {
					return filepath.SkipDir
				}
				return nil
			}
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case info.Mode().IsRegular():
			total += info.Size()
		case info.IsDir(), info.Mode()&fs.ModeSymlink != 0:
		default:
			return nil // sockets, devices, pipes: nothing a build can use
		}
		entries = append(entries, contextEntry{rel: rel, abs: p, info: info})
		if len(entries) > lim.files {
			return fmt.Errorf("build context %s has more than %d files (use a .dockerignore)", dir, lim.files)
		}
		if total > lim.bytes {
			return fmt.Errorf("build context %s is larger than %s (use a .dockerignore)", dir, sizeString(lim.bytes))
		}
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	found := false
	for _, e := range entries {
		if e.rel == dockerfile && !e.info.IsDir() {
			found = true
		}
	}
	if !found {
		return nil, 0, fmt.Errorf("dockerfile %s not found in the build context %s", dockerfile, dir)
	}
	return entries, total, nil
}

func readDockerignore(dir string) ([]string, error) {
	// Through an os.Root: a .dockerignore linking outside the context
	// must not make the worker read (and quote in errors) other files.
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("read .dockerignore: %v", err)
	}
	defer root.Close()
	f, err := root.OpenFile(".dockerignore", os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read .dockerignore: %v", err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("read .dockerignore: not a regular file")
	}
	return ignorefile.ReadAll(io.LimitReader(f, maxIgnoreBytes))
}

// writeContext writes the entries of the context dir as a tar stream.
// Owners are 0:0 and names are relative, as the docker CLI sends them; a
// file that grew since it was listed is cut at its listed size, so the
// bound holds. Files are opened through an os.Root of dir: a file or
// directory swapped for a link between listing and sending (a process
// still running in the work tree) cannot send what is outside.
func writeContext(w io.Writer, dir string, entries []contextEntry) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	tw := tar.NewWriter(w)
	for _, e := range entries {
		link := ""
		if e.info.Mode()&fs.ModeSymlink != 0 {
			var err error
			if link, err = os.Readlink(e.abs); err != nil {
				return fmt.Errorf("read link %s: %v", e.rel, err)
			}
		}
		hdr, err := tar.FileInfoHeader(e.info, link)
		if err != nil {
			return fmt.Errorf("%s: %v", e.rel, err)
		}
		hdr.Name = e.rel
		if e.info.IsDir() {
			hdr.Name += "/"
		}
		hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = 0, 0, "", ""
		hdr.Format = tar.FormatPAX
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if e.info.Mode().IsRegular() {
			if err := copyFile(tw, root, e.rel, hdr.Size); err != nil {
				return fmt.Errorf("%s: %v", e.rel, err)
			}
		}
	}
	return tw.Close()
}

func copyFile(w io.Writer, root *os.Root, rel string, size int64) error {
	// O_NONBLOCK: a file swapped for a FIFO must not block the open.
	f, err := root.OpenFile(filepath.FromSlash(rel), os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return fmt.Errorf("no longer a regular file")
	}
	n, err := io.CopyN(w, f, size)
	if errors.Is(err, io.EOF) {
		return fmt.Errorf("file shrank while sending the context (%d of %d bytes)", n, size)
	}
	return err
}
