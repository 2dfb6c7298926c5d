package controllers

import (
	"cmp"
	"context"
	"fmt"
	"time"

	"google.golang.org/api/option"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
	"github.com/mastodon-operator/mastodon-operator/internal/database"
	"github.com/mastodon-operator/mastodon-operator/internal/helm"
	"github.com/mastodon-operator/mastodon-operator/internal/metrics"
	"github.com/mastodon-operator/mastodon-operator/internal/notify"
	"github.com/mastodon-operator/mastodon-operator/internal/preflight"
)

// MastodonMigrationReconciler runs the plan of each MastodonMigration.
type MastodonMigrationReconciler struct {
	client.Client
	// APIReader reads the migration uncached.
	APIReader client.Reader
	Recorder  events.EventRecorder
	Charts    preflight.ChartSource
	// HelmClients are what the Helm SDK connects with.
	HelmClients *helm.Clients
	// CloudSQL connects to the Cloud SQL Admin API, when a migration asks for a database backup.
	CloudSQL func(ctx context.Context) (*database.CloudSQL, error)
	// CloudMonitoring are the options of the Cloud Monitoring client (tests point it at a local
	// server).
	CloudMonitoring []option.ClientOption
	// ServiceAddress is host:port of a Service's port, for the HTTP health checks; nil when the
	// operator cannot reach Services (it runs outside the cluster).
	ServiceAddress func(namespace, name string, port int32) string
	// Helm runs the Helm actions that wait, in the background.
	Helm *helmActions
	// Notifier sends the migrations' notifications in the background.
	Notifier *notify.Notifier
}

// +kubebuilder:rbac:groups=migration.mastodon-operator.io,resources=mastodonmigrations,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=migration.mastodon-operator.io,resources=mastodonmigrations/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=migration.mastodon-operator.io,resources=mastodonrollbacks,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile loads the migration, runs its plan, and writes the status once, at the end.
func (r *MastodonMigrationReconciler) Reconcile(ctx context.Context, req ctrl.Request) (result ctrl.Result, retErr error) {
	m := &v1alpha1.MastodonMigration{}
	// Straight from the API server: a reconcile often follows this one's own status write at
	// once (recordFirst), before the cache has it, and a stale copy would only conflict.
	if err := r.APIReader.Get(ctx, req.NamespacedName, m); err != nil {
		if apierrors.IsNotFound(err) {
			metrics.Forget(req.Namespace, req.Name)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !m.DeletionTimestamp.IsZero() {
		// The migration owns nothing: its snapshots and the release outlive it on purpose.
		metrics.Forget(req.Namespace, req.Name)
		return ctrl.Result{}, nil
	}
	base := m.DeepCopy()
	defer func() {
		boundMigrationStatus(&m.Status)
		changed := !equality.Semantic.DeepEqual(base.Status, m.Status)
		var written bool
		result, written, retErr = patchStatus(ctx, r.Client, r.Recorder, m, base, changed, func(msg string) {
			// The last accepted status fits; the phase is one of the API's values.
			phase := m.Status.Phase
			m.Status = *base.Status.DeepCopy()
			m.Status.Phase = phase
			setProgress(&m.Status.Conditions, m.Generation, progressStalled, ReasonStatusRejected, msg)
			m.Status.ObservedGeneration = m.Generation
		}, result, retErr)
		// Both report the status as stored: what a write that failed changed is reported by the
		// reconcile that writes it, once.
		if written || !changed {
			metrics.Record(&base.Status, m, written)
		}
		if written {
			r.notify(ctx, base, m)
		}
		if p := reconcilePriority(m); p != nil {
			result.Priority = p
		}
	}()
	if m.Status.Phase == "" {
		m.Status.Phase = v1alpha1.PhasePending
	}
	accepted, err := r.acceptedRollbacks(ctx, m)
	if err != nil {
		return ctrl.Result{}, err
	}
	if level, trigger, reason := requestedRollback(m, accepted); level > 0 {
		return r.rollBack(ctx, m, level, trigger, reason)
	}
	return r.runPlan(ctx, m)
}

// recordFirst is the requeue after a step's start is recorded: at once, with the status written.
const recordFirst = time.Millisecond

// runPlan runs the migration's plan and marks the migration Completed when it has run out.
func (r *MastodonMigrationReconciler) runPlan(ctx context.Context, m *v1alpha1.MastodonMigration) (ctrl.Result, error) {
	result, done, err := r.runSteps(ctx, m, r.plan(m))
	if !done || err != nil {
		return result, err
	}
	if m.Status.Phase != v1alpha1.PhaseCompleted {
		r.Recorder.Eventf(m, nil, corev1.EventTypeNormal, ReasonCompleted, "Migrate",
			"release %s serves the traffic; the old stack is kept in snapshot %s", m.Spec.Release.Name, snapshotName(m))
	}
	markCompleted(m, fmt.Sprintf("migrated to release %s", m.Spec.Release.Name))
	return ctrl.Result{}, nil
}

// runSteps walks steps, skipping those already done, and stops at the first step that waits,
// fails or errs; done says every step has ended. Each step records its own outcome, so a
// restart resumes where this one stopped. It enforces what each step declares: its limit, its
// effect (only a read-only step runs again on a spec change) and what its failure means.
func (r *MastodonMigrationReconciler) runSteps(ctx context.Context, m *v1alpha1.MastodonMigration, steps []step) (ctrl.Result, bool, error) {
	if err := checkPlan(steps); err != nil {
		// A programming error: no retry mends it, and running part of such a plan could change
		// the cluster against what its steps declare.
		markInvalidPlan(m, err.Error())
		return ctrl.Result{}, false, nil
	}
	logger := log.FromContext(ctx)
	for i, s := range steps {
		rec := stepRecord(&m.Status.Steps, s.name)
		if rec.State == v1alpha1.StepSkipped {
			continue
		}
		if rec.State == v1alpha1.StepSucceeded && !(s.rerunOnSpecChange && rec.Generation != m.Generation && !started(m, steps[i+1:])) {
			continue
		}
		if rec.State == v1alpha1.StepFailed && s.onFailure != retry && rec.Generation == m.Generation {
			// A later look must not undo the failure (the pods of a Verify that timed out turning
			// ready): only a person moves the migration on, by a rollback or a spec change.
			markFailed(m, s.name+"Failed", rec.Message)
			return ctrl.Result{}, false, nil
		}
		if m.Spec.Paused {
			markPaused(m, fmt.Sprintf("paused before step %s: set spec.paused to false to go on", s.name))
			return ctrl.Result{}, false, nil
		}
		if rec.State != v1alpha1.StepRunning && rec.State != v1alpha1.StepFailed || rec.Generation != m.Generation {
			// Record the start before acting, so that status shows which step runs (an install
			// takes minutes) and what came before it survives a crash during it.
			start(rec, m.Generation, metav1.NowMicro())
			rec.Message = ""
			markStarted(m, s)
			return ctrl.Result{RequeueAfter: recordFirst}, false, nil
		}
		m.Status.Phase = s.phase
		out, err := s.run(ctx, m)
		out, err = enforceLimit(m, s, rec, out, err, ctx.Err() != nil)
		if err != nil {
			// The world did not answer: keep the step running and let the workqueue back off,
			// until the step's limit fails it.
			rec.Message = "retrying: " + err.Error()
			markRetrying(m, s, err)
			return ctrl.Result{}, false, fmt.Errorf("step %s: %w", s.name, err)
		}
		if out.state == v1alpha1.StepFailed && s.onFailure == rollBack {
			out = r.rollBackOn(m, out)
		}
		finish(rec, out.state, out.message, metav1.NowMicro())
		logger.V(1).Info("step ran", "step", s.name, "state", out.state, "message", out.message)
		note := cmp.Or(out.note, out.message)
		switch out.state {
		case v1alpha1.StepSucceeded:
			r.Recorder.Eventf(m, nil, corev1.EventTypeNormal, s.name+"Succeeded", s.name, "%s", eventNote(note))
		case v1alpha1.StepFailed:
			r.Recorder.Eventf(m, nil, corev1.EventTypeWarning, s.name+"Failed", s.name, "%s", eventNote(note))
		}
		if !markOutcome(m, s, out) {
			return ctrl.Result{RequeueAfter: out.requeueAfter}, false, nil
		}
	}
	return ctrl.Result{}, true, nil
}

// checkPlan refuses a plan whose steps do not each declare their limit, effect and failure
// meaning, or that would run a mutating step again on a spec change.
func checkPlan(steps []step) error {
	for _, s := range steps {
		switch {
		case s.timeout.after == nil || s.effect == 0 || s.onFailure == 0:
			return fmt.Errorf("step %s declares no limit, effect or failure meaning", s.name)
		case s.rerunOnSpecChange && s.effect != readOnly:
			return fmt.Errorf("step %s changes the cluster: it may not run again on a spec change", s.name)
		}
	}
	return nil
}

// enforceLimit fails a step that is still Running, waiting or erring, after its limit; the
// requeue of a waiting step is brought forward to the limit, so it fails on time without a
// watch waking it. An error of an operator that is stopping is left for the next one.
func enforceLimit(m *v1alpha1.MastodonMigration, s step, rec *v1alpha1.StepStatus, out outcome, err error, stopping bool) (outcome, error) {
	d := s.timeout.after(m)
	if d <= 0 || rec.StartedAt == nil || stopping || err == nil && out.state != v1alpha1.StepRunning {
		return out, err
	}
	left := time.Until(rec.StartedAt.Add(d))
	if left >= 0 {
		if err == nil && (out.requeueAfter == 0 || out.requeueAfter > left) {
			out.requeueAfter = left + recordFirst
		}
		return out, err
	}
	last := out.message
	if err != nil {
		last = err.Error()
	}
	msg := fmt.Sprintf("not ready within %s (%s): %s", d, s.timeout.setting, last)
	if s.timeout.then != nil {
		msg += s.timeout.then(m)
	}
	failed := outcome{state: v1alpha1.StepFailed, message: msg}
	if s.onFailure == retry && err == nil && out.requeueAfter > 0 {
		// A step that retries looks again at the pace it asked for, since no watch may wake it
		// (the last pods of a Deployment going), but once past its limit no faster than
		// limitRecheck.
		failed.requeueAfter = max(out.requeueAfter, limitRecheck)
	}
	return failed, nil
}

// limitRecheck is how often a step that retries looks again once past its limit, at most.
const limitRecheck = 10 * time.Second

// rollBackOn answers a failure that calls for a rollback: level 1 at once, where the operator may
// roll back by itself, as the runbook does; the old stack still runs until the migration
// finishes, so only the traffic moves. Otherwise the step holds for on-call.
func (r *MastodonMigrationReconciler) rollBackOn(m *v1alpha1.MastodonMigration, out outcome) outcome {
	if !automaticRollback(m) {
		out.message += ": the migration holds here, as spec.rollback.automatic is false: move the traffic back with `" + rollbackCommand(m) + "`"
		return out
	}
	now := metav1.NowMicro()
	m.Status.Rollback = &v1alpha1.RollbackStatus{Level: 1, Trigger: TriggerAutomatic, Reason: out.message, StartedAt: &now}
	if m.Status.Analysis != nil {
		m.Status.Rollback.Breaches = m.Status.Analysis.Breaches
	}
	r.Recorder.Eventf(m, nil, corev1.EventTypeWarning, "AutomaticRollback", "Rollback", "%s", eventNote(out.message+": rolling back at level 1"))
	out.message += ": rolled back automatically at level 1"
	out.requeueAfter = recordFirst
	return out
}

// started reports whether any of the given steps has run.
func started(m *v1alpha1.MastodonMigration, steps []step) bool {
	for _, s := range steps {
		for _, rec := range m.Status.Steps {
			if rec.Name == s.name && rec.State != v1alpha1.StepPending {
				return true
			}
		}
	}
	return false
}

// SetupWithManager watches migrations, the source objects they name (and the EndpointSlices of
// their Services), and the rollbacks that point at them.
func (r *MastodonMigrationReconciler) SetupWithManager(mgr ctrl.Manager, workers controller.Options) error {
	if err := indexSourceObjects(context.Background(), mgr); err != nil {
		return err
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&v1alpha1.MastodonMigration{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&appsv1.Deployment{}, handler.EnqueueRequestsFromMapFunc(r.migrationsNaming("Deployment"))).
		Watches(&corev1.Service{}, handler.EnqueueRequestsFromMapFunc(r.migrationsNaming("Service"))).
		Watches(&discoveryv1.EndpointSlice{}, handler.EnqueueRequestsFromMapFunc(r.migrationsOfEndpointSlice),
			builder.WithPredicates(endpointSliceReadiness)).
		Watches(&networkingv1.Ingress{}, handler.EnqueueRequestsFromMapFunc(r.migrationsNaming("Ingress"))).
		// A MastodonRollback asks for a rollback through the migration's status, which the
		// predicate above does not see change: its own changes wake the migration instead.
		Watches(&v1alpha1.MastodonRollback{}, handler.EnqueueRequestsFromMapFunc(migrationOf)).
		Watches(&v1alpha1.MastodonRollback{}, enqueueRollingBack{}).
		Watches(&v1alpha1.MastodonMigration{}, enqueueRollingBack{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		WatchesRawSource(source.Channel(r.Helm.ended, &handler.EnqueueRequestForObject{})).
		Named("mastodonmigration").
		WithOptions(workers).
		Complete(r)
}
