package git

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/stagehand-dev/stagehand/activities"
)

// mergePlain merges with git itself. It works in a bare cache repository
// and builds the merge with `git merge-tree --write-tree` and `git
// commit-tree`, so there is no work tree or index that a crashed attempt
// could leave half-merged for the next one.
func (a *Activities) mergePlain(ctx context.Context, in MergeInput) (MergeOutput, error) {
	target := in.targetBranch()
	if in.Remote == "" {
		return MergeOutput{}, nonRetryable(activities.ErrInvalidArguments, "provider git needs remote")
	}
	if in.PRBranch == "" {
		return MergeOutput{}, nonRetryable(activities.ErrInvalidArguments, "provider git needs prBranch")
	}
	if in.Method != "" && in.Method != "merge" {
		return MergeOutput{}, nonRetryable(activities.ErrInvalidArguments,
			fmt.Sprintf("provider git supports method merge only, not %q", in.Method))
	}
	if in.Repo != "" || in.APIURL != "" {
		return MergeOutput{}, nonRetryable(activities.ErrInvalidArguments, "repo and apiURL belong to provider github")
	}
	red := newRedactor()
	rem, err := a.remoteFor(ctx, in.Remote, in.TokenRef, red)
	if err != nil {
		return MergeOutput{}, err
	}
	targetRef, err := a.branchRef(ctx, "targetBranch", target)
	if err != nil {
		return MergeOutput{}, err
	}
	prRef, err := a.branchRef(ctx, "prBranch", in.PRBranch)
	if err != nil {
		return MergeOutput{}, err
	}

	dir, err := a.cacheRepo(ctx, rem)
	if err != nil {
		return MergeOutput{}, err
	}
	defer a.lock(dir)()

	message := in.Message
	if message == "" {
		message = defaultMessage(int(in.PR), in.PRBranch, target)
	}
	author := []string{
		"GIT_AUTHOR_NAME=" + orDefault(in.AuthorName, "Stagehand"),
		"GIT_AUTHOR_EMAIL=" + orDefault(in.AuthorEmail, "stagehand@localhost"),
		"GIT_COMMITTER_NAME=" + orDefault(in.AuthorName, "Stagehand"),
		"GIT_COMMITTER_EMAIL=" + orDefault(in.AuthorEmail, "stagehand@localhost"),
	}
	local := runOpts{dir: dir, red: red}
	out := MergeOutput{Provider: ProviderGit, TargetBranch: target, PR: int(in.PR)}
	log := logger(ctx)

	for attempt := 1; ; attempt++ {
		targetHead, found, err := a.fetchRef(ctx, dir, rem, targetRef)
		if err != nil {
			return MergeOutput{}, err
		}
		if !found {
			return MergeOutput{}, nonRetryable(activities.ErrBranchNotFound,
				fmt.Sprintf("target branch %s not found on %s", target, rem.display()))
		}
		prHead, found, err := a.fetchRef(ctx, dir, rem, prRef)
		if err != nil {
			return MergeOutput{}, err
		}
		if !found {
			// Hosting services delete a PR branch once it is merged. If
			// our own merge commit is on the target, a retry after a
			// crash has nothing left to do.
			commit, head, ok, err := a.findMergeByMessage(ctx, local, targetHead, message)
			if err != nil {
				return MergeOutput{}, err
			}
			if !ok {
				return MergeOutput{}, nonRetryable(activities.ErrBranchNotFound,
					fmt.Sprintf("pull request branch %s not found on %s", in.PRBranch, rem.display()))
			}
			out.MergeCommit, out.PRHead, out.AlreadyMerged = commit, head, true
			return out.withShort(), nil
		}
		out.PRHead = prHead
		if in.ExpectHead != "" && !strings.HasPrefix(prHead, strings.ToLower(in.ExpectHead)) {
			// "Already merged" comes before "head moved": a worker that
			// crashed after pushing the merge of the tested head and
			// before Temporal recorded it retries here, and a push to the
			// PR branch since then does not undo that merge.
			tested, merge, ok, err := a.mergedCommit(ctx, local, in.ExpectHead, targetHead)
			if err != nil {
				return MergeOutput{}, err
			}
			if ok {
				log.Info("tested head already merged; the pull request moved on since", "remote", rem.display(),
					"target", target, "mergeCommit", merge, "prHead", short(prHead))
				out.PRHead, out.MergeCommit, out.AlreadyMerged = tested, merge, true
				return out.withShort(), nil
			}
			return MergeOutput{}, nonRetryable(activities.ErrHeadMoved,
				fmt.Sprintf("pull request branch %s is at %s, not the tested %s: it changed after it was checked", in.PRBranch, short(prHead), in.ExpectHead))
		}

		merged, err := a.isAncestor(ctx, local, prHead, targetHead)
		if err != nil {
			return MergeOutput{}, err
		}
		if merged {
			commit, err := a.mergeCommitOf(ctx, local, prHead, targetHead)
			if err != nil {
				return MergeOutput{}, err
			}
			log.Info("pull request already merged", "remote", rem.display(), "target", target, "mergeCommit", commit)
			out.MergeCommit, out.AlreadyMerged = commit, true
			return out.withShort(), nil
		}

		commit, err := a.buildMerge(ctx, local, author, targetHead, prHead, message)
		if err != nil {
			return MergeOutput{}, err
		}
		if a.beforePush != nil {
			a.beforePush(attempt)
		}
		err = a.push(ctx, dir, rem, commit, targetRef)
		if err == nil {
			if a.afterPush != nil {
				a.afterPush()
			}
			log.Info("merged pull request", "remote", rem.display(), "target", target, "mergeCommit", commit, "attempt", attempt)
			out.MergeCommit = commit
			return out.withShort(), nil
		}
		if !errors.Is(err, errPushRace) {
			return MergeOutput{}, err
		}
		if attempt >= a.maxPushAttempts() {
			// Someone keeps pushing to the branch; let Temporal's backoff
			// space out the next tries.
			return MergeOutput{}, retryable(activities.ErrBranchMoving,
				fmt.Sprintf("push to %s on %s rejected %d times: the branch keeps moving", target, rem.display(), attempt))
		}
		log.Info("target branch moved during the merge; merging again", "remote", rem.display(), "target", target, "attempt", attempt)
	}
}

func defaultMessage(pr int, prBranch, target string) string {
	if pr > 0 {
		return fmt.Sprintf("Merge pull request #%d from %s", pr, prBranch)
	}
	return fmt.Sprintf("Merge branch '%s' into %s", prBranch, target)
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// branchRef turns a branch name (or a full ref such as refs/pull/42/head)
// into a full ref, refusing names git would read as options or reject.
func (a *Activities) branchRef(ctx context.Context, key, name string) (string, error) {
	ref := name
	if !strings.HasPrefix(ref, "refs/") {
		ref = "refs/heads/" + name
	}
	if strings.HasPrefix(name, "-") {
		return "", nonRetryable(activities.ErrInvalidArguments, fmt.Sprintf("%s %q is not a valid branch name", key, name))
	}
	if _, code, err := a.git(ctx, runOpts{}, "check-ref-format", ref); err != nil {
		if code == 1 {
			return "", nonRetryable(activities.ErrInvalidArguments, fmt.Sprintf("%s %q is not a valid branch name", key, name))
		}
		return "", err
	}
	return ref, nil
}

// cacheRepo returns the cached bare repository for a remote, creating it
// (or re-creating a corrupt one) as needed. The key is the remote without
// credentials, so rotating a token reuses the same cache.
func (a *Activities) cacheRepo(ctx context.Context, rem remote) (string, error) {
	sum := sha256.Sum256([]byte(rem.addr))
	dir := filepath.Join(a.workDir(), "repo-"+hex.EncodeToString(sum[:8]))
	if err := os.MkdirAll(a.workDir(), 0o700); err != nil {
		return "", nonRetryable(activities.ErrGitError, fmt.Sprintf("create work dir: %v", err))
	}
	unlock := a.lock(dir)
	defer unlock()
	if _, err := os.Stat(filepath.Join(dir, "HEAD")); err == nil {
		if _, _, err := a.git(ctx, runOpts{dir: dir}, "rev-parse", "--git-dir"); err == nil {
			return dir, nil
		}
		// A crash during init can leave a directory git does not accept;
		// it is only a cache.
		if err := os.RemoveAll(dir); err != nil {
			return "", nonRetryable(activities.ErrGitError, fmt.Sprintf("remove broken cache %s: %v", dir, err))
		}
	}
	if _, _, err := a.git(ctx, runOpts{}, "init", "--bare", "--quiet", "--", dir); err != nil {
		return "", nonRetryable(activities.ErrGitError, fmt.Sprintf("create cache repository: %v", err))
	}
	return dir, nil
}

// trackingRef is where a fetched remote ref is kept in the cache.
func trackingRef(ref string) string {
	return "refs/stagehand/" + strings.TrimPrefix(ref, "refs/")
}

// fetchRef fetches one ref from the remote into the cache and returns the
// commit it points to; found is false when the remote has no such ref.
func (a *Activities) fetchRef(ctx context.Context, dir string, rem remote, ref string) (sha string, found bool, err error) {
	o := runOpts{dir: dir, env: rem.env(), red: rem.red}
	_, _, err = a.git(ctx, o, "fetch", "--quiet", "--no-tags", "--no-write-fetch-head",
		"--", rem.addr, "+"+ref+":"+trackingRef(ref))
	if err != nil {
		var ge *gitError
		if errors.As(err, &ge) && strings.Contains(ge.stderr, "couldn't find remote ref") {
			return "", false, nil
		}
		return "", false, classifyRemote("fetch "+ref+" from "+rem.display(), err)
	}
	sha, _, err = a.git(ctx, o, "rev-parse", "--verify", "--quiet", trackingRef(ref)+"^{commit}")
	if err != nil {
		return "", false, fmt.Errorf("read fetched %s: %w", ref, err)
	}
	return sha, true, nil
}

// isAncestor reports whether commit a is reachable from b.
func (a *Activities) isAncestor(ctx context.Context, o runOpts, anc, desc string) (bool, error) {
	_, code, err := a.git(ctx, o, "merge-base", "--is-ancestor", anc, desc)
	switch {
	case err == nil:
		return true, nil
	case code == 1:
		return false, nil
	default:
		return false, fmt.Errorf("compare %s and %s: %w", short(anc), short(desc), err)
	}
}

// mergeCommitOf finds the commit that brought prHead into the target's
// first-parent history: normally the merge whose second parent is prHead.
// If the PR was fast-forwarded (prHead is itself on the first-parent line)
// the PR head is that commit.
func (a *Activities) mergeCommitOf(ctx context.Context, o runOpts, prHead, targetHead string) (string, error) {
	if prHead == targetHead {
		return prHead, nil
	}
	listing, _, err := a.git(ctx, o, "rev-list", "--ancestry-path", "--parents", prHead+".."+targetHead)
	if err != nil {
		return "", fmt.Errorf("find the merge of %s: %w", short(prHead), err)
	}
	// Every commit on the ancestry path descends from prHead. Walk the
	// target's first parents while they stay on that path: the last one
	// reached is where prHead entered the line.
	firstParent := map[string]string{}
	for line := range strings.SplitSeq(listing, "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 {
			firstParent[f[0]] = f[1]
		}
	}
	c := targetHead
	for {
		p, ok := firstParent[c]
		if !ok {
			break
		}
		if p == prHead {
			// prHead is itself on the first-parent line: the PR was
			// fast-forwarded in, so no merge commit exists for it.
			return prHead, nil
		}
		if _, onPath := firstParent[p]; !onPath {
			break
		}
		c = p
	}
	return c, nil
}

// mergedCommit reports whether the commit named by sha (full or a prefix)
// is in the target's history, and if so the full sha and the commit that
// merged it. The cache holds every ancestor of the fetched target, so a
// commit it cannot resolve is not merged.
func (a *Activities) mergedCommit(ctx context.Context, o runOpts, sha, targetHead string) (full, merge string, ok bool, err error) {
	full, code, err := a.git(ctx, o, "rev-parse", "--verify", "--quiet", "--end-of-options", strings.ToLower(sha)+"^{commit}")
	if err != nil {
		if code == 1 || code == 128 {
			// Unknown here, or a prefix that names several objects:
			// either way not something we can call merged.
			return "", "", false, nil
		}
		return "", "", false, fmt.Errorf("resolve %s: %w", sha, err)
	}
	merged, err := a.isAncestor(ctx, o, full, targetHead)
	if err != nil || !merged {
		return "", "", false, err
	}
	merge, err = a.mergeCommitOf(ctx, o, full, targetHead)
	if err != nil {
		return "", "", false, err
	}
	return full, merge, true, nil
}

// findMergeByMessage looks on the target's first-parent line for a merge
// commit with exactly our message, and returns it and its second parent.
func (a *Activities) findMergeByMessage(ctx context.Context, o runOpts, targetHead, message string) (commit, prHead string, ok bool, err error) {
	subject, _, _ := strings.Cut(message, "\n")
	listing, _, err := a.git(ctx, o, "log", "--first-parent", "--merges", "--fixed-strings",
		"--grep="+subject, "--format=%H %P%x09%s", targetHead)
	if err != nil {
		return "", "", false, fmt.Errorf("search %s for %q: %w", short(targetHead), subject, err)
	}
	for line := range strings.SplitSeq(listing, "\n") {
		shas, subj, _ := strings.Cut(line, "\t")
		f := strings.Fields(shas)
		if subj == subject && len(f) >= 3 {
			return f[0], f[2], true, nil
		}
	}
	return "", "", false, nil
}

// buildMerge makes the --no-ff merge commit of prHead into targetHead
// without touching any work tree. A conflict is permanent: someone has to
// update the pull request.
func (a *Activities) buildMerge(ctx context.Context, o runOpts, author []string, targetHead, prHead, message string) (string, error) {
	out, code, err := a.git(ctx, o, "merge-tree", "--write-tree", "-z", "--name-only", "--no-messages", targetHead, prHead)
	if err != nil && code != 1 {
		return "", fmt.Errorf("merge %s into %s: %w", short(prHead), short(targetHead), err)
	}
	parts := strings.Split(strings.TrimRight(out, "\x00"), "\x00")
	if code == 1 {
		var files []string
		seen := map[string]bool{}
		for _, f := range parts[1:] {
			if f != "" && !seen[f] {
				seen[f] = true
				files = append(files, f)
			}
		}
		return "", nonRetryable(activities.ErrMergeConflict,
			fmt.Sprintf("merging %s into %s conflicts in %d file(s): %s", short(prHead), short(targetHead), len(files), strings.Join(files, ", ")))
	}
	tree := parts[0]
	co := o
	co.env = author
	co.stdin = message + "\n"
	// --no-gpg-sign: a worker's global commit.gpgSign would otherwise make
	// commit-tree wait for a key it does not have.
	commit, _, err := a.git(ctx, co, "commit-tree", "--no-gpg-sign", tree, "-p", targetHead, "-p", prHead)
	if err != nil {
		return "", fmt.Errorf("write merge commit: %w", err)
	}
	return commit, nil
}

// errPushRace marks a push rejected because the branch moved since the
// fetch: the merge must be rebuilt on the new head.
var errPushRace = errors.New("target branch moved")

func (a *Activities) push(ctx context.Context, dir string, rem remote, commit, ref string) error {
	o := runOpts{dir: dir, env: rem.env(), red: rem.red}
	// The cache is ours: hooks from the worker's global core.hooksPath
	// have no business running on its pushes.
	out, _, err := a.git(ctx, o, "-c", "core.hooksPath=/dev/null", "push", "--porcelain", "--", rem.addr, commit+":"+ref)
	if err == nil {
		return nil
	}
	var ge *gitError
	if errors.As(err, &ge) {
		all := out + "\n" + ge.stderr
		switch {
		case strings.Contains(all, "[remote rejected]"):
			// A server-side hook or branch protection said no; pushing
			// the same thing again will not change its mind.
			return nonRetryable(activities.ErrPushRejected,
				fmt.Sprintf("push to %s on %s: %s", ref, rem.display(), rem.red.clean(pushStatus(out, ge.stderr))))
		case strings.Contains(all, "[rejected]"), strings.Contains(all, "non-fast-forward"),
			strings.Contains(all, "fetch first"), strings.Contains(all, "stale info"):
			return errPushRace
		}
	}
	return classifyRemote("push to "+ref+" on "+rem.display(), err)
}

// pushStatus says why a ref was refused: the reason from `git push
// --porcelain` ("[remote rejected] (pre-receive hook declined)") and what
// the server's hooks printed (the "remote:" lines), which is usually the
// actual policy.
func pushStatus(stdout, stderr string) string {
	var parts []string
	for line := range strings.SplitSeq(stdout, "\n") {
		if strings.HasPrefix(line, "!") {
			f := strings.SplitN(line, "\t", 3)
			parts = append(parts, strings.TrimSpace(f[len(f)-1]))
		}
	}
	for part := range strings.SplitSeq(stderr, "; ") {
		if msg, ok := strings.CutPrefix(part, "remote: "); ok && strings.TrimSpace(msg) != "" {
			parts = append(parts, "remote: "+strings.TrimSpace(msg))
		}
	}
	if len(parts) == 0 {
		return stderr
	}
	return strings.Join(parts, "; ")
}

func short(sha string) string {
	if len(sha) > 8 {
		return sha[:8]
	}
	return sha
}
