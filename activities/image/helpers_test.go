package image

import (
	"bytes"
	"log/slog"
	"sync"
	"testing"

	"github.com/stagehand-dev/stagehand/internal/steptest"
)

// syncBuffer is a log sink tests read while steps write to it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// newLogger returns a logger writing text to the returned buffer.
func newLogger() (*slog.Logger, *syncBuffer) {
	var b syncBuffer
	return slog.New(slog.NewTextHandler(&b, nil)), &b
}

// runStep runs a step type the way a worker does (see steptest); the
// result's Heartbeats are the JSON of each heartbeat's details.
func runStep(t testing.TB, a *Activities, name string, with map[string]any) steptest.Result {
	t.Helper()
	return steptest.RunStep(t, StepTypes(a), name, with, steptest.StepID("img"))
}

func mustStep(t testing.TB, a *Activities, name string, with map[string]any) steptest.Result {
	t.Helper()
	return steptest.MustStep(t, StepTypes(a), name, with, steptest.StepID("img"))
}
