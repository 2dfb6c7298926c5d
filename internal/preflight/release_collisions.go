package preflight

import (
	"context"
	"fmt"
	"maps"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
)

// Helm's marks of ownership: an existing object carrying all three for this release and
// namespace is adopted by an install; any other makes it fail with "exists and cannot be
// imported into the current release".
const (
	labelManagedBy        = "app.kubernetes.io/managed-by"
	annotationReleaseName = "meta.helm.sh/release-name"
	annotationReleaseNS   = "meta.helm.sh/release-namespace"
	labelInstance         = "app.kubernetes.io/instance"
	annotationHook        = "helm.sh/hook"
	managedByHelm         = "Helm"
)

// existing reads the object of that kind and name in the migration's namespace; nil when it
// does not exist or its kind is not served (ReleaseDryRun reports that).
func existing(ctx context.Context, in Input, obj *unstructured.Unstructured) (*unstructured.Unstructured, error) {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(obj.GroupVersionKind())
	err := in.Client.Get(ctx, client.ObjectKey{Namespace: in.Migration.Namespace, Name: obj.GetName()}, u)
	if apierrors.IsNotFound(err) || meta.IsNoMatchError(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return u, nil
}

// releaseCollisions checks that no object the release would create already exists unless it
// belongs to this release. Helm refuses to install over another object; a hook object of the
// same name (hook-delete-policy before-hook-creation) would be deleted and replaced.
//
// InPlace could give such objects Helm's ownership marks so that the install adopts them, but
// with the chart's names over a Kustomize layout no adoption is safe while the old stack
// serves (adoptionRisk): the finding says why for each object instead.
func releaseCollisions(ctx context.Context, in Input) ([]v1alpha1.Finding, error) {
	p := in.release(ctx)
	if p.manifests == nil {
		return nil, nil
	}
	release, ns := in.Migration.Spec.Release.Name, in.Migration.Namespace
	var findings []v1alpha1.Finding
	for _, obj := range allObjects(p.manifests) {
		cur, err := existing(ctx, in, obj)
		if err != nil {
			return nil, err
		}
		if cur == nil || ownedBy(cur, release, ns, obj.GetAnnotations()[annotationHook] != "") {
			continue
		}
		what := "Helm would refuse to install (it exists and cannot be imported into the release)"
		if obj.GetAnnotations()[annotationHook] != "" {
			what = "the release's hook of that name would replace it"
		}
		if in.Migration.Spec.Strategy == v1alpha1.StrategyInPlace {
			findings = append(findings, finding(objectName(obj),
				"%s %s already exists in namespace %s and does not belong to release %s: InPlace does not hand it to Helm, because %s; keep the chart's names apart from the old stack's (the default spec.release.name mastodon-helm, or mastodon.fullnameOverride in spec.release.values)",
				obj.GetKind(), obj.GetName(), ns, release, adoptionRisk(obj, cur)))
			continue
		}
		findings = append(findings, finding(objectName(obj),
			"%s %s already exists in namespace %s and does not belong to release %s: %s; choose another spec.release.name (the chart names its objects after it), or remove it if nothing uses it",
			obj.GetKind(), obj.GetName(), ns, release, what))
	}
	return findings, nil
}

// ownedBy reports whether an existing object belongs to the release: Helm's ownership labels
// and annotations, or for a hook (to which Helm adds none) the chart's labels of the release.
func ownedBy(u *unstructured.Unstructured, release, namespace string, hook bool) bool {
	labels, annotations := u.GetLabels(), u.GetAnnotations()
	if labels[labelManagedBy] != managedByHelm {
		return false
	}
	if hook && labels[labelInstance] == release {
		return true
	}
	return annotations[annotationReleaseName] == release &&
		(annotations[annotationReleaseNS] == "" || annotations[annotationReleaseNS] == namespace)
}

// adoptionRisk says what adopting an existing object into the release would break while the
// old stack still serves: Helm's install overwrites an adopted object with the rendered one at
// once, before any new pod is ready.
func adoptionRisk(rendered, cur *unstructured.Unstructured) string {
	if rendered.GetAnnotations()[annotationHook] != "" {
		return "the release's hook of that name would delete and replace it"
	}
	switch rendered.GetKind() {
	case "Deployment":
		want, _, _ := unstructured.NestedStringMap(rendered.Object, "spec", "selector", "matchLabels")
		have, _, _ := unstructured.NestedStringMap(cur.Object, "spec", "selector", "matchLabels")
		if !maps.Equal(want, have) {
			return fmt.Sprintf("its selector would have to change from %s to %s, which the API server refuses on a Deployment: it would have to be replaced while it serves",
				labels.Set(have), labels.Set(want))
		}
		return "Helm would replace its pod template at install time, restarting the old pods as the release's"
	case "Service":
		return "Helm would point its selector at the release's pods at install time, while they are still at 0 replicas: it would have no ready endpoint until they start"
	case "ConfigMap", "Secret":
		return "Helm would replace its data with the chart's while the old pods read it: an old pod that restarts, or a level 1 rollback, would run with the chart's environment"
	}
	return "Helm would overwrite it with the chart's at install time"
}
