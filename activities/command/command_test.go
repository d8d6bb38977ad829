package command

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.temporal.io/sdk/converter"

	"github.com/stagehand-dev/stagehand/activities"
	"github.com/stagehand-dev/stagehand/internal/localenv"
	"github.com/stagehand-dev/stagehand/internal/steptest"
)

// runStep runs exec.run the way a worker does (see steptest).
func runStep(t testing.TB, a *Activities, with map[string]any) (map[string]any, error) {
	t.Helper()
	run := steptest.RunStep(t, StepTypes(a), "exec.run", with, steptest.StepID("bump"))
	return run.Outputs, run.Err
}

func sh(script string) []string { return []string{"/bin/sh", "-c", script, "sh"} }

func exists(t testing.TB, path string) bool {
	t.Helper()
	_, err := os.Stat(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return err == nil
}

// Nothing runs unless the whole request is within the command's entry: the
// marker file `touch` would create must not exist after any refusal, and
// does after the one allowed request.
func TestRefusedBeforeRunning(t *testing.T) {
	root := t.TempDir()
	outside := t.TempDir()
	if err := os.Mkdir(filepath.Join(root, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	// A work tree may contain a link out of the root.
	if err := os.Symlink(outside, filepath.Join(root, "escape")); err != nil {
		t.Fatal(err)
	}
	t.Setenv("STAGEHAND_TEST_REF", "value-of-the-ref")
	a := &Activities{Commands: map[string]Command{
		"mark": {Argv: []string{"touch"}, ArgPattern: `[a-z]+`, MaxArgs: 2, Dirs: []string{root},
			AllowEnv: []string{"NPM_TOKEN"}, Timeout: time.Minute},
		"yarn-bump": {Argv: []string{"true"}, Dirs: []string{root}},
	}}
	cases := []struct {
		name    string
		with    map[string]any
		errType string
		want    []string
	}{
		{"a command not on the list, even one on PATH", map[string]any{"command": "touch", "args": []string{"marker"}},
			activities.ErrCommandNotAllowed, []string{`"touch" is not in`, "allowed: mark, yarn-bump"}},
		{"an argument not matching the pattern", map[string]any{"command": "mark", "args": []string{"marker", "--reference=/etc/passwd"}},
			activities.ErrCommandNotAllowed, []string{"argument 2", "--reference=/etc/passwd", "[a-z]+"}},
		{"a partial match is no match", map[string]any{"command": "mark", "args": []string{"marker/x"}},
			activities.ErrCommandNotAllowed, []string{"argument 1", "marker/x"}},
		{"too many arguments", map[string]any{"command": "mark", "args": []string{"marker", "b", "c"}},
			activities.ErrCommandNotAllowed, []string{"3 extra arguments, at most 2"}},
		{"arguments to a command without a pattern", map[string]any{"command": "yarn-bump", "args": []string{"x"}},
			activities.ErrCommandNotAllowed, []string{"takes no extra arguments"}},
		{"a dir outside the roots via ..", map[string]any{"command": "mark", "args": []string{"marker"}, "dir": filepath.Join(root, "..", filepath.Base(outside))},
			activities.ErrCommandNotAllowed, []string{"outside the directories", outside}},
		{"a relative dir climbing out", map[string]any{"command": "mark", "args": []string{"marker"}, "dir": "../" + filepath.Base(outside)},
			activities.ErrCommandNotAllowed, []string{"outside the directories"}},
		{"a dir escaping through a symbolic link", map[string]any{"command": "mark", "args": []string{"marker"}, "dir": filepath.Join(root, "escape")},
			activities.ErrCommandNotAllowed, []string{"outside the directories", outside}},
		{"an env var not in allowEnv", map[string]any{"command": "mark", "args": []string{"marker"}, "env": map[string]string{"LD_PRELOAD": "env:STAGEHAND_TEST_REF"}},
			activities.ErrCommandNotAllowed, []string{"env LD_PRELOAD", "allowEnv: NPM_TOKEN"}},
		{"an env value instead of a reference", map[string]any{"command": "mark", "args": []string{"marker"}, "env": map[string]string{"NPM_TOKEN": "plain"}},
			activities.ErrInvalidArguments, []string{"NPM_TOKEN", "secret reference"}},
		{"an unresolvable reference", map[string]any{"command": "mark", "args": []string{"marker"}, "env": map[string]string{"NPM_TOKEN": "env:STAGEHAND_TEST_UNSET"}},
			activities.ErrSecretUnavailable, []string{"STAGEHAND_TEST_UNSET"}},
		{"a timeout above the bound", map[string]any{"command": "mark", "args": []string{"marker"}, "timeout": "2h"},
			activities.ErrCommandNotAllowed, []string{"timeout 2h0m0s is above its bound 1m0s"}},
		{"a malformed timeout", map[string]any{"command": "mark", "args": []string{"marker"}, "timeout": "soon"},
			activities.ErrInvalidArguments, []string{`timeout "soon"`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := runStep(t, a, c.with)
			steptest.WantAppError(t, err, c.errType, true, c.want, "value-of-the-ref")
			// "." too: a command run without its dir would run in the
			// worker's (here the test's) working directory.
			for _, dir := range []string{root, outside, filepath.Join(root, "sub"), "."} {
				if exists(t, filepath.Join(dir, "marker")) {
					t.Fatalf("the command ran: %s/marker exists", dir)
				}
			}
		})
	}

	// The same command, asked for within its entry, does run: the refusals
	// above are not a marker that could never appear.
	out, err := runStep(t, a, map[string]any{"command": "mark", "args": []string{"marker"}, "dir": "sub",
		"env": map[string]string{"NPM_TOKEN": "env:STAGEHAND_TEST_REF"}})
	if err != nil {
		t.Fatal(err)
	}
	if !exists(t, filepath.Join(root, "sub", "marker")) {
		t.Error("the allowed run did not create sub/marker")
	}
	if out["exitCode"] != float64(0) || out["command"] != "mark" {
		t.Errorf("outputs %v", out)
	}
}

// processGone reports whether pid has exited (a zombie that nobody reaps
// has exited too).
func processGone(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return true
	}
	state, _, ok := procStat(pid)
	return !ok || state == 'Z' || state == 'X'
}

// readPids waits for the program to have written n pids to file.
func readPids(t *testing.T, file string, n int) []int {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			t.Fatalf("pids file %q: %v", b, err)
		}
		pids = append(pids, pid)
	}
	if len(pids) != n {
		t.Fatalf("pids file holds %v, want %d pids", pids, n)
	}
	return pids
}

// A program that ignores SIGTERM, with a child and a grandchild that ignore
// it too (an ignored signal stays ignored across fork and exec): the
// timeout still kills all three, through their process group.
const stubbornScript = `trap "" TERM
echo $$ > pids
sh -c 'echo $$ >> pids; sleep 60 & echo $! >> pids; wait' &
echo started
wait`

func waitForFile(t *testing.T, path string, lines int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(path); err == nil && len(strings.Fields(string(b))) >= lines {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s was not written", path)
}

func TestTimeoutKillsTheProcessGroup(t *testing.T) {
	localenv.SkipIfShort(t, "a command that runs into its timeout")
	dir := t.TempDir()
	a := &Activities{KillGrace: 300 * time.Millisecond, Commands: map[string]Command{
		"stubborn": {Argv: sh(stubbornScript), Dirs: []string{dir}, Timeout: time.Minute},
	}}
	start := time.Now()
	_, err := runStep(t, a, map[string]any{"command": "stubborn", "timeout": "1s"})
	elapsed := time.Since(start)
	steptest.WantAppError(t, err, activities.ErrCommandTimeout, true, []string{`"stubborn" timed out after 1s`, "started"})
	if elapsed > 10*time.Second {
		t.Errorf("the step took %s: the kill did not work", elapsed)
	}
	for _, pid := range readPids(t, filepath.Join(dir, "pids"), 3) {
		if !processGone(pid) {
			t.Errorf("process %d is still running after the timeout", pid)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// A cancelled activity (the run was cancelled, or Temporal gave up on it)
// kills the group the same way.
func TestCancellationKillsTheProcessGroup(t *testing.T) {
	localenv.SkipIfShort(t, "a command killed on cancellation")
	dir := t.TempDir()
	a := &Activities{KillGrace: 300 * time.Millisecond, Commands: map[string]Command{
		"stubborn": {Argv: sh(stubbornScript), Dirs: []string{dir}},
	}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		waitForFile(t, filepath.Join(dir, "pids"), 3)
		cancel()
	}()
	_, err := a.Run(ctx, RunInput{Command: "stubborn"})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want a cancellation", err)
	}
	for _, pid := range readPids(t, filepath.Join(dir, "pids"), 3) {
		if !processGone(pid) {
			t.Errorf("process %d is still running after the cancellation", pid)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// A command that exits 0 but leaves a background process behind (which
// holds the output pipe) neither hangs the step nor leaks the process.
func TestLeftoverProcessesAreKilled(t *testing.T) {
	dir := t.TempDir()
	a := &Activities{Commands: map[string]Command{
		"daemonize": {Argv: sh(`sleep 60 & echo $! > pids; echo done`), Dirs: []string{dir}},
	}}
	start := time.Now()
	out, err := runStep(t, a, map[string]any{"command": "daemonize"})
	if err != nil {
		t.Fatal(err)
	}
	if out["tail"] != "done" {
		t.Errorf("tail %q", out["tail"])
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the step took %s", d)
	}
	pid := readPids(t, filepath.Join(dir, "pids"), 1)[0]
	if !processGone(pid) {
		t.Errorf("background process %d outlived the step", pid)
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

func TestTailIsBounded(t *testing.T) {
	dir := t.TempDir()
	var logBuf syncBuffer
	a := &Activities{TailLines: 25, Logger: slog.New(slog.NewTextHandler(&logBuf, nil)), Commands: map[string]Command{
		"seq":  {Argv: []string{"seq", "10000"}, Dirs: []string{dir}},
		"long": {Argv: sh(`head -c 300000 /dev/zero | tr '\0' x; echo; echo after`), Dirs: []string{dir}},
	}}
	out, err := runStep(t, a, map[string]any{"command": "seq"})
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(out["tail"].(string), "\n")
	if len(lines) != 25 || lines[0] != "9976" || lines[24] != "10000" {
		t.Errorf("tail has %d lines, %q ... %q; want 25, 9976 ... 10000", len(lines), lines[0], lines[len(lines)-1])
	}
	// Every line reaches the log, with the step and the command.
	logged := logBuf.String()
	if n := strings.Count(logged, "msg=\"command output\""); n != 10000 {
		t.Errorf("%d output lines logged, want 10000", n)
	}
	// The step is the activity id (the workflow uses the step's id; the
	// test environment numbers them).
	if !regexp.MustCompile(`workflowId=default-test-workflow-id runId=\S+ stepId=0 stepType=\S+ attempt=1 step=0 command=seq line=1\n`).MatchString(logged) {
		t.Errorf("log lacks the first line with step and command: %.300s", logged)
	}

	out, err = runStep(t, a, map[string]any{"command": "long"})
	if err != nil {
		t.Fatal(err)
	}
	lines = strings.Split(out["tail"].(string), "\n")
	if len(lines) != 2 || lines[1] != "after" || len(lines[0]) > maxLineBytes+50 || !strings.HasSuffix(lines[0], "[line truncated]") {
		t.Errorf("tail of a 300000-byte line: %d lines, first %d bytes, last %q", len(lines), len(lines[0]), lines[len(lines)-1])
	}
}

// Resolved secrets reach the program's environment, and whatever the
// program echoes of them is replaced in the tail, the error and the log.
// Nothing else of the worker's environment reaches it.
func TestSecretsAreScrubbed(t *testing.T) {
	dir := t.TempDir()
	const fixed, perRun = "s3cr3t-fixed-token-value", "per-run-npm-token-0123"
	t.Setenv("STAGEHAND_TEST_FIXED", fixed)
	t.Setenv("STAGEHAND_TEST_NPM", perRun)
	t.Setenv("STAGEHAND_TEST_WORKER_ONLY", "worker-private")
	var logBuf syncBuffer
	a := &Activities{Logger: slog.New(slog.NewTextHandler(&logBuf, nil)), Commands: map[string]Command{
		"echo-env": {
			Argv:       sh(`echo "fixed=$FIXED_TOKEN npm=$NPM_TOKEN mode=$MODE"; env; exit "$1"`),
			ArgPattern: `[0-9]`, Dirs: []string{dir},
			Env:      map[string]string{"FIXED_TOKEN": "env:STAGEHAND_TEST_FIXED", "MODE": "literal"},
			AllowEnv: []string{"NPM_TOKEN"},
		},
	}}
	with := func(code string) map[string]any {
		return map[string]any{"command": "echo-env", "args": []string{code}, "env": map[string]string{"NPM_TOKEN": "env:STAGEHAND_TEST_NPM"}}
	}
	out, err := runStep(t, a, with("0"))
	if err != nil {
		t.Fatal(err)
	}
	tail := out["tail"].(string)
	if !strings.Contains(tail, "fixed=*** npm=*** mode=literal") {
		t.Errorf("tail does not show the scrubbed line: %q", tail)
	}
	for _, leak := range []string{fixed, perRun, "worker-private", "STAGEHAND_TEST"} {
		if strings.Contains(tail, leak) {
			t.Errorf("tail contains %q: %q", leak, tail)
		}
		if strings.Contains(logBuf.String(), leak) {
			t.Errorf("log contains %q", leak)
		}
	}
	if !strings.Contains(logBuf.String(), "fixed=*** npm=***") {
		t.Errorf("log lacks the scrubbed line: %.500s", logBuf.String())
	}

	_, err = runStep(t, a, with("3"))
	steptest.WantAppError(t, err, activities.ErrCommandFailed, true, []string{"exited with code 3", "fixed=*** npm=***"}, fixed, perRun)
}

func TestNonZeroExitFails(t *testing.T) {
	dir := t.TempDir()
	a := &Activities{Commands: map[string]Command{
		"build": {Argv: sh(`echo "yarn build: compiling"; echo "error TS2304: Cannot find name 'foo'" >&2; exit 7`), Dirs: []string{dir}},
	}}
	_, err := runStep(t, a, map[string]any{"command": "build"})
	steptest.WantAppError(t, err, activities.ErrCommandFailed, true, []string{`command "build" exited with code 7`, "yarn build: compiling\nerror TS2304: Cannot find name 'foo'"})
}

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	good := Command{Argv: []string{"sh", "-c", "true"}, ArgPattern: `[a-z@/^.~0-9-]+`, Dirs: []string{dir},
		Env: map[string]string{"NPM_TOKEN": "secret:npm/token", "CI": "true"}, AllowEnv: []string{"GITHUB_TOKEN"}}
	if err := good.Validate("bump"); err != nil {
		t.Fatalf("a good entry: %v", err)
	}
	cases := []struct {
		name string
		cmd  Command
		want string
	}{
		{"no argv", Command{Dirs: []string{dir}}, "argv is empty"},
		{"a program that is not there", Command{Argv: []string{"stagehand-no-such-program"}, Dirs: []string{dir}}, `program "stagehand-no-such-program"`},
		{"a bad pattern", Command{Argv: []string{"true"}, ArgPattern: "(", Dirs: []string{dir}}, "argPattern"},
		{"no dirs", Command{Argv: []string{"true"}}, "dirs is empty"},
		{"a relative dir", Command{Argv: []string{"true"}, Dirs: []string{"work"}}, `dir "work" is not an absolute path`},
		{"a fixed variable a run may replace", Command{Argv: []string{"true"}, Dirs: []string{dir}, Env: map[string]string{"A": "x"}, AllowEnv: []string{"A"}}, "A is both in env and allowEnv"},
		{"a bad variable name", Command{Argv: []string{"true"}, Dirs: []string{dir}, AllowEnv: []string{"A=B"}}, `"A=B" is not a variable name`},
		{"a malformed secret reference", Command{Argv: []string{"true"}, Dirs: []string{dir}, Env: map[string]string{"T": "secret:npm"}}, "secret:NAME/KEY"},
		{"too long a timeout", Command{Argv: []string{"true"}, Dirs: []string{dir}, Timeout: 48 * time.Hour}, "timeout 48h0m0s"},
		{"too many args", Command{Argv: []string{"true"}, Dirs: []string{dir}, MaxArgs: 1000}, "maxArgs 1000"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.cmd.Validate("bump")
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), `command "bump"`) {
				t.Errorf("Validate: %v, want an error naming the command and containing %q", err, c.want)
			}
		})
	}
	if err := good.Validate("has space"); err == nil {
		t.Error("a command name with a space passed")
	}
}

func TestWithin(t *testing.T) {
	for _, c := range []struct {
		root, path string
		want       bool
	}{
		{"/w", "/w", true}, {"/w", "/w/a/b", true}, {"/w", "/w/..a", true},
		{"/w", "/", false}, {"/w", "/wx", false}, {"/w", "/w2/a", false}, {"/w/a", "/w", false},
	} {
		if got := within(c.root, c.path); got != c.want {
			t.Errorf("within(%s, %s) = %v, want %v", c.root, c.path, got, c.want)
		}
	}
}

// The ring keeps the last n lines in order, through wrap-around.
func TestOutputRing(t *testing.T) {
	for _, n := range []int{0, 1, 3, 4, 7} {
		o := newOutput(3, nil)
		for i := 1; i <= n; i++ {
			o.add([]byte(fmt.Sprintf("l%d\n", i)), false)
		}
		var want []string
		for i := max(1, n-2); i <= n; i++ {
			want = append(want, fmt.Sprintf("l%d", i))
		}
		if got := o.tail(); got != strings.Join(want, "\n") {
			t.Errorf("after %d lines: tail %q, want %q", n, got, strings.Join(want, "\n"))
		}
	}
}

// syncBuffer is a bytes.Buffer safe for the logger and the test to share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// A running command heartbeats with its progress, so a silent worker is
// noticed and people see the last line while it runs.
func TestHeartbeatsCarryTheLastLine(t *testing.T) {
	dir := t.TempDir()
	var mu sync.Mutex
	var seen []Progress
	a := &Activities{HeartbeatInterval: 20 * time.Millisecond, Commands: map[string]Command{
		"slow": {Argv: sh(`echo "resolving packages"; sleep 0.3; echo "linking"; sleep 0.3`), Dirs: []string{dir}},
	}}
	a.onHeartbeat = func(p Progress) {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, p)
	}
	// What reaches Temporal: the SDK sends the first heartbeat and
	// batches the rest (every 30 s here), so at least one arrives.
	var recorded int
	steptest.MustStep(t, StepTypes(a), "exec.run", map[string]any{"command": "slow"}, steptest.StepID("slow"),
		steptest.OnHeartbeat(func(details converter.EncodedValues) {
			var p Progress
			if err := details.Get(&p); err != nil || p.Command != "slow" {
				t.Errorf("heartbeat details %+v: %v", p, err)
			}
			mu.Lock()
			defer mu.Unlock()
			recorded++
		}))
	mu.Lock()
	defer mu.Unlock()
	if recorded == 0 {
		t.Error("no heartbeat reached the test server")
	}
	lastLines := map[string]bool{}
	for _, p := range seen {
		if p.Command != "slow" {
			t.Errorf("heartbeat %+v names another command", p)
		}
		lastLines[p.LastLine] = true
	}
	if !lastLines["resolving packages"] || !lastLines["linking"] {
		t.Errorf("heartbeats %+v, want the last line to go from %q to %q", seen, "resolving packages", "linking")
	}
}

// A line cut at the buffer keeps no start of a secret whose end was
// dropped, even when an earlier secret on the line, replaced by ***,
// pulled that start inside the kept part.
func TestCutLineKeepsNoPartialSecret(t *testing.T) {
	secret := strings.Repeat("S", 32) + strings.Repeat("k", 32)
	o := newOutput(3, []string{secret})
	line := secret + strings.Repeat(".", 1961) + secret[:40] + strings.Repeat(".", 5000) + "\n"
	o.read(strings.NewReader(line + "next\n"))
	tail := o.tail()
	if strings.Contains(tail, "SSSS") || strings.Contains(tail, "kkkk") {
		t.Errorf("tail keeps part of the secret: …%q", tail[max(0, len(tail)-120):])
	}
	if !strings.HasPrefix(tail, "***...") || !strings.HasSuffix(tail, "[line truncated]\nnext") {
		t.Errorf("tail %.40q…%q", tail, tail[max(0, len(tail)-60):])
	}
}

// A secret of several lines (a PEM key, a kubeconfig) echoed by the
// command reaches the output one line at a time: each of its lines is
// scrubbed.
func TestMultiLineSecretIsScrubbed(t *testing.T) {
	secret := "-----BEGIN KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSj\nAgEAAoIBAQC7\n-----END KEY-----\n"
	o := newOutput(10, []string{secret})
	o.read(strings.NewReader("key:\n" + secret + "done\n"))
	tail := o.tail()
	for _, part := range []string{"MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSj", "AgEAAoIBAQC7"} {
		if strings.Contains(tail, part) {
			t.Errorf("tail keeps the secret's line %q: %q", part, tail)
		}
	}
	if !strings.HasPrefix(tail, "key:\n") || !strings.HasSuffix(tail, "\ndone") {
		t.Errorf("tail %q", tail)
	}
}
