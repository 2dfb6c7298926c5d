package controllers_test

import (
	"context"
	"testing"
	"time"

	"github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
)

func get(ctx context.Context, m *v1alpha1.MastodonMigration) func() (*v1alpha1.MastodonMigration, error) {
	return func() (*v1alpha1.MastodonMigration, error) {
		got := &v1alpha1.MastodonMigration{}
		err := k8sClient.Get(ctx, client.ObjectKeyFromObject(m), got)
		return got, err
	}
}

func conditionStatus(m *v1alpha1.MastodonMigration, typ string) metav1.ConditionStatus {
	if c := meta.FindStatusCondition(m.Status.Conditions, typ); c != nil {
		return c.Status
	}
	return ""
}

func stepOf(m *v1alpha1.MastodonMigration, name string) v1alpha1.StepStatus {
	for _, s := range m.Status.Steps {
		if s.Name == name {
			return s
		}
	}
	return v1alpha1.StepStatus{}
}

func findingObjects(m *v1alpha1.MastodonMigration) []string {
	var out []string
	for _, f := range m.Status.Preflight {
		out = append(out, f.Check+" "+f.Object)
	}
	return out
}

func TestPreflightReportsEveryMissingReferenceAndChangesNothing(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t, ctx)
	m := migration(ns, "to-helm")
	m.Spec.Release.Chart.Version = "9.9.9"
	m.Spec.Source.ExtraResources = []v1alpha1.ObjectRef{{APIVersion: "autoscaling/v2", Kind: "HorizontalPodAutoscaler", Name: "mastodon-web"}}
	if err := k8sClient.Create(ctx, m); err != nil {
		t.Fatal(err)
	}

	eventually(t, get(ctx, m)).Should(gomega.WithTransform(func(m *v1alpha1.MastodonMigration) []string {
		return findingObjects(m)
	}, gomega.ConsistOf(
		"SourceDeployments Deployment/mastodon-web",
		"SourceDeployments Deployment/mastodon-streaming",
		"SourceDeployments Deployment/mastodon-worker",
		"SourceIngress Ingress/mastodon",
		"ExtraResources HorizontalPodAutoscaler/mastodon-web",
		"Chart Chart/mastodon",
	)))
	got, _ := get(ctx, m)()
	g := gomega.NewWithT(t)
	g.Expect(got.Status.Phase).To(gomega.Equal(v1alpha1.PhasePreflight))
	g.Expect(stepOf(got, "Preflight").State).To(gomega.Equal(v1alpha1.StepFailed))
	g.Expect(stepOf(got, "Preflight").Message).To(gomega.Equal("6 findings: 6 block the migration; see status.preflight"))
	g.Expect(got.Status.PreflightSummary).To(gomega.Equal(&v1alpha1.PreflightSummary{Blocks: 6}))
	g.Expect(conditionStatus(got, "Stalled")).To(gomega.Equal(metav1.ConditionTrue))
	g.Expect(conditionStatus(got, "Ready")).To(gomega.Equal(metav1.ConditionFalse))
	g.Expect(conditionStatus(got, "Reconciling")).To(gomega.Equal(metav1.ConditionFalse))
	g.Expect(conditionStatus(got, "PreflightPassed")).To(gomega.Equal(metav1.ConditionFalse))
	g.Expect(got.Status.ObservedGeneration).To(gomega.Equal(got.Generation))
	for _, f := range got.Status.Preflight {
		if f.Check == "Chart" {
			g.Expect(f.Message).To(gomega.ContainSubstring("9.9.9"))
		}
		if f.Object == "Deployment/mastodon-web" {
			g.Expect(f.Message).To(gomega.Equal(
				"Deployment mastodon-web (web) not found in namespace " + ns + ": check spec.source.web.deployment"))
		}
	}
	eventually(t, eventsFor(ctx, "MastodonMigration", m)).Should(gomega.ContainElement(gomega.And(
		gomega.HaveField("Type", corev1.EventTypeWarning),
		gomega.HaveField("Reason", "PreflightFailed"),
		gomega.HaveField("Note", gomega.And(
			gomega.HavePrefix("6 findings: 6 block the migration; see status.preflight. First: "),
			gomega.ContainSubstring("Deployment mastodon-streaming (streaming) not found"),
			gomega.ContainSubstring("chart mastodon version 9.9.9 not found"))),
	)))

	// Nothing was created or changed: the namespace still holds no workload.
	var deployments appsv1.DeploymentList
	g.Expect(k8sClient.List(ctx, &deployments, client.InNamespace(ns))).To(gomega.Succeed())
	g.Expect(deployments.Items).To(gomega.BeEmpty())
}

func TestPreflightLooksAgainWhenTheSourceAppears(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t, ctx)
	m := migration(ns, "to-helm")
	if err := k8sClient.Create(ctx, m); err != nil {
		t.Fatal(err)
	}
	eventually(t, get(ctx, m)).Should(gomega.WithTransform(findingObjects,
		gomega.ContainElement("SourceIngress Ingress/mastodon")))

	// Creating the objects wakes the migration through its watches, with no requeue timer due.
	for _, name := range []string{"mastodon-web", "mastodon-streaming", "mastodon-worker"} {
		if err := k8sClient.Create(ctx, deployment(ns, name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := k8sClient.Create(ctx, ingress(ns, "mastodon")); err != nil {
		t.Fatal(err)
	}
	// envtest runs no controller-manager, so the Deployments exist but never become available:
	// preflight now says exactly that, and no longer reports anything missing.
	eventually(t, get(ctx, m)).Should(gomega.WithTransform(func(m *v1alpha1.MastodonMigration) []string {
		var msgs []string
		for _, f := range m.Status.Preflight {
			msgs = append(msgs, f.Message)
		}
		return msgs
	}, gomega.And(
		gomega.ContainElement(gomega.HavePrefix("Deployment mastodon-web is not available: ")),
		gomega.ContainElement(gomega.HavePrefix("Deployment mastodon-streaming is not available: ")),
		gomega.ContainElement(gomega.HavePrefix("Deployment mastodon-worker is not available: ")),
		gomega.Not(gomega.ContainElement(gomega.ContainSubstring("not found in namespace"))),
	)))
}

func TestPreflightLooksAgainWhenAServiceGetsAReadyEndpoint(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t, ctx)
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "mastodon-web"},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "mastodon-web"},
			Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}}
	if err := k8sClient.Create(ctx, svc); err != nil {
		t.Fatal(err)
	}
	m := migration(ns, "to-helm")
	m.Spec.Source.Services = []string{"mastodon-web"}
	if err := k8sClient.Create(ctx, m); err != nil {
		t.Fatal(err)
	}
	noEndpoint := gomega.ContainElement(gomega.And(gomega.HaveField("Object", "Service/mastodon-web"),
		gomega.HaveField("Message", gomega.HavePrefix("Service mastodon-web has no ready endpoint"))))
	preflight := func(m *v1alpha1.MastodonMigration) []v1alpha1.Finding { return m.Status.Preflight }
	eventually(t, get(ctx, m)).Should(gomega.WithTransform(preflight, noEndpoint))

	// envtest runs no EndpointSlice controller: the test writes the slice, its endpoint not ready
	// (still no ready endpoint) and then ready. The update wakes the migration through the watch,
	// with no requeue timer due.
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "mastodon-web-abcde",
			Labels: map[string]string{discoveryv1.LabelServiceName: "mastodon-web"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"10.0.0.1"},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(false)}}},
	}
	if err := k8sClient.Create(ctx, slice); err != nil {
		t.Fatal(err)
	}
	gomega.NewWithT(t).Consistently(get(ctx, m)).WithTimeout(2 * time.Second).WithPolling(100 * time.Millisecond).
		Should(gomega.WithTransform(preflight, noEndpoint))
	slice.Endpoints[0].Conditions.Ready = ptr.To(true)
	if err := k8sClient.Update(ctx, slice); err != nil {
		t.Fatal(err)
	}
	eventually(t, get(ctx, m)).Should(gomega.WithTransform(preflight, gomega.Not(noEndpoint)))
}

func TestPausedMigrationRunsNoStep(t *testing.T) {
	ctx := context.Background()
	m := migration(newNamespace(t, ctx), "paused")
	m.Spec.Paused = true
	if err := k8sClient.Create(ctx, m); err != nil {
		t.Fatal(err)
	}
	eventually(t, get(ctx, m)).Should(gomega.WithTransform(func(m *v1alpha1.MastodonMigration) string {
		if c := meta.FindStatusCondition(m.Status.Conditions, "Reconciling"); c != nil && c.Status == metav1.ConditionFalse {
			return c.Reason + ": " + c.Message
		}
		return ""
	}, gomega.Equal("Paused: paused before step Preflight: set spec.paused to false to go on")))
	got, _ := get(ctx, m)()
	gomega.NewWithT(t).Expect(stepOf(got, "Preflight").State).To(gomega.Equal(v1alpha1.StepPending))
	gomega.NewWithT(t).Expect(got.Status.Preflight).To(gomega.BeEmpty())

	resumed := got.DeepCopy()
	resumed.Spec.Paused = false
	if err := k8sClient.Patch(ctx, resumed, client.MergeFrom(got)); err != nil {
		t.Fatal(err)
	}
	eventually(t, get(ctx, m)).Should(gomega.WithTransform(func(m *v1alpha1.MastodonMigration) v1alpha1.StepState {
		return stepOf(m, "Preflight").State
	}, gomega.Equal(v1alpha1.StepFailed)))
}

func TestRollbackLevelStopsAMigrationThatChangedNothing(t *testing.T) {
	ctx := context.Background()
	m := migration(newNamespace(t, ctx), "to-helm")
	if err := k8sClient.Create(ctx, m); err != nil {
		t.Fatal(err)
	}
	eventually(t, get(ctx, m)).Should(gomega.HaveField("Status.Phase", v1alpha1.PhasePreflight))
	latest, _ := get(ctx, m)()
	raised := latest.DeepCopy()
	raised.Spec.RollbackLevel = 1
	if err := k8sClient.Patch(ctx, raised, client.MergeFrom(latest)); err != nil {
		t.Fatal(err)
	}
	eventually(t, get(ctx, m)).Should(gomega.And(
		gomega.HaveField("Status.Phase", v1alpha1.PhaseRolledBack),
		gomega.HaveField("Status.Rollback.Trigger", "RollbackLevel"),
		gomega.HaveField("Status.Rollback.Level", int32(1)),
		gomega.HaveField("Status.ObservedGeneration", raised.Generation),
	))
	eventually(t, eventsFor(ctx, "MastodonMigration", m)).Should(gomega.ContainElement(gomega.And(
		gomega.HaveField("Reason", "RolledBack"),
		gomega.HaveField("Note", gomega.ContainSubstring("nothing to undo")),
	)))
}

func deployment(ns, name string) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](2),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "ghcr.io/mastodon/mastodon:v4.6.2"}}},
			},
		},
	}
}

func ingress(ns, name string) *networkingv1.Ingress {
	return &networkingv1.Ingress{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: networkingv1.IngressSpec{DefaultBackend: &networkingv1.IngressBackend{
			Service: &networkingv1.IngressServiceBackend{Name: "mastodon-web", Port: networkingv1.ServiceBackendPort{Number: 3000}},
		}},
	}
}
