// Command testsummary reads `go test -json` on stdin and reports what a
// person needs from a long test run: one line per package as it finishes,
// then every failing test with its output, the skipped tests, and a last line
// of the form "N passed, N failed, N skipped". It exits 1 when anything
// failed — a test, a package (a panic in TestMain, a timeout) or a build —
// so `make test` fails even if the pipe hides go test's own status.
//
// Usage: go test -json ./... 2>&1 | testsummary
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"
)

func main() {
	os.Exit(summarize(os.Stdin, os.Stdout))
}

// event is one line of `go test -json` (cmd/test2json), including the
// build events go test emits since Go 1.24.
type event struct {
	Time        time.Time
	Action      string
	Package     string
	Test        string
	Elapsed     float64
	Output      string
	ImportPath  string
	FailedBuild string
}

type testKey struct{ pkg, test string }

type summary struct {
	out         io.Writer
	output      map[testKey]*strings.Builder // per test; test "" is the package
	buildOutput map[string]*strings.Builder  // per import path
	failedTests []testKey
	skipped     []testKey
	failedPkgs  []string // packages failing with no failing test of their own
	failedBuild map[string]bool
	testFailed  map[string]bool // package has at least one failing test
	passed      int
	events      int
}

func summarize(r io.Reader, w io.Writer) int {
	s := &summary{
		out:         w,
		output:      map[testKey]*strings.Builder{},
		buildOutput: map[string]*strings.Builder{},
		failedBuild: map[string]bool{},
		testFailed:  map[string]bool{},
	}
	sc := bufio.NewScanner(r)
	// Test output lines can be long (dumped histories, JSON); the default
	// 64 KiB limit would abort the summary mid-run.
	sc.Buffer(make([]byte, 1024*1024), 64*1024*1024)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if len(line) == 0 || line[0] != '{' || json.Unmarshal(line, &e) != nil {
			// Not an event: go vet output, "go: downloading", a build error
			// from an older go. Pass it through so nothing is hidden.
			fmt.Fprintln(w, string(line))
			continue
		}
		s.events++
		s.handle(e)
	}
	if err := sc.Err(); err != nil {
		fmt.Fprintf(w, "testsummary: reading input: %v\n", err)
		return 1
	}
	return s.report()
}

func (s *summary) buf(k testKey) *strings.Builder {
	b, ok := s.output[k]
	if !ok {
		b = &strings.Builder{}
		s.output[k] = b
	}
	return b
}

func (s *summary) handle(e event) {
	switch e.Action {
	case "build-output":
		b, ok := s.buildOutput[e.ImportPath]
		if !ok {
			b = &strings.Builder{}
			s.buildOutput[e.ImportPath] = b
		}
		b.WriteString(e.Output)
		return
	case "build-fail":
		s.failedBuild[e.ImportPath] = true
		return
	}
	k := testKey{e.Package, e.Test}
	switch e.Action {
	case "output":
		s.buf(k).WriteString(e.Output)
	case "pass":
		if e.Test != "" {
			s.passed++
			delete(s.output, k) // only failures' output is shown
		} else {
			fmt.Fprintf(s.out, "ok    %s (%.1fs)\n", e.Package, e.Elapsed)
		}
	case "skip":
		if e.Test != "" {
			s.skipped = append(s.skipped, k)
		}
		// A package with no test files is reported as skipped; not news.
	case "fail":
		if e.Test != "" {
			s.failedTests = append(s.failedTests, k)
			s.testFailed[e.Package] = true
			return
		}
		fmt.Fprintf(s.out, "FAIL  %s (%.1fs)\n", e.Package, e.Elapsed)
		// A failed build is reported from its build events instead.
		if !s.testFailed[e.Package] && e.FailedBuild == "" {
			s.failedPkgs = append(s.failedPkgs, e.Package)
		}
	}
}

func (s *summary) report() int {
	w := s.out
	builds := make([]string, 0, len(s.failedBuild))
	for p := range s.failedBuild {
		builds = append(builds, p)
	}
	sort.Strings(builds)
	for _, p := range builds {
		fmt.Fprintf(w, "\n=== BUILD FAILED: %s\n%s", p, s.buildOutput[p].String())
	}
	for _, p := range s.failedPkgs {
		fmt.Fprintf(w, "\n=== PACKAGE FAILED: %s\n%s", p, s.buf(testKey{p, ""}).String())
	}
	for _, k := range s.failedTests {
		fmt.Fprintf(w, "\n=== FAILED: %s %s\n%s", k.pkg, k.test, s.buf(k).String())
	}
	if len(s.skipped) > 0 {
		fmt.Fprintln(w, "\nskipped:")
		for _, k := range s.skipped {
			fmt.Fprintf(w, "  %s %s\n", k.pkg, k.test)
		}
	}
	if len(s.failedTests) > 0 {
		fmt.Fprintln(w, "\nfailed tests:")
		for _, k := range s.failedTests {
			fmt.Fprintf(w, "  %s %s\n", k.pkg, k.test)
		}
	}
	fmt.Fprintln(w)
	if n := len(builds); n > 0 {
		fmt.Fprintf(w, "%d packages failed to build\n", n)
	}
	if n := len(s.failedPkgs); n > 0 {
		fmt.Fprintf(w, "%d packages failed outside any test (see above)\n", n)
	}
	if s.events == 0 {
		fmt.Fprintln(w, "testsummary: no test events on stdin (did go test run with -json?)")
	}
	fmt.Fprintf(w, "%d passed, %d failed, %d skipped\n", s.passed, len(s.failedTests), len(s.skipped))
	if s.events == 0 {
		return 1
	}
	if len(s.failedTests) > 0 || len(s.failedPkgs) > 0 || len(builds) > 0 {
		return 1
	}
	return 0
}
