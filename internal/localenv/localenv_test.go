package localenv

import (
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
