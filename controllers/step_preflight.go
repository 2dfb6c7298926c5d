package controllers

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
	"github.com/mastodon-operator/mastodon-operator/internal/preflight"
)

// preflightRecheck re-runs a failed checklist now and then, for what no watch sees (the chart
// repository).
const preflightRecheck = time.Minute

// preflight runs the pre-migration checklist. It only reads, so running it twice is harmless.
func (r *MastodonMigrationReconciler) preflight(ctx context.Context, m *v1alpha1.MastodonMigration) (outcome, error) {
	in := preflight.Input{Client: r.Client, Writer: r.Client, Migration: m, Charts: r.Charts,
		Values:    func(ctx context.Context) (map[string]any, error) { return r.previewValues(ctx, m) },
		SecretEnv: func(ctx context.Context) ([]v1alpha1.SecretEnvVar, error) { return r.previewSecretEnv(ctx, m) }}
	findings, err := preflight.Run(ctx, in, preflight.Checklist())
	if err != nil {
		return outcome{}, err
	}
	m.Status.Preflight = findings
	if len(findings) == 0 {
		setCondition(&m.Status.Conditions, m.Generation, ConditionPreflightPassed, true, ReasonPreflightPassed,
			"every pre-migration check passed")
		return outcome{state: v1alpha1.StepSucceeded, message: "every pre-migration check passed"}, nil
	}
	// One message for all findings: the events API folds events of the same reason into one
	// series and would keep only the first finding's note.
	summary := summarize(findings)
	setCondition(&m.Status.Conditions, m.Generation, ConditionPreflightPassed, false, ReasonPreflightFailed, summary)
	return outcome{state: v1alpha1.StepFailed, message: summary, requeueAfter: preflightRecheck}, nil
}

func summarize(findings []v1alpha1.Finding) string {
	msgs := make([]string, len(findings))
	for i, f := range findings {
		msgs[i] = f.Message
	}
	return fmt.Sprintf("%d pre-migration check(s) failed: %s", len(findings), strings.Join(msgs, "; "))
}
