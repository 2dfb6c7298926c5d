package preflight

import (
	"context"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
	"github.com/mastodon-operator/mastodon-operator/internal/values"
	"github.com/mastodon-operator/mastodon-operator/test/fixture"
)

// The one-secret layout (every variable in one Terraform-made Secret) with what
// GenerateWithNotes derives from it, values and secretEnv, as the controller passes them: every
// Secret key the release's pods and hook Jobs read is in the layout's Secret, and env parity
// finds nothing that stops the migration but what the chart itself changes, each said by a
// note of the generated values or the chart's own (it always sets MALLOC_ARENA_MAX and
// SMTP_OPENSSL_VERIFY_MODE).
func TestReleaseRulesOnTheOneSecretLayout(t *testing.T) {
	ctx := context.Background()
	c := apiServer(t)
	ns := newNamespace(t, c)
	applyLayout(t, c, ns, fixture.LayoutOneSecret)
	src := values.Source{Secrets: map[string]*corev1.Secret{}, Ingress: "mastodon"}
	get := func(name string) *appsv1.Deployment {
		d := &appsv1.Deployment{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, d); err != nil {
			t.Fatal(err)
		}
		return d
	}
	src.Web, src.Streaming, src.Sidekiq = get("mastodon-web"), get("mastodon-streaming"), []*appsv1.Deployment{get("mastodon-sidekiq")}
	secret := &corev1.Secret{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "mastodon-secrets"}, secret); err != nil {
		t.Fatal(err)
	}
	src.Secrets[secret.Name] = secret
	gen, err := values.GenerateWithNotes(src)
	if err != nil {
		t.Fatal(err)
	}
	chrt, err := testChart()
	if err != nil {
		t.Fatal(err)
	}
	m := testMigration(ns, "mastodon-sidekiq")
	m.Spec.Source.Ingress = "mastodon"
	m.Spec.Release.GenerateValues = true
	in := Input{Client: c, Writer: c, Migration: m, Charts: dirChart{chrt},
		Values:    func(context.Context) (map[string]any, error) { return gen.Values, nil },
		SecretEnv: func(context.Context) ([]v1alpha1.SecretEnvVar, error) { return gen.SecretEnv, nil }}

	noted := map[string]bool{"MALLOC_ARENA_MAX": true, "SMTP_OPENSSL_VERIFY_MODE": true}
	for _, n := range gen.Notes {
		noted[n.Variable] = true
	}
	var stops int
	for _, f := range run(t, in) {
		t.Logf("%s %s %s: %s", f.Check, f.Class, f.Object, f.Message)
		for key, v := range secret.Data {
			if len(v) >= 8 && strings.Contains(f.Message, string(v)) && !isConfig(gen, key) {
				t.Errorf("finding %s shows the value of Secret key %s", f.Check, key)
			}
		}
		switch {
		case f.Class == v1alpha1.FindingInformational:
		case f.Check == "EnvParity":
			stops++
			name, _, _ := strings.Cut(strings.TrimPrefix(f.Message, "env "), ":")
			if f.Class == v1alpha1.FindingBlocks || !noted[name] {
				t.Errorf("env parity %s about %s, which no note of the generated values explains", f.Class, name)
			}
		default:
			t.Errorf("%s finding: %s", f.Check, f.Message)
		}
	}
	if stops == 0 {
		t.Error("env parity reports no Change at all: the chart's own ones (SMTP_LOGIN in web, ...) should be there")
	}
}

// isConfig says whether the generated values read Secret key key as configuration.
func isConfig(gen values.Generated, key string) bool {
	return slices.ContainsFunc(gen.Notes, func(n values.Note) bool { return n.Kind == values.FromSecret && n.Variable == key })
}
