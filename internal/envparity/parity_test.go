package envparity_test

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chart/loader"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
	"github.com/mastodon-operator/mastodon-operator/internal/envparity"
	"github.com/mastodon-operator/mastodon-operator/internal/helm"
	"github.com/mastodon-operator/mastodon-operator/internal/values"
	"github.com/mastodon-operator/mastodon-operator/test/fixture"
)

// stack is a set of Deployments with the ConfigMaps and Secrets their pods read.
type stack struct {
	deployments map[string]*appsv1.Deployment
	configMaps  map[string]*corev1.ConfigMap
	secrets     map[string]*corev1.Secret
}

func newStack(t *testing.T, objs []*unstructured.Unstructured) stack {
	t.Helper()
	s := stack{map[string]*appsv1.Deployment{}, map[string]*corev1.ConfigMap{}, map[string]*corev1.Secret{}}
	for _, obj := range objs {
		var into any
		switch obj.GetKind() {
		case "Deployment":
			d := &appsv1.Deployment{}
			s.deployments[obj.GetName()], into = d, d
		case "ConfigMap":
			cm := &corev1.ConfigMap{}
			s.configMaps[obj.GetName()], into = cm, cm
		case "Secret":
			sec := &corev1.Secret{}
			s.secrets[obj.GetName()], into = sec, sec
		default:
			continue
		}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(obj.Object, into); err != nil {
			t.Fatalf("%s %s: %v", obj.GetKind(), obj.GetName(), err)
		}
	}
	return s
}

func (s stack) deployment(t *testing.T, name string) *appsv1.Deployment {
	t.Helper()
	d, ok := s.deployments[name]
	if !ok {
		t.Fatalf("no Deployment %s", name)
	}
	return d
}

func (s stack) env(t *testing.T, deployment, container string) map[string]envparity.Value {
	t.Helper()
	env, err := envparity.Effective(s.deployment(t, deployment).Spec.Template.Spec, container, s.configMaps, s.secrets)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

func oldStack(t *testing.T) stack {
	t.Helper()
	objs, err := fixture.Objects()
	if err != nil {
		t.Fatal(err)
	}
	return newStack(t, objs)
}

func generate(t *testing.T, old stack) map[string]any {
	t.Helper()
	generated, err := values.Generate(values.Source{
		Web:        old.deployment(t, "mastodon-web"),
		Streaming:  old.deployment(t, "mastodon-streaming"),
		Sidekiq:    []*appsv1.Deployment{old.deployment(t, "mastodon-worker")},
		ConfigMaps: old.configMaps,
		Secrets:    old.secrets,
	})
	if err != nil {
		t.Fatal(err)
	}
	return generated
}

// renderStack renders the test chart as release mastodon-helm. Its pods also read the Secrets of
// the old stack (existingSecret) and extra, those the test adds.
func renderStack(t *testing.T, vals map[string]any, old stack, extra ...*corev1.Secret) stack {
	t.Helper()
	chrt, err := loader.Load(fixture.OfficialChart())
	if err != nil {
		t.Fatal(err)
	}
	m, err := helm.Render(chrt, vals, "mastodon-helm", "mastodon")
	if err != nil {
		t.Fatal(err)
	}
	s := newStack(t, m.Resources)
	for name, secret := range old.secrets {
		if _, ok := s.secrets[name]; !ok {
			s.secrets[name] = secret
		}
	}
	for _, secret := range extra {
		s.secrets[secret.Name] = secret
	}
	return s
}

// component pairs an old container with the chart's.
type component struct {
	name                    string
	oldDeploy, oldContainer string
	newDeploy, newContainer string
	// stops are the differences, "NAME Kind Class", that stop the migration (Blocks or Changes).
	stops []string
}

// With the generated values, the chart's pods differ from the old ones in many variables, by
// the chart's own doing (it sets CAS_ENABLED, LDAP_ENABLED, TZ, the SMTP defaults and more, and
// gives streaming the Rails pods' secrets); all but these change nothing Mastodon does:
//
//   - the chart does not pass OTP_SECRET (mastodon/helm-charts#80): spec.release.secretEnv must;
//   - the chart gives the SMTP credentials to Sidekiq only, and web had them;
//   - the chart always sets MALLOC_ARENA_MAX=2, a glibc tuning, and SMTP_OPENSSL_VERIFY_MODE=peer,
//     which Mastodon leaves unset.
var components = []component{
	{"web", "mastodon-web", "web", "mastodon-helm-web", "mastodon-web", []string{
		"MALLOC_ARENA_MAX Added Changes", "OTP_SECRET Missing Blocks", "SMTP_LOGIN Missing Changes",
		"SMTP_OPENSSL_VERIFY_MODE Added Changes", "SMTP_PASSWORD Missing Changes",
	}},
	{"streaming", "mastodon-streaming", "streaming", "mastodon-helm-streaming", "mastodon-streaming", []string{
		"MALLOC_ARENA_MAX Added Changes", "SMTP_OPENSSL_VERIFY_MODE Added Changes",
	}},
	{"sidekiq", "mastodon-worker", "worker", "mastodon-helm-sidekiq-worker", "mastodon", []string{
		"MALLOC_ARENA_MAX Added Changes", "OTP_SECRET Missing Blocks",
		"SMTP_OPENSSL_VERIFY_MODE Added Changes",
	}},
}

func diff(t *testing.T, old, new stack, c component) []envparity.Difference {
	t.Helper()
	secrets := map[string]*corev1.Secret{}
	for _, s := range []stack{old, new} {
		for name, secret := range s.secrets {
			secrets[name] = secret
		}
	}
	return envparity.Diff(old.env(t, c.oldDeploy, c.oldContainer), new.env(t, c.newDeploy, c.newContainer), secrets)
}

// Values generated from the old stack give the chart's pods the old pods' environment, apart
// from the chart's own differences: those listed above stop the migration, every other one is
// Informational.
func TestGeneratedValuesKeepTheEnvironment(t *testing.T) {
	old := oldStack(t)
	new := renderStack(t, generate(t, old), old)
	if len(new.secrets) != len(old.secrets) {
		t.Errorf("the chart renders a Secret of its own; every secret should come from the old Secret")
	}
	for _, c := range components {
		t.Run(c.name, func(t *testing.T) {
			oldEnv := old.env(t, c.oldDeploy, c.oldContainer)
			var stops []string
			for _, d := range diff(t, old, new, c) {
				class, reason := envparity.Classify(c.name, d, oldEnv)
				if class != v1alpha1.FindingInformational {
					stops = append(stops, d.Name+" "+d.Kind+" "+string(class))
				}
				if d.Kind == envparity.KindAdded && strings.HasPrefix(d.New, "secret ") {
					if want := "secret mastodon/" + d.Name; d.New != want {
						t.Errorf("%s added from %s, want %s", d.Name, d.New, want)
					}
				}
				t.Logf("%s: %s (%s)", d, class, reason)
			}
			if !slices.Equal(stops, c.stops) {
				t.Errorf("differences that stop the migration\n%q\nwant\n%q", stops, c.stops)
			}
		})
	}
}

func TestChangedDatabaseHostIsADifference(t *testing.T) {
	old := oldStack(t)
	vals := values.Merge(generate(t, old), map[string]any{"postgresql": map[string]any{"hostname": "10.20.0.99"}})
	new := renderStack(t, vals, old)
	for _, c := range components {
		var found bool
		for _, d := range diff(t, old, new, c) {
			if d.Name != "DB_HOST" {
				continue
			}
			found = true
			want := `DB_HOST: changed from "10.20.0.3" (configmap mastodon-env/DB_HOST) to "10.20.0.99" (configmap mastodon-helm-env/DB_HOST)`
			if d.String() != want {
				t.Errorf("%s: %s, want %s", c.name, d, want)
			}
			if class, _ := envparity.Classify(c.name, d, nil); class != v1alpha1.FindingChanges {
				t.Errorf("%s: %s is %s, want Changes", c.name, d, class)
			}
		}
		if !found {
			t.Errorf("%s: no difference in DB_HOST", c.name)
		}
	}
}

// The new release reads its secrets from a copy of the old Secret in which DB_PASS was
// rotated: the other keys, same values under another Secret, are no difference; DB_PASS is,
// and its values show nowhere.
func TestChangedSecretValueIsDetectedNotShown(t *testing.T) {
	old := oldStack(t)
	rotated := old.secrets["mastodon"].DeepCopy()
	rotated.Name = "mastodon-rotated"
	const oldPassword, newPassword = "fake-db-password", "rotated-db-password-4f1c"
	if rotated.StringData["DB_PASS"] != oldPassword {
		t.Fatalf("the fixture's DB_PASS is not %q", oldPassword)
	}
	rotated.StringData["DB_PASS"] = newPassword
	vals := generate(t, old)
	for _, group := range [][]string{{"mastodon", "secrets"}, {"mastodon", "s3"}, {"mastodon", "smtp"}, {"postgresql"}, {"redis"}} {
		layer := map[string]any{"existingSecret": "mastodon-rotated"}
		for i := len(group) - 1; i >= 0; i-- {
			layer = map[string]any{group[i]: layer}
		}
		vals = values.Merge(vals, layer)
	}
	new := renderStack(t, vals, old, rotated)

	for _, c := range components {
		diffs := diff(t, old, new, c)
		var found bool
		for _, d := range diffs {
			printed := fmt.Sprintf("%s %s %s %s %s %v %+v", d.Name, d.Kind, d.Old, d.New, d, d, d)
			if strings.Contains(printed, oldPassword) || strings.Contains(printed, newPassword) {
				t.Errorf("%s: a difference shows a secret value: %s", c.name, printed)
			}
			if d.Name == "DB_PASS" {
				found = true
				want := "DB_PASS: changed from secret mastodon/DB_PASS (different value) to secret mastodon-rotated/DB_PASS (different value)"
				if d.String() != want {
					t.Errorf("%s: %s, want %s", c.name, d, want)
				}
			} else if d.Kind == envparity.KindChanged && !d.SameValue {
				t.Errorf("%s: %s", c.name, d)
			}
		}
		if !found {
			t.Errorf("%s: the rotated DB_PASS is no difference", c.name)
		}
	}

	// Nor do the effective environments or their errors show it.
	env := new.env(t, "mastodon-helm-web", "mastodon-web")
	if !reflect.DeepEqual(env["DB_PASS"], envparity.Value{FromSecret: &envparity.Ref{Name: "mastodon-rotated", Key: "DB_PASS"}}) {
		t.Errorf("DB_PASS = %#v", env["DB_PASS"])
	}
	// The old web pods read the whole Secret through envFrom: without it, an error that names
	// it and shows nothing of it.
	spec := old.deployment(t, "mastodon-web").Spec.Template.Spec
	_, err := envparity.Effective(spec, "web", old.configMaps, map[string]*corev1.Secret{"mastodon-rotated": rotated})
	if err == nil || !strings.Contains(err.Error(), "Secret mastodon not found") {
		t.Errorf("error %v, want one naming Secret mastodon", err)
	} else if strings.Contains(err.Error(), oldPassword) || strings.Contains(err.Error(), newPassword) {
		t.Errorf("error shows a secret value: %v", err)
	}
}
