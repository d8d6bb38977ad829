package git

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"go.temporal.io/sdk/testsuite"

	"github.com/stagehand-dev/stagehand/activities"
	"github.com/stagehand-dev/stagehand/internal/gittest"
	"github.com/stagehand-dev/stagehand/internal/steptest"
)

// crashHelperEnv makes the test binary act as a worker that runs one
// git.merge and stops dead after the push (see TestMain).
const crashHelperEnv = "STAGEHAND_GIT_CRASH_HELPER"

// TestMain lets TestMergeCrashAfterPush re-run this binary as the worker it
// kills: with crashHelperEnv set (a JSON crashHelper), the process merges,
// writes the marker file once the merge is on the remote, and then hangs
// until it is SIGKILLed, exactly as a worker dying between the push and
// Temporal recording the completion.
func TestMain(m *testing.M) {
	if spec := os.Getenv(crashHelperEnv); spec != "" {
		os.Exit(runCrashHelper(spec))
	}
	os.Exit(m.Run())
}

type crashHelper struct {
	WorkDir string     `json:"workDir"`
	Marker  string     `json:"marker"`
	Input   MergeInput `json:"input"`
}

func runCrashHelper(spec string) int {
	var h crashHelper
	if err := json.Unmarshal([]byte(spec), &h); err != nil {
		fmt.Fprintln(os.Stderr, "crash helper:", err)
		return 2
	}
	a := &Activities{WorkDir: h.WorkDir, CommandTimeout: time.Minute}
	a.afterPush = func() {
		if err := os.WriteFile(h.Marker, []byte("pushed\n"), 0o600); err != nil {
			fmt.Fprintln(os.Stderr, "crash helper:", err)
			os.Exit(2)
		}
		select {} // wait for the SIGKILL
	}
	var s testsuite.WorkflowTestSuite
	env := s.NewTestActivityEnvironment()
	env.RegisterActivity(a.Merge)
	_, err := env.ExecuteActivity(a.Merge, h.Input)
	// Reaching here means the hook never ran: the test reports it.
	fmt.Fprintln(os.Stderr, "crash helper: merge returned without pushing:", err)
	return 3
}

// The window the issue names: the worker pushes the merge of the tested head
// and dies before Temporal records the completion; meanwhile someone pushes
// to the PR branch. The retry must report the merge it already made (not
// HeadMoved, which would fail a run whose merge is on main), and main must
// hold that merge exactly once. The worker is a real process, killed with
// SIGKILL, against a real git remote.
func TestMergeCrashAfterPush(t *testing.T) {
	repo := gittest.New(t)
	tested := repo.Commit("pr-42", "add feature", map[string]string{"feature.txt": "new\n"})
	mainBefore := repo.Head("main")
	workDir := t.TempDir()
	marker := filepath.Join(t.TempDir(), "pushed")
	in := MergeInput{Provider: ProviderGit, Remote: repo.Origin, PRBranch: "pr-42", PR: 42, ExpectHead: tested[:8]}
	spec, err := json.Marshal(crashHelper{WorkDir: workDir, Marker: marker, Input: in})
	if err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(repo.Env(), crashHelperEnv+"="+string(spec))
	out, err := os.CreateTemp(t.TempDir(), "worker-*.log")
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.After(time.Minute)
wait:
	for {
		if _, err := os.Stat(marker); err == nil {
			break wait
		}
		select {
		case err := <-exited:
			log, _ := os.ReadFile(out.Name())
			t.Fatalf("worker exited (%v) before pushing: %s", err, log)
		case <-deadline:
			_ = cmd.Process.Kill()
			t.Fatal("worker did not push within a minute")
		case <-time.After(20 * time.Millisecond):
		}
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	err = <-exited
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) || exitErr.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("worker ended with %v, want killed by SIGKILL", err)
	}
	merge := repo.Head("main")
	if p := repo.Parents(merge); len(p) != 2 || p[0] != mainBefore || p[1] != tested {
		t.Fatalf("after the crash main is at %s with parents %v, want the merge of %s", merge, p, tested)
	}

	// Review feedback lands on the PR branch after the merge.
	moved := repo.Commit("pr-42", "address review", map[string]string{"feature.txt": "newer\n"})

	retry := func(name string, a *Activities) {
		t.Helper()
		got := mustStep(t, a, "git.merge", map[string]any{
			"provider": "git", "remote": repo.Origin, "prBranch": "pr-42", "pr": 42, "expectHead": tested[:8],
		})
		if got["alreadyMerged"] != true || got["mergeCommit"] != merge || got["prHead"] != tested || got["shortSha"] != merge[:8] {
			t.Errorf("%s: outputs %v, want alreadyMerged with merge %s of tested head %s", name, got, merge, tested)
		}
		if h := repo.Head("main"); h != merge {
			t.Errorf("%s: main moved to %s", name, h)
		}
		if n := repo.Count("main", "--merges"); n != 1 {
			t.Errorf("%s: %d merge commits on main, want exactly 1", name, n)
		}
		if repo.Head("pr-42") != moved {
			t.Errorf("%s: the PR branch changed", name)
		}
	}
	// The restarted worker reuses the crashed one's cache; another worker
	// starts from nothing.
	retry("same worker restarted", &Activities{WorkDir: workDir, CommandTimeout: time.Minute})
	retry("other worker", newActivities(t))

	// The moved head itself is not merged: a run that tested it is still
	// refused rather than reported as merged.
	_, err = runStep(t, newActivities(t), "git.merge", map[string]any{
		"provider": "git", "remote": repo.Origin, "prBranch": "pr-42", "pr": 42, "expectHead": "0123abcd",
	})
	steptest.WantAppError(t, err, activities.ErrHeadMoved, true, []string{moved[:8], "0123abcd"})
}
