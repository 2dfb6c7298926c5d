package values

import (
	"testing"

	"helm.sh/helm/v3/pkg/chartutil"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/mastodon-operator/mastodon-operator/test/fixture"
)

// fixtureSource is the production overlay of the Kustomize fixture as a Source: web,
// streaming, the Sidekiq worker, the ConfigMap and Secret they reference, and its Ingress.
func fixtureSource(t *testing.T) Source {
	return layoutSource(t, fixture.LayoutProduction, "mastodon-worker")
}

// layoutSource is a layout of the fixture as a Source: Deployments mastodon-web,
// mastodon-streaming and the worker named, every ConfigMap and Secret, Ingress mastodon.
func layoutSource(t *testing.T, layout, worker string) Source {
	t.Helper()
	objs, err := fixture.Layout(layout)
	if err != nil {
		t.Fatal(err)
	}
	src := Source{ConfigMaps: map[string]*corev1.ConfigMap{}, Secrets: map[string]*corev1.Secret{}}
	for _, obj := range objs {
		convert := func(into any) {
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(obj.Object, into); err != nil {
				t.Fatalf("%s %s: %v", obj.GetKind(), obj.GetName(), err)
			}
		}
		switch obj.GetKind() {
		case "Deployment":
			d := &appsv1.Deployment{}
			convert(d)
			switch d.Name {
			case "mastodon-web":
				src.Web = d
			case "mastodon-streaming":
				src.Streaming = d
			case worker:
				src.Sidekiq = append(src.Sidekiq, d)
			}
		case "ConfigMap":
			cm := &corev1.ConfigMap{}
			convert(cm)
			src.ConfigMaps[cm.Name] = cm
		case "Secret":
			s := &corev1.Secret{}
			convert(s)
			src.Secrets[s.Name] = s
		case "Ingress":
			src.Ingress = obj.GetName()
		}
	}
	if src.Web == nil || src.Streaming == nil || len(src.Sidekiq) != 1 || src.Ingress != "mastodon" {
		t.Fatalf("layout %s lacks a Mastodon Deployment or Ingress mastodon", layout)
	}
	return src
}

// mergeTables is Helm's, under a name that keeps the import in one place.
var mergeTables = chartutil.MergeTables
