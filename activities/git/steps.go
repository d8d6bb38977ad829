package git

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/stagehand-dev/stagehand/activities"
	"github.com/stagehand-dev/stagehand/activities/steps"
)

// Providers of git.merge.
const (
	ProviderGit    = "git"
	ProviderGitHub = "github"
)

// PRNumber is a pull request number. It accepts 42, "42" and "#42" because
// runbook parameters often arrive as strings.
type PRNumber int

// UnmarshalJSON implements json.Unmarshaler.
func (n *PRNumber) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if string(b) == "null" {
		return nil
	}
	s := string(b)
	if len(b) > 0 && b[0] == '"' {
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		s = strings.TrimPrefix(strings.TrimSpace(s), "#")
		if s == "" {
			*n = 0
			return nil
		}
	}
	v, err := strconv.Atoi(s)
	if err != nil || v < 0 {
		return fmt.Errorf("pr: want a pull request number, got %s", b)
	}
	*n = PRNumber(v)
	return nil
}

// MergeInput is the `with` of a git.merge step. Which keys apply depends on
// the provider; keys of the other provider are an error rather than
// silently ignored.
type MergeInput struct {
	// Provider is git (merge with git against Remote) or github (merge
	// through the GitHub API).
	Provider string `json:"provider"`
	// PR is the pull request number: required for github, used in the
	// merge message for git.
	PR PRNumber `json:"pr,omitempty"`
	// TokenRef is a secret reference (env:NAME, secret:NAME/KEY): the API
	// token for github, an HTTPS token for git.
	TokenRef string `json:"tokenRef,omitempty"`
	// ExpectHead, when set, is the commit (full or a prefix such as the
	// 8-character sha in a PR image tag) that was tested; the merge is
	// refused with HeadMoved if the pull request has moved on since.
	ExpectHead string `json:"expectHead,omitempty"`

	// Remote is the git remote: a URL or a path (git only).
	Remote string `json:"remote,omitempty"`
	// TargetBranch is the branch merged into; default main (git only;
	// GitHub knows the PR's base).
	TargetBranch string `json:"targetBranch,omitempty"`
	// PRBranch is the pull request's branch on Remote, e.g. pr-42 or
	// refs/pull/42/head (git only).
	PRBranch string `json:"prBranch,omitempty"`
	// Message replaces "Merge pull request #42 from pr-42" (git) or the
	// commit title GitHub would use (github).
	Message     string `json:"message,omitempty"`
	AuthorName  string `json:"authorName,omitempty"`
	AuthorEmail string `json:"authorEmail,omitempty"`

	// Repo is owner/name (github only).
	Repo string `json:"repo,omitempty"`
	// Method is merge (default), squash or rebase.
	Method string `json:"method,omitempty"`
	// APIURL is the REST API root; default https://api.github.com/, or
	// https://HOST/api/v3/ for GitHub Enterprise Server.
	APIURL string `json:"apiURL,omitempty"`
}

func (in MergeInput) targetBranch() string {
	if in.TargetBranch != "" {
		return in.TargetBranch
	}
	return "main"
}

// MergeOutput is the same for both providers, so later steps need not care
// which one merged.
type MergeOutput struct {
	Provider string `json:"provider"`
	// MergeCommit is the full sha of the commit on the target branch that
	// merged the pull request (for squash and rebase, GitHub's resulting
	// commit).
	MergeCommit string `json:"mergeCommit"`
	// ShortSHA is MergeCommit's first 8 characters: production images are
	// tagged prod-<shortSha>-<unix seconds>.
	ShortSHA string `json:"shortSha"`
	// AlreadyMerged is true when the pull request had been merged before
	// this attempt (a retry, a replay, or a person who merged by hand).
	AlreadyMerged bool   `json:"alreadyMerged"`
	TargetBranch  string `json:"targetBranch"`
	// PRHead is the pull request head commit that was merged.
	PRHead string `json:"prHead"`
	PR     int    `json:"pr,omitempty"`
}

func (o MergeOutput) withShort() MergeOutput {
	o.ShortSHA = short(o.MergeCommit)
	return o
}

// Merge merges a pull request once: a pull request that is already merged is
// a success with AlreadyMerged set.
func (a *Activities) Merge(ctx context.Context, in MergeInput) (MergeOutput, error) {
	if in.ExpectHead != "" && !isHex(in.ExpectHead) {
		return MergeOutput{}, nonRetryable(activities.ErrInvalidArguments, fmt.Sprintf("expectHead %q is not a commit sha", in.ExpectHead))
	}
	switch in.Provider {
	case ProviderGit:
		return a.mergePlain(ctx, in)
	case ProviderGitHub:
		return a.mergeGitHub(ctx, in)
	case "":
		return MergeOutput{}, nonRetryable(activities.ErrInvalidArguments, "provider is required: git or github")
	default:
		return MergeOutput{}, nonRetryable(activities.ErrInvalidArguments, fmt.Sprintf("unknown provider %q: want git or github", in.Provider))
	}
}

func isHex(s string) bool {
	for _, c := range strings.ToLower(s) {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return s != ""
}

// HeadCommitInput is the `with` of a git.headCommit step.
type HeadCommitInput struct {
	Remote string `json:"remote"`
	// Branch defaults to main.
	Branch   string `json:"branch,omitempty"`
	TokenRef string `json:"tokenRef,omitempty"`
}

// HeadCommitOutput is a branch's head commit.
type HeadCommitOutput struct {
	SHA      string `json:"sha"`
	ShortSHA string `json:"shortSha"`
}

// HeadCommit reads a branch's head from the remote without fetching it, e.g.
// to verify that production runs the commit a merge produced.
func (a *Activities) HeadCommit(ctx context.Context, in HeadCommitInput) (HeadCommitOutput, error) {
	if in.Remote == "" {
		return HeadCommitOutput{}, nonRetryable(activities.ErrInvalidArguments, "remote is required")
	}
	branch := orDefault(in.Branch, "main")
	red := newRedactor()
	rem, err := a.remoteFor(ctx, in.Remote, in.TokenRef, red)
	if err != nil {
		return HeadCommitOutput{}, err
	}
	ref, err := a.branchRef(ctx, "branch", branch)
	if err != nil {
		return HeadCommitOutput{}, err
	}
	sha, found, err := a.lsRemote(ctx, rem, ref)
	if err != nil {
		return HeadCommitOutput{}, err
	}
	if found {
		return HeadCommitOutput{SHA: sha, ShortSHA: short(sha)}, nil
	}
	return HeadCommitOutput{}, nonRetryable(activities.ErrBranchNotFound, fmt.Sprintf("branch %s not found on %s", branch, rem.display()))
}

// StepTypes binds the git steps to their specs in activities/steps. a may
// be a zero Activities (tests that only need the catalogue).
func StepTypes(a *Activities) []activities.StepType {
	return []activities.StepType{
		activities.Implement(steps.Spec("git.merge"), a.Merge),
		activities.Implement(steps.Spec("git.headCommit"), a.HeadCommit),
		activities.Implement(steps.Spec("git.checkout"), a.Checkout),
		activities.Implement(steps.Spec("git.commitPush"), a.CommitPush),
		activities.Implement(steps.Spec("git.state"), a.State),
		activities.Implement(steps.Spec("git.commit"), a.Commit),
		activities.Implement(steps.Spec("git.restore"), a.Restore),
	}
}
