package kube

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
)

// listWatch is one resource a waiting step follows: a list to learn the
// current state and a resourceVersion, and a watch from that version.
type listWatch struct {
	name  string // for messages: "deployment", "replicasets", "pods"
	list  func(ctx context.Context) (runtime.Object, error)
	watch func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error)
}

// streamEvent is what a stream hands the waiting loop: either a full
// snapshot (after a list), one change, or a problem.
type streamEvent struct {
	source string
	// sync is set when items replaces everything known from this source.
	sync  bool
	items []runtime.Object
	typ   watch.EventType
	obj   runtime.Object
	// err is a transient problem (the stream keeps retrying) unless fatal.
	err   error
	fatal bool
}

// We do not use informers here on purpose: a reflector logs and backs off
// up to 30 s on errors we must classify (Forbidden must end the step at
// once, an outage must not), and its backoff would add tens of seconds
// after an apiserver comes back. This loop re-lists and re-watches with a
// short capped backoff and reports every error to the caller.
func runStream(ctx context.Context, lw listWatch, maxBackoff time.Duration, out chan<- streamEvent) {
	send := func(ev streamEvent) bool {
		ev.source = lw.name
		select {
		case out <- ev:
			return true
		case <-ctx.Done():
			return false
		}
	}
	const minBackoff = 100 * time.Millisecond
	backoff := minBackoff
	sleep := func() bool {
		// Jitter keeps several streams of one step (and several workers)
		// from hammering a recovering apiserver in lockstep.
		d := backoff/2 + time.Duration(rand.Int64N(int64(backoff/2)+1))
		backoff = min(backoff*2, maxBackoff)
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
			return true
		case <-ctx.Done():
			return false
		}
	}
	fail := func(err error) bool {
		if ctx.Err() != nil {
			return false
		}
		if isPermanent(err) {
			send(streamEvent{err: err, fatal: true})
			return false
		}
		return send(streamEvent{err: err}) && sleep()
	}

	rv := ""
	for ctx.Err() == nil {
		if rv == "" {
			list, err := lw.list(ctx)
			if err != nil {
				if !fail(fmt.Errorf("list %s: %w", lw.name, err)) {
					return
				}
				continue
			}
			items, err := meta.ExtractList(list)
			if err != nil {
				send(streamEvent{err: fmt.Errorf("read %s list: %w", lw.name, err), fatal: true})
				return
			}
			acc, err := meta.ListAccessor(list)
			if err != nil {
				send(streamEvent{err: fmt.Errorf("read %s list: %w", lw.name, err), fatal: true})
				return
			}
			rv = acc.GetResourceVersion()
			if rv == "" {
				// Only fake clientsets omit it; "0" still means "from now".
				rv = "0"
			}
			if !send(streamEvent{sync: true, items: items}) {
				return
			}
		}
		w, err := lw.watch(ctx, metav1.ListOptions{ResourceVersion: rv, AllowWatchBookmarks: true})
		if err != nil {
			if apierrors.IsResourceExpired(err) || apierrors.IsGone(err) {
				rv = ""
				continue
			}
			if !fail(fmt.Errorf("watch %s: %w", lw.name, err)) {
				return
			}
			continue
		}
		gotEvent := false
		rv = consume(ctx, w, &gotEvent, send, rv)
		w.Stop()
		if ctx.Err() != nil {
			return
		}
		if gotEvent {
			backoff = minBackoff
		} else if !sleep() {
			// A watch that closes before delivering anything is the
			// apiserver going away; back off before trying again.
			return
		}
	}
}

// consume forwards a watch's events until it closes or fails, and returns
// the resourceVersion to resume from ("" means re-list).
func consume(ctx context.Context, w watch.Interface, gotEvent *bool, send func(streamEvent) bool, rv string) string {
	for {
		select {
		case <-ctx.Done():
			return rv
		case ev, ok := <-w.ResultChan():
			if !ok {
				return rv
			}
			switch ev.Type {
			case watch.Error:
				err := apierrors.FromObject(ev.Object)
				if apierrors.IsResourceExpired(err) || apierrors.IsGone(err) {
					return ""
				}
				send(streamEvent{err: fmt.Errorf("watch: %w", err)})
				return rv
			case watch.Bookmark:
				*gotEvent = true
				if acc, err := meta.Accessor(ev.Object); err == nil && acc.GetResourceVersion() != "" {
					rv = acc.GetResourceVersion()
				}
			default:
				*gotEvent = true
				if acc, err := meta.Accessor(ev.Object); err == nil && acc.GetResourceVersion() != "" {
					rv = acc.GetResourceVersion()
				}
				if !send(streamEvent{typ: ev.Type, obj: ev.Object}) {
					return rv
				}
			}
		}
	}
}
