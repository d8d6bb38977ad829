// Command stagehand-podsim runs Stagehand's pod-status simulator (internal/podsim)
// against a cluster: it registers a Ready node and plays kubelet for the pods
// bound to it, so Deployments roll out on a control plane that cannot run
// containers. scripts/kube-up.sh starts it next to the local control plane.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/stagehand-dev/stagehand/internal/podsim"
)

func main() {
	kubeconfig := flag.String("kubeconfig", os.Getenv("KUBECONFIG"), "path to the kubeconfig of the cluster to simulate a node for")
	kubeContext := flag.String("context", "", "kubeconfig context (default: the current context)")
	nodeName := flag.String("node-name", podsim.DefaultNodeName, "name of the simulated Node")
	backOff := flag.Duration("initial-backoff", 10*time.Second, "first crash-loop back-off (doubles per restart, as a kubelet's does)")
	verbose := flag.Bool("v", false, "log every fault written")
	flag.Parse()

	if err := run(*kubeconfig, *kubeContext, *nodeName, *backOff, *verbose); err != nil {
		fmt.Fprintln(os.Stderr, "stagehand-podsim:", err)
		os.Exit(1)
	}
}

func run(kubeconfig, kubeContext, nodeName string, backOff time.Duration, verbose bool) error {
	if kubeconfig == "" {
		return fmt.Errorf("--kubeconfig is required")
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

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	logger := log.New(os.Stderr, "", log.LstdFlags|log.Lmicroseconds)
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
	return podsim.Run(ctx, client, opts)
}
