package preflight

import (
	"context"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
)

// imageUnchanged checks that the release runs the Mastodon image the source web Deployment runs
// (its first container): with another version, the chart's hook Jobs migrate the shared
// database before any traffic moves, and the old pods then run against a schema they do not
// know. spec.preflight.allowImageChange accepts that (and requires a database backup).
func imageUnchanged(ctx context.Context, in Input) ([]v1alpha1.Finding, error) {
	if in.Migration.Spec.Preflight.AllowImageChange {
		return nil, nil
	}
	w, err := webImages(ctx, in)
	if err != nil || w == nil || sameImage(w.old, w.new) {
		return nil, err
	}
	return []v1alpha1.Finding{finding("Deployment/"+w.release,
		"runs image %s, but Deployment %s runs %s: the chart's hook Jobs would migrate the shared database to the new version before any traffic moves; set image.repository and image.tag in spec.release.values to the old image, or set spec.preflight.allowImageChange (which requires a database backup)",
		w.new, w.source, w.old)}, nil
}

// webPair is the Mastodon image of the source web Deployment (its first container) and of the
// release's web Deployment, with their names.
type webPair struct {
	source, release, old, new string
}

// webImages reads both web images; nil when the release renders none, or the source web
// Deployment is missing (SourceDeployments' finding) or the release has no web (TargetPorts and
// the traffic switch report it).
func webImages(ctx context.Context, in Input) (*webPair, error) {
	p := in.release(ctx)
	if p.manifests == nil {
		return nil, nil
	}
	src, err := sourceDeployment(ctx, in, in.Migration.Spec.Source.Web.Deployment)
	if err != nil || src == nil || len(src.Spec.Template.Spec.Containers) == 0 {
		return nil, err
	}
	deployments, err := p.manifests.Deployments()
	if err != nil {
		return nil, err
	}
	web := deployments["web"]
	if web == nil {
		return nil, nil
	}
	c := container(web.Spec.Template.Spec, "web")
	if c == nil {
		return nil, nil
	}
	return &webPair{source: src.Name, release: web.Name, old: src.Spec.Template.Spec.Containers[0].Image, new: c.Image}, nil
}

// sourceDeployment reads a source Deployment; nil when it does not exist.
func sourceDeployment(ctx context.Context, in Input, name string) (*appsv1.Deployment, error) {
	d := &appsv1.Deployment{}
	err := in.Client.Get(ctx, client.ObjectKey{Namespace: in.Migration.Namespace, Name: name}, d)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return d, nil
}

// container returns the container of that name, or the first, or nil.
func container(pod corev1.PodSpec, name string) *corev1.Container {
	for i := range pod.Containers {
		if pod.Containers[i].Name == name {
			return &pod.Containers[i]
		}
	}
	if len(pod.Containers) > 0 {
		return &pod.Containers[0]
	}
	return nil
}

// sameImage compares two image references by repository and tag, or by digest when both
// have one. docker.io's implicit registry and library/ prefix are normalised.
func sameImage(a, b string) bool {
	ra, ta, da := splitImage(a)
	rb, tb, db := splitImage(b)
	if normalRepo(ra) != normalRepo(rb) {
		return false
	}
	if da != "" && db != "" {
		return da == db
	}
	return da == db && orLatest(ta) == orLatest(tb)
}

func splitImage(image string) (repo, tag, digest string) {
	if i := strings.Index(image, "@"); i >= 0 {
		image, digest = image[:i], image[i+1:]
	}
	if i := strings.LastIndex(image, ":"); i > strings.LastIndex(image, "/") {
		image, tag = image[:i], image[i+1:]
	}
	return image, tag, digest
}

func normalRepo(repo string) string {
	repo = strings.TrimPrefix(repo, "index.docker.io/")
	repo = strings.TrimPrefix(repo, "docker.io/")
	first, _, found := strings.Cut(repo, "/")
	if found && (strings.ContainsAny(first, ".:") || first == "localhost") {
		return repo
	}
	if !found {
		repo = "library/" + repo
	}
	return "docker.io/" + repo
}

func orLatest(tag string) string {
	if tag == "" {
		return "latest"
	}
	return tag
}
