// Package portalsim makes a simulated Kubernetes Deployment run a real
// Backstage portal: for the pods internal/podsim plays, it reads the Backstage
// version each pod's image names — from the image itself, in a real
// registry — and runs that version's real backend (tools/backstage, through
// internal/backstagetest) against the environment's real database. Pod
// readiness is the backend's readiness, so an upgrade really migrates the
// database, and rolling an image back onto a migrated schema really fails
// ("The migration directory is corrupt": readiness 503, the process stays
// up), as it does for Backstage users.
//
// What it plays, per Portal (one Deployment's container):
//
//   - Image → version. The image reference's registry is a plain-HTTP
//     registry (host:port/repo:tag or @digest). The manifest (or an index's
//     linux/amd64 entry) and its layers, newest first, are read for
//     /app/package.json (and /app/backstage.json). Its dependencies pick
//     the backend: @backstage/plugin-catalog-backend 3.9.1 or 4.0.0 run
//     the real plugin; any other version starts a process that exits at
//     once ("Cannot find module … (not installed)") before touching the
//     database — a crash-looping upgrade; no @backstage/plugin-auth-backend
//     starts without auth. An image the registry does not have (or that
//     cannot be read) is a pull failure; one without /app/package.json
//     exits at once. Reads are cached by manifest digest and bounded.
//   - Backends. One process per distinct image among the Deployment's live
//     pods, on its own free port, all on the same database (as two versions
//     share one during a rolling update). Started when the first pod with
//     the image appears, stopped (process group) when none remains — so
//     scaling to 0 stops everything, as a database restore needs —, and
//     restarted after a back-off when it exits while pods remain.
//   - Probe. Sim.Probe is podsim.Options.Probe: a pod of image X is Ready
//     when X's backend answers readiness 200, Running not Ready while it
//     starts or answers 503, Exited when the process ended, PullFailed when
//     the image cannot be read.
//   - Termination. Sim.Terminating is podsim.Options.Terminating: a deleted
//     pod stays Terminating until its image's backend (if no other pod
//     keeps it) has stopped, so pods gone means processes gone.
//   - Service. An HTTP reverse proxy on 127.0.0.1:Portal.Port forwards to
//     the backend of the newest Ready pod (by creation), as a Service routes
//     to ready endpoints; with none Ready it answers 503 "no ready
//     endpoints". Smoke checks and readiness presets use this URL.
//
// With kubetest, whose control plane runs the simulator it is given
// options for, create the Sim first without a client and run it on the
// plane's:
//
//	ps := portalsim.New(nil, []portalsim.Portal{{Namespace: "portal", Deployment: "backstage",
//		Container: "backstage", Port: port, DB: portalsim.Database{Client: "pg", Host: pg.Host, Port: pg.Port, User: pg.User}}},
//		portalsim.Options{Logf: t.Logf})
//	env, err := kubetest.Start(ctx, kubetest.Options{Sim: podsim.Options{Probe: ps.Probe, Terminating: ps.Terminating}})
//	go ps.RunOn(ctx, env.Client) // returns once ctx ends and every backend has stopped
package portalsim

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/stagehand-dev/stagehand/internal/backstagetest"
	"github.com/stagehand-dev/stagehand/internal/podsim"
)

// Database is the Knex connection every backend of a portal uses for
// backend.database (client "pg" or "mysql2").
type Database = backstagetest.Database

// Portal is one Deployment whose pods run a real Backstage.
type Portal struct {
	Namespace, Deployment string
	// Container is the pod container that runs Backstage.
	Container string
	// Port is the environment URL's port: the simulated Service listens on
	// 127.0.0.1:Port.
	Port int
	// DB is the database all of the portal's backends share.
	DB Database
	// BackstageDir is tools/backstage; empty finds it from the module root
	// (or $STAGEHAND_BACKSTAGE_DIR).
	BackstageDir string
}

func (p *Portal) key() string { return p.Namespace + "/" + p.Deployment }

// Validate reports what is wrong with a portal's configuration.
func (p *Portal) Validate() error {
	switch {
	case p.Namespace == "" || p.Deployment == "" || p.Container == "":
		return fmt.Errorf("portal %q/%q/%q: namespace, deployment and container are required", p.Namespace, p.Deployment, p.Container)
	case p.Port <= 0 || p.Port > 65535:
		return fmt.Errorf("portal %s: port %d out of range", p.key(), p.Port)
	case p.DB.Client != "pg" && p.DB.Client != "mysql2":
		return fmt.Errorf("portal %s: database client %q: want pg or mysql2", p.key(), p.DB.Client)
	case p.DB.Host == "" || p.DB.Port <= 0 || p.DB.User == "":
		return fmt.Errorf("portal %s: database host, port and user are required", p.key())
	}
	return nil
}

// Options tunes a Sim. The zero value is usable.
type Options struct {
	// Logf receives a line for every backend start, stop, exit and
	// readiness change, with image and version; nil discards them.
	Logf func(format string, args ...any)
	// ReadinessInterval is how often a backend's readiness is polled;
	// default 500ms.
	ReadinessInterval time.Duration
	// RestartBackOff is the first wait before an exited backend is started
	// again (doubling up to MaxRestartBackOff); defaults 2s and 30s.
	RestartBackOff    time.Duration
	MaxRestartBackOff time.Duration
	// PullRetry is how long after a failed image read it is read again;
	// default 5s.
	PullRetry time.Duration
	// RegistryClient reads images; default a client with a 1 minute timeout.
	RegistryClient *http.Client
	// MaxLayerBytes and MaxLayers bound what is read of an image; defaults
	// DefaultMaxLayerBytes and DefaultMaxLayers.
	MaxLayerBytes int64
	MaxLayers     int
}

// Sim runs the portals' backends and Services for the pods of a cluster.
type Sim struct {
	client  kubernetes.Interface
	portals []*portalState
	opts    Options
	images  *imageReader

	poke chan struct{}

	mu       sync.Mutex
	lister   nsLister // nil until RunOn has synced
	stopping sync.WaitGroup
}

type portalState struct {
	Portal
	mu       sync.Mutex
	backends map[string]*backend // by image, live pods only
	gone     []*backend          // stopping, until their process is reaped
}

// New returns a Sim for portals on client. client may be nil when the Sim
// must exist before the cluster does (kubetest: its Probe goes into the
// control plane's Options); then run it with RunOn.
func New(client kubernetes.Interface, portals []Portal, opts Options) *Sim {
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	if opts.ReadinessInterval <= 0 {
		opts.ReadinessInterval = 500 * time.Millisecond
	}
	if opts.RestartBackOff <= 0 {
		opts.RestartBackOff = 2 * time.Second
	}
	if opts.MaxRestartBackOff <= 0 {
		opts.MaxRestartBackOff = 30 * time.Second
	}
	if opts.PullRetry <= 0 {
		opts.PullRetry = 5 * time.Second
	}
	if opts.RegistryClient == nil {
		opts.RegistryClient = &http.Client{Timeout: time.Minute}
	}
	if opts.MaxLayerBytes <= 0 {
		opts.MaxLayerBytes = DefaultMaxLayerBytes
	}
	if opts.MaxLayers <= 0 {
		opts.MaxLayers = DefaultMaxLayers
	}
	s := &Sim{
		client: client,
		opts:   opts,
		images: &imageReader{client: opts.RegistryClient, maxLayerBytes: opts.MaxLayerBytes, maxLayers: opts.MaxLayers, cache: map[string]ImageInfo{}},
		poke:   make(chan struct{}, 1),
	}
	for _, p := range portals {
		s.portals = append(s.portals, &portalState{Portal: p, backends: map[string]*backend{}})
	}
	return s
}

// Run runs the Sim on the client given to New until ctx ends; see RunOn.
func (s *Sim) Run(ctx context.Context) error {
	if s.client == nil {
		return ErrNoClient
	}
	return s.RunOn(ctx, s.client)
}

// RunOn watches the portals' pods through client, runs their backends and
// serves each portal's Service port until ctx ends; then it stops every
// backend and returns nil, or an error if a portal is invalid or its port
// cannot be bound.
func (s *Sim) RunOn(ctx context.Context, client kubernetes.Interface) error {
	if client == nil {
		return ErrNoClient
	}
	seen := map[string]bool{}
	ports := map[int]bool{}
	for _, p := range s.portals {
		if err := p.Validate(); err != nil {
			return fmt.Errorf("portalsim: %w", err)
		}
		if seen[p.key()] || ports[p.Port] {
			return fmt.Errorf("portalsim: portal %s: deployment or port %d given twice", p.key(), p.Port)
		}
		seen[p.key()], ports[p.Port] = true, true
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	// Services first: a port that is taken is a configuration error.
	var servers []*http.Server
	for _, p := range s.portals {
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p.Port)))
		if err != nil {
			for _, srv := range servers {
				_ = srv.Close()
			}
			return fmt.Errorf("portalsim: portal %s: listen on port %d: %w", p.key(), p.Port, err)
		}
		srv := &http.Server{Handler: s.service(p), ReadHeaderTimeout: 10 * time.Second}
		servers = append(servers, srv)
		go func() { _ = srv.Serve(ln) }()
		s.opts.Logf("portalsim: %s: service on http://127.0.0.1:%d", p.key(), p.Port)
	}
	defer func() {
		for _, srv := range servers {
			_ = srv.Close()
		}
	}()

	namespaces := map[string]bool{}
	for _, p := range s.portals {
		namespaces[p.Namespace] = true
	}
	listers := map[string]corelisters.PodLister{}
	var synced []cache.InformerSynced
	for ns := range namespaces {
		f := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace(ns))
		inf := f.Core().V1().Pods()
		poke := func(any) { s.kick() }
		if _, err := inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc: poke, UpdateFunc: func(_, o any) { poke(o) }, DeleteFunc: poke,
		}); err != nil {
			return fmt.Errorf("portalsim: watch pods in %s: %w", ns, err)
		}
		listers[ns] = inf.Lister()
		synced = append(synced, inf.Informer().HasSynced)
		f.Start(ctx.Done())
		defer f.Shutdown()
	}
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		return nil
	}
	s.mu.Lock()
	s.lister = nsLister(listers)
	s.mu.Unlock()

	for {
		s.reconcile(ctx)
		select {
		case <-ctx.Done():
			s.stopAll()
			return nil
		case <-s.poke:
		case <-time.After(5 * time.Second):
		}
	}
}

// nsLister routes a namespaced lookup to that namespace's informer.
type nsLister map[string]corelisters.PodLister

func (l nsLister) pods(ns string) ([]*corev1.Pod, error) {
	if x, ok := l[ns]; ok {
		return x.Pods(ns).List(labels.Everything())
	}
	return nil, nil
}

func (s *Sim) kick() {
	select {
	case s.poke <- struct{}{}:
	default:
	}
}

func (s *Sim) podLister() nsLister {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lister
}

// livePods are the portal's pods that still count: not deleted, not
// finished, with the portal's container.
func (s *Sim) livePods(p *portalState) []*corev1.Pod {
	l := s.podLister()
	if l == nil {
		return nil
	}
	pods, _ := l.pods(p.Namespace)
	var live []*corev1.Pod
	for _, pod := range pods {
		if pod.DeletionTimestamp != nil || pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
			continue
		}
		if !belongs(pod, &p.Portal) || containerImage(pod, p.Container) == "" {
			continue
		}
		live = append(live, pod)
	}
	return live
}

// belongs reports whether pod is one of the portal Deployment's: owned by
// one of its ReplicaSets, which the Deployment controller names
// <deployment>-<pod-template-hash>.
func belongs(pod *corev1.Pod, p *Portal) bool {
	if pod.Namespace != p.Namespace {
		return false
	}
	hash := pod.Labels["pod-template-hash"]
	for _, o := range pod.OwnerReferences {
		if o.Kind == "ReplicaSet" && hash != "" && o.Name == p.Deployment+"-"+hash {
			return true
		}
	}
	return false
}

func containerImage(pod *corev1.Pod, container string) string {
	for _, c := range pod.Spec.Containers {
		if c.Name == container {
			return c.Image
		}
	}
	return ""
}

// reconcile starts a backend for every image a live pod has and stops
// those no live pod has any more.
func (s *Sim) reconcile(ctx context.Context) {
	for _, p := range s.portals {
		want := map[string]bool{}
		for _, pod := range s.livePods(p) {
			want[containerImage(pod, p.Container)] = true
		}
		p.mu.Lock()
		for image := range want {
			if p.backends[image] != nil {
				continue
			}
			bctx, cancel := context.WithCancel(ctx)
			b := &backend{sim: s, portal: &p.Portal, image: image, cancel: cancel, done: make(chan struct{}), state: StateResolving, message: "reading the image"}
			p.backends[image] = b
			s.opts.Logf("portalsim: %s image %s: first pod, starting its backend", p.key(), image)
			go b.run(bctx)
		}
		for image, b := range p.backends {
			if want[image] {
				continue
			}
			delete(p.backends, image)
			p.gone = append(p.gone, b)
			s.opts.Logf("portalsim: %s image %s: no pod left, stopping its backend", p.key(), image)
			b.cancel()
			s.stopping.Add(1)
			go func() {
				defer s.stopping.Done()
				<-b.done
				p.mu.Lock()
				defer p.mu.Unlock()
				for i, g := range p.gone {
					if g == b {
						p.gone = append(p.gone[:i], p.gone[i+1:]...)
						break
					}
				}
			}()
		}
		p.mu.Unlock()
	}
}

func (s *Sim) stopAll() {
	for _, p := range s.portals {
		p.mu.Lock()
		for image, b := range p.backends {
			delete(p.backends, image)
			p.gone = append(p.gone, b)
			b.cancel()
			s.stopping.Add(1)
			go func() {
				defer s.stopping.Done()
				<-b.done
			}()
		}
		p.mu.Unlock()
	}
	s.stopping.Wait()
	for _, p := range s.portals {
		p.mu.Lock()
		p.gone = nil
		p.mu.Unlock()
	}
}

func (s *Sim) portalFor(pod *corev1.Pod, container string) *portalState {
	for _, p := range s.portals {
		if p.Container == container && belongs(pod, &p.Portal) {
			return p
		}
	}
	return nil
}

// Probe is podsim.Options.Probe: for a portal's container it answers from
// the state of the backend running the container's image; other
// containers are not handled. It never blocks.
func (s *Sim) Probe(pod *corev1.Pod, c corev1.Container) podsim.ProbeResult {
	p := s.portalFor(pod, c.Name)
	if p == nil {
		return podsim.ProbeResult{}
	}
	p.mu.Lock()
	b := p.backends[c.Image]
	p.mu.Unlock()
	if b == nil {
		// Not seen by the watch yet: the container is being created.
		s.kick()
		return podsim.ProbeResult{Handled: true, Message: "container starting"}
	}
	st := b.status()
	switch st.State {
	case StateReady:
		return podsim.ProbeResult{Handled: true, Ready: true}
	case StatePullFailed:
		return podsim.ProbeResult{Handled: true, PullFailed: true, Message: st.Message}
	case StateExited:
		code := int32(st.ExitCode)
		if code == 0 {
			code = 1 // a server that returns has failed all the same
		}
		return podsim.ProbeResult{Handled: true, Exited: true, ExitCode: code, Message: st.Message}
	}
	return podsim.ProbeResult{Handled: true, Message: st.Message}
}

// Terminating is podsim.Options.Terminating: a deleted pod of a portal
// stays while the backend of its image is still to be stopped or
// stopping because no other live pod has that image, so once the pods are
// gone from the API (scaled to 0), their processes are gone too — a
// database restore after that finds no backend holding connections.
func (s *Sim) Terminating(pod *corev1.Pod) bool {
	for _, p := range s.portals {
		image := containerImage(pod, p.Container)
		if image == "" || !belongs(pod, &p.Portal) {
			continue
		}
		for _, other := range s.livePods(p) {
			if other.UID != pod.UID && containerImage(other, p.Container) == image {
				return false // the backend stays for the other pod
			}
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.backends[image] != nil {
			s.kick() // the watch has not caught up with the deletion yet
			return true
		}
		for _, b := range p.gone {
			if b.image == image {
				return true
			}
		}
		return false
	}
	return false
}

// Backends describes every backend of every portal (including those being
// stopped), for logs and test failure messages.
func (s *Sim) Backends() []BackendStatus {
	var out []BackendStatus
	for _, p := range s.portals {
		p.mu.Lock()
		bs := make([]*backend, 0, len(p.backends)+len(p.gone))
		for _, b := range p.backends {
			bs = append(bs, b)
		}
		bs = append(bs, p.gone...)
		p.mu.Unlock()
		for _, b := range bs {
			out = append(out, b.status())
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Deployment != out[j].Deployment {
			return out[i].Namespace+"/"+out[i].Deployment < out[j].Namespace+"/"+out[j].Deployment
		}
		return out[i].Image < out[j].Image
	})
	return out
}

// Describe renders Backends as text with each backend's log tail.
func (s *Sim) Describe() string {
	var b strings.Builder
	for _, st := range s.Backends() {
		fmt.Fprintf(&b, "--- %s/%s image %s: %s (%s), catalog %q, url %s, pid %d, starts %d\n%s\n",
			st.Namespace, st.Deployment, st.Image, st.State, st.Message, st.Info.CatalogVersion, st.URL, st.Pid, st.Starts, st.LogTail)
	}
	if b.Len() == 0 {
		return "(no backends)\n"
	}
	return b.String()
}

// service is the portal's Service: a reverse proxy to the backend of the
// newest Ready pod.
func (s *Sim) service(p *portalState) http.Handler {
	proxy := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			target := r.In.Context().Value(targetKey{}).(*url.URL)
			r.SetURL(target)
			r.Out.Host = r.In.Host
		},
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			http.Error(w, "upstream: "+err.Error(), http.StatusBadGateway)
		},
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		target := s.endpoint(p)
		if target == nil {
			http.Error(w, "no ready endpoints", http.StatusServiceUnavailable)
			return
		}
		proxy.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), targetKey{}, target)))
	})
}

type targetKey struct{}

// endpoint picks the backend URL of the newest Ready pod whose image's
// backend runs.
func (s *Sim) endpoint(p *portalState) *url.URL {
	pods := s.livePods(p)
	sort.Slice(pods, func(i, j int) bool {
		ti, tj := pods[i].CreationTimestamp, pods[j].CreationTimestamp
		if !ti.Equal(&tj) {
			return tj.Before(&ti)
		}
		return pods[i].Name > pods[j].Name
	})
	for _, pod := range pods {
		if !podReady(pod) {
			continue
		}
		p.mu.Lock()
		b := p.backends[containerImage(pod, p.Container)]
		p.mu.Unlock()
		if b == nil {
			continue
		}
		if st := b.status(); st.URL != "" {
			u, err := url.Parse(st.URL)
			if err == nil {
				return u
			}
		}
	}
	return nil
}

func podReady(pod *corev1.Pod) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// ErrNoClient is returned by Run when New was given no client.
var ErrNoClient = errors.New("portalsim: no Kubernetes client (pass one to New, or use RunOn)")
