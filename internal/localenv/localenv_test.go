package localenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

func TestRepoRootSkipsOtherModules(t *testing.T) {
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "tools", "kube", "go.mod")); err != nil {
		t.Fatalf("%s does not look like the repository root: %v", root, err)
	}
	// From inside tools/kube (a module of its own) the answer is the same.
	t.Chdir(filepath.Join(root, "tools", "kube"))
	again, err := RepoRoot()
	if err != nil || again != root {
		t.Fatalf("from tools/kube: got %q, %v; want %q", again, err, root)
	}
}

func TestFreePortsAreDistinct(t *testing.T) {
	ports, err := FreePorts(5)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, p := range ports {
		if p <= 0 || seen[p] {
			t.Fatalf("bad or repeated port %d in %v", p, ports)
		}
		seen[p] = true
	}
}

// OnFreePort retries a failed start on another port, five times at most,
// and not at all once the context has ended.
func TestOnFreePortRetries(t *testing.T) {
	var ports []int
	err := OnFreePort(context.Background(), func(port int) error {
		ports = append(ports, port)
		if len(ports) < 3 {
			return errors.New("address already in use")
		}
		return nil
	})
	if err != nil || len(ports) != 3 || ports[0] <= 0 {
		t.Fatalf("got %v after ports %v; want success on the third", err, ports)
	}
	calls := 0
	err = OnFreePort(context.Background(), func(int) error { calls++; return fmt.Errorf("try %d", calls) })
	if calls != 5 || err == nil || err.Error() != "try 5" {
		t.Fatalf("always failing: %d calls, %v; want 5 calls and the last error", calls, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	calls = 0
	if err := OnFreePort(ctx, func(int) error { calls++; return errors.New("no") }); err == nil || calls != 1 {
		t.Fatalf("after ctx ended: %d calls, %v; want 1 call and its error", calls, err)
	}
}
