package git

import (
	"regexp"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
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
type redactor struct{ secrets []string }

func (r *redactor) add(secret string) {
	// Very short values would blank out ordinary words; tokens are long.
	if len(secret) >= 4 {
		r.secrets = append(r.secrets, secret)
	}
}

func (r *redactor) clean(s string) string {
	s = RedactURLs(s)
	for _, v := range r.secrets {
		s = strings.ReplaceAll(s, v, "REDACTED")
	}
	return s
}
