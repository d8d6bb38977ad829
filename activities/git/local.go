package git

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"go.temporal.io/sdk/temporal"

	"github.com/stagehand-dev/stagehand/activities"
)

// The local steps work on a work tree in place, with no remote:
//
//	git.state    HEAD, branch and whether the tree is clean (refusing a
//	             dirty one), recorded before a run edits it
//	git.commit   a local commit of the run's edits (nothing pushed)
//	git.restore  reset --hard to the recorded commit and clean untracked
//	             files: the compensation of a plugin install or upgrade
//
// They accept this run's checkouts (as git.commitPush does) and the
// directories the worker names as single-server environments
// (LocalDirs), nothing else. A single-server directory is an operator's
// repository, not one Stagehand made, so its .git/config may hold the
// operator's settings; only those that make git run a program or read
// configuration from elsewhere are refused. Every command runs with a
// minimal environment (no worker credentials) and without hooks.

const (
	// maxDirtyFiles bounds the dirty output and the files named in a
	// GitDirty error.
	maxDirtyFiles = 50
	// maxRestored bounds the restored output.
	maxRestored = 100
	// maxCommitPaths bounds git.commit's paths.
	maxCommitPaths = 100
)

// localConfigDenied are .git/config settings of a single-server directory
// that would make the worker's git run a program (filters, diff and merge
// drivers, ssh, pagers, editors, credential helpers, signing programs) or
// read more configuration or another work tree. core.hooksPath and
// core.fsmonitor are overridden on every command instead (safeConfig).
var localConfigDenied = regexp.MustCompile(`^(filter\..*|diff\..*\.(textconv|command)|merge\..*\.driver|core\.(sshcommand|pager|editor|askpass|gitproxy|alternaterefscommand|worktree|attributesfile)|credential\..*|include\..*|includeif\..*|gpg\..*|sequence\.editor|extensions\.worktreeconfig|uploadpack\..*|receive\..*hook.*|ssh\..*)$`)

// localTree returns the real path of dir if the local steps may work on
// it: one of this run's checkouts, or exactly one of LocalDirs.
func (a *Activities) localTree(ctx context.Context, dir string) (string, error) {
	if dir == "" {
		return "", nonRetryable(activities.ErrInvalidArguments, "dir is required: the dir output of a git.checkout step, or a single-server environment's directory")
	}
	if real, err := filepath.EvalSymlinks(dir); err == nil && filepath.IsAbs(dir) {
		for _, l := range a.LocalDirs {
			if lr, lerr := filepath.EvalSymlinks(l); lerr == nil && lr == real {
				if err := a.checkLocalGit(ctx, dir, real); err != nil {
					return real, err
				}
				if err := excludeStateDir(real); err != nil {
					return real, nonRetryable(activities.ErrGitError, fmt.Sprintf("list %s/ in %s/.git/info/exclude: %v", stateDir, dir, err))
				}
				return real, nil
			}
		}
	}
	real, _, err := a.ownTree(ctx, dir)
	if err != nil {
		var ae *temporal.ApplicationError
		if errors.As(err, &ae) && ae.Type() == activities.ErrInvalidArguments {
			return "", nonRetryable(activities.ErrInvalidArguments, ae.Message()+a.localNote())
		}
		return "", err
	}
	return real, nil
}

func (a *Activities) localNote() string {
	if len(a.LocalDirs) == 0 {
		return "; nor does this worker have single-server environments whose directory steps may use"
	}
	return "; nor is it one of this worker's single-server environment directories (" + strings.Join(a.LocalDirs, ", ") + ")"
}

// checkLocalGit makes sure real is the top of a git work tree whose .git
// is a plain directory without program-running settings.
func (a *Activities) checkLocalGit(ctx context.Context, dir, real string) error {
	notTree := func(why string) error {
		return nonRetryable(activities.ErrNotGitWorkTree, fmt.Sprintf("dir %s %s", dir, why))
	}
	gitDir := filepath.Join(real, ".git")
	fi, err := os.Lstat(gitDir)
	if errors.Is(err, os.ErrNotExist) {
		return notTree("is not the top of a git work tree (no .git): make it one (git init, commit the app) so a run can record and restore its state")
	}
	if err != nil || !fi.IsDir() {
		return notTree("has a .git that is not a directory (a linked work tree or submodule); Stagehand works on a repository's own work tree only")
	}
	for _, f := range []string{"commondir", "config.worktree"} {
		if _, err := os.Lstat(filepath.Join(gitDir, f)); err == nil {
			return notTree("has .git/" + f + ", which points git at configuration elsewhere")
		}
	}
	keys, _, err := a.git(ctx, runOpts{minimalEnv: true}, "config", "--file", filepath.Join(gitDir, "config"), "--list", "--name-only")
	if err != nil {
		return notTree(fmt.Sprintf("has a .git/config git cannot read: %v", err))
	}
	var bad []string
	for k := range strings.SplitSeq(keys, "\n") {
		if k != "" && localConfigDenied.MatchString(strings.ToLower(k)) {
			bad = append(bad, k)
		}
	}
	if len(bad) > 0 {
		return notTree("has .git/config settings that would make git run programs or read other configuration (" + strings.Join(bad, ", ") + "); remove them")
	}
	top, _, err := a.git(ctx, runOpts{dir: real, minimalEnv: true}, "rev-parse", "--show-toplevel")
	if err != nil {
		return notTree(fmt.Sprintf("is not a usable git work tree: %v", err))
	}
	if filepath.Clean(top) != real {
		return notTree("is not the top of its git work tree (" + top + ")")
	}
	return nil
}

// local is how the local steps run git in a tree. Pathspecs are literal:
// a path given to git.commit is a file name, not a pattern.
func local(dir string) runOpts {
	return runOpts{dir: dir, minimalEnv: true, env: []string{"GIT_LITERAL_PATHSPECS=1"}}
}

// StateInput is the `with` of git.state.
type StateInput struct {
	Dir string `json:"dir"`
	// RequireClean fails the step with GitDirty when the tree has
	// changes; default true.
	RequireClean *bool `json:"requireClean,omitempty"`
}

// StateOutput is a work tree's state.
type StateOutput struct {
	Head      string `json:"head"`
	ShortHead string `json:"shortHead"`
	// Branch is the checked-out branch; empty on a detached HEAD.
	Branch string `json:"branch"`
	Clean  bool   `json:"clean"`
	// Dirty lists up to 50 changed or untracked (not ignored) paths.
	Dirty []string `json:"dirty"`
}

// State implements git.state.
func (a *Activities) State(ctx context.Context, in StateInput) (StateOutput, error) {
	dir, err := a.localTree(ctx, in.Dir)
	if err != nil {
		return StateOutput{}, err
	}
	defer a.lock(dir)()
	o := local(dir)
	head, ok, err := a.revParse(ctx, o, "HEAD")
	if err != nil {
		return StateOutput{}, err
	}
	if !ok {
		return StateOutput{}, nonRetryable(activities.ErrNotGitWorkTree, fmt.Sprintf("dir %s has no commit yet: commit the app first so a run can restore it", in.Dir))
	}
	out := StateOutput{Head: head, ShortHead: short(head)}
	b, code, err := a.git(ctx, o, "symbolic-ref", "--quiet", "--short", "HEAD")
	switch {
	case err == nil:
		out.Branch = b
	case code != 1:
		return StateOutput{}, nonRetryable(activities.ErrGitError, fmt.Sprintf("read the checked-out branch of %s: %v", in.Dir, err))
	}
	dirty, n, err := a.dirtyFiles(ctx, o)
	if err != nil {
		return StateOutput{}, err
	}
	out.Dirty, out.Clean = dirty, n == 0
	if !out.Clean && (in.RequireClean == nil || *in.RequireClean) {
		shown := dirty
		if len(shown) > 10 {
			shown = shown[:10]
		}
		more := ""
		if n > len(shown) {
			more = fmt.Sprintf(" and %d more", n-len(shown))
		}
		return StateOutput{}, nonRetryable(activities.ErrGitDirty,
			fmt.Sprintf("work tree %s has %d uncommitted or untracked path(s): %s%s; commit or stash them first, so the run's edits (and their undoing) do not mix with them",
				in.Dir, n, strings.Join(shown, ", "), more))
	}
	logger(ctx).Info("work tree state", "dir", dir, "head", head, "branch", out.Branch, "clean", out.Clean)
	return out, nil
}

// dirtyFiles lists changed and untracked (not ignored) paths, up to
// maxDirtyFiles, and how many there are. Untracked directories count
// once (--untracked-files=normal), which keeps a new node_modules that
// is not ignored from listing thousands of files.
func (a *Activities) dirtyFiles(ctx context.Context, o runOpts) ([]string, int, error) {
	listing, _, err := a.git(ctx, o, "status", "--porcelain=v1", "-z", "--untracked-files=normal", "--ignore-submodules=none")
	if err != nil {
		return nil, 0, nonRetryable(activities.ErrGitError, fmt.Sprintf("git status: %v", err))
	}
	files := []string{}
	n := 0
	entries := strings.Split(listing, "\x00")
	for i := 0; i < len(entries); i++ {
		e := entries[i]
		if len(e) < 4 {
			continue
		}
		if e[0] == 'R' || e[0] == 'C' {
			i++ // the rename's source follows
		}
		n++
		if len(files) < maxDirtyFiles {
			files = append(files, e[3:])
		}
	}
	return files, n, nil
}

// CommitInput is the `with` of git.commit.
type CommitInput struct {
	Dir     string `json:"dir"`
	Message string `json:"message"`
	// Paths limits the commit to these paths (relative to Dir); default
	// every change.
	Paths       []string `json:"paths,omitempty"`
	AuthorName  string   `json:"authorName,omitempty"`
	AuthorEmail string   `json:"authorEmail,omitempty"`
}

// CommitOutput is the commit made, or HEAD when there was nothing to
// commit.
type CommitOutput struct {
	SHA       string `json:"sha"`
	ShortSHA  string `json:"shortSha"`
	Committed bool   `json:"committed"`
}

// stateDir is where a single server's pid file, lock and (by default) log
// live inside its work tree: the worker's, not the portal's. git.state must
// not count it as a change, git.commit must not add it and git.restore must
// not clean it away (that would drop the running server's pid file), so
// the local steps list it in the repository's own .git/info/exclude (local
// to this clone, never committed). Pathspec excludes would not do: the
// local steps run git with literal pathspecs.
const stateDir = ".stagehand"

// excludeStateDir adds /.stagehand/ to dir's .git/info/exclude once.
func excludeStateDir(dir string) error {
	gitDir := filepath.Join(dir, ".git")
	if fi, err := os.Lstat(gitDir); err != nil || !fi.IsDir() {
		// A linked work tree (.git is a file): its stateDir shows as
		// untracked, which git.state then names.
		return nil
	}
	path := filepath.Join(gitDir, "info", "exclude")
	line := "/" + stateDir + "/"
	data, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	for _, l := range strings.Split(string(data), "\n") {
		if strings.TrimSpace(l) == line {
			return nil
		}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	prefix := ""
	if len(data) > 0 && !strings.HasSuffix(string(data), "\n") {
		prefix = "\n"
	}
	_, err = f.WriteString(prefix + "# the Stagehand worker's pid file, lock and log of this server\n" + line + "\n")
	return err
}

// Commit implements git.commit: a local commit, never pushed.
func (a *Activities) Commit(ctx context.Context, in CommitInput) (CommitOutput, error) {
	if strings.TrimSpace(in.Message) == "" {
		return CommitOutput{}, nonRetryable(activities.ErrInvalidArguments, "message is required")
	}
	if len(in.Message) > maxMessageBytes {
		return CommitOutput{}, nonRetryable(activities.ErrInvalidArguments, fmt.Sprintf("message is %d bytes, at most %d allowed", len(in.Message), maxMessageBytes))
	}
	if len(in.Paths) > maxCommitPaths {
		return CommitOutput{}, nonRetryable(activities.ErrInvalidArguments, fmt.Sprintf("paths lists %d paths; at most %d", len(in.Paths), maxCommitPaths))
	}
	for _, p := range in.Paths {
		if err := checkPath(p); err != nil {
			return CommitOutput{}, err
		}
	}
	dir, err := a.localTree(ctx, in.Dir)
	if err != nil {
		return CommitOutput{}, err
	}
	defer a.lock(dir)()
	o := local(dir)
	pathspec := append([]string{"--"}, in.Paths...)
	if _, _, err := a.git(ctx, o, append([]string{"add", "--all"}, pathspec...)...); err != nil {
		return CommitOutput{}, nonRetryable(activities.ErrGitError, fmt.Sprintf("git add: %v", err))
	}
	_, code, err := a.git(ctx, o, append([]string{"diff", "--cached", "--quiet"}, pathspec...)...)
	if err != nil && code != 1 {
		return CommitOutput{}, nonRetryable(activities.ErrGitError, fmt.Sprintf("look for changes: %v", err))
	}
	out := CommitOutput{}
	if code == 1 {
		name, email := orDefault(in.AuthorName, "Stagehand"), orDefault(in.AuthorEmail, "stagehand@localhost")
		co := o
		co.env = append(append([]string{}, o.env...),
			"GIT_AUTHOR_NAME="+name, "GIT_AUTHOR_EMAIL="+email,
			"GIT_COMMITTER_NAME="+name, "GIT_COMMITTER_EMAIL="+email,
		)
		co.stdin = in.Message
		args := append(append([]string{}, noHooks...), "commit", "--quiet", "--no-verify", "--no-gpg-sign", "--file=-")
		if len(in.Paths) > 0 {
			args = append(args, pathspec...)
		}
		if _, _, err := a.git(ctx, co, args...); err != nil {
			return CommitOutput{}, nonRetryable(activities.ErrGitError, fmt.Sprintf("commit: %v", err))
		}
		out.Committed = true
	}
	sha, ok, err := a.revParse(ctx, o, "HEAD")
	if err != nil {
		return CommitOutput{}, err
	}
	if !ok {
		return CommitOutput{}, nonRetryable(activities.ErrNotGitWorkTree, fmt.Sprintf("dir %s has no commit and nothing to commit", in.Dir))
	}
	out.SHA, out.ShortSHA = sha, short(sha)
	logger(ctx).Info("local commit", "dir", dir, "sha", sha, "committed", out.Committed)
	return out, nil
}

// checkPath refuses a path that is not plainly inside the work tree.
func checkPath(p string) error {
	bad := p == "" || len(p) > 1024 || strings.HasPrefix(p, "/") || strings.HasPrefix(p, "-") || strings.ContainsRune(p, 0) || strings.HasPrefix(p, ":")
	for _, part := range strings.Split(p, "/") {
		if part == ".." || part == ".git" {
			bad = true
		}
	}
	if bad {
		return nonRetryable(activities.ErrInvalidArguments, fmt.Sprintf("paths: %q is not a path relative to dir (no leading / or -, no .. or .git parts)", p))
	}
	return nil
}

// RestoreInput is the `with` of git.restore.
type RestoreInput struct {
	Dir string `json:"dir"`
	// Ref is the commit to go back to: git.state's head.
	Ref string `json:"ref"`
}

// RestoreOutput says where the tree is and what was put back.
type RestoreOutput struct {
	Head string `json:"head"`
	// Restored lists up to 100 paths that differed from Ref (changed,
	// committed since, or untracked and removed).
	Restored []string `json:"restored"`
}

var refNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._/@{}~^-]{0,199}$`)

// Restore implements git.restore: reset --hard to Ref and remove untracked
// files that are not ignored (node_modules and build output stay).
func (a *Activities) Restore(ctx context.Context, in RestoreInput) (RestoreOutput, error) {
	if in.Ref == "" {
		return RestoreOutput{}, nonRetryable(activities.ErrInvalidArguments, "ref is required: the head output of a git.state step")
	}
	if !refNameRE.MatchString(in.Ref) || strings.Contains(in.Ref, "..") {
		return RestoreOutput{}, nonRetryable(activities.ErrInvalidArguments, fmt.Sprintf("ref %q is not a commit sha or ref name", in.Ref))
	}
	dir, err := a.localTree(ctx, in.Dir)
	if err != nil {
		return RestoreOutput{}, err
	}
	defer a.lock(dir)()
	o := local(dir)
	sha, ok, err := a.revParse(ctx, o, in.Ref)
	if err != nil {
		return RestoreOutput{}, err
	}
	if !ok {
		return RestoreOutput{}, nonRetryable(activities.ErrGitRestoreRefused, fmt.Sprintf("ref %s is not a commit of %s", in.Ref, in.Dir))
	}
	head, ok, err := a.revParse(ctx, o, "HEAD")
	if err != nil {
		return RestoreOutput{}, err
	}
	if ok && head != sha {
		// The run's own commits (git.commit) sit on top of ref. If ref is
		// not in HEAD's history, someone moved the branch since git.state
		// recorded it, and a reset would drop their commits.
		anc, err := a.isAncestor(ctx, o, sha, head)
		if err != nil {
			return RestoreOutput{}, nonRetryable(activities.ErrGitError, err.Error())
		}
		if !anc {
			return RestoreOutput{}, nonRetryable(activities.ErrGitRestoreRefused,
				fmt.Sprintf("ref %s (%s) is not in the history of HEAD (%s) of %s: the branch was moved since ref was recorded, and resetting would drop those commits; restore it by hand",
					in.Ref, short(sha), short(head), in.Dir))
		}
	}
	restored, err := a.restoreList(ctx, o, sha)
	if err != nil {
		return RestoreOutput{}, err
	}
	reset := append(append([]string{}, noHooks...), "reset", "--hard", "--quiet", sha)
	if _, _, err := a.git(ctx, o, reset...); err != nil {
		return RestoreOutput{}, nonRetryable(activities.ErrGitError, fmt.Sprintf("reset %s to %s: %v", in.Dir, short(sha), err))
	}
	// -fd, not -x: ignored files (node_modules, dist) stay; the runbook
	// installs and builds again.
	if _, _, err := a.git(ctx, o, "clean", "-fdq"); err != nil {
		return RestoreOutput{}, nonRetryable(activities.ErrGitError, fmt.Sprintf("clean %s: %v", in.Dir, err))
	}
	logger(ctx).Info("work tree restored", "dir", dir, "ref", sha, "restored", len(restored))
	return RestoreOutput{Head: sha, Restored: restored}, nil
}

// restoreList lists what a restore to sha puts back: tracked paths that
// differ from it (in the work tree or in commits since) and untracked,
// not ignored paths (which clean removes).
func (a *Activities) restoreList(ctx context.Context, o runOpts, sha string) ([]string, error) {
	changed, _, err := a.git(ctx, o, "diff", "--name-only", "-z", "--no-renames", sha)
	if err != nil {
		return nil, nonRetryable(activities.ErrGitError, fmt.Sprintf("compare with %s: %v", short(sha), err))
	}
	untracked, _, err := a.git(ctx, o, "ls-files", "-z", "--others", "--exclude-standard", "--directory")
	if err != nil {
		return nil, nonRetryable(activities.ErrGitError, fmt.Sprintf("list untracked files: %v", err))
	}
	out := []string{}
	seen := map[string]bool{}
	for _, f := range strings.Split(changed+"\x00"+untracked, "\x00") {
		if f != "" && !seen[f] && len(out) < maxRestored {
			seen[f] = true
			out = append(out, f)
		}
	}
	return out, nil
}
