package controllers

import (
	"context"
	"fmt"
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
	"github.com/mastodon-operator/mastodon-operator/internal/snapshot"
)

// snapshotName is unique to this migration object, so a migration deleted and created again
// under the same name never mistakes an old snapshot for its own.
func snapshotName(m *v1alpha1.MastodonMigration) string {
	return fmt.Sprintf("%s-snapshot-%s", m.Name, string(m.UID)[:8])
}

// snapshot stores every object the migration may change or delete, before it changes anything.
// snapshot.Take returns a complete snapshot of the same name unchanged, so a second run keeps
// the pre-migration state rather than overwriting it.
func (r *MastodonMigrationReconciler) snapshot(ctx context.Context, m *v1alpha1.MastodonMigration) (outcome, error) {
	src, err := r.sourceStack(ctx, m)
	if err != nil {
		return outcome{}, err
	}
	services, err := r.sourceServices(ctx, m, src)
	if err != nil {
		return outcome{}, err
	}
	var refs []snapshot.Ref
	for _, d := range src.all() {
		refs = append(refs, snapshot.Ref{APIVersion: "apps/v1", Kind: "Deployment", Name: d.Name})
	}
	for _, s := range services {
		refs = append(refs, snapshot.Ref{APIVersion: "v1", Kind: "Service", Name: s.Name})
	}
	if m.Spec.Source.Ingress != "" {
		refs = append(refs, snapshot.Ref{APIVersion: "networking.k8s.io/v1", Kind: "Ingress", Name: m.Spec.Source.Ingress})
	}
	for _, x := range m.Spec.Source.ExtraResources {
		refs = append(refs, snapshot.Ref{APIVersion: x.APIVersion, Kind: x.Kind, Name: x.Name})
	}
	configMaps, secrets := referencedConfig(src)
	for _, n := range configMaps {
		refs = append(refs, snapshot.Ref{APIVersion: "v1", Kind: "ConfigMap", Name: n})
	}
	for _, n := range secrets {
		refs = append(refs, snapshot.Ref{APIVersion: "v1", Kind: "Secret", Name: n})
	}
	if m.Spec.Strategy == v1alpha1.StrategyInPlace {
		// What the release will take over, beyond the old stack's own objects listed above.
		collisions, err := r.collisions(ctx, m)
		if err != nil {
			return outcome{}, err
		}
		refs = appendMissing(refs, collisions)
	}
	snap, err := snapshot.Take(ctx, r.Client, m.Namespace, snapshotName(m), map[string]string{LabelMigration: m.Name}, refs)
	if err != nil {
		return outcome{}, err
	}
	taken := metav1.NewTime(snap.TakenAt)
	m.Status.Snapshot = &v1alpha1.SnapshotStatus{Name: snap.Name, Objects: int32(snap.Objects), TakenAt: &taken}
	return outcome{state: v1alpha1.StepSucceeded, message: fmt.Sprintf("stored %d objects in snapshot %s (%d Secret(s))",
		snap.Objects, snap.Name, snap.Parts)}, nil
}

// appendMissing adds to refs those of more it does not hold yet.
func appendMissing(refs, more []snapshot.Ref) []snapshot.Ref {
	for _, ref := range more {
		if !slices.Contains(refs, ref) {
			refs = append(refs, ref)
		}
	}
	return refs
}
