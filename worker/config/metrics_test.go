package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestMetricsListen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "w.yaml")
	if err := os.WriteFile(path, []byte("metrics:\n  listen: 127.0.0.1:9090\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Metrics.Listen != "127.0.0.1:9090" {
		t.Fatalf("metrics.listen = %q", cfg.Metrics.Listen)
	}
	cfg.ApplyEnv(func(k string) string {
		if k == "STAGEHAND_METRICS_LISTEN" {
			return ":9191"
		}
		return ""
	})
	if cfg.Metrics.Listen != ":9191" {
		t.Fatalf("STAGEHAND_METRICS_LISTEN not applied: %q", cfg.Metrics.Listen)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"9090", "localhost", "http://127.0.0.1:9090/metrics"} {
		cfg.Metrics.Listen = bad
		err := cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), "metrics.listen") {
			t.Errorf("metrics.listen %q: got %v, want a metrics.listen error", bad, err)
		}
	}
	cfg.Metrics.Listen = ""
	if err := cfg.Validate(); err != nil {
		t.Fatalf("empty metrics.listen (off): %v", err)
	}
}
