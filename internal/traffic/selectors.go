package traffic

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// PathSelector is the field the ServiceSelector method changes.
const PathSelector = "/spec/selector"

// selects reports whether a Service selector picks pods with these labels. An empty selector
// picks nothing: a Service without one has its endpoints managed by hand.
func selects(selector, podLabels map[string]string) bool {
	return len(selector) > 0 && labels.SelectorFromValidatedSet(selector).Matches(labels.Set(podLabels))
}

// SourceServices returns the Services whose selector picks pods of one of the deployments (nil
// entries are skipped), in their order: the Services traffic moves when the spec names none.
func SourceServices(services []corev1.Service, deployments []*appsv1.Deployment) []corev1.Service {
	var out []corev1.Service
	for _, s := range services {
		for _, d := range deployments {
			if d != nil && selects(s.Spec.Selector, d.Spec.Template.Labels) {
				out = append(out, s)
				break
			}
		}
	}
	return out
}

// componentsOf lists, in Components order, the components whose source pods the selector picks.
func componentsOf(selector map[string]string, source map[Component]*appsv1.Deployment) []Component {
	var out []Component
	for _, c := range Components {
		if d := source[c]; d != nil && selects(selector, d.Spec.Template.Labels) {
			out = append(out, c)
		}
	}
	return out
}

// PlanSelectors plans the ServiceSelector method: each Service whose selector picks the pods of
// exactly one source component gets the selector of that component's target. A Service that
// picks no source pods (the media proxy's, a Sidekiq metrics Service) or already has the
// target's selector is left out. When there are problems there are no changes. Problems: a Service that picks both components' pods, a
// component without a target, a target whose selector misses its own pods, and every port of a
// moved Service that would not resolve on the target's pods (CheckPorts).
func PlanSelectors(services []corev1.Service, source map[Component]*appsv1.Deployment, to map[Component]Target) ([]Change, []Problem) {
	var changes []Change
	var problems []Problem
	for _, c := range Components {
		if t, ok := to[c]; ok && t.PodTemplate != nil && !selects(t.Selector, t.PodTemplate.Labels) {
			problems = append(problems, problem("target "+string(c),
				"selector %s does not select the target's pods (labels %s)", labelString(t.Selector), labelString(t.PodTemplate.Labels)))
		}
	}
	for _, s := range services {
		obj := "Service/" + s.Name
		if switched(s.Spec.Selector, to) {
			continue
		}
		comps := componentsOf(s.Spec.Selector, source)
		switch {
		case len(comps) == 0:
			continue
		case len(comps) > 1:
			problems = append(problems, problem(obj, "selector %s picks the pods of %s at once, so it is unclear which component it serves: give it a narrower selector or leave it out of spec.source.services",
				labelString(s.Spec.Selector), joinComponents(comps)))
			continue
		}
		c := comps[0]
		t, ok := to[c]
		if !ok {
			problems = append(problems, problem(obj, "serves %s, but there is no %s target to move it to", c, c))
			continue
		}
		if ps := CheckPorts(s, t.PodTemplate); len(ps) > 0 {
			problems = append(problems, ps...)
			continue
		}
		changes = append(changes, Change{
			Kind: "Service", Name: s.Name, Path: PathSelector, Component: c,
			Before: mustJSON(s.Spec.Selector), After: mustJSON(t.Selector),
		})
	}
	if len(problems) > 0 {
		return nil, problems
	}
	return changes, nil
}

// switched reports whether a selector already is one of the targets'.
func switched(selector map[string]string, to map[Component]Target) bool {
	for _, t := range to {
		if len(selector) > 0 && maps.Equal(selector, t.Selector) {
			return true
		}
	}
	return false
}

// CheckPorts reports each port of the Service that would not resolve on pods of the template,
// as the endpoints controller resolves them: a targetPort by name needs a container port of
// that name and protocol, a targetPort by number (or none: the Service port) a container port of
// that number and protocol. It is the preflight check of a switch.
func CheckPorts(s corev1.Service, tmpl *corev1.PodTemplateSpec) []Problem {
	obj := "Service/" + s.Name
	if tmpl == nil {
		return []Problem{problem(obj, "the target's pod template is unknown, so its ports cannot be checked")}
	}
	var problems []Problem
	for _, p := range s.Spec.Ports {
		proto := orTCP(p.Protocol)
		target := p.TargetPort
		if target.Type == intstr.Int && target.IntVal == 0 {
			target = intstr.FromInt32(p.Port)
		}
		if findPort(tmpl, target, proto) {
			continue
		}
		what := fmt.Sprintf("a container port named %q", target.StrVal)
		if target.Type == intstr.Int {
			what = fmt.Sprintf("container port %d", target.IntVal)
		}
		problems = append(problems, problem(obj, "port %s targets %s (%s), which the target's pods do not have (they have %s)",
			portName(p), what, proto, containerPorts(tmpl)))
	}
	return problems
}

func findPort(tmpl *corev1.PodTemplateSpec, target intstr.IntOrString, proto corev1.Protocol) bool {
	for _, c := range tmpl.Spec.Containers {
		for _, cp := range c.Ports {
			if orTCP(cp.Protocol) != proto {
				continue
			}
			if (target.Type == intstr.String && cp.Name == target.StrVal) ||
				(target.Type == intstr.Int && cp.ContainerPort == target.IntVal) {
				return true
			}
		}
	}
	return false
}

func orTCP(p corev1.Protocol) corev1.Protocol {
	if p == "" {
		return corev1.ProtocolTCP
	}
	return p
}

func portName(p corev1.ServicePort) string {
	if p.Name != "" {
		return fmt.Sprintf("%s (%d)", p.Name, p.Port)
	}
	return fmt.Sprint(p.Port)
}

func containerPorts(tmpl *corev1.PodTemplateSpec) string {
	var out []string
	for _, c := range tmpl.Spec.Containers {
		for _, cp := range c.Ports {
			s := fmt.Sprint(cp.ContainerPort)
			if cp.Name != "" {
				s = cp.Name + "=" + s
			}
			out = append(out, s+"/"+string(orTCP(cp.Protocol)))
		}
	}
	if len(out) == 0 {
		return "no declared ports"
	}
	return strings.Join(out, ", ")
}

// labelInstance is the chart's label naming the release, on its pods and its Services.
const labelInstance = "app.kubernetes.io/instance"

// ReleaseTargets finds the targets of a release among its Deployments (keyed by the chart's
// app.kubernetes.io/component label, as the controller lists them) and the namespace's Services:
// for web and streaming, the Deployment's pod template, and the release's Service that selects
// its pods (labelled with the release's app.kubernetes.io/instance), whose selector and first
// port the switch uses.
func ReleaseTargets(deployments map[string]*appsv1.Deployment, services []corev1.Service) (map[Component]Target, []Problem) {
	to := map[Component]Target{}
	var problems []Problem
	for _, c := range Components {
		d := deployments[string(c)]
		if d == nil {
			problems = append(problems, problem("release "+string(c), "the release has no %s Deployment", c))
			continue
		}
		// The release's own Service: labelled with the release's instance, like its pods, so that
		// a source Service already switched to these pods is not taken for it.
		instance := d.Spec.Template.Labels[labelInstance]
		var svc *corev1.Service
		for i := range services {
			if services[i].Labels[labelInstance] == instance && selects(services[i].Spec.Selector, d.Spec.Template.Labels) {
				svc = &services[i]
				break
			}
		}
		if svc == nil || len(svc.Spec.Ports) == 0 {
			problems = append(problems, problem("Deployment/"+d.Name, "no Service of the release selects its pods on a port"))
			continue
		}
		to[c] = Target{
			Selector:    maps.Clone(svc.Spec.Selector),
			PodTemplate: d.Spec.Template.DeepCopy(),
			Service:     svc.Name,
			Port:        svc.Spec.Ports[0].Port,
		}
	}
	return to, problems
}

// labelString writes a label set as a selector, such as app=mastodon-web.
func labelString(set map[string]string) string {
	if len(set) == 0 {
		return "(none)"
	}
	return labels.Set(set).String()
}

func joinComponents(cs []Component) string {
	s := make([]string, len(cs))
	for i, c := range cs {
		s[i] = string(c)
	}
	slices.Sort(s)
	return strings.Join(s, " and ")
}
