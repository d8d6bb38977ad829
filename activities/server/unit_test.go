package server

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stagehand-dev/stagehand/activities"
	"github.com/stagehand-dev/stagehand/internal/steptest"
)

func validConfig(t *testing.T) Config {
	t.Helper()
	return Config{
		Dir:       t.TempDir(),
		Command:   []string{"sh", "-c", "sleep 1"},
		HealthURL: "http://127.0.0.1:7007/.backstage/health/v1/readiness",
	}
}

func TestValidate(t *testing.T) {
	if err := validConfig(t).Validate("portal"); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	file := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		edit func(*Config)
		want []string
	}{
		{"relative dir", func(c *Config) { c.Dir = "portal" }, []string{`dir "portal" is not an absolute path`}},
		{"missing dir", func(c *Config) { c.Dir = "/nonexistent/portal" }, []string{"dir /nonexistent/portal:"}},
		{"dir is a file", func(c *Config) { c.Dir = file }, []string{"is not a directory"}},
		{"empty command", func(c *Config) { c.Command = nil }, []string{"command is empty"}},
		{"unknown program", func(c *Config) { c.Command = []string{"no-such-program-xyz"} }, []string{`program "no-such-program-xyz"`}},
		{"relative program", func(c *Config) { c.Command = []string{"./node"} }, []string{"a relative path"}},
		{"no health URL", func(c *Config) { c.HealthURL = "" }, []string{"healthURL is empty"}},
		{"ftp health URL", func(c *Config) { c.HealthURL = "ftp://x/" }, []string{`healthURL "ftp://x/"`}},
		{"health URL with user", func(c *Config) { c.HealthURL = "http://u:pw@x/" }, []string{"must not carry credentials"}},
		{"stop timeout", func(c *Config) { c.StopTimeout = 2 * time.Hour }, []string{"stopTimeout 2h0m0s"}},
		{"negative stop timeout", func(c *Config) { c.StopTimeout = -time.Second }, []string{"stopTimeout -1s"}},
		{"start timeout", func(c *Config) { c.StartTimeout = 3 * time.Hour }, []string{"startTimeout 3h0m0s"}},
		{"bad pattern", func(c *Config) { c.ErrorPatterns = []string{"ok", "(unclosed"} }, []string{"errorPatterns[1]"}},
		{"env name", func(c *Config) { c.Env = map[string]string{"1BAD": "x"} }, []string{`env: "1BAD" is not a variable name`}},
		{"secret ref", func(c *Config) { c.Env = map[string]string{"PW": "secret:nokey"} }, []string{"needs secret:NAME/KEY"}},
		{"env ref", func(c *Config) { c.Env = map[string]string{"PW": "env:a-b"} }, []string{`"env:a-b" does not name`}},
		{"inherit", func(c *Config) { c.InheritEnv = []string{"A B"} }, []string{`inheritEnv: "A B"`}},
		{"relative log file", func(c *Config) { c.LogFile = "server.log" }, []string{`logFile "server.log"`}},
		{"relative pid file", func(c *Config) { c.PidFile = "x.pid" }, []string{`pidFile "x.pid"`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := validConfig(t)
			tc.edit(&c)
			err := c.Validate("portal")
			if err == nil {
				t.Fatal("want an error")
			}
			for _, w := range append(tc.want, `server environment "portal"`) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
	// All problems at once.
	c := Config{Dir: "rel", HealthURL: "x", StopTimeout: -1}
	err := c.Validate("p")
	if n := len(strings.Split(err.Error(), "\n")); n != 4 {
		t.Errorf("want 4 problems (dir, command, healthURL, stopTimeout), got %d: %v", n, err)
	}
	if _, err := New(map[string]Config{"a": validConfig(t), "b": c}, nil); err == nil || !strings.Contains(err.Error(), `"b"`) {
		t.Errorf("New with a bad config: %v", err)
	}
}

func TestParsePidFile(t *testing.T) {
	good := `{"pid": 4242, "pgid": 4242, "startTime": 123456, "startedAt": "2026-11-30T18:00:00Z", "command": ["node", "index.js"], "run": "wf"}`
	p, err := parsePidFile([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if p.Pid != 4242 || p.Pgid != 4242 || p.StartTime != 123456 || p.Command[1] != "index.js" || p.Run != "wf" {
		t.Errorf("parsed %+v", p)
	}
	for _, bad := range []string{
		"4242\n",                                // a classic pid file, not ours: no start time to check
		`{"pid": 4242, "pgid": 4242}`,           // no start time
		`{"pid": 1, "pgid": 1, "startTime": 5}`, // init
		`{"pid": 42, "pgid": 42, "startTime": 5, "extra": 1}`,
		strings.Repeat(" ", maxPidFileBytes+1),
	} {
		if _, err := parsePidFile([]byte(bad)); err == nil {
			t.Errorf("parsePidFile(%.40q) accepted it", bad)
		}
	}
	// Write and read back, atomically in place.
	path := filepath.Join(t.TempDir(), "sub", "server.pid")
	if err := writePidFile(path, p); err != nil {
		t.Fatal(err)
	}
	back, found, err := readPidFile(path)
	if err != nil || !found || back.Pid != p.Pid || back.StartTime != p.StartTime || !back.StartedAt.Equal(p.StartedAt) {
		t.Errorf("read back %+v, %v, %v", back, found, err)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("temporary files left: %v", entries)
	}
	if _, found, err := readPidFile(path + ".missing"); found || err != nil {
		t.Errorf("missing pid file: found %v, %v", found, err)
	}
}

func TestParseStat(t *testing.T) {
	// comm with spaces and a ')' in it; starttime (field 22) is 98765.
	line := "4242 (node ) x) S 1 4242 4242 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 11 0 98765 1000 200 18446744073709551615"
	st, err := parseStat(line)
	if err != nil {
		t.Fatal(err)
	}
	if st.State != 'S' || st.Pgrp != 4242 || st.StartTime != 98765 || !st.live() {
		t.Errorf("parsed %+v", st)
	}
	if _, err := parseStat("4242 (node) S 1 2"); err == nil {
		t.Error("a short stat line was accepted")
	}
	if z, _ := parseStat(strings.Replace(line, ") S ", ") Z ", 1)); z.live() {
		t.Error("a zombie counts as live")
	}
	self, ok := readStat(os.Getpid())
	if !ok || self.StartTime == 0 {
		t.Fatalf("own stat: %+v %v", self, ok)
	}
}

// A pid file whose pid runs with another start time is someone else's
// process: identify says so, and nothing treats it as ours.
func TestIdentifyRefusesAReusedPid(t *testing.T) {
	self, _ := readStat(os.Getpid())
	if id := identify(PidFile{Pid: os.Getpid(), Pgid: self.Pgrp, StartTime: self.StartTime}); !id.ours || !id.leaderAlive {
		t.Errorf("own process not recognised: %+v", id)
	}
	id := identify(PidFile{Pid: os.Getpid(), Pgid: self.Pgrp, StartTime: self.StartTime + 1})
	if id.ours || !strings.Contains(id.why, "now another process") {
		t.Errorf("reused pid: %+v", id)
	}
	if id := identify(PidFile{Pid: 1 << 22, Pgid: 1 << 22, StartTime: 5}); id.ours || !strings.Contains(id.why, "not running") {
		t.Errorf("absent pid: %+v", id)
	}
}

func TestReadTail(t *testing.T) {
	path := filepath.Join(t.TempDir(), "server.log")
	var b strings.Builder
	b.WriteString("old 1\nBackend failed to start up (old)\n")
	b.WriteString(markerLine(time.Now(), "wf-1", "node"))
	b.WriteString("first run\n")
	b.WriteString(markerLine(time.Now(), "wf-2", "node"))
	for i := range 50 {
		fmt.Fprintf(&b, "line %d\n", i)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	since, err := readTail(path, maxTailReadBytes, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(since) != 50 || since[0] != "line 0" || since[49] != "line 49" {
		t.Errorf("since start: %d lines %q...", len(since), since[:min(3, len(since))])
	}
	all, _ := readTail(path, maxTailReadBytes, false)
	if len(all) != 55 || all[0] != "old 1" {
		t.Errorf("whole: %d lines", len(all))
	}
	// A small window starts mid-line: that partial line is dropped.
	small, _ := readTail(path, 20, false)
	if len(small) != 2 || small[1] != "line 49" {
		t.Errorf("window of 20 bytes: %q", small)
	}
	if l, err := readTail(path+".none", 100, true); l != nil || err != nil {
		t.Errorf("missing file: %v %v", l, err)
	}
}

func TestCleanerRedactsAndCuts(t *testing.T) {
	cl := newCleaner([]string{"s3cr3t", "-----BEGIN KEY-----\nAAAABBBBCCCC\n-----END KEY-----"})
	if got := cl.line("password=s3cr3t ok"); got != "password=*** ok" {
		t.Errorf("got %q", got)
	}
	if got := cl.line("AAAABBBBCCCC"); got != "***" {
		t.Errorf("a line of a multi-line secret: %q", got)
	}
	long := cl.line(strings.Repeat("x", 3*maxLineBytes))
	if len(long) > maxLineBytes+40 || !strings.HasSuffix(long, "[line truncated]") {
		t.Errorf("long line: %d bytes", len(long))
	}
}

// Step arguments are checked before anything runs, and an unknown
// environment names the known ones.
func TestArgumentsRefused(t *testing.T) {
	c := validConfig(t)
	a := &Activities{Servers: map[string]Config{"portal": c, "sandbox": c}}
	run := steptest.RunStep(t, StepTypes(a), "server.start", map[string]any{"environment": "prod"})
	steptest.WantAppError(t, run.Err, activities.ErrServerNotConfigured, true, []string{`"prod"`, "known: portal, sandbox"})
	run = steptest.RunStep(t, StepTypes(a), "server.stop", map[string]any{"environment": "portal", "timeout": "2h"})
	steptest.WantAppError(t, run.Err, activities.ErrInvalidArguments, true, []string{"above its bound 1h0m0s"})
	run = steptest.RunStep(t, StepTypes(a), "server.status", map[string]any{"environment": "portal", "expect": "up"})
	steptest.WantAppError(t, run.Err, activities.ErrInvalidArguments, true, []string{`expect "up"`})
	run = steptest.RunStep(t, StepTypes(a), "server.logs", map[string]any{"environment": "portal", "lines": 5000})
	steptest.WantAppError(t, run.Err, activities.ErrInvalidArguments, true, []string{"lines 5000"})
	run = steptest.RunStep(t, StepTypes(a), "server.logs", map[string]any{"environment": "portal", "errorPatterns": []any{"("}})
	steptest.WantAppError(t, run.Err, activities.ErrInvalidArguments, true, []string{"errorPatterns[2]"})
	run = steptest.RunStep(t, StepTypes(a), "server.start", map[string]any{"environment": "portal", "argv": []any{"sh"}})
	steptest.WantAppError(t, run.Err, activities.ErrInvalidArguments, true, []string{"argv"})
	var zero Activities
	run = steptest.RunStep(t, StepTypes(&zero), "server.status", map[string]any{"environment": "portal"})
	steptest.WantAppError(t, run.Err, activities.ErrServerNotConfigured, true, []string{"no environment of kind server"})
}
