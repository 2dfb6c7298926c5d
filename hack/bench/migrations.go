package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
)

// sample is the migration users start from (config/samples), pointed at the loopback chart
// repository and the harness's web server, observed for window with an analysis every
// interval.
func (b *bench) sample(ns string, window, interval time.Duration) (*v1alpha1.MastodonMigration, error) {
	m, err := b.h.SampleMigration(ns)
	if err != nil {
		return nil, err
	}
	m.Spec.Analysis.HTTP = &v1alpha1.HTTPAnalysis{URL: b.h.Web.URL + "/probe/" + ns, Requests: 4,
		Timeout: &metav1.Duration{Duration: 2 * time.Second}}
	m.Spec.Analysis.Window = &metav1.Duration{Duration: window}
	m.Spec.Analysis.Interval = &metav1.Duration{Duration: interval}
	m.Spec.Rollback.Watch = &metav1.Duration{Duration: 10 * time.Second}
	return m, nil
}

// deploy applies the production layout of the fixture in each namespace, a few at a time, and
// waits until every Deployment has rolled out.
func (b *bench) deploy(ctx context.Context, namespaces []string) error {
	return parallel(namespaces, 8, func(ns string) error {
		_, err := b.h.DeployMastodon(ctx, ns)
		return err
	})
}

// drop deletes the namespaces and waits until they are gone, so that each run starts on a
// cluster of the same size.
func (b *bench) drop(ctx context.Context, namespaces []string) error {
	return parallel(namespaces, 32, func(ns string) error {
		obj := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}
		if err := b.h.Client.Delete(ctx, obj); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
		return wait.PollUntilContextTimeout(ctx, time.Second, 5*time.Minute, true, func(ctx context.Context) (bool, error) {
			err := b.h.Client.Get(ctx, client.ObjectKeyFromObject(obj), &corev1.Namespace{})
			return apierrors.IsNotFound(err), client.IgnoreNotFound(err)
		})
	})
}

// parallel runs f on each item, at most limit at a time, and returns the first error.
func parallel(items []string, limit int, f func(string) error) error {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
		slots = make(chan struct{}, limit)
	)
	for _, item := range items {
		wg.Add(1)
		slots <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			if err := f(item); err != nil {
				mu.Lock()
				if first == nil {
					first = fmt.Errorf("%s: %w", item, err)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return first
}

// waitPhase polls the migration until it reaches phase, and fails at a terminal phase that is
// not it.
func (b *bench) waitPhase(ctx context.Context, m *v1alpha1.MastodonMigration, phase v1alpha1.Phase, timeout time.Duration) (*v1alpha1.MastodonMigration, error) {
	got := &v1alpha1.MastodonMigration{}
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		if err := b.h.Client.Get(ctx, client.ObjectKeyFromObject(m), got); err != nil {
			return false, err
		}
		if got.Status.Phase == phase {
			return true, nil
		}
		if terminal(got.Status.Phase) {
			return false, fmt.Errorf("migration %s/%s is %s, not %s: %s", m.Namespace, m.Name, got.Status.Phase, phase, lastMessage(got))
		}
		return false, nil
	})
	if err != nil && got.Status.Phase != phase && !terminal(got.Status.Phase) {
		err = fmt.Errorf("migration %s/%s is still %s after %s: %s: %w", m.Namespace, m.Name, got.Status.Phase, timeout, lastMessage(got), err)
	}
	return got, err
}

func terminal(p v1alpha1.Phase) bool {
	return p == v1alpha1.PhaseCompleted || p == v1alpha1.PhaseRolledBack || p == v1alpha1.PhaseFailed
}

// lastMessage is the message of the step that ran last, to say why a run went wrong.
func lastMessage(m *v1alpha1.MastodonMigration) string {
	for i := len(m.Status.Steps) - 1; i >= 0; i-- {
		if s := m.Status.Steps[i]; s.State != v1alpha1.StepPending && s.Message != "" {
			return s.Name + ": " + s.Message
		}
	}
	return "no step has run"
}

// step returns the migration's record of the step name.
func step(m *v1alpha1.MastodonMigration, name string) *v1alpha1.StepStatus {
	for i := range m.Status.Steps {
		if m.Status.Steps[i].Name == name {
			return &m.Status.Steps[i]
		}
	}
	return nil
}
