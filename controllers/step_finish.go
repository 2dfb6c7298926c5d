package controllers

import (
	"context"
	"fmt"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
	"github.com/mastodon-operator/mastodon-operator/internal/handoff"
	"github.com/mastodon-operator/mastodon-operator/internal/snapshot"
	"github.com/mastodon-operator/mastodon-operator/internal/values"
)

// finish hands the old stack's duties to the release: HPAs among the extra resources are
// re-pointed at the release's Deployments first (an HPA would otherwise scale the old stack back
// up), then the old Deployments are scaled to 0 and kept, or deleted when the spec asks. The
// snapshot keeps their pre-migration state either way.
func (r *MastodonMigrationReconciler) finish(ctx context.Context, m *v1alpha1.MastodonMigration) (outcome, error) {
	src, err := r.sourceStack(ctx, m)
	if err != nil {
		return outcome{}, err
	}
	release, err := r.releaseDeployments(ctx, m)
	if err != nil {
		return outcome{}, err
	}
	targets, none := releaseTargets(m, src, release)
	var repointed, left []string
	for _, x := range m.Spec.Source.ExtraResources {
		if x.Kind != "HorizontalPodAutoscaler" {
			continue
		}
		hpa := &autoscalingv2.HorizontalPodAutoscaler{}
		if err := r.Get(ctx, client.ObjectKey{Namespace: m.Namespace, Name: x.Name}, hpa); err != nil {
			return outcome{}, fmt.Errorf("reading HorizontalPodAutoscaler %s: %w", x.Name, err)
		}
		if hpa.Spec.ScaleTargetRef.Kind != "Deployment" {
			continue
		}
		from := hpa.Spec.ScaleTargetRef.Name
		to, ok := targets[from]
		if why, skipped := none[from]; skipped {
			// It scales nothing at 0 replicas: the autoscaler leaves such a Deployment alone.
			left = append(left, fmt.Sprintf("%s on Deployment/%s (%s)", x.Name, from, why))
		}
		if !ok {
			continue
		}
		before := hpa.DeepCopy()
		hpa.Spec.ScaleTargetRef.Name = to
		if err := r.Patch(ctx, hpa, client.MergeFrom(before), client.FieldOwner(fieldOwner)); err != nil {
			return outcome{}, fmt.Errorf("re-pointing HorizontalPodAutoscaler %s: %w", x.Name, err)
		}
		repointed = append(repointed, fmt.Sprintf("%s -> Deployment/%s", x.Name, to))
	}
	for _, d := range src.all() {
		if m.Spec.Cleanup.DeleteSource {
			if err := r.Delete(ctx, d); err != nil && !apierrors.IsNotFound(err) {
				return outcome{}, fmt.Errorf("deleting source Deployment %s: %w", d.Name, err)
			}
			continue
		}
		if err := r.scaleToZero(ctx, d); err != nil {
			return outcome{}, err
		}
	}
	fate := "scaled to 0 and kept"
	if m.Spec.Cleanup.DeleteSource {
		fate = "deleted (their manifests stay in snapshot " + snapshotName(m) + ")"
	}
	msg := fmt.Sprintf("old Deployments %s", fate)
	if len(repointed) > 0 {
		msg += "; HPAs re-pointed: " + strings.Join(repointed, ", ")
	}
	if len(left) > 0 {
		msg += "; HPAs left on the old Deployments, which they no longer scale: " + strings.Join(left, ", ")
	}
	if st := m.Status.Scheduler; m.Spec.Strategy != v1alpha1.StrategyInPlace && st != nil && st.Holder != "" && len(st.HandOvers) > 0 {
		// The hand-over scaled the scheduler worker by a patch: Helm's stored values say 0.
		msg += fmt.Sprintf("; release %s was installed with its Sidekiq scheduler worker at 0 replicas (%s holds the scheduler since the hand-over), so never upgrade it with --reuse-values: pass the full values (spec.release)",
			m.Spec.Release.Name, st.Holder)
	}
	if m.Spec.Strategy == v1alpha1.StrategyInPlace {
		// The roll steps scaled the release by patches: Helm's stored values still say 0.
		msg += fmt.Sprintf("; release %s was installed with 0 replicas, so never upgrade it with --reuse-values: pass the full values (spec.release)",
			m.Spec.Release.Name)
	}
	written, err := r.writeHandoff(ctx, m)
	if err != nil {
		return outcome{}, err
	}
	msg += "; " + written
	return outcome{state: v1alpha1.StepSucceeded, message: msg}, nil
}

func handoffName(m *v1alpha1.MastodonMigration) string { return m.Name + "-handoff" }

// writeHandoff writes what the GitOps repository needs now (internal/handoff) to the ConfigMap
// <name>-handoff, and says so. A hand-off too large for a ConfigMap is said, not retried.
func (r *MastodonMigrationReconciler) writeHandoff(ctx context.Context, m *v1alpha1.MastodonMigration) (string, error) {
	in := handoff.Input{Migration: m, Live: map[string]*unstructured.Unstructured{}}
	if st := m.Status.Release; st != nil {
		in.ChartVersion = st.ChartVersion
	}
	var err error
	if in.Values, err = r.releaseValues(ctx, m); err != nil {
		return "", err
	}
	if in.SecretEnv, err = r.releaseSecretEnv(ctx, m); err != nil {
		return "", err
	}
	if in.Deployments, err = r.releaseDeployments(ctx, m); err != nil {
		return "", err
	}
	if in.Snapshot, err = snapshot.Load(ctx, r.Client, m.Namespace, snapshotName(m)); err != nil {
		return "", err
	}
	for _, stored := range in.Snapshot {
		live := &unstructured.Unstructured{}
		live.SetGroupVersionKind(stored.GroupVersionKind())
		err := r.Get(ctx, client.ObjectKey{Namespace: m.Namespace, Name: stored.GetName()}, live)
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return "", err
		}
		in.Live[stored.GetKind()+"/"+stored.GetName()] = live
	}
	data, err := handoff.Build(in)
	if err != nil {
		return "hand-off not written: " + err.Error(), nil
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: m.Namespace, Name: handoffName(m)}}
	if _, err := controllerutil.CreateOrUpdate(ctx, r.Client, cm, func() error {
		if cm.Labels == nil {
			cm.Labels = map[string]string{}
		}
		cm.Labels[LabelMigration] = m.Name
		cm.Data = data
		return nil
	}); err != nil {
		return "", fmt.Errorf("writing the hand-off ConfigMap %s: %w", cm.Name, err)
	}
	return fmt.Sprintf("GitOps hand-off in ConfigMap %s (kubectl mastodon handoff %s)", cm.Name, m.Name), nil
}

// releaseTargets maps each source Deployment to the release Deployment that takes over its
// load: web and streaming by component, each Sidekiq Deployment as values.ReleaseWorker picks
// it (the worker the generated values made of it, never one that consumes the scheduler queue).
// none says why a Sidekiq Deployment has no target.
func releaseTargets(m *v1alpha1.MastodonMigration, src sourceStack, release map[string]*appsv1.Deployment) (targets, none map[string]string) {
	targets, none = map[string]string{}, map[string]string{}
	if d := release["web"]; d != nil {
		targets[src.web.Name] = d.Name
	}
	if d := release["streaming"]; d != nil {
		targets[src.streaming.Name] = d.Name
	}
	made, none := releaseWorkers(m, src, release)
	for old, d := range made {
		targets[old] = d.Name
	}
	return targets, none
}

// releaseWorkers maps each old Sidekiq Deployment to the release worker made of it
// (values.ReleaseWorker: never one that consumes the scheduler queue), or says why there is none.
func releaseWorkers(m *v1alpha1.MastodonMigration, src sourceStack, release map[string]*appsv1.Deployment) (made map[string]*appsv1.Deployment, none map[string]string) {
	made, none = map[string]*appsv1.Deployment{}, map[string]string{}
	// Under the names they had when the values were generated: InPlace may have set one aside.
	workers := make([]*appsv1.Deployment, len(src.sidekiq))
	for i, d := range src.sidekiq {
		workers[i] = d.DeepCopy()
		workers[i].Name = setAsideFrom(m, d.Name)
	}
	for i, s := range src.sidekiq {
		if d, why := values.ReleaseWorker(workers, i, release); d != nil {
			made[s.Name] = d
		} else {
			none[s.Name] = why
		}
	}
	return made, none
}

// setAsideFrom is the name a source Deployment had before it was set aside (setAsideAs).
func setAsideFrom(m *v1alpha1.MastodonMigration, name string) string {
	if a := m.Status.Adoption; a != nil {
		for _, s := range a.SetAside {
			if s.As == name {
				return s.Name
			}
		}
	}
	return name
}
