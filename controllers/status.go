package controllers

import (
	"context"
	"fmt"
	"time"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
)

// Condition types. Ready, Reconciling and Stalled follow the Kubernetes API conventions that
// kstatus, Argo CD and Flux read; PreflightPassed is this operator's own.
const (
	ConditionReady           = "Ready"
	ConditionReconciling     = "Reconciling"
	ConditionStalled         = "Stalled"
	ConditionPreflightPassed = "PreflightPassed"
)

// Condition reasons.
const (
	ReasonProgressing      = "Progressing"
	ReasonPaused           = "Paused"
	ReasonRetrying         = "Retrying"
	ReasonPreflightPassed  = "PreflightPassed"
	ReasonPreflightFailed  = "PreflightFailed"
	ReasonCompleted        = "Completed"
	ReasonRolledBack       = "RolledBack"
	ReasonMigrationMissing = "MigrationNotFound"
	ReasonRollbackConflict = "RollbackConflict"
	ReasonNotConfigured    = "DatabaseBackupNotConfigured"
	// ReasonInvalidPlan: a plan's steps do not declare what the engine enforces (a bug).
	ReasonInvalidPlan = "InvalidPlan"
	// ReasonStatusRejected: the API server refused the status the operator wrote.
	ReasonStatusRejected = "StatusRejected"
)

// setCondition records a condition against the generation it describes.
func setCondition(conds *[]metav1.Condition, generation int64, typ string, status bool, reason, message string) {
	s := metav1.ConditionFalse
	if status {
		s = metav1.ConditionTrue
	}
	meta.SetStatusCondition(conds, metav1.Condition{
		Type: typ, Status: s, Reason: reason, Message: message, ObservedGeneration: generation,
	})
}

// setProgress sets the three standard conditions at once, so they never contradict each other:
// reconciling (working towards the spec), stalled (waiting on a person), ready, or paused.
func setProgress(conds *[]metav1.Condition, generation int64, state progress, reason, message string) {
	setCondition(conds, generation, ConditionReady, state == progressReady, reason, message)
	setCondition(conds, generation, ConditionReconciling, state == progressReconciling, reason, message)
	setCondition(conds, generation, ConditionStalled, state == progressStalled, reason, message)
}

// progress is what kstatus (and so Flux, Argo CD, kubectl wait) reads off the three conditions:
// Reconciling=True is InProgress, Stalled=True is Failed, Ready=True is Current.
type progress int

const (
	progressReconciling progress = iota
	progressStalled
	progressReady
	// progressPaused is neither ready nor working nor stuck: Ready=False alone, which kstatus
	// reads as InProgress. A paused migration has not reached its goal, and nothing failed:
	// Current would tell a GitOps tool the migration is done.
	progressPaused
)

// The ends of a migration, phase and conditions together, so that each reads as what it is.

// markCompleted: the release serves the traffic; kstatus reads Current.
func markCompleted(m *v1alpha1.MastodonMigration, message string) {
	m.Status.Phase = v1alpha1.PhaseCompleted
	setProgress(&m.Status.Conditions, m.Generation, progressReady, ReasonCompleted, message)
	m.Status.ObservedGeneration = m.Generation
}

// markRolledBack: the old stack serves the traffic again. The migration asked for did not
// happen, and this one never goes on: Stalled, which kstatus reads as Failed.
func markRolledBack(m *v1alpha1.MastodonMigration, message string) {
	m.Status.Phase = v1alpha1.PhaseRolledBack
	setProgress(&m.Status.Conditions, m.Generation, progressStalled, ReasonRolledBack, message)
	m.Status.ObservedGeneration = m.Generation
}

// markFailed: a step failed in a way only a person can settle, and the migration does not go on
// for this generation; message says what to do. kstatus reads Failed.
func markFailed(m *v1alpha1.MastodonMigration, reason, message string) {
	m.Status.Phase = v1alpha1.PhaseFailed
	setProgress(&m.Status.Conditions, m.Generation, progressStalled, reason, message)
	m.Status.ObservedGeneration = m.Generation
}

// markPaused: spec.paused holds the migration before a step; kstatus reads InProgress.
func markPaused(m *v1alpha1.MastodonMigration, message string) {
	setProgress(&m.Status.Conditions, m.Generation, progressPaused, ReasonPaused, message)
	m.Status.ObservedGeneration = m.Generation
}

// markInvalidPlan: the operator refuses to run a plan whose steps it cannot hold to their
// declarations; nothing but a new operator settles it. kstatus reads Failed.
func markInvalidPlan(m *v1alpha1.MastodonMigration, message string) {
	setProgress(&m.Status.Conditions, m.Generation, progressStalled, ReasonInvalidPlan, message)
	m.Status.ObservedGeneration = m.Generation
}

// The phase and conditions while a plan runs, from the step that runs and how it ended.

// markStarted: a step starts; its phase is the migration's.
func markStarted(m *v1alpha1.MastodonMigration, s step) {
	m.Status.Phase = s.phase
	setProgress(&m.Status.Conditions, m.Generation, progressReconciling, ReasonProgressing, "step "+s.name+" started")
}

// markRetrying: a step got no answer from the world; the operator tries again.
func markRetrying(m *v1alpha1.MastodonMigration, s step, err error) {
	setProgress(&m.Status.Conditions, m.Generation, progressReconciling, ReasonRetrying, fmt.Sprintf("step %s: %v", s.name, err))
}

// markOutcome records what a step's outcome means for the migration, and reports whether the
// plan goes on to the next step.
func markOutcome(m *v1alpha1.MastodonMigration, s step, out outcome) bool {
	switch out.state {
	case v1alpha1.StepSucceeded, v1alpha1.StepSkipped:
		return true
	case v1alpha1.StepFailed:
		switch rb := m.Status.Rollback; {
		case rb != nil && rb.FinishedAt == nil && s.onFailure != stopForPerson:
			// The failure started a rollback, or came during one: the operator acts on, no
			// person is needed, unless the rollback's own step waits for one (level 3 on a
			// shared Cloud SQL instance).
			setProgress(&m.Status.Conditions, m.Generation, progressReconciling, s.name+"Failed", out.message)
		case s.onFailure != retry:
			markFailed(m, s.name+"Failed", out.message)
		default:
			// Stalled until a person changes the world, which the next look sees.
			setProgress(&m.Status.Conditions, m.Generation, progressStalled, s.name+"Failed", out.message)
			m.Status.ObservedGeneration = m.Generation
		}
	default:
		setProgress(&m.Status.Conditions, m.Generation, progressReconciling, ReasonProgressing,
			fmt.Sprintf("step %s: %s", s.name, out.message))
	}
	return false
}

// stepRecord returns the record of a step, adding a Pending one when the step has none yet.
func stepRecord(steps *[]v1alpha1.StepStatus, name string) *v1alpha1.StepStatus {
	for i := range *steps {
		if (*steps)[i].Name == name {
			return &(*steps)[i]
		}
	}
	*steps = append(*steps, v1alpha1.StepStatus{Name: name, State: v1alpha1.StepPending})
	return &(*steps)[len(*steps)-1]
}

// start marks a step Running against a generation; StartedAt keeps the first start, so a resumed
// step still shows how long it has taken in all. A step that ended is started afresh: a failed
// one tried again after a spec change has its whole time-out again.
func start(rec *v1alpha1.StepStatus, generation int64, now metav1.MicroTime) {
	if rec.StartedAt == nil || rec.State == v1alpha1.StepSucceeded || rec.State == v1alpha1.StepFailed {
		rec.StartedAt = &now
	}
	rec.State = v1alpha1.StepRunning
	rec.Generation = generation
	rec.FinishedAt = nil
}

// finish records the outcome of a step.
func finish(rec *v1alpha1.StepStatus, state v1alpha1.StepState, message string, now metav1.MicroTime) {
	rec.State = state
	rec.Message = message
	if state == v1alpha1.StepRunning {
		rec.FinishedAt = nil
		return
	}
	rec.FinishedAt = &now
}

// The API's limits on the strings the operator writes to status (the CRDs' maxLength) and to
// Events. The API server refuses a whole write when one field is too long, so every string is cut
// to its limit before it is written. A condition's message could be 32768 bytes; it is held to a
// step message's, as both are read in kubectl describe.
const (
	maxMessage        = 4096
	maxFindingCheck   = 64
	maxFindingObject  = 512
	maxFindingMessage = 1024
	maxRollbackText   = 2048
	maxProviderText   = 1024
	maxWarnings       = 8
	maxWarningText    = 256
	// maxEventNote is the events API's limit on a note.
	maxEventNote = 1024
)

// truncated marks the end of a string that was cut, saying how much is missing.
const truncated = "… (%d more bytes)"

// truncate cuts s to at most max bytes, at a rune boundary, ending with a marker that says how
// many bytes were cut.
func truncate(s string, max int) string {
	if len(s) <= max {
		return s
	}
	// The marker is longest with the most digits, and len(s) has at least as many as the count.
	cut := max - len(fmt.Sprintf(truncated, len(s)))
	if cut < 0 {
		cut = 0
	}
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + fmt.Sprintf(truncated, len(s)-cut)
}

// eventNote cuts a message to what the events API accepts; the full text stays in status.
func eventNote(msg string) string { return truncate(msg, maxEventNote) }

// boundMigrationStatus cuts every string of a migration's status to its limit, just before the
// status is written, wherever the string was set.
func boundMigrationStatus(st *v1alpha1.MastodonMigrationStatus) {
	boundSteps(st.Steps)
	boundConditions(st.Conditions)
	for i := range st.Preflight {
		f := &st.Preflight[i]
		f.Check = truncate(f.Check, maxFindingCheck)
		f.Object = truncate(f.Object, maxFindingObject)
		f.Message = truncate(f.Message, maxFindingMessage)
	}
	if rb := st.Rollback; rb != nil {
		rb.Reason = truncate(rb.Reason, maxRollbackText)
		rb.Result = truncate(rb.Result, maxRollbackText)
		if u := rb.Uninstall; u != nil {
			u.Summary = truncate(u.Summary, maxRollbackText)
			for _, names := range [][]string{u.Deletes, u.Keeps} {
				for i := range names {
					names[i] = truncate(names[i], maxFindingObject)
				}
			}
		}
	}
	if a := st.Analysis; a != nil {
		for i := range a.Providers {
			a.Providers[i].Message = truncate(a.Providers[i].Message, maxProviderText)
		}
		if len(a.Warnings) > maxWarnings {
			a.Warnings = a.Warnings[:maxWarnings]
		}
		for i := range a.Warnings {
			a.Warnings[i] = truncate(a.Warnings[i], maxWarningText)
		}
	}
}

// boundRollbackStatus cuts every string of a MastodonRollback's status to its limit.
func boundRollbackStatus(st *v1alpha1.MastodonRollbackStatus) {
	boundSteps(st.Steps)
	boundConditions(st.Conditions)
}

func boundSteps(steps []v1alpha1.StepStatus) {
	for i := range steps {
		steps[i].Message = truncate(steps[i].Message, maxMessage)
	}
}

func boundConditions(conds []metav1.Condition) {
	for i := range conds {
		conds[i].Message = truncate(conds[i].Message, maxMessage)
	}
}

// stepStartedAt returns when a step first started, or nil.
func stepStartedAt(m *v1alpha1.MastodonMigration, name string) *metav1.MicroTime {
	for _, s := range m.Status.Steps {
		if s.Name == name {
			return s.StartedAt
		}
	}
	return nil
}

// statusRejectedRetry is when a reconcile whose status write the API server refused runs again.
// The same write would be refused again: retrying it at the workqueue's backoff only loads the
// API server, and a person has to look anyway.
const statusRejectedRetry = 10 * time.Minute

// patchStatus writes obj's status if it differs from base's, once, at the end of a reconcile,
// and returns what the reconcile returns, and whether obj's status, as it is on return, is now
// the one stored (what metrics and notifications may then report). The optimistic lock keeps it from overwriting what the
// other controller wrote meanwhile (a rollback recorded on a migration); a conflict is retried by
// the workqueue.
//
// A write the API server refuses as invalid would be refused on every retry, and status would
// show nothing of it. patchStatus then writes instead the status that reject makes (the last one
// accepted, with Stalled saying why), warns in an Event, and tries again only after
// statusRejectedRetry.
func patchStatus(ctx context.Context, c client.Client, recorder events.EventRecorder, obj, base client.Object,
	changed bool, reject func(message string), result ctrl.Result, retErr error) (ctrl.Result, bool, error) {
	if !changed {
		return result, false, retErr
	}
	err := c.Status().Patch(ctx, obj, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{}))
	switch {
	case err == nil || apierrors.IsNotFound(err):
		return result, err == nil, retErr
	case !apierrors.IsInvalid(err):
		return ctrl.Result{}, false, kerrors.NewAggregate([]error{retErr, fmt.Errorf("patching status: %w", err)})
	}
	logger := log.FromContext(ctx)
	logger.Error(err, "the API server refused the status write; writing the last accepted status with Stalled=True",
		"reconcileError", retErr)
	// Summary first, then the API server's cause, cut so that the message fits a condition.
	msg := fmt.Sprintf("the API server refused the operator's status write: this is the last status it accepted, "+
		"tried again in %s or on a spec change; its cause: %s", statusRejectedRetry, truncate(err.Error(), maxFindingMessage))
	reject(msg)
	recorder.Eventf(obj, nil, corev1.EventTypeWarning, ReasonStatusRejected, "WriteStatus", "%s", eventNote(msg))
	err = c.Status().Patch(ctx, obj, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{}))
	if err != nil && !apierrors.IsNotFound(err) {
		logger.Error(err, "the API server refused the shortened status too")
	}
	return ctrl.Result{RequeueAfter: statusRejectedRetry}, err == nil, nil
}
