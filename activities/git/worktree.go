package git

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"go.temporal.io/sdk/activity"

	"github.com/stagehand-dev/stagehand/activities"
)

// Work trees are where a run changes a repository: git.checkout makes one,
// commands (exec.run) edit it, git.commitPush commits and pushes it. Each
// lives at <WorkDir>/trees/<run>/<name>, so a retry of the same step in the
// same run finds the tree its earlier attempt made and fetches and resets
// it instead of cloning again, and two runs never share one.

const (
	// maxChangedFiles bounds the changedFiles output; changedCount has
	// the total.
	maxChangedFiles = 100
	// maxMessageBytes bounds a commit message.
	maxMessageBytes = 64 << 10
)

// Keys of the work tree's git config that mark it as ours.
const (
	cfgRemote = "stagehand.remote" // the remote it was checked out from (no credentials)
	cfgBase   = "stagehand.base"   // the commit git.checkout left it at
)

// noHooks keeps hooks out of our commands: the worker's global
// core.hooksPath, or one a command set in the tree (`yarn install` runs
// husky, which points core.hooksPath at the repository's own scripts).
var noHooks = []string{"-c", "core.hooksPath=/dev/null"}

var treeNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// TreesDir is the directory holding every work tree git.checkout makes:
// the directory to allow commands (exec.run) to run in.
func (a *Activities) TreesDir() string {
	return filepath.Join(a.workDir(), "trees")
}

// treeMetaPath is where git.checkout records what a work tree was checked
// out from and at, outside TreesDir: commands (exec.run) run inside the
// trees and can rewrite anything there, .git/config included, so what
// commitPush pushes to (with a token) must not be read from the tree.
func (a *Activities) treeMetaPath(ctx context.Context, name string) string {
	return filepath.Join(a.workDir(), "tree-meta", runKey(ctx), name)
}

// treeMeta is what treeMetaPath holds.
type treeMeta struct {
	Remote string `json:"remote"` // no credentials, like cfgRemote
	Base   string `json:"base"`
}

func (a *Activities) writeTreeMeta(ctx context.Context, name string, m treeMeta) error {
	p := a.treeMetaPath(ctx, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return err
	}
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, p)
}

func (a *Activities) readTreeMeta(ctx context.Context, name string) (treeMeta, error) {
	var m treeMeta
	b, err := os.ReadFile(a.treeMetaPath(ctx, name))
	if err != nil {
		return m, err
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, err
	}
	if m.Remote == "" || m.Base == "" {
		return m, fmt.Errorf("%s is incomplete", a.treeMetaPath(ctx, name))
	}
	return m, nil
}

// treeConfigKeys are the settings a work tree's .git/config may hold:
// what init, remote add and checkout write, stagehand.*, and husky's
// core.hooksPath (hooks never run: see safeConfig). Anything else was
// added by a command run in the tree and could make the worker's git run
// a program (core.sshCommand, filter and diff drivers, credential helpers)
// or send a push's token elsewhere (url.*.insteadOf, http.proxy,
// include.path).
var treeConfigKeys = regexp.MustCompile(`^(core\.(repositoryformatversion|filemode|bare|logallrefupdates|ignorecase|precomposeunicode|symlinks|hookspath)|extensions\.objectformat|remote\.origin\.(url|fetch)|stagehand\.(remote|base)|branch\..+\.(remote|merge))$`)

// checkTreeGit refuses a work tree whose .git a command has changed in a
// way that would hand the worker's git to it: .git replaced by a file or
// link (pointing git at another directory), a commondir or config.worktree
// file (more configuration), or settings outside treeConfigKeys.
func (a *Activities) checkTreeGit(ctx context.Context, dir string) error {
	refuse := func(why string) error {
		return nonRetryable(activities.ErrGitError,
			fmt.Sprintf("work tree %s: %s; a command run in the tree changed its .git, and Stagehand does not run git with that", dir, why))
	}
	gitDir := filepath.Join(dir, ".git")
	if fi, err := os.Lstat(gitDir); err != nil || !fi.IsDir() {
		return refuse(".git is not a directory")
	}
	for _, f := range []string{"commondir", "config.worktree"} {
		if _, err := os.Lstat(filepath.Join(gitDir, f)); err == nil {
			return refuse(".git/" + f + " exists")
		}
	}
	if fi, err := os.Lstat(filepath.Join(gitDir, "config")); err != nil || !fi.Mode().IsRegular() {
		return refuse(".git/config is not a regular file")
	}
	// --file reads that one file: no includes followed, no repository
	// discovered.
	keys, _, err := a.git(ctx, runOpts{}, "config", "--file", filepath.Join(gitDir, "config"), "--list", "--name-only")
	if err != nil {
		return refuse(fmt.Sprintf("its .git/config cannot be read: %v", err))
	}
	var bad []string
	for k := range strings.SplitSeq(keys, "\n") {
		if k != "" && !treeConfigKeys.MatchString(strings.ToLower(k)) {
			bad = append(bad, k)
		}
	}
	if len(bad) > 0 {
		return refuse("its .git/config has settings Stagehand did not write (" + strings.Join(bad, ", ") + ")")
	}
	return nil
}

// RunTreesDir is the current run's directory under TreesDir, where every
// work tree git.checkout makes for this run lives (ctx is an activity's).
func (a *Activities) RunTreesDir(ctx context.Context) string {
	return filepath.Join(a.TreesDir(), runKey(ctx))
}

// runKey names the current run's directory under TreesDir: readable, and
// unique through a hash of the full workflow id.
func runKey(ctx context.Context) string {
	id := "local"
	if activity.IsActivity(ctx) {
		id = activity.GetInfo(ctx).WorkflowExecution.ID
	}
	sum := sha256.Sum256([]byte(id))
	safe := []byte(id)
	for i, c := range safe {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			safe[i] = '_'
		}
	}
	if len(safe) > 48 {
		safe = safe[:48]
	}
	return string(safe) + "-" + hex.EncodeToString(sum[:4])
}

// defaultTreeName is the remote's last path element without .git.
func defaultTreeName(addr string) string {
	base := strings.TrimSuffix(strings.TrimRight(addr, "/"), "/.git")
	if i := strings.LastIndexAny(base, "/:"); i >= 0 {
		base = base[i+1:]
	}
	base = strings.TrimSuffix(base, ".git")
	if !treeNameRE.MatchString(base) {
		return "repo"
	}
	return base
}

// CheckoutInput is the `with` of a git.checkout step.
type CheckoutInput struct {
	Remote string `json:"remote"`
	// Ref is a branch, a tag or a commit sha; default main.
	Ref string `json:"ref,omitempty"`
	// Branch, when set, is a new branch created at Ref.
	Branch   string `json:"branch,omitempty"`
	TokenRef string `json:"tokenRef,omitempty"`
	// Name tells apart two work trees of one run; default the remote's
	// repository name.
	Name string `json:"name,omitempty"`
}

// CheckoutOutput is where the work tree is and what it has checked out.
type CheckoutOutput struct {
	Dir      string `json:"dir"`
	SHA      string `json:"sha"`
	ShortSHA string `json:"shortSha"`
	// Branch is the checked-out branch: Branch if one was created, Ref if
	// it is a branch, empty for a tag or a commit (detached HEAD).
	Branch string `json:"branch"`
}

// Checkout makes (or, on a retry, fetches and resets) this run's work tree
// of a remote at a ref, optionally on a new branch.
func (a *Activities) Checkout(ctx context.Context, in CheckoutInput) (CheckoutOutput, error) {
	if in.Remote == "" {
		return CheckoutOutput{}, nonRetryable(activities.ErrInvalidArguments, "remote is required")
	}
	ref := orDefault(in.Ref, "main")
	if strings.HasPrefix(ref, "-") || strings.ContainsAny(ref, " \t\n:") {
		return CheckoutOutput{}, nonRetryable(activities.ErrInvalidArguments, fmt.Sprintf("ref %q is not a branch, tag or commit name", ref))
	}
	if in.Branch != "" && strings.HasPrefix(in.Branch, "refs/") {
		return CheckoutOutput{}, nonRetryable(activities.ErrInvalidArguments, fmt.Sprintf("branch %q: give a branch name, not a ref", in.Branch))
	}
	if in.Name != "" && !treeNameRE.MatchString(in.Name) {
		return CheckoutOutput{}, nonRetryable(activities.ErrInvalidArguments,
			fmt.Sprintf("name %q: use up to 64 letters, digits, '.', '_' and '-'", in.Name))
	}
	red := newRedactor()
	rem, err := a.remoteFor(ctx, in.Remote, in.TokenRef, red)
	if err != nil {
		return CheckoutOutput{}, err
	}
	var branchRef string
	if in.Branch != "" {
		if branchRef, err = a.branchRef(ctx, "branch", in.Branch); err != nil {
			return CheckoutOutput{}, err
		}
	}
	name := orDefault(in.Name, defaultTreeName(rem.addr))
	dir := filepath.Join(a.RunTreesDir(ctx), name)
	defer a.lock(dir)()

	if err := a.ensureTree(ctx, dir, rem, name); err != nil {
		return CheckoutOutput{}, err
	}
	o := runOpts{dir: dir, env: rem.env(), red: red}
	// Every branch and tag: the tree needs history to commit on and push
	// from, and knowing the remote's branches answers "does the new
	// branch exist already" without another round trip. --prune drops
	// what the remote deleted since an earlier attempt.
	if _, _, err := a.git(ctx, o, "fetch", "--quiet", "--prune", "--no-tags", "--no-write-fetch-head", "--", rem.addr,
		"+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*"); err != nil {
		return CheckoutOutput{}, classifyRemote("fetch "+rem.display(), err)
	}
	sha, isBranch, err := a.resolveRef(ctx, o, rem, ref)
	if err != nil {
		return CheckoutOutput{}, err
	}
	local := runOpts{dir: dir, red: red}
	// Leftovers of an earlier attempt (build output, half-made changes)
	// go: a retried checkout starts from the ref like the first attempt.
	if _, _, err := a.git(ctx, local, "clean", "-ffdxq"); err != nil {
		return CheckoutOutput{}, nonRetryable(activities.ErrGitError, fmt.Sprintf("clean work tree %s: %v", dir, err))
	}
	out := CheckoutOutput{Dir: dir}
	checkout := append(append([]string{}, noHooks...), "checkout", "--quiet", "--force")
	switch {
	case in.Branch != "":
		remoteHead, exists, err := a.revParse(ctx, local, "refs/remotes/origin/"+in.Branch)
		if err != nil {
			return CheckoutOutput{}, err
		}
		if exists && remoteHead != sha {
			// This run's own tree may have made and pushed the branch
			// already (the checkout step ran again after a commitPush):
			// its local branch is what the remote has, grown from ref.
			localHead, ok, err := a.revParse(ctx, local, branchRef)
			if err != nil {
				return CheckoutOutput{}, err
			}
			if !ok || localHead != remoteHead {
				return CheckoutOutput{}, nonRetryable(activities.ErrBranchExists,
					fmt.Sprintf("branch %s already exists on %s at %s, not at %s (%s): choose another branch name or delete the branch",
						in.Branch, rem.display(), short(remoteHead), ref, short(sha)))
			}
			grown, err := a.isAncestor(ctx, local, sha, remoteHead)
			if err != nil {
				return CheckoutOutput{}, err
			}
			if !grown {
				return CheckoutOutput{}, nonRetryable(activities.ErrBranchExists,
					fmt.Sprintf("branch %s already exists on %s at %s, which does not contain %s (%s)",
						in.Branch, rem.display(), short(remoteHead), ref, short(sha)))
			}
			sha = remoteHead
		}
		if _, _, err := a.git(ctx, local, append(checkout, "-B", in.Branch, sha)...); err != nil {
			return CheckoutOutput{}, nonRetryable(activities.ErrGitError, fmt.Sprintf("check out %s as %s: %v", ref, in.Branch, err))
		}
		out.Branch = in.Branch
	case isBranch:
		b := strings.TrimPrefix(ref, "refs/heads/")
		if _, _, err := a.git(ctx, local, append(checkout, "-B", b, sha)...); err != nil {
			return CheckoutOutput{}, nonRetryable(activities.ErrGitError, fmt.Sprintf("check out %s: %v", ref, err))
		}
		out.Branch = b
	default:
		if _, _, err := a.git(ctx, local, append(checkout, "--detach", sha)...); err != nil {
			return CheckoutOutput{}, nonRetryable(activities.ErrGitError, fmt.Sprintf("check out %s: %v", ref, err))
		}
	}
	if _, _, err := a.git(ctx, local, "config", cfgBase, sha); err != nil {
		return CheckoutOutput{}, nonRetryable(activities.ErrGitError, fmt.Sprintf("record the checked-out commit: %v", err))
	}
	if err := a.writeTreeMeta(ctx, name, treeMeta{Remote: rem.addr, Base: sha}); err != nil {
		return CheckoutOutput{}, nonRetryable(activities.ErrGitError, fmt.Sprintf("record the checked-out commit: %v", err))
	}
	out.SHA, out.ShortSHA = sha, short(sha)
	logger(ctx).Info("checked out work tree", "remote", rem.display(), "ref", ref, "branch", out.Branch, "sha", sha, "dir", dir)
	return out, nil
}

// ensureTree makes dir a repository of rem, unless it already is one (an
// earlier attempt of this run). A directory an interrupted attempt left
// half made is made again.
func (a *Activities) ensureTree(ctx context.Context, dir string, rem remote, name string) error {
	local := runOpts{dir: dir, red: rem.red}
	if _, err := os.Lstat(filepath.Join(dir, ".git")); err == nil {
		if err := a.checkTreeGit(ctx, dir); err != nil {
			return err
		}
		got, code, err := a.git(ctx, local, "config", "--get", cfgRemote)
		switch {
		case err == nil && got == rem.addr:
			return nil
		case err == nil:
			return nonRetryable(activities.ErrInvalidArguments,
				fmt.Sprintf("this run's work tree %q is a checkout of %s, not %s: give the checkout another name",
					name, rem.red.clean(got), rem.display()))
		case code != 1:
			logger(ctx).Warn("work tree unusable; making it again", "dir", dir, "error", err.Error())
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		return nonRetryable(activities.ErrGitError, fmt.Sprintf("remove unusable work tree %s: %v", dir, err))
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
		return nonRetryable(activities.ErrGitError, fmt.Sprintf("create work dir: %v", err))
	}
	steps := [][]string{
		{"init", "--quiet", "--", dir},
		// origin makes the tree usable by people and tools; the address
		// carries no credentials (those travel in each command's env).
		{"-C", dir, "remote", "add", "origin", rem.addr},
		// Written last: a tree without it is one init did not finish.
		{"-C", dir, "config", cfgRemote, rem.addr},
	}
	for _, args := range steps {
		if _, _, err := a.git(ctx, runOpts{red: rem.red}, args...); err != nil {
			return nonRetryable(activities.ErrGitError, fmt.Sprintf("create work tree %s: %v", dir, err))
		}
	}
	return nil
}

// resolveRef finds ref among the fetched branches and tags, or as a commit
// sha (fetched by sha if the branches do not contain it).
func (a *Activities) resolveRef(ctx context.Context, o runOpts, rem remote, ref string) (sha string, isBranch bool, err error) {
	name := ref
	candidates := []string{"refs/remotes/origin/" + name, "refs/tags/" + name}
	switch {
	case strings.HasPrefix(ref, "refs/heads/"):
		candidates = []string{"refs/remotes/origin/" + strings.TrimPrefix(ref, "refs/heads/")}
	case strings.HasPrefix(ref, "refs/tags/"):
		candidates = []string{ref}
	}
	for i, c := range candidates {
		sha, ok, err := a.revParse(ctx, o, c)
		if err != nil {
			return "", false, err
		}
		if ok {
			return sha, i == 0 && !strings.HasPrefix(ref, "refs/tags/"), nil
		}
	}
	if isHex(ref) && len(ref) >= 7 {
		if sha, ok, err := a.revParse(ctx, o, ref); err != nil || ok {
			return sha, false, err
		}
		if len(ref) == 40 || len(ref) == 64 {
			// Not on any branch or tag: fetch the commit itself (GitHub
			// and git's protocol v2 serve any reachable commit).
			if _, _, err := a.git(ctx, o, "fetch", "--quiet", "--no-tags", "--no-write-fetch-head", "--", rem.addr,
				ref+":refs/stagehand/commit"); err == nil {
				if sha, ok, err := a.revParse(ctx, o, ref); err != nil || ok {
					return sha, false, err
				}
			}
		}
	}
	return "", false, nonRetryable(activities.ErrBranchNotFound,
		fmt.Sprintf("ref %s is not a branch, tag or commit of %s", ref, rem.display()))
}

// revParse returns the commit a name points to; ok is false when there is
// no such commit.
func (a *Activities) revParse(ctx context.Context, o runOpts, name string) (string, bool, error) {
	sha, code, err := a.git(ctx, o, "rev-parse", "--verify", "--quiet", "--end-of-options", name+"^{commit}")
	switch {
	case err == nil:
		return sha, true, nil
	case code == 1:
		return "", false, nil
	default:
		return "", false, nonRetryable(activities.ErrGitError, fmt.Sprintf("read %s: %v", name, err))
	}
}

// CommitPushInput is the `with` of a git.commitPush step.
type CommitPushInput struct {
	// Dir is a work tree git.checkout made in this run (its dir output).
	Dir         string `json:"dir"`
	Message     string `json:"message"`
	AuthorName  string `json:"authorName,omitempty"`
	AuthorEmail string `json:"authorEmail,omitempty"`
	// Branch is the remote branch pushed to; default the checked-out
	// branch.
	Branch string `json:"branch,omitempty"`
	// Remote defaults to the remote the tree was checked out from.
	Remote   string `json:"remote,omitempty"`
	TokenRef string `json:"tokenRef,omitempty"`
	// AllowEmpty commits even when nothing changed.
	AllowEmpty bool `json:"allowEmpty,omitempty"`
}

// CommitPushOutput says what was committed and whether this attempt pushed.
type CommitPushOutput struct {
	SHA      string `json:"sha"`
	ShortSHA string `json:"shortSha"`
	Branch   string `json:"branch"`
	// Committed is false when nothing changed (and allowEmpty is false);
	// then nothing is pushed either.
	Committed bool `json:"committed"`
	// Pushed is false when the remote branch already had the commit (a
	// retry after a push whose completion was lost).
	Pushed bool `json:"pushed"`
	// ChangedFiles lists up to 100 files the commit changed.
	ChangedFiles []string `json:"changedFiles"`
	ChangedCount int      `json:"changedCount"`
}

// CommitPush commits everything that changed in a work tree and pushes the
// branch, never forcing. Nothing changed is a success with committed:
// false (later steps can test it in `if`), not an error: "the bump found
// nothing to bump" is an outcome, and a retry after a successful commit
// finds a clean tree too.
func (a *Activities) CommitPush(ctx context.Context, in CommitPushInput) (CommitPushOutput, error) {
	if in.Dir == "" {
		return CommitPushOutput{}, nonRetryable(activities.ErrInvalidArguments, "dir is required: the dir output of a git.checkout step")
	}
	if strings.TrimSpace(in.Message) == "" {
		return CommitPushOutput{}, nonRetryable(activities.ErrInvalidArguments, "message is required")
	}
	if len(in.Message) > maxMessageBytes {
		return CommitPushOutput{}, nonRetryable(activities.ErrInvalidArguments, fmt.Sprintf("message is %d bytes, at most %d allowed", len(in.Message), maxMessageBytes))
	}
	dir, meta, err := a.ownTree(ctx, in.Dir)
	if err != nil {
		return CommitPushOutput{}, err
	}
	defer a.lock(dir)()
	red := newRedactor()
	local := runOpts{dir: dir, red: red}

	remoteAddr := in.Remote
	if remoteAddr == "" {
		// Not the tree's cfgRemote: a command in the tree can rewrite it.
		remoteAddr = meta.Remote
	}
	rem, err := a.remoteFor(ctx, remoteAddr, in.TokenRef, red)
	if err != nil {
		return CommitPushOutput{}, err
	}
	branch := in.Branch
	if branch == "" {
		b, code, err := a.git(ctx, local, "symbolic-ref", "--quiet", "--short", "HEAD")
		if err != nil {
			if code == 1 {
				return CommitPushOutput{}, nonRetryable(activities.ErrInvalidArguments,
					"the work tree has no branch checked out (a tag or commit): give branch")
			}
			return CommitPushOutput{}, nonRetryable(activities.ErrGitError, fmt.Sprintf("read the checked-out branch: %v", err))
		}
		branch = b
	}
	if strings.HasPrefix(branch, "refs/") {
		return CommitPushOutput{}, nonRetryable(activities.ErrInvalidArguments, fmt.Sprintf("branch %q: give a branch name, not a ref", branch))
	}
	ref, err := a.branchRef(ctx, "branch", branch)
	if err != nil {
		return CommitPushOutput{}, err
	}
	authorName, authorEmail := orDefault(in.AuthorName, "Stagehand"), orDefault(in.AuthorEmail, "stagehand@localhost")
	out := CommitPushOutput{Branch: branch}

	if _, _, err := a.git(ctx, local, "add", "--all"); err != nil {
		return CommitPushOutput{}, nonRetryable(activities.ErrGitError, fmt.Sprintf("git add: %v", err))
	}
	_, code, err := a.git(ctx, local, "diff", "--cached", "--quiet")
	if err != nil && code != 1 {
		return CommitPushOutput{}, nonRetryable(activities.ErrGitError, fmt.Sprintf("look for changes: %v", err))
	}
	changed := code == 1
	switch {
	case changed:
		out.Committed = true
	default:
		// A clean tree on a retry: the earlier attempt committed (and
		// perhaps pushed) already. Its commit is HEAD, past the
		// checkout's commit, with this message and author.
		prior, err := a.priorCommit(ctx, local, meta.Base, in.Message, authorName, authorEmail)
		if err != nil {
			return CommitPushOutput{}, err
		}
		out.Committed = prior || in.AllowEmpty
		changed = !prior && in.AllowEmpty
	}
	if changed {
		co := local
		co.env = []string{
			"GIT_AUTHOR_NAME=" + authorName, "GIT_AUTHOR_EMAIL=" + authorEmail,
			"GIT_COMMITTER_NAME=" + authorName, "GIT_COMMITTER_EMAIL=" + authorEmail,
		}
		co.stdin = in.Message
		args := append(append([]string{}, noHooks...), "commit", "--quiet", "--no-verify", "--no-gpg-sign", "--allow-empty", "--file=-")
		if _, _, err := a.git(ctx, co, args...); err != nil {
			return CommitPushOutput{}, nonRetryable(activities.ErrGitError, fmt.Sprintf("commit: %v", err))
		}
	}
	sha, _, err := a.revParse(ctx, local, "HEAD")
	if err != nil {
		return CommitPushOutput{}, err
	}
	out.SHA, out.ShortSHA = sha, short(sha)
	if !out.Committed {
		logger(ctx).Info("nothing to commit", "dir", dir, "branch", branch)
		out.ChangedFiles = []string{}
		return out, nil
	}
	if out.ChangedFiles, out.ChangedCount, err = a.changedFiles(ctx, local); err != nil {
		return CommitPushOutput{}, err
	}

	remoteHead, found, err := a.lsRemote(ctx, rem, ref)
	if err != nil {
		return CommitPushOutput{}, err
	}
	if found && remoteHead == sha {
		logger(ctx).Info("remote branch has the commit already", "remote", rem.display(), "branch", branch, "sha", sha)
		return out, nil
	}
	err = a.push(ctx, dir, rem, sha, ref)
	if errors.Is(err, errPushRace) {
		// Never forced. If what the remote has now contains our commit
		// (someone built on it since), there is nothing left to push.
		head, found, ferr := a.fetchRef(ctx, dir, rem, ref)
		if ferr != nil {
			return CommitPushOutput{}, ferr
		}
		if found {
			if contained, cerr := a.isAncestor(ctx, local, sha, head); cerr == nil && contained {
				return out, nil
			}
		}
		return CommitPushOutput{}, nonRetryable(activities.ErrPushRejected,
			fmt.Sprintf("branch %s on %s is at %s, which is not an ancestor of the commit %s: it has commits this work tree lacks, and Stagehand never force-pushes",
				branch, rem.display(), short(head), short(sha)))
	}
	if err != nil {
		return CommitPushOutput{}, err
	}
	out.Pushed = true
	logger(ctx).Info("pushed", "remote", rem.display(), "branch", branch, "sha", sha)
	return out, nil
}

// ownTree returns the real path of dir if it is a work tree git.checkout
// made for this run, and refuses anything else: commitPush must not commit
// and push whatever directory a runbook names.
func (a *Activities) ownTree(ctx context.Context, dir string) (string, treeMeta, error) {
	refuse := func(why string) error {
		return nonRetryable(activities.ErrInvalidArguments,
			fmt.Sprintf("dir %s is not a work tree git.checkout made in this run (%s)", dir, why))
	}
	runDir, err := filepath.EvalSymlinks(a.RunTreesDir(ctx))
	if err != nil {
		return "", treeMeta{}, refuse("this run has checked out nothing")
	}
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return "", treeMeta{}, refuse("it does not exist")
	}
	if filepath.Dir(real) != runDir {
		return "", treeMeta{}, refuse("it is not a directory of " + runDir)
	}
	meta, err := a.readTreeMeta(ctx, filepath.Base(real))
	if err != nil {
		return "", treeMeta{}, refuse("its checkout did not finish")
	}
	if err := a.checkTreeGit(ctx, real); err != nil {
		return "", treeMeta{}, err
	}
	top, _, err := a.git(ctx, runOpts{dir: real}, "rev-parse", "--show-toplevel")
	if err != nil || filepath.Clean(top) != real {
		return "", treeMeta{}, refuse("it is not the top of a git work tree")
	}
	return real, meta, nil
}

// priorCommit reports whether HEAD is a commit an earlier attempt of this
// step made: past the checkout's commit, with this message and author.
func (a *Activities) priorCommit(ctx context.Context, o runOpts, base, message, name, email string) (bool, error) {
	head, ok, err := a.revParse(ctx, o, "HEAD")
	if err != nil || !ok || head == base {
		return false, err
	}
	info, _, err := a.git(ctx, o, "log", "-1", "--format=%an%x00%ae%x00%B", "HEAD")
	if err != nil {
		return false, nonRetryable(activities.ErrGitError, fmt.Sprintf("read HEAD: %v", err))
	}
	f := strings.SplitN(info, "\x00", 3)
	return len(f) == 3 && f[0] == name && f[1] == email && strings.TrimSpace(f[2]) == strings.TrimSpace(message), nil
}

// changedFiles lists the files HEAD changed, up to maxChangedFiles, and
// how many there are.
func (a *Activities) changedFiles(ctx context.Context, o runOpts) ([]string, int, error) {
	listing, _, err := a.git(ctx, o, "diff-tree", "--no-commit-id", "--name-only", "-r", "-z", "--root", "HEAD")
	if err != nil {
		return nil, 0, nonRetryable(activities.ErrGitError, fmt.Sprintf("list changed files: %v", err))
	}
	files := []string{}
	n := 0
	for _, f := range strings.Split(listing, "\x00") {
		if f == "" {
			continue
		}
		n++
		if len(files) < maxChangedFiles {
			files = append(files, f)
		}
	}
	return files, n, nil
}

// lsRemote reads one ref from the remote without fetching.
func (a *Activities) lsRemote(ctx context.Context, rem remote, ref string) (sha string, found bool, err error) {
	out, _, err := a.git(ctx, runOpts{env: rem.env(), red: rem.red}, "ls-remote", "--", rem.addr, ref)
	if err != nil {
		return "", false, classifyRemote("read "+ref+" from "+rem.display(), err)
	}
	for line := range strings.SplitSeq(out, "\n") {
		s, name, _ := strings.Cut(line, "\t")
		if name == ref {
			return s, true, nil
		}
	}
	return "", false, nil
}
