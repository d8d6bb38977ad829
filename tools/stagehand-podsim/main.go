// Command stagehand-podsim runs Stagehand's pod-status simulator (internal/podsim)
// against a cluster: it registers a Ready node and plays kubelet for the pods
// bound to it, so Deployments roll out on a control plane that cannot run
// containers. scripts/kube-up.sh starts it next to the local control plane.
//
// With --portal, the named Deployment's pods run the real Backstage their
// image names (internal/portalsim): the image is read from its registry, the
// matching tools/backstage backend runs on the given database, pod readiness
// is that backend's readiness, and 127.0.0.1:<port> is the portal's Service.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/stagehand-dev/stagehand/internal/backstagetest"
	"github.com/stagehand-dev/stagehand/internal/localenv"
	"github.com/stagehand-dev/stagehand/internal/podsim"
	"github.com/stagehand-dev/stagehand/internal/portalsim"
)

// portalFlags collects repeated --portal values.
type portalFlags []string

func (p *portalFlags) String() string     { return strings.Join(*p, " ") }
func (p *portalFlags) Set(v string) error { *p = append(*p, v); return nil }

const portalUsage = "run a real Backstage for a Deployment's pods (repeatable): " +
	"ns/deployment/container=PORT,client=pg|mysql2,host=HOST,port=DBPORT,user=USER[,passwordEnv=VAR]; " +
	"PORT is the portal URL's port (its Service on 127.0.0.1), the password is read from $VAR (never given on the command line)"

func main() {
	kubeconfig := flag.String("kubeconfig", os.Getenv("KUBECONFIG"), "path to the kubeconfig of the cluster to simulate a node for")
	kubeContext := flag.String("context", "", "kubeconfig context (default: the current context)")
	nodeName := flag.String("node-name", podsim.DefaultNodeName, "name of the simulated Node")
	backOff := flag.Duration("initial-backoff", 10*time.Second, "first crash-loop back-off (doubles per restart, as a kubelet's does)")
	verbose := flag.Bool("v", false, "log every fault written")
	var portals portalFlags
	flag.Var(&portals, "portal", portalUsage)
	backstageDir := flag.String("backstage-dir", "", "tools/backstage directory for --portal backends (default: $STAGEHAND_BACKSTAGE_DIR, else tools/backstage under the repository root found from the working directory)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	logger := log.New(os.Stderr, "", log.LstdFlags|log.Lmicroseconds)
	if err := run(ctx, logger, *kubeconfig, *kubeContext, *nodeName, *backOff, *verbose, portals, *backstageDir); err != nil {
		fmt.Fprintln(os.Stderr, "stagehand-podsim:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, logger *log.Logger, kubeconfig, kubeContext, nodeName string, backOff time.Duration, verbose bool, portalSpecs []string, backstageDir string) error {
	if kubeconfig == "" {
		return fmt.Errorf("--kubeconfig is required")
	}
	var portals []portalsim.Portal
	if len(portalSpecs) > 0 {
		dir, err := findBackstageDir(backstageDir)
		if err != nil {
			return err
		}
		for _, spec := range portalSpecs {
			p, err := parsePortal(spec, os.Getenv)
			if err != nil {
				return err
			}
			p.BackstageDir = dir
			portals = append(portals, p)
		}
	}
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
		&clientcmd.ClientConfigLoadingRules{ExplicitPath: kubeconfig},
		&clientcmd.ConfigOverrides{CurrentContext: kubeContext}).ClientConfig()
	if err != nil {
		return fmt.Errorf("load kubeconfig: %w", err)
	}
	cfg.UserAgent = "stagehand-podsim"
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("build client: %w", err)
	}

	opts := podsim.Options{
		NodeName:       nodeName,
		InitialBackOff: backOff,
		Logf:           func(string, ...any) {},
		OnFault: func(pod *corev1.Pod, reason string, at time.Time) {
			logger.Printf("fault %s/%s %s at %s", pod.Namespace, pod.Name, reason, at.Format(time.RFC3339Nano))
		},
	}
	if verbose {
		opts.Logf = logger.Printf
	}
	logger.Printf("simulating node %s", nodeName)
	if len(portals) == 0 {
		return podsim.Run(ctx, client, opts)
	}

	// Backend starts, stops and exits are always logged: they are what a
	// person watching an upgrade needs to see.
	ps := portalsim.New(client, portals, portalsim.Options{Logf: logger.Printf})
	opts.Probe, opts.Terminating = ps.Probe, ps.Terminating
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	portalDone := make(chan error, 1)
	go func() {
		err := ps.Run(ctx)
		cancel() // a portal that cannot serve stops the node too
		portalDone <- err
	}()
	simErr := podsim.Run(ctx, client, opts)
	cancel()
	// Wait for the backends to stop: they must not outlive the simulator.
	return errors.Join(simErr, <-portalDone)
}

// parsePortal parses one --portal value. getenv reads the password's
// variable; a password is never accepted inline.
func parsePortal(spec string, getenv func(string) string) (portalsim.Portal, error) {
	var p portalsim.Portal
	fail := func(format string, args ...any) (portalsim.Portal, error) {
		return portalsim.Portal{}, fmt.Errorf("--portal %q: %s", redact(spec), fmt.Sprintf(format, args...))
	}
	target, params, ok := strings.Cut(spec, "=")
	if !ok {
		return fail("want ns/deployment/container=PORT,client=...,host=...,port=...,user=...")
	}
	parts := strings.Split(target, "/")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
		return fail("want ns/deployment/container before '='")
	}
	p.Namespace, p.Deployment, p.Container = parts[0], parts[1], parts[2]
	fields := strings.Split(params, ",")
	port, err := strconv.Atoi(fields[0])
	if err != nil {
		return fail("service port %q is not a number", fields[0])
	}
	p.Port = port
	seen := map[string]bool{}
	for _, f := range fields[1:] {
		k, v, ok := strings.Cut(f, "=")
		if !ok || v == "" {
			return fail("%q: want key=value", k)
		}
		if seen[k] {
			return fail("%s given twice", k)
		}
		seen[k] = true
		switch k {
		case "client":
			p.DB.Client = v
		case "host":
			p.DB.Host = v
		case "port":
			if p.DB.Port, err = strconv.Atoi(v); err != nil {
				return fail("database port %q is not a number", v)
			}
		case "user":
			p.DB.User = v
		case "passwordEnv":
			pw := getenv(v)
			if pw == "" {
				return fail("$%s (passwordEnv) is empty or unset", v)
			}
			p.DB.Password = pw
		case "password":
			return fail("a password is not accepted on the command line (argv is visible to every user): use passwordEnv=VAR")
		default:
			return fail("unknown key %q (want client, host, port, user, passwordEnv)", k)
		}
	}
	if err := p.Validate(); err != nil {
		return fail("%v", err)
	}
	return p, nil
}

// redact hides an inline password=... in an error message.
func redact(spec string) string {
	fields := strings.Split(spec, ",")
	for i, f := range fields {
		if strings.HasPrefix(f, "password=") {
			fields[i] = "password=<redacted>"
		}
	}
	return strings.Join(fields, ",")
}

// findBackstageDir resolves --backstage-dir and checks the npm install, so
// a missing install fails at start rather than at the first pod.
func findBackstageDir(flagValue string) (string, error) {
	dir := flagValue
	if dir == "" {
		dir = os.Getenv("STAGEHAND_BACKSTAGE_DIR")
	}
	if dir == "" {
		root, err := localenv.RepoRoot()
		if err != nil {
			return "", fmt.Errorf("--portal: %w; give --backstage-dir", err)
		}
		dir = filepath.Join(root, "tools", "backstage")
	}
	if err := backstagetest.CheckInstall(dir); err != nil {
		return "", fmt.Errorf("--backstage-dir: %w", err)
	}
	return dir, nil
}
