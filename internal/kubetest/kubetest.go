// Package kubetest starts a private, real Kubernetes control plane for the main
// module's integration tests: etcd, kube-apiserver, kube-controller-manager and
// kube-scheduler built from source into bin/kube (`make kube-tools`), plus the
// in-process pod simulator (internal/podsim) standing in for a kubelet.
//
// Each Env has its own temporary state directory and free loopback ports, so
// packages can run in parallel. The Deployment, ReplicaSet, garbage-collector,
// namespace and service-account controllers are the real ones, and RBAC is
// enforced, which is what the kube activities need to be tested against.
//
// Typical use shares one plane per test package:
//
//	func TestMain(m *testing.M) { os.Exit(kubetest.Main(m)) }
//
//	func TestRollout(t *testing.T) {
//		env := kubetest.Shared(t)
//		...
//	}
package kubetest

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/stagehand-dev/stagehand/internal/localenv"
	"github.com/stagehand-dev/stagehand/internal/podsim"
)

// DefaultContext is the kubeconfig context name an Env writes, the same one
// scripts/kube-up.sh uses for the developer's local cluster.
const DefaultContext = "stagehand-local"

// Options configures Start. The zero value starts a plane from <repo>/bin/kube.
type Options struct {
	// BinDir holds etcd, kube-apiserver, kube-controller-manager and
	// kube-scheduler. Default: $STAGEHAND_KUBE_BIN, else bin/kube at the
	// root of this repository.
	BinDir string
	// StateDir receives data, certificates, keys, logs and the kubeconfig.
	// Default: a new temporary directory, removed by Stop.
	StateDir string
	// Context is the kubeconfig context name; DefaultContext if empty.
	Context string
	// Namespaces are created (and their default ServiceAccount awaited)
	// before Start returns.
	Namespaces []string
	// Sim configures the in-process pod simulator (Env.Sim.Faults records
	// every fault whether or not OnFault is set).
	Sim podsim.Options
	// Logf receives progress lines (component start-up, stops); nil is quiet.
	Logf func(format string, args ...any)
}

// Env is a running private control plane.
type Env struct {
	// Kubeconfig is the path of a kubeconfig file whose Context reaches the
	// plane as a cluster admin (static token in group system:masters).
	Kubeconfig string
	// Context is the kubeconfig context name.
	Context string
	// RESTConfig is the admin configuration the kubeconfig describes.
	RESTConfig *rest.Config
	// Client is an admin clientset.
	Client kubernetes.Interface
	// Sim is the pod simulator playing kubelet for the plane's only node;
	// its Faults method tells when each fault status was written.
	Sim *podsim.Sim
	// StateDir is the plane's directory (logs are under StateDir/logs).
	StateDir string
	// Server is the apiserver URL, https://127.0.0.1:<port>.
	Server string

	opts        Options
	ownStateDir bool
	token       string
	etcd        *localenv.Process
	apiserver   *localenv.Process
	controllers *localenv.Process
	scheduler   *localenv.Process
	simCancel   context.CancelFunc
	simDone     chan error
	stopOnce    sync.Once
	stopErr     error
}

// Start starts a private control plane and returns when it is ready: apiserver
// healthy, node registered Ready, and Options.Namespaces created. On error,
// everything started so far is stopped again.
func Start(ctx context.Context, opts Options) (*Env, error) {
	if opts.Context == "" {
		opts.Context = DefaultContext
	}
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	binDir, err := findBinDir(opts.BinDir)
	if err != nil {
		return nil, err
	}
	// Free ports are found by binding port 0 and releasing it, so another
	// process (a parallel test package) can take one before our component
	// binds it. That is rare; starting over with new ports handles it.
	for attempt := 1; ; attempt++ {
		e, err := startOnce(ctx, opts, binDir)
		if err == nil || attempt == 3 || opts.StateDir != "" || !strings.Contains(err.Error(), "address already in use") {
			return e, err
		}
		opts.Logf("kubetest: port taken while starting (attempt %d), retrying with new ports: %v", attempt, err)
	}
}

func startOnce(ctx context.Context, opts Options, binDir string) (*Env, error) {
	e := &Env{Context: opts.Context, opts: opts}
	if opts.StateDir == "" {
		dir, err := os.MkdirTemp("", "stagehand-kubetest-")
		if err != nil {
			return nil, fmt.Errorf("kubetest: state dir: %w", err)
		}
		e.StateDir, e.ownStateDir = dir, true
	} else {
		e.StateDir = opts.StateDir
	}
	if err := e.start(ctx, binDir); err != nil {
		if stopErr := e.Stop(); stopErr != nil {
			err = errors.Join(err, stopErr)
		}
		return nil, err
	}
	return e, nil
}

func (e *Env) start(ctx context.Context, binDir string) error {
	started := time.Now()
	for _, d := range []string{"etcd", "certs", "logs"} {
		if err := os.MkdirAll(filepath.Join(e.StateDir, d), 0o700); err != nil {
			return fmt.Errorf("kubetest: %w", err)
		}
	}
	ports, err := localenv.FreePorts(3)
	if err != nil {
		return fmt.Errorf("kubetest: free ports: %w", err)
	}
	etcdClient, etcdPeer, apiPort := ports[0], ports[1], ports[2]
	e.Server = "https://127.0.0.1:" + strconv.Itoa(apiPort)

	// A throwaway service-account signing key: the TokenRequest API (used by
	// ServiceAccountClient) needs one, and it must survive apiserver restarts.
	saKey := filepath.Join(e.StateDir, "sa.key")
	if err := writeRSAKey(saKey); err != nil {
		return fmt.Errorf("kubetest: service-account key: %w", err)
	}
	e.token = randomToken()
	tokenFile := filepath.Join(e.StateDir, "tokens.csv")
	if err := os.WriteFile(tokenFile, []byte(e.token+`,stagehand-admin,stagehand-admin,"system:masters"`+"\n"), 0o600); err != nil {
		return fmt.Errorf("kubetest: token file: %w", err)
	}

	logPath := func(name string) string { return filepath.Join(e.StateDir, "logs", name+".log") }
	etcdURL := "http://127.0.0.1:" + strconv.Itoa(etcdClient)
	peerURL := "http://127.0.0.1:" + strconv.Itoa(etcdPeer)
	e.etcd = &localenv.Process{Name: "etcd", Path: filepath.Join(binDir, "etcd"), LogPath: logPath("etcd"), Args: []string{
		"--name=kubetest",
		"--data-dir=" + filepath.Join(e.StateDir, "etcd"),
		"--listen-client-urls=" + etcdURL,
		"--advertise-client-urls=" + etcdURL,
		"--listen-peer-urls=" + peerURL,
		"--initial-advertise-peer-urls=" + peerURL,
		"--initial-cluster=kubetest=" + peerURL,
		"--log-level=warn",
		// Test data is disposable; skipping fsync keeps etcd fast on slow disks.
		"--unsafe-no-fsync",
	}}
	certDir := filepath.Join(e.StateDir, "certs")
	e.apiserver = &localenv.Process{Name: "kube-apiserver", Path: filepath.Join(binDir, "kube-apiserver"), LogPath: logPath("kube-apiserver"), Args: []string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(apiPort),
		"--cert-dir=" + certDir,
		"--token-auth-file=" + tokenFile,
		"--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + saKey,
		"--service-account-signing-key-file=" + saKey,
		"--service-cluster-ip-range=10.96.0.0/16",
		// A loopback advertise address is not a valid Endpoints address, so
		// the reconciler for the `kubernetes` Service would only log errors.
		"--endpoint-reconciler-type=none",
		"--profiling=false",
	}}

	if err := e.etcd.Start(); err != nil {
		return fmt.Errorf("kubetest: %w", err)
	}
	if err := waitHTTP(ctx, e.etcd, etcdURL+"/health", nil, 30*time.Second); err != nil {
		return fmt.Errorf("kubetest: etcd not healthy: %w", err)
	}
	e.opts.Logf("kubetest: etcd up on %s (%s)", etcdURL, time.Since(started).Round(time.Millisecond))
	if err := e.StartAPIServer(); err != nil {
		return err
	}
	e.opts.Logf("kubetest: kube-apiserver up on %s (%s)", e.Server, time.Since(started).Round(time.Millisecond))

	// The apiserver generated a self-signed CA and serving certificate into
	// certDir; the bundle is what clients trust. It is reused on restart.
	caData, err := os.ReadFile(filepath.Join(certDir, "apiserver.crt"))
	if err != nil {
		return fmt.Errorf("kubetest: read apiserver certificate: %w", err)
	}
	e.Kubeconfig = filepath.Join(e.StateDir, "kubeconfig")
	if err := writeKubeconfig(e.Kubeconfig, e.Context, e.Server, caData, e.token); err != nil {
		return fmt.Errorf("kubetest: kubeconfig: %w", err)
	}
	e.RESTConfig, err = clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
		&clientcmd.ClientConfigLoadingRules{ExplicitPath: e.Kubeconfig},
		&clientcmd.ConfigOverrides{CurrentContext: e.Context}).ClientConfig()
	if err != nil {
		return fmt.Errorf("kubetest: load kubeconfig: %w", err)
	}
	// Tests create objects in bursts; client-side throttling would only add
	// latency that no real worker sees against a quiet cluster.
	e.RESTConfig.QPS, e.RESTConfig.Burst = 200, 400
	e.RESTConfig.UserAgent = "stagehand-kubetest"
	if e.Client, err = kubernetes.NewForConfig(e.RESTConfig); err != nil {
		return fmt.Errorf("kubetest: client: %w", err)
	}

	e.controllers = &localenv.Process{Name: "kube-controller-manager", Path: filepath.Join(binDir, "kube-controller-manager"), LogPath: logPath("kube-controller-manager"), Args: []string{
		"--kubeconfig=" + e.Kubeconfig,
		"--controllers=" + strings.Join(Controllers, ","),
		"--leader-elect=false",
		"--secure-port=0",
		// Publishes kube-root-ca.crt into every namespace, as a real cluster
		// does, so projected service-account volumes reference something.
		"--root-ca-file=" + filepath.Join(certDir, "apiserver.crt"),
		"--concurrent-deployment-syncs=10",
		"--concurrent-replicaset-syncs=10",
	}}
	e.scheduler = &localenv.Process{Name: "kube-scheduler", Path: filepath.Join(binDir, "kube-scheduler"), LogPath: logPath("kube-scheduler"), Args: []string{
		"--kubeconfig=" + e.Kubeconfig,
		"--authentication-kubeconfig=" + e.Kubeconfig,
		"--authorization-kubeconfig=" + e.Kubeconfig,
		"--leader-elect=false",
		"--secure-port=0",
	}}
	for _, p := range []*localenv.Process{e.controllers, e.scheduler} {
		if err := p.Start(); err != nil {
			return fmt.Errorf("kubetest: %w", err)
		}
	}

	simOpts := e.opts.Sim
	simOpts.Logf = nonNil(simOpts.Logf, e.opts.Logf)
	e.Sim = podsim.New(e.Client, simOpts)
	simCtx, cancel := context.WithCancel(context.Background())
	e.simCancel, e.simDone = cancel, make(chan error, 1)
	go func() { e.simDone <- e.Sim.Run(simCtx) }()
	select {
	case <-e.Sim.Ready():
	case err := <-e.simDone:
		e.simDone <- err
		return fmt.Errorf("kubetest: pod simulator: %w", err)
	case <-ctx.Done():
		return fmt.Errorf("kubetest: waiting for the pod simulator: %w", ctx.Err())
	}

	// The serviceaccount controller creating `default` is the sign that the
	// controller manager is working; the ReplicaSet controller cannot create
	// pods in a namespace before that.
	for _, ns := range append([]string{"default"}, e.opts.Namespaces...) {
		if err := e.CreateNamespace(ctx, ns); err != nil {
			return err
		}
	}
	for _, p := range []*localenv.Process{e.controllers, e.scheduler} {
		if !p.Running() {
			return fmt.Errorf("kubetest: %s exited: %v\n%s", p.Name, p.ExitErr(), p.LogTail(30))
		}
	}
	e.opts.Logf("kubetest: control plane ready in %s (state %s)", time.Since(started).Round(time.Millisecond), e.StateDir)
	return nil
}

// Controllers are the kube-controller-manager controllers an Env runs: what
// Deployments, namespaces and ServiceAccounts need, and no node lifecycle (the
// simulator owns the node, so nothing taints or evicts it).
var Controllers = []string{
	"deployment-controller",
	"replicaset-controller",
	"serviceaccount-controller",
	"namespace-controller",
	"garbage-collector-controller",
	"root-ca-certificate-publisher-controller",
	"clusterrole-aggregation-controller",
}

// Stop stops the simulator and every component (SIGTERM, then SIGKILL) and
// removes a temporary state directory. It is safe to call more than once.
func (e *Env) Stop() error {
	e.stopOnce.Do(func() {
		var errs []error
		if e.simCancel != nil {
			e.simCancel()
			select {
			case <-e.simDone:
			case <-time.After(10 * time.Second):
				errs = append(errs, errors.New("pod simulator did not stop"))
			}
		}
		// Reverse start order: clients first, etcd last.
		for _, p := range []*localenv.Process{e.scheduler, e.controllers, e.apiserver, e.etcd} {
			if p == nil {
				continue
			}
			if err := p.Stop(10 * time.Second); err != nil {
				errs = append(errs, err)
			}
		}
		if e.ownStateDir && len(errs) == 0 {
			if err := os.RemoveAll(e.StateDir); err != nil {
				errs = append(errs, err)
			}
		}
		e.stopErr = errors.Join(errs...)
	})
	return e.stopErr
}

// StopAPIServer stops kube-apiserver and leaves etcd, the controllers and the
// simulator running, so a test can check how clients ride out an outage.
// StartAPIServer brings it back on the same port with the same certificates
// and keys, so existing clients reconnect. The stop is abrupt (SIGTERM, then
// SIGKILL after 1 s): a graceful apiserver shutdown waits about 10 s for the
// controllers' watches to drain, and an outage is abrupt anyway.
func (e *Env) StopAPIServer() error {
	if err := e.apiserver.Stop(time.Second); err != nil {
		return fmt.Errorf("kubetest: stop kube-apiserver: %w", err)
	}
	return nil
}

// StartAPIServer starts kube-apiserver (again) and waits until it is ready.
func (e *Env) StartAPIServer() error {
	if err := e.apiserver.Start(); err != nil {
		return fmt.Errorf("kubetest: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	header := http.Header{"Authorization": {"Bearer " + e.token}}
	if err := waitHTTP(ctx, e.apiserver, e.Server+"/readyz", header, 90*time.Second); err != nil {
		return fmt.Errorf("kubetest: kube-apiserver not ready: %w", err)
	}
	return nil
}

// APIServerRunning reports whether kube-apiserver is currently running.
func (e *Env) APIServerRunning() bool { return e.apiserver != nil && e.apiserver.Running() }

// LogPath returns the log file of a component: "etcd", "kube-apiserver",
// "kube-controller-manager" or "kube-scheduler".
func (e *Env) LogPath(component string) string {
	return filepath.Join(e.StateDir, "logs", component+".log")
}

// CreateNamespace creates ns if it does not exist and waits for its default
// ServiceAccount, without which the ReplicaSet controller cannot create pods.
func (e *Env) CreateNamespace(ctx context.Context, ns string) error {
	_, err := e.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("kubetest: create namespace %s: %w", ns, err)
	}
	return e.waitFor(ctx, 60*time.Second, fmt.Sprintf("default ServiceAccount in %s", ns), func(ctx context.Context) (bool, error) {
		_, err := e.Client.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return err == nil, err
	})
}

// waitFor checks cond until it holds. It polls, which is fine here: it only
// waits for one-off start-up facts (e.g. a ServiceAccount a controller makes).
func (e *Env) waitFor(ctx context.Context, timeout time.Duration, what string, cond func(context.Context) (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		ok, err := cond(ctx)
		if ok {
			return nil
		}
		if err != nil {
			last = err
		}
		select {
		case <-ctx.Done():
			for _, p := range []*localenv.Process{e.controllers, e.scheduler} {
				if p != nil && !p.Running() {
					return fmt.Errorf("kubetest: waiting for %s: %s exited: %v\n%s", what, p.Name, p.ExitErr(), p.LogTail(30))
				}
			}
			return fmt.Errorf("kubetest: waiting for %s: %w", what, errors.Join(ctx.Err(), last))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// findBinDir locates the control-plane binaries, failing with the command
// that builds them.
func findBinDir(dir string) (string, error) {
	if dir == "" {
		dir = os.Getenv("STAGEHAND_KUBE_BIN")
	}
	if dir == "" {
		root, err := localenv.RepoRoot()
		if err != nil {
			return "", fmt.Errorf("kubetest: %w; run `make kube-tools` or set STAGEHAND_KUBE_BIN", err)
		}
		dir = filepath.Join(root, "bin", "kube")
	}
	var missing []string
	for _, b := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"} {
		if fi, err := os.Stat(filepath.Join(dir, b)); err != nil || fi.Mode()&0o111 == 0 {
			missing = append(missing, b)
		}
	}
	if len(missing) > 0 {
		return "", fmt.Errorf("kubetest: %s missing in %s: run `make kube-tools`", strings.Join(missing, ", "), dir)
	}
	return dir, nil
}

// waitHTTP polls url until it answers 200, failing early if p exits.
func waitHTTP(ctx context.Context, p *localenv.Process, url string, header http.Header, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client := &http.Client{
		Timeout: 2 * time.Second,
		// Only readiness is checked here; the certificate is verified by
		// every real client through the kubeconfig's CA.
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}},
	}
	defer client.CloseIdleConnections()
	var last string
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		for k, v := range header {
			req.Header[k] = v
		}
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		select {
		case <-p.Exited():
			return fmt.Errorf("%s exited: %v\n%s", p.Name, p.ExitErr(), p.LogTail(30))
		case <-ctx.Done():
			return fmt.Errorf("%s: %s (last: %s)\n%s", url, ctx.Err(), last, p.LogTail(30))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func writeRSAKey(path string) error {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	der := x509.MarshalPKCS1PrivateKey(key)
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: der}), 0o600)
}

func randomToken() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func writeKubeconfig(path, context, server string, caData []byte, token string) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[context] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: caData}
	cfg.AuthInfos[context] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts[context] = &clientcmdapi.Context{Cluster: context, AuthInfo: context, Namespace: "default"}
	cfg.CurrentContext = context
	return clientcmd.WriteToFile(*cfg, path)
}

func nonNil(f, fallback func(string, ...any)) func(string, ...any) {
	if f != nil {
		return f
	}
	return fallback
}
