// Command upgrade-demo brings up, in the foreground, the world the upgrade
// runbook acts on for `make dev-upgrade` (scripts/dev-upgrade.sh), on the
// local control plane scripts/kube-up.sh started:
//
//   - a throwaway PostgreSQL (the sandbox's database) and MariaDB
//     (production's);
//   - the image engine (podman's Docker-API service) and a local registry,
//     with a busybox base image;
//   - the portal's git remote at Backstage 1.44.0 (internal/upgradelab),
//     release manifests for the offline bump, and its first image built and
//     pushed;
//   - namespaces backstage-up-sandbox and backstage-up-prod with the
//     Deployment `backstage` pinned to a node of its own, whose pods a pod
//     simulator runs as the real Backstage backend their image names
//     (internal/portalsim) — reached at --sandbox-port and --prod-port;
//   - the worker config for all of it.
//
// When everything is ready it writes <state>/upgrade/ready.env (shell
// assignments the script reads) and runs until SIGTERM, which stops all of it.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/stagehand-dev/stagehand/activities/db"
	"github.com/stagehand-dev/stagehand/internal/enginetest"
	"github.com/stagehand-dev/stagehand/internal/kubetest"
	"github.com/stagehand-dev/stagehand/internal/mysqltest"
	"github.com/stagehand-dev/stagehand/internal/patchlab"
	"github.com/stagehand-dev/stagehand/internal/pgtest"
	"github.com/stagehand-dev/stagehand/internal/podsim"
	"github.com/stagehand-dev/stagehand/internal/portalsim"
	"github.com/stagehand-dev/stagehand/internal/upgradelab"
)

// NodeName is the simulated node the demo's pods are pinned to, so the
// patch demo's pod simulator (another node) never runs them.
const NodeName = "stagehand-portal-node"

// PasswordEnv carries MariaDB's password to the worker (the config holds
// only the reference env:STAGEHAND_DEMO_MARIADB_PASSWORD).
const PasswordEnv = "STAGEHAND_DEMO_MARIADB_PASSWORD"

type options struct {
	state, kubeconfig, context string
	temporalAddress, taskQueue string
	sandboxNS, prodNS          string
	sandboxPort, prodPort      int
	approvers                  string
}

func main() {
	var o options
	flag.StringVar(&o.state, "state", ".stagehand", "state directory; the demo's files go to <state>/upgrade")
	flag.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig of the local control plane (default <state>/kube/kubeconfig)")
	flag.StringVar(&o.context, "context", "stagehand-local", "kubeconfig context")
	flag.StringVar(&o.temporalAddress, "temporal-address", "127.0.0.1:7233", "Temporal frontend the worker connects to")
	flag.StringVar(&o.taskQueue, "task-queue", "stagehand", "task queue")
	flag.StringVar(&o.sandboxNS, "sandbox-namespace", "backstage-up-sandbox", "sandbox namespace")
	flag.StringVar(&o.prodNS, "prod-namespace", "backstage-up-prod", "production namespace")
	flag.IntVar(&o.sandboxPort, "sandbox-port", 7107, "port of the sandbox portal's service")
	flag.IntVar(&o.prodPort, "prod-port", 7108, "port of the production portal's service")
	flag.StringVar(&o.approvers, "approvers", "bob,carol", "who may approve the gates (comma-separated)")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "upgrade-demo:", err)
		os.Exit(1)
	}
}

func say(format string, args ...any) {
	fmt.Printf("%s upgrade-demo: %s\n", time.Now().UTC().Format("15:04:05"), fmt.Sprintf(format, args...))
}

func run(o options) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	state, err := filepath.Abs(o.state)
	if err != nil {
		return err
	}
	if o.kubeconfig == "" {
		o.kubeconfig = filepath.Join(state, "kube", "kubeconfig")
	}
	dir := filepath.Join(state, "upgrade")
	_ = os.Remove(filepath.Join(dir, "ready.env"))
	// The databases are throwaway, so the portal starts over with them.
	if err := os.RemoveAll(filepath.Join(dir, "portal")); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	startCtx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()

	say("starting PostgreSQL (sandbox database) and MariaDB (production database)")
	pg, err := pgtest.Start(startCtx)
	if err != nil {
		return err
	}
	defer pg.Stop()
	maria, err := mysqltest.Start(startCtx)
	if err != nil {
		return err
	}
	defer maria.Stop()
	say("starting the image engine (podman's Docker-API service) and a local registry")
	engine, err := enginetest.Start(startCtx)
	if err != nil {
		return err
	}
	defer engine.Stop()

	say("creating the portal's git remote at Backstage %s and building its first image", upgradelab.FromRelease)
	portal, err := upgradelab.NewPortal(filepath.Join(dir, "portal"), engine.BaseImage)
	if err != nil {
		return err
	}
	manifests := filepath.Join(dir, "portal", "manifests")
	if err := upgradelab.WriteManifests(manifests); err != nil {
		return err
	}
	imageRepo := engine.RegistryAddr + "/backstage-portal"
	head := portal.Head("main")
	initial := fmt.Sprintf("%s:prod-%s-%d", imageRepo, head[:8], time.Now().Unix())
	if _, err := portal.BuildAndPush(startCtx, engine.Client(), initial); err != nil {
		return err
	}

	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
		&clientcmd.ClientConfigLoadingRules{ExplicitPath: o.kubeconfig},
		&clientcmd.ConfigOverrides{CurrentContext: o.context}).ClientConfig()
	if err != nil {
		return fmt.Errorf("load kubeconfig %s: %w", o.kubeconfig, err)
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	sim := portalsim.New(client, []portalsim.Portal{
		{Namespace: o.sandboxNS, Deployment: "backstage", Container: "backstage", Port: o.sandboxPort,
			DB: portalsim.Database{Client: "pg", Host: pg.Host, Port: pg.Port, User: pg.User}},
		{Namespace: o.prodNS, Deployment: "backstage", Container: "backstage", Port: o.prodPort,
			DB: portalsim.Database{Client: "mysql2", Host: maria.Host, Port: maria.Port, User: maria.User, Password: maria.Password}},
	}, portalsim.Options{Logf: func(f string, a ...any) { say(f, a...) }})
	simDone := make(chan error, 2)
	go func() { simDone <- sim.Run(ctx) }()
	pods := podsim.New(client, podsim.Options{NodeName: NodeName, Probe: sim.Probe, Terminating: sim.Terminating, InitialBackOff: 5 * time.Second})
	go func() { simDone <- pods.Run(ctx) }()

	say("deploying Backstage %s to %s and %s (pods on the simulated node %s)", upgradelab.FromRelease, o.sandboxNS, o.prodNS, NodeName)
	for _, ns := range []string{o.sandboxNS, o.prodNS} {
		if err := deploy(startCtx, client, ns, initial); err != nil {
			return err
		}
	}
	for _, ns := range []string{o.sandboxNS, o.prodNS} {
		if err := waitRollout(startCtx, client, ns); err != nil {
			return err
		}
	}

	lab := upgradelab.Lab{
		TemporalAddress: o.temporalAddress, Namespace: "default", TaskQueue: o.taskQueue,
		Kubeconfig: o.kubeconfig, Context: o.context,
		SandboxNamespace: o.sandboxNS, ProdNamespace: o.prodNS, Deployment: "backstage", Container: "backstage",
		SandboxURL: fmt.Sprintf("http://127.0.0.1:%d", o.sandboxPort), ProdURL: fmt.Sprintf("http://127.0.0.1:%d", o.prodPort),
		SandboxDB: db.Database{Driver: "postgres", Host: pg.Host, Port: pg.Port, User: pg.User},
		ProdDB:    db.Database{Driver: "mysql", Host: maria.Host, Port: maria.Port, User: maria.User, PasswordRef: "env:" + PasswordEnv},
		Remote:    portal.Dir, DockerHost: engine.Host, ImageRepo: imageRepo,
		BumpBin: filepath.Join(filepath.Dir(os.Args[0]), "stagehand-portal-bump"), ManifestsDir: manifests,
		WorkDir: filepath.Join(dir, "worker"), BackupDir: filepath.Join(dir, "backups"),
		Approvers: strings.Split(o.approvers, ","),
	}
	configPath := filepath.Join(dir, "worker.yaml")
	if err := patchlab.WriteConfig(lab.WorkerConfig(), configPath); err != nil {
		return err
	}
	ready := fmt.Sprintf("worker_config=%q\nmariadb_password=%q\nremote=%q\ninitial_image=%q\nsandbox_url=%q\nprod_url=%q\ndocker_host=%q\nregistry=%q\n",
		configPath, maria.Password, portal.Dir, initial, lab.SandboxURL, lab.ProdURL, engine.Host, engine.RegistryAddr)
	if err := os.WriteFile(filepath.Join(dir, "ready.env"), []byte(ready), 0o600); err != nil {
		return err
	}
	say("ready: sandbox %s (PostgreSQL), production %s (MariaDB), registry %s; SIGTERM stops everything", lab.SandboxURL, lab.ProdURL, engine.RegistryAddr)
	select {
	case <-ctx.Done():
	case err := <-simDone:
		if err != nil && ctx.Err() == nil {
			return fmt.Errorf("simulator stopped: %w", err)
		}
	}
	say("stopping")
	_ = os.Remove(filepath.Join(dir, "ready.env"))
	return nil
}

// deploy creates (or resets to the first image) the namespace's Backstage
// Deployment, pinned to the demo's node.
func deploy(ctx context.Context, client kubernetes.Interface, ns, image string) error {
	if _, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	d := kubetest.BackstageDeployment(ns, "backstage", image, 2)
	d.Spec.Template.Spec.NodeName = NodeName
	d.Spec.MinReadySeconds = 2
	_, err := client.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		_, err = client.AppsV1().Deployments(ns).Update(ctx, d, metav1.UpdateOptions{})
	}
	return err
}

func waitRollout(ctx context.Context, client kubernetes.Interface, ns string) error {
	for {
		d, err := client.AppsV1().Deployments(ns).Get(ctx, "backstage", metav1.GetOptions{})
		if err == nil && rolledOut(d) {
			say("%s/backstage rolled out", ns)
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s/backstage did not roll out: %w", ns, ctx.Err())
		case <-time.After(time.Second):
		}
	}
}

func rolledOut(d *appsv1.Deployment) bool { return kubetest.RolledOut(d) }
