package config

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A worker block that sets some options keeps the defaults of the rest.
func TestWorkerOptionsFromFile(t *testing.T) {
	cfg, err := Load(write(t, "worker: {identity: worker-a, workflowCacheSize: 300, stopTimeout: 45s}\n"))
	require.NoError(t, err)
	require.NoError(t, cfg.Validate())
	w := cfg.Worker
	assert.Equal(t, "worker-a", w.EffectiveIdentity())
	assert.Equal(t, 300, w.WorkflowCacheSize)
	assert.Equal(t, 45*time.Second, w.StopTimeout.D())
	assert.Equal(t, DefaultMaxConcurrentActivities, w.MaxConcurrentActivities)
	assert.Equal(t, DefaultWorkflowTaskPollers, w.WorkflowTaskPollers)

	cfg.ApplyEnv(func(k string) string {
		return map[string]string{"STAGEHAND_WORKER_IDENTITY": "worker-b", "STAGEHAND_ACTIVITY_POLLERS": "4"}[k]
	})
	require.NoError(t, cfg.Validate())
	assert.Equal(t, "worker-b", cfg.Worker.Identity)
	assert.Equal(t, 4, cfg.Worker.ActivityPollers)
	assert.Equal(t, 300, cfg.Worker.WorkflowCacheSize, "unset variables leave the file's value")
}

func TestWorkerOptionsProblems(t *testing.T) {
	o := DefaultWorkerOptions()
	assert.Empty(t, o.Problems())
	o.MaxConcurrentWorkflowTasks = 1
	o.StopTimeout = 0
	o.Identity = "a\nb"
	assert.Equal(t, []string{
		"worker.maxConcurrentWorkflowTasks 1: want 2..10000",
		"worker.stopTimeout 0s: want 1s..1h0m0s",
		"worker.identity: has control characters",
	}, o.Problems())
}

func TestDefaultIdentityNamesHostAndProcess(t *testing.T) {
	id := WorkerOptions{}.EffectiveIdentity()
	assert.Regexp(t, `^stagehand-worker@.+:\d+$`, id)
}
