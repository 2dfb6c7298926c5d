package e2e

import (
	"context"
	"strings"
	"testing"

	"github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
	"github.com/mastodon-operator/mastodon-operator/internal/snapshot"
	"github.com/mastodon-operator/mastodon-operator/test/fixture"
)

// The one-secret layout keeps every variable in one Terraform-made Secret. With generated
// values the migration completes: the configuration goes into the values, the credentials stay
// in the Secret, and the variables the chart cannot pass (OTP_SECRET, LIBRE_TRANSLATE_API_KEY)
// reach the release's pods from the same keys.
func TestOneSecretLayoutMigrates(t *testing.T) {
	ctx := context.Background()
	ns := "mastodon-one-secret"
	objs, err := h.DeployLayout(ctx, ns, fixture.LayoutOneSecret)
	if err != nil {
		t.Fatal(err)
	}
	before := liveObjects(t, ctx, ns, objs)
	m := sampleMigration(t, ns)
	shortWindow(m)
	m.Spec.Source.Sidekiq = []v1alpha1.ComponentRef{{Deployment: "mastodon-sidekiq"}}
	m.Spec.Preflight.AcceptEnvChanges = []string{
		"MALLOC_ARENA_MAX", "SMTP_OPENSSL_VERIFY_MODE", "ES_PRESET", // the chart's own settings
		"SINGLE_USER_MODE",                    // "false" in the Secret; the chart writes it only when true
		"web/SMTP_LOGIN", "web/SMTP_PASSWORD", // the chart gives them to Sidekiq only
		"streaming/ES_USER", "streaming/ES_PASS", // and these to web and Sidekiq
		"sidekiq/MAX_THREADS", "sidekiq/WEB_CONCURRENCY", // Puma's, to web only
	}
	if err := h.Client.Create(ctx, m); err != nil {
		t.Fatal(err)
	}
	eventually(t, getMigration(ctx, m)).Should(gomega.HaveField("Status.Phase", v1alpha1.PhaseCompleted))
	got, _ := getMigration(ctx, m)()
	g := gomega.NewWithT(t)
	t.Logf("steps: %v", stepStates(got))

	// The generated values' ConfigMap holds the secretEnv, and no credential.
	cm := &corev1.ConfigMap{}
	g.Expect(h.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: m.Name + "-generated-values"}, cm)).To(gomega.Succeed())
	var env []v1alpha1.SecretEnvVar
	g.Expect(yaml.Unmarshal([]byte(cm.Data["secretEnv.yaml"]), &env)).To(gomega.Succeed())
	g.Expect(env).To(gomega.ConsistOf(
		v1alpha1.SecretEnvVar{Name: "OTP_SECRET", SecretName: "mastodon-secrets", Key: "OTP_SECRET"},
		v1alpha1.SecretEnvVar{Name: "LIBRE_TRANSLATE_API_KEY", SecretName: "mastodon-secrets", Key: "LIBRE_TRANSLATE_API_KEY"}))
	for key, doc := range cm.Data {
		g.Expect(strings.ToLower(doc)).NotTo(gomega.ContainSubstring("fake"), "a credential of the fixture in %s", key)
	}
	g.Expect(cm.Data["values.yaml"]).To(gomega.ContainSubstring("10.30.0.5"), "DB_HOST, configuration, in the values")

	// Every Mastodon container of the release has them from the same Secret keys.
	for _, name := range []string{"mastodon-helm-web", "mastodon-helm-streaming", "mastodon-helm-sidekiq-worker"} {
		d := &appsv1.Deployment{}
		g.Expect(h.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, d)).To(gomega.Succeed())
		for _, v := range env {
			g.Expect(d.Spec.Template.Spec.Containers[0].Env).To(gomega.ContainElement(corev1.EnvVar{Name: v.Name,
				ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
					LocalObjectReference: corev1.LocalObjectReference{Name: v.SecretName}, Key: v.Key}}}), name)
		}
	}
	// The Elk client beside Mastodon, the Ingress and the Terraform Secret are as they were.
	after := liveObjects(t, ctx, ns, objs)
	for _, key := range []string{"Deployment/elk", "Service/elk", "Ingress/mastodon", "Secret/mastodon-secrets"} {
		g.Expect(snapshot.Compare(after[key], before[key])).To(gomega.BeEmpty(), key)
	}
}
