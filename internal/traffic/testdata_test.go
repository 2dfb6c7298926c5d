package traffic

import (
	"maps"
	"slices"
	"testing"

	"helm.sh/helm/v3/pkg/chart/loader"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/mastodon-operator/mastodon-operator/internal/helm"
	"github.com/mastodon-operator/mastodon-operator/test/fixture"
)

// The tests run on the real shapes: the production overlay of the Kustomize fixture on the old
// side, the official chart rendered as release mastodon-helm on
// the new side.
const (
	release         = "mastodon-helm"
	releaseWeb      = "mastodon-helm-web"
	releaseStream   = "mastodon-helm-streaming"
	releaseWebPort  = 3000
	releaseStrmPort = 4000
)

// oldStack is the Kustomize fixture, typed.
type oldStack struct {
	objects     []*unstructured.Unstructured
	services    []corev1.Service
	deployments map[string]*appsv1.Deployment
	ingress     *networkingv1.Ingress
}

func (s oldStack) source() map[Component]*appsv1.Deployment {
	return map[Component]*appsv1.Deployment{Web: s.deployments["mastodon-web"], Streaming: s.deployments["mastodon-streaming"]}
}

func (s oldStack) service(name string) *corev1.Service {
	for i := range s.services {
		if s.services[i].Name == name {
			return &s.services[i]
		}
	}
	return nil
}

func (s oldStack) stack() Stack {
	return Stack{Source: s.source(), Services: s.services, Ingress: s.ingress}
}

func loadOldStack(t *testing.T) oldStack {
	t.Helper()
	objs, err := fixture.Objects()
	if err != nil {
		t.Fatal(err)
	}
	s := oldStack{objects: objs, deployments: map[string]*appsv1.Deployment{}}
	for _, o := range objs {
		switch o.GetKind() {
		case "Service":
			s.services = append(s.services, typed[corev1.Service](t, o))
		case "Deployment":
			d := typed[appsv1.Deployment](t, o)
			s.deployments[d.Name] = &d
		case "Ingress":
			ing := typed[networkingv1.Ingress](t, o)
			s.ingress = &ing
		}
	}
	return s
}

// newStack is the release as the chart renders it.
type newStack struct {
	objects     []*unstructured.Unstructured
	deployments map[string]*appsv1.Deployment
	services    []corev1.Service
}

func (s newStack) targets(t *testing.T) map[Component]Target {
	t.Helper()
	to, problems := ReleaseTargets(s.deployments, s.services)
	if len(problems) > 0 {
		t.Fatalf("release targets: %v", problems)
	}
	return to
}

func renderRelease(t *testing.T) newStack {
	t.Helper()
	chrt, err := loader.Load(fixture.OfficialChart())
	if err != nil {
		t.Fatal(err)
	}
	m, err := helm.Render(chrt, fixture.OfficialChartMinimalValues("mastodon"), release, "mastodon")
	if err != nil {
		t.Fatal(err)
	}
	s := newStack{objects: m.Resources, deployments: map[string]*appsv1.Deployment{}}
	for _, o := range m.Resources {
		switch o.GetKind() {
		case "Service":
			s.services = append(s.services, typed[corev1.Service](t, o))
		case "Deployment":
			d := typed[appsv1.Deployment](t, o)
			s.deployments[d.Spec.Template.Labels["app.kubernetes.io/component"]] = &d
		}
	}
	return s
}

func typed[T any](t *testing.T, u *unstructured.Unstructured) T {
	t.Helper()
	var out T
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &out); err != nil {
		t.Fatalf("%s %s: %v", u.GetKind(), u.GetName(), err)
	}
	return out
}

func names(services []corev1.Service) []string {
	out := make([]string, len(services))
	for i, s := range services {
		out[i] = s.Name
	}
	slices.Sort(out)
	return out
}

// byObject indexes changes by object and path.
func byObject(changes []Change) map[string]Change {
	out := map[string]Change{}
	for _, c := range changes {
		out[c.Object()+c.Path] = c
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }

// maintenanceService is the maintenance page's Service, as it is created.
func maintenanceService(t *testing.T, name string) corev1.Service {
	t.Helper()
	for _, o := range MaintenanceObjects("", name, "") {
		if s, ok := o.(*corev1.Service); ok {
			return *s
		}
	}
	t.Fatal("MaintenanceObjects has no Service")
	return corev1.Service{}
}
