package preflight

import (
	"context"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
)

// mark is the labels and annotations a test gives one object; marks are by Kind/name.
type mark struct{ labels, annotations map[string]string }

type marks map[string]mark

func flux(name string) mark {
	return mark{labels: map[string]string{
		"kustomize.toolkit.fluxcd.io/name": name, "kustomize.toolkit.fluxcd.io/namespace": "flux-system"}}
}

// gitOpsStack creates a small source stack in a namespace of its own, each object with its
// marks: web, streaming and a worker reading ConfigMap mastodon-env and Secret mastodon, their
// Services (found by default, as selecting source pods), the Ingress, an HPA as an extra
// resource, and beside them a media proxy and a ConfigMap that the migration does not touch.
func gitOpsStack(t *testing.T, m marks) Input {
	t.Helper()
	ctx := context.Background()
	c := apiServer(t)
	ns := newNamespace(t, c)
	create := func(kind string, obj client.Object) {
		t.Helper()
		mk := m[kind+"/"+obj.GetName()]
		obj.SetNamespace(ns)
		obj.SetLabels(mk.labels)
		obj.SetAnnotations(mk.annotations)
		if err := c.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}
	env := []corev1.EnvFromSource{
		{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "mastodon-env"}}},
		{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "mastodon"}}},
	}
	create("ConfigMap", &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "mastodon-env"}})
	create("ConfigMap", &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "unrelated"}})
	create("Secret", &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "mastodon"}})
	for _, name := range []string{"mastodon-web", "mastodon-streaming", "mastodon-worker", "mastodon-media-proxy"} {
		pods := map[string]string{"app": name}
		d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: pods},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: pods}, Spec: corev1.PodSpec{
				Containers: []corev1.Container{{Name: "main", Image: "ghcr.io/mastodon/mastodon:v4.6.2"}}}}}}
		if name != "mastodon-media-proxy" {
			d.Spec.Template.Spec.Containers[0].EnvFrom = env
		}
		create("Deployment", d)
	}
	for _, name := range []string{"mastodon-web", "mastodon-streaming", "mastodon-media-proxy"} {
		create("Service", &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": name}, Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}})
	}
	backend := networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{
		Name: "mastodon-web", Port: networkingv1.ServiceBackendPort{Number: 80}}}
	create("Ingress", &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Name: "mastodon"},
		Spec: networkingv1.IngressSpec{DefaultBackend: &backend}})
	create("HorizontalPodAutoscaler", &autoscalingv2.HorizontalPodAutoscaler{ObjectMeta: metav1.ObjectMeta{Name: "mastodon-web"},
		Spec: autoscalingv2.HorizontalPodAutoscalerSpec{MaxReplicas: 4, MinReplicas: ptr.To[int32](2),
			ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "mastodon-web"}}})

	mig := &v1alpha1.MastodonMigration{ObjectMeta: metav1.ObjectMeta{Name: "migrate", Namespace: ns},
		Spec: v1alpha1.MastodonMigrationSpec{Source: v1alpha1.SourceSpec{
			Web:       v1alpha1.ComponentRef{Deployment: "mastodon-web"},
			Streaming: v1alpha1.ComponentRef{Deployment: "mastodon-streaming"},
			Sidekiq:   []v1alpha1.ComponentRef{{Deployment: "mastodon-worker"}},
			Ingress:   "mastodon",
			ExtraResources: []v1alpha1.ObjectRef{
				{APIVersion: "autoscaling/v2", Kind: "HorizontalPodAutoscaler", Name: "mastodon-web"}},
		}}}
	return Input{Client: c, Migration: mig}
}

// everything gives every object of gitOpsStack the marks of Flux Kustomization
// flux-system/mastodon, but the media proxy's Deployment and Service those of another one.
func everything() marks {
	m := marks{}
	for _, o := range []string{"ConfigMap/mastodon-env", "ConfigMap/unrelated", "Secret/mastodon",
		"Deployment/mastodon-web", "Deployment/mastodon-streaming", "Deployment/mastodon-worker",
		"Service/mastodon-web", "Service/mastodon-streaming", "Ingress/mastodon", "HorizontalPodAutoscaler/mastodon-web"} {
		m[o] = flux("mastodon")
	}
	m["Deployment/mastodon-media-proxy"] = flux("media-proxy")
	m["Service/mastodon-media-proxy"] = flux("media-proxy")
	return m
}

func checkGitOps(t *testing.T, in Input) []v1alpha1.Finding {
	t.Helper()
	findings, err := gitOpsOwners(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	return findings
}

func TestGitOpsOwnersFindsFluxKustomizationOnce(t *testing.T) {
	findings := checkGitOps(t, gitOpsStack(t, everything()))
	// The media proxy's Kustomization applies nothing the migration touches; ConfigMap/unrelated
	// is no source pod's.
	want := []v1alpha1.Finding{{Object: "flux/flux-system/mastodon", Class: v1alpha1.FindingBlocks,
		Message: "Flux Kustomization flux-system/mastodon applies 9 objects the migration changes or reads " +
			"(Deployment/mastodon-web, Deployment/mastodon-streaming, Deployment/mastodon-worker and 6 more): " +
			"kustomize-controller re-applies them on every interval and would undo the traffic switch " +
			"(Service selectors, HPA targets, scaled-down Deployments). " +
			"Suspend it (flux suspend kustomization mastodon -n flux-system), then add flux/flux-system/mastodon " +
			"to spec.preflight.acceptGitOpsOwners; resume it only once Git has the new stack"}}
	if len(findings) != 1 || findings[0] != want[0] {
		t.Fatalf("findings %+v\nwant %+v", findings, want)
	}
}

func TestGitOpsOwnersFindsArgoCDByLabelAndByAnnotation(t *testing.T) {
	argo := func(labels, annotations map[string]string) mark { return mark{labels, annotations} }
	in := gitOpsStack(t, marks{
		"Deployment/mastodon-worker": argo(nil, map[string]string{
			"argocd.argoproj.io/tracking-id": "mastodon:apps/Deployment:mastodon/mastodon-worker"}),
		"Service/mastodon-web": argo(map[string]string{"argocd.argoproj.io/instance": "mastodon"}, nil),
		// The annotation is what Argo CD tracks by when there are both.
		"HorizontalPodAutoscaler/mastodon-web": argo(map[string]string{"argocd.argoproj.io/instance": "mastodon"},
			map[string]string{"argocd.argoproj.io/tracking-id": "platform_autoscaling:autoscaling/HorizontalPodAutoscaler:mastodon/mastodon-web"}),
	})
	findings := checkGitOps(t, in)
	want := []struct{ object, prefix, id string }{
		{"argocd/mastodon", "Argo CD Application mastodon applies 2 objects the migration changes or reads (Deployment/mastodon-worker, Service/mastodon-web): ", "argocd/mastodon"},
		{"argocd/platform/autoscaling", "Argo CD Application platform/autoscaling applies 1 object the migration changes or reads (HorizontalPodAutoscaler/mastodon-web): ", "argocd/platform/autoscaling"},
	}
	if len(findings) != len(want) {
		t.Fatalf("findings %+v, want %d", findings, len(want))
	}
	for i, w := range want {
		f := findings[i]
		if f.Object != w.object || f.Class != v1alpha1.FindingBlocks || !strings.HasPrefix(f.Message, w.prefix) ||
			!strings.Contains(f.Message, "Turn off its automated sync (syncPolicy.automated") ||
			!strings.Contains(f.Message, "add "+w.id+" to spec.preflight.acceptGitOpsOwners") {
			t.Errorf("finding %+v\nwant object %s, class Blocks, message from %q naming %s", f, w.object, w.prefix, w.id)
		}
	}
}

func TestGitOpsOwnersAcceptedIsInformational(t *testing.T) {
	in := gitOpsStack(t, everything())
	// An entry for no owner (a typo, or one gone since) is ignored.
	in.Migration.Spec.Preflight.AcceptGitOpsOwners = []string{"argocd/mastodon", "flux/flux-system/mastodon"}
	findings := checkGitOps(t, in)
	want := v1alpha1.Finding{Object: "flux/flux-system/mastodon", Class: v1alpha1.FindingInformational,
		Message: "Flux Kustomization flux-system/mastodon applies 9 objects the migration changes or reads " +
			"(Deployment/mastodon-web, Deployment/mastodon-streaming, Deployment/mastodon-worker and 6 more): " +
			"accepted as suspended in spec.preflight.acceptGitOpsOwners (flux/flux-system/mastodon); keep it suspended " +
			"until Git has the new stack, or it undoes the traffic switch"}
	if len(findings) != 1 || findings[0] != want {
		t.Fatalf("findings %+v\nwant %+v", findings, want)
	}
}

func TestGitOpsOwnersFindsNothingWithoutMarks(t *testing.T) {
	// Only the objects the migration does not touch are GitOps-managed here; a lone Flux label
	// is not Flux's mark, nor a tracking-id that names no Application.
	in := gitOpsStack(t, marks{
		"Deployment/mastodon-media-proxy": flux("media-proxy"),
		"ConfigMap/unrelated":             flux("mastodon"),
		"Service/mastodon-web": {labels: map[string]string{"kustomize.toolkit.fluxcd.io/name": "mastodon"},
			annotations: map[string]string{"argocd.argoproj.io/tracking-id": "Not An App:/Service:x/y"}},
	})
	if findings := checkGitOps(t, in); len(findings) != 0 {
		t.Fatalf("findings %+v, want none", findings)
	}
}

// The longest names the API server allows still give a message within the API's limit, naming
// the owner's id.
func TestGitOpsOwnerMessageIsBounded(t *testing.T) {
	long := func(c byte, n int) string { return strings.Repeat(string(c), n) }
	app, ns := long('a', 253), long('n', 63)
	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: long('d', 253),
		Labels:      map[string]string{"kustomize.toolkit.fluxcd.io/name": long('k', 63), "kustomize.toolkit.fluxcd.io/namespace": ns},
		Annotations: map[string]string{"argocd.argoproj.io/tracking-id": ns + "_" + app + ":apps/Deployment:x/y"}}}
	owners := ownersOf(d)
	if len(owners) != 2 || owners[1].id != "argocd/"+ns+"/"+app {
		t.Fatalf("owners %+v, want Flux's and argocd/<ns>/<app>", owners)
	}
	for _, o := range owners {
		for i := range 5 {
			o.objects = append(o.objects, "HorizontalPodAutoscaler/"+long(byte('a'+i), 253))
		}
		for _, accepted := range []bool{false, true} {
			msg := o.message(accepted)
			if len(msg) > maxFindingMessage || !strings.Contains(msg, o.id) || !strings.Contains(msg, "5 objects") {
				t.Errorf("message of %d bytes, want at most %d naming %s and its 5 objects: %s", len(msg), maxFindingMessage, o.id, msg)
			}
		}
	}
}
