package traffic

import (
	"slices"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

const (
	negIngress   = `{"ingress": true}`
	webBackend   = `{"default": "mastodon-web-backend-config"}`
	streamConfig = `{"default": "mastodon-streaming-backend-config"}`
)

func TestPlanIngressMovesMastodonBackendsOnly(t *testing.T) {
	old, rel := loadOldStack(t), renderRelease(t)
	s := old.stack()
	s.TargetServices = rel.services
	changes, problems := IngressBackends{}.Plan(s, rel.targets(t))
	if len(problems) > 0 {
		t.Fatalf("problems: %v", problems)
	}
	web := func(port int) string {
		return `{"service":{"name":"mastodon-helm-web","port":{"number":` + strconv.Itoa(port) + `}}}`
	}
	want := []Change{
		// The release's Services get the load balancer's annotations first...
		{Kind: "Service", Name: releaseStream, Path: "/metadata/annotations/cloud.google.com~1neg", Component: Streaming, After: mustJSON(negIngress)},
		{Kind: "Service", Name: releaseStream, Path: "/metadata/annotations/beta.cloud.google.com~1backend-config", Component: Streaming, After: mustJSON(streamConfig)},
		{Kind: "Service", Name: releaseWeb, Path: "/metadata/annotations/cloud.google.com~1neg", Component: Web, After: mustJSON(negIngress)},
		{Kind: "Service", Name: releaseWeb, Path: "/metadata/annotations/beta.cloud.google.com~1backend-config", Component: Web, After: mustJSON(webBackend)},
		// ... then the backends of the Mastodon host move; the media host's rule (1) stays.
		{Kind: "Ingress", Name: "mastodon", Path: "/spec/rules/0/http/paths/0/backend", Component: Streaming,
			Before: `{"service":{"name":"mastodon-streaming","port":{"number":4000}}}`,
			After:  `{"service":{"name":"mastodon-helm-streaming","port":{"number":4000}}}`},
		{Kind: "Ingress", Name: "mastodon", Path: "/spec/rules/0/http/paths/1/backend", Component: Web,
			Before: `{"service":{"name":"mastodon-assets","port":{"number":3000}}}`, After: web(3000)},
		{Kind: "Ingress", Name: "mastodon", Path: "/spec/rules/0/http/paths/2/backend", Component: Web,
			Before: `{"service":{"name":"mastodon-emoji","port":{"number":3000}}}`, After: web(3000)},
		{Kind: "Ingress", Name: "mastodon", Path: "/spec/rules/0/http/paths/3/backend", Component: Web,
			Before: `{"service":{"name":"mastodon-web","port":{"number":3000}}}`, After: web(3000)},
	}
	if !slices.Equal(changes, want) {
		t.Errorf("changes:\n%s\nwant:\n%s", lines(changes), lines(want))
	}

	// Planned on the Ingress and Services as the switch leaves them (the changes made in
	// memory: the original before the reverse), nothing is left to do.
	after, err := Original(s, Reverse(changes))
	if err != nil {
		t.Fatal(err)
	}
	if again, problems := (IngressBackends{}).Plan(after, rel.targets(t)); len(again)+len(problems) != 0 {
		t.Errorf("after the switch: changes %v, problems %v", again, problems)
	}
}

func TestPlanIngressProblems(t *testing.T) {
	for name, tc := range map[string]struct {
		edit func(old *oldStack, rel *newStack, to map[Component]Target)
		want string
	}{
		"assets with another BackendConfig than web": {
			edit: func(old *oldStack, _ *newStack, _ map[Component]Target) {
				old.service("mastodon-assets").Annotations[AnnotationBackendConfig] = `{"default": "mastodon-cdn"}`
			},
			want: `Service/mastodon-helm-web: Services mastodon-assets, mastodon-emoji, mastodon-web move to it with different beta.cloud.google.com/backend-config annotations ({"default": "mastodon-cdn"} vs {"default": "mastodon-web-backend-config"})`,
		},
		"release Service missing": {
			edit: func(_ *oldStack, rel *newStack, _ map[Component]Target) {
				rel.services = slices.DeleteFunc(rel.services, func(s corev1.Service) bool { return s.Name == releaseStream })
			},
			want: "Service/mastodon-helm-streaming: the streaming target's Service does not exist",
		},
		"release Service without the port": {
			edit: func(_ *oldStack, _ *newStack, to map[Component]Target) {
				w := to[Web]
				w.Port = 8080
				to[Web] = w
			},
			want: "Service/mastodon-helm-web: has no port 8080 for the Ingress backends of web",
		},
		"a backend Service picking both components": {
			edit: func(old *oldStack, _ *newStack, _ map[Component]Target) {
				for _, d := range old.deployments {
					d.Spec.Template.Labels["tier"] = "frontend"
				}
				old.service("mastodon-emoji").Spec.Selector = map[string]string{"tier": "frontend"}
			},
			want: "Ingress/mastodon: backend /spec/rules/0/http/paths/2/backend points at Service mastodon-emoji, whose selector tier=frontend picks the pods of streaming and web at once",
		},
		"no target for streaming": {
			edit: func(_ *oldStack, _ *newStack, to map[Component]Target) { delete(to, Streaming) },
			want: "Ingress/mastodon: backend /spec/rules/0/http/paths/0/backend points at Service mastodon-streaming, which serves streaming, but there is no streaming target",
		},
	} {
		t.Run(name, func(t *testing.T) {
			old, rel := loadOldStack(t), renderRelease(t)
			to := rel.targets(t)
			tc.edit(&old, &rel, to)
			changes, problems := PlanIngress(old.ingress, old.services, old.source(), rel.services, to)
			if len(changes) != 0 {
				t.Errorf("changes despite problems: %v", changes)
			}
			if len(problems) != 1 || !strings.Contains(problems[0].String(), tc.want) {
				t.Errorf("problems %v, want one containing %q", problems, tc.want)
			}
		})
	}
	if _, problems := (IngressBackends{}).Plan(Stack{}, nil); len(problems) != 1 {
		t.Errorf("no Ingress: %v", problems)
	}
}

func TestPlanIngressKeepsAnnotationsTheTargetHasAlready(t *testing.T) {
	old, rel := loadOldStack(t), renderRelease(t)
	for i := range rel.services {
		rel.services[i].Annotations = map[string]string{AnnotationNEG: negIngress, AnnotationBackendConfig: `{"default": "mine"}`}
	}
	changes, problems := PlanIngress(old.ingress, old.services, old.source(), rel.services, rel.targets(t))
	if len(problems) > 0 {
		t.Fatal(problems)
	}
	var annotations []Change
	for _, c := range changes {
		if c.Kind == "Service" {
			annotations = append(annotations, c)
		}
	}
	// The NEG annotation is there already; the BackendConfig is replaced and recorded.
	if len(annotations) != 2 || annotations[0].Before != `"{\"default\": \"mine\"}"` || annotations[0].After != mustJSON(streamConfig) {
		t.Errorf("annotation changes:\n%s", lines(annotations))
	}
}

func lines(changes []Change) string {
	var b strings.Builder
	for _, c := range changes {
		b.WriteString("  " + c.String() + " [" + string(c.Component) + "]\n")
	}
	return b.String()
}
