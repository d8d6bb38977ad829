// Package flux holds the steps that follow what Flux does in production:
// after a merge, CI pushes a `prod-<sha8>-<unix>` image and Flux's image
// automation (an ImagePolicy picking the newest prod-* tag) rolls it out.
// Stagehand never writes production here; it waits until production runs the
// image the merge produced — matched by the merge commit's short SHA in the
// tag, not merely "a newer tag" — and reports the evidence when it does not.
package flux

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"

	"github.com/stagehand-dev/stagehand/activities"
	"github.com/stagehand-dev/stagehand/activities/kube"
	"github.com/stagehand-dev/stagehand/activities/steps"
)

// ImagePolicyResource is Flux's ImagePolicy. v1beta2 reports the chosen
// image in status.latestImage; v1 in status.latestRef. Both are read.
var ImagePolicyResource = schema.GroupVersionResource{Group: "image.toolkit.fluxcd.io", Version: "v1beta2", Resource: "imagepolicies"}

// Activities holds the clusters the flux steps read; it shares them with
// the kube steps.
type Activities struct {
	Kube *kube.Activities
	// HeartbeatInterval defaults to 5s.
	HeartbeatInterval time.Duration
}

// WaitImageInput is the `with` of flux.waitImage.
type WaitImageInput struct {
	Cluster    string `json:"cluster,omitempty"`
	Namespace  string `json:"namespace"`
	Deployment string `json:"deployment"`
	// Container defaults to the Deployment's first container.
	Container string `json:"container,omitempty"`
	// CommitSHA is the merge commit; the image tag must start with
	// TagPrefix followed by its first 8 characters (the conventions'
	// `prod-<sha8>-<unix>`).
	CommitSHA string `json:"commitSha,omitempty"`
	// TagPrefix defaults to "prod-".
	TagPrefix string `json:"tagPrefix,omitempty"`
	// TagPattern, if set, replaces the commit match with a regexp.
	TagPattern string `json:"tagPattern,omitempty"`
	// ImagePolicy names a Flux ImagePolicy ("name" in Namespace, or
	// "namespace/name") whose latest image must match too.
	ImagePolicy string `json:"imagePolicy,omitempty"`
	// Timeout bounds the wait (e.g. "30m"); default: the step's timeout.
	Timeout string `json:"timeout,omitempty"`
}

// WaitImageOutput is what production runs.
type WaitImageOutput struct {
	Image       string `json:"image"`
	Tag         string `json:"tag"`
	PolicyImage string `json:"policyImage,omitempty"`
	ElapsedMs   int64  `json:"elapsedMs"`
}

// StepTypes binds the flux step to its spec in activities/steps.
func StepTypes(a *Activities) []activities.StepType {
	return []activities.StepType{activities.Implement(steps.Spec("flux.waitImage"), a.WaitImage)}
}

type matcher struct {
	re   *regexp.Regexp
	desc string
}

func newMatcher(in WaitImageInput) (*matcher, error) {
	if in.TagPattern != "" {
		re, err := regexp.Compile(in.TagPattern)
		if err != nil {
			return nil, fmt.Errorf("tagPattern: %w", err)
		}
		return &matcher{re: re, desc: "tag matching " + in.TagPattern}, nil
	}
	sha := strings.TrimSpace(in.CommitSHA)
	if len(sha) < 8 || !regexp.MustCompile(`^[0-9a-fA-F]+$`).MatchString(sha) {
		return nil, fmt.Errorf("commitSha %q: want the merge commit's hex SHA (at least 8 characters), or set tagPattern", in.CommitSHA)
	}
	prefix := in.TagPrefix
	if prefix == "" {
		prefix = "prod-"
	}
	p := "^" + regexp.QuoteMeta(prefix+strings.ToLower(sha[:8])) + "-"
	return &matcher{re: regexp.MustCompile(p), desc: fmt.Sprintf("tag %s%s-*", prefix, strings.ToLower(sha[:8]))}, nil
}

// Tag returns the tag of an image reference ("" without one); a digest
// suffix is ignored.
func Tag(image string) string {
	image, _, _ = strings.Cut(image, "@")
	slash := strings.LastIndex(image, "/")
	colon := strings.LastIndex(image, ":")
	if colon <= slash {
		return ""
	}
	return image[colon+1:]
}

func (m *matcher) match(image string) bool { return image != "" && m.re.MatchString(Tag(image)) }

// WaitImage waits, by watching, until the Deployment's container runs an
// image whose tag carries the merge commit (and the ImagePolicy, if named,
// has picked it). On timeout it fails with the evidence and the commands a
// person would run; it never changes production.
func (a *Activities) WaitImage(ctx context.Context, in WaitImageInput) (WaitImageOutput, error) {
	start := time.Now()
	if a == nil || a.Kube == nil {
		return WaitImageOutput{}, temporal.NewNonRetryableApplicationError("no Kubernetes cluster is configured on this worker", activities.ErrKubeNoCluster, nil)
	}
	c, err := a.Kube.Cluster(in.Cluster)
	if err != nil {
		return WaitImageOutput{}, err
	}
	m, err := newMatcher(in)
	if err != nil {
		return WaitImageOutput{}, temporal.NewNonRetryableApplicationError("flux.waitImage: "+err.Error(), activities.ErrInvalidArguments, nil)
	}
	if in.Timeout != "" {
		d, err := time.ParseDuration(in.Timeout)
		if err != nil {
			return WaitImageOutput{}, temporal.NewNonRetryableApplicationError(fmt.Sprintf("flux.waitImage: timeout %q: %v", in.Timeout, err), activities.ErrInvalidArguments, nil)
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	policyNS, policyName := in.Namespace, in.ImagePolicy
	if ns, name, ok := strings.Cut(in.ImagePolicy, "/"); ok {
		policyNS, policyName = ns, name
	}

	changed := make(chan struct{}, 1)
	notify := func() {
		select {
		case changed <- struct{}{}:
		default:
		}
	}
	wctx, stopWatches := context.WithCancel(ctx)
	defer stopWatches()
	// RetryWatcher re-establishes a watch from the last resource version
	// after an apiserver restart, so an outage is ridden out, not fatal.
	go watchObjects(wctx, &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", in.Deployment).String()
			return c.Client.AppsV1().Deployments(in.Namespace).List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", in.Deployment).String()
			return c.Client.AppsV1().Deployments(in.Namespace).Watch(ctx, o)
		},
	}, notify)
	if policyName != "" && c.Dynamic != nil {
		res := c.Dynamic.Resource(ImagePolicyResource).Namespace(policyNS)
		go watchObjects(wctx, &cache.ListWatch{
			ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
				o.FieldSelector = fields.OneTermEqualSelector("metadata.name", policyName).String()
				return res.List(ctx, o)
			},
			WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
				o.FieldSelector = fields.OneTermEqualSelector("metadata.name", policyName).String()
				return res.Watch(ctx, o)
			},
		}, notify)
	}

	interval := a.HeartbeatInterval
	if interval == 0 {
		interval = 5 * time.Second
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var last evidence
	for {
		ev := a.observe(ctx, c, in, policyNS, policyName, m)
		if ev.err == nil || !isTransient(ev.err) {
			last = ev
		}
		if ev.err != nil && !isTransient(ev.err) {
			return WaitImageOutput{}, ev.err
		}
		if ev.done(policyName != "") {
			return WaitImageOutput{Image: ev.image, Tag: Tag(ev.image), PolicyImage: ev.policyImage, ElapsedMs: time.Since(start).Milliseconds()}, nil
		}
		if activity.IsActivity(ctx) {
			activity.RecordHeartbeat(ctx, fmt.Sprintf("waiting for %s: deployment runs %s; policy %s", m.desc, orNone(ev.image), orNone(ev.policyImage)))
		}
		select {
		case <-ctx.Done():
			return WaitImageOutput{}, a.timeoutError(in, m, last, policyNS, policyName, time.Since(start))
		case <-changed:
		case <-tick.C:
		}
	}
}

type evidence struct {
	image, policyImage, policyReady string
	imageOK, policyOK               bool
	err                             error
}

func (e evidence) done(needPolicy bool) bool { return e.imageOK && (!needPolicy || e.policyOK) }

func (a *Activities) observe(ctx context.Context, c *kube.Cluster, in WaitImageInput, policyNS, policyName string, m *matcher) evidence {
	var ev evidence
	d, err := c.Client.AppsV1().Deployments(in.Namespace).Get(ctx, in.Deployment, metav1.GetOptions{})
	if err != nil {
		ev.err = classify(fmt.Sprintf("get deployment %s/%s", in.Namespace, in.Deployment), err)
		return ev
	}
	img, err := containerImage(d, in.Container)
	if err != nil {
		ev.err = temporal.NewNonRetryableApplicationError(err.Error(), activities.ErrInvalidArguments, nil)
		return ev
	}
	ev.image, ev.imageOK = img, m.match(img)
	if policyName == "" {
		return ev
	}
	if c.Dynamic == nil {
		ev.err = temporal.NewNonRetryableApplicationError("cluster has no dynamic client to read the ImagePolicy", activities.ErrKubeNoDynamicClient, nil)
		return ev
	}
	p, err := c.Dynamic.Resource(ImagePolicyResource).Namespace(policyNS).Get(ctx, policyName, metav1.GetOptions{})
	if err != nil {
		ev.err = classify(fmt.Sprintf("get imagepolicy %s/%s", policyNS, policyName), err)
		return ev
	}
	ev.policyImage = PolicyLatestImage(p)
	ev.policyReady = policyReadyMessage(p)
	ev.policyOK = m.match(ev.policyImage)
	return ev
}

// PolicyLatestImage reads the image an ImagePolicy picked, from either API
// version's status.
func PolicyLatestImage(p *unstructured.Unstructured) string {
	if s, ok, _ := unstructured.NestedString(p.Object, "status", "latestImage"); ok && s != "" {
		return s
	}
	name, _, _ := unstructured.NestedString(p.Object, "status", "latestRef", "name")
	tag, _, _ := unstructured.NestedString(p.Object, "status", "latestRef", "tag")
	if name != "" && tag != "" {
		return name + ":" + tag
	}
	return ""
}

func policyReadyMessage(p *unstructured.Unstructured) string {
	conds, _, _ := unstructured.NestedSlice(p.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] == "Ready" {
			return fmt.Sprintf("Ready=%v %v: %v", m["status"], m["reason"], m["message"])
		}
	}
	return "no Ready condition"
}

func containerImage(d *appsv1.Deployment, container string) (string, error) {
	cs := d.Spec.Template.Spec.Containers
	if len(cs) == 0 {
		return "", fmt.Errorf("deployment %s/%s has no containers", d.Namespace, d.Name)
	}
	if container == "" {
		return cs[0].Image, nil
	}
	var names []string
	for _, c := range cs {
		if c.Name == container {
			return c.Image, nil
		}
		names = append(names, c.Name)
	}
	return "", fmt.Errorf("deployment %s/%s has no container %q (containers: %s)", d.Namespace, d.Name, container, strings.Join(names, ", "))
}

func (a *Activities) timeoutError(in WaitImageInput, m *matcher, ev evidence, policyNS, policyName string, elapsed time.Duration) error {
	var b strings.Builder
	fmt.Fprintf(&b, "production did not get the merge's image within %s: want %s; deployment %s/%s runs %s",
		elapsed.Round(time.Second), m.desc, in.Namespace, in.Deployment, orNone(ev.image))
	if policyName != "" {
		fmt.Fprintf(&b, "; ImagePolicy %s/%s latest image %s (%s)", policyNS, policyName, orNone(ev.policyImage), ev.policyReady)
	}
	b.WriteString(". Production was not changed by Stagehand. Check: ")
	fmt.Fprintf(&b, "`kubectl -n %s get deploy %s -o jsonpath='{.spec.template.spec.containers[*].image}'`", in.Namespace, in.Deployment)
	if policyName != "" {
		fmt.Fprintf(&b, ", `flux get image policy %s -n %s`, `flux get image repository -n %s`", policyName, policyNS, policyNS)
	}
	b.WriteString(", and whether CI pushed the prod image for the merge commit.")
	return temporal.NewNonRetryableApplicationError(b.String(), activities.ErrProdImageNotRolled, nil)
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

func isTransient(err error) bool {
	var appErr *temporal.ApplicationError
	return errors.As(err, &appErr) && !appErr.NonRetryable()
}

// classify marks API errors the way the kube steps do: permission and
// missing objects are permanent, anything else (an apiserver restart, a
// timeout) is transient and the wait goes on.
func classify(msg string, err error) error {
	switch {
	case apierrors.IsForbidden(err):
		return temporal.NewNonRetryableApplicationError(msg+": "+err.Error(), activities.ErrKubeForbidden, nil)
	case apierrors.IsUnauthorized(err):
		// Bad credentials, not missing RBAC: the kube steps say so too.
		return temporal.NewNonRetryableApplicationError(msg+": "+err.Error(), activities.ErrKubeUnauthorized, nil)
	case apierrors.IsNotFound(err):
		return temporal.NewNonRetryableApplicationError(msg+": "+err.Error(), activities.ErrKubeNotFound, nil)
	default:
		return temporal.NewApplicationError(msg+": "+err.Error(), activities.ErrKubeUnavailable)
	}
}

// watchObjects calls notify on every change until ctx ends, re-listing and
// re-watching after errors.
func watchObjects(ctx context.Context, lw *cache.ListWatch, notify func()) {
	for ctx.Err() == nil {
		list, err := lw.ListWithContext(ctx, metav1.ListOptions{})
		if err != nil {
			sleep(ctx, time.Second)
			continue
		}
		rv, err := resourceVersion(list)
		if err != nil {
			return
		}
		rw, err := watchtools.NewRetryWatcherWithContext(ctx, rv, lw)
		if err != nil {
			sleep(ctx, time.Second)
			continue
		}
		for ev := range rw.ResultChan() {
			if ev.Type == watch.Error {
				break
			}
			notify()
		}
		rw.Stop()
		notify()
	}
}

func resourceVersion(obj runtime.Object) (string, error) {
	type rv interface{ GetResourceVersion() string }
	if l, ok := obj.(rv); ok {
		return l.GetResourceVersion(), nil
	}
	return "", fmt.Errorf("list has no resource version")
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
