package controllers

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
	"github.com/mastodon-operator/mastodon-operator/internal/workload"
)

// verify waits until every Deployment of the release has rolled out: each pod passed its
// readiness probe (/health for web, /api/v1/streaming/health for streaming). Deployment watches
// wake it; the release timeout bounds it, as the runbook's "roll back if the new pods are not up
// within 10 minutes".
func (r *MastodonMigrationReconciler) verify(ctx context.Context, m *v1alpha1.MastodonMigration) (outcome, error) {
	deployments, err := r.releaseDeployments(ctx, m)
	if err != nil {
		return outcome{}, err
	}
	for _, want := range []string{"web", "streaming"} {
		if deployments[want] == nil {
			return outcome{state: v1alpha1.StepFailed, message: fmt.Sprintf(
				"release %s has no %s Deployment (label %s=%s, %s=%s)", m.Spec.Release.Name, want,
				labelChartInstance, m.Spec.Release.Name, labelChartPart, want)}, nil
		}
	}
	waiting := notRolledOut(deployments)
	if len(waiting) == 0 {
		return outcome{state: v1alpha1.StepSucceeded, message: fmt.Sprintf("%d Deployments of release %s rolled out and ready",
			len(deployments), m.Spec.Release.Name)}, nil
	}
	msg := "waiting for " + strings.Join(waiting, "; ")
	if started := stepStartedAt(m, StepVerify); started != nil && time.Since(started.Time) > releaseTimeout(m) {
		return outcome{state: v1alpha1.StepFailed, message: fmt.Sprintf("not ready within %s: %s", releaseTimeout(m), msg)}, nil
	}
	return outcome{state: v1alpha1.StepRunning, message: msg, requeueAfter: releaseTimeout(m)}, nil
}

// notRolledOut describes each Deployment that kstatus does not call Current, in a stable order.
func notRolledOut(deployments map[string]*appsv1.Deployment) []string {
	var waiting []string
	for _, d := range deployments {
		current, message, err := workload.RolledOut(d)
		if err != nil {
			waiting = append(waiting, fmt.Sprintf("%s: %v", d.Name, err))
		} else if !current {
			waiting = append(waiting, fmt.Sprintf("%s: %s", d.Name, message))
		}
	}
	sort.Strings(waiting)
	return waiting
}
