package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/onsi/gomega"
	gtypes "github.com/onsi/gomega/types"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
	"github.com/mastodon-operator/mastodon-operator/internal/snapshot"
	"github.com/mastodon-operator/mastodon-operator/test/fixture"
)

// preflightCase breaks one thing in a freshly deployed fixture, as a user could, and names the
// finding the checklist must report for it.
type preflightCase struct {
	name string
	// layout is the fixture's layout to deploy (default production).
	layout string
	// check, object and message are the finding expected in status.preflight.
	check, object string
	message       gtypes.GomegaMatcher
	// configure changes the sample migration before it is created.
	configure func(m *v1alpha1.MastodonMigration)
	// breakIt changes the cluster after the fixture is deployed and before the migration exists.
	breakIt func(t *testing.T, ctx context.Context, ns string)
	// secretValues: no value of the fixture's Secret mastodon may appear in status, in kubectl
	// describe or in an Event.
	secretValues bool
}

func values(raw string) func(m *v1alpha1.MastodonMigration) {
	return func(m *v1alpha1.MastodonMigration) {
		m.Spec.Release.Values = &apiextensionsv1.JSON{Raw: []byte(raw)}
	}
}

func deleteObject(obj client.Object, name string) func(t *testing.T, ctx context.Context, ns string) {
	return func(t *testing.T, ctx context.Context, ns string) {
		t.Helper()
		obj.SetNamespace(ns)
		obj.SetName(name)
		if err := h.Client.Delete(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}
}

// TestPreflightRuleBrokenOnPurposeIsFoundAndChangesNothing breaks each rule of the pre-migration
// checklist (preflight.Checklist) in a namespace of its own. SourceDeployments is
// TestPreflightFindsASourceDeploymentThatDoesNotRollOutAndChangesNothing.
func TestPreflightRuleBrokenOnPurposeIsFoundAndChangesNothing(t *testing.T) {
	nameServices := func(m *v1alpha1.MastodonMigration) {
		m.Spec.Source.Services = []string{"mastodon-web", "mastodon-streaming", "mastodon-assets", "mastodon-emoji"}
	}
	cases := []preflightCase{{
		// The SourceServices rule checks that each Service named in spec.source.services exists
		// and has a ready endpoint.
		name:  "SourceServices",
		check: "SourceServices", object: "Service/mastodon-emoji",
		message:   gomega.HavePrefix("Service mastodon-emoji not found in namespace "),
		configure: nameServices,
		breakIt:   deleteObject(&corev1.Service{}, "mastodon-emoji"),
	}, {
		// The Service exists, but its selector matches no pod: it routes to nothing.
		name:  "SourceServicesNoReadyEndpoint",
		check: "SourceServices", object: "Service/mastodon-emoji",
		message:   gomega.HavePrefix("Service mastodon-emoji has no ready endpoint (selector app=mastodon-nothing): "),
		configure: nameServices,
		breakIt: func(t *testing.T, ctx context.Context, ns string) {
			svc := &corev1.Service{}
			if err := h.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "mastodon-emoji"}, svc); err != nil {
				t.Fatal(err)
			}
			changed := svc.DeepCopy()
			changed.Spec.Selector = map[string]string{"app": "mastodon-nothing"}
			if err := h.Client.Patch(ctx, changed, client.MergeFrom(svc)); err != nil {
				t.Fatal(err)
			}
			// The EndpointSlice controller empties the slices in its own time.
			eventually(t, func() (int, error) { return readyEndpoints(ctx, ns, "mastodon-emoji") }).Should(gomega.BeZero())
		},
	}, {
		name:  "SourceIngress",
		check: "SourceIngress", object: "Ingress/mastodon",
		message: gomega.HavePrefix("Ingress mastodon not found in namespace "),
		breakIt: deleteObject(&networkingv1.Ingress{}, "mastodon"),
	}, {
		name:  "ExtraResources",
		check: "ExtraResources", object: "HorizontalPodAutoscaler/mastodon-web",
		message: gomega.HavePrefix("HorizontalPodAutoscaler mastodon-web not found in namespace "),
		breakIt: deleteObject(&autoscalingv2.HorizontalPodAutoscaler{}, "mastodon-web"),
	}, {
		// The stack as Flux syncs it, the web HPA also in an Argo CD Application: one finding for
		// each (the Argo CD one is checked below).
		name: "GitOpsOwners", layout: fixture.LayoutGitOps,
		check: "GitOpsOwners", object: "flux/flux-system/mastodon",
		message: gomega.And(
			gomega.HavePrefix("Flux Kustomization flux-system/mastodon applies 11 objects the migration changes or reads (Deployment/mastodon-web, Deployment/mastodon-streaming, Deployment/mastodon-worker and 8 more): "),
			gomega.ContainSubstring("(flux suspend kustomization mastodon -n flux-system), then add flux/flux-system/mastodon to spec.preflight.acceptGitOpsOwners")),
	}, {
		name:  "Chart",
		check: "Chart", object: "Chart/mastodon",
		message:   gomega.And(gomega.ContainSubstring("9.9.9"), gomega.HaveSuffix("check spec.release.chart")),
		configure: func(m *v1alpha1.MastodonMigration) { m.Spec.Release.Chart.Version = "9.9.9" },
	}, {
		// null removes the generated value: the chart `required`s it.
		name:  "ReleaseRenders",
		check: "ReleaseRenders", object: "Release/mastodon-helm",
		message:   gomega.ContainSubstring("Database hostname must be given"),
		configure: values(`{"postgresql": {"hostname": null}}`),
	}, {
		// The values name the Secret and its key, as a user who wrote them by hand would; then the
		// key is deleted from the Secret. (With generated values alone the generator, finding no
		// VAPID_PRIVATE_KEY in the old pods' environment, leaves the chart's default key
		// vapid-private-key, and the finding names that key.)
		name:  "ReleaseReferences",
		check: "ReleaseReferences", object: "Secret/mastodon",
		message: gomega.And(gomega.HavePrefix("Secret mastodon has no key VAPID_PRIVATE_KEY, which the release's pods need: "),
			gomega.ContainSubstring("Deployment/mastodon-helm-web container mastodon-web (env VAPID_PRIVATE_KEY)")),
		configure: values(`{"mastodon": {"secrets": {"existingSecret": "mastodon", "existingSecretKeys": {"vapidPrivateKey": "VAPID_PRIVATE_KEY"}}}}`),
		breakIt: func(t *testing.T, ctx context.Context, ns string) {
			s := &corev1.Secret{}
			if err := h.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "mastodon"}, s); err != nil {
				t.Fatal(err)
			}
			if len(s.Data["VAPID_PRIVATE_KEY"]) == 0 {
				t.Fatal("the fixture's Secret mastodon has no VAPID_PRIVATE_KEY")
			}
			delete(s.Data, "VAPID_PRIVATE_KEY")
			if err := h.Client.Update(ctx, s); err != nil {
				t.Fatal(err)
			}
		},
		secretValues: true,
	}, {
		// A Service of the release's name that Helm does not own.
		name:  "ReleaseCollisions",
		check: "ReleaseCollisions", object: "Service/mastodon-helm-web",
		message: gomega.HavePrefix("Service mastodon-helm-web already exists in namespace "),
		breakIt: func(t *testing.T, ctx context.Context, ns string) {
			svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "mastodon-helm-web"},
				Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "something-else"},
					Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}}
			if err := h.Client.Create(ctx, svc); err != nil {
				t.Fatal(err)
			}
		},
	}, {
		// The chart renders any number; the API server refuses a negative one.
		name:  "ReleaseDryRun",
		check: "ReleaseDryRun", object: "Deployment/mastodon-helm-web",
		message: gomega.And(gomega.HavePrefix("the API server refuses to create it (dry run): "),
			gomega.ContainSubstring("spec.replicas")),
		configure: values(`{"mastodon": {"web": {"replicas": -1}}}`),
	}, {
		name:  "Image",
		check: "Image", object: "Deployment/mastodon-helm-web",
		message:   gomega.HavePrefix("runs image ghcr.io/mastodon/mastodon:v9.9.9, but Deployment mastodon-web runs "),
		configure: values(`{"image": {"tag": "v9.9.9"}}`),
	}, {
		// A downgrade, refused whatever allowImageChange says.
		name:  "Version",
		check: "Version", object: "Deployment/mastodon-helm-web",
		message: gomega.And(gomega.HavePrefix("Mastodon v4.6.2 -> v4.5.3 (downgrade): Mastodon's migrations only go forward"),
			gomega.HaveSuffix("set image.tag in spec.release.values to v4.6.2 and upgrade after the migration")),
		configure: values(`{"image": {"tag": "v4.5.3"}}`),
	}, {
		name:  "EnvParity",
		check: "EnvParity", object: "Deployment/mastodon-web",
		message:   gomega.And(gomega.HavePrefix("env LOCAL_DOMAIN: changed "), gomega.ContainSubstring(`→ "other.example"`)),
		configure: values(`{"mastodon": {"localDomain": "other.example"}}`),
	}, {
		// The emoji Service targets a port number the chart's web pods do not have.
		name:  "TargetPorts",
		check: "TargetPorts", object: "Service/mastodon-emoji",
		message: gomega.ContainSubstring("9394"),
		breakIt: func(t *testing.T, ctx context.Context, ns string) {
			svc := &corev1.Service{}
			if err := h.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "mastodon-emoji"}, svc); err != nil {
				t.Fatal(err)
			}
			changed := svc.DeepCopy()
			changed.Spec.Ports[0].TargetPort = intstr.FromInt32(9394)
			if err := h.Client.Patch(ctx, changed, client.MergeFrom(svc)); err != nil {
				t.Fatal(err)
			}
		},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			ns := "preflight-" + strings.ToLower(tc.name)
			layout := tc.layout
			if layout == "" {
				layout = fixture.LayoutProduction
			}
			objs, err := h.DeployLayout(ctx, ns, layout)
			if err != nil {
				t.Fatal(err)
			}
			if tc.breakIt != nil {
				tc.breakIt(t, ctx, ns)
			}
			before := presentObjects(t, ctx, ns, objs)
			beforeDeployments := snapshotDeployments(t, ctx, ns)
			m := sampleMigration(t, ns)
			if tc.configure != nil {
				tc.configure(m)
			}
			if err := h.Client.Create(ctx, m); err != nil {
				t.Fatal(err)
			}
			expected := gomega.And(gomega.HaveField("Check", tc.check), gomega.HaveField("Object", tc.object),
				gomega.HaveField("Message", tc.message))
			eventually(t, getMigration(ctx, m)).Should(gomega.WithTransform(func(m *v1alpha1.MastodonMigration) []v1alpha1.Finding {
				return m.Status.Preflight
			}, gomega.ContainElement(expected)))
			got, _ := getMigration(ctx, m)()
			t.Logf("findings: %+v", got.Status.Preflight)
			g := gomega.NewWithT(t)
			g.Expect(got.Status.Phase).To(gomega.Equal(v1alpha1.PhasePreflight))
			g.Expect(meta.IsStatusConditionTrue(got.Status.Conditions, "Stalled")).To(gomega.BeTrue(), "Stalled")
			notes := preflightEvents(t, ctx, ns)
			g.Expect(notes).NotTo(gomega.BeEmpty(), "a Warning event PreflightFailed")

			// Nothing changed: no release, no snapshot, no generated values, the fixture as it was.
			g.Expect(got.Status.Snapshot).To(gomega.BeNil())
			g.Expect(got.Status.Release).To(gomega.BeNil(), "no release, no generated values in status")
			var secrets corev1.SecretList
			g.Expect(h.Client.List(ctx, &secrets, client.InNamespace(ns))).To(gomega.Succeed())
			for _, s := range secrets.Items {
				g.Expect(s.Labels).NotTo(gomega.HaveKeyWithValue("owner", "helm"), "Helm release Secret %s", s.Name)
				g.Expect(s.Labels).NotTo(gomega.HaveKey(snapshot.LabelSnapshot), "snapshot Secret %s", s.Name)
			}
			var cms corev1.ConfigMapList
			g.Expect(h.Client.List(ctx, &cms, client.InNamespace(ns))).To(gomega.Succeed())
			var cmNames []string
			for _, c := range cms.Items {
				if c.Name != "kube-root-ca.crt" { // published by the controller manager, in its own time
					cmNames = append(cmNames, c.Name)
				}
			}
			g.Expect(cmNames).To(gomega.ConsistOf("mastodon-env"), "only the fixture's ConfigMap: no generated values")
			g.Expect(snapshotDeployments(t, ctx, ns)).To(gomega.Equal(beforeDeployments))
			after := presentObjects(t, ctx, ns, objs)
			g.Expect(after).To(gomega.HaveLen(len(before)))
			for key, b := range before {
				g.Expect(snapshot.Compare(after[key], b)).To(gomega.BeEmpty(), key)
			}
			if tc.secretValues {
				secret := &corev1.Secret{}
				g.Expect(h.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "mastodon"}, secret)).To(gomega.Succeed())
				status, err := kubectl(t, "", "get", "mastodonmigration", m.Name, "-n", ns, "-o", "yaml")
				g.Expect(err).NotTo(gomega.HaveOccurred(), status)
				g.Expect(status).To(gomega.ContainSubstring("VAPID_PRIVATE_KEY"))
				described, err := kubectl(t, "", "describe", "mastodonmigration", m.Name, "-n", ns)
				g.Expect(err).NotTo(gomega.HaveOccurred(), described)
				// DB_USER is in the Secret and, in plain, in the ConfigMap: not a secret.
				plain := &corev1.ConfigMap{}
				g.Expect(h.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "mastodon-env"}, plain)).To(gomega.Succeed())
				checked := 0
				for key, value := range secret.Data {
					if len(value) < 8 || plain.Data[key] == string(value) { // SMTP_LOGIN "apikey" is a word that may well be in a message
						continue
					}
					checked++
					g.Expect(status).NotTo(gomega.ContainSubstring(string(value)), "the value of %s is in status", key)
					g.Expect(described).NotTo(gomega.ContainSubstring(string(value)), "the value of %s is in kubectl describe", key)
					for _, n := range notes {
						g.Expect(n).NotTo(gomega.ContainSubstring(string(value)), "the value of %s is in an Event", key)
					}
				}
				g.Expect(checked).To(gomega.BeNumerically(">", 5))
			}

			if tc.name == "GitOpsOwners" {
				expectGitOpsOwnersAccepted(t, ctx, got)
				return
			}
			if tc.name != "SourceServices" {
				return
			}
			// Fixed, the checklist runs again and the migration goes on. The Service's EndpointSlices
			// come after it: until then the rule finds no ready endpoint, and their watch wakes the
			// migration again.
			for _, o := range objs {
				if o.GetKind() == "Service" && o.GetName() == "mastodon-emoji" {
					svc := o.DeepCopy()
					svc.SetNamespace(ns)
					svc.SetResourceVersion("")
					if err := h.Client.Create(ctx, svc); err != nil {
						t.Fatal(err)
					}
				}
			}
			eventually(t, getMigration(ctx, m)).WithTimeout(3 * time.Minute).Should(gomega.And(
				gomega.WithTransform(stopping, gomega.BeEmpty()),
				gomega.HaveField("Status.Release.GeneratedValues", gomega.Not(gomega.BeEmpty()))))
			got, _ = getMigration(ctx, m)()
			g.Expect(meta.IsStatusConditionTrue(got.Status.Conditions, "PreflightPassed")).To(gomega.BeTrue())
			// Stop the migration here: the other subtests share the cluster.
			g.Expect(h.Client.Delete(ctx, got)).To(gomega.Succeed())
		})
	}
}

// expectGitOpsOwnersAccepted checks that the gitops layout's two owners are each one Blocks
// finding, and that once both are accepted (suspended, as the user says), they are still listed
// but only as Informational.
func expectGitOpsOwnersAccepted(t *testing.T, ctx context.Context, m *v1alpha1.MastodonMigration) {
	t.Helper()
	gitOps := func(m *v1alpha1.MastodonMigration) []v1alpha1.Finding {
		var out []v1alpha1.Finding
		for _, f := range m.Status.Preflight {
			if f.Check == "GitOpsOwners" {
				out = append(out, f)
			}
		}
		return out
	}
	owners := func(class v1alpha1.FindingClass) gtypes.GomegaMatcher {
		return gomega.ConsistOf(
			gomega.And(gomega.HaveField("Object", "flux/flux-system/mastodon"), gomega.HaveField("Class", class)),
			gomega.And(gomega.HaveField("Object", "argocd/platform/autoscaling"), gomega.HaveField("Class", class),
				gomega.HaveField("Message", gomega.HavePrefix("Argo CD Application platform/autoscaling applies 1 object the migration changes or reads (HorizontalPodAutoscaler/mastodon-web): "))))
	}
	g := gomega.NewWithT(t)
	g.Expect(gitOps(m)).To(owners(v1alpha1.FindingBlocks))

	accepted := m.DeepCopy()
	accepted.Spec.Preflight.AcceptGitOpsOwners = []string{"flux/flux-system/mastodon", "argocd/platform/autoscaling"}
	g.Expect(h.Client.Patch(ctx, accepted, client.MergeFrom(m))).To(gomega.Succeed())
	eventually(t, getMigration(ctx, m)).Should(gomega.WithTransform(gitOps, owners(v1alpha1.FindingInformational)))
	// Stop the migration here: the other subtests share the cluster.
	g.Expect(h.Client.Delete(ctx, accepted)).To(gomega.Succeed())
}

// presentObjects reads the fixture's objects that exist now, by Kind/name.
func presentObjects(t *testing.T, ctx context.Context, ns string, objs []*unstructured.Unstructured) map[string]*unstructured.Unstructured {
	t.Helper()
	out := map[string]*unstructured.Unstructured{}
	for _, o := range objs {
		u := &unstructured.Unstructured{}
		u.SetGroupVersionKind(o.GroupVersionKind())
		err := h.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: o.GetName()}, u)
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		out[o.GetKind()+"/"+o.GetName()] = u
	}
	return out
}

// preflightEvents returns the notes of the Warning events PreflightFailed in the namespace.
func preflightEvents(t *testing.T, ctx context.Context, ns string) []string {
	t.Helper()
	var notes []string
	eventually(t, func() ([]string, error) {
		var list eventsv1.EventList
		err := h.Client.List(ctx, &list, client.InNamespace(ns))
		notes = nil
		for _, e := range list.Items {
			if e.Type == corev1.EventTypeWarning && e.Reason == "PreflightFailed" {
				notes = append(notes, e.Note)
			}
		}
		return notes, err
	}).ShouldNot(gomega.BeEmpty())
	return notes
}
