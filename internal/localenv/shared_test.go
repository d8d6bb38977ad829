package localenv

import (
	"context"
	"errors"
	"testing"
)

// fakeServers counts starts and stops of a fake harness's servers.
type fakeServers struct{ started, stopped int }

func (f *fakeServers) shared(policy WithoutMain, startErr error) *Shared[int] {
	return &Shared[int]{
		Name: "fake", Needs: "nothing real",
		Start: func(context.Context) (int, error) {
			if startErr != nil {
				return 0, startErr
			}
			f.started++
			return f.started, nil
		},
		Stop:        func(int) error { f.stopped++; return nil },
		WithoutMain: policy,
	}
}

// Without Main, StopAfterTest stops the server with the test that started
// it and the next test gets a new one; LeaveRunning keeps one for all.
// Under -short both skip before starting anything.
func TestSharedWithoutMain(t *testing.T) {
	for _, tc := range []struct {
		policy             WithoutMain
		wantFirst, wantSec int
		wantStops          int
	}{
		{StopAfterTest, 1, 2, 2},
		{LeaveRunning, 1, 1, 0},
	} {
		var f fakeServers
		s := f.shared(tc.policy, nil)
		var got []int
		for range 2 {
			t.Run("test", func(t *testing.T) {
				a, b := s.Shared(t), s.Shared(t)
				if a != b {
					t.Errorf("policy %d: one test got two servers %d and %d", tc.policy, a, b)
				}
				got = append(got, a)
			})
		}
		if testing.Short() {
			if f.started != 0 || len(got) != 0 {
				t.Fatalf("policy %d under -short: started %d servers", tc.policy, f.started)
			}
			continue
		}
		if len(got) != 2 || got[0] != tc.wantFirst || got[1] != tc.wantSec || f.stopped != tc.wantStops {
			t.Errorf("policy %d: servers %v, %d stopped; want [%d %d], %d stopped",
				tc.policy, got, f.stopped, tc.wantFirst, tc.wantSec, tc.wantStops)
		}
	}
}

// A failed start is remembered: the next test fails with the same cause
// instead of starting again.
func TestSharedRemembersAFailedStart(t *testing.T) {
	if testing.Short() {
		t.Skip("Shared skips under -short before starting; TestSharedWithoutMain checks that")
	}
	calls := 0
	s := &Shared[int]{Name: "fake", Needs: "nothing", Start: func(context.Context) (int, error) {
		calls++
		return 0, errors.New("no such program; install it")
	}, Stop: func(int) error { return nil }}
	for range 2 {
		ft := &fatalRecorder{TB: t}
		func() {
			defer func() { _ = recover() }()
			s.Shared(ft)
		}()
		if !ft.failed {
			t.Fatal("Shared did not fail the test when Start failed")
		}
	}
	if calls != 1 {
		t.Fatalf("Start ran %d times, want 1", calls)
	}
}

// New stops its server when the test ends.
func TestNewStopsWithTheTest(t *testing.T) {
	var f fakeServers
	s := f.shared(StopAfterTest, nil)
	t.Run("inner", func(t *testing.T) { s.New(t) })
	if !testing.Short() && (f.started != 1 || f.stopped != 1) {
		t.Fatalf("started %d, stopped %d; want 1, 1", f.started, f.stopped)
	}
}

// fatalRecorder records Fatalf instead of ending the test.
type fatalRecorder struct {
	testing.TB
	failed bool
}

func (r *fatalRecorder) Fatalf(string, ...any) { r.failed = true; panic("fatal") }
