package preflight

import (
	"context"
	"fmt"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
	"github.com/mastodon-operator/mastodon-operator/internal/traffic"
)

// The marks Flux's kustomize-controller and Argo CD put on the objects they apply.
const (
	labelFluxName      = "kustomize.toolkit.fluxcd.io/name"
	labelFluxNamespace = "kustomize.toolkit.fluxcd.io/namespace"
	labelArgoInstance  = "argocd.argoproj.io/instance"
	// <app>:<group>/<kind>:<namespace>/<name>, the app as <namespace>_<app> when Applications
	// live outside Argo CD's namespace.
	annotationArgoTracking = "argocd.argoproj.io/tracking-id"
)

// maxFindingMessage is the API's limit on Finding.Message.
const maxFindingMessage = 1024

// gitOpsListed is how many of an owner's objects a finding names.
const gitOpsListed = 3

// gitOpsOwner is a Flux Kustomization or an Argo CD Application that applies source objects.
type gitOpsOwner struct {
	// id names it in spec.preflight.acceptGitOpsOwners: flux/<ns>/<name>, argocd/<app> or
	// argocd/<ns>/<app>.
	id        string
	flux      bool
	namespace string // of the Kustomization, or of the Application ("" for Argo CD's own)
	name      string
	objects   []string // Kind/name
}

// gitOpsOwners finds the Flux Kustomizations and Argo CD Applications that apply objects the
// migration changes or reads: left running, they re-apply the old manifests (on every interval,
// or on every sync) and undo the traffic switch. One finding per owner; an owner accepted in
// spec.preflight.acceptGitOpsOwners (suspended by the user) is listed as Informational. An
// accepted id that matches no owner is ignored: a typo leaves the owner's own finding, which
// names the id to use.
func gitOpsOwners(ctx context.Context, in Input) ([]v1alpha1.Finding, error) {
	subjects, err := gitOpsSubjects(ctx, in)
	if err != nil {
		return nil, err
	}
	var owners []*gitOpsOwner
	byID := map[string]*gitOpsOwner{}
	for _, s := range subjects {
		for _, o := range ownersOf(s.meta) {
			if byID[o.id] == nil {
				byID[o.id] = o
				owners = append(owners, o)
			}
			byID[o.id].objects = append(byID[o.id].objects, s.object)
		}
	}
	var findings []v1alpha1.Finding
	for _, o := range owners {
		accepted := slices.Contains(in.Migration.Spec.Preflight.AcceptGitOpsOwners, o.id)
		f := finding(o.id, "%s", o.message(accepted))
		f.Class = v1alpha1.FindingBlocks
		if accepted {
			f.Class = v1alpha1.FindingInformational
		}
		findings = append(findings, f)
	}
	return findings, nil
}

// gitOpsSubject is an object the migration changes or reads, as Kind/name.
type gitOpsSubject struct {
	object string
	meta   metav1.Object
}

// gitOpsSubjects reads what the migration changes or reads: the source Deployments, the source
// Services, the Ingress, the extra resources, and the ConfigMaps and Secrets the old pods' env
// comes from. What does not exist is left out (the other rules report it).
func gitOpsSubjects(ctx context.Context, in Input) ([]gitOpsSubject, error) {
	ns := in.Migration.Namespace
	var out []gitOpsSubject
	seen := map[string]bool{}
	add := func(kind string, obj metav1.Object) {
		if object := kind + "/" + obj.GetName(); !seen[object] {
			seen[object] = true
			out = append(out, gitOpsSubject{object: object, meta: obj})
		}
	}
	// get reads an object into obj; false when it does not exist or its kind is not served.
	get := func(name string, obj client.Object) (bool, error) {
		err := in.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, obj)
		if apierrors.IsNotFound(err) || meta.IsNoMatchError(err) {
			return false, nil
		}
		return err == nil, err
	}

	var deployments []*appsv1.Deployment
	source := map[traffic.Component]*appsv1.Deployment{}
	for _, ref := range SourceDeployments(in.Migration) {
		d := &appsv1.Deployment{}
		ok, err := get(ref.Name, d)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		add("Deployment", d)
		deployments = append(deployments, d)
		if c := traffic.Component(ref.Component); c == traffic.Web || c == traffic.Streaming {
			source[c] = d
		}
	}
	services, err := sourceServiceList(ctx, in, source)
	if err != nil {
		return nil, err
	}
	for i := range services {
		add("Service", &services[i])
	}
	if name := in.Migration.Spec.Source.Ingress; name != "" {
		ing := &networkingv1.Ingress{}
		ok, err := get(name, ing)
		if err != nil {
			return nil, err
		}
		if ok {
			add("Ingress", ing)
		}
	}
	for _, ref := range in.Migration.Spec.Source.ExtraResources {
		u := &unstructured.Unstructured{}
		u.SetAPIVersion(ref.APIVersion)
		u.SetKind(ref.Kind)
		ok, err := get(ref.Name, u)
		if err != nil {
			return nil, err
		}
		if ok {
			add(ref.Kind, u)
		}
	}
	for _, d := range deployments {
		for _, r := range podRefs(d.Spec.Template.Spec) {
			if seen[r.kind()+"/"+r.name] {
				continue
			}
			var obj client.Object = &corev1.ConfigMap{}
			if r.secret {
				obj = &corev1.Secret{}
			}
			ok, err := get(r.name, obj)
			if err != nil {
				return nil, err
			}
			if ok {
				add(r.kind(), obj)
			}
		}
	}
	return out, nil
}

// ownersOf reads the GitOps marks of an object: Flux's two labels, and Argo CD's tracking-id
// annotation or, without it, its instance label. An object can have both tools' marks (one
// moving to the other); each would undo the switch.
func ownersOf(obj metav1.Object) []*gitOpsOwner {
	var out []*gitOpsOwner
	l := obj.GetLabels()
	// Flux always sets both; label values are bounded (63 characters) by the API server.
	if name, ns := l[labelFluxName], l[labelFluxNamespace]; name != "" && ns != "" {
		out = append(out, &gitOpsOwner{id: "flux/" + ns + "/" + name, flux: true, namespace: ns, name: name})
	}
	app := l[labelArgoInstance]
	if id, ok := obj.GetAnnotations()[annotationArgoTracking]; ok {
		app, _, _ = strings.Cut(id, ":")
	}
	ns, name, namespaced := strings.Cut(app, "_")
	if !namespaced {
		ns, name = "", app
	}
	// What is not an Application's name is not Argo CD's mark (and would make the message
	// unbounded).
	if len(validation.IsDNS1123Subdomain(name)) == 0 && (!namespaced || len(validation.IsDNS1123Label(ns)) == 0) {
		id := "argocd/" + name
		if namespaced {
			id = "argocd/" + ns + "/" + name
		}
		out = append(out, &gitOpsOwner{id: id, namespace: ns, name: name})
	}
	return out
}

// message says what the owner applies, why that undoes the migration and what to do, naming as
// many of its objects as fit in a finding's message.
func (o *gitOpsOwner) message(accepted bool) string {
	for n := min(gitOpsListed, len(o.objects)); ; n-- {
		msg := o.messageListing(accepted, n)
		if len(msg) <= maxFindingMessage || n == 0 {
			return msg
		}
	}
}

func (o *gitOpsOwner) messageListing(accepted bool, n int) string {
	var b strings.Builder
	if o.flux {
		fmt.Fprintf(&b, "Flux Kustomization %s/%s", o.namespace, o.name)
	} else if o.namespace != "" {
		fmt.Fprintf(&b, "Argo CD Application %s/%s", o.namespace, o.name)
	} else {
		fmt.Fprintf(&b, "Argo CD Application %s", o.name)
	}
	count := fmt.Sprintf("%d objects", len(o.objects))
	if len(o.objects) == 1 {
		count = "1 object"
	}
	fmt.Fprintf(&b, " applies %s the migration changes or reads", count)
	if n > 0 {
		fmt.Fprintf(&b, " (%s", strings.Join(o.objects[:n], ", "))
		if rest := len(o.objects) - n; rest > 0 {
			fmt.Fprintf(&b, " and %d more", rest)
		}
		b.WriteString(")")
	}
	b.WriteString(": ")
	if accepted {
		fmt.Fprintf(&b, "accepted as suspended in spec.preflight.acceptGitOpsOwners (%s); keep it suspended until Git has the new stack, or it undoes the traffic switch", o.id)
		return b.String()
	}
	const undo = "would undo the traffic switch (Service selectors, HPA targets, scaled-down Deployments)"
	if o.flux {
		fmt.Fprintf(&b, "kustomize-controller re-applies them on every interval and %s. Suspend it (flux suspend kustomization %s -n %s), then add %s to spec.preflight.acceptGitOpsOwners; resume it only once Git has the new stack",
			undo, o.name, o.namespace, o.id)
	} else {
		fmt.Fprintf(&b, "a sync (automated or self-heal) re-applies them and %s. Turn off its automated sync (syncPolicy.automated, not only selfHeal), then add %s to spec.preflight.acceptGitOpsOwners; turn it on again only once Git has the new stack",
			undo, o.id)
	}
	return b.String()
}
