package git

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/google/go-github/v92/github"

	"github.com/stagehand-dev/stagehand/activities"
	"github.com/stagehand-dev/stagehand/activities/secrets"
)

// mergeGitHub merges through the GitHub REST API. It reads the pull request
// first so that a merged one is reported rather than merged again, and it
// pins the merge to the head it read (the API's sha guard) so a push to the
// PR between the read and the merge is refused rather than merged untested.
func (a *Activities) mergeGitHub(ctx context.Context, in MergeInput) (MergeOutput, error) {
	owner, name, ok := strings.Cut(in.Repo, "/")
	if !ok || owner == "" || name == "" || strings.Contains(name, "/") {
		return MergeOutput{}, nonRetryable(activities.ErrInvalidArguments, fmt.Sprintf("repo %q: want owner/name", in.Repo))
	}
	if in.PR <= 0 {
		return MergeOutput{}, nonRetryable(activities.ErrInvalidArguments, "provider github needs pr")
	}
	if in.TokenRef == "" {
		return MergeOutput{}, nonRetryable(activities.ErrInvalidArguments, "provider github needs tokenRef (e.g. env:GITHUB_TOKEN)")
	}
	if in.Remote != "" || in.PRBranch != "" || in.TargetBranch != "" || in.AuthorName != "" || in.AuthorEmail != "" {
		return MergeOutput{}, nonRetryable(activities.ErrInvalidArguments,
			"remote, prBranch, targetBranch, authorName and authorEmail belong to provider git (GitHub knows the PR's branches)")
	}
	method := orDefault(in.Method, "merge")
	switch method {
	case "merge", "squash", "rebase":
	default:
		return MergeOutput{}, nonRetryable(activities.ErrInvalidArguments, fmt.Sprintf("method %q: want merge, squash or rebase", in.Method))
	}
	apiURL := orDefault(in.APIURL, "https://api.github.com/")
	if u, err := url.Parse(apiURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil {
		return MergeOutput{}, nonRetryable(activities.ErrInvalidArguments, fmt.Sprintf("apiURL %q: want an http(s) URL without credentials", RedactURLs(apiURL)))
	}
	if !strings.HasSuffix(apiURL, "/") {
		apiURL += "/"
	}
	apiHost, _ := secrets.URLHost(apiURL)
	token, err := a.resolveSecret(ctx, in.TokenRef, secrets.Use{Host: apiHost, Plaintext: strings.HasPrefix(strings.ToLower(apiURL), "http:")})
	if err != nil {
		return MergeOutput{}, err
	}
	red := newRedactor()
	red.add(token)
	client, err := github.NewClient(
		github.WithHTTPClient(sameHostRedirects(a.httpClient())),
		github.WithAuthToken(token),
		github.WithURLs(&apiURL, nil),
		github.WithUserAgent("stagehand"),
	)
	if err != nil {
		return MergeOutput{}, nonRetryable(activities.ErrInvalidArguments, red.clean(fmt.Sprintf("github client: %v", err)))
	}
	pr := int(in.PR)
	what := fmt.Sprintf("pull request %s#%d", in.Repo, pr)
	log := logger(ctx)

	got, _, err := client.PullRequests.Get(ctx, owner, name, pr)
	if err != nil {
		return MergeOutput{}, classifyGitHub("get "+what, err, red)
	}
	out := MergeOutput{
		Provider:     ProviderGitHub,
		PR:           pr,
		TargetBranch: got.GetBase().GetRef(),
		PRHead:       got.GetHead().GetSHA(),
	}
	if got.GetMerged() {
		log.Info("pull request already merged", "repo", in.Repo, "pr", pr, "mergeCommit", got.GetMergeCommitSHA())
		out.MergeCommit, out.AlreadyMerged = got.GetMergeCommitSHA(), true
		return out.withShort(), nil
	}
	if got.GetState() == "closed" {
		return MergeOutput{}, nonRetryable(activities.ErrMergeBlocked, what+" is closed without being merged")
	}
	if in.ExpectHead != "" && !strings.HasPrefix(out.PRHead, strings.ToLower(in.ExpectHead)) {
		return MergeOutput{}, nonRetryable(activities.ErrHeadMoved,
			fmt.Sprintf("%s head is %s, not the tested %s: it changed after it was checked", what, short(out.PRHead), in.ExpectHead))
	}
	// GitHub computes mergeability in the background and reports null
	// until it knows; only a definite false is worth stopping for here.
	if got.Mergeable != nil && !*got.Mergeable {
		return MergeOutput{}, nonRetryable(activities.ErrMergeBlocked,
			fmt.Sprintf("%s is not mergeable (mergeable_state %q)", what, got.GetMergeableState()))
	}

	opts := &github.PullRequestOptions{MergeMethod: method, SHA: out.PRHead}
	commitMessage := ""
	if in.Message != "" {
		title, body, _ := strings.Cut(in.Message, "\n")
		opts.CommitTitle = title
		commitMessage = strings.TrimLeft(body, "\n")
	}
	res, _, err := client.PullRequests.Merge(ctx, owner, name, pr, commitMessage, opts)
	if err != nil {
		stepErr := classifyGitHub("merge "+what, err, red)
		if isType(stepErr, activities.ErrMergeBlocked) {
			// Someone (or our own earlier attempt whose reply was lost)
			// may have merged it since we looked: that is a success.
			if again, _, gerr := client.PullRequests.Get(ctx, owner, name, pr); gerr == nil && again.GetMerged() {
				out.MergeCommit, out.AlreadyMerged = again.GetMergeCommitSHA(), true
				out.PRHead = again.GetHead().GetSHA()
				return out.withShort(), nil
			}
		}
		return MergeOutput{}, stepErr
	}
	if !res.GetMerged() || res.GetSHA() == "" {
		return MergeOutput{}, nonRetryable(activities.ErrMergeBlocked, fmt.Sprintf("merge %s: GitHub did not merge: %s", what, red.clean(res.GetMessage())))
	}
	log.Info("merged pull request", "repo", in.Repo, "pr", pr, "method", method, "mergeCommit", res.GetSHA())
	out.MergeCommit = res.GetSHA()
	return out.withShort(), nil
}

// classifyGitHub maps go-github errors onto step errors. Only GitHub's own
// message and the status code are kept: they name the problem, and the
// request URL adds nothing the step does not already say.
func classifyGitHub(what string, err error, red *redactor) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	var rl *github.RateLimitError
	if errors.As(err, &rl) {
		delay := time.Until(rl.Rate.Reset.Time)
		return retryableAfter(activities.ErrGitHubRateLimited, red.clean(fmt.Sprintf("%s: rate limited: %s", what, rl.Message)), max(delay, time.Second))
	}
	var abuse *github.AbuseRateLimitError
	if errors.As(err, &abuse) {
		delay := time.Minute
		if abuse.RetryAfter != nil {
			delay = *abuse.RetryAfter
		}
		return retryableAfter(activities.ErrGitHubRateLimited, red.clean(fmt.Sprintf("%s: secondary rate limit: %s", what, abuse.Message)), delay)
	}
	var er *github.ErrorResponse
	if errors.As(err, &er) && er.Response != nil {
		code := er.Response.StatusCode
		msg := red.clean(fmt.Sprintf("%s: GitHub said %d %s: %s", what, code, http.StatusText(code), er.Message))
		switch {
		case code == http.StatusUnauthorized || code == http.StatusForbidden:
			return nonRetryable(activities.ErrGitHubAuth, msg)
		case code == http.StatusNotFound:
			// GitHub also answers 404 for private repositories the token
			// cannot see.
			return nonRetryable(activities.ErrGitHubNotFound, msg+" (or the token cannot see it)")
		case code == http.StatusMethodNotAllowed || code == http.StatusConflict || code == http.StatusUnprocessableEntity:
			// 405: not mergeable (checks, reviews, conflicts); 409: the
			// head moved past the sha we pinned — merging the new head
			// would skip the checks the run just did; 422: bad method
			// for this repository's settings.
			return nonRetryable(activities.ErrMergeBlocked, msg)
		case code == http.StatusTooManyRequests || code >= 500:
			return retryable(activities.ErrGitHubUnavailable, msg)
		default:
			return nonRetryable(activities.ErrGitHubRejected, msg)
		}
	}
	// Transport errors (url.Error) carry the request URL; keep the
	// underlying reason only.
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return retryable(activities.ErrGitHubUnavailable, red.clean(fmt.Sprintf("%s: %v", what, err)))
}

func isType(err error, errType string) bool {
	var appErr interface{ Type() string }
	return errors.As(err, &appErr) && appErr.Type() == errType
}

// sameHostRedirects is c following redirects only to the scheme and host
// of the first request. The API client adds the token to every request it
// sends, redirects included, and the secret policy allowed it for the API
// URL's host alone; a redirect elsewhere fails instead.
func sameHostRedirects(c *http.Client) *http.Client {
	cc := *c
	next := c.CheckRedirect
	cc.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		first := via[0].URL
		if req.URL.Scheme != first.Scheme || !strings.EqualFold(req.URL.Host, first.Host) {
			return fmt.Errorf("redirect from %s to %s refused: the token may go to %s only", first.Host, req.URL.Host, first.Host)
		}
		if next != nil {
			return next(req, via)
		}
		if len(via) >= 10 {
			return errors.New("stopped after 10 redirects")
		}
		return nil
	}
	return &cc
}
