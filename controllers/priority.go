package controllers

import (
	"context"

	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/priorityqueue"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
)

// rollbackPriority puts a migration that asks for a rollback, or runs one, ahead of every other
// migration's steps in the workqueue (controller-runtime's priority queue): with a hundred
// migrations at once, a level 1 waited behind their reconciles, 2.3 s instead of 0.4 s
// (make bench). Its requeues keep the priority until the rollback ends.
const rollbackPriority = 100

// rollingBack tells whether m asks for a rollback or runs one.
func rollingBack(m *v1alpha1.MastodonMigration) bool {
	return m.Status.Phase == v1alpha1.PhaseRollingBack ||
		m.Spec.RollbackLevel > 0 && m.Status.Phase != v1alpha1.PhaseRolledBack
}

// reconcilePriority is the priority of m's next reconcile: nil keeps the one it came with.
func reconcilePriority(m *v1alpha1.MastodonMigration) *int {
	if rollingBack(m) {
		return ptr.To(rollbackPriority)
	}
	return nil
}

// enqueueRollingBack enqueues, at rollbackPriority, the migration of a change that asks for a
// rollback: a migration whose spec.rollbackLevel is raised, or a MastodonRollback of it. The
// usual handlers enqueue the same changes at the usual priority; the queue keeps the higher.
type enqueueRollingBack struct{}

var _ handler.EventHandler = enqueueRollingBack{}

func (enqueueRollingBack) Create(_ context.Context, e event.CreateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	addRollingBack(q, e.Object)
}

func (enqueueRollingBack) Update(_ context.Context, e event.UpdateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	addRollingBack(q, e.ObjectNew)
}

func (enqueueRollingBack) Delete(context.Context, event.DeleteEvent, workqueue.TypedRateLimitingInterface[reconcile.Request]) {
}

func (enqueueRollingBack) Generic(context.Context, event.GenericEvent, workqueue.TypedRateLimitingInterface[reconcile.Request]) {
}

func addRollingBack(q workqueue.TypedRateLimitingInterface[reconcile.Request], o client.Object) {
	var key client.ObjectKey
	switch o := o.(type) {
	case *v1alpha1.MastodonMigration:
		if !rollingBack(o) {
			return
		}
		key = client.ObjectKeyFromObject(o)
	case *v1alpha1.MastodonRollback:
		if o.Status.Phase != "" && o.Status.Phase != v1alpha1.RollbackPending && o.Status.Phase != v1alpha1.RollbackRunning {
			return
		}
		key = client.ObjectKey{Namespace: o.Namespace, Name: o.Spec.MigrationRef.Name}
	default:
		return
	}
	req := reconcile.Request{NamespacedName: key}
	if pq, ok := q.(priorityqueue.PriorityQueue[reconcile.Request]); ok {
		pq.AddWithOpts(priorityqueue.AddOpts{Priority: ptr.To(rollbackPriority)}, req)
		return
	}
	q.Add(req)
}
