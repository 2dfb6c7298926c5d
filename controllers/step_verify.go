package controllers

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
	"github.com/mastodon-operator/mastodon-operator/internal/workload"
)

// verify waits until every Deployment of the release has rolled out: each pod passed its
// readiness probe (/health for web, /api/v1/streaming/health for streaming). Deployment watches
// wake it; the release timeout bounds it (its step's limit), as the runbook's "roll back if the new pods are not up
// within 10 minutes". Where the operator reaches Services (in the cluster), it then asks the
// release's web and streaming Services for their health too, through the Service as the
// Ingress will.
func (r *MastodonMigrationReconciler) verify(ctx context.Context, m *v1alpha1.MastodonMigration) (outcome, error) {
	deployments, err := r.releaseDeployments(ctx, m)
	if err != nil {
		return outcome{}, err
	}
	for _, want := range []string{"web", "streaming"} {
		if deployments[want] == nil {
			return outcome{state: v1alpha1.StepFailed, message: fmt.Sprintf(
				"release %s has no %s Deployment (label %s=%s, %s=%s)", m.Spec.Release.Name, want,
				labelChartInstance, m.Spec.Release.Name, labelChartPart, want) + verifyStops(m)}, nil
		}
	}
	waiting := notRolledOut(deployments)
	if len(waiting) > 0 {
		return outcome{state: v1alpha1.StepRunning, message: "waiting for " + strings.Join(waiting, "; ")}, nil
	}
	ready := fmt.Sprintf("%d Deployments of release %s rolled out and ready", len(deployments), m.Spec.Release.Name)
	if r.ServiceAddress == nil {
		return outcome{state: v1alpha1.StepSucceeded, message: ready +
			"; HTTP health not checked: the operator runs outside the cluster, so the pods' readiness probes stand for it"}, nil
	}
	checked, err := r.checkHealth(ctx, m)
	if err != nil {
		msg := ready + "; " + err.Error()
		if started := stepStartedAt(m, StepVerify); started != nil && time.Since(started.Time) > healthAttempts*healthRetry {
			return outcome{state: v1alpha1.StepFailed, message: fmt.Sprintf("%s, still after %s", msg, healthAttempts*healthRetry) + verifyStops(m)}, nil
		}
		return outcome{state: v1alpha1.StepRunning, message: msg, requeueAfter: healthRetry}, nil
	}
	return outcome{state: v1alpha1.StepSucceeded, message: ready + "; healthy: " + strings.Join(checked, ", ")}, nil
}

// verifyStops ends the message of a failed Verify with what on-call can do: the migration does
// not go on by itself, even if the release turns healthy later.
func verifyStops(m *v1alpha1.MastodonMigration) string {
	return "; the migration stops here: roll back with `" + rollbackCommand(m) +
		"`, or fix the release and change the spec (for instance raise spec.release.timeout) to verify again"
}

// The runbook checks the health endpoints 30 times, 10 s apart.
const (
	healthAttempts = 30
	healthRetry    = 10 * time.Second
)

// healthPaths are the health endpoints of the release's Services, by component.
var healthPaths = map[string]string{"web": "/health", "streaming": "/api/v1/streaming/health"}

// checkHealth asks the release's web and streaming Services for their health, as the runbook's
// curl does, and returns the URLs that answered 200.
func (r *MastodonMigrationReconciler) checkHealth(ctx context.Context, m *v1alpha1.MastodonMigration) ([]string, error) {
	var services corev1.ServiceList
	if err := r.List(ctx, &services, client.InNamespace(m.Namespace),
		client.MatchingLabels{labelChartInstance: m.Spec.Release.Name}); err != nil {
		return nil, err
	}
	var checked []string
	for _, svc := range services.Items {
		// The official chart names a Service's component in its selector, not its labels.
		path, ok := healthPaths[svc.Spec.Selector[labelChartPart]]
		if !ok || len(svc.Spec.Ports) == 0 {
			continue
		}
		url := "http://" + r.ServiceAddress(svc.Namespace, svc.Name, svc.Spec.Ports[0].Port) + path
		if err := getOK(ctx, url); err != nil {
			return nil, fmt.Errorf("Service %s is not healthy: %w", svc.Name, err)
		}
		checked = append(checked, url)
	}
	if len(checked) < len(healthPaths) {
		return nil, fmt.Errorf("release %s has no web and streaming Services to check (selector %s)", m.Spec.Release.Name, labelChartPart)
	}
	sort.Strings(checked)
	return checked, nil
}

func getOK(ctx context.Context, url string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
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
