package controllers

import (
	"context"
	"fmt"
	"slices"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
	"github.com/mastodon-operator/mastodon-operator/internal/helm"
	"github.com/mastodon-operator/mastodon-operator/internal/preflight"
	"github.com/mastodon-operator/mastodon-operator/internal/traffic"
	"github.com/mastodon-operator/mastodon-operator/internal/workload"
)

// The official chart's labels, which select the release's pods.
const (
	labelChartName     = "app.kubernetes.io/name"
	labelChartInstance = "app.kubernetes.io/instance"
	labelChartPart     = helm.LabelComponent
)

// LabelMigration marks what the operator stores for a migration (snapshots, generated values).
const LabelMigration = "migration.mastodon-operator.io/migration"

// fieldOwner is the operator's field manager for server-side apply and patches.
const fieldOwner = "mastodon-operator"

// sourceStack is the running Kustomize-managed stack.
type sourceStack struct {
	web, streaming *appsv1.Deployment
	sidekiq        []*appsv1.Deployment
}

func (s sourceStack) all() []*appsv1.Deployment {
	return append([]*appsv1.Deployment{s.web, s.streaming}, s.sidekiq...)
}

// byComponent maps the components traffic can move to their source Deployments.
func (s sourceStack) byComponent() map[traffic.Component]*appsv1.Deployment {
	return map[traffic.Component]*appsv1.Deployment{traffic.Web: s.web, traffic.Streaming: s.streaming}
}

func (r *MastodonMigrationReconciler) sourceStack(ctx context.Context, m *v1alpha1.MastodonMigration) (sourceStack, error) {
	var s sourceStack
	for _, ref := range preflight.SourceDeployments(m) {
		d := &appsv1.Deployment{}
		name := setAsideAs(m, ref.Name)
		if err := r.Get(ctx, client.ObjectKey{Namespace: m.Namespace, Name: name}, d); err != nil {
			return s, fmt.Errorf("reading source Deployment %s: %w", name, err)
		}
		switch ref.Component {
		case "web":
			s.web = d
		case "streaming":
			s.streaming = d
		default:
			s.sidekiq = append(s.sidekiq, d)
		}
	}
	return s, nil
}

// releaseDeployments returns the release's Deployments by component (web, streaming,
// sidekiq-<worker>), found by the chart's instance label.
func (r *MastodonMigrationReconciler) releaseDeployments(ctx context.Context, m *v1alpha1.MastodonMigration) (map[string]*appsv1.Deployment, error) {
	var list appsv1.DeploymentList
	if err := r.List(ctx, &list, client.InNamespace(m.Namespace),
		client.MatchingLabels{labelChartInstance: m.Spec.Release.Name}); err != nil {
		return nil, err
	}
	out := map[string]*appsv1.Deployment{}
	for i := range list.Items {
		if c := list.Items[i].Spec.Template.Labels[labelChartPart]; c != "" {
			out[c] = &list.Items[i]
		}
	}
	return out, nil
}

// sourceServices returns the Services traffic moves: those the spec names, or by default every
// Service in the namespace whose selector picks pods of a source Deployment.
func (r *MastodonMigrationReconciler) sourceServices(ctx context.Context, m *v1alpha1.MastodonMigration, src sourceStack) ([]corev1.Service, error) {
	if names := m.Spec.Source.Services; len(names) > 0 {
		out := make([]corev1.Service, 0, len(names))
		for _, n := range names {
			var s corev1.Service
			if err := r.Get(ctx, client.ObjectKey{Namespace: m.Namespace, Name: n}, &s); err != nil {
				return nil, fmt.Errorf("reading source Service %s: %w", n, err)
			}
			out = append(out, s)
		}
		return out, nil
	}
	var list corev1.ServiceList
	if err := r.List(ctx, &list, client.InNamespace(m.Namespace)); err != nil {
		return nil, err
	}
	return traffic.SourceServices(list.Items, src.all()), nil
}

// referencedConfig lists the ConfigMaps and Secrets that the source pods read their env from.
func referencedConfig(src sourceStack) (configMaps, secrets []string) {
	seenCM, seenS := map[string]bool{}, map[string]bool{}
	add := func(seen map[string]bool, list *[]string, name string) {
		if name != "" && !seen[name] {
			seen[name] = true
			*list = append(*list, name)
		}
	}
	for _, d := range src.all() {
		spec := d.Spec.Template.Spec
		for _, c := range append(append([]corev1.Container{}, spec.InitContainers...), spec.Containers...) {
			for _, from := range c.EnvFrom {
				if from.ConfigMapRef != nil {
					add(seenCM, &configMaps, from.ConfigMapRef.Name)
				}
				if from.SecretRef != nil {
					add(seenS, &secrets, from.SecretRef.Name)
				}
			}
			for _, e := range c.Env {
				if e.ValueFrom == nil {
					continue
				}
				if ref := e.ValueFrom.ConfigMapKeyRef; ref != nil {
					add(seenCM, &configMaps, ref.Name)
				}
				if ref := e.ValueFrom.SecretKeyRef; ref != nil {
					add(seenS, &secrets, ref.Name)
				}
			}
		}
	}
	return configMaps, secrets
}

// readConfig lists the ConfigMaps and Secrets that the source pods read at all: their env
// (referencedConfig) and their volumes, projected ones included.
func readConfig(src sourceStack) (configMaps, secrets []string) {
	configMaps, secrets = referencedConfig(src)
	for _, d := range src.all() {
		for _, v := range d.Spec.Template.Spec.Volumes {
			if v.ConfigMap != nil {
				configMaps = append(configMaps, v.ConfigMap.Name)
			}
			if v.Secret != nil {
				secrets = append(secrets, v.Secret.SecretName)
			}
			if v.Projected == nil {
				continue
			}
			for _, p := range v.Projected.Sources {
				if p.ConfigMap != nil {
					configMaps = append(configMaps, p.ConfigMap.Name)
				}
				if p.Secret != nil {
					secrets = append(secrets, p.Secret.Name)
				}
			}
		}
	}
	return slices.Compact(slices.Sorted(slices.Values(configMaps))), slices.Compact(slices.Sorted(slices.Values(secrets)))
}

// scaleToZero sets a Deployment's replicas to 0, unless they are already.
// scaleTo sets a Deployment's replicas to n, unless they are n already, and says whether it has
// rolled out with them (workload.RolledOut), and if not, what it waits for.
func (r *MastodonMigrationReconciler) scaleTo(ctx context.Context, d *appsv1.Deployment, n int32) (bool, string, error) {
	if !ptr.Equal(d.Spec.Replicas, &n) {
		before := d.DeepCopy()
		d.Spec.Replicas = ptr.To(n)
		if err := r.Patch(ctx, d, client.MergeFrom(before), client.FieldOwner(fieldOwner)); err != nil {
			return false, "", fmt.Errorf("scaling Deployment %s to %d: %w", d.Name, n, err)
		}
	}
	return workload.RolledOut(d)
}

func (r *MastodonMigrationReconciler) scaleToZero(ctx context.Context, d *appsv1.Deployment) error {
	if d.Spec.Replicas != nil && *d.Spec.Replicas == 0 {
		return nil
	}
	before := d.DeepCopy()
	d.Spec.Replicas = ptr.To[int32](0)
	if err := r.Patch(ctx, d, client.MergeFrom(before), client.FieldOwner(fieldOwner)); err != nil {
		return fmt.Errorf("scaling Deployment %s to 0: %w", d.Name, err)
	}
	return nil
}
