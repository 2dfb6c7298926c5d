package controllers

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"helm.sh/helm/v3/pkg/release"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
	"github.com/mastodon-operator/mastodon-operator/internal/database"
	"github.com/mastodon-operator/mastodon-operator/internal/helm"
	"github.com/mastodon-operator/mastodon-operator/internal/notify"
	"github.com/mastodon-operator/mastodon-operator/internal/preflight"
	"github.com/mastodon-operator/mastodon-operator/internal/scheduler"
	"github.com/mastodon-operator/mastodon-operator/internal/snapshot"
	"github.com/mastodon-operator/mastodon-operator/internal/traffic"
	"github.com/mastodon-operator/mastodon-operator/internal/workload"
)

// Rollback triggers, as recorded in status.rollback.trigger.
const (
	TriggerAutomatic        = "Automatic"
	TriggerRollbackLevel    = "RollbackLevel"
	TriggerMastodonRollback = "MastodonRollback"
)

// The steps of a rollback, as they appear in status.steps.
const (
	StepRollbackSource  = "RollbackSource"
	StepRollbackTraffic = "RollbackTraffic"
	StepRollbackRelease = "RollbackScaleDownRelease"
	StepRollbackHelm    = "RollbackUninstall"
	StepRollbackRestore = "RollbackRestore"
	StepRollbackStopAll = "RollbackStopAll"
	StepRollbackDB      = "RollbackDatabase"
	// StepRollbackInstance checks, before level 3 stops anything, whose databases the restore
	// rewinds.
	StepRollbackInstance = "RollbackCheckInstance"
	// StepRollbackMaintenance removes the maintenance page of the Maintenance strategy.
	StepRollbackMaintenance = "RollbackRemoveMaintenancePage"
)

// sourceReadyTimeout is how long a rollback waits for the old pods: spec.rollback.sourceReadyTimeout,
// by default the runbook's `kubectl wait --timeout=60s`.
func sourceReadyTimeout(m *v1alpha1.MastodonMigration) time.Duration {
	return durationOr(m.Spec.Rollback.SourceReadyTimeout, 60*time.Second)
}

// rollbackCommand is the command on-call runs to roll the migration back at level 1.
func rollbackCommand(m *v1alpha1.MastodonMigration) string {
	return notify.RollbackCommand(m.Namespace, m.Name, 1)
}

// changedCluster reports whether a step that changes the stack has started: the maintenance
// page, the install, the traffic switch or the clean-up. Preflight, values and the snapshot change nothing it runs on.
func changedCluster(m *v1alpha1.MastodonMigration) bool {
	for _, s := range m.Status.Steps {
		switch s.Name {
		case StepMaintenanceOn, StepStopSource, StepHandOver, StepInstall, StepShiftTraffic, StepFinish:
			if s.State != v1alpha1.StepPending {
				return true
			}
		}
	}
	return false
}

// rollbackPlan is the state machine of a rollback: level 1 brings the old pods back and moves
// the traffic to them; level 2 also removes the release and restores every snapshotted object.
// Each level includes the ones below, so escalating resumes rather than starts again.
//
// Level 3 stops every workload of the stack first, restores the database backup, and then
// restores what level 2 restores, which brings the old pods back on the restored database.
func (r *MastodonMigrationReconciler) rollbackPlan(m *v1alpha1.MastodonMigration, level int32) []step {
	// Every rollback step changes the stack, and looks again while it fails: only the old pods'
	// wait has a limit of its own.
	undo := func(name string, run func(context.Context, *v1alpha1.MastodonMigration) (outcome, error)) step {
		return step{name: name, phase: v1alpha1.PhaseRollingBack, run: run, timeout: unlimited, effect: mutating, onFailure: retry}
	}
	if level >= 3 {
		// Draining pods are waited for as long as the release's (spec.release.timeout); a pod
		// past it is held by a finalizer or a lost node, and the step keeps looking meanwhile.
		stopAll := undo(StepRollbackStopAll, r.rollbackStopAll)
		stopAll.timeout = releaseLimit(podsStuck)
		return []step{
			// Refused, it waits for a person's spec change (sharedInstance: confirmed); nothing
			// has stopped yet, and the stack serves on.
			{name: StepRollbackInstance, phase: v1alpha1.PhaseRollingBack, run: r.rollbackCheckInstance,
				timeout: unlimited, effect: readOnly, onFailure: stopForPerson},
			stopAll,
			undo(StepRollbackDB, r.rollbackDatabase),
			undo(StepRollbackTraffic, r.rollbackTraffic),
			undo(StepRollbackHelm, r.rollbackUninstall),
			undo(StepRollbackRestore, r.rollbackRestore),
		}
	}
	source := undo(StepRollbackSource, r.rollbackSource)
	source.timeout = limit{after: sourceReadyTimeout, setting: "spec.rollback.sourceReadyTimeout"}
	// The scheduler goes back once the traffic is: the release's consumer stops before the old
	// one starts, and no request waits for a Sidekiq pod to turn ready.
	handBack := undo(StepRollbackScheduler, r.handBackScheduler)
	handBack.timeout = source.timeout
	steps := []step{source, undo(StepRollbackTraffic, r.rollbackTraffic), handBack, undo(StepRollbackRelease, r.rollbackScaleDownRelease)}
	if m.Spec.Strategy == v1alpha1.StrategyMaintenance {
		steps = append(steps, undo(StepRollbackMaintenance, r.removeMaintenance))
	}
	if level >= 2 {
		steps = append(steps, undo(StepRollbackHelm, r.rollbackUninstall), undo(StepRollbackRestore, r.rollbackRestore))
	}
	return steps
}

// podsStuck ends the message of a RollbackStopAll that timed out.
func podsStuck(*v1alpha1.MastodonMigration) string {
	return "; nothing was restored: a pod Terminating past its grace period is held by a finalizer or by a node that is gone " +
		"(kubectl get pod NAME -o yaml); the database is restored once no pod is left"
}

// requestedRollback is the highest rollback asked for: the one status.rollback records (from any
// trigger, the analysis's included), a MastodonRollback of the migration that its controller
// accepted (phase Running), or spec.rollbackLevel. At the same level, the one already recorded
// stands.
func requestedRollback(m *v1alpha1.MastodonMigration, accepted []v1alpha1.MastodonRollback) (level int32, trigger, reason string) {
	if rb := m.Status.Rollback; rb != nil {
		level, trigger, reason = rb.Level, rb.Trigger, rb.Reason
	}
	for _, rb := range accepted {
		if rb.Spec.Level > level {
			level, trigger, reason = rb.Spec.Level, TriggerMastodonRollback, cmp.Or(rb.Spec.Reason, "MastodonRollback "+rb.Name)
		}
	}
	if m.Spec.RollbackLevel > level {
		level, trigger, reason = m.Spec.RollbackLevel, TriggerRollbackLevel, fmt.Sprintf("spec.rollbackLevel set to %d", m.Spec.RollbackLevel)
	}
	return level, trigger, reason
}

// acceptedRollbacks are the migration's MastodonRollbacks that their controller accepted: the
// migration reads them through the index rather than have that controller write its status, so
// the migration's reconciler is the one writer of the migration.
func (r *MastodonMigrationReconciler) acceptedRollbacks(ctx context.Context, m *v1alpha1.MastodonMigration) ([]v1alpha1.MastodonRollback, error) {
	var list v1alpha1.MastodonRollbackList
	if err := r.List(ctx, &list, client.InNamespace(m.Namespace), client.MatchingFields{indexMigrationRef: m.Name}); err != nil {
		return nil, fmt.Errorf("listing the MastodonRollbacks of %s: %w", m.Name, err)
	}
	var out []v1alpha1.MastodonRollback
	for _, rb := range list.Items {
		if rb.Status.Phase == v1alpha1.RollbackRunning {
			out = append(out, rb)
		}
	}
	return out, nil
}

// rollBack answers a rollback request (spec.rollbackLevel, or a MastodonRollback recorded in
// status.rollback). The migration's own plan stops for good: a migration that was rolled back is
// started again by a new MastodonMigration, after the cause is understood.
func (r *MastodonMigrationReconciler) rollBack(ctx context.Context, m *v1alpha1.MastodonMigration, level int32, trigger, reason string) (ctrl.Result, error) {
	rb := m.Status.Rollback
	if rb == nil || rb.Level < level {
		now := metav1.NowMicro()
		m.Status.Rollback = &v1alpha1.RollbackStatus{Level: level, Trigger: trigger, Reason: reason, StartedAt: &now}
		if rb != nil && rb.StartedAt != nil {
			m.Status.Rollback.StartedAt = rb.StartedAt
		}
		r.Recorder.Eventf(m, nil, corev1.EventTypeWarning, "RollingBack", "Rollback", "%s",
			eventNote(withSchema(fmt.Sprintf("rollback level %d: %s", level, reason), m, level)))
	}
	rb = m.Status.Rollback
	if canceled, err := r.Helm.cancel(ctx, m, actionInstall); err != nil {
		return ctrl.Result{}, err
	} else if canceled {
		// The install gives way: Helm recorded the release failed, "context canceled", which the
		// rollback scales down or uninstalls like any failed release.
		msg := fmt.Sprintf("install of release %s canceled by the rollback", m.Spec.Release.Name)
		finish(stepRecord(&m.Status.Steps, StepInstall), v1alpha1.StepFailed, msg, metav1.NowMicro())
		r.Recorder.Eventf(m, nil, corev1.EventTypeWarning, "InstallCanceled", "Rollback", "%s", msg)
	}
	if rb.FinishedAt != nil {
		m.Status.ObservedGeneration = m.Generation
		return r.watchRestored(ctx, m)
	}
	if !changedCluster(m) {
		return r.rolledBack(m, fmt.Sprintf("rolled back at level %d: nothing to undo, the migration had not changed the cluster", level))
	}
	result, done, err := r.runSteps(ctx, m, r.rollbackPlan(m, level))
	if !done || err != nil {
		return result, err
	}
	return r.rolledBack(m, withSchema(fmt.Sprintf("rolled back at level %d: the old stack serves the traffic", level), m, level))
}

// withSchema adds to a rollback's message what it does with the schema the release's hooks
// migrated (status.schema): levels 1 and 2 leave the old code on it, level 3 takes it back.
func withSchema(msg string, m *v1alpha1.MastodonMigration, level int32) string {
	s := m.Status.Schema
	switch {
	case s == nil:
		return msg
	case level >= 3:
		return fmt.Sprintf("%s; the database backup from before the migration to %s brings back the schema of Mastodon %s", msg, s.Version, s.From)
	}
	return fmt.Sprintf("%s; the old code (Mastodon %s) now runs on the database schema migrated to %s at %s, which level %d does not undo; level 3 restores the backup and the old schema, losing every write since",
		msg, s.From, s.Version, s.MigratedAt.UTC().Format(time.TimeOnly), level)
}

func (r *MastodonMigrationReconciler) rolledBack(m *v1alpha1.MastodonMigration, msg string) (ctrl.Result, error) {
	now := metav1.NowMicro()
	m.Status.Rollback.FinishedAt = &now
	until := metav1.NewMicroTime(now.Add(durationOr(m.Spec.Rollback.Watch, 30*time.Minute)))
	m.Status.Rollback.WatchedUntil, m.Status.Rollback.Result = &until, RollbackWatching
	if a := m.Status.Analysis; a != nil {
		// The restored stack is judged afresh: the new stack's breaches stay in the record of
		// the rollback, not in the runs of the next measurements.
		a.Breaches, a.UnhealthySince = nil, nil
	}
	markRolledBack(m, msg)
	r.Recorder.Eventf(m, nil, corev1.EventTypeNormal, ReasonRolledBack, "Rollback", "%s", msg)
	return ctrl.Result{RequeueAfter: recordFirst}, nil
}

// The results of the watch of a restored stack, as status.rollback.result begins.
const (
	RollbackWatching  = "Watching"
	RollbackHealthy   = "Healthy"
	RollbackUnhealthy = "Unhealthy"
)

// watchRestored watches the stack a rollback restored, as the runbook watches it for 30
// minutes: the same providers and thresholds as the observation, and the old Deployments'
// readiness. An automatic rollback that did not heal the stack escalates to level 2 when
// spec.rollback.maxAutomaticLevel allows it; otherwise the result is recorded for on-call.
func (r *MastodonMigrationReconciler) watchRestored(ctx context.Context, m *v1alpha1.MastodonMigration) (ctrl.Result, error) {
	rb := m.Status.Rollback
	if rb.WatchedUntil == nil || !strings.HasPrefix(rb.Result, RollbackWatching) {
		return ctrl.Result{}, nil
	}
	src, err := r.sourceStack(ctx, m)
	if err != nil {
		// Level 1 or 2 may leave no source stack only if someone deleted it: nothing to watch.
		rb.Result = RollbackUnhealthy + ": " + err.Error()
		return ctrl.Result{}, nil
	}
	deployments := map[string]*appsv1.Deployment{}
	for _, d := range src.all() {
		deployments[d.Name] = d
	}
	version, _ := stackVersion(src.web)
	judged, err := r.judge(ctx, m, rb.FinishedAt.Time, notRolledOut(deployments), "the restored stack", version)
	if err != nil {
		return ctrl.Result{}, err
	}
	if judged.acting != "" {
		if rb.Trigger == TriggerAutomatic && automaticRollback(m) && rb.Level < m.Spec.Rollback.MaxAutomaticLevel && rb.Level < 2 {
			msg := fmt.Sprintf("level %d did not heal the stack: %s", rb.Level, judged.acting)
			r.Recorder.Eventf(m, nil, corev1.EventTypeWarning, "AutomaticRollback", "Rollback", "%s",
				eventNote(msg+": escalating to level 2"))
			rb.Level, rb.Reason, rb.FinishedAt, rb.WatchedUntil, rb.Result = 2, rb.Reason+"; then "+msg, nil, nil, ""
			rb.Breaches = append(rb.Breaches, m.Status.Analysis.Breaches...)
			// Written before level 2 runs: the record must not read "RolledBack" at level 2.
			m.Status.Phase = v1alpha1.PhaseRollingBack
			setProgress(&m.Status.Conditions, m.Generation, progressReconciling, ReasonProgressing, msg+": escalating to level 2")
			return ctrl.Result{RequeueAfter: recordFirst}, nil
		}
		rb.Result = RollbackUnhealthy + ": " + judged.acting
		r.Recorder.Eventf(m, nil, corev1.EventTypeWarning, "RollbackWatchFailed", "Rollback", "%s", eventNote(rb.Result+
			": the old stack is not healthy either; look beyond the migration, or raise spec.rollbackLevel"))
		return ctrl.Result{}, nil
	}
	if time.Now().Before(rb.WatchedUntil.Time) {
		rb.Result = RollbackWatching + " until " + rb.WatchedUntil.UTC().Format(time.TimeOnly) + ": " + judged.summary
		return ctrl.Result{RequeueAfter: min(judged.next, time.Until(rb.WatchedUntil.Time))}, nil
	}
	watched := rb.WatchedUntil.Sub(rb.FinishedAt.Time).Round(time.Second)
	if !judged.conclusive {
		rb.Result = fmt.Sprintf("%s until %s: the watch of %s is over but the verdict is not a pass: %s", RollbackWatching,
			rb.WatchedUntil.UTC().Format(time.TimeOnly), watched, judged.summary)
		return ctrl.Result{RequeueAfter: judged.next}, nil
	}
	rb.Result = fmt.Sprintf("%s: watched for %s after the rollback: %s", RollbackHealthy, watched, judged.summary)
	r.Recorder.Eventf(m, nil, corev1.EventTypeNormal, "RollbackWatchSucceeded", "Rollback", "%s", eventNote(rb.Result))
	return ctrl.Result{}, nil
}

// rollbackSource scales the old Deployments back to their snapshot replicas, points the HPAs
// back at them, and waits until they are ready.
func (r *MastodonMigrationReconciler) rollbackSource(ctx context.Context, m *v1alpha1.MastodonMigration) (outcome, error) {
	objects, err := snapshot.Load(ctx, r.Client, m.Namespace, snapshotName(m))
	if err != nil {
		return outcome{}, err
	}
	stored := map[string]*appsv1.Deployment{}
	hpas := map[string]*autoscalingv2.HorizontalPodAutoscaler{}
	for _, u := range objects {
		var into any
		switch u.GetKind() {
		case "Deployment":
			stored[u.GetName()] = &appsv1.Deployment{}
			into = stored[u.GetName()]
		case "HorizontalPodAutoscaler":
			hpas[u.GetName()] = &autoscalingv2.HorizontalPodAutoscaler{}
			into = hpas[u.GetName()]
		default:
			continue
		}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, into); err != nil {
			return outcome{}, err
		}
	}
	var waiting, later []string
	for stored, want := range stored {
		name := setAsideAs(m, stored)
		live := &appsv1.Deployment{}
		if err := r.Get(ctx, client.ObjectKey{Namespace: m.Namespace, Name: name}, live); err != nil {
			return outcome{state: v1alpha1.StepFailed, message: fmt.Sprintf(
				"source Deployment %s: %v: level 1 cannot bring it back; set spec.rollbackLevel to 2 to restore it from the snapshot", name, err)}, nil
		}
		if scheduler.Consumes(want.Spec.Template.Spec).Consumes {
			// RollbackHandBackScheduler starts it once the release's consumer is gone.
			later = append(later, name)
			continue
		}
		if !ptr.Equal(live.Spec.Replicas, want.Spec.Replicas) {
			before := live.DeepCopy()
			live.Spec.Replicas = want.Spec.Replicas
			if err := r.Patch(ctx, live, client.MergeFrom(before), client.FieldOwner(fieldOwner)); err != nil {
				return outcome{}, err
			}
		}
		if current, message, err := workload.RolledOut(live); err != nil {
			return outcome{}, err
		} else if !current {
			waiting = append(waiting, name+": "+message)
		}
	}
	for name, want := range hpas {
		live := &autoscalingv2.HorizontalPodAutoscaler{}
		if err := r.Get(ctx, client.ObjectKey{Namespace: m.Namespace, Name: name}, live); err != nil {
			return outcome{}, err
		}
		if live.Spec.ScaleTargetRef != want.Spec.ScaleTargetRef {
			before := live.DeepCopy()
			live.Spec.ScaleTargetRef = want.Spec.ScaleTargetRef
			if err := r.Patch(ctx, live, client.MergeFrom(before), client.FieldOwner(fieldOwner)); err != nil {
				return outcome{}, err
			}
		}
	}
	if len(waiting) > 0 {
		return outcome{state: v1alpha1.StepRunning, message: "waiting for the old pods: " + strings.Join(waiting, "; ")}, nil
	}
	msg := fmt.Sprintf("%d old Deployments back at their snapshot replicas and ready", len(stored)-len(later))
	if len(later) > 0 {
		slices.Sort(later)
		msg += fmt.Sprintf("; the scheduler consumer %s starts after the traffic is back, once the release's has stopped", strings.Join(later, ", "))
	}
	return outcome{state: v1alpha1.StepSucceeded, message: msg}, nil
}

// rollbackTraffic undoes the recorded traffic switch, field by field.
func (r *MastodonMigrationReconciler) rollbackTraffic(ctx context.Context, m *v1alpha1.MastodonMigration) (outcome, error) {
	t := m.Status.Traffic
	if t == nil || t.Target == v1alpha1.TrafficToSource {
		return outcome{state: v1alpha1.StepSkipped, message: "the traffic never left the old stack"}, nil
	}
	changes := trafficChanges(t.Changes)
	if err := traffic.Apply(ctx, r.Client, m.Namespace, traffic.Reverse(changes), fieldOwner); err != nil {
		return outcome{state: v1alpha1.StepFailed, message: "moving the traffic back: " + err.Error()}, nil
	}
	now := metav1.Now()
	t.Target, t.SwitchedAt = v1alpha1.TrafficToSource, &now
	return outcome{state: v1alpha1.StepSucceeded, message: fmt.Sprintf("traffic back on the old stack: %d field(s) restored", len(changes))}, nil
}

// rollbackScaleDownRelease scales the release's Deployments to 0; level 2 removes them.
func (r *MastodonMigrationReconciler) rollbackScaleDownRelease(ctx context.Context, m *v1alpha1.MastodonMigration) (outcome, error) {
	deployments, err := r.releaseDeployments(ctx, m)
	if err != nil {
		return outcome{}, err
	}
	for _, d := range deployments {
		if err := r.scaleToZero(ctx, d); err != nil {
			return outcome{}, err
		}
	}
	return outcome{state: v1alpha1.StepSucceeded, message: fmt.Sprintf("%d Deployments of release %s scaled to 0",
		len(deployments), m.Spec.Release.Name)}, nil
}

// rollbackUninstall removes the Helm release and what it installed. Helm waits for the objects
// to go, so it runs in the background as the install does.
func (r *MastodonMigrationReconciler) rollbackUninstall(ctx context.Context, m *v1alpha1.MastodonMigration) (outcome, error) {
	a := r.Helm.get(m, actionUninstall)
	if a == nil {
		cfg, err := r.helmConfig(ctx, m.Namespace)
		if err != nil {
			return outcome{}, err
		}
		name, timeout := m.Spec.Release.Name, releaseTimeout(m)
		if rb := m.Status.Rollback; rb.Uninstall == nil {
			// Recorded before anything goes, so that what is deleted, and what is left for a
			// person to delete, is known even if the uninstall dies half-way.
			list, err := helm.PlanUninstall(cfg, name)
			if err != nil {
				return outcome{}, err
			}
			if list != nil {
				rb.Uninstall = uninstallStatus(name, list)
				r.Recorder.Eventf(m, nil, corev1.EventTypeNormal, "Uninstalling", "Rollback", "%s", eventNote(rb.Uninstall.Summary))
			}
		}
		if a, err = r.Helm.start(ctx, m, actionUninstall, func(ctx context.Context) (*release.Release, error) {
			return nil, helm.Uninstall(ctx, cfg, name, timeout)
		}); err != nil {
			return outcome{}, err
		}
	}
	_, ended, err := r.Helm.result(m, a)
	if !ended {
		return outcome{state: v1alpha1.StepRunning, message: fmt.Sprintf("Helm is uninstalling release %s, waiting up to %s for its objects to go",
			m.Spec.Release.Name, releaseTimeout(m))}, nil
	}
	if err != nil {
		return outcome{}, err
	}
	if m.Status.Release != nil {
		m.Status.Release.Status = "uninstalled"
	}
	msg := "release " + m.Spec.Release.Name + " uninstalled"
	if u := m.Status.Rollback.Uninstall; u != nil && len(u.Keeps) > 0 {
		msg += fmt.Sprintf("; %d objects kept, listed in status.rollback.uninstall.keeps", len(u.Keeps))
	}
	return outcome{state: v1alpha1.StepSucceeded, message: msg}, nil
}

// maxUninstallNames is how many objects status.rollback.uninstall lists of each kind of fate
// (its maxItems), and uninstallNamed how many kept ones its summary names.
const (
	maxUninstallNames = 50
	uninstallNamed    = 10
)

// uninstallStatus is the record of what uninstalling the release does: counts first, then the
// kept objects by name, as many as the summary holds; the lists are cut to their limit.
func uninstallStatus(release string, list *helm.UninstallList) *v1alpha1.UninstallStatus {
	summary := fmt.Sprintf("uninstalling release %s deletes %s and keeps %d", release,
		counted(int32(len(list.Deletes)), "object", "objects"), len(list.Keeps))
	if n := len(list.Keeps); n > 0 {
		named := list.Keeps[:min(n, uninstallNamed)]
		summary += ": " + strings.Join(named, ", ")
		if n > len(named) {
			summary += fmt.Sprintf(" and %d more (status.rollback.uninstall.keeps)", n-len(named))
		}
		summary += "; the operator never deletes a kept object"
		if slices.ContainsFunc(list.Keeps, func(key string) bool { return strings.HasPrefix(key, "PersistentVolumeClaim/") }) {
			summary += ": delete the PersistentVolumeClaims by hand once their data is safe elsewhere"
		}
	}
	return &v1alpha1.UninstallStatus{
		Summary: summary,
		Deletes: list.Deletes[:min(len(list.Deletes), maxUninstallNames)],
		Keeps:   list.Keeps[:min(len(list.Keeps), maxUninstallNames)],
	}
}

// rollbackRestore puts every snapshotted object back exactly as it was before the migration:
// Services with their GKE annotations, the Ingress, HPAs, BackendConfig and FrontendConfig.
func (r *MastodonMigrationReconciler) rollbackRestore(ctx context.Context, m *v1alpha1.MastodonMigration) (outcome, error) {
	if m.Status.Adoption != nil {
		waiting, err := r.putBack(ctx, m)
		if err != nil {
			return outcome{}, err
		}
		if len(waiting) > 0 {
			return outcome{state: v1alpha1.StepRunning, message: strings.Join(waiting, "; "), requeueAfter: sourceReadyTimeout(m)}, nil
		}
		// The old Deployments go back under their own names with the snapshot below.
		m.Status.Adoption = nil
	}
	outcomes, err := snapshot.Restore(ctx, r.Client, m.Namespace, snapshotName(m), fieldOwner)
	changed := 0
	for _, o := range outcomes {
		if o.Action != snapshot.Unchanged {
			changed++
		}
	}
	if err != nil {
		return outcome{state: v1alpha1.StepFailed, message: "restoring snapshot " + snapshotName(m) + ": " + err.Error()}, nil
	}
	src, err := r.sourceStack(ctx, m)
	if err != nil {
		return outcome{}, err
	}
	var waiting []string
	for _, d := range src.all() {
		if current, message, err := workload.RolledOut(d); err != nil {
			return outcome{}, err
		} else if !current {
			waiting = append(waiting, d.Name+": "+message)
		}
	}
	if len(waiting) > 0 {
		return outcome{state: v1alpha1.StepRunning, message: "restored; waiting for " + strings.Join(waiting, "; "),
			requeueAfter: sourceReadyTimeout(m)}, nil
	}
	return outcome{state: v1alpha1.StepSucceeded, message: fmt.Sprintf("snapshot %s restored: %d of %d objects changed back",
		snapshotName(m), changed, len(outcomes))}, nil
}

// rollbackStopAll stops everything of both stacks that may write to the database, and waits
// until none of its pods exists, Terminating ones included: the restore must not start while a
// Sidekiq drains its jobs or a Puma its requests. Every Deployment of the old stack and the
// release is scaled to 0. The release's Jobs that have not finished (a hook a canceled install
// left running: db-prepare, db-migrate) are deleted, their pods with them: they are the
// release's, which level 3 uninstalls next anyway (Helm deletes its hooks then), and a hook
// that ran on the rewound database would only have to run again. Finished Jobs run nothing and
// are left to the uninstall. The chart renders no CronJob.
func (r *MastodonMigrationReconciler) rollbackStopAll(ctx context.Context, m *v1alpha1.MastodonMigration) (outcome, error) {
	release, err := r.releaseDeployments(ctx, m)
	if err != nil {
		return outcome{}, err
	}
	src, err := r.sourceStack(ctx, m)
	if err != nil {
		return outcome{}, err
	}
	all := src.all()
	for _, d := range release {
		all = append(all, d)
	}
	for _, d := range all {
		if err := r.scaleToZero(ctx, d); err != nil {
			return outcome{}, err
		}
	}
	jobs, err := r.stopReleaseJobs(ctx, m)
	if err != nil {
		return outcome{}, err
	}
	left, err := r.podsLeft(ctx, m.Namespace, append(selectorsOf(all), jobs...))
	if err != nil {
		return outcome{}, err
	}
	if len(left) > 0 {
		return outcome{state: v1alpha1.StepRunning, requeueAfter: podsGonePoll, message: fmt.Sprintf(
			"waiting for %s to stop before the database is restored: %s", counted(int32(len(left)), "pod", "pods"), podNames(left))}, nil
	}
	msg := fmt.Sprintf("%d Deployments of the old stack and the release scaled to 0", len(all))
	if len(jobs) > 0 {
		names := make([]string, len(jobs))
		for i, j := range jobs {
			names[i] = strings.TrimPrefix(j.owner, "Job ")
		}
		msg += fmt.Sprintf(", %s of release %s deleted (%s)", counted(int32(len(jobs)), "running Job", "running Jobs"),
			m.Spec.Release.Name, preflight.Names(names))
	}
	return outcome{state: v1alpha1.StepSucceeded, message: msg + "; none of their pods is left"}, nil
}

// stopReleaseJobs deletes the release's Jobs that have not finished, with foreground
// propagation: a Job stays until its pods are gone, so its selector still finds them. It returns
// the pod selectors of those Jobs, deleted now or before.
func (r *MastodonMigrationReconciler) stopReleaseJobs(ctx context.Context, m *v1alpha1.MastodonMigration) ([]podSelector, error) {
	var jobs batchv1.JobList
	// From the API server: the operator caches no Jobs (Helm waits on its hooks by itself).
	if err := r.APIReader.List(ctx, &jobs, client.InNamespace(m.Namespace),
		client.MatchingLabels{labelChartInstance: m.Spec.Release.Name}); err != nil {
		return nil, fmt.Errorf("listing the Jobs of release %s: %w", m.Spec.Release.Name, err)
	}
	var out []podSelector
	for i := range jobs.Items {
		j := &jobs.Items[i]
		if jobFinished(j) {
			continue
		}
		if j.DeletionTimestamp == nil {
			if err := r.Delete(ctx, j, client.PropagationPolicy(metav1.DeletePropagationForeground)); client.IgnoreNotFound(err) != nil {
				return nil, fmt.Errorf("deleting Job %s of release %s: %w", j.Name, m.Spec.Release.Name, err)
			}
		}
		out = append(out, podSelector{owner: "Job " + j.Name, selector: j.Spec.Selector})
	}
	return out, nil
}

// jobFinished reports whether a Job has completed or failed for good: it starts no pod again.
func jobFinished(j *batchv1.Job) bool {
	for _, c := range j.Status.Conditions {
		if (c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed) && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

// rollbackCheckInstance lists the databases on the Cloud SQL instance, as they are now: a restore
// of its backup rewinds every one of them. When it holds others than Mastodon's (and Cloud SQL's
// own), level 3 goes on only with spec.rollback.database.cloudSQL.sharedInstance: confirmed.
func (r *MastodonMigrationReconciler) rollbackCheckInstance(ctx context.Context, m *v1alpha1.MastodonMigration) (outcome, error) {
	instance := m.Spec.Rollback.Database.CloudSQL
	if instance == nil {
		return outcome{state: v1alpha1.StepSkipped, message: "no Cloud SQL instance is configured"}, nil
	}
	all, err := r.cloudSQLDatabases(ctx, instance.Project, instance.Instance)
	if err != nil {
		return outcome{}, err
	}
	values, err := r.releaseValues(ctx, m)
	if err != nil {
		return outcome{}, err
	}
	own := preflight.OwnDatabase(values)
	name := instance.Project + "/" + instance.Instance
	others := database.OtherDatabases(all, own)
	switch {
	case len(others) == 0:
		return outcome{state: v1alpha1.StepSucceeded, message: fmt.Sprintf(
			"Cloud SQL instance %s holds no database besides Mastodon's %s and Cloud SQL's own", name, own)}, nil
	case instance.SharedInstance == v1alpha1.SharedInstanceConfirmed:
		return outcome{state: v1alpha1.StepSucceeded, message: fmt.Sprintf(
			"Cloud SQL instance %s is shared with %s: sharedInstance confirmed, the restore rewinds them too", name, preflight.Names(others))}, nil
	}
	return outcome{state: v1alpha1.StepFailed, message: fmt.Sprintf(
		"level 3 refused: Cloud SQL instance %s also holds %s besides Mastodon's %s, and restoring its backup rewinds "+
			"every database on it; nothing was stopped or restored. To restore anyway, set "+
			"spec.rollback.database.cloudSQL.sharedInstance: confirmed", name, preflight.Names(others), own)}, nil
}

// rollbackDatabase restores the pre-migration Cloud SQL backup onto the instance and waits for
// the operation. It only ever runs at level 3, which admission allows only with confirmDataLoss.
func (r *MastodonMigrationReconciler) rollbackDatabase(ctx context.Context, m *v1alpha1.MastodonMigration) (outcome, error) {
	instance, backup := m.Spec.Rollback.Database.CloudSQL, m.Status.DatabaseBackup
	if instance == nil || backup == nil || backup.TakenAt == nil {
		return outcome{state: v1alpha1.StepFailed, message: "no database backup was taken before the migration: there is nothing to restore"}, nil
	}
	db, err := r.CloudSQL(ctx)
	if err != nil {
		return outcome{}, err
	}
	if backup.RestoreOperation == "" {
		op, err := db.StartRestore(ctx, instance.Project, instance.Instance, backup.ID)
		if err != nil {
			return outcome{}, err
		}
		backup.RestoreOperation = op
		r.Recorder.Eventf(m, nil, corev1.EventTypeWarning, "DatabaseRestoreStarted", "Rollback",
			"restoring Cloud SQL backup %s onto %s: writes made since the backup are lost", backup.ID, backup.Instance)
	}
	done, err := db.Operation(ctx, instance.Project, backup.RestoreOperation)
	if err != nil && done {
		return outcome{state: v1alpha1.StepFailed, message: "the database restore failed: " + err.Error()}, nil
	}
	if err != nil {
		return outcome{}, err
	}
	if !done {
		return outcome{state: v1alpha1.StepRunning, message: fmt.Sprintf("restoring Cloud SQL backup %s onto %s (operation %s)",
			backup.ID, backup.Instance, backup.RestoreOperation), requeueAfter: backupPoll}, nil
	}
	return outcome{state: v1alpha1.StepSucceeded, message: fmt.Sprintf("Cloud SQL backup %s restored onto %s", backup.ID, backup.Instance)}, nil
}
