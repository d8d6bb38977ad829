package db

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/testsuite"
)

// Table names with spaces are read whole from pg_restore's list, so a
// table that is in the dump is not taken for one created after it.
func TestTOCTableNames(t *testing.T) {
	for line, want := range map[string]string{
		"215; 1259 16386 TABLE public knex_migrations postgres": "public.knex_migrations",
		"215; 1259 16386 TABLE public knex_migrations ":         "public.knex_migrations",
		"216; 1259 16390 TABLE public my table backstage":       "public.my table",
		"217; 1259 16391 SEQUENCE public my_seq postgres":       "",
		";217; 1259 16391 TABLE public commented postgres":      "",
	} {
		got := ""
		if m := tocTableRE.FindStringSubmatch(line); m != nil {
			got = m[1] + "." + m[2]
		}
		if got != want {
			t.Errorf("%q: table %q, want %q", line, got, want)
		}
	}
}

// A dump or restore that runs longer than the heartbeat interval keeps
// heartbeating: otherwise the server times the attempt out after the
// step's heartbeat timeout and starts another one while it still runs.
func TestLongDumpHeartbeats(t *testing.T) {
	old := toolHeartbeatEvery
	toolHeartbeatEvery = 50 * time.Millisecond
	t.Cleanup(func() { toolHeartbeatEvery = old })
	dir := t.TempDir()
	fake := filepath.Join(dir, "pg_dump")
	if err := os.WriteFile(fake, []byte("#!/bin/sh\nsleep 1\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var beats []string
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestActivityEnvironment()
	env.SetOnActivityHeartbeatListener(func(_ *activity.Info, details converter.EncodedValues) {
		var s string
		_ = details.Get(&s)
		mu.Lock()
		beats = append(beats, s)
		mu.Unlock()
	})
	env.RegisterActivityWithOptions(func(ctx context.Context) error {
		d := Database{Driver: DriverPostgres, Host: "127.0.0.1", User: "u"}
		return d.dump(ctx, tools{dump: fake}, dir, "", "backstage_plugin_catalog", filepath.Join(dir, "out.dump"), newRedactor())
	}, activity.RegisterOptions{Name: "dump"})
	if _, err := env.ExecuteActivity("dump"); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	// The SDK throttles heartbeats (the first goes out at once): one
	// recorded while the tool ran shows the loop.
	if len(beats) == 0 || !strings.Contains(beats[0], "dump backstage_plugin_catalog: running for") {
		t.Fatalf("a 1s dump heartbeating every 50ms recorded %q", beats)
	}
}
