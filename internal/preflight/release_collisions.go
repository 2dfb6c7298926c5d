package preflight

import (
	"context"
	"fmt"
	"strings"

	appsv1 "k8s.io/api/apps/v1"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
	"github.com/mastodon-operator/mastodon-operator/internal/adoption"
)

// Helm's marks of ownership: an existing object carrying all three for this release and
// namespace is adopted by an install; any other makes it fail with "exists and cannot be
// imported into the current release".
const (
	labelManagedBy        = adoption.LabelManagedBy
	annotationReleaseName = adoption.AnnotationReleaseName
	annotationReleaseNS   = adoption.AnnotationReleaseNamespace
	labelInstance         = "app.kubernetes.io/instance"
	annotationHook        = "helm.sh/hook"
	managedByHelm         = adoption.ManagedByHelm
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
// same name (hook-delete-policy before-hook-creation) would be deleted and replaced. InPlace
// hands the old stack's objects to the release instead (package adoption), where inPlaceHandover
// says that is safe.
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
		hook := obj.GetAnnotations()[annotationHook] != ""
		if cur == nil || ownedBy(cur, release, ns, hook) {
			continue
		}
		if in.Migration.Spec.Strategy == v1alpha1.StrategyInPlace && !hook {
			why, err := inPlaceHandover(ctx, in, obj, cur)
			if err != nil {
				return nil, err
			}
			if why != "" {
				findings = append(findings, finding(objectName(obj),
					"%s %s already exists in namespace %s and InPlace cannot hand it to release %s: %s",
					obj.GetKind(), obj.GetName(), ns, release, why))
			}
			continue
		}
		what := "Helm would refuse to install (it exists and cannot be imported into the release)"
		if hook {
			what = "the release's hook of that name would replace it"
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

// inPlaceHandover says why InPlace cannot hand an existing object the release renders under
// the same name over to it, or "" when it can: a source Deployment is set aside; a Service is
// adopted as it is when the traffic switch moves its selector, which is then what moves it to
// the release; a ConfigMap or Secret is adopted with the chart's keys added when the keys both
// have hold the same values; anything else is adopted as it is.
func inPlaceHandover(ctx context.Context, in Input, rendered, cur *unstructured.Unstructured) (string, error) {
	switch rendered.GetKind() {
	case "Deployment":
		for _, ref := range SourceDeployments(in.Migration) {
			if ref.Name == cur.GetName() {
				return "", nil
			}
		}
		return "it is not one of the old stack's Deployments (spec.source), which are the only ones InPlace sets aside for the release's", nil
	case "Service":
		if in.Migration.Spec.Traffic.Method == v1alpha1.TrafficIngress {
			return "the Ingress traffic method points the Ingress at the release's Service, which would be this same Service: use the ServiceSelector method, or keep the chart's names apart (mastodon.fullnameOverride)", nil
		}
		moved, err := routesToSource(ctx, in, cur)
		if err != nil || moved {
			return "", err
		}
		return fmt.Sprintf("its selector %s picks no pod of the old stack's web or streaming Deployments, so no traffic switch would ever move it to the release's pods",
			labels.Set(selectorOf(cur))), nil
	case "ConfigMap", "Secret":
		keys, err := adoption.KeyConflicts(cur, rendered)
		if err != nil {
			return "", err
		}
		if len(keys) > 0 {
			return fmt.Sprintf("the chart gives key(s) %s other values than the old pods read there: set them in spec.release.values as the old stack has them, or keep the chart's names apart (mastodon.fullnameOverride)",
				strings.Join(keys, ", ")), nil
		}
	}
	return "", nil
}

// routesToSource reports whether a Service's selector picks the pods of the old web or
// streaming Deployment, whose traffic the roll steps move.
func routesToSource(ctx context.Context, in Input, svc *unstructured.Unstructured) (bool, error) {
	selector := selectorOf(svc)
	if len(selector) == 0 {
		return false, nil
	}
	for _, name := range []string{in.Migration.Spec.Source.Web.Deployment, in.Migration.Spec.Source.Streaming.Deployment} {
		var d appsv1.Deployment
		err := in.Client.Get(ctx, client.ObjectKey{Namespace: in.Migration.Namespace, Name: name}, &d)
		if apierrors.IsNotFound(err) {
			continue // SourceDeployments reports it
		}
		if err != nil {
			return false, err
		}
		if labels.SelectorFromSet(selector).Matches(labels.Set(d.Spec.Template.Labels)) {
			return true, nil
		}
	}
	return false, nil
}

func selectorOf(svc *unstructured.Unstructured) map[string]string {
	s, _, _ := unstructured.NestedStringMap(svc.Object, "spec", "selector")
	return s
}
