package git

import (
	"regexp"
	"time"

	"go.temporal.io/sdk/temporal"

	"github.com/stagehand-dev/stagehand/activities/secrets"
)

// Errors carry no cause: a cause is serialised into workflow history with
// its full text, and the texts of lower layers (url.Error, git's stderr) are
// exactly where URLs and credentials hide. The message is built from
// scrubbed parts instead.

func nonRetryable(errType, msg string) error {
	return temporal.NewNonRetryableApplicationError(msg, errType, nil)
}

func retryable(errType, msg string) error {
	return temporal.NewApplicationError(msg, errType)
}

func retryableAfter(errType, msg string, delay time.Duration) error {
	return temporal.NewApplicationErrorWithOptions(msg, errType, temporal.ApplicationErrorOptions{NextRetryDelay: delay})
}

// userInfoRE matches the user-info of a URL (scheme://user:password@host),
// which is where tokens sit in HTTPS remotes.
var userInfoRE = regexp.MustCompile(`([A-Za-z][A-Za-z0-9+.\-]*://)[^/@\s]+@`)

// RedactURLs replaces the user-info of every URL in s, keeping the scheme
// and host so the message still says which remote failed.
func RedactURLs(s string) string {
	return userInfoRE.ReplaceAllString(s, "${1}REDACTED@")
}

// redactor scrubs a message of URL user-info and of the literal values of
// the secrets this activity resolved.
type redactor struct{ values *secrets.Redactor }

// newRedactor: very short values would blank out ordinary words; tokens
// are long.
func newRedactor() *redactor { return &redactor{values: secrets.NewRedactor("REDACTED", 4)} }

func (r *redactor) add(secret string) { r.values.Add(secret) }

func (r *redactor) clean(s string) string { return r.values.Clean(RedactURLs(s)) }
