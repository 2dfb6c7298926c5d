package controllers

import (
	"context"
	"fmt"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
	"github.com/mastodon-operator/mastodon-operator/internal/adoption"
	"github.com/mastodon-operator/mastodon-operator/internal/helm"
	"github.com/mastodon-operator/mastodon-operator/internal/snapshot"
	"github.com/mastodon-operator/mastodon-operator/internal/workload"
)

// renderRelease renders the chart with the release's values (without the InPlace install's
// zero replicas), as an install would.
func (r *MastodonMigrationReconciler) renderRelease(ctx context.Context, m *v1alpha1.MastodonMigration) (*helm.Manifests, error) {
	ref := m.Spec.Release.Chart
	chrt, err := r.Charts.LoadChart(ctx, helm.ChartRef{Repository: ref.Repository, Name: ref.Name, Version: ref.Version})
	if err != nil {
		return nil, err
	}
	vals, err := r.releaseValues(ctx, m)
	if err != nil {
		return nil, err
	}
	return helm.Render(chrt, vals, m.Spec.Release.Name, m.Namespace)
}

// collisions lists the release's own objects (hooks excluded: preflight refuses those) that
// exist before the install under the same kind and name: what InPlace hands over, and the
// Snapshot step stores. Preflight has checked that each can be.
func (r *MastodonMigrationReconciler) collisions(ctx context.Context, m *v1alpha1.MastodonMigration) ([]snapshot.Ref, error) {
	manifests, err := r.renderRelease(ctx, m)
	if err != nil {
		return nil, err
	}
	var refs []snapshot.Ref
	for _, obj := range manifests.Resources {
		live := &unstructured.Unstructured{}
		live.SetGroupVersionKind(obj.GroupVersionKind())
		err := r.Get(ctx, client.ObjectKey{Namespace: m.Namespace, Name: obj.GetName()}, live)
		if apierrors.IsNotFound(err) || meta.IsNoMatchError(err) {
			continue
		}
		if err != nil {
			return nil, err
		}
		refs = append(refs, snapshot.Ref{APIVersion: obj.GetAPIVersion(), Kind: obj.GetKind(), Name: obj.GetName()})
	}
	return refs, nil
}

// handOver prepares the old stack's objects that the release names as its own (the chart's names
// over the old stack's) before the install: each source Deployment among them is set aside
// under adoption.SetAsideName, keeping its pods, and every other object gets Helm's ownership
// marks so that the install adopts it (in its stored form: see installOptions). What is handed
// over is read from the snapshot, which the Snapshot step fills with every such object, so a
// rerun after a restart hands over the same objects.
func (r *MastodonMigrationReconciler) handOver(ctx context.Context, m *v1alpha1.MastodonMigration) (outcome, error) {
	handed, err := r.handedOver(ctx, m)
	if err != nil {
		return outcome{}, err
	}
	if len(handed) == 0 {
		m.Status.Adoption = nil
		return outcome{state: v1alpha1.StepSkipped, message: "the release names none of the old stack's objects"}, nil
	}
	st := &v1alpha1.AdoptionStatus{}
	var waiting []string
	for _, stored := range handed {
		if stored.GetKind() == "Deployment" {
			st.SetAside = append(st.SetAside, v1alpha1.SetAsideDeployment{Name: stored.GetName(), As: adoption.SetAsideName(stored.GetName())})
			msg, err := r.setAside(ctx, m, stored)
			if err != nil {
				return outcome{}, err
			}
			if msg != "" {
				waiting = append(waiting, msg)
			}
			continue
		}
		st.Adopted = append(st.Adopted, adoption.Key(stored))
		if err := r.markForRelease(ctx, m, stored); err != nil {
			return outcome{}, err
		}
	}
	// Recorded while waiting too: sourceStack finds a set-aside Deployment by its new name.
	m.Status.Adoption = st
	if len(waiting) > 0 {
		return outcome{state: v1alpha1.StepRunning, message: "setting aside: " + strings.Join(waiting, "; "), requeueAfter: releaseTimeout(m)}, nil
	}
	var asides []string
	for _, s := range st.SetAside {
		asides = append(asides, fmt.Sprintf("Deployment/%s as %s", s.Name, s.As))
	}
	return outcome{state: v1alpha1.StepSucceeded, message: fmt.Sprintf("set aside %s, with their pods; marked for the release to adopt as they are: %s",
		listOrNone(asides), listOrNone(st.Adopted))}, nil
}

// handedOver returns the stored objects the release names as its own: those of the snapshot that
// the chart renders under the same kind and name.
func (r *MastodonMigrationReconciler) handedOver(ctx context.Context, m *v1alpha1.MastodonMigration) ([]*unstructured.Unstructured, error) {
	if m.Spec.Strategy != v1alpha1.StrategyInPlace {
		return nil, nil
	}
	manifests, err := r.renderRelease(ctx, m)
	if err != nil {
		return nil, err
	}
	stored, err := snapshot.Load(ctx, r.Client, m.Namespace, snapshotName(m))
	if err != nil {
		return nil, err
	}
	var out []*unstructured.Unstructured
	for _, u := range stored {
		if rendered := manifests.Find(u.GetKind(), u.GetName()); rendered != nil && rendered.GetAnnotations()[annotationHook] == "" {
			out = append(out, u)
		}
	}
	return out, nil
}

const annotationHook = "helm.sh/hook"

// setAside moves an old Deployment out of the release's way without stopping a pod: it is
// deleted with its ReplicaSets orphaned (they keep their pods running), and created again from
// the snapshot under its new name, whose controller adopts the orphaned ReplicaSet of the same
// pod template instead of starting pods. It returns what it waits for, or "" when the
// Deployment runs under its new name with all its pods.
func (r *MastodonMigrationReconciler) setAside(ctx context.Context, m *v1alpha1.MastodonMigration, stored *unstructured.Unstructured) (string, error) {
	name, as := stored.GetName(), adoption.SetAsideName(stored.GetName())
	old := &appsv1.Deployment{}
	err := r.Get(ctx, client.ObjectKey{Namespace: m.Namespace, Name: name}, old)
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		return "", err
	case adoption.Owned(old, m.Spec.Release.Name, m.Namespace):
		// The release's own, installed since.
	case old.DeletionTimestamp != nil:
		return fmt.Sprintf("Deployment %s is being deleted (its ReplicaSets are orphaned and keep their pods)", name), nil
	default:
		if err := r.deleteOrphaning(ctx, old); err != nil {
			return "", err
		}
		return fmt.Sprintf("Deployment %s deleted, its ReplicaSets orphaned and their pods running", name), nil
	}

	aside := &appsv1.Deployment{}
	err = r.Get(ctx, client.ObjectKey{Namespace: m.Namespace, Name: as}, aside)
	if apierrors.IsNotFound(err) {
		aside = &appsv1.Deployment{}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(stored.Object, aside); err != nil {
			return "", err
		}
		aside.ObjectMeta = metav1.ObjectMeta{Name: as, Namespace: m.Namespace, Labels: aside.Labels,
			Annotations: map[string]string{adoption.AnnotationSetAsideFrom: name}}
		if err := r.Create(ctx, aside, client.FieldOwner(fieldOwner)); err != nil {
			return "", fmt.Errorf("creating Deployment %s in place of %s: %w", as, name, err)
		}
		return fmt.Sprintf("Deployment %s created in place of %s", as, name), nil
	}
	if err != nil {
		return "", err
	}
	if current, message, err := workload.RolledOut(aside); err != nil {
		return "", err
	} else if !current {
		return fmt.Sprintf("Deployment %s (was %s): %s", as, name, message), nil
	}
	return "", nil
}

// markForRelease gives a live object Helm's ownership marks for the release.
func (r *MastodonMigrationReconciler) markForRelease(ctx context.Context, m *v1alpha1.MastodonMigration, stored *unstructured.Unstructured) error {
	live := &unstructured.Unstructured{}
	live.SetGroupVersionKind(stored.GroupVersionKind())
	if err := r.Get(ctx, client.ObjectKeyFromObject(stored), live); err != nil {
		return fmt.Errorf("reading %s to hand it to the release: %w", adoption.Key(stored), err)
	}
	before := live.DeepCopy()
	if !adoption.Mark(live, m.Spec.Release.Name, m.Namespace) {
		return nil
	}
	if err := r.Patch(ctx, live, client.MergeFrom(before), client.FieldOwner(fieldOwner)); err != nil {
		return fmt.Errorf("marking %s for release %s: %w", adoption.Key(stored), m.Spec.Release.Name, err)
	}
	return nil
}

// installOptions has the InPlace install adopt the handed-over objects in their stored form.
func (r *MastodonMigrationReconciler) installOptions(ctx context.Context, m *v1alpha1.MastodonMigration) ([]helm.InstallOption, error) {
	if m.Status.Adoption == nil || len(m.Status.Adoption.Adopted) == 0 {
		return nil, nil
	}
	handed, err := r.handedOver(ctx, m)
	if err != nil {
		return nil, err
	}
	pr := adoption.PostRenderer{Stored: map[string]*unstructured.Unstructured{}, Release: m.Spec.Release.Name, Namespace: m.Namespace}
	for _, u := range handed {
		if u.GetKind() != "Deployment" {
			pr.Stored[adoption.Key(u)] = u
		}
	}
	return []helm.InstallOption{helm.WithPostRenderer(pr)}, nil
}

// setAsideAs is the name an old Deployment runs under now: its own, or the one it was set
// aside as.
func setAsideAs(m *v1alpha1.MastodonMigration, name string) string {
	if a := m.Status.Adoption; a != nil {
		for _, s := range a.SetAside {
			if s.Name == name {
				return s.As
			}
		}
	}
	return name
}

// putBack undoes the setting aside before a level 2 rollback restores the snapshot: each
// set-aside Deployment is deleted with its ReplicaSets orphaned, so that the restored Deployment
// of the old name adopts them with their pods. It returns what it waits for.
func (r *MastodonMigrationReconciler) putBack(ctx context.Context, m *v1alpha1.MastodonMigration) ([]string, error) {
	var waiting []string
	for _, s := range m.Status.Adoption.SetAside {
		aside := &appsv1.Deployment{}
		err := r.Get(ctx, client.ObjectKey{Namespace: m.Namespace, Name: s.As}, aside)
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if aside.DeletionTimestamp == nil {
			if err := r.deleteOrphaning(ctx, aside); err != nil {
				return nil, err
			}
		}
		waiting = append(waiting, fmt.Sprintf("Deployment %s is being deleted (its pods go back to %s)", s.As, s.Name))
	}
	return waiting, nil
}

// deleteOrphaning deletes that very Deployment (UID precondition) and leaves its ReplicaSets, with
// their pods, running.
func (r *MastodonMigrationReconciler) deleteOrphaning(ctx context.Context, d *appsv1.Deployment) error {
	uid := d.UID
	err := r.Delete(ctx, d, client.Preconditions{UID: &uid}, client.PropagationPolicy(metav1.DeletePropagationOrphan))
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting Deployment %s, its ReplicaSets orphaned: %w", d.Name, err)
	}
	return nil
}

func listOrNone(l []string) string {
	if len(l) == 0 {
		return "none"
	}
	return strings.Join(l, ", ")
}
