package controllers

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"helm.sh/helm/v3/pkg/release"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
)

// The Helm actions that run in the background.
const (
	actionInstall   = "install"
	actionUninstall = "uninstall"
)

// helmActions runs the Helm actions that wait (an install waits for its pods and hooks up to
// spec.release.timeout) in goroutines, one at a time per release, so that no reconcile holds a
// worker while Helm waits: the step starts the action, reports Running, and the reconcile the
// goroutine triggers when it ends records the result. Nothing here needs to survive a restart:
// an action cut short leaves its release pending or failed "context canceled", and helm.Install
// (Recover) or helm.Uninstall goes on from there when the step runs again.
//
// It is a manager Runnable: when the manager stops it cancels the actions and waits for them,
// so that a new manager in the same process never meets a Helm action of the old one.
type helmActions struct {
	mu      sync.Mutex
	ctx     context.Context // canceled when the manager stops
	stop    context.CancelFunc
	running sync.WaitGroup
	byKey   map[string]*helmAction
	// ended wakes the migration of an action that ended (a source.Channel of its controller).
	ended chan event.GenericEvent
}

// helmAction is one action in the background; rel and err are set when done is closed.
type helmAction struct {
	kind   string
	cancel context.CancelFunc
	done   chan struct{}
	rel    *release.Release
	err    error
}

func newHelmActions() *helmActions {
	ctx, stop := context.WithCancel(context.Background())
	return &helmActions{ctx: ctx, stop: stop, byKey: map[string]*helmAction{}, ended: make(chan event.GenericEvent, 64)}
}

// Start waits for the manager to stop, then cancels every action and waits for it to return.
func (b *helmActions) Start(ctx context.Context) error {
	<-ctx.Done()
	b.stop()
	b.running.Wait()
	return nil
}

// actionKey names a release: one Helm action at a time runs on it.
func actionKey(m *v1alpha1.MastodonMigration) string {
	return m.Namespace + "/" + m.Spec.Release.Name
}

// get returns the action of kind on m's release, running or ended, or nil.
func (b *helmActions) get(m *v1alpha1.MastodonMigration, kind string) *helmAction {
	b.mu.Lock()
	defer b.mu.Unlock()
	if a := b.byKey[actionKey(m)]; a != nil && a.kind == kind {
		return a
	}
	return nil
}

// start runs action in the background for m's release. ctx only lends its logger: the action
// outlives the reconcile and ends with the manager, or when cancel asks.
func (b *helmActions) start(ctx context.Context, m *v1alpha1.MastodonMigration, kind string,
	action func(ctx context.Context) (*release.Release, error)) (*helmAction, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	key := actionKey(m)
	if other := b.byKey[key]; other != nil {
		return nil, fmt.Errorf("helm %s of release %s is still under way", other.kind, m.Spec.Release.Name)
	}
	if b.ctx.Err() != nil {
		return nil, errors.New("the operator is stopping")
	}
	actx, cancel := context.WithCancel(log.IntoContext(b.ctx, log.FromContext(ctx)))
	a := &helmAction{kind: kind, cancel: cancel, done: make(chan struct{})}
	b.byKey[key] = a
	owner := &v1alpha1.MastodonMigration{ObjectMeta: metav1.ObjectMeta{Namespace: m.Namespace, Name: m.Name}}
	b.running.Add(1)
	go func() {
		defer b.running.Done()
		a.rel, a.err = action(actx)
		close(a.done)
		select {
		case b.ended <- event.GenericEvent{Object: owner}:
		case <-b.ctx.Done():
		}
	}()
	return a, nil
}

// result returns the action's outcome once it has ended, and forgets it: the next start on
// the release runs anew. ended is false while it runs.
func (b *helmActions) result(m *v1alpha1.MastodonMigration, a *helmAction) (rel *release.Release, ended bool, err error) {
	select {
	case <-a.done:
	default:
		return nil, false, nil
	}
	b.forget(m, a)
	return a.rel, true, a.err
}

func (b *helmActions) forget(m *v1alpha1.MastodonMigration, a *helmAction) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.byKey[actionKey(m)] == a {
		delete(b.byKey, actionKey(m))
	}
}

// cancel stops the action of kind on m's release, if any, and waits until it has returned
// (Helm records the interruption before it does); canceled says there was one under way.
func (b *helmActions) cancel(ctx context.Context, m *v1alpha1.MastodonMigration, kind string) (canceled bool, err error) {
	a := b.get(m, kind)
	if a == nil {
		return false, nil
	}
	select {
	case <-a.done:
	default:
		canceled = true
	}
	a.cancel()
	select {
	case <-a.done:
	case <-ctx.Done():
		return false, ctx.Err()
	}
	b.forget(m, a)
	return canceled, nil
}
