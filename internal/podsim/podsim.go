// Package podsim is Stagehand's pod-status simulator: a stand-in for a kubelet on
// machines where nothing can run containers.
//
// It registers one Ready, untainted Node, watches the pods the real scheduler binds
// to it and writes their status the way a kubelet would — Running and Ready on the
// image in the spec, or a fault on demand (CrashLoopBackOff, ErrImagePull /
// ImagePullBackOff, OOMKilled, never-Ready) — together with the kubelet's Events
// (Pulling, Pulled, Created, Started, BackOff, Failed, Unhealthy). Deployments and
// ReplicaSets stay the real controllers; only the node side is simulated.
//
// Faults are chosen per pod by the annotation sim.stagehand.dev/fault, or per
// container by a marker in the image tag (e.g. backend:pr-1-crashloop), so a test
// or a runbook can inject a bad image without special plumbing. The exact moment a
// fault status is written is reported through Options.OnFault and Sim.Faults, which
// lets a benchmark measure how quickly Stagehand notices it.
package podsim

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
)

// FaultAnnotation selects a fault for every container of a pod. Its values are the
// Fault constants; an empty or unknown value means healthy.
const FaultAnnotation = "sim.stagehand.dev/fault"

// DefaultNodeName is the node the simulator registers when Options.NodeName is empty.
const DefaultNodeName = "stagehand-sim-node"

// Fault is a simulated container failure mode.
type Fault string

// The faults the simulator can produce. The same strings are the markers looked
// for in an image tag.
const (
	FaultNone      Fault = ""
	FaultCrashLoop Fault = "crashloop" // exits 1 at once; CrashLoopBackOff with growing restartCount
	FaultImagePull Fault = "imagepull" // ErrImagePull, then ImagePullBackOff
	FaultOOM       Fault = "oom"       // OOMKilled (exit 137), then CrashLoopBackOff
	FaultNotReady  Fault = "notready"  // Running but its readiness probe never passes
)

// Status reasons written into container states, as a kubelet spells them.
const (
	ReasonCrashLoopBackOff = "CrashLoopBackOff"
	ReasonErrImagePull     = "ErrImagePull"
	ReasonImagePullBackOff = "ImagePullBackOff"
	ReasonOOMKilled        = "OOMKilled"
	ReasonNotReady         = "ContainersNotReady"
)

// Options configures a simulator. The zero value is usable.
type Options struct {
	// NodeName is the Node to register and serve; DefaultNodeName if empty.
	NodeName string
	// OnFault, if set, is called each time a fault status is written for a
	// container: reason is the waiting reason written (CrashLoopBackOff,
	// ErrImagePull, ImagePullBackOff) or ContainersNotReady for a never-Ready
	// pod. at is taken just before the successful status write was sent, so a
	// latency measured from it is never understated. It runs on a simulator
	// goroutine and must not block.
	OnFault func(pod *corev1.Pod, reason string, at time.Time)
	// OnReady, if set, is called when a pod's status is first written as
	// Ready, with the time taken just before that write was sent.
	OnReady func(pod *corev1.Pod, at time.Time)
	// InitialBackOff is the first crash-loop back-off; it doubles per restart up
	// to MaxBackOff, as a kubelet's does. Defaults: 10s and 5m.
	InitialBackOff time.Duration
	MaxBackOff     time.Duration
	// ImagePullBackOffDelay is how long a container shows ErrImagePull before
	// it turns into ImagePullBackOff. Default 1s.
	ImagePullBackOffDelay time.Duration
	// Logf receives diagnostic lines; nil discards them.
	Logf func(format string, args ...any)
	// Probe, if set, is asked about every container that has no injected
	// fault (image-tag and annotation faults take precedence) at each sync
	// of its pod: it plays the container's process and readiness probe, so
	// something outside the simulator (internal/portalsim runs the real
	// program an image names) decides whether the container runs, is
	// Ready, exits or cannot be pulled. A result with Handled false leaves
	// the container to the simulator's default (Running and Ready). Probe
	// runs on simulator goroutines, often: it must answer from memory,
	// never block, and never call back into the Sim.
	Probe func(pod *corev1.Pod, c corev1.Container) ProbeResult
	// Terminating, if set, is asked about a pod whose deletion was
	// requested: true while what plays its containers is still stopping.
	// The simulator removes the pod once it answers false, or at the
	// deletion deadline (deletionTimestamp, from the grace period), as a
	// kubelet removes a pod once its containers are gone or killed. Like
	// Probe it must answer from memory and never block.
	Terminating func(pod *corev1.Pod) bool
	// ProbeInterval is how often a pod is synced again while Probe handles
	// one of its containers, the simulated probe period. Default 1s.
	ProbeInterval time.Duration
}

// ProbeResult is Options.Probe's answer for one container at one moment.
type ProbeResult struct {
	// Handled false means the probe has no opinion: the simulator behaves
	// as without a probe. The other fields count only when it is true.
	Handled bool
	// Ready: Running and Ready. Not Ready (and not Exited or PullFailed):
	// Running but not Ready, with an Unhealthy "Readiness probe failed"
	// event, as FaultNotReady.
	Ready bool
	// Exited: the container's process ended with ExitCode; it shows as
	// terminated (lastState: Error, or Completed for 0) and then
	// CrashLoopBackOff with growing restarts, as FaultCrashLoop. At each
	// simulated restart the probe is asked again.
	Exited   bool
	ExitCode int32
	// PullFailed: the image cannot be pulled (ErrImagePull, then
	// ImagePullBackOff), until a later answer says otherwise.
	PullFailed bool
	// Message explains the state (probe failure, exit or pull error); it
	// goes into the status message and the event.
	Message string
}

// FaultRecord is one fault status write, as reported to OnFault.
type FaultRecord struct {
	Namespace string
	Pod       string
	UID       types.UID
	Container string
	Image     string
	// Reason is the waiting reason written (or ContainersNotReady).
	Reason string
	// LastTerminationReason is the reason in lastState.terminated (Error,
	// OOMKilled), empty if none.
	LastTerminationReason string
	RestartCount          int32
	At                    time.Time
}

// Sim is a running simulator. Create it with New and start it with Run.
type Sim struct {
	client kubernetes.Interface
	opts   Options

	ready     chan struct{}
	readyOnce sync.Once

	queue    workqueue.TypedRateLimitingInterface[string]
	lister   corelisters.PodLister
	recorder record.EventRecorder

	writes atomic.Int64

	mu     sync.Mutex
	pods   map[string]*podState // by namespace/name
	faults []FaultRecord
	nextIP uint32
}

// podState is what the simulator remembers about one pod between syncs, so that
// repeated syncs (informer resyncs, conflicts) write the same status and emit
// each kubelet event once.
type podState struct {
	uid        types.UID
	startTime  metav1.Time
	podIP      string
	containers map[string]*containerState
	readyFired bool
}

type containerState struct {
	image     string
	fault     Fault
	startedAt metav1.Time
	// restarts counts simulated container exits (crashloop, oom).
	restarts int32
	// lastExit is when the container last terminated.
	lastExit metav1.Time
	// pullBackOff is set once ErrImagePull has turned into ImagePullBackOff.
	pullBackOff bool
	// nextStep is when the next crash or back-off transition is due.
	nextStep time.Time
	// eventsDone records which one-off events were emitted.
	startEvents bool
	pullEvents  bool
	unhealthy   bool
	// written is the last status reason reported through OnFault, so a
	// rewrite of an unchanged status is not reported twice.
	written string
	// probe is the state Options.Probe last put the container in (for
	// containers without an injected fault), with the exit it reported.
	probe    probeState
	exitCode int32
	probeMsg string
}

type probeState int

const (
	probeNone probeState = iota
	probeRunning
	probeCrashing
	probePulling
)

// New returns a simulator that will act on client once Run is called.
func New(client kubernetes.Interface, opts Options) *Sim {
	if opts.NodeName == "" {
		opts.NodeName = DefaultNodeName
	}
	if opts.InitialBackOff <= 0 {
		opts.InitialBackOff = 10 * time.Second
	}
	if opts.MaxBackOff <= 0 {
		opts.MaxBackOff = 5 * time.Minute
	}
	if opts.ImagePullBackOffDelay <= 0 {
		opts.ImagePullBackOffDelay = time.Second
	}
	if opts.ProbeInterval <= 0 {
		opts.ProbeInterval = time.Second
	}
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	return &Sim{
		client: client,
		opts:   opts,
		ready:  make(chan struct{}),
		pods:   map[string]*podState{},
	}
}

// Run registers the node with client and simulates its pods until ctx ends.
func Run(ctx context.Context, client kubernetes.Interface, opts Options) error {
	return New(client, opts).Run(ctx)
}

// NodeName is the Node this simulator serves.
func (s *Sim) NodeName() string { return s.opts.NodeName }

// Ready is closed once the node is registered Ready and the pod watch is synced:
// from then on a pod the scheduler binds is simulated.
func (s *Sim) Ready() <-chan struct{} { return s.ready }

// Faults returns every fault status write so far, oldest first.
func (s *Sim) Faults() []FaultRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]FaultRecord(nil), s.faults...)
}

// StatusWrites counts the pod status updates written so far. A steady count
// while nothing changes shows the simulator is idle, not rewriting statuses.
func (s *Sim) StatusWrites() int64 { return s.writes.Load() }

// Run simulates until ctx ends; it returns nil then, or an error if the node
// could not be registered.
func (s *Sim) Run(ctx context.Context) error {
	if err := s.ensureNodeWithRetry(ctx); err != nil {
		return err
	}

	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: s.client.CoreV1().Events("")})
	defer broadcaster.Shutdown()
	s.recorder = broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "kubelet", Host: s.opts.NodeName})

	s.queue = workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.DefaultTypedControllerRateLimiter[string](),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: "podsim"})
	defer s.queue.ShutDown()

	// Only pods bound to our node matter, exactly like a kubelet's own watch.
	podFactory := informers.NewSharedInformerFactoryWithOptions(s.client, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", s.opts.NodeName).String()
		}))
	podInformer := podFactory.Core().V1().Pods()
	s.lister = podInformer.Lister()
	enqueue := func(obj any) {
		if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			s.queue.Add(key)
		}
	}
	if _, err := podInformer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, obj any) { enqueue(obj) },
		DeleteFunc: enqueue,
	}); err != nil {
		return fmt.Errorf("podsim: watch pods: %w", err)
	}

	// The node is watched too: if anything taints it or marks it NotReady (a
	// re-created node gets the not-ready taint from admission), put it back.
	nodeFactory := informers.NewSharedInformerFactoryWithOptions(s.client, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", s.opts.NodeName).String()
		}))
	nodeChanged := make(chan struct{}, 1)
	poke := func(any) {
		select {
		case nodeChanged <- struct{}{}:
		default:
		}
	}
	if _, err := nodeFactory.Core().V1().Nodes().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    poke,
		UpdateFunc: func(_, obj any) { poke(obj) },
		DeleteFunc: poke,
	}); err != nil {
		return fmt.Errorf("podsim: watch node: %w", err)
	}
	nodeLister := nodeFactory.Core().V1().Nodes().Lister()

	podFactory.Start(ctx.Done())
	nodeFactory.Start(ctx.Done())
	defer podFactory.Shutdown()
	defer nodeFactory.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), podInformer.Informer().HasSynced, nodeFactory.Core().V1().Nodes().Informer().HasSynced) {
		return nil // ctx ended before the first list
	}

	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for s.processNext(ctx) {
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-ctx.Done():
				return
			case <-nodeChanged:
				n, err := nodeLister.Get(s.opts.NodeName)
				if err == nil && nodeHealthy(n) {
					continue
				}
				if err := s.ensureNodeWithRetry(ctx); err != nil && ctx.Err() == nil {
					s.opts.Logf("podsim: re-register node: %v", err)
				}
			}
		}
	}()
	s.readyOnce.Do(func() { close(s.ready) })
	s.opts.Logf("podsim: node %s ready", s.opts.NodeName)

	<-ctx.Done()
	s.queue.ShutDown()
	wg.Wait()
	return nil
}

func (s *Sim) processNext(ctx context.Context) bool {
	key, quit := s.queue.Get()
	if quit {
		return false
	}
	defer s.queue.Done(key)
	requeueAfter, err := s.syncPod(ctx, key)
	switch {
	case err != nil:
		if ctx.Err() == nil && !apierrors.IsConflict(err) && !apierrors.IsNotFound(err) {
			s.opts.Logf("podsim: sync %s: %v", key, err)
		}
		s.queue.AddRateLimited(key)
	default:
		s.queue.Forget(key)
		if requeueAfter > 0 {
			s.queue.AddAfter(key, requeueAfter)
		}
	}
	return true
}

// syncPod brings one pod's status to what a kubelet would report now. It returns
// how long until the pod's next simulated transition (0 if none is pending).
func (s *Sim) syncPod(ctx context.Context, key string) (time.Duration, error) {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return 0, nil
	}
	pod, err := s.lister.Pods(ns).Get(name)
	if apierrors.IsNotFound(err) {
		s.forgetPod(ns, name)
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if pod.Spec.NodeName != s.opts.NodeName {
		return 0, nil
	}
	if pod.DeletionTimestamp != nil {
		// Something outside may still be stopping what plays the pod's
		// containers (Options.Terminating); the deletion waits for it, up to
		// the deletion deadline the apiserver set from the grace period,
		// when a kubelet would kill them.
		if s.opts.Terminating != nil && time.Now().Before(pod.DeletionTimestamp.Time) && s.opts.Terminating(pod) {
			return min(s.opts.ProbeInterval, 200*time.Millisecond), nil
		}
		// There are no containers to stop, so finish the deletion at once, as
		// a kubelet does once its containers are gone.
		zero := int64(0)
		err := s.client.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{
			GracePeriodSeconds: &zero,
			Preconditions:      &metav1.Preconditions{UID: &pod.UID},
		})
		if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
			return 0, nil
		}
		return 0, err
	}
	if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return 0, nil
	}

	now := time.Now()
	st := s.stateFor(pod, now)
	probes := s.probe(pod, st)
	status, next, notes := s.desiredStatus(pod, st, probes, now)
	if equality.Semantic.DeepEqual(status, &pod.Status) {
		return untilNext(next, now), nil
	}
	updated := pod.DeepCopy()
	updated.Status = *status
	at := time.Now()
	// Fault records go in before the write: a watcher may see the new status
	// before UpdateStatus returns here, and a benchmark that then asks
	// Faults() must find the record. A failed write takes them out again.
	faults := s.recordFaults(updated, notes, at)
	written, err := s.client.CoreV1().Pods(ns).UpdateStatus(ctx, updated, metav1.UpdateOptions{})
	if err != nil {
		s.dropFaults(faults)
		return 0, err
	}
	s.writes.Add(1)
	s.afterWrite(written, notes, faults, at)
	return untilNext(next, now), nil
}

func untilNext(next, now time.Time) time.Duration {
	if next.IsZero() {
		return 0
	}
	if d := next.Sub(now); d > 0 {
		return d
	}
	return time.Millisecond
}

func (s *Sim) forgetPod(ns, name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.pods, ns+"/"+name)
}

// stateFor returns the remembered state of pod, creating it — adopting what an
// earlier simulator wrote, if anything — the first time the pod is seen.
func (s *Sim) stateFor(pod *corev1.Pod, now time.Time) *podState {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := pod.Namespace + "/" + pod.Name
	st := s.pods[key]
	if st == nil || st.uid != pod.UID {
		st = &podState{uid: pod.UID, startTime: metav1.NewTime(now).Rfc3339Copy(), containers: map[string]*containerState{}}
		if pod.Status.StartTime != nil {
			st.startTime = *pod.Status.StartTime
		}
		st.podIP = pod.Status.PodIP
		if st.podIP == "" {
			s.nextIP++
			st.podIP = fmt.Sprintf("10.88.%d.%d", (s.nextIP/250)%250, s.nextIP%250+2)
		}
		s.pods[key] = st
	}
	previous := map[string]corev1.ContainerStatus{}
	for _, cs := range pod.Status.ContainerStatuses {
		previous[cs.Name] = cs
	}
	for _, c := range pod.Spec.Containers {
		cst := st.containers[c.Name]
		if cst != nil && cst.image == c.Image {
			continue
		}
		// New container, or its image was changed in place: start it afresh.
		cst = &containerState{image: c.Image, fault: faultFor(pod, c), startedAt: metav1.NewTime(now).Rfc3339Copy()}
		if prev, ok := previous[c.Name]; ok && prev.Image == c.Image {
			// Adopt a status written before (by an earlier simulator run),
			// so a restart does not reset restart counts or re-emit events.
			cst.restarts = prev.RestartCount
			cst.startEvents, cst.pullEvents = true, true
			if prev.State.Running != nil {
				cst.startedAt = prev.State.Running.StartedAt
			}
			if t := prev.LastTerminationState.Terminated; t != nil {
				cst.lastExit = t.FinishedAt
			}
			if w := prev.State.Waiting; w != nil {
				cst.written = w.Reason
				cst.pullBackOff = w.Reason == ReasonImagePullBackOff
			}
		}
		st.containers[c.Name] = cst
	}
	return st
}

// probe asks Options.Probe about pod's containers that have no injected
// fault, outside the simulator's lock (the probe may take its own).
func (s *Sim) probe(pod *corev1.Pod, st *podState) map[string]ProbeResult {
	if s.opts.Probe == nil {
		return nil
	}
	s.mu.Lock()
	var ask []corev1.Container
	for _, c := range pod.Spec.Containers {
		if cst := st.containers[c.Name]; cst != nil && cst.fault == FaultNone {
			ask = append(ask, c)
		}
	}
	s.mu.Unlock()
	results := map[string]ProbeResult{}
	for _, c := range ask {
		if r := s.opts.Probe(pod, c); r.Handled {
			results[c.Name] = r
		}
	}
	return results
}

// probeMode moves a probed container's state on by the probe's answer and
// returns the fault whose status shape it now has: FaultNone (Running,
// Ready), FaultNotReady, FaultCrashLoop or FaultImagePull. It runs under
// s.mu, as desiredStatus does.
func (s *Sim) probeMode(pod *corev1.Pod, c corev1.Container, cst *containerState, pr ProbeResult, now time.Time) (Fault, []note) {
	var notes []note
	restartEvents := func() {
		notes = append(notes,
			note{container: c.Name, eventType: corev1.EventTypeNormal, reason: "Pulled", message: fmt.Sprintf("Container image %q already present on machine", c.Image)},
			note{container: c.Name, eventType: corev1.EventTypeNormal, reason: "Created", message: fmt.Sprintf("Created container: %s", c.Name)},
			note{container: c.Name, eventType: corev1.EventTypeNormal, reason: "Started", message: fmt.Sprintf("Started container %s", c.Name)},
		)
	}
	cst.probeMsg = pr.Message
	switch {
	case pr.PullFailed:
		if cst.probe != probePulling {
			cst.probe = probePulling
			cst.pullBackOff, cst.pullEvents, cst.nextStep, cst.written = false, false, time.Time{}, ""
		}
		return FaultImagePull, nil
	case cst.probe == probeCrashing && now.Before(cst.nextStep):
		// The kubelet is waiting out the back-off: whatever the process
		// does meanwhile does not show.
		return FaultCrashLoop, nil
	case pr.Exited:
		if cst.probe == probeCrashing {
			restartEvents() // restarted at the end of the back-off, exited again
		}
		cst.probe = probeCrashing
		cst.restarts++
		cst.lastExit = metav1.NewTime(now).Rfc3339Copy()
		cst.exitCode = pr.ExitCode
		cst.nextStep = now.Add(s.backOff(cst.restarts))
		return FaultCrashLoop, notes
	}
	switch cst.probe {
	case probeCrashing:
		restartEvents()
		cst.startedAt = metav1.NewTime(now).Rfc3339Copy()
	case probePulling:
		// Pulled at last: the usual start events follow.
		cst.startEvents = false
		cst.startedAt = metav1.NewTime(now).Rfc3339Copy()
	}
	if cst.probe != probeRunning {
		cst.probe, cst.pullBackOff, cst.nextStep, cst.written = probeRunning, false, time.Time{}, ""
	}
	if pr.Ready {
		cst.unhealthy = false // a later failure is a new episode, with its own event
		return FaultNone, notes
	}
	return FaultNotReady, notes
}

// faultFor picks a container's fault: the pod annotation wins, otherwise a
// marker in the image tag.
func faultFor(pod *corev1.Pod, c corev1.Container) Fault {
	if f := parseFault(pod.Annotations[FaultAnnotation]); f != FaultNone {
		return f
	}
	tag := imageTag(c.Image)
	for _, f := range []Fault{FaultCrashLoop, FaultImagePull, FaultOOM, FaultNotReady} {
		if strings.Contains(strings.ToLower(tag), string(f)) {
			return f
		}
	}
	return FaultNone
}

func parseFault(v string) Fault {
	switch f := Fault(strings.ToLower(strings.TrimSpace(v))); f {
	case FaultCrashLoop, FaultImagePull, FaultOOM, FaultNotReady:
		return f
	}
	return FaultNone
}

// imageTag returns the tag of an image reference ("" if it has none); the
// registry port in host:port/repo is not a tag.
func imageTag(image string) string {
	ref := image
	if i := strings.Index(ref, "@"); i >= 0 {
		ref = ref[:i]
	}
	slash := strings.LastIndex(ref, "/")
	if colon := strings.LastIndex(ref, ":"); colon > slash {
		return ref[colon+1:]
	}
	return ""
}

// note is a side effect to perform after a status write succeeds: an event to
// record or a fault/ready report.
type note struct {
	container string
	eventType string
	reason    string
	message   string
	fault     *FaultRecord
	ready     bool
	mark      func()
}

// desiredStatus computes the status a kubelet would report for pod at now, the
// time of the next simulated transition, and the events/reports that go with
// writing it.
func (s *Sim) desiredStatus(pod *corev1.Pod, st *podState, probes map[string]ProbeResult, now time.Time) (*corev1.PodStatus, time.Time, []note) {
	s.mu.Lock()
	defer s.mu.Unlock()

	var (
		notes     []note
		next      time.Time
		allReady  = true
		anyPullOK = true
		statuses  []corev1.ContainerStatus
	)
	later := func(t time.Time) {
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	for _, c := range pod.Spec.Containers {
		cst := st.containers[c.Name]
		mode := cst.fault
		pr, probed := probes[c.Name]
		if probed && cst.fault == FaultNone {
			var probeNotes []note
			mode, probeNotes = s.probeMode(pod, c, cst, pr, now)
			notes = append(notes, probeNotes...)
			later(now.Add(s.opts.ProbeInterval))
		} else {
			probed = false
		}
		cs := corev1.ContainerStatus{
			Name:         c.Name,
			Image:        c.Image,
			RestartCount: cst.restarts,
		}
		if mode != FaultImagePull {
			cs.ImageID = imageID(c.Image)
			cs.ContainerID = containerID(pod.UID, c.Name, cst.restarts)
			if !cst.startEvents {
				notes = append(notes,
					note{container: c.Name, eventType: corev1.EventTypeNormal, reason: "Pulling", message: fmt.Sprintf("Pulling image %q", c.Image)},
					note{container: c.Name, eventType: corev1.EventTypeNormal, reason: "Pulled", message: fmt.Sprintf("Successfully pulled image %q in 412ms (412ms including waiting). Image size: 187654321 bytes.", c.Image)},
					note{container: c.Name, eventType: corev1.EventTypeNormal, reason: "Created", message: fmt.Sprintf("Created container: %s", c.Name)},
					note{container: c.Name, eventType: corev1.EventTypeNormal, reason: "Started", message: fmt.Sprintf("Started container %s", c.Name)},
				)
				cstRef := cst
				notes[len(notes)-1].mark = func() { cstRef.startEvents = true }
			}
		}
		switch mode {
		case FaultNone, FaultNotReady:
			started := true
			cs.Started = &started
			cs.State.Running = &corev1.ContainerStateRunning{StartedAt: cst.startedAt}
			cs.Ready = mode == FaultNone
			if probed && cst.restarts > 0 && !cst.lastExit.IsZero() {
				// A container that recovered from exits keeps its last one.
				cs.LastTerminationState.Terminated = &corev1.ContainerStateTerminated{
					ExitCode: cst.exitCode, Reason: exitReason(cst.exitCode), Message: cst.probeMsg,
					StartedAt: cst.lastExit, FinishedAt: cst.lastExit,
					ContainerID: containerID(pod.UID, c.Name, cst.restarts-1),
				}
			}
			if mode == FaultNotReady && probed {
				// A probed container is not Ready while it starts, too:
				// that is no fault to report, only the kubelet's event.
				allReady = false
				if !cst.unhealthy {
					cstRef := cst
					msg := pr.Message
					if msg == "" {
						msg = probeFailure(c)
					}
					notes = append(notes, note{container: c.Name, eventType: corev1.EventTypeWarning, reason: "Unhealthy",
						message: "Readiness probe failed: " + msg, mark: func() { cstRef.unhealthy = true }})
				}
			} else if mode == FaultNotReady {
				allReady = false
				if cst.written != ReasonNotReady {
					cstRef := cst
					notes = append(notes, note{container: c.Name, fault: &FaultRecord{Reason: ReasonNotReady},
						mark: func() { cstRef.written = ReasonNotReady }})
				}
				if !cst.unhealthy {
					cstRef := cst
					notes = append(notes, note{container: c.Name, eventType: corev1.EventTypeWarning, reason: "Unhealthy",
						message: "Readiness probe failed: " + probeFailure(c), mark: func() { cstRef.unhealthy = true }})
				}
			}
		case FaultCrashLoop, FaultOOM:
			allReady = false
			started := false
			cs.Started = &started
			termReason, exitCode, termMsg := "Error", int32(1), ""
			if cst.fault == FaultOOM {
				termReason, exitCode = ReasonOOMKilled, 137
			}
			if probed {
				// probeMode counted the exits and set the back-off clock.
				termReason, exitCode, termMsg = exitReason(cst.exitCode), cst.exitCode, cst.probeMsg
			} else if cst.restarts == 0 {
				// A crashing container has exited once by the first status a
				// kubelet reports; after that, one more exit per back-off.
				cst.restarts = 1
				cst.lastExit = metav1.NewTime(now).Rfc3339Copy()
				cst.nextStep = now.Add(s.backOff(1))
			} else if !cst.nextStep.IsZero() && !now.Before(cst.nextStep) {
				cst.restarts++
				cst.lastExit = metav1.NewTime(now).Rfc3339Copy()
				cst.nextStep = now.Add(s.backOff(cst.restarts))
				notes = append(notes,
					note{container: c.Name, eventType: corev1.EventTypeNormal, reason: "Pulled", message: fmt.Sprintf("Container image %q already present on machine", c.Image)},
					note{container: c.Name, eventType: corev1.EventTypeNormal, reason: "Created", message: fmt.Sprintf("Created container: %s", c.Name)},
					note{container: c.Name, eventType: corev1.EventTypeNormal, reason: "Started", message: fmt.Sprintf("Started container %s", c.Name)},
				)
			} else if cst.nextStep.IsZero() {
				// Adopted from an earlier run: resume the back-off clock.
				cst.nextStep = now.Add(s.backOff(cst.restarts))
			}
			later(cst.nextStep)
			cs.RestartCount = cst.restarts
			cs.ContainerID = containerID(pod.UID, c.Name, cst.restarts)
			backOff := s.backOff(cst.restarts)
			msg := fmt.Sprintf("back-off %s restarting failed container=%s pod=%s_%s(%s)", backOff, c.Name, pod.Name, pod.Namespace, pod.UID)
			cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: ReasonCrashLoopBackOff, Message: msg}
			cs.LastTerminationState.Terminated = &corev1.ContainerStateTerminated{
				ExitCode:    exitCode,
				Reason:      termReason,
				Message:     termMsg,
				StartedAt:   cst.lastExit,
				FinishedAt:  cst.lastExit,
				ContainerID: containerID(pod.UID, c.Name, cst.restarts-1),
			}
			restarts := cst.restarts
			cstRef := cst
			if cst.written != fmt.Sprintf("%s/%d", ReasonCrashLoopBackOff, restarts) {
				notes = append(notes,
					note{container: c.Name, eventType: corev1.EventTypeWarning, reason: "BackOff",
						message: fmt.Sprintf("Back-off restarting failed container %s in pod %s_%s(%s)", c.Name, pod.Name, pod.Namespace, pod.UID)},
					note{container: c.Name, fault: &FaultRecord{Reason: ReasonCrashLoopBackOff, LastTerminationReason: termReason, RestartCount: restarts},
						mark: func() { cstRef.written = fmt.Sprintf("%s/%d", ReasonCrashLoopBackOff, restarts) }})
			}
		case FaultImagePull:
			allReady = false
			anyPullOK = false
			started := false
			cs.Started = &started
			pullMsg := pullError(c.Image)
			if probed && pr.Message != "" {
				pullMsg = pr.Message
			}
			if !cst.pullBackOff && cst.nextStep.IsZero() {
				cst.nextStep = now.Add(s.opts.ImagePullBackOffDelay)
			}
			if !cst.pullBackOff && !now.Before(cst.nextStep) {
				cst.pullBackOff = true
			}
			cstRef := cst
			if cst.pullBackOff {
				cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: ReasonImagePullBackOff,
					Message: fmt.Sprintf("Back-off pulling image %q: ErrImagePull: %s", c.Image, pullMsg)}
				if cst.written != ReasonImagePullBackOff {
					notes = append(notes,
						note{container: c.Name, eventType: corev1.EventTypeNormal, reason: "BackOff", message: fmt.Sprintf("Back-off pulling image %q", c.Image)},
						note{container: c.Name, eventType: corev1.EventTypeWarning, reason: "Failed", message: "Error: ImagePullBackOff"},
						note{container: c.Name, fault: &FaultRecord{Reason: ReasonImagePullBackOff}, mark: func() { cstRef.written = ReasonImagePullBackOff }})
				}
			} else {
				later(cst.nextStep)
				cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: ReasonErrImagePull, Message: pullMsg}
				if !cst.pullEvents {
					notes = append(notes,
						note{container: c.Name, eventType: corev1.EventTypeNormal, reason: "Pulling", message: fmt.Sprintf("Pulling image %q", c.Image)},
						note{container: c.Name, eventType: corev1.EventTypeWarning, reason: "Failed", message: fmt.Sprintf("Failed to pull image %q: %s", c.Image, pullMsg)},
						note{container: c.Name, eventType: corev1.EventTypeWarning, reason: "Failed", message: "Error: ErrImagePull",
							mark: func() { cstRef.pullEvents = true }})
				}
				if cst.written != ReasonErrImagePull {
					notes = append(notes, note{container: c.Name, fault: &FaultRecord{Reason: ReasonErrImagePull}, mark: func() { cstRef.written = ReasonErrImagePull }})
				}
			}
		}
		statuses = append(statuses, cs)
	}

	status := pod.Status.DeepCopy()
	status.Phase = corev1.PodRunning
	if !anyPullOK {
		// A container that never started keeps the whole pod Pending.
		status.Phase = corev1.PodPending
	}
	status.HostIP = "127.0.0.1"
	status.HostIPs = []corev1.HostIP{{IP: "127.0.0.1"}}
	status.PodIP = st.podIP
	status.PodIPs = []corev1.PodIP{{IP: st.podIP}}
	start := st.startTime
	status.StartTime = &start
	status.ContainerStatuses = statuses
	if status.QOSClass == "" {
		status.QOSClass = corev1.PodQOSBestEffort
	}
	ready := corev1.ConditionTrue
	notReadyReason, notReadyMsg := "", ""
	if !allReady {
		ready = corev1.ConditionFalse
		var names []string
		for _, cs := range statuses {
			if !cs.Ready {
				names = append(names, cs.Name)
			}
		}
		notReadyReason = ReasonNotReady
		notReadyMsg = fmt.Sprintf("containers with unready status: [%s]", strings.Join(names, " "))
	}
	setCondition(status, corev1.PodConditionType("PodReadyToStartContainers"), corev1.ConditionTrue, "", "", st.startTime)
	setCondition(status, corev1.PodInitialized, corev1.ConditionTrue, "", "", st.startTime)
	setCondition(status, corev1.ContainersReady, ready, notReadyReason, notReadyMsg, metav1.NewTime(now).Rfc3339Copy())
	setCondition(status, corev1.PodReady, ready, notReadyReason, notReadyMsg, metav1.NewTime(now).Rfc3339Copy())
	setCondition(status, corev1.PodScheduled, corev1.ConditionTrue, "", "", st.startTime)
	if allReady && !st.readyFired {
		stRef := st
		notes = append(notes, note{ready: true, mark: func() { stRef.readyFired = true }})
	}
	return status, next, notes
}

// setCondition sets a pod condition, keeping its transition time when the status
// does not change (so a resync writes nothing).
func setCondition(status *corev1.PodStatus, t corev1.PodConditionType, v corev1.ConditionStatus, reason, msg string, at metav1.Time) {
	for i := range status.Conditions {
		c := &status.Conditions[i]
		if c.Type != t {
			continue
		}
		if c.Status != v {
			c.LastTransitionTime = at
		}
		c.Status, c.Reason, c.Message = v, reason, msg
		c.LastProbeTime = metav1.Time{}
		return
	}
	status.Conditions = append(status.Conditions, corev1.PodCondition{Type: t, Status: v, Reason: reason, Message: msg, LastTransitionTime: at})
}

// recordFaults appends the fault records that writing pod's new status
// (updated, not yet sent) makes true, and returns them.
func (s *Sim) recordFaults(pod *corev1.Pod, notes []note, at time.Time) []FaultRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	var faults []FaultRecord
	for _, n := range notes {
		if n.fault == nil {
			continue
		}
		rec := *n.fault
		rec.Namespace, rec.Pod, rec.UID, rec.Container, rec.At = pod.Namespace, pod.Name, pod.UID, n.container, at
		for _, c := range pod.Spec.Containers {
			if c.Name == n.container {
				rec.Image = c.Image
			}
		}
		for _, cs := range pod.Status.ContainerStatuses {
			if cs.Name == n.container {
				rec.RestartCount = cs.RestartCount
			}
		}
		s.faults = append(s.faults, rec)
		faults = append(faults, rec)
	}
	return faults
}

// dropFaults removes records whose status write failed.
func (s *Sim) dropFaults(faults []FaultRecord) {
	if len(faults) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	kept := s.faults[:0]
	for _, f := range s.faults {
		drop := false
		for _, g := range faults {
			if f == g {
				drop = true
			}
		}
		if !drop {
			kept = append(kept, f)
		}
	}
	s.faults = kept
}

// afterWrite marks what the written status made true, records the kubelet
// events and calls the hooks, once a status write has succeeded, so a failed
// write (conflict) leaves them to the retry. OnFault may run after a watcher
// has already seen the status; its at argument is what counts.
func (s *Sim) afterWrite(pod *corev1.Pod, notes []note, faults []FaultRecord, at time.Time) {
	readyNow := false
	s.mu.Lock()
	for _, n := range notes {
		if n.mark != nil {
			n.mark()
		}
		if n.ready {
			readyNow = true
		}
	}
	s.mu.Unlock()

	for _, n := range notes {
		if n.reason == "" {
			continue
		}
		if n.container != "" {
			// Kubelet events point at the container through fieldPath.
			s.recorder.Event(withFieldPath(pod, n.container), n.eventType, n.reason, n.message)
			continue
		}
		s.recorder.Event(pod, n.eventType, n.reason, n.message)
	}
	for _, f := range faults {
		s.opts.Logf("podsim: %s/%s container %s: %s (restarts %d)", f.Namespace, f.Pod, f.Container, f.Reason, f.RestartCount)
		if s.opts.OnFault != nil {
			s.opts.OnFault(pod, f.Reason, f.At)
		}
	}
	if readyNow && s.opts.OnReady != nil {
		s.opts.OnReady(pod, at)
	}
}

// withFieldPath returns an object reference to pod's container, the way a
// kubelet's events carry involvedObject.fieldPath.
func withFieldPath(pod *corev1.Pod, container string) *corev1.ObjectReference {
	return &corev1.ObjectReference{
		Kind:            "Pod",
		APIVersion:      "v1",
		Namespace:       pod.Namespace,
		Name:            pod.Name,
		UID:             pod.UID,
		ResourceVersion: pod.ResourceVersion,
		FieldPath:       fmt.Sprintf("spec.containers{%s}", container),
	}
}

func (s *Sim) backOff(restarts int32) time.Duration {
	d := s.opts.InitialBackOff
	for i := int32(1); i < restarts && d < s.opts.MaxBackOff; i++ {
		d *= 2
	}
	return min(d, s.opts.MaxBackOff)
}

// exitReason is the terminated reason a kubelet writes for an exit code.
func exitReason(code int32) string {
	if code == 0 {
		return "Completed"
	}
	return "Error"
}

func imageID(image string) string {
	sum := sha256.Sum256([]byte(image))
	repo := image
	if i := strings.Index(repo, "@"); i >= 0 {
		repo = repo[:i]
	}
	if tag := imageTag(repo); tag != "" {
		repo = strings.TrimSuffix(repo, ":"+tag)
	}
	return repo + "@sha256:" + hex.EncodeToString(sum[:])
}

func containerID(uid types.UID, name string, restart int32) string {
	sum := sha256.Sum256(fmt.Appendf(nil, "%s/%s/%d", uid, name, restart))
	return "containerd://" + hex.EncodeToString(sum[:])
}

func pullError(image string) string {
	return fmt.Sprintf("rpc error: code = NotFound desc = failed to pull and unpack image %q: failed to resolve reference %q: %q: not found", image, image, image)
}

func probeFailure(c corev1.Container) string {
	if p := c.ReadinessProbe; p != nil && p.HTTPGet != nil {
		return fmt.Sprintf("HTTP probe failed with statuscode: 503 (GET %s)", p.HTTPGet.Path)
	}
	return "connection refused"
}

// ensureNodeWithRetry registers the node, retrying while the apiserver is not
// reachable yet (the simulator may start before the control plane is up).
func (s *Sim) ensureNodeWithRetry(ctx context.Context) error {
	delay := 100 * time.Millisecond
	for {
		err := s.ensureNode(ctx)
		if err == nil {
			return nil
		}
		s.opts.Logf("podsim: register node %s: %v", s.opts.NodeName, err)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("podsim: register node %s: %w", s.opts.NodeName, errors.Join(ctx.Err(), err))
		case <-t.C:
		}
		delay = min(delay*2, 2*time.Second)
	}
}

// ensureNode creates or repairs the Node: no taints, Ready, with capacity for
// any number of pods. The NodeRestriction-free admission chain still adds the
// not-ready taint on create, hence the update after it.
func (s *Sim) ensureNode(ctx context.Context) error {
	nodes := s.client.CoreV1().Nodes()
	node, err := nodes.Get(ctx, s.opts.NodeName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		node, err = nodes.Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{
			Name: s.opts.NodeName,
			Labels: map[string]string{
				"kubernetes.io/hostname":   s.opts.NodeName,
				"kubernetes.io/os":         "linux",
				"kubernetes.io/arch":       "amd64",
				"sim.stagehand.dev/podsim": "true",
			},
		}}, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			node, err = nodes.Get(ctx, s.opts.NodeName, metav1.GetOptions{})
		}
	}
	if err != nil {
		return err
	}
	if len(node.Spec.Taints) > 0 || node.Spec.Unschedulable {
		node = node.DeepCopy()
		node.Spec.Taints = nil
		node.Spec.Unschedulable = false
		if node, err = nodes.Update(ctx, node, metav1.UpdateOptions{}); err != nil {
			return err
		}
	}
	now := metav1.Now()
	node = node.DeepCopy()
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:              resource.MustParse("32"),
		corev1.ResourceMemory:           resource.MustParse("128Gi"),
		corev1.ResourcePods:             resource.MustParse("250"),
		corev1.ResourceEphemeralStorage: resource.MustParse("500Gi"),
	}
	node.Status.Capacity = capacity
	node.Status.Allocatable = capacity
	node.Status.Phase = corev1.NodeRunning
	node.Status.Addresses = []corev1.NodeAddress{
		{Type: corev1.NodeInternalIP, Address: "127.0.0.1"},
		{Type: corev1.NodeHostName, Address: s.opts.NodeName},
	}
	node.Status.NodeInfo = corev1.NodeSystemInfo{
		KubeletVersion:          "v1.35.4-podsim",
		ContainerRuntimeVersion: "podsim://1",
		OperatingSystem:         "linux",
		Architecture:            "amd64",
		OSImage:                 "Stagehand pod simulator",
	}
	cond := func(t corev1.NodeConditionType, st corev1.ConditionStatus, reason, msg string) corev1.NodeCondition {
		return corev1.NodeCondition{Type: t, Status: st, Reason: reason, Message: msg, LastHeartbeatTime: now, LastTransitionTime: now}
	}
	node.Status.Conditions = []corev1.NodeCondition{
		cond(corev1.NodeMemoryPressure, corev1.ConditionFalse, "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
		cond(corev1.NodeDiskPressure, corev1.ConditionFalse, "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
		cond(corev1.NodePIDPressure, corev1.ConditionFalse, "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
		cond(corev1.NodeReady, corev1.ConditionTrue, "KubeletReady", "kubelet is posting ready status"),
	}
	_, err = nodes.UpdateStatus(ctx, node, metav1.UpdateOptions{})
	return err
}

func nodeHealthy(n *corev1.Node) bool {
	if len(n.Spec.Taints) > 0 || n.Spec.Unschedulable {
		return false
	}
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
