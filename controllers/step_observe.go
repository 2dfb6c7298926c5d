package controllers

import (
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
)

// Verdicts of the analysis.
const (
	VerdictPass      = "Pass"
	VerdictUnhealthy = "Unhealthy"
)

func analysisWindow(m *v1alpha1.MastodonMigration) time.Duration {
	if w := m.Spec.Analysis.Window; w != nil {
		return w.Duration
	}
	return 30 * time.Minute
}

func analysisInterval(m *v1alpha1.MastodonMigration) time.Duration {
	if i := m.Spec.Analysis.Interval; i != nil {
		return i.Duration
	}
	return 30 * time.Second
}

// observe watches the release for analysis.window after it took the traffic: every Deployment
// of the release must stay rolled out and ready. It looks again at each interval, and at once
// when a Deployment changes.
func (r *MastodonMigrationReconciler) observe(ctx context.Context, m *v1alpha1.MastodonMigration) (outcome, error) {
	if m.Status.Traffic == nil || m.Status.Traffic.SwitchedAt == nil {
		return outcome{}, fmt.Errorf("no traffic switch recorded in status.traffic")
	}
	deployments, err := r.releaseDeployments(ctx, m)
	if err != nil {
		return outcome{}, err
	}
	now := metav1.Now()
	waiting := notRolledOut(deployments)
	analysis := &v1alpha1.AnalysisStatus{Verdict: VerdictPass, LastMeasuredAt: &now}
	if len(waiting) > 0 {
		analysis.Verdict = VerdictUnhealthy
		analysis.UnhealthySince = &now
		if prev := m.Status.Analysis; prev != nil && prev.UnhealthySince != nil {
			analysis.UnhealthySince = prev.UnhealthySince
		}
	}
	m.Status.Analysis = analysis
	if analysis.Verdict == VerdictUnhealthy {
		msg := "the new stack is not ready: " + strings.Join(waiting, "; ")
		// A rollout passes through not-ready states for moments (a scale, an HPA): act only
		// once it has lasted an interval.
		if lasted := now.Sub(analysis.UnhealthySince.Time); lasted < analysisInterval(m) {
			return outcome{state: v1alpha1.StepRunning, message: fmt.Sprintf("%s (for %s; acting after %s)",
				msg, lasted.Round(time.Second), analysisInterval(m)), requeueAfter: analysisInterval(m) - lasted}, nil
		}
		msg = fmt.Sprintf("%s, for %s", msg, now.Sub(analysis.UnhealthySince.Time).Round(time.Second))
		if !automaticRollback(m) {
			return outcome{state: v1alpha1.StepFailed, message: msg + ": set spec.rollbackLevel to 1 to move the traffic back"}, nil
		}
		// Level 1 is the rollback the runbook takes at once: the old stack still runs until the
		// window ends, so only the traffic moves.
		m.Status.Rollback = &v1alpha1.RollbackStatus{Level: 1, Trigger: TriggerAutomatic, Reason: msg, StartedAt: &now}
		r.Recorder.Eventf(m, nil, corev1.EventTypeWarning, "AutomaticRollback", "Rollback", "%s", eventNote(msg+": rolling back at level 1"))
		return outcome{state: v1alpha1.StepFailed, message: msg + ": rolled back automatically at level 1",
			requeueAfter: recordFirst}, nil
	}
	window := analysisWindow(m)
	elapsed := now.Sub(m.Status.Traffic.SwitchedAt.Time)
	if elapsed >= window {
		return outcome{state: v1alpha1.StepSucceeded, message: fmt.Sprintf(
			"watched for %s after the switch: every Deployment of the release stayed ready", window)}, nil
	}
	return outcome{state: v1alpha1.StepRunning, message: fmt.Sprintf("watching the new stack: %s of %s",
		elapsed.Round(time.Second), window), requeueAfter: min(analysisInterval(m), window-elapsed)}, nil
}

// automaticRollback reports whether the operator may roll back by itself (spec.rollback.automatic,
// default true; maxAutomaticLevel is at least 1 by validation).
func automaticRollback(m *v1alpha1.MastodonMigration) bool {
	return m.Spec.Rollback.Automatic == nil || *m.Spec.Rollback.Automatic
}
