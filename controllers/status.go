package controllers

import (
	"context"
	"fmt"
	"unicode/utf8"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

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
// reconciling (working towards the spec), stalled (waiting on a person), or ready.
func setProgress(conds *[]metav1.Condition, generation int64, state progress, reason, message string) {
	setCondition(conds, generation, ConditionReady, state == progressReady, reason, message)
	setCondition(conds, generation, ConditionReconciling, state == progressReconciling, reason, message)
	setCondition(conds, generation, ConditionStalled, state == progressStalled, reason, message)
}

type progress int

const (
	progressReconciling progress = iota
	progressStalled
	progressReady
	// progressIdle is neither ready nor working nor stuck: paused, or rolled back.
	progressIdle
)

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
// step still shows how long it has taken in all.
func start(rec *v1alpha1.StepStatus, generation int64, now metav1.MicroTime) {
	if rec.StartedAt == nil || rec.State == v1alpha1.StepSucceeded {
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

// maxEventNote is the events API's limit on a note.
const maxEventNote = 1024

// eventNote cuts a message to what the events API accepts; the full text stays in status.
func eventNote(msg string) string {
	if len(msg) <= maxEventNote {
		return msg
	}
	cut := maxEventNote - len("…")
	for cut > 0 && !utf8.RuneStart(msg[cut]) {
		cut--
	}
	return msg[:cut] + "…"
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

// patchStatus writes obj's status if it differs from base's, once, at the end of a reconcile.
// The optimistic lock keeps it from overwriting what the other controller wrote meanwhile (a
// rollback recorded on a migration); a conflict is retried by the workqueue.
func patchStatus(ctx context.Context, c client.Client, obj client.Object, base client.Object, changed bool) error {
	if !changed {
		return nil
	}
	err := c.Status().Patch(ctx, obj, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{}))
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("patching status: %w", err)
	}
	return nil
}
