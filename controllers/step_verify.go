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
	"github.com/mastodon-operator/mastodon-operator/internal/mastodonhealth"
	"github.com/mastodon-operator/mastodon-operator/internal/workload"
)

// verify waits until every Deployment of the release has rolled out: each pod passed its
// readiness probe (/health for web, /api/v1/streaming/health for streaming). Deployment watches
// wake it; the release timeout bounds it (its step's limit), as the runbook's "roll back if the new pods are not up
// within 10 minutes". Where the operator reaches Services (in the cluster), it then asks the
// release's web and streaming Services, through the Service as the Ingress will, for what
// proves the stack works (see checkHealth): a readiness probe does not.
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
	checked, err := r.checkHealth(ctx, m, deployments["web"])
	if err != nil {
		// The summary first: what did not answer; the Deployments' state after it.
		msg := err.Error() + "; " + ready
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

// healthTimeout bounds each health request.
const healthTimeout = 5 * time.Second

// healthChecks is spec.healthChecks with the defaults filled in, for objects the API server has
// not defaulted (created before the field existed).
func healthChecks(m *v1alpha1.MastodonMigration) v1alpha1.HealthChecksSpec {
	hc := m.Spec.HealthChecks
	for field, def := range map[*string]string{&hc.WebHealthPath: "/health", &hc.StreamingHealthPath: "/api/v1/streaming/health",
		&hc.InstancePath: "/api/v2/instance", &hc.StreamingPath: "/api/v1/streaming"} {
		if *field == "" {
			*field = def
		}
	}
	return hc
}

// checkHealth asks the release's Services what proves the stack works, and returns what
// answered. /health and the streaming health path answer OK even when the database is down, so
// web must also answer the instance API with the version that web runs (which also tells that
// the new stack answered, not the old one), and streaming must upgrade a WebSocket.
func (r *MastodonMigrationReconciler) checkHealth(ctx context.Context, m *v1alpha1.MastodonMigration, web *appsv1.Deployment) ([]string, error) {
	hc := healthChecks(m)
	token, err := r.secretValue(ctx, m.Namespace, hc.AccessTokenSecretRef)
	if err != nil {
		return nil, fmt.Errorf("spec.healthChecks.accessTokenSecretRef: %w", err)
	}
	var services corev1.ServiceList
	if err := r.List(ctx, &services, client.InNamespace(m.Namespace),
		client.MatchingLabels{labelChartInstance: m.Spec.Release.Name}); err != nil {
		return nil, err
	}
	want, unknown := stackVersion(web)
	checked := map[string][]string{}
	for _, svc := range services.Items {
		// The official chart names a Service's component in its selector, not its labels.
		component := svc.Spec.Selector[labelChartPart]
		if (component != "web" && component != "streaming") || len(svc.Spec.Ports) == 0 {
			continue
		}
		base := "http://" + r.ServiceAddress(svc.Namespace, svc.Name, svc.Spec.Ports[0].Port)
		fail := func(err error) ([]string, error) {
			return nil, fmt.Errorf("Service %s is not healthy: %w", svc.Name, err)
		}
		if component == "web" {
			if err := getOK(ctx, base+hc.WebHealthPath); err != nil {
				return fail(err)
			}
			reqCtx, cancel := context.WithTimeout(ctx, healthTimeout)
			got, err := mastodonhealth.Instance(reqCtx, nil, base+hc.InstancePath, token, want)
			cancel()
			if err != nil {
				return fail(err)
			}
			instance := fmt.Sprintf("%s%s (version %s)", base, hc.InstancePath, got)
			if want == "" {
				instance = fmt.Sprintf("%s%s (version %s, not compared: %s)", base, hc.InstancePath, got, unknown)
			}
			checked[component] = []string{base + hc.WebHealthPath, instance}
		} else {
			if err := getOK(ctx, base+hc.StreamingHealthPath); err != nil {
				return fail(err)
			}
			reqCtx, cancel := context.WithTimeout(ctx, healthTimeout)
			err := mastodonhealth.Streaming(reqCtx, base+hc.StreamingPath, token)
			cancel()
			if err != nil {
				return fail(err)
			}
			checked[component] = []string{base + hc.StreamingHealthPath, "WebSocket " + base + hc.StreamingPath}
		}
	}
	if len(checked) < 2 {
		return nil, fmt.Errorf("release %s has no web and streaming Services to check (selector %s)", m.Spec.Release.Name, labelChartPart)
	}
	return append(checked["web"], checked["streaming"]...), nil
}

// stackVersion is the Mastodon version a stack's web Deployment runs, from the image tag of its
// first container, Mastodon's (the chart tags with its appVersion unless image.tag is set).
// When the tag names no version (nightly, latest, a digest), version is empty and unknown says
// why.
func stackVersion(web *appsv1.Deployment) (version, unknown string) {
	if web == nil || len(web.Spec.Template.Spec.Containers) == 0 {
		return "", "no web Deployment"
	}
	image := web.Spec.Template.Spec.Containers[0].Image
	if v, ok := mastodonhealth.ImageVersion(image); ok {
		return v, ""
	}
	return "", "image " + image + " names no version"
}

func getOK(ctx context.Context, url string) error {
	ctx, cancel := context.WithTimeout(ctx, healthTimeout)
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
