package traffic

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/mastodon-operator/mastodon-operator/internal/testenv"
	"github.com/mastodon-operator/mastodon-operator/test/fixture"
)

// These tests run against a real etcd and kube-apiserver (envtest, with the binaries of
// hack/tools/build.sh), started on first use and shared by the package's tests. Nothing runs
// pods: what is tested is what the API server stores.

const fieldOwner = "mastodon-operator"

// apiServerEnv is the API server the package's tests share.
var apiServerEnv = testenv.Shared{CRDs: []string{fixture.Testdata("crds")}}

func TestMain(m *testing.M) {
	code := m.Run()
	apiServerEnv.Stop()
	os.Exit(code)
}

// apiServer returns a client of the shared API server.
func apiServer(t *testing.T) client.WithWatch {
	t.Helper()
	c, err := client.NewWithWatch(apiServerEnv.Config(t), client.Options{Scheme: clientgoscheme.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// cluster is one namespace holding the Kustomize fixture and, beside it, the rendered release.
type cluster struct {
	c   client.WithWatch
	ns  string
	old oldStack
	rel newStack
}

func newCluster(t *testing.T, namespace string) *cluster {
	t.Helper()
	ctx := t.Context()
	c := apiServer(t)
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}); err != nil {
		t.Fatal(err)
	}
	k := &cluster{c: c, ns: namespace, old: loadOldStack(t), rel: renderRelease(t)}
	if err := fixture.Apply(ctx, c, namespace, k.old.objects); err != nil {
		t.Fatal(err)
	}
	for _, o := range k.rel.objects {
		o = o.DeepCopy()
		o.SetNamespace(namespace)
		if err := c.Apply(ctx, client.ApplyConfigurationFromUnstructured(o), client.FieldOwner("helm"), client.ForceOwnership); err != nil {
			t.Fatalf("release %s %s: %v", o.GetKind(), o.GetName(), err)
		}
	}
	return k
}

// live reads the stack as the controller would: source Deployments, the Services selecting
// their pods, the Ingress, and the release's Deployments and Services.
func (k *cluster) live(t *testing.T) (Stack, map[Component]Target) {
	t.Helper()
	ctx := t.Context()
	source := map[Component]*appsv1.Deployment{}
	for c, name := range map[Component]string{Web: "mastodon-web", Streaming: "mastodon-streaming"} {
		d := &appsv1.Deployment{}
		if err := k.c.Get(ctx, client.ObjectKey{Namespace: k.ns, Name: name}, d); err != nil {
			t.Fatal(err)
		}
		source[c] = d
	}
	var services corev1.ServiceList
	if err := k.c.List(ctx, &services, client.InNamespace(k.ns)); err != nil {
		t.Fatal(err)
	}
	ing := &networkingv1.Ingress{}
	if err := k.c.Get(ctx, client.ObjectKey{Namespace: k.ns, Name: "mastodon"}, ing); err != nil {
		t.Fatal(err)
	}
	var deployments appsv1.DeploymentList
	if err := k.c.List(ctx, &deployments, client.InNamespace(k.ns), client.MatchingLabels{"app.kubernetes.io/instance": release}); err != nil {
		t.Fatal(err)
	}
	byComponent := map[string]*appsv1.Deployment{}
	for i, d := range deployments.Items {
		byComponent[d.Spec.Template.Labels["app.kubernetes.io/component"]] = &deployments.Items[i]
	}
	to, problems := ReleaseTargets(byComponent, services.Items)
	if len(problems) > 0 {
		t.Fatal(problems)
	}
	return Stack{
		Source:         source,
		Services:       SourceServices(services.Items, []*appsv1.Deployment{source[Web], source[Streaming]}),
		Ingress:        ing,
		TargetServices: services.Items,
	}, to
}

// state is every Service's and the Ingress's spec and annotations, as JSON, and their
// resourceVersions.
type state struct {
	specs    map[string]string
	versions map[string]string
}

func (k *cluster) state(t *testing.T) state {
	t.Helper()
	s := state{specs: map[string]string{}, versions: map[string]string{}}
	var services corev1.ServiceList
	if err := k.c.List(t.Context(), &services, client.InNamespace(k.ns)); err != nil {
		t.Fatal(err)
	}
	for _, svc := range services.Items {
		s.specs["Service/"+svc.Name] = mustJSON(svc.Spec)
		s.specs["Service/"+svc.Name+" annotations"] = mustJSON(svc.Annotations)
		s.versions["Service/"+svc.Name] = svc.ResourceVersion
	}
	var ing networkingv1.Ingress
	if err := k.c.Get(t.Context(), client.ObjectKey{Namespace: k.ns, Name: "mastodon"}, &ing); err != nil {
		t.Fatal(err)
	}
	s.specs["Ingress/mastodon"] = mustJSON(ing.Spec)
	s.specs["Ingress/mastodon annotations"] = mustJSON(ing.Annotations)
	s.specs["Ingress/mastodon media host"] = mustJSON(ing.Spec.Rules[1])
	s.versions["Ingress/mastodon"] = ing.ResourceVersion
	return s
}

// diff lists the keys whose values differ.
func diff(a, b map[string]string) []string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(a)) {
		if a[k] != b[k] {
			out = append(out, k)
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			out = append(out, k)
		}
	}
	return out
}

func (k *cluster) service(t *testing.T, name string) *corev1.Service {
	t.Helper()
	s := &corev1.Service{}
	if err := k.c.Get(t.Context(), client.ObjectKey{Namespace: k.ns, Name: name}, s); err != nil {
		t.Fatal(err)
	}
	return s
}

func (k *cluster) ingress(t *testing.T) *networkingv1.Ingress {
	t.Helper()
	ing := &networkingv1.Ingress{}
	if err := k.c.Get(t.Context(), client.ObjectKey{Namespace: k.ns, Name: "mastodon"}, ing); err != nil {
		t.Fatal(err)
	}
	return ing
}

// checkSwitched checks that traffic of every Mastodon Service or backend goes where to says,
// and that everything else is as it was.
func (k *cluster) checkSwitched(t *testing.T, method string, to map[Component]Target, before state) {
	t.Helper()
	after := k.state(t)
	changed := diff(before.specs, after.specs)
	switch method {
	case MethodServiceSelector:
		want := []string{"Service/mastodon-assets", "Service/mastodon-emoji", "Service/mastodon-streaming", "Service/mastodon-web"}
		if !slices.Equal(changed, want) {
			t.Errorf("changed %v, want only the specs %v", changed, want)
		}
		for _, name := range append(slices.Clone(webServices), "mastodon-streaming") {
			c := Web
			if name == "mastodon-streaming" {
				c = Streaming
			}
			if got := k.service(t, name).Spec.Selector; !maps.Equal(got, to[c].Selector) {
				t.Errorf("Service %s selects %v, want exactly %v", name, got, to[c].Selector)
			}
		}
	case MethodIngress:
		for _, key := range changed {
			if key != "Ingress/mastodon" && key != "Service/"+to[Web].Service+" annotations" && key != "Service/"+to[Streaming].Service+" annotations" {
				t.Errorf("%s changed", key)
			}
		}
		want := map[string]string{"/api/v1/streaming": to[Streaming].Service, "/packs": to[Web].Service, "/emoji": to[Web].Service, "/": to[Web].Service}
		for _, p := range k.ingress(t).Spec.Rules[0].HTTP.Paths {
			if b := p.Backend.Service; b.Name != want[p.Path] || (b.Port.Number != to[Web].Port && b.Port.Number != to[Streaming].Port) {
				t.Errorf("path %s goes to %s:%d, want %s", p.Path, b.Name, b.Port.Number, want[p.Path])
			}
		}
		if !to[Web].OwnAnnotations {
			got := k.service(t, to[Web].Service).Annotations
			if got[AnnotationNEG] != negIngress || got[AnnotationBackendConfig] != webBackend {
				t.Errorf("release web Service annotations %v", got)
			}
		}
	}
	if before.specs["Ingress/mastodon media host"] != after.specs["Ingress/mastodon media host"] ||
		before.specs["Service/mastodon-media-proxy"] != after.specs["Service/mastodon-media-proxy"] ||
		before.versions["Service/mastodon-media-proxy"] != after.versions["Service/mastodon-media-proxy"] {
		t.Error("the media proxy's Service or Ingress host changed")
	}
}

func TestSwitchAndBackOnTheAPIServer(t *testing.T) {
	for _, method := range []string{MethodServiceSelector, MethodIngress} {
		t.Run(method, func(t *testing.T) {
			ctx := t.Context()
			k := newCluster(t, "switch-"+map[string]string{MethodServiceSelector: "selector", MethodIngress: "ingress"}[method])
			sw, err := For(method)
			if err != nil {
				t.Fatal(err)
			}
			stack, to := k.live(t)
			if got := names(stack.Services); !slices.Equal(got, []string{"mastodon-assets", "mastodon-emoji", "mastodon-streaming", "mastodon-web"}) {
				t.Fatalf("source Services %v", got)
			}
			before := k.state(t)
			changes, problems := sw.Plan(stack, to)
			if len(problems) > 0 {
				t.Fatal(problems)
			}
			if err := Apply(ctx, k.c, k.ns, changes, fieldOwner); err != nil {
				t.Fatal(err)
			}
			k.checkSwitched(t, method, to, before)

			// Again: nothing is written.
			switched := k.state(t)
			if err := Apply(ctx, k.c, k.ns, changes, fieldOwner); err != nil {
				t.Fatal(err)
			}
			if again := k.state(t); !maps.Equal(again.versions, switched.versions) {
				t.Errorf("a second Apply wrote %v", diff(switched.versions, again.versions))
			}
			// Planned again from the live objects: nothing left to do.
			stack, _ = k.live(t)
			if sw.Method() == MethodServiceSelector {
				var all corev1.ServiceList
				_ = k.c.List(ctx, &all, client.InNamespace(k.ns))
				stack.Services = all.Items
			}
			if again, problems := sw.Plan(stack, to); len(again)+len(problems) != 0 {
				t.Errorf("planned again: %v %v", again, problems)
			}

			// And back: every Service and the Ingress as they were, byte for byte.
			if err := Apply(ctx, k.c, k.ns, Reverse(changes), fieldOwner); err != nil {
				t.Fatal(err)
			}
			if d := diff(before.specs, k.state(t).specs); len(d) > 0 {
				t.Errorf("after switching back, changed: %v", d)
				for _, key := range d {
					t.Logf("%s\n before %s\n after  %s", key, before.specs[key], k.state(t).specs[key])
				}
			}
			// Back twice is back once.
			back := k.state(t)
			if err := Apply(ctx, k.c, k.ns, Reverse(changes), fieldOwner); err != nil {
				t.Fatal(err)
			}
			if again := k.state(t); !maps.Equal(again.versions, back.versions) {
				t.Errorf("a second revert wrote %v", diff(back.versions, again.versions))
			}
		})
	}
}

// Source -> maintenance page -> release -> source, each hop planned against the original
// objects, for both methods.
func TestMaintenanceHopOnTheAPIServer(t *testing.T) {
	for _, method := range []string{MethodServiceSelector, MethodIngress} {
		t.Run(method, func(t *testing.T) {
			ctx := t.Context()
			k := newCluster(t, "maintenance-"+map[string]string{MethodServiceSelector: "selector", MethodIngress: "ingress"}[method])
			sw, _ := For(method)
			maint := Maintenance{Namespace: k.ns, Name: "mastodon-maintenance"}
			if err := ApplyObjects(ctx, k.c, maint.Objects(), fieldOwner); err != nil {
				t.Fatal(err)
			}
			before := k.state(t)
			stack, release := k.live(t)

			toMaint, problems := sw.Plan(stack, maint.Targets())
			if len(problems) > 0 {
				t.Fatal(problems)
			}
			if err := Apply(ctx, k.c, k.ns, toMaint, fieldOwner); err != nil {
				t.Fatal(err)
			}
			k.checkSwitched(t, method, maint.Targets(), before)

			// The controller restarts here: it has only its record (toMaint) and the cluster.
			var record []Change
			if err := json.Unmarshal([]byte(mustJSON(toMaint)), &record); err != nil {
				t.Fatal(err)
			}
			live, _ := k.live(t)
			var all corev1.ServiceList
			if err := k.c.List(ctx, &all, client.InNamespace(k.ns)); err != nil {
				t.Fatal(err)
			}
			live.Services = all.Items
			orig, err := Original(live, record)
			if err != nil {
				t.Fatal(err)
			}
			orig.Services = SourceServices(orig.Services, []*appsv1.Deployment{orig.Source[Web], orig.Source[Streaming]})
			toRelease, problems := sw.Plan(orig, release)
			if len(problems) > 0 {
				t.Fatal(problems)
			}
			if err := Apply(ctx, k.c, k.ns, Then(record, toRelease), fieldOwner); err != nil {
				t.Fatal(err)
			}
			k.checkSwitched(t, method, release, before)
			if err := DeleteObjects(ctx, k.c, maint.Objects()); err != nil {
				t.Fatal(err)
			}
			if err := DeleteObjects(ctx, k.c, maint.Objects()); err != nil {
				t.Errorf("deleting again: %v", err)
			}

			// Rollback: the release's record, reversed.
			if err := Apply(ctx, k.c, k.ns, Reverse(toRelease), fieldOwner); err != nil {
				t.Fatal(err)
			}
			after := k.state(t)
			delete(before.specs, "Service/mastodon-maintenance")
			delete(before.specs, "Service/mastodon-maintenance annotations")
			if d := diff(before.specs, after.specs); len(d) > 0 {
				t.Errorf("after the round trip, changed: %v", d)
			}
		})
	}
}

func TestApplyLeavesAFieldChangedSinceThePlan(t *testing.T) {
	ctx := t.Context()
	k := newCluster(t, "conflict")
	stack, to := k.live(t)
	changes, _ := ServiceSelector{}.Plan(stack, to)
	of := func(name string) []Change {
		return slices.DeleteFunc(slices.Clone(changes), func(c Change) bool { return c.Name != name })
	}

	// Someone edits mastodon-assets after Apply read it and before its patch: the patch's test
	// fails at the API server, which writes nothing.
	intruded := false
	racy := interceptor.NewClient(k.c, interceptor.Funcs{
		Patch: func(ctx context.Context, c client.WithWatch, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
			if !intruded {
				intruded = true
				edit := client.RawPatch(types.MergePatchType, []byte(`{"spec":{"selector":{"canary":"true"}}}`))
				if err := c.Patch(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: k.ns, Name: obj.GetName()}}, edit); err != nil {
					return err
				}
			}
			return c.Patch(ctx, obj, patch, opts...)
		},
	})
	err := Apply(ctx, racy, k.ns, of("mastodon-assets"), fieldOwner)
	if !intruded || err == nil || !(apierrors.IsInvalid(err) || apierrors.IsConflict(err) || apierrors.IsBadRequest(err)) {
		t.Fatalf("Apply over a concurrent edit = %v, want the API server to refuse the patch", err)
	}
	t.Logf("concurrent edit: %v", err)
	if got := k.service(t, "mastodon-assets").Spec.Selector; !maps.Equal(got, map[string]string{"app": "mastodon-web", "canary": "true"}) {
		t.Errorf("mastodon-assets selects %v, want the concurrent edit kept", got)
	}

	// Someone edits mastodon-emoji between the plan and the switch: Apply sees it and stops.
	emoji := k.service(t, "mastodon-emoji")
	emoji.Spec.Selector = map[string]string{"app": "mastodon-web", "canary": "true"}
	if err := k.c.Update(ctx, emoji); err != nil {
		t.Fatal(err)
	}
	var conflict *ConflictError
	if err := Apply(ctx, k.c, k.ns, of("mastodon-emoji"), fieldOwner); !errors.As(err, &conflict) || conflict.Change.Name != "mastodon-emoji" {
		t.Fatalf("Apply = %v, want a conflict on mastodon-emoji", err)
	} else {
		t.Log(err)
	}
	if got := k.service(t, "mastodon-emoji").Spec.Selector; !maps.Equal(got, emoji.Spec.Selector) {
		t.Errorf("mastodon-emoji selects %v, the edit was overwritten", got)
	}
}

// A record of the switch read back from status may be corrupted (edited by hand, cut): undoing
// it must say so and write nothing, on no object, rather than panic the operator.
func TestApplyOfACorruptedRecordIsAnErrorAndWritesNothing(t *testing.T) {
	ctx := t.Context()
	k := newCluster(t, "corrupted")
	stack, to := k.live(t)
	changes, _ := ServiceSelector{}.Plan(stack, to)
	if err := Apply(ctx, k.c, k.ns, changes, fieldOwner); err != nil {
		t.Fatal(err)
	}
	switched := map[string]map[string]string{}
	for _, c := range changes {
		switched[c.Name] = k.service(t, c.Name).Spec.Selector
	}
	// The last change's recorded Before, the first field the rollback would restore, is cut.
	corrupted := slices.Clone(changes)
	last := &corrupted[len(corrupted)-1]
	last.Before = last.Before[:len(last.Before)-1]
	for _, back := range [][]Change{Reverse(corrupted), corrupted} {
		err := Apply(ctx, k.c, k.ns, back, fieldOwner)
		if err == nil || !strings.Contains(err.Error(), "Service/"+last.Name+" /spec/selector is corrupted") {
			t.Fatalf("Apply of a corrupted record = %v, want an error naming the change", err)
		}
		t.Log(err)
	}
	if _, err := Original(stack, corrupted); err == nil {
		t.Error("Original of a corrupted record succeeded")
	}
	for name, want := range switched {
		if got := k.service(t, name).Spec.Selector; !maps.Equal(got, want) {
			t.Errorf("Service %s selects %v after the failed Apply, want %v as the switch left it", name, got, want)
		}
	}
}

// Why Apply writes JSON patches. A JSON merge patch merges maps: the old key stays and the
// Service then selects no pod at all, old or new. Server-side apply does replace the selector
// (the API declares it an atomic map), but only by forcing ownership away from the manager that
// applied the Kustomize stack; and it has no way to say "only if it is still the old selector".
// Both JSON patch and forced apply leave the operator owning spec.selector, so a later
// non-forced server-side apply of the Kustomize stack (GitOps) is refused rather than silently
// undoing the switch.
func TestWhyJSONPatch(t *testing.T) {
	ctx := t.Context()
	k := newCluster(t, "why-json-patch")
	_, to := k.live(t)
	want := to[Web].Selector
	oldAndNew := maps.Clone(want)
	oldAndNew["app"] = "mastodon-web"
	reset := func() {
		t.Helper()
		if err := fixture.Apply(ctx, k.c, k.ns, k.old.objects); err != nil {
			t.Fatal(err)
		}
		if got := k.service(t, "mastodon-web").Spec.Selector; !maps.Equal(got, map[string]string{"app": "mastodon-web"}) {
			t.Fatalf("reset: %v", got)
		}
	}

	merge := client.RawPatch(types.MergePatchType, []byte(`{"spec":{"selector":`+mustJSON(want)+`}}`))
	if err := k.c.Patch(ctx, k.service(t, "mastodon-web"), merge, client.FieldOwner(fieldOwner)); err != nil {
		t.Fatal(err)
	}
	if got := k.service(t, "mastodon-web").Spec.Selector; !maps.Equal(got, oldAndNew) {
		t.Errorf("after a merge patch: %v, want the old key kept: %v", got, oldAndNew)
	}
	reset()

	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "Service",
		"metadata": map[string]any{"namespace": k.ns, "name": "mastodon-web"},
		"spec":     map[string]any{"selector": toAny(want)},
	}}
	err := k.c.Apply(ctx, client.ApplyConfigurationFromUnstructured(u.DeepCopy()), client.FieldOwner(fieldOwner))
	if !apierrors.IsConflict(err) {
		t.Errorf("server-side apply without force = %v, want a conflict with the Kustomize apply's manager", err)
	}
	if err := k.c.Apply(ctx, client.ApplyConfigurationFromUnstructured(u.DeepCopy()), client.FieldOwner(fieldOwner), client.ForceOwnership); err != nil {
		t.Fatal(err)
	}
	if got := k.service(t, "mastodon-web").Spec.Selector; !maps.Equal(got, want) {
		t.Errorf("after a forced server-side apply: %v, want %v", got, want)
	}
	reset()

	if err := Apply(ctx, k.c, k.ns, []Change{{Kind: "Service", Name: "mastodon-web", Path: PathSelector,
		Before: `{"app":"mastodon-web"}`, After: mustJSON(want)}}, fieldOwner); err != nil {
		t.Fatal(err)
	}
	if got := k.service(t, "mastodon-web").Spec.Selector; !maps.Equal(got, want) {
		t.Errorf("after Apply: %v, want %v", got, want)
	}
	var svc *unstructured.Unstructured
	for _, o := range k.old.objects {
		if o.GetKind() == "Service" && o.GetName() == "mastodon-web" {
			svc = o.DeepCopy()
		}
	}
	svc.SetNamespace(k.ns)
	err = k.c.Apply(ctx, client.ApplyConfigurationFromUnstructured(svc), client.FieldOwner(fixture.FieldOwner))
	if !apierrors.IsConflict(err) {
		t.Errorf("a non-forced apply of the Kustomize Service after the switch = %v, want a conflict", err)
	}
}

func toAny(m map[string]string) map[string]any {
	out := map[string]any{}
	for k, v := range m {
		out[k] = v
	}
	return out
}
