package traffic

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
)

// The GKE annotations of a Service that the load balancer reads: container-native load balancing
// (NEGs) and the BackendConfig (health check, timeouts, CDN). The Ingress method copies them from
// each source Service to the target Service its backends move to.
const (
	AnnotationNEG           = "cloud.google.com/neg"
	AnnotationBackendConfig = "beta.cloud.google.com/backend-config"
)

// LoadBalancerAnnotations are the annotations the Ingress method copies, in the order it copies
// them.
var LoadBalancerAnnotations = []string{AnnotationNEG, AnnotationBackendConfig}

// PlanIngress plans the Ingress method: each backend of ing (rules and default backend) that
// points at one of the source services gets the Service and port of the target of that
// Service's component; every other backend (the media proxy host) stays as it is. Before the
// backends, it plans copying the source Service's LoadBalancerAnnotations onto the target Service
// (targetServices as they are now), unless the target has OwnAnnotations, so that the load
// balancer finds the new backends configured as the old ones were.
//
// Problems: a backend whose Service picks both components' pods, a component without a
// target, a target Service that does not exist or lacks the
// port, a target Service whose own ports do not resolve on its pods, and two source Services of
// one target Service that disagree on an annotation.
func PlanIngress(ing *networkingv1.Ingress, services []corev1.Service, source map[Component]*appsv1.Deployment,
	targetServices []corev1.Service, to map[Component]Target) ([]Change, []Problem) {
	obj := "Ingress/" + ing.Name
	byName := map[string]corev1.Service{}
	for _, s := range services {
		byName[s.Name] = s
	}
	targets := map[string]corev1.Service{}
	for _, s := range targetServices {
		targets[s.Name] = s
	}

	var backends, annotations []Change
	var problems []Problem
	// For each target Service, in the order backends move to it: the source Services that
	// move there, with their component.
	type from struct {
		service   corev1.Service
		component Component
	}
	var order []string
	froms := map[string][]from{}
	checked := map[string]bool{}

	move := func(path string, b *networkingv1.IngressBackend) {
		if b == nil || b.Service == nil {
			return
		}
		src, ok := byName[b.Service.Name]
		if !ok {
			return
		}
		comps := componentsOf(src.Spec.Selector, source)
		switch {
		case len(comps) == 0:
			return // not a source component's Service
		case len(comps) > 1:
			problems = append(problems, problem(obj, "backend %s points at Service %s, whose selector %s picks the pods of %s at once, so it is unclear where to move it",
				path, src.Name, labelString(src.Spec.Selector), joinComponents(comps)))
			return
		}
		c := comps[0]
		t, ok := to[c]
		if !ok {
			problems = append(problems, problem(obj, "backend %s points at Service %s, which serves %s, but there is no %s target", path, src.Name, c, c))
			return
		}
		// Each target (Service and port) is checked once; a problem of it is reported once.
		targetKey := fmt.Sprintf("%s:%d", t.Service, t.Port)
		ts, ok := targets[t.Service]
		if !checked[targetKey] {
			checked[targetKey] = true
			switch {
			case !ok:
				problems = append(problems, problem("Service/"+t.Service, "the %s target's Service does not exist", c))
			case !hasPort(ts, t.Port):
				problems = append(problems, problem("Service/"+ts.Name, "has no port %d for the Ingress backends of %s", t.Port, c))
			case !checked[ts.Name]:
				checked[ts.Name] = true
				problems = append(problems, CheckPorts(ts, t.PodTemplate)...)
			}
		}
		if !ok || !hasPort(ts, t.Port) {
			return
		}
		after := networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{
			Name: t.Service, Port: networkingv1.ServiceBackendPort{Number: t.Port},
		}}
		if before, after := mustJSON(b), mustJSON(after); before != after {
			backends = append(backends, Change{Kind: "Ingress", Name: ing.Name, Path: path, Component: c, Before: before, After: after})
		}
		if t.OwnAnnotations {
			return
		}
		if _, ok := froms[ts.Name]; !ok {
			order = append(order, ts.Name)
		}
		froms[ts.Name] = append(froms[ts.Name], from{src, c})
	}

	move("/spec/defaultBackend", ing.Spec.DefaultBackend)
	for i, r := range ing.Spec.Rules {
		if r.HTTP == nil {
			continue
		}
		for j := range r.HTTP.Paths {
			move(fmt.Sprintf("/spec/rules/%d/http/paths/%d/backend", i, j), &r.HTTP.Paths[j].Backend)
		}
	}
	for _, name := range order {
		ts := targets[name]
		for _, key := range LoadBalancerAnnotations {
			// The value every source Service moving here has (those without it add nothing).
			var value string
			var have []string
			values := map[string]bool{}
			var component Component
			for _, f := range froms[name] {
				if v, ok := f.service.Annotations[key]; ok && !slices.Contains(have, f.service.Name) {
					value, component = v, f.component
					values[v] = true
					have = append(have, f.service.Name)
				}
			}
			switch {
			case len(values) == 0:
				continue
			case len(values) > 1:
				problems = append(problems, problem("Service/"+name, "Services %s move to it with different %s annotations (%s): the load balancer can have only one; give them the same one, or move traffic with the ServiceSelector method",
					strings.Join(have, ", "), key, strings.Join(slices.Sorted(maps.Keys(values)), " vs ")))
				continue
			}
			var before string
			if v, ok := ts.Annotations[key]; ok {
				if v == value {
					continue
				}
				before = mustJSON(v)
			}
			annotations = append(annotations, Change{Kind: "Service", Name: name, Path: annotationPath(key), Component: component,
				Before: before, After: mustJSON(value)})
		}
	}
	if len(problems) > 0 {
		return nil, problems
	}
	// The target Services are configured before any backend points at them.
	return append(annotations, backends...), nil
}

func hasPort(s corev1.Service, port int32) bool {
	for _, p := range s.Spec.Ports {
		if p.Port == port {
			return true
		}
	}
	return false
}

// annotationPath is the JSON pointer of an annotation.
func annotationPath(key string) string { return "/metadata/annotations/" + escapePointer(key) }
