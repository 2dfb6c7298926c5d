package controllers

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
)

// Rollback triggers, as recorded in status.rollback.trigger.
const (
	TriggerRollbackLevel    = "RollbackLevel"
	TriggerMastodonRollback = "MastodonRollback"
)

// changedCluster reports whether the migration has changed anything a rollback would undo: a
// release installed or traffic moved. Snapshots and backups change nothing the stack runs on.
func changedCluster(m *v1alpha1.MastodonMigration) bool {
	return m.Status.Release != nil || (m.Status.Traffic != nil && m.Status.Traffic.Target != v1alpha1.TrafficToSource)
}

// rollBack answers spec.rollbackLevel. The plan stops for good: a migration that was rolled back
// is started again by a new MastodonMigration, after the cause is understood.
func (r *MastodonMigrationReconciler) rollBack(_ context.Context, m *v1alpha1.MastodonMigration) (ctrl.Result, error) {
	level := m.Spec.RollbackLevel
	if m.Status.Rollback != nil && m.Status.Rollback.Level >= level && m.Status.Rollback.FinishedAt != nil {
		m.Status.ObservedGeneration = m.Generation
		return ctrl.Result{}, nil
	}
	if changedCluster(m) {
		// Unreachable in this version: no step changes the cluster yet.
		return ctrl.Result{}, fmt.Errorf("rollback level %d of a migration that changed the cluster is not built yet", level)
	}
	now := metav1.Now()
	msg := fmt.Sprintf("rolled back at level %d: nothing to undo, the migration had not changed the cluster", level)
	m.Status.Rollback = &v1alpha1.RollbackStatus{
		Level: level, Trigger: TriggerRollbackLevel, Reason: fmt.Sprintf("spec.rollbackLevel set to %d", level),
		StartedAt: &now, FinishedAt: &now,
	}
	m.Status.Phase = v1alpha1.PhaseRolledBack
	setProgress(&m.Status.Conditions, m.Generation, progressIdle, ReasonRolledBack, msg)
	m.Status.ObservedGeneration = m.Generation
	r.Recorder.Eventf(m, nil, corev1.EventTypeNormal, ReasonRolledBack, "Rollback", msg)
	return ctrl.Result{}, nil
}
