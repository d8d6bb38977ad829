// Command patchlab-setup prepares the local patch demo that `make dev` runs
// (scripts/demo-up.sh): with package patchlab it creates the portal's git
// remote with a pull request branch under <state>/git, installs the CI + Flux
// stand-in hook on it (production: the Deployment and ImagePolicy
// `backstage` in backstage-prod), and writes the worker configuration
// (<state>/worker.yaml) that ties the remote, the local control plane and the
// Backstage URL together.
//
// It prints shell assignments on stdout for the script to read (the PR, its
// head commit, the PR image to start the patch run with, the run id) and
// human-readable notes on stderr.
//
// A remote that exists is reused. When its PR branch was already merged into
// main by an earlier demo run, the next unmerged PR (pr-43, pr-44, ...) is
// prepared from main, so every demo run performs a real merge and the CI
// stand-in builds a new prod image for it.
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/stagehand-dev/stagehand/internal/patchlab"
)

type options struct {
	state, config                         string
	temporalAddress, namespace, taskQueue string
	kubeconfig, context                   string
	sandboxNS, prodNS                     string
	deployment, container, imagePolicy    string
	sandboxURL, prodURL                   string
	approvers                             string
	pr                                    int
	nextPR                                bool
	ciDelay                               time.Duration
}

func main() {
	var o options
	flag.StringVar(&o.state, "state", ".stagehand", "state directory; the remote goes to <state>/git")
	flag.StringVar(&o.config, "config", "", "worker config to write (default <state>/worker.yaml)")
	flag.StringVar(&o.temporalAddress, "temporal-address", "127.0.0.1:7233", "Temporal frontend the worker connects to")
	flag.StringVar(&o.namespace, "namespace", "default", "Temporal namespace")
	flag.StringVar(&o.taskQueue, "task-queue", "stagehand", "task queue")
	flag.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig of the local control plane (default <state>/kube/kubeconfig)")
	flag.StringVar(&o.context, "context", "stagehand-local", "kubeconfig context")
	flag.StringVar(&o.sandboxNS, "sandbox-namespace", "backstage-sandbox", "sandbox namespace")
	flag.StringVar(&o.prodNS, "prod-namespace", "backstage-prod", "production namespace")
	flag.StringVar(&o.deployment, "deployment", "backstage", "Backstage Deployment (both namespaces)")
	flag.StringVar(&o.container, "container", "backstage", "Backstage container")
	flag.StringVar(&o.imagePolicy, "image-policy", "backstage", "Flux ImagePolicy in the production namespace")
	flag.StringVar(&o.sandboxURL, "sandbox-url", "http://127.0.0.1:7007", "Backstage URL of the sandbox")
	flag.StringVar(&o.prodURL, "prod-url", "http://127.0.0.1:7007", "Backstage URL of production")
	flag.StringVar(&o.approvers, "approvers", "bob,carol", "comma-separated approvers of the merge gate")
	flag.IntVar(&o.pr, "pr", 42, "pull request number of a new remote")
	flag.BoolVar(&o.nextPR, "next-pr", true, "if the PR is already merged, prepare the next unmerged one from main")
	flag.DurationVar(&o.ciDelay, "ci-delay", 3*time.Second, "simulated CI build time of the hook")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "patchlab-setup:", err)
		os.Exit(1)
	}
}

func run(o options) error {
	state, err := filepath.Abs(o.state)
	if err != nil {
		return err
	}
	// Absolute paths throughout: the hook runs inside the bare repository,
	// and the worker resolves relative config paths against the config's
	// directory.
	abs := func(p, def string) (string, error) {
		if p == "" {
			p = def
		}
		return filepath.Abs(p)
	}
	cfgPath, err := abs(o.config, filepath.Join(state, "worker.yaml"))
	if err != nil {
		return err
	}
	kubeconfig, err := abs(o.kubeconfig, filepath.Join(state, "kube", "kubeconfig"))
	if err != nil {
		return err
	}
	if _, err := os.Stat(kubeconfig); err != nil {
		return fmt.Errorf("kubeconfig %s: %w (start the control plane first: scripts/kube-up.sh)", kubeconfig, err)
	}

	gitRoot := filepath.Join(state, "git")
	remote, err := patchlab.NewRemote(gitRoot, o.pr)
	if err != nil {
		return fmt.Errorf("git remote: %w", err)
	}
	if o.nextPR {
		if remote, err = unmergedPR(remote); err != nil {
			return err
		}
	}
	hookLog := filepath.Join(state, "ci-sim.log")
	if err := remote.InstallCIHook(patchlab.CIHook{
		Kubeconfig: kubeconfig, Context: o.context,
		Namespace: o.prodNS, Deployment: o.deployment, Container: o.container,
		ImagePolicy: o.imagePolicy, Delay: o.ciDelay, Log: hookLog,
	}); err != nil {
		return fmt.Errorf("CI hook: %w", err)
	}

	lab := patchlab.Lab{
		TemporalAddress: o.temporalAddress, Namespace: o.namespace, TaskQueue: o.taskQueue,
		Kubeconfig: kubeconfig, Context: o.context,
		SandboxNamespace: o.sandboxNS, ProdNamespace: o.prodNS,
		Deployment: o.deployment, Container: o.container,
		SandboxURL: o.sandboxURL, ProdURL: o.prodURL, ImagePolicy: o.imagePolicy,
		Remote: remote.Dir, Approvers: splitList(o.approvers), SmokeChecks: patchlab.DefaultSmokeChecks(),
	}
	before, _ := os.ReadFile(cfgPath)
	if err := os.MkdirAll(filepath.Dir(cfgPath), 0o755); err != nil {
		return err
	}
	if err := lab.WriteWorkerConfig(cfgPath); err != nil {
		return fmt.Errorf("worker config: %w", err)
	}
	after, err := os.ReadFile(cfgPath)
	if err != nil {
		return err
	}

	now := time.Now()
	image := patchlab.PRImage(patchlab.ImageRepo, remote.PR, remote.PRHead, now)
	fmt.Fprintf(os.Stderr, "patchlab: remote %s, PR #%d (branch %s, head %.8s), CI+Flux hook log %s\n",
		remote.Dir, remote.PR, remote.PRBranch, remote.PRHead, hookLog)
	fmt.Fprintf(os.Stderr, "patchlab: worker config %s\n", cfgPath)
	for _, kv := range [][2]string{
		{"remote", remote.Dir},
		{"pr", strconv.Itoa(remote.PR)},
		{"pr_branch", remote.PRBranch},
		{"pr_head", remote.PRHead},
		{"image", image},
		{"now", strconv.FormatInt(now.Unix(), 10)},
		{"run_id", fmt.Sprintf("patch-pr-%d-%d", remote.PR, now.Unix())},
		{"worker_config", cfgPath},
		{"config_changed", strconv.FormatBool(!bytes.Equal(before, after))},
		{"ci_log", hookLog},
	} {
		fmt.Printf("%s=%s\n", kv[0], shellQuote(kv[1]))
	}
	return nil
}

// unmergedPR returns r if its PR branch is not merged into main yet;
// otherwise the first PR after it whose branch is unmerged, creating that
// branch from main (a plugin version bump) when it does not exist.
func unmergedPR(r *patchlab.Remote) (*patchlab.Remote, error) {
	for pr := r.PR; pr < r.PR+1000; pr++ {
		branch := fmt.Sprintf("pr-%d", pr)
		head, err := git(r.Dir, "rev-parse", "--verify", "--quiet", "refs/heads/"+branch)
		if err != nil {
			// No such branch yet: make it.
			if head, err = newPRBranch(r, pr, branch); err != nil {
				return nil, fmt.Errorf("prepare %s: %w", branch, err)
			}
			fmt.Fprintf(os.Stderr, "patchlab: PR #%d is merged; prepared PR #%d (branch %s) from main\n", r.PR, pr, branch)
		}
		merged, err := isAncestor(r.Dir, head, "refs/heads/main")
		if err != nil {
			return nil, err
		}
		if !merged {
			return &patchlab.Remote{Dir: r.Dir, Work: r.Work, PR: pr, PRBranch: branch, PRHead: head}, nil
		}
	}
	return nil, errors.New("no unmerged PR branch found")
}

var catalogDep = regexp.MustCompile(`"@backstage/plugin-catalog-backend": "([^"]*)"`)
var lastNumber = regexp.MustCompile(`(\d+)(\D*)$`)

// newPRBranch commits, on a branch from the remote's main, a bump of the
// catalog plugin's version (its last number), and pushes it.
func newPRBranch(r *patchlab.Remote, pr int, branch string) (string, error) {
	if _, err := git(r.Work, "fetch", "--quiet", "origin"); err != nil {
		return "", err
	}
	if _, err := git(r.Work, "checkout", "--quiet", "-B", branch, "origin/main"); err != nil {
		return "", err
	}
	pkg := filepath.Join(r.Work, "package.json")
	data, err := os.ReadFile(pkg)
	if err != nil {
		return "", err
	}
	m := catalogDep.FindSubmatchIndex(data)
	if m == nil {
		return "", fmt.Errorf("%s: no @backstage/plugin-catalog-backend version to bump", pkg)
	}
	version := string(data[m[2]:m[3]])
	n := lastNumber.FindStringSubmatchIndex(version)
	if n == nil {
		return "", fmt.Errorf("%s: catalog backend plugin version %q has no number to bump", pkg, version)
	}
	last, _ := strconv.Atoi(version[n[2]:n[3]])
	bumped := version[:n[2]] + strconv.Itoa(last+1) + version[n[3]:]
	data = append(append(append([]byte{}, data[:m[2]]...), bumped...), data[m[3]:]...)
	if err := os.WriteFile(pkg, data, 0o644); err != nil {
		return "", err
	}
	msg := fmt.Sprintf("Bump catalog backend plugin to %s (#%d)", bumped, pr)
	if _, err := git(r.Work, "commit", "--quiet", "-am", msg); err != nil {
		return "", err
	}
	if _, err := git(r.Work, "push", "--quiet", "--force", "origin", branch); err != nil {
		return "", err
	}
	return git(r.Work, "rev-parse", "HEAD")
}

func isAncestor(dir, commit, ref string) (bool, error) {
	cmd := exec.Command("git", "merge-base", "--is-ancestor", commit, ref)
	cmd.Dir = dir
	cmd.Env = gitEnv()
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return true, nil
	case errors.As(err, &exit) && exit.ExitCode() == 1:
		return false, nil
	default:
		return false, fmt.Errorf("git merge-base --is-ancestor %s %s: %w", commit, ref, err)
	}
}

// git runs git with the same isolated configuration as package patchlab,
// so neither the machine's settings nor a developer's identity leak in.
func git(dir string, args ...string) (string, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = gitEnv()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(string(out)), nil
}

func gitEnv() []string {
	return append(os.Environ(),
		"GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL="+os.DevNull, "GIT_TERMINAL_PROMPT=0",
		"GIT_AUTHOR_NAME=Portal Developer", "GIT_AUTHOR_EMAIL=dev@portal.local",
		"GIT_COMMITTER_NAME=Portal Developer", "GIT_COMMITTER_EMAIL=dev@portal.local")
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
