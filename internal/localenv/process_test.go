package localenv

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Stop reaches the whole group: a child that ignores SIGTERM and outlives
// its parent is killed too. The log holds the output after a start line.
func TestProcessStopKillsTheGroup(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "child.pid")
	p := &Process{
		Name: "sh", Path: "/bin/sh", LogPath: filepath.Join(dir, "sh.log"),
		Args: []string{"-c", `(trap "" TERM; echo $$ > "$PIDFILE"; exec sleep 60) & echo hello; wait`},
		Env:  []string{"PIDFILE=" + pidFile},
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	var child int
	for deadline := time.Now().Add(10 * time.Second); child == 0; time.Sleep(10 * time.Millisecond) {
		if b, err := os.ReadFile(pidFile); err == nil && strings.HasSuffix(string(b), "\n") {
			child, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		}
		if time.Now().After(deadline) {
			t.Fatalf("the child never wrote its pid; log:\n%s", p.LogTail(10))
		}
	}
	if !p.Running() {
		t.Fatal("Running is false while the shell waits")
	}
	if err := p.Start(); err == nil {
		t.Fatal("a second Start of a running process succeeded")
	}
	if err := p.Stop(200 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if p.Running() {
		t.Fatal("Running is true after Stop")
	}
	// The child is ours only until it is reaped by init; give that a moment.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if err := syscall.Kill(child, 0); errors.Is(err, syscall.ESRCH) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("child %d survived Stop", child)
		}
	}
	log := p.LogTail(10)
	if !strings.Contains(log, "---- sh starting at") || !strings.HasSuffix(log, "hello") {
		t.Fatalf("log tail = %q", log)
	}
}
