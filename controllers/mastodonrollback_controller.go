package controllers

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
)

// StepResolve is the MastodonRollback's first step: find the migration and check the request.
const StepResolve = "Resolve"

// MastodonRollbackReconciler answers MastodonRollbacks: it resolves the migration, refuses what
// cannot run, asks the migration for the rollback, and reports its progress and result.
type MastodonRollbackReconciler struct {
	client.Client
	// APIReader reads the API server itself: a migration created just before its rollback may
	// not be in the cache yet, and "not found" ends a rollback for good.
	APIReader client.Reader
	Recorder  events.EventRecorder
}

// +kubebuilder:rbac:groups=migration.mastodon-operator.io,resources=mastodonrollbacks,verbs=get;list;watch
// +kubebuilder:rbac:groups=migration.mastodon-operator.io,resources=mastodonrollbacks/status,verbs=get;update;patch

// Reconcile handles one MastodonRollback and writes its status once, at the end.
func (r *MastodonRollbackReconciler) Reconcile(ctx context.Context, req ctrl.Request) (result ctrl.Result, retErr error) {
	rb := &v1alpha1.MastodonRollback{}
	if err := r.Get(ctx, req.NamespacedName, rb); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if rb.Status.Phase == v1alpha1.RollbackSucceeded || rb.Status.Phase == v1alpha1.RollbackFailed {
		return ctrl.Result{}, nil // a rollback runs once; its record stays as it ended
	}
	base := rb.DeepCopy()
	defer func() {
		boundRollbackStatus(&rb.Status)
		changed := !equality.Semantic.DeepEqual(base.Status, rb.Status)
		result, _, retErr = patchStatus(ctx, r.Client, r.Recorder, rb, base, changed, func(msg string) {
			phase := rb.Status.Phase
			rb.Status = *base.Status.DeepCopy()
			rb.Status.Phase = phase
			setProgress(&rb.Status.Conditions, rb.Generation, progressStalled, ReasonStatusRejected, msg)
			rb.Status.ObservedGeneration = rb.Generation
		}, result, retErr)
	}()
	if rb.Status.Phase == "" {
		pending(rb)
	}
	rec := stepRecord(&rb.Status.Steps, StepResolve)
	start(rec, rb.Generation, metav1.NowMicro())

	m := &v1alpha1.MastodonMigration{}
	key := client.ObjectKey{Namespace: rb.Namespace, Name: rb.Spec.MigrationRef.Name}
	err := r.Get(ctx, key, m)
	if apierrors.IsNotFound(err) && r.APIReader != nil {
		err = r.APIReader.Get(ctx, key, m)
	}
	if apierrors.IsNotFound(err) {
		return r.refuse(rb, rec, ReasonMigrationMissing, fmt.Sprintf(
			"MastodonMigration %s not found in namespace %s: check spec.migrationRef.name", rb.Spec.MigrationRef.Name, rb.Namespace))
	}
	if err != nil {
		return ctrl.Result{}, err
	}
	if rb.Spec.Level == 3 && m.Spec.Rollback.Database.CloudSQL == nil {
		return r.refuse(rb, rec, ReasonNotConfigured, fmt.Sprintf(
			"level 3 restores the database backup, but MastodonMigration %s sets no spec.rollback.database.cloudSQL", m.Name))
	}
	if other, err := r.conflicting(ctx, rb); err != nil {
		return ctrl.Result{}, err
	} else if other != nil {
		return r.refuse(rb, rec, ReasonRollbackConflict, fmt.Sprintf(
			"MastodonRollback %s (level %d) is already running for MastodonMigration %s: wait for it, or escalate with a higher level once it ends",
			other.Name, other.Spec.Level, m.Name))
	}
	// A rollback accepted before the migration escalated is part of the higher level, which
	// includes its own: it follows the migration's rollback to its end.
	if m.Status.Rollback != nil && m.Status.Rollback.Level > rb.Spec.Level && rb.Status.Phase != v1alpha1.RollbackRunning {
		return r.refuse(rb, rec, ReasonRollbackConflict, fmt.Sprintf(
			"MastodonMigration %s was already rolled back at level %d; a rollback only escalates", m.Name, m.Status.Rollback.Level))
	}
	return r.requestAndReport(ctx, rb, rec, m)
}

// requestAndReport asks the migration for the rollback by accepting it (phase Running), which
// the migration's own reconciler (the one writer of the migration and of the stack) reads through
// the index and runs; then it reports the migration's progress and result here.
func (r *MastodonRollbackReconciler) requestAndReport(ctx context.Context, rb *v1alpha1.MastodonRollback,
	rec *v1alpha1.StepStatus, m *v1alpha1.MastodonMigration) (ctrl.Result, error) {
	if m.Status.Rollback == nil || m.Status.Rollback.Level < rb.Spec.Level {
		msg := fmt.Sprintf("asked MastodonMigration %s for a level %d rollback", m.Name, rb.Spec.Level)
		if rb.Status.Phase != v1alpha1.RollbackRunning {
			r.Recorder.Eventf(rb, m, corev1.EventTypeNormal, "RollbackRequested", "Rollback", "%s", eventNote(msg))
		}
		finish(rec, v1alpha1.StepSucceeded, msg, metav1.NowMicro())
		rb.Status.Phase = v1alpha1.RollbackRunning
		setProgress(&rb.Status.Conditions, rb.Generation, progressReconciling, ReasonProgressing, rec.Message)
		return ctrl.Result{}, nil
	}
	finish(rec, v1alpha1.StepSucceeded, fmt.Sprintf("MastodonMigration %s rolls back at level %d", m.Name, m.Status.Rollback.Level), *rec.StartedAt)
	// The migration's rollback steps are this rollback's steps.
	steps := []v1alpha1.StepStatus{*rec}
	for _, s := range m.Status.Steps {
		if strings.HasPrefix(s.Name, "Rollback") {
			steps = append(steps, s)
		}
	}
	rb.Status.Steps = steps
	ready := meta.FindStatusCondition(m.Status.Conditions, ConditionReady)
	message := ""
	if ready != nil {
		message = ready.Message
	}
	switch {
	case m.Status.Rollback.FinishedAt != nil:
		rb.Status.Phase = v1alpha1.RollbackSucceeded
		setProgress(&rb.Status.Conditions, rb.Generation, progressReady, ReasonRolledBack, message)
		rb.Status.ObservedGeneration = rb.Generation
		r.Recorder.Eventf(rb, m, corev1.EventTypeNormal, ReasonRolledBack, "Rollback", "%s", eventNote(message))
	case meta.IsStatusConditionTrue(m.Status.Conditions, ConditionStalled):
		// The migration's rollback waits on a person (level 3 refused on a shared Cloud SQL
		// instance until sharedInstance is confirmed; a status write the API server refuses):
		// no rollback step ever ends one for good, so this is no end. The rollback stays Running,
		// Stalled with the migration's word on what to do (kstatus reads Failed), and follows the
		// migration once the person has acted.
		stalled := meta.FindStatusCondition(m.Status.Conditions, ConditionStalled)
		if !meta.IsStatusConditionTrue(rb.Status.Conditions, ConditionStalled) {
			r.Recorder.Eventf(rb, m, corev1.EventTypeWarning, "RollbackWaiting", "Rollback", "%s", eventNote(stalled.Message))
		}
		rb.Status.Phase = v1alpha1.RollbackRunning
		setProgress(&rb.Status.Conditions, rb.Generation, progressStalled, stalled.Reason, stalled.Message)
		rb.Status.ObservedGeneration = rb.Generation
	default:
		rb.Status.Phase = v1alpha1.RollbackRunning
		setProgress(&rb.Status.Conditions, rb.Generation, progressReconciling, ReasonProgressing, message)
	}
	return ctrl.Result{}, nil
}

// pending is a rollback's first status: Reconciling from the first write, so a look that errs
// before the request is made still reads as in progress to kstatus, not as Current.
func pending(rb *v1alpha1.MastodonRollback) {
	rb.Status.Phase = v1alpha1.RollbackPending
	setProgress(&rb.Status.Conditions, rb.Generation, progressReconciling, ReasonProgressing,
		"reading MastodonMigration "+rb.Spec.MigrationRef.Name)
}

// refuse ends a rollback that cannot run, saying why.
func (r *MastodonRollbackReconciler) refuse(rb *v1alpha1.MastodonRollback, rec *v1alpha1.StepStatus, reason, msg string) (ctrl.Result, error) {
	finish(rec, v1alpha1.StepFailed, msg, metav1.NowMicro())
	rb.Status.Phase = v1alpha1.RollbackFailed
	setProgress(&rb.Status.Conditions, rb.Generation, progressStalled, reason, msg)
	rb.Status.ObservedGeneration = rb.Generation
	r.Recorder.Eventf(rb, nil, corev1.EventTypeWarning, reason, "Rollback", "%s", eventNote(msg))
	return ctrl.Result{}, nil
}

// conflicting returns another rollback of the same migration, at another level, that is running.
func (r *MastodonRollbackReconciler) conflicting(ctx context.Context, rb *v1alpha1.MastodonRollback) (*v1alpha1.MastodonRollback, error) {
	var list v1alpha1.MastodonRollbackList
	if err := r.List(ctx, &list, client.InNamespace(rb.Namespace),
		client.MatchingFields{indexMigrationRef: rb.Spec.MigrationRef.Name}); err != nil {
		return nil, err
	}
	for i := range list.Items {
		o := &list.Items[i]
		if o.Name != rb.Name && o.Spec.Level != rb.Spec.Level && o.Status.Phase == v1alpha1.RollbackRunning {
			return o, nil
		}
	}
	return nil, nil
}

// SetupWithManager watches rollbacks, and migrations so that a rollback waiting for its migration
// is looked at again when the migration changes.
func (r *MastodonRollbackReconciler) SetupWithManager(mgr ctrl.Manager, workers controller.Options) error {
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &v1alpha1.MastodonRollback{}, indexMigrationRef,
		func(o client.Object) []string { return []string{o.(*v1alpha1.MastodonRollback).Spec.MigrationRef.Name} }); err != nil {
		return err
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&v1alpha1.MastodonRollback{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&v1alpha1.MastodonMigration{}, handler.EnqueueRequestsFromMapFunc(r.rollbacksOf)).
		Named("mastodonrollback").
		WithOptions(workers).
		Complete(r)
}

func (r *MastodonRollbackReconciler) rollbacksOf(ctx context.Context, o client.Object) []reconcile.Request {
	var list v1alpha1.MastodonRollbackList
	if err := r.List(ctx, &list, client.InNamespace(o.GetNamespace()), client.MatchingFields{indexMigrationRef: o.GetName()}); err != nil {
		log.FromContext(ctx).Error(err, "listing rollbacks of a migration", "migration", o.GetName())
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(list.Items))
	for i := range list.Items {
		if p := list.Items[i].Status.Phase; p == "" || p == v1alpha1.RollbackPending || p == v1alpha1.RollbackRunning {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[i])})
		}
	}
	return reqs
}
