package secrets

import (
	"slices"
	"strings"
	"sync"
)

// Redactor replaces the literal values of the secrets a step resolved in
// any text that leaves the activity (errors, outputs, log lines): drivers,
// engines and programs do not mean to echo credentials, but a DSN in an
// error, a tool's stderr or a script's echo might.
//
// It is safe for concurrent use: a step may add a value (a derived
// encoding) while a reader goroutine is already cleaning output lines.
// A nil *Redactor cleans nothing.
type Redactor struct {
	mask   string
	minLen int

	mu      sync.RWMutex
	values  []string // longest first
	longest int
}

// NewRedactor returns a Redactor that replaces each added value with mask
// and ignores values shorter than minLen bytes, which would blank out
// ordinary words of the text (callers choose: a password may be short, a
// token is not).
func NewRedactor(mask string, minLen int) *Redactor {
	return &Redactor{mask: mask, minLen: max(minLen, 1)}
}

// Add records values to be replaced. Encodings of a value (such as the
// base64 of a registry auth header) are not derived here: a caller that
// sends a value in another form adds that form too.
func (r *Redactor) Add(values ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, v := range values {
		if len(v) < r.minLen || slices.Contains(r.values, v) {
			continue
		}
		r.values = append(r.values, v)
		r.longest = max(r.longest, len(v))
	}
	// Longest first, so a secret that contains another is replaced whole.
	slices.SortStableFunc(r.values, func(x, y string) int { return len(y) - len(x) })
}

// Clean returns s with every recorded value replaced by the mask.
func (r *Redactor) Clean(s string) string {
	if r == nil {
		return s
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, v := range r.values {
		s = strings.ReplaceAll(s, v, r.mask)
	}
	return s
}

// Longest is the length in bytes of the longest recorded value (0 when
// there is none), for a reader that must keep a whole value in its buffer
// to be able to replace it.
func (r *Redactor) Longest() int {
	if r == nil {
		return 0
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.longest
}
