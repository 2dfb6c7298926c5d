package handoff

import (
	"maps"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	"sigs.k8s.io/yaml"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
)

// The API versions written: Flux 2's GA source and helm APIs, and Argo CD's Application.
const (
	FluxSourceAPIVersion = "source.toolkit.fluxcd.io/v1"
	FluxHelmAPIVersion   = "helm.toolkit.fluxcd.io/v2"
	ArgoCDAPIVersion     = "argoproj.io/v1alpha1"
	// ArgoCDNamespace is where Argo CD looks for Applications by default.
	ArgoCDNamespace = "argocd"
)

// syncInterval is how often Flux reconciles the release and its repository.
const syncInterval = "10m"

const ociPrefix = "oci://"

// HelmRepository is the Flux source of the release's chart.
func HelmRepository(m *v1alpha1.MastodonMigration) map[string]any {
	spec := map[string]any{"url": m.Spec.Release.Chart.Repository, "interval": syncInterval}
	if strings.HasPrefix(m.Spec.Release.Chart.Repository, ociPrefix) {
		spec["type"] = "oci"
	}
	return map[string]any{
		"apiVersion": FluxSourceAPIVersion,
		"kind":       "HelmRepository",
		"metadata":   map[string]any{"name": m.Spec.Release.Name, "namespace": m.Namespace},
		"spec":       spec,
	}
}

// HelmRelease is the Flux HelmRelease that takes over the release: same name, namespace, chart,
// version and values. Flux upgrades an existing release of that name in place. The variables
// the operator adds from Secret keys (secretEnv) become strategic-merge patches of the rendered
// Deployments' Mastodon container, as the operator's post-renderer adds them.
func HelmRelease(m *v1alpha1.MastodonMigration, chartVersion string, values map[string]any,
	secretEnv []v1alpha1.SecretEnvVar, deployments map[string]*appsv1.Deployment) (map[string]any, error) {
	r := m.Spec.Release
	spec := map[string]any{
		"releaseName": r.Name,
		"interval":    syncInterval,
		"chart": map[string]any{"spec": map[string]any{
			"chart":     r.Chart.Name,
			"version":   chartVersion,
			"sourceRef": map[string]any{"kind": "HelmRepository", "name": r.Name},
		}},
		"values": values,
	}
	if r.Timeout != nil {
		spec["timeout"] = r.Timeout.Duration.String()
	}
	patches, err := secretEnvPatches(secretEnv, deployments)
	if err != nil {
		return nil, err
	}
	if len(patches) > 0 {
		spec["postRenderers"] = []any{map[string]any{"kustomize": map[string]any{"patches": patches}}}
	}
	return map[string]any{
		"apiVersion": FluxHelmAPIVersion,
		"kind":       "HelmRelease",
		"metadata":   map[string]any{"name": r.Name, "namespace": m.Namespace},
		"spec":       spec,
	}, nil
}

// secretEnvPatches are the Flux post-renderer patches that give each component's Mastodon
// container (the first) the secretEnv variables.
func secretEnvPatches(secretEnv []v1alpha1.SecretEnvVar, deployments map[string]*appsv1.Deployment) ([]any, error) {
	if len(secretEnv) == 0 {
		return nil, nil
	}
	env := make([]any, len(secretEnv))
	for i, v := range secretEnv {
		env[i] = map[string]any{"name": v.Name, "valueFrom": map[string]any{
			"secretKeyRef": map[string]any{"name": v.SecretName, "key": v.Key}}}
	}
	var out []any
	for _, component := range slices.Sorted(maps.Keys(deployments)) {
		d := deployments[component]
		if len(d.Spec.Template.Spec.Containers) == 0 {
			continue
		}
		patch, err := yaml.Marshal(map[string]any{
			"apiVersion": "apps/v1", "kind": "Deployment", "metadata": map[string]any{"name": d.Name},
			"spec": map[string]any{"template": map[string]any{"spec": map[string]any{"containers": []any{
				map[string]any{"name": d.Spec.Template.Spec.Containers[0].Name, "env": env}}}}},
		})
		if err != nil {
			return nil, err
		}
		out = append(out, map[string]any{
			"target": map[string]any{"kind": "Deployment", "name": d.Name},
			"patch":  string(patch),
		})
	}
	return out, nil
}

// Application is the Argo CD Application equivalent to the release: the chart at the installed
// version with the release's values, into the release's namespace. Named as the release, so
// that Argo CD's tracking label (app.kubernetes.io/instance) is the one the chart already sets.
func Application(m *v1alpha1.MastodonMigration, chartVersion string, values map[string]any) map[string]any {
	r := m.Spec.Release
	// Argo CD names an OCI Helm repository without its scheme.
	repoURL := strings.TrimPrefix(r.Chart.Repository, ociPrefix)
	return map[string]any{
		"apiVersion": ArgoCDAPIVersion,
		"kind":       "Application",
		"metadata":   map[string]any{"name": r.Name, "namespace": ArgoCDNamespace},
		"spec": map[string]any{
			"project": "default",
			"source": map[string]any{
				"repoURL":        repoURL,
				"chart":          r.Chart.Name,
				"targetRevision": chartVersion,
				"helm":           map[string]any{"releaseName": r.Name, "valuesObject": values},
			},
			"destination": map[string]any{"server": "https://kubernetes.default.svc", "namespace": m.Namespace},
		},
	}
}
