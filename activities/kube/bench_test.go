package kube

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/temporal"
	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/stagehand-dev/stagehand/activities"
	"github.com/stagehand-dev/stagehand/internal/benchreport"
	"github.com/stagehand-dev/stagehand/internal/kubetest"
	"github.com/stagehand-dev/stagehand/internal/podsim"
)

// BenchmarkFailureDetection measures, on the real control plane:
//
//   - failure detection: from the simulator writing CrashLoopBackOff into a
//     pod's status (podsim's fault record) to kube.waitRollout returning its
//     PodFailure;
//   - completion detection: from a separate watch first seeing the
//     Deployment's status say "rolled out" to kube.waitRollout returning;
//   - what `kubectl rollout status` takes on the same crash-looping rollout:
//     it can only report failure at progressDeadlineSeconds.
//
// Run it with: go test -run '^$' -bench BenchmarkFailureDetection -benchtime=1x ./activities/kube/
// STAGEHAND_BENCH_TRIALS sets the number of trials (default 20).
func BenchmarkFailureDetection(b *testing.B) {
	trials := 20
	if v, err := strconv.Atoi(os.Getenv("STAGEHAND_BENCH_TRIALS")); err == nil && v > 0 {
		trials = v
	}
	env, a, ns := plane(b)
	ctx := context.Background()
	b.ResetTimer()
	for iter := 0; iter < b.N; iter++ {
		var failLat, doneLat []time.Duration
		for i := 0; i < trials; i++ {
			name := fmt.Sprintf("bench-%d-%d", iter, i)
			createHealthy(b, env, ns, name, "backstage:good", 1)
			ref := DeploymentRef{Namespace: ns, Deployment: name}
			c := a.Clusters["local"]

			// Completion: a healthy new image.
			seen := make(chan time.Time, 1)
			wctx, stop := context.WithCancel(ctx)
			observeComplete(wctx, b, env, ns, name, seen)
			if _, err := a.SetImage(ctx, SetImageInput{Namespace: ns, Deployment: name, Image: "backstage:next"}); err != nil {
				b.Fatal(err)
			}
			if _, err := a.waitRollout(ctx, c, ref, time.Minute, func(string) {}); err != nil {
				b.Fatal(err)
			}
			returned := time.Now()
			select {
			case at := <-seen:
				doneLat = append(doneLat, returned.Sub(at))
			case <-time.After(10 * time.Second):
				b.Fatal("the observer never saw the rollout complete")
			}
			stop()

			// Failure: a crash-looping image.
			bad := fmt.Sprintf("backstage:pr-%d-crashloop", i)
			if _, err := a.SetImage(ctx, SetImageInput{Namespace: ns, Deployment: name, Image: bad}); err != nil {
				b.Fatal(err)
			}
			_, err := a.waitRollout(ctx, c, ref, time.Minute, func(string) {})
			failed := time.Now()
			if t := errType(err); t != activities.ErrPodFailure {
				b.Fatalf("trial %d: waitRollout error %v (type %s), want PodFailure", i, err, t)
			}
			at, ok := firstFault(env.Sim, ns, name+"-", podsim.ReasonCrashLoopBackOff, bad)
			if !ok {
				b.Fatalf("trial %d: the simulator recorded no CrashLoopBackOff for %s", i, name)
			}
			failLat = append(failLat, failed.Sub(at))
			_ = env.Client.AppsV1().Deployments(ns).Delete(ctx, name, metav1.DeleteOptions{})
		}
		b.StopTimer()
		kubectlTook, deadline := kubectlRolloutStatus(b, env, ns)
		b.StartTimer()

		fp50, fp95 := percentile(failLat, 50), percentile(failLat, 95)
		cp50, cp95 := percentile(doneLat, 50), percentile(doneLat, 95)
		b.ReportMetric(fp50.Seconds()*1000, "fail-p50-ms")
		b.ReportMetric(fp95.Seconds()*1000, "fail-p95-ms")
		b.ReportMetric(cp50.Seconds()*1000, "done-p50-ms")
		b.ReportMetric(cp95.Seconds()*1000, "done-p95-ms")
		b.ReportMetric(kubectlTook.Seconds()*1000, "kubectl-ms")
		b.ReportMetric(kubectlTook.Seconds()/fp95.Seconds(), "kubectl/p95")
		r := func(d time.Duration) time.Duration { return d.Round(100 * time.Microsecond) }
		fmt.Printf("\nkube.waitRollout over %d trials on a real control plane:\n", trials)
		fmt.Printf("  CrashLoopBackOff detection (status write -> step failed): p50 %s  p95 %s  max %s\n",
			r(fp50), r(fp95), r(percentile(failLat, 100)))
		// Both sides watch the same Deployment, so the step may see the
		// final status a hair before the observer: small negatives are real.
		fmt.Printf("  rollout completion (status complete -> step returned):    p50 %s  p95 %s  max %s\n",
			r(cp50), r(cp95), r(percentile(doneLat, 100)))
		fmt.Printf("  kubectl rollout status on a crash-looping rollout (progressDeadlineSeconds %d): %s\n",
			deadline, kubectlTook.Round(time.Millisecond))
		fmt.Printf("  kubectl rollout status / our p95 detection = %.0fx\n\n", kubectlTook.Seconds()/fp95.Seconds())
		msOf := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
		// Only failure detection has a baseline: kubectl rollout status on the
		// same crash-looping rollout. The completion row has none.
		benchreport.Record(b,
			benchreport.Row{Benchmark: "BenchmarkFailureDetection", Metric: fmt.Sprintf("CrashLoopBackOff detection p95 (%d trials)", trials),
				Value: msOf(fp95), Unit: "ms", Baseline: msOf(kubectlTook), BaselineWhat: "kubectl rollout status"},
			benchreport.Row{Benchmark: "BenchmarkFailureDetection", Metric: fmt.Sprintf("CrashLoopBackOff detection p50 (%d trials)", trials),
				Value: msOf(fp50), Unit: "ms", Baseline: msOf(kubectlTook), BaselineWhat: "kubectl rollout status"},
			benchreport.Row{Benchmark: "BenchmarkFailureDetection", Metric: fmt.Sprintf("rollout completion p95 (%d trials)", trials),
				Value: msOf(cp95), Unit: "ms"})
	}
}

func errType(err error) string {
	if err == nil {
		return ""
	}
	var ae *temporal.ApplicationError
	if errors.As(err, &ae) {
		return ae.Type()
	}
	return fmt.Sprintf("%T", err)
}

// observeComplete starts a watch, independent of the step, that sends the
// first moment the Deployment's status reports a generation newer than the
// current one rolled out. It returns once the watch is established, so the
// caller can change the Deployment without racing it.
func observeComplete(ctx context.Context, b *testing.B, env *kubetest.Env, ns, name string, seen chan<- time.Time) {
	api := env.Client.AppsV1().Deployments(ns)
	sel := fields.OneTermEqualSelector("metadata.name", name).String()
	list, err := api.List(ctx, metav1.ListOptions{FieldSelector: sel})
	if err != nil || len(list.Items) != 1 {
		b.Fatalf("observer: list deployment %s/%s: %v (%d found)", ns, name, err, len(list.Items))
	}
	gen := list.Items[0].Generation
	w, err := api.Watch(ctx, metav1.ListOptions{FieldSelector: sel, ResourceVersion: list.ResourceVersion})
	if err != nil {
		b.Fatalf("observer: watch deployment %s/%s: %v", ns, name, err)
	}
	go func() {
		defer w.Stop()
		for ev := range w.ResultChan() {
			d, ok := ev.Object.(*appsv1.Deployment)
			if !ok || ev.Type == watch.Deleted {
				continue
			}
			if d.Generation > gen && evaluateRollout(d).Done {
				seen <- time.Now()
				return
			}
		}
	}()
}

// firstFault returns when the simulator first wrote reason for a pod of
// the deployment running image.
func firstFault(sim *podsim.Sim, ns, podPrefix, reason, image string) (time.Time, bool) {
	var at time.Time
	for _, f := range sim.Faults() {
		if f.Namespace == ns && strings.HasPrefix(f.Pod, podPrefix) && f.Reason == reason && f.Image == image {
			if at.IsZero() || f.At.Before(at) {
				at = f.At
			}
		}
	}
	return at, !at.IsZero()
}

// kubectlRolloutStatus times one real `kubectl rollout status` on a
// crash-looping rollout with a short progress deadline: the baseline our
// fail-fast detection is compared with.
func kubectlRolloutStatus(b *testing.B, env *kubetest.Env, ns string) (time.Duration, int32) {
	const deadline = int32(10)
	name := "bench-kubectl"
	createHealthy(b, env, ns, name, "backstage:good", 1, func(d *appsv1.Deployment) {
		pd := deadline
		d.Spec.ProgressDeadlineSeconds = &pd
	})
	ctx := context.Background()
	a := &Activities{Clusters: map[string]*Cluster{"x": {Name: "x", Client: env.Client}}}
	if _, err := a.SetImage(ctx, SetImageInput{Namespace: ns, Deployment: name, Image: "backstage:kubectl-crashloop"}); err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	cmd := exec.Command("kubectl", "--kubeconfig", env.Kubeconfig, "--context", env.Context,
		"rollout", "status", "deployment/"+name, "-n", ns, "--timeout=120s")
	out, err := cmd.CombinedOutput()
	took := time.Since(start)
	if err == nil {
		b.Fatalf("kubectl rollout status succeeded on a crash-looping rollout:\n%s", out)
	}
	if !strings.Contains(string(out), "exceeded its progress deadline") {
		b.Fatalf("kubectl rollout status: %v\n%s", err, out)
	}
	return took, deadline
}

func percentile(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	// Nearest-rank: the smallest value with at least p% at or below it.
	rank := (p*len(s) + 99) / 100
	if rank < 1 {
		rank = 1
	}
	return s[rank-1]
}
