package server

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/stagehand-dev/stagehand/activities/secrets"
)

// markerPrefix starts the line each start writes into the log file before
// the process writes anything, so "since this start" is the lines after
// the last marker.
const markerPrefix = "--- stagehand: start "

func markerLine(at time.Time, run string, argv0 string) string {
	if run == "" {
		run = "-"
	}
	return fmt.Sprintf("%s%s run %s command %s ---\n", markerPrefix, at.UTC().Format(time.RFC3339), run, argv0)
}

// readTail returns the last lines of the file (at most maxBytes read from
// its end, never the whole file) and, with sinceStart, only those after
// the last start marker. A missing file has no lines. A first line that
// starts mid-way (the read began inside it) is dropped.
func readTail(path string, maxBytes int64, sinceStart bool) ([]string, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open log file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("log file: %w", err)
	}
	size := fi.Size()
	off := max(size-maxBytes, 0)
	b, err := io.ReadAll(io.NewSectionReader(f, off, size-off))
	if err != nil {
		return nil, fmt.Errorf("read log file %s: %w", path, err)
	}
	if off > 0 {
		// The window began inside a line unless the byte before it ends one.
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		} else {
			b = nil
		}
	}
	text := strings.TrimRight(string(b), "\n")
	if text == "" {
		return nil, nil
	}
	lines := strings.Split(text, "\n")
	if sinceStart {
		for i := len(lines) - 1; i >= 0; i-- {
			if strings.HasPrefix(lines[i], markerPrefix) {
				lines = lines[i+1:]
				break
			}
		}
	}
	return lines, nil
}

// cleaner makes log lines fit to leave the activity: secret values
// replaced, each line cut to maxLineBytes, valid UTF-8.
type cleaner struct{ red *secrets.Redactor }

// minSecretLineBytes is the shortest line of a multi-line secret that is
// scrubbed on its own.
const minSecretLineBytes = 8

func newCleaner(values []string) cleaner {
	// Every non-empty value counts: the server's environment is the
	// operator's choice, and a short value printed is still a leak.
	red := secrets.NewRedactor("***", 1)
	red.Add(values...)
	// Lines are cleaned one at a time, so each line of a multi-line value
	// (a PEM key) is a value too; short ones ("}") are left out.
	for _, v := range values {
		if !strings.Contains(v, "\n") {
			continue
		}
		for l := range strings.SplitSeq(v, "\n") {
			if l = strings.TrimRight(l, "\r"); len(l) >= minSecretLineBytes {
				red.Add(l)
			}
		}
	}
	return cleaner{red: red}
}

func (c cleaner) line(s string) string {
	s = c.red.Clean(strings.TrimRight(s, "\r"))
	if len(s) > maxLineBytes {
		s = s[:maxLineBytes] + " …[line truncated]"
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

func (c cleaner) lines(in []string) []string {
	out := make([]string, len(in))
	for i, l := range in {
		out[i] = c.line(l)
	}
	return out
}

func (c cleaner) text(s string) string { return c.red.Clean(s) }

// lastN returns the last n elements.
func lastN(lines []string, n int) []string {
	if len(lines) > n {
		return lines[len(lines)-n:]
	}
	return lines
}

// patternMatch is one error pattern that matched.
type patternMatch struct {
	pattern string
	lines   []string
}

// maxMatchLines bounds the lines quoted per pattern.
const maxMatchLines = 20

// matchPatterns returns, per pattern in order, the (already cleaned) lines
// it matches.
func matchPatterns(patterns []*regexp.Regexp, lines []string) []patternMatch {
	var out []patternMatch
	for _, re := range patterns {
		var hit []string
		for _, l := range lines {
			if re.MatchString(l) {
				hit = append(hit, l)
			}
		}
		if len(hit) > 0 {
			out = append(out, patternMatch{pattern: re.String(), lines: lastN(hit, maxMatchLines)})
		}
	}
	return out
}

func compilePatterns(ps []string) ([]*regexp.Regexp, error) {
	out := make([]*regexp.Regexp, 0, len(ps))
	for i, p := range ps {
		re, err := regexp.Compile(p)
		if err != nil {
			return nil, fmt.Errorf("errorPatterns[%d] %q: %v", i, p, err)
		}
		out = append(out, re)
	}
	return out, nil
}

func tailText(lines []string) string {
	if len(lines) == 0 {
		return " (the log has no lines since the start)"
	}
	return "; last log lines:\n" + strings.Join(lines, "\n")
}
