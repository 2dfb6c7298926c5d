package traffic

import (
	"maps"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

func maintenanceParts(t *testing.T, m Maintenance) (*corev1.ConfigMap, *appsv1.Deployment, *corev1.Service) {
	t.Helper()
	objs := m.Objects()
	if len(objs) != 3 {
		t.Fatalf("%d objects", len(objs))
	}
	cm, ok1 := objs[0].(*corev1.ConfigMap)
	d, ok2 := objs[1].(*appsv1.Deployment)
	s, ok3 := objs[2].(*corev1.Service)
	if !ok1 || !ok2 || !ok3 {
		t.Fatalf("objects %T %T %T", objs[0], objs[1], objs[2])
	}
	for _, o := range objs {
		if o.GetNamespace() != m.Namespace || o.GetName() != m.Name || o.GetObjectKind().GroupVersionKind().Kind == "" {
			t.Errorf("%T: namespace %q name %q kind %q", o, o.GetNamespace(), o.GetName(), o.GetObjectKind().GroupVersionKind().Kind)
		}
	}
	return cm, d, s
}

func TestMaintenanceObjects(t *testing.T) {
	cm, d, s := maintenanceParts(t, Maintenance{Namespace: "mastodon", Name: "maint"})
	if !strings.Contains(cm.Data["index.html"], "We'll be back shortly") {
		t.Errorf("default page:\n%s", cm.Data["index.html"])
	}
	conf := cm.Data["default.conf"]
	for _, want := range []string{"listen 3000;", "listen 4000;", "location = /health {", "location = /api/v1/streaming/health {",
		"return 200", "location / {\n        return 503;", "error_page 503 @maintenance;", "rewrite ^ /index.html break;", "Cache-Control \"no-store\""} {
		if !strings.Contains(conf, want) {
			t.Errorf("nginx configuration lacks %q:\n%s", want, conf)
		}
	}
	if !selects(d.Spec.Selector.MatchLabels, d.Spec.Template.Labels) || !selects(s.Spec.Selector, d.Spec.Template.Labels) {
		t.Error("the Deployment's or the Service's selector misses the pods")
	}
	if d.Spec.Template.Spec.Containers[0].Image != DefaultMaintenanceImage {
		t.Errorf("image %s", d.Spec.Template.Spec.Containers[0].Image)
	}
	if problems := CheckPorts(*s, &d.Spec.Template); len(problems) > 0 {
		t.Errorf("the Service's own ports: %v", problems)
	}
	if s.Annotations[AnnotationNEG] == "" {
		t.Error("the Service has no NEG annotation for the GKE Ingress")
	}

	// Another page rolls the pods; the same page does not.
	_, d2, _ := maintenanceParts(t, Maintenance{Namespace: "mastodon", Name: "maint", Page: "<p>gone fishing</p>", Image: "registry.local/nginx:1"})
	_, d3, _ := maintenanceParts(t, Maintenance{Namespace: "mastodon", Name: "maint", Page: DefaultMaintenancePage})
	if maps.Equal(d.Spec.Template.Annotations, d2.Spec.Template.Annotations) || !maps.Equal(d.Spec.Template.Annotations, d3.Spec.Template.Annotations) {
		t.Errorf("page checksums: %v %v %v", d.Spec.Template.Annotations, d2.Spec.Template.Annotations, d3.Spec.Template.Annotations)
	}
	if d2.Spec.Template.Spec.Containers[0].Image != "registry.local/nginx:1" {
		t.Error("the image is not the one asked for")
	}
	if objs := MaintenanceObjects("ns", "m", ""); len(objs) != 3 || objs[0].GetName() != "m" {
		t.Errorf("MaintenanceObjects: %v", objs)
	}
}

// The maintenance pods stand in for web and streaming behind the source Services as they are:
// same port names and numbers, health checks answered.
func TestMaintenanceTakesTheSourceServices(t *testing.T) {
	old := loadOldStack(t)
	to := MaintenanceTargets("maint")
	changes, problems := PlanSelectors(old.services, old.source(), to)
	if len(problems) > 0 {
		t.Fatalf("problems: %v", problems)
	}
	if len(changes) != 4 {
		t.Errorf("changes: %v", changes)
	}
	for _, c := range changes {
		if !sameJSON(c.After, mustJSON(to[Web].Selector)) {
			t.Errorf("%s", c)
		}
	}

	s := old.stack()
	s.TargetServices = []corev1.Service{maintenanceService(t, "maint")}
	changes, problems = IngressBackends{}.Plan(s, to)
	if len(problems) > 0 {
		t.Fatalf("problems: %v", problems)
	}
	got := byObject(changes)
	if len(got) != 4 {
		t.Errorf("changes: %v", changes)
	}
	for _, c := range changes {
		if c.Kind != "Ingress" {
			t.Errorf("the maintenance Service keeps its own annotations, got %s", c)
		}
	}
	if c := got["Ingress/mastodon/spec/rules/0/http/paths/0/backend"]; c.After != `{"service":{"name":"maint","port":{"number":4000}}}` {
		t.Errorf("streaming backend: %s", c)
	}
	if c := got["Ingress/mastodon/spec/rules/0/http/paths/3/backend"]; c.After != `{"service":{"name":"maint","port":{"number":3000}}}` {
		t.Errorf("web backend: %s", c)
	}
}
