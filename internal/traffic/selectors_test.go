package traffic

import (
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

var webServices = []string{"mastodon-assets", "mastodon-emoji", "mastodon-web"}

func TestSourceServicesAreThoseSelectingSourcePods(t *testing.T) {
	old := loadOldStack(t)
	deployments := []*appsv1.Deployment{old.deployments["mastodon-web"], old.deployments["mastodon-streaming"],
		old.deployments["mastodon-worker"], nil}
	got := names(SourceServices(old.services, deployments))
	want := []string{"mastodon-assets", "mastodon-emoji", "mastodon-streaming", "mastodon-web"}
	if !slices.Equal(got, want) {
		t.Errorf("SourceServices = %v, want %v (the media proxy's Service is not Mastodon's)", got, want)
	}
	noSelector := corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "external"}}
	if got := SourceServices([]corev1.Service{noSelector}, deployments); len(got) != 0 {
		t.Errorf("a Service without a selector selects nothing, got %v", names(got))
	}
}

func TestReleaseTargetsOfTheChart(t *testing.T) {
	to := renderRelease(t).targets(t)
	web, streaming := to[Web], to[Streaming]
	// The official chart's web Service selects by name, instance and component; its pods also
	// carry part-of: rails, which the Service does not ask for.
	wantWeb := map[string]string{"app.kubernetes.io/name": "mastodon", "app.kubernetes.io/instance": release,
		"app.kubernetes.io/component": "web"}
	if !maps.Equal(web.Selector, wantWeb) || web.Service != releaseWeb || web.Port != releaseWebPort || web.PodTemplate == nil {
		t.Errorf("web target = %+v", web)
	}
	wantStreaming := map[string]string{"app.kubernetes.io/name": "mastodon", "app.kubernetes.io/instance": release,
		"app.kubernetes.io/component": "streaming"}
	if !maps.Equal(streaming.Selector, wantStreaming) || streaming.Service != releaseStream || streaming.Port != releaseStrmPort {
		t.Errorf("streaming target = %+v", streaming)
	}
	// A source Service already switched to the release's pods is not the release's Service.
	rel := renderRelease(t)
	switched := corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "mastodon-web"},
		Spec: corev1.ServiceSpec{Selector: wantWeb, Ports: []corev1.ServicePort{{Port: 3000}}}}
	if again, _ := ReleaseTargets(rel.deployments, append([]corev1.Service{switched}, rel.services...)); again[Web].Service != releaseWeb {
		t.Errorf("with a switched source Service, the web target is %s", again[Web].Service)
	}
	if _, problems := ReleaseTargets(map[string]*appsv1.Deployment{}, nil); len(problems) != 2 {
		t.Errorf("no release Deployments: problems %v, want one per component", problems)
	}
}

func TestPlanSelectorsMovesEachSourceServiceToItsComponent(t *testing.T) {
	old, to := loadOldStack(t), renderRelease(t).targets(t)
	changes, problems := PlanSelectors(old.services, old.source(), to)
	if len(problems) > 0 {
		t.Fatalf("problems: %v", problems)
	}
	got := byObject(changes)
	if want := []string{"Service/mastodon-assets/spec/selector", "Service/mastodon-emoji/spec/selector",
		"Service/mastodon-streaming/spec/selector", "Service/mastodon-web/spec/selector"}; !slices.Equal(sortedKeys(got), want) {
		t.Fatalf("changed %v, want %v (the media proxy's Service stays)", sortedKeys(got), want)
	}
	for _, name := range webServices {
		c := got["Service/"+name+PathSelector]
		if c.Component != Web || c.Before != `{"app":"mastodon-web"}` || !sameJSON(c.After, mustJSON(to[Web].Selector)) {
			t.Errorf("%s: %s (component %s)", name, c, c.Component)
		}
	}
	c := got["Service/mastodon-streaming"+PathSelector]
	if c.Component != Streaming || c.Before != `{"app":"mastodon-streaming"}` || !sameJSON(c.After, mustJSON(to[Streaming].Selector)) {
		t.Errorf("streaming: %s (component %s)", c, c.Component)
	}

	// Planned again once switched, there is nothing left to do.
	switched := slices.Clone(old.services)
	for i := range switched {
		if c, ok := got["Service/"+switched[i].Name+PathSelector]; ok {
			_ = json.Unmarshal([]byte(c.After), &switched[i].Spec.Selector)
		}
	}
	if changes, problems := PlanSelectors(switched, old.source(), to); len(changes)+len(problems) != 0 {
		t.Errorf("after the switch: changes %v, problems %v", changes, problems)
	}
}

func TestPlanSelectorsLeavesOtherServicesAlone(t *testing.T) {
	old, to := loadOldStack(t), renderRelease(t).targets(t)
	sidekiq := corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "sidekiq-metrics"},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "mastodon-worker"}, Ports: []corev1.ServicePort{{Port: 9394}}}}
	manual := corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "manual-endpoints"}, Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}}}
	services := []corev1.Service{*old.service("mastodon-media-proxy"), sidekiq, manual}
	if changes, problems := PlanSelectors(services, old.source(), to); len(changes)+len(problems) != 0 {
		t.Errorf("changes %v, problems %v", changes, problems)
	}
}

func TestPlanSelectorsProblems(t *testing.T) {
	old, rel := loadOldStack(t), renderRelease(t)
	for name, tc := range map[string]struct {
		edit func(services []corev1.Service, source map[Component]*appsv1.Deployment, to map[Component]Target) []corev1.Service
		want []string // substrings of the problems, one each
	}{
		"web port renamed on the new pods": {
			edit: func(s []corev1.Service, _ map[Component]*appsv1.Deployment, to map[Component]Target) []corev1.Service {
				to[Web].PodTemplate.Spec.Containers[0].Ports[0].Name = "puma"
				return s
			},
			// In the order of the Services.
			want: []string{
				`Service/mastodon-web: port http (3000) targets a container port named "http" (TCP), which the target's pods do not have (they have puma=3000/TCP)`,
				"Service/mastodon-assets: port http (3000)", "Service/mastodon-emoji: port http (3000)"},
		},
		"no streaming target": {
			edit: func(s []corev1.Service, _ map[Component]*appsv1.Deployment, to map[Component]Target) []corev1.Service {
				delete(to, Streaming)
				return s
			},
			want: []string{"Service/mastodon-streaming: serves streaming, but there is no streaming target"},
		},
		"target selector of another release": {
			edit: func(s []corev1.Service, _ map[Component]*appsv1.Deployment, to map[Component]Target) []corev1.Service {
				w := to[Web]
				w.Selector = maps.Clone(w.Selector)
				w.Selector["app.kubernetes.io/instance"] = "mastodon-hlem"
				to[Web] = w
				return s
			},
			want: []string{"target web: selector app.kubernetes.io/component=web,app.kubernetes.io/instance=mastodon-hlem"},
		},
		"a Service picking both components": {
			edit: func(s []corev1.Service, source map[Component]*appsv1.Deployment, _ map[Component]Target) []corev1.Service {
				for _, d := range source {
					d.Spec.Template.Labels["tier"] = "frontend"
				}
				return append(s, corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "frontend"},
					Spec: corev1.ServiceSpec{Selector: map[string]string{"tier": "frontend"}}})
			},
			want: []string{"Service/frontend: selector tier=frontend picks the pods of streaming and web at once"},
		},
	} {
		t.Run(name, func(t *testing.T) {
			source := map[Component]*appsv1.Deployment{}
			for c, d := range old.source() {
				source[c] = d.DeepCopy()
			}
			to := map[Component]Target{}
			for c, tg := range rel.targets(t) {
				tg.PodTemplate = tg.PodTemplate.DeepCopy()
				to[c] = tg
			}
			services := tc.edit(slices.Clone(old.services), source, to)
			changes, problems := PlanSelectors(services, source, to)
			if len(changes) != 0 {
				t.Errorf("changes despite problems: %v", changes)
			}
			if len(problems) != len(tc.want) {
				t.Fatalf("problems %v, want %d", problems, len(tc.want))
			}
			for i, want := range tc.want {
				if !strings.Contains(problems[i].String(), want) {
					t.Errorf("problem %d = %q, want it to contain %q", i, problems[i], want)
				}
			}
		})
	}
}

func TestCheckPorts(t *testing.T) {
	tmpl := &corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{
		{Name: "web", Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 3000, Protocol: corev1.ProtocolTCP}}},
		{Name: "sidecar", Ports: []corev1.ContainerPort{{Name: "dns", ContainerPort: 53, Protocol: corev1.ProtocolUDP}, {ContainerPort: 9090}}},
	}}}
	for name, tc := range map[string]struct {
		port corev1.ServicePort
		ok   bool
	}{
		"by name":                       {corev1.ServicePort{Port: 80, TargetPort: intstr.FromString("http")}, true},
		"by name, unknown":              {corev1.ServicePort{Port: 80, TargetPort: intstr.FromString("streaming")}, false},
		"by name, other protocol":       {corev1.ServicePort{Port: 53, TargetPort: intstr.FromString("dns")}, false},
		"by name and protocol":          {corev1.ServicePort{Port: 53, TargetPort: intstr.FromString("dns"), Protocol: corev1.ProtocolUDP}, true},
		"by number":                     {corev1.ServicePort{Port: 80, TargetPort: intstr.FromInt32(3000)}, true},
		"by number, in a second one":    {corev1.ServicePort{Port: 80, TargetPort: intstr.FromInt32(9090)}, true},
		"by number, unknown":            {corev1.ServicePort{Port: 80, TargetPort: intstr.FromInt32(4000)}, false},
		"no targetPort: the port":       {corev1.ServicePort{Port: 3000}, true},
		"no targetPort: unknown port":   {corev1.ServicePort{Port: 80}, false},
		"by number, other protocol":     {corev1.ServicePort{Port: 80, TargetPort: intstr.FromInt32(3000), Protocol: corev1.ProtocolSCTP}, false},
		"by number, protocol explicit":  {corev1.ServicePort{Port: 80, TargetPort: intstr.FromInt32(3000), Protocol: corev1.ProtocolTCP}, true},
		"by name, protocol explicit":    {corev1.ServicePort{Port: 80, TargetPort: intstr.FromString("http"), Protocol: corev1.ProtocolTCP}, true},
		"by name matching another name": {corev1.ServicePort{Name: "http", Port: 80, TargetPort: intstr.FromString("web")}, false},
	} {
		t.Run(name, func(t *testing.T) {
			s := corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "s"}, Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{tc.port}}}
			problems := CheckPorts(s, tmpl)
			if ok := len(problems) == 0; ok != tc.ok {
				t.Errorf("ok = %v, want %v (problems %v)", ok, tc.ok, problems)
			}
		})
	}
	if problems := CheckPorts(corev1.Service{}, nil); len(problems) != 1 {
		t.Errorf("no template: %v", problems)
	}
}
