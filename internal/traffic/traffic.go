// Package traffic moves the traffic of a Mastodon between the old, Kustomize-managed stack, the
// Helm release and a maintenance page, and back, the way argo-rollouts' blue-green does it.
//
// Two methods sit behind one interface, Switcher:
//
//   - ServiceSelector (the default) rewrites spec.selector of each source Service so that it
//     selects the target's pods of the same component. The Ingress, its static IP, certificate,
//     BackendConfigs and NEG annotations stay exactly as they are.
//   - Ingress rewrites the Ingress backends that point at a source Service so that they point at
//     the target's Service of the same component, and copies the GKE load-balancer annotations of
//     the source Service onto the target Service.
//
// Planning is pure: a Switcher looks at objects already read (a Stack) and returns Changes, each
// one field of one object with its JSON value before and after, and the Problems that stop the
// switch. Apply writes Changes with JSON patches guarded by `test` operations, so it replaces
// whole fields (a Service selector loses its old keys, which neither a JSON merge patch nor
// server-side apply under a second field manager would do), never overwrites a field someone else
// changed in the meantime, and does nothing for a change already made. Reverse undoes Changes;
// Then and Original chain switches (source -> maintenance -> release) without losing the way
// back.
//
// The controller plans once, records the Changes, applies them, and later reverts them from that
// record: what was there before is in the record, not in memory.
package traffic

import (
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
)

// Component is a part of Mastodon that serves traffic.
type Component string

// The components whose traffic moves. Sidekiq serves none.
const (
	Web       Component = "web"
	Streaming Component = "streaming"
)

// Components lists the components traffic moves, in a stable order.
var Components = []Component{Web, Streaming}

// Target is where a component's traffic goes: the release's pods and Service, or the
// maintenance page's.
type Target struct {
	// Selector selects the target's pods; a switched source Service gets exactly this selector.
	Selector map[string]string
	// PodTemplate is the template of the target's pods: their labels must match Selector, and
	// the target ports of the source Services must resolve on its containers.
	PodTemplate *corev1.PodTemplateSpec
	// Service is the target's Service, for the Ingress method.
	Service string
	// Port is the port of Service that the Ingress backends get.
	Port int32
	// OwnAnnotations says that Service carries its own load-balancer annotations, so the Ingress
	// method copies none onto it (the maintenance page's Service serves every component).
	OwnAnnotations bool
}

// Problem is one reason a switch cannot be made as planned.
type Problem struct {
	// Object is what the problem is about, such as Service/mastodon-web.
	Object string
	// Message says what is wrong and what to do.
	Message string
}

func (p Problem) String() string { return p.Object + ": " + p.Message }

func problem(object, format string, args ...any) Problem {
	return Problem{Object: object, Message: fmt.Sprintf(format, args...)}
}

// Change is one field of one object that a switch changes. Before and After are the field's
// JSON, "" when the field is absent. A Change is plain data: record it (it marshals to JSON) and
// Reverse it later to go back.
type Change struct {
	// Kind is Service or Ingress; the object is in the namespace the switch runs in.
	Kind string `json:"kind"`
	Name string `json:"name"`
	// Path is the field's JSON pointer (RFC 6901), such as /spec/selector or
	// /metadata/annotations/cloud.google.com~1neg.
	Path string `json:"path"`
	// Component is the component whose traffic the field carries.
	Component Component `json:"component,omitempty"`
	Before    string    `json:"before,omitempty"`
	After     string    `json:"after,omitempty"`
}

// Object names the changed object, such as Service/mastodon-web.
func (c Change) Object() string { return c.Kind + "/" + c.Name }

func (c Change) String() string {
	return fmt.Sprintf("%s %s: %s -> %s", c.Object(), c.Path, orNone(c.Before), orNone(c.After))
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// Reverse returns the changes that undo changes, in the opposite order, so that whatever was
// made first (the target Service's annotations) is undone last.
func Reverse(changes []Change) []Change {
	out := make([]Change, 0, len(changes))
	for i := len(changes) - 1; i >= 0; i-- {
		c := changes[i]
		c.Before, c.After = c.After, c.Before
		out = append(out, c)
	}
	return out
}

// Then returns the changes that take the cluster from where prev left it to where next leads,
// when both were planned against the objects as they were before prev (see Original): each
// field next changes starts from prev's After, and each field only prev changed goes back to
// its Before. Fields that end where they are are left out.
func Then(prev, next []Change) []Change {
	type key struct{ kind, name, path string }
	k := func(c Change) key { return key{c.Kind, c.Name, c.Path} }
	done := map[key]Change{}
	for _, c := range prev {
		done[k(c)] = c
	}
	inNext := map[key]bool{}
	var out []Change
	for _, c := range next {
		inNext[k(c)] = true
		if p, ok := done[k(c)]; ok {
			c.Before = p.After
		}
		if !sameJSON(c.Before, c.After) {
			out = append(out, c)
		}
	}
	for _, c := range Reverse(prev) {
		if !inNext[k(c)] {
			out = append(out, c)
		}
	}
	return out
}

// Stack is what a switch looks at, as read from the cluster.
type Stack struct {
	// Source maps web and streaming to the old stack's Deployments; which of them a Service's
	// selector matches says which component the Service serves.
	Source map[Component]*appsv1.Deployment
	// Services are the source Services: those the spec names, or SourceServices of the
	// namespace. Others may be included: a Service that selects neither source component's pods
	// is left alone.
	Services []corev1.Service
	// Ingress is the source Ingress (Ingress method).
	Ingress *networkingv1.Ingress
	// TargetServices are the targets' Services as they are now (Ingress method), which receive
	// the source Services' load-balancer annotations.
	TargetServices []corev1.Service
}

// Switcher is one method of moving traffic.
type Switcher interface {
	// Method is the method's name, as in spec.traffic.method.
	Method() string
	// Plan returns the changes that point the stack's traffic at to, and every problem that
	// stops the switch; apply the changes only when there is no problem. Pure.
	Plan(s Stack, to map[Component]Target) ([]Change, []Problem)
}

// The methods, named as in spec.traffic.method.
const (
	MethodServiceSelector = "ServiceSelector"
	MethodIngress         = "Ingress"
)

// For returns the Switcher of a method; "" is ServiceSelector.
func For(method string) (Switcher, error) {
	switch method {
	case "", MethodServiceSelector:
		return ServiceSelector{}, nil
	case MethodIngress:
		return IngressBackends{}, nil
	}
	return nil, fmt.Errorf("unknown traffic method %q: want %s or %s", method, MethodServiceSelector, MethodIngress)
}

// ServiceSelector moves traffic by rewriting the selectors of the source Services.
type ServiceSelector struct{}

// Method implements Switcher.
func (ServiceSelector) Method() string { return MethodServiceSelector }

// Plan implements Switcher with PlanSelectors.
func (ServiceSelector) Plan(s Stack, to map[Component]Target) ([]Change, []Problem) {
	return PlanSelectors(s.Services, s.Source, to)
}

// IngressBackends moves traffic by rewriting the backends of the source Ingress.
type IngressBackends struct{}

// Method implements Switcher.
func (IngressBackends) Method() string { return MethodIngress }

// Plan implements Switcher with PlanIngress.
func (IngressBackends) Plan(s Stack, to map[Component]Target) ([]Change, []Problem) {
	if s.Ingress == nil {
		return nil, []Problem{problem("Ingress", "the Ingress method needs the source Ingress: set spec.source.ingress")}
	}
	return PlanIngress(s.Ingress, s.Services, s.Source, s.TargetServices, to)
}
