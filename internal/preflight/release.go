package preflight

import (
	"context"
	"slices"
	"strings"

	"helm.sh/helm/v3/pkg/chart"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
	"github.com/mastodon-operator/mastodon-operator/internal/helm"
)

// onceCharts loads each chart at most once, so that the Chart rule and the release rules of one
// Run share a download.
type onceCharts struct {
	ChartSource
	loaded map[helm.ChartRef]chartResult
}

type chartResult struct {
	chart *chart.Chart
	err   error
}

func (o *onceCharts) LoadChart(ctx context.Context, ref helm.ChartRef) (*chart.Chart, error) {
	if r, ok := o.loaded[ref]; ok {
		return r.chart, r.err
	}
	c, err := o.ChartSource.LoadChart(ctx, ref)
	if o.loaded == nil {
		o.loaded = map[helm.ChartRef]chartResult{}
	}
	o.loaded[ref] = chartResult{c, err}
	return c, err
}

// releasePreview is the release as an install would create it, computed on first use.
type releasePreview struct {
	done bool
	// manifests are the rendered objects; nil when there is nothing to check (no Values, the
	// chart did not load, or the render failed).
	manifests *helm.Manifests
	// chart is the chart rendered, with its default values.
	chart *chart.Chart
	// values are the values it was rendered with.
	values map[string]any
	// secretEnv is what the operator added to the render: spec.release.secretEnv and the
	// generated variables.
	secretEnv []v1alpha1.SecretEnvVar
	// problem is ReleaseRenders' finding: the values or the render failed.
	problem *v1alpha1.Finding
}

// release returns the rendered release, rendering it on first use. It returns nil manifests
// when the release rules have nothing to look at: Values is nil, the chart does not load (the
// Chart rule reports that), or the values or the render failed (ReleaseRenders reports that).
func (in Input) release(ctx context.Context) *releasePreview {
	p := in.preview
	if p == nil {
		p = &releasePreview{}
	}
	if p.done {
		return p
	}
	p.done = true
	if in.Values == nil || in.Charts == nil {
		return p
	}
	ref := in.Migration.Spec.Release.Chart
	chrt, err := in.Charts.LoadChart(ctx, helm.ChartRef{Repository: ref.Repository, Name: ref.Name, Version: ref.Version})
	if err != nil {
		return p
	}
	object := "Release/" + in.Migration.Spec.Release.Name
	vals, err := in.Values(ctx)
	if err != nil {
		f := finding(object, "the chart values cannot be worked out: %v: check spec.release.values and spec.release.valuesFrom", err)
		p.problem = &f
		return p
	}
	var secretEnv []v1alpha1.SecretEnvVar
	if in.SecretEnv != nil {
		if secretEnv, err = in.SecretEnv(ctx); err != nil {
			f := finding(object, "the variables the operator adds from Secrets cannot be worked out: %v: check spec.release.secretEnv", err)
			p.problem = &f
			return p
		}
	}
	m, err := helm.Render(chrt, vals, in.Migration.Spec.Release.Name, in.Migration.Namespace, helm.WithSecretEnv(secretEnv))
	if err != nil {
		f := finding(object, "%v: set it in spec.release.values", renderMessage(err))
		p.problem = &f
		return p
	}
	p.manifests, p.chart, p.values, p.secretEnv = m, chrt, vals, secretEnv
	return p
}

// renderMessage keeps the part of a render error that says what is wrong: Helm's `required`
// message ("postgresql.hostname is required") comes last, after the template's position.
func renderMessage(err error) string {
	return strings.TrimSpace(err.Error())
}

// releaseRenders checks that the chart renders with the release's values: a `required` value
// left empty, a template error or values that cannot be read are one finding.
func releaseRenders(ctx context.Context, in Input) ([]v1alpha1.Finding, error) {
	if p := in.release(ctx); p.problem != nil {
		return []v1alpha1.Finding{*p.problem}, nil
	}
	return nil, nil
}

// allObjects lists the rendered resources and then the hooks.
func allObjects(m *helm.Manifests) []*unstructured.Unstructured {
	return slices.Concat(m.Resources, m.Hooks)
}

// objectName names an object for a finding, such as Deployment/mastodon-helm-web.
func objectName(u *unstructured.Unstructured) string { return u.GetKind() + "/" + u.GetName() }

// renderedPod is the pod template of a rendered Deployment or Job.
type renderedPod struct {
	object   string // Deployment/mastodon-helm-web
	template corev1.PodTemplateSpec
}

// renderedPods lists the pod templates of the rendered Deployments and Jobs, hooks included.
func renderedPods(m *helm.Manifests) ([]renderedPod, error) {
	var pods []renderedPod
	for _, u := range allObjects(m) {
		switch u.GetKind() {
		case "Deployment":
			var d appsv1.Deployment
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &d); err != nil {
				return nil, err
			}
			pods = append(pods, renderedPod{objectName(u), d.Spec.Template})
		case "Job":
			var j batchv1.Job
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &j); err != nil {
				return nil, err
			}
			pods = append(pods, renderedPod{objectName(u), j.Spec.Template})
		}
	}
	return pods, nil
}

// renderedConfig returns the ConfigMaps and Secrets the chart renders (hooks included), by name.
func renderedConfig(m *helm.Manifests) (map[string]*corev1.ConfigMap, map[string]*corev1.Secret, error) {
	cms, secrets := map[string]*corev1.ConfigMap{}, map[string]*corev1.Secret{}
	for _, u := range allObjects(m) {
		switch u.GetKind() {
		case "ConfigMap":
			cm := &corev1.ConfigMap{}
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, cm); err != nil {
				return nil, nil, err
			}
			cms[cm.Name] = cm
		case "Secret":
			s := &corev1.Secret{}
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, s); err != nil {
				return nil, nil, err
			}
			secrets[s.Name] = s
		}
	}
	return cms, secrets, nil
}
