package portal

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"go.temporal.io/sdk/temporal"

	"github.com/stagehand-dev/stagehand/activities"
)

// Where the edit steps may write: this run's checkouts (Tree) and the
// directories of the worker's single-server environments (LocalDirs),
// nothing else. Within that directory the file is opened through an
// os.Root, so neither `..` nor a symbolic link leads out of it.

// resolveDir returns the real path of dir if a step may read or edit it.
func (a *Activities) resolveDir(ctx context.Context, dir string) (string, error) {
	if dir == "" {
		return "", invalid("dir is required: the dir output of a git.checkout step, or a single-server environment's directory")
	}
	if a == nil {
		return "", invalid(fmt.Sprintf("dir %s: this worker has no work trees or single-server directories to edit", dir))
	}
	real, err := filepath.EvalSymlinks(dir)
	if err == nil && filepath.IsAbs(dir) {
		for _, l := range a.LocalDirs {
			if lr, lerr := filepath.EvalSymlinks(l); lerr == nil && lr == real {
				return real, nil
			}
		}
	}
	if a.Tree == nil {
		return "", invalid(fmt.Sprintf("dir %s is not a work tree git.checkout made in this run (this worker has none)%s", dir, a.localNote()))
	}
	real, err = a.Tree(ctx, dir)
	if err != nil {
		var ae *temporal.ApplicationError
		if errors.As(err, &ae) && ae.Type() == activities.ErrInvalidArguments && len(a.LocalDirs) > 0 {
			return "", invalid(ae.Message() + a.localNote())
		}
		return "", err
	}
	return real, nil
}

// localNote completes a refusal with the single-server directories that
// would have been allowed.
func (a *Activities) localNote() string {
	if len(a.LocalDirs) == 0 {
		return "; nor does this worker have single-server environments whose directory steps may edit"
	}
	return "; nor is it one of this worker's single-server environment directories (" + strings.Join(a.LocalDirs, ", ") + ")"
}

// checkRelFile refuses a file name that is not a plain relative path
// inside dir. os.Root refuses an escape anyway; this says why up front.
func checkRelFile(key, name string) error {
	if name == "" || len(name) > 1024 || strings.ContainsRune(name, 0) {
		return invalid(fmt.Sprintf("%s %q is not a file name", key, bounded(name, 200)))
	}
	if filepath.IsAbs(name) || strings.HasPrefix(name, "/") {
		return invalid(fmt.Sprintf("%s %s: give a path relative to dir, not an absolute one", key, bounded(name, 200)))
	}
	for _, p := range strings.Split(name, "/") {
		if p == ".." {
			return invalid(fmt.Sprintf("%s %s: a path relative to dir may not use '..'", key, bounded(name, 200)))
		}
	}
	if path.Clean(name) == "." {
		return invalid(fmt.Sprintf("%s %q names dir itself, not a file in it", key, name))
	}
	return nil
}

// readEditable reads name under root for an edit: a regular file (not a
// link: the rename that writes it back would replace the link), bounded.
func readEditable(root *os.Root, dir, name string) ([]byte, fs.FileMode, error) {
	fi, err := root.Lstat(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, 0, shapeErr(fmt.Sprintf("%s does not exist in %s", name, dir))
	}
	if err != nil {
		return nil, 0, invalid(fmt.Sprintf("%s in %s: %v (files must stay inside dir)", name, dir, err))
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		return nil, 0, invalid(fmt.Sprintf("%s in %s is a symbolic link; edit the file it points to by its own name", name, dir))
	}
	if !fi.Mode().IsRegular() {
		return nil, 0, shapeErr(fmt.Sprintf("%s in %s is not a regular file", name, dir))
	}
	if fi.Size() > MaxFileBytes {
		return nil, 0, shapeErr(fmt.Sprintf("%s in %s is %d bytes; at most %d are edited", name, dir, fi.Size(), MaxFileBytes))
	}
	f, err := root.Open(name)
	if err != nil {
		return nil, 0, invalid(fmt.Sprintf("open %s in %s: %v", name, dir, err))
	}
	defer f.Close()
	raw, err := io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
	if err != nil {
		return nil, 0, editFailed(fmt.Sprintf("read %s in %s: %v", name, dir, err))
	}
	if len(raw) > MaxFileBytes {
		return nil, 0, shapeErr(fmt.Sprintf("%s in %s grew past %d bytes while read", name, dir, MaxFileBytes))
	}
	return raw, fi.Mode().Perm(), nil
}

// writeAtomic replaces name under root with data: a temporary file next
// to it, synced, then renamed over it, so a crash leaves the old file or
// the new one, never half of one.
func writeAtomic(root *os.Root, dir, name string, data []byte, perm fs.FileMode) error {
	tmp := path.Join(path.Dir(name), "."+path.Base(name)+".stagehand-tmp")
	_ = root.Remove(tmp) // a crashed attempt's leftover
	f, err := root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return editFailed(fmt.Sprintf("write %s in %s: %v", name, dir, err))
	}
	_, werr := f.Write(data)
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = root.Rename(tmp, name)
	}
	if werr != nil {
		_ = root.Remove(tmp)
		return editFailed(fmt.Sprintf("write %s in %s: %v", name, dir, werr))
	}
	return nil
}

// SetConfigInput is the `with` of portal.setConfig.
type SetConfigInput struct {
	Dir string `json:"dir"`
	// File is relative to Dir; default app-config.yaml.
	File string `json:"file,omitempty"`
	// Set maps dotted key paths (backend.listen.port) to values.
	Set map[string]any `json:"set"`
}

// SetConfigOutput says which keys the edit changed.
type SetConfigOutput struct {
	File      string   `json:"file"`
	Changed   []string `json:"changed"`
	Unchanged []string `json:"unchanged"`
}

// SetConfig implements portal.setConfig.
func (a *Activities) SetConfig(ctx context.Context, in SetConfigInput) (SetConfigOutput, error) {
	file := in.File
	if file == "" {
		file = "app-config.yaml"
	}
	if err := checkRelFile("file", file); err != nil {
		return SetConfigOutput{}, err
	}
	if len(in.Set) == 0 {
		return SetConfigOutput{}, invalid("set is required: dotted key paths and their values, e.g. {search.maxTermLength: 64}")
	}
	if err := checkConfigPolicy(in.Set, a.ConfigKeys); err != nil {
		return SetConfigOutput{}, editError(file, err)
	}
	real, err := a.resolveDir(ctx, in.Dir)
	if err != nil {
		return SetConfigOutput{}, err
	}
	root, err := os.OpenRoot(real)
	if err != nil {
		return SetConfigOutput{}, editFailed(fmt.Sprintf("open %s: %v", in.Dir, err))
	}
	defer root.Close()
	src, perm, err := readEditable(root, in.Dir, file)
	if err != nil {
		return SetConfigOutput{}, err
	}
	res, err := EditConfig(src, in.Set)
	if err != nil {
		return SetConfigOutput{}, editError(file, err)
	}
	out := SetConfigOutput{File: file, Changed: res.Changed, Unchanged: res.Unchanged}
	if len(res.Changed) > 0 {
		if err := writeAtomic(root, in.Dir, file, res.Out, perm); err != nil {
			return SetConfigOutput{}, err
		}
	}
	logger(ctx).Info("portal config set", "dir", in.Dir, "file", file, "changed", res.Changed, "unchanged", res.Unchanged)
	return out, nil
}

// RegisterPluginInput is the `with` of portal.registerPlugin.
type RegisterPluginInput struct {
	Dir string `json:"dir"`
	// File is relative to Dir; default packages/backend/src/index.ts.
	File    string `json:"file,omitempty"`
	Package string `json:"package"`
	// Subpath is appended to the import: alpha gives '<package>/alpha'.
	Subpath string `json:"subpath,omitempty"`
	// Modules are more packages registered after Package, in order (a
	// plugin's backend modules, e.g. its search engine); each may carry
	// the @version the package manager was given, which is ignored here.
	Modules []string `json:"modules,omitempty"`
}

// maxModules bounds registerPlugin's modules.
const maxModules = 8

// RegisterPluginOutput says whether the line was added and where it is.
type RegisterPluginOutput struct {
	File  string `json:"file"`
	Added bool   `json:"added"`
	Line  int    `json:"line"`
}

// RegisterPlugin implements portal.registerPlugin.
func (a *Activities) RegisterPlugin(ctx context.Context, in RegisterPluginInput) (RegisterPluginOutput, error) {
	file := in.File
	if file == "" {
		file = "packages/backend/src/index.ts"
	}
	if err := checkRelFile("file", file); err != nil {
		return RegisterPluginOutput{}, err
	}
	spec, err := ValidatePluginSpec(in.Package, in.Subpath)
	if err != nil {
		return RegisterPluginOutput{}, editError(file, err)
	}
	if len(in.Modules) > maxModules {
		return RegisterPluginOutput{}, invalid(fmt.Sprintf("modules lists %d packages; at most %d", len(in.Modules), maxModules))
	}
	specs := []string{spec}
	for _, m := range in.Modules {
		if m == "" {
			// split "," of an empty param: no module.
			continue
		}
		s, err := ValidatePluginSpec(withoutVersion(m), "")
		if err != nil {
			return RegisterPluginOutput{}, editError(file, err)
		}
		specs = append(specs, s)
	}
	real, err := a.resolveDir(ctx, in.Dir)
	if err != nil {
		return RegisterPluginOutput{}, err
	}
	root, err := os.OpenRoot(real)
	if err != nil {
		return RegisterPluginOutput{}, editFailed(fmt.Sprintf("open %s: %v", in.Dir, err))
	}
	defer root.Close()
	src, perm, err := readEditable(root, in.Dir, file)
	if err != nil {
		return RegisterPluginOutput{}, err
	}
	// Each add goes above start(), so the plugin comes first and its
	// modules follow in the order given. The file is written once, after
	// every edit succeeded.
	out, added, line := src, false, 0
	for i, sp := range specs {
		res, err := EditBackendIndex(out, sp)
		if err != nil {
			return RegisterPluginOutput{}, editError(file, err)
		}
		out, added = res.Out, added || res.Added
		if i == 0 {
			line = res.Line
		}
	}
	if added {
		if err := writeAtomic(root, in.Dir, file, out, perm); err != nil {
			return RegisterPluginOutput{}, err
		}
	}
	logger(ctx).Info("backend plugin registered", "dir", in.Dir, "file", file, "imports", specs, "added", added, "line", line)
	return RegisterPluginOutput{File: file, Added: added, Line: line}, nil
}

// withoutVersion drops an npm install argument's @version
// (@scope/name@1.2.3 → @scope/name).
func withoutVersion(pkg string) string {
	if i := strings.LastIndex(pkg, "@"); i > 0 {
		return pkg[:i]
	}
	return pkg
}

// editError turns an edit's error into a step error.
func editError(file string, err error) error {
	var se *ShapeError
	var ae *argError
	switch {
	case errors.As(err, &se):
		return shapeErr(file + ": " + se.Msg)
	case errors.As(err, &ae):
		return invalid(ae.msg)
	default:
		return editFailed(file + ": " + err.Error())
	}
}

func shapeErr(msg string) error {
	return temporal.NewNonRetryableApplicationError(msg, activities.ErrPortalFileShape, nil)
}

func editFailed(msg string) error {
	return temporal.NewNonRetryableApplicationError(msg, activities.ErrPortalEditFailed, nil)
}
