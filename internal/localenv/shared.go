package localenv

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"
)

// Shared is one harness's server (a database, an image engine, a control
// plane) as the tests of one package use it: started at most once per test
// binary by Shared and stopped by Main after the tests, or started for one
// test by New. Every harness in internal/ declares one package-level Shared
// and wraps its methods in its own Main/Shared/New, so they all skip, fail
// and clean up the same way.
//
// Under -short, Shared and New skip before starting anything. A start that
// fails (a missing program: the harness's Start returns the install hint)
// fails the test, never skips it; Shared remembers the failure, so every
// test of the binary fails with the same cause rather than retrying it.
type Shared[T any] struct {
	// Name names the server in failures: "start <Name>: <why>".
	Name string
	// Needs says what the tests need, in the -short skip message.
	Needs string
	// Timeout bounds one Start; zero leaves it to Start.
	Timeout time.Duration
	// Start starts a server; Stop stops it and removes its files.
	Start func(context.Context) (T, error)
	Stop  func(T) error

	// WithoutMain is what Shared does in a test binary whose TestMain does
	// not call Main, where nothing would stop the server after the last test.
	WithoutMain WithoutMain
	// RequireMainHint is the failure for WithoutMain == RequireMain: how to
	// add Main (or to use New instead).
	RequireMainHint string
	// StopFailsMain makes Main exit non-zero when the shared server cannot
	// be stopped; otherwise Main only reports it.
	StopFailsMain bool

	mu         sync.Mutex
	mainActive bool
	started    bool
	val        T
	err        error
}

// WithoutMain is Shared's policy for a test binary without Main.
type WithoutMain int

const (
	// StopAfterTest stops the server when the calling test ends; the next
	// test's Shared starts another.
	StopAfterTest WithoutMain = iota
	// LeaveRunning leaves the server to die with the test binary (its
	// processes carry a parent-death signal), temporary files and all.
	LeaveRunning
	// RequireMain fails the test with RequireMainHint, in every tier.
	RequireMain
)

func (s *Shared[T]) start() (T, error) { return s.startWith(s.Start) }

func (s *Shared[T]) startWith(start func(context.Context) (T, error)) (T, error) {
	ctx := context.Background()
	if s.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.Timeout)
		defer cancel()
	}
	return start(ctx)
}

// Main runs a package's tests (m.Run), then stops the shared server if one
// was started, and returns the exit code for os.Exit.
func (s *Shared[T]) Main(m *testing.M) int {
	s.mu.Lock()
	s.mainActive = true
	s.mu.Unlock()
	code := m.Run()
	if err := s.StopShared(); err != nil {
		fmt.Fprintf(os.Stderr, "stop %s after the tests: %v\n", s.Name, err)
		if s.StopFailsMain && code == 0 {
			code = 1
		}
	}
	return code
}

// StopShared stops the shared server, if one is running, and returns what
// its Stop returned. The next Shared starts a new one.
func (s *Shared[T]) StopShared() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.started {
		return nil
	}
	err := s.Stop(s.val)
	var zero T
	s.started, s.val = false, zero
	return err
}

// Shared returns the binary's shared server, starting it on first use.
func (s *Shared[T]) Shared(t testing.TB) T {
	t.Helper()
	s.mu.Lock()
	inMain := s.mainActive
	s.mu.Unlock()
	if s.WithoutMain == RequireMain && !inMain {
		// Before the -short skip, so a missing Main fails in both tiers.
		t.Fatal(s.RequireMainHint)
	}
	SkipIfShort(t, s.Needs)
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.started && s.err == nil {
		s.val, s.err = s.start()
		s.started = s.err == nil
		if s.started && !s.mainActive && s.WithoutMain == StopAfterTest {
			t.Cleanup(func() { _ = s.StopShared() })
		}
	}
	if s.err != nil {
		t.Fatalf("start %s: %v", s.Name, s.err)
	}
	return s.val
}

// New starts a server owned by one test and stops it when the test ends.
func (s *Shared[T]) New(t testing.TB) T {
	t.Helper()
	return s.NewWith(t, s.Start)
}

// NewWith is New with another start function (a variant of the server,
// such as one with TLS on), stopped and skipped the same way.
func (s *Shared[T]) NewWith(t testing.TB, start func(context.Context) (T, error)) T {
	t.Helper()
	SkipIfShort(t, s.Needs)
	v, err := s.startWith(start)
	if err != nil {
		t.Fatalf("start %s: %v", s.Name, err)
	}
	t.Cleanup(func() {
		if err := s.Stop(v); err != nil {
			t.Errorf("stop %s: %v", s.Name, err)
		}
	})
	return v
}
