package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
)

func noEnv(string) string { return "" }

func TestRunReportsBadInput(t *testing.T) {
	dir := t.TempDir()
	badRunbook := filepath.Join(dir, "runbooks")
	assert.NoError(t, os.Mkdir(badRunbook, 0o755))
	assert.NoError(t, os.WriteFile(filepath.Join(badRunbook, "x.yaml"), []byte("name: x\nsteps:\n  - id: a\n    uses: nope\n"), 0o644))
	typo := filepath.Join(dir, "typo.yaml")
	assert.NoError(t, os.WriteFile(typo, []byte("temporal: {adress: x}\n"), 0o644))

	cases := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"help", []string{"--help"}, 0, "stagehand-worker runs"},
		{"unknown flag", []string{"--nope"}, 2, "flag provided but not defined"},
		{"missing config", []string{"--config", filepath.Join(dir, "missing.yaml")}, 2, "read config"},
		{"config typo", []string{"--config", typo}, 2, `field adress not found`},
		{"bad runbook dir", []string{"--runbooks-dir", badRunbook, "--address", "127.0.0.1:1"}, 1, `x.yaml:4:5: steps[0].uses: unknown step type "nope"`},
		{"unreachable temporal", []string{"--address", "127.0.0.1:1"}, 1, "connect to Temporal at 127.0.0.1:1"},
		{"bad log level", []string{"--log-level", "loud"}, 1, `log.level "loud"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			code := run(tc.args, &stderr, noEnv)
			assert.Equal(t, tc.code, code, stderr.String())
			assert.Contains(t, stderr.String(), tc.want)
		})
	}
}
