package git

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stagehand-dev/stagehand/activities"
	"github.com/stagehand-dev/stagehand/internal/gittest"
	"github.com/stagehand-dev/stagehand/internal/steptest"
)

// singleServer returns a git repository standing for a single-server
// environment's directory (an operator's clone with a .gitignore), and
// Activities that allow it.
func singleServer(t *testing.T) (*gittest.Repo, *Activities) {
	t.Helper()
	repo := gittest.New(t)
	repo.WriteFile(".gitignore", "node_modules/\n")
	repo.Git("add", ".gitignore")
	repo.Git("commit", "--quiet", "-m", "ignore node_modules")
	a := newActivities(t)
	a.LocalDirs = []string{repo.Work}
	return repo, a
}

func read(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestLocalStateCommitRestore walks the plugin-install shape on a real
// repository: record the state, edit, commit locally, edit more, then
// restore to the recorded head, with node_modules (ignored) left alone.
func TestLocalStateCommitRestore(t *testing.T) {
	repo, a := singleServer(t)
	dir := repo.Work
	head0 := repo.Git("rev-parse", "HEAD")

	st := mustStep(t, a, "git.state", map[string]any{"dir": dir})
	if st["head"] != head0 || st["shortHead"] != head0[:8] || st["branch"] != "main" || st["clean"] != true {
		t.Fatalf("state %v", st)
	}
	if d, _ := st["dirty"].([]any); len(d) != 0 {
		t.Errorf("dirty %v", st["dirty"])
	}

	// An operator's uncommitted work stops the run.
	repo.WriteFile("app.txt", "operator's change\n")
	repo.WriteFile("notes/todo.txt", "x\n")
	repo.WriteFile("node_modules/pkg/index.js", "ignored\n")
	_, err := runStep(t, a, "git.state", map[string]any{"dir": dir})
	steptest.WantAppError(t, err, activities.ErrGitDirty, true, []string{"has 2 uncommitted or untracked path(s): app.txt, notes/", "commit or stash them first"})
	st = mustStep(t, a, "git.state", map[string]any{"dir": dir, "requireClean": false})
	if d, _ := st["dirty"].([]any); st["clean"] != false || len(d) != 2 || d[0] != "app.txt" || d[1] != "notes/" {
		t.Errorf("state without requireClean %v", st)
	}
	repo.Git("checkout", "--quiet", "--", "app.txt")
	if err := os.RemoveAll(filepath.Join(dir, "notes")); err != nil {
		t.Fatal(err)
	}

	// The run's edits, committed locally; a retry finds nothing to commit.
	repo.WriteFile("app.txt", "line 1\nplugin\n")
	repo.WriteFile("added.txt", "new\n")
	c := mustStep(t, a, "git.commit", map[string]any{"dir": dir, "message": "install plugin x"})
	if c["committed"] != true || c["sha"] == head0 || c["shortSha"] != c["sha"].(string)[:8] {
		t.Fatalf("commit %v", c)
	}
	if got := repo.Git("log", "-1", "--format=%an <%ae>|%cn|%s"); got != "Stagehand <stagehand@localhost>|Stagehand|install plugin x" {
		t.Errorf("commit identity %q", got)
	}
	if repo.Git("rev-parse", "HEAD^") != head0 {
		t.Errorf("the commit's parent is not the recorded head")
	}
	again := mustStep(t, a, "git.commit", map[string]any{"dir": dir, "message": "install plugin x"})
	if again["committed"] != false || again["sha"] != c["sha"] {
		t.Errorf("retried commit %v", again)
	}
	if out := repo.Git("status", "--porcelain"); out != "" {
		t.Errorf("status after commit: %q", out)
	}

	// A failed upgrade leaves more: edits, a new file, a new node_modules
	// entry (ignored). Restore goes back to the recorded head.
	repo.WriteFile("README.md", "broken\n")
	repo.WriteFile("stray.txt", "x\n")
	repo.WriteFile("node_modules/new/index.js", "installed\n")
	r := mustStep(t, a, "git.restore", map[string]any{"dir": dir, "ref": head0})
	if r["head"] != head0 || repo.Git("rev-parse", "HEAD") != head0 {
		t.Fatalf("restore %v", r)
	}
	restored := []string{}
	for _, f := range r["restored"].([]any) {
		restored = append(restored, f.(string))
	}
	slices.Sort(restored)
	if strings.Join(restored, ",") != "README.md,added.txt,app.txt,stray.txt" {
		t.Errorf("restored %v", restored)
	}
	if read(t, filepath.Join(dir, "app.txt")) != "line 1\nline 2\nline 3\n" || read(t, filepath.Join(dir, "README.md")) != "# portal\n" {
		t.Errorf("files not restored")
	}
	for _, gone := range []string{"added.txt", "stray.txt"} {
		if _, err := os.Stat(filepath.Join(dir, gone)); !os.IsNotExist(err) {
			t.Errorf("%s still there", gone)
		}
	}
	for _, kept := range []string{"node_modules/pkg/index.js", "node_modules/new/index.js"} {
		if _, err := os.Stat(filepath.Join(dir, kept)); err != nil {
			t.Errorf("ignored %s removed: %v", kept, err)
		}
	}
	if out := repo.Git("status", "--porcelain"); out != "" {
		t.Errorf("status after restore: %q", out)
	}
	r = mustStep(t, a, "git.restore", map[string]any{"dir": dir, "ref": head0})
	if r["head"] != head0 || len(r["restored"].([]any)) != 0 {
		t.Errorf("second restore %v", r)
	}
}

func TestLocalCommitPaths(t *testing.T) {
	repo, a := singleServer(t)
	repo.WriteFile("app.txt", "changed\n")
	repo.WriteFile("other.txt", "not mine\n")
	c := mustStep(t, a, "git.commit", map[string]any{"dir": repo.Work, "message": "only app", "paths": []any{"app.txt"}})
	if c["committed"] != true {
		t.Fatalf("commit %v", c)
	}
	if got := repo.Git("show", "--name-only", "--format=", "HEAD"); got != "app.txt" {
		t.Errorf("committed %q", got)
	}
	if got := repo.Git("status", "--porcelain"); got != "?? other.txt" {
		t.Errorf("status %q", got)
	}
	for _, bad := range []string{"../x", "/etc/passwd", "-x", ".git/config", ":(glob)*"} {
		_, err := runStep(t, a, "git.commit", map[string]any{"dir": repo.Work, "message": "m", "paths": []any{bad}})
		steptest.WantAppError(t, err, activities.ErrInvalidArguments, true, []string{"is not a path relative to dir"})
	}
}

func TestLocalRestoreRefuses(t *testing.T) {
	repo, a := singleServer(t)
	_, err := runStep(t, a, "git.restore", map[string]any{"dir": repo.Work, "ref": "0123456789abcdef0123456789abcdef01234567"})
	steptest.WantAppError(t, err, activities.ErrGitRestoreRefused, true, []string{"is not a commit of " + repo.Work})
	// A commit that is not in HEAD's history: the branch was moved.
	side := repo.Git("commit-tree", "-m", "elsewhere", repo.Git("rev-parse", "HEAD^{tree}"))
	_, err = runStep(t, a, "git.restore", map[string]any{"dir": repo.Work, "ref": side})
	steptest.WantAppError(t, err, activities.ErrGitRestoreRefused, true, []string{"is not in the history of HEAD", "restore it by hand"})
	_, err = runStep(t, a, "git.restore", map[string]any{"dir": repo.Work, "ref": "--hard"})
	steptest.WantAppError(t, err, activities.ErrInvalidArguments, true, []string{"is not a commit sha or ref name"})
}

// TestLocalConfinement: the local steps take this run's checkouts and the
// configured directories exactly, nothing else.
func TestLocalConfinement(t *testing.T) {
	repo, a := singleServer(t)
	link := filepath.Join(t.TempDir(), "server")
	if err := os.Symlink(repo.Work, link); err != nil {
		t.Fatal(err)
	}
	// A link to the configured directory is that directory.
	if st := mustStep(t, a, "git.state", map[string]any{"dir": link}); st["clean"] != true {
		t.Errorf("state through a link %v", st)
	}
	if err := os.MkdirAll(filepath.Join(repo.Work, "packages"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{t.TempDir(), filepath.Join(repo.Work, "packages"), filepath.Join(repo.Work, "packages", ".."+string(filepath.Separator)+".."), repo.Origin, "relative/dir"} {
		for step, with := range map[string]map[string]any{
			"git.state": {"dir": bad}, "git.commit": {"dir": bad, "message": "m"}, "git.restore": {"dir": bad, "ref": "HEAD"},
		} {
			_, err := runStep(t, a, step, with)
			steptest.WantAppError(t, err, activities.ErrInvalidArguments, true,
				[]string{"dir " + bad + " is not a work tree git.checkout made in this run", "nor is it one of this worker's single-server environment directories (" + repo.Work + ")"})
		}
	}

	// A configured directory that is not a repository, or whose config
	// would run programs, is refused as such.
	plain := t.TempDir()
	a.LocalDirs = append(a.LocalDirs, plain)
	_, err := runStep(t, a, "git.state", map[string]any{"dir": plain})
	steptest.WantAppError(t, err, activities.ErrNotGitWorkTree, true, []string{"is not the top of a git work tree (no .git)"})
	repo.Git("config", "filter.evil.clean", "touch /tmp/pwned")
	_, err = runStep(t, a, "git.state", map[string]any{"dir": repo.Work})
	steptest.WantAppError(t, err, activities.ErrNotGitWorkTree, true, []string{"filter.evil.clean", "would make git run programs"})
}

// TestLocalStepsOnRunCheckout: the same steps work on this run's checkout.
func TestLocalStepsOnRunCheckout(t *testing.T) {
	repo := gittest.New(t)
	a := newActivities(t)
	co := mustStep(t, a, "git.checkout", map[string]any{"remote": repo.Origin})
	dir := co["dir"].(string)
	st := mustStep(t, a, "git.state", map[string]any{"dir": dir})
	if st["head"] != co["sha"] || st["branch"] != "main" {
		t.Fatalf("state %v, checkout %v", st, co)
	}
	if err := os.WriteFile(filepath.Join(dir, "app.txt"), []byte("edit\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if c := mustStep(t, a, "git.commit", map[string]any{"dir": dir, "message": "edit"}); c["committed"] != true {
		t.Fatalf("commit %v", c)
	}
	if r := mustStep(t, a, "git.restore", map[string]any{"dir": dir, "ref": st["head"]}); r["head"] != co["sha"] {
		t.Fatalf("restore %v", r)
	}
	if got := read(t, filepath.Join(dir, "app.txt")); got != "line 1\nline 2\nline 3\n" {
		t.Errorf("app.txt %q", got)
	}
}

// TestServerStateDirLeftAlone: a single server's pid file, lock and log
// live in <dir>/.stagehand (not ignored by a stock .gitignore); the git
// steps neither count, commit nor clean them.
func TestServerStateDirLeftAlone(t *testing.T) {
	repo, a := singleServer(t)
	dir := repo.Work
	head0 := repo.Git("rev-parse", "HEAD")
	repo.WriteFile(".stagehand/server.pid", `{"pid": 4242}`+"\n")
	repo.WriteFile(".stagehand/server.log", "Listening on 7007\n")
	st := mustStep(t, a, "git.state", map[string]any{"dir": dir})
	if st["clean"] != true {
		t.Fatalf("the state dir made the tree dirty: %v", st)
	}
	repo.WriteFile("app.txt", "edit\n")
	c := mustStep(t, a, "git.commit", map[string]any{"dir": dir, "message": "edit"})
	if files := repo.Git("show", "--name-only", "--format=", c["sha"].(string)); files != "app.txt" {
		t.Errorf("commit holds %q, want only app.txt", files)
	}
	mustStep(t, a, "git.restore", map[string]any{"dir": dir, "ref": head0})
	if got := read(t, filepath.Join(dir, ".stagehand", "server.pid")); got != `{"pid": 4242}`+"\n" {
		t.Errorf("restore touched the pid file: %q", got)
	}
}
