package controllers

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
	"github.com/mastodon-operator/mastodon-operator/internal/helm"
	"github.com/mastodon-operator/mastodon-operator/internal/preflight"
	"github.com/mastodon-operator/mastodon-operator/internal/traffic"
)

// Preview is what a migration would do if it started now, computed by the controller's own
// steps without writing anything (kubectl mastodon plan).
type Preview struct {
	// Values are the release's values, as GenerateValues and the install would compute them.
	Values map[string]any
	// SecretEnv are the variables the operator would add from Secret keys (names and keys only).
	SecretEnv []v1alpha1.SecretEnvVar
	// Findings are preflight's, most serious first, all of them; Summary counts them.
	Findings []v1alpha1.Finding
	Summary  v1alpha1.PreflightSummary
	// Manifests are the release as the install would create it; nil when the chart cannot be
	// rendered (RenderError says why, and preflight's ReleaseRenders finding too).
	Manifests   *helm.Manifests
	RenderError string
	// TrafficChanges are what the switch would change on the live Services or Ingress;
	// TrafficProblems what would stop it.
	TrafficChanges  []traffic.Change
	TrafficProblems []traffic.Problem
}

// PreviewMigration runs preflight, the values generation, the chart's rendering and the traffic
// planner for m against the cluster c reads, as the Preflight, GenerateValues, Install and
// ShiftTraffic steps would. It changes nothing: preflight only reads, and its server-side
// dry-run creates (client.DryRunAll) store nothing. charts nil loads charts without a cache.
func PreviewMigration(ctx context.Context, c client.Client, charts preflight.ChartSource, m *v1alpha1.MastodonMigration) (*Preview, error) {
	if charts == nil {
		charts = chartSource{}
	}
	r := &MastodonMigrationReconciler{Client: c, APIReader: c, Charts: charts}
	in := preflight.Input{Client: c, Writer: c, Migration: m, Charts: charts,
		Values:    func(ctx context.Context) (map[string]any, error) { return r.previewValues(ctx, m) },
		SecretEnv: func(ctx context.Context) ([]v1alpha1.SecretEnvVar, error) { return r.previewSecretEnv(ctx, m) }}
	findings, err := preflight.Run(ctx, in, preflight.Checklist())
	if err != nil {
		return nil, fmt.Errorf("preflight: %w", err)
	}
	sortFindings(findings)
	p := &Preview{Findings: findings, Summary: summarizeFindings(findings)}
	p.Summary.Omitted = 0 // the preview lists them all
	src, err := r.sourceStack(ctx, m)
	if err != nil {
		// Preflight's SourceDeployments names the missing Deployment: nothing more to show.
		p.RenderError = err.Error()
		return p, nil
	}
	if p.Values, err = r.previewValues(ctx, m); err != nil {
		p.RenderError = err.Error()
		return p, nil
	}
	if p.SecretEnv, err = r.previewSecretEnv(ctx, m); err != nil {
		p.RenderError = err.Error()
		return p, nil
	}
	ref := m.Spec.Release.Chart
	chrt, err := charts.LoadChart(ctx, helm.ChartRef{Repository: ref.Repository, Name: ref.Name, Version: ref.Version})
	if err != nil {
		p.RenderError = err.Error()
		return p, nil
	}
	if p.Manifests, err = helm.Render(chrt, p.Values, m.Spec.Release.Name, m.Namespace, helm.WithSecretEnv(p.SecretEnv)); err != nil {
		p.RenderError = err.Error()
		return p, nil
	}
	p.TrafficChanges, p.TrafficProblems, err = r.previewSwitch(ctx, m, src, p.Manifests)
	return p, err
}

// previewSwitch plans the switch from the live Services and Ingress to the rendered release, as
// planSwitch does from the snapshot to the installed release.
func (r *MastodonMigrationReconciler) previewSwitch(ctx context.Context, m *v1alpha1.MastodonMigration, src sourceStack,
	manifests *helm.Manifests) ([]traffic.Change, []traffic.Problem, error) {
	switcher, err := traffic.For(string(m.Spec.Traffic.Method))
	if err != nil {
		return nil, []traffic.Problem{{Object: "spec.traffic.method", Message: err.Error()}}, nil
	}
	services, err := r.sourceServices(ctx, m, src)
	if err != nil {
		return nil, nil, err
	}
	stack := traffic.Stack{Source: src.byComponent(), Services: services}
	if name := m.Spec.Source.Ingress; name != "" {
		stack.Ingress = &networkingv1.Ingress{}
		if err := r.Get(ctx, client.ObjectKey{Namespace: m.Namespace, Name: name}, stack.Ingress); err != nil {
			return nil, nil, fmt.Errorf("reading Ingress %s: %w", name, err)
		}
	}
	for _, u := range manifests.Resources {
		if u.GetKind() != "Service" {
			continue
		}
		var s corev1.Service
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &s); err != nil {
			return nil, nil, err
		}
		stack.TargetServices = append(stack.TargetServices, s)
	}
	deployments, err := manifests.Deployments()
	if err != nil {
		return nil, nil, err
	}
	to, problems := traffic.ReleaseTargets(deployments, stack.TargetServices)
	changes, more := switcher.Plan(stack, to)
	return changes, append(problems, more...), nil
}
