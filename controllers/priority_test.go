package controllers

import (
	"context"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/controller/priorityqueue"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
)

// TestARollbackRequestJumpsTheQueue queues the steps of many migrations, then a change that asks
// for a rollback: the worker that frees up next takes the rollback, not the oldest step.
func TestARollbackRequestJumpsTheQueue(t *testing.T) {
	migration := func(name string, level int32, phase v1alpha1.Phase) *v1alpha1.MastodonMigration {
		return &v1alpha1.MastodonMigration{ObjectMeta: metav1.ObjectMeta{Namespace: name, Name: "to-helm"},
			Spec: v1alpha1.MastodonMigrationSpec{RollbackLevel: level}, Status: v1alpha1.MastodonMigrationStatus{Phase: phase}}
	}
	for _, tc := range []struct {
		name   string
		change event.UpdateEvent
		first  string
	}{
		{"on-call raises spec.rollbackLevel", event.UpdateEvent{ObjectNew: migration("asks", 1, v1alpha1.PhaseObserving)}, "asks"},
		{"an automatic rollback under way", event.UpdateEvent{ObjectNew: migration("asks", 0, v1alpha1.PhaseRollingBack)}, "asks"},
		{"a MastodonRollback", event.UpdateEvent{ObjectNew: &v1alpha1.MastodonRollback{ObjectMeta: metav1.ObjectMeta{Namespace: "asks", Name: "rb"},
			Spec: v1alpha1.MastodonRollbackSpec{MigrationRef: v1alpha1.LocalObjectReference{Name: "to-helm"}, Level: 1}}}, "asks"},
		{"a rollback already done", event.UpdateEvent{ObjectNew: migration("asks", 1, v1alpha1.PhaseRolledBack)}, "busy-0"},
		{"a migration that asks for nothing", event.UpdateEvent{ObjectNew: migration("asks", 0, v1alpha1.PhaseObserving)}, "busy-0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := priorityqueue.New[reconcile.Request]("test")
			defer q.ShutDown()
			for _, ns := range []string{"busy-0", "busy-1", "busy-2"} {
				q.Add(reconcile.Request{NamespacedName: types.NamespacedName{Namespace: ns, Name: "to-helm"}})
			}
			enqueueRollingBack{}.Update(context.Background(), tc.change, q)
			got, _, _ := q.GetWithPriority()
			if got.Namespace != tc.first {
				t.Fatalf("the next reconcile is of %s, want %s", got.Namespace, tc.first)
			}
		})
	}
}
