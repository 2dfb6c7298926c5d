package controllers

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
	"github.com/mastodon-operator/mastodon-operator/internal/preflight"
)

// preflightRecheck re-runs a failed checklist now and then, for what no watch sees (the chart
// repository).
const preflightRecheck = time.Minute

// preflight runs the pre-migration checklist. It only reads, so running it twice is harmless.
func (r *MastodonMigrationReconciler) preflight(ctx context.Context, m *v1alpha1.MastodonMigration) (outcome, error) {
	findings, err := preflight.Run(ctx, preflight.Input{Client: r.Client, Migration: m, Charts: r.Charts}, preflight.Checklist())
	if err != nil {
		return outcome{}, err
	}
	changed := !slices.Equal(m.Status.Preflight, findings)
	m.Status.Preflight = findings
	if len(findings) == 0 {
		setCondition(&m.Status.Conditions, m.Generation, ConditionPreflightPassed, true, ReasonPreflightPassed,
			"every pre-migration check passed")
		if changed || !stepSucceeded(m, StepPreflight) {
			r.Recorder.Eventf(m, nil, corev1.EventTypeNormal, ReasonPreflightPassed, StepPreflight,
				"every pre-migration check passed")
		}
		return outcome{state: v1alpha1.StepSucceeded, message: "every pre-migration check passed"}, nil
	}
	summary := summarize(findings)
	setCondition(&m.Status.Conditions, m.Generation, ConditionPreflightPassed, false, ReasonPreflightFailed, summary)
	if changed {
		// One event per outcome: the events API folds events of the same reason into one series
		// and would keep only the first finding's note.
		r.Recorder.Eventf(m, nil, corev1.EventTypeWarning, ReasonPreflightFailed, StepPreflight, "%s", eventNote(summary))
	}
	return outcome{state: v1alpha1.StepFailed, message: summary, requeueAfter: preflightRecheck}, nil
}

func summarize(findings []v1alpha1.Finding) string {
	msgs := make([]string, len(findings))
	for i, f := range findings {
		msgs[i] = f.Message
	}
	return fmt.Sprintf("%d pre-migration check(s) failed: %s", len(findings), strings.Join(msgs, "; "))
}

func stepSucceeded(m *v1alpha1.MastodonMigration, name string) bool {
	for _, s := range m.Status.Steps {
		if s.Name == name {
			return s.State == v1alpha1.StepSucceeded
		}
	}
	return false
}
