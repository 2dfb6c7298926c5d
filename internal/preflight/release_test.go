package preflight

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"

	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
	"github.com/mastodon-operator/mastodon-operator/internal/helm"
	"github.com/mastodon-operator/mastodon-operator/internal/testenv"
	"github.com/mastodon-operator/mastodon-operator/internal/values"
	"github.com/mastodon-operator/mastodon-operator/test/fixture"
)

// These tests run the release rules against a real API server (envtest, binaries of
// hack/tools/build.sh), started once for the package. The source stack is the Kustomize
// fixture, the values are generated from it as the controller does, and the chart is the test
// chart that mirrors the official one.

// apiServerEnv is the API server the package's tests share.
var apiServerEnv = testenv.Shared{CRDs: []string{fixture.Testdata("crds")}}

func TestMain(m *testing.M) {
	code := m.Run()
	apiServerEnv.Stop()
	os.Exit(code)
}

// apiServer returns a client of the shared API server.
func apiServer(t *testing.T) client.Client {
	t.Helper()
	c, err := client.New(apiServerEnv.Config(t), client.Options{Scheme: clientgoscheme.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// dirChart serves the test chart whatever the reference.
type dirChart struct{ chrt *chart.Chart }

func (d dirChart) LoadChart(context.Context, helm.ChartRef) (*chart.Chart, error) { return d.chrt, nil }

var testChart = sync.OnceValues(func() (*chart.Chart, error) {
	return loader.Load(fixture.OfficialChart())
})

// noHTTPRoute turns off the chart's HTTPRoute: the test API server serves no Gateway API.
var noHTTPRoute = map[string]any{"httproute": map[string]any{"enabled": false}}

// stack is the fixture applied in a namespace of its own, and the Input the controller would
// build for it.
type stack struct {
	c      client.Client
	ns     string
	source values.Source
	in     Input
	// values are the generated ones, release those of spec.release.values; Input.Values returns
	// them merged with overrides.
	values, release, overrides map[string]any
}

var nsCount struct {
	sync.Mutex
	n int
}

// preparedStack is the fixture as its owner readies it for the official chart, which reads
// DB_USER from the database Secret and does not pass OTP_SECRET: DB_USER added to Secret
// mastodon and named in postgresql.existingSecretKeys.username, OTP_SECRET in
// spec.release.secretEnv, and the chart's own changes accepted.
func preparedStack(t *testing.T) *stack {
	t.Helper()
	s := newStack(t, func(secret *corev1.Secret) { secret.StringData = map[string]string{"DB_USER": "mastodon"} })
	s.release = map[string]any{"postgresql": map[string]any{"existingSecretKeys": map[string]any{"username": "DB_USER"}}}
	s.in.Migration.Spec.Release.SecretEnv = []v1alpha1.SecretEnvVar{{Name: "OTP_SECRET", SecretName: "mastodon", Key: "OTP_SECRET"}}
	s.in.Migration.Spec.Preflight.AcceptEnvChanges = []string{
		// The chart always sets them: a glibc tuning, and what Mastodon leaves to the mail library.
		"MALLOC_ARENA_MAX", "SMTP_OPENSSL_VERIFY_MODE",
		// The chart gives the SMTP credentials to Sidekiq only; the owner accepts that web
		// loses them.
		"web/SMTP_LOGIN", "web/SMTP_PASSWORD",
	}
	return s
}

// newStack applies the fixture, with editSecret (if not nil) applied to its Secret mastodon
// first, and generates the values from it.
func newStack(t *testing.T, editSecret func(*corev1.Secret)) *stack {
	t.Helper()
	ctx := context.Background()
	c := apiServer(t)
	ns := newNamespace(t, c)
	applyLayout(t, c, ns, fixture.LayoutProduction)
	if editSecret != nil {
		var secret corev1.Secret
		if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "mastodon"}, &secret); err != nil {
			t.Fatal(err)
		}
		editSecret(&secret)
		if err := c.Update(ctx, &secret); err != nil {
			t.Fatal(err)
		}
	}
	s := &stack{c: c, ns: ns}
	s.source = readSource(t, c, ns)
	var err error
	if s.values, err = values.Generate(s.source); err != nil {
		t.Fatal(err)
	}
	chrt, err := testChart()
	if err != nil {
		t.Fatal(err)
	}
	s.in = Input{Client: c, Writer: c, Migration: testMigration(ns, "mastodon-worker"), Charts: dirChart{chrt},
		Values: func(context.Context) (map[string]any, error) {
			return values.Merge(s.values, noHTTPRoute, s.release, s.overrides), nil
		},
		SecretEnv: func(context.Context) ([]v1alpha1.SecretEnvVar, error) {
			return s.in.Migration.Spec.Release.SecretEnv, nil
		}}
	return s
}

// newNamespace creates a namespace of its own for a test, preflight-<n>.
func newNamespace(t *testing.T, c client.Client) string {
	t.Helper()
	nsCount.Lock()
	nsCount.n++
	ns := fmt.Sprintf("preflight-%d", nsCount.n)
	nsCount.Unlock()
	if err := c.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	return ns
}

// applyLayout applies a layout of the fixture to namespace ns.
func applyLayout(t *testing.T, c client.Client, ns, layout string) {
	t.Helper()
	objs, err := fixture.Layout(layout)
	if err != nil {
		t.Fatal(err)
	}
	if err := fixture.Apply(context.Background(), c, ns, objs); err != nil {
		t.Fatal(err)
	}
}

// testMigration migrates a fixture layout in ns, whose one Sidekiq Deployment is sidekiq, to
// release mastodon-helm.
func testMigration(ns, sidekiq string) *v1alpha1.MastodonMigration {
	return &v1alpha1.MastodonMigration{
		ObjectMeta: metav1.ObjectMeta{Name: "migrate", Namespace: ns},
		Spec: v1alpha1.MastodonMigrationSpec{
			Source: v1alpha1.SourceSpec{
				Web:       v1alpha1.ComponentRef{Deployment: "mastodon-web"},
				Streaming: v1alpha1.ComponentRef{Deployment: "mastodon-streaming"},
				Sidekiq:   []v1alpha1.ComponentRef{{Deployment: sidekiq}},
			},
			Release: v1alpha1.ReleaseSpec{Name: "mastodon-helm", Chart: v1alpha1.ChartRef{Repository: "oci://example.invalid/charts", Name: "mastodon"}},
		},
	}
}

// readSource reads the source stack back from the API server, as the controller does.
func readSource(t *testing.T, c client.Client, ns string) values.Source {
	t.Helper()
	ctx := context.Background()
	src := values.Source{ConfigMaps: map[string]*corev1.ConfigMap{}, Secrets: map[string]*corev1.Secret{}}
	get := func(name string) *appsv1.Deployment {
		d := &appsv1.Deployment{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, d); err != nil {
			t.Fatal(err)
		}
		return d
	}
	src.Web, src.Streaming, src.Sidekiq = get("mastodon-web"), get("mastodon-streaming"), []*appsv1.Deployment{get("mastodon-worker")}
	var cms corev1.ConfigMapList
	var secrets corev1.SecretList
	if err := c.List(ctx, &cms, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	if err := c.List(ctx, &secrets, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	for i := range cms.Items {
		src.ConfigMaps[cms.Items[i].Name] = &cms.Items[i]
	}
	for i := range secrets.Items {
		src.Secrets[secrets.Items[i].Name] = &secrets.Items[i]
	}
	return src
}

// releaseRules are the rules under test, in Checklist order.
func releaseRules() []Rule {
	var out []Rule
	for _, r := range Checklist() {
		switch r.Name {
		case "ReleaseRenders", "ReleaseReferences", "ReleaseCollisions", "ReleaseDryRun", "Image", "Version", "EnvParity", "TargetPorts":
			out = append(out, r)
		}
	}
	return out
}

// run is Run over the release rules; the render adds spec.release.secretEnv (Input.SecretEnv)
// as the install does.
func run(t *testing.T, in Input) []v1alpha1.Finding {
	t.Helper()
	ctx := context.Background()
	in.preview = &releasePreview{}
	var findings []v1alpha1.Finding
	for _, r := range releaseRules() {
		found, err := r.Check(ctx, in)
		if err != nil {
			t.Fatalf("%s: %v", r.Name, err)
		}
		for i := range found {
			found[i].Check = r.Name
		}
		findings = append(findings, found...)
	}
	return findings
}

// The fixture, readied by its owner, passes: no finding stops the migration. Env parity lists
// the chart's own differences that change nothing Mastodon does.
func TestReleaseRulesPassOnTheFixture(t *testing.T) {
	s := preparedStack(t)
	for _, f := range run(t, s.in) {
		if f.Class == v1alpha1.FindingInformational {
			t.Logf("informational: %s %s", f.Check, f.Message)
			continue
		}
		t.Errorf("finding %s %s %s: %s", f.Class, f.Check, f.Object, f.Message)
	}
}

// setValue is the values that set the dotted path to v.
func setValue(path string, v any) map[string]any {
	keys := strings.Split(path, ".")
	out := map[string]any{keys[len(keys)-1]: v}
	for i := len(keys) - 2; i >= 0; i-- {
		out = map[string]any{keys[i]: out}
	}
	return out
}

// Each rule broken on purpose gives its finding.
func TestReleaseRulesFindWhatIsBroken(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		breakIt func(t *testing.T, s *stack)
		check   string
		object  string
		// about starts the message, where the rule finds several things about one object.
		about string
		says  []string
		// noneOf: these rules must find nothing.
		noneOf []string
	}{{
		name: "no database host",
		breakIt: func(t *testing.T, s *stack) {
			delete(s.values["postgresql"].(map[string]any), "hostname")
		},
		check: "ReleaseRenders", object: "Release/mastodon-helm",
		says: []string{"Database hostname must be given", "set it in spec.release.values"},
	}, {
		name: "a Secret key removed",
		breakIt: func(t *testing.T, s *stack) {
			var secret corev1.Secret
			if err := s.c.Get(ctx, client.ObjectKey{Namespace: s.ns, Name: "mastodon"}, &secret); err != nil {
				t.Fatal(err)
			}
			delete(secret.Data, "OTP_SECRET")
			if err := s.c.Update(ctx, &secret); err != nil {
				t.Fatal(err)
			}
		},
		check: "ReleaseReferences", object: "Secret/mastodon",
		// spec.release.secretEnv names it: every Mastodon container and hook Job reads it.
		says: []string{"has no key OTP_SECRET", "Deployment/mastodon-helm-web container mastodon-web (env OTP_SECRET)", "Job/"},
	}, {
		name: "a ConfigMap of the release's name not owned by Helm",
		breakIt: func(t *testing.T, s *stack) {
			cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "mastodon-helm-env", Namespace: s.ns}, Data: map[string]string{"A": "b"}}
			if err := s.c.Create(ctx, cm); err != nil {
				t.Fatal(err)
			}
		},
		check: "ReleaseCollisions", object: "ConfigMap/mastodon-helm-env",
		says: []string{"does not belong to release mastodon-helm", "spec.release.name"},
	}, {
		name: "InPlace with release mastodon hands the old stack's objects over",
		breakIt: func(t *testing.T, s *stack) {
			s.in.Migration.Spec.Strategy = v1alpha1.StrategyInPlace
			s.in.Migration.Spec.Release.Name = "mastodon"
		},
		noneOf: []string{"ReleaseCollisions"},
	}, {
		name: "InPlace with release mastodon: a ConfigMap key the chart sets otherwise",
		breakIt: func(t *testing.T, s *stack) {
			s.in.Migration.Spec.Strategy = v1alpha1.StrategyInPlace
			s.in.Migration.Spec.Release.Name = "mastodon"
			s.overrides = setValue("mastodon.localDomain", "other.example")
		},
		check: "ReleaseCollisions", object: "ConfigMap/mastodon-env",
		says: []string{"InPlace cannot hand it to release mastodon", "key(s) LOCAL_DOMAIN", "mastodon.fullnameOverride"},
	}, {
		name: "InPlace with release mastodon and the Ingress method",
		breakIt: func(t *testing.T, s *stack) {
			s.in.Migration.Spec.Strategy = v1alpha1.StrategyInPlace
			s.in.Migration.Spec.Release.Name = "mastodon"
			s.in.Migration.Spec.Traffic.Method = v1alpha1.TrafficIngress
		},
		check: "ReleaseCollisions", object: "Service/mastodon-web",
		says: []string{"InPlace cannot hand it to release mastodon", "use the ServiceSelector method"},
	}, {
		name: "InPlace with release mastodon: a Service that routes to no old pod",
		breakIt: func(t *testing.T, s *stack) {
			s.in.Migration.Spec.Strategy = v1alpha1.StrategyInPlace
			s.in.Migration.Spec.Release.Name = "mastodon"
			var svc corev1.Service
			if err := s.c.Get(ctx, client.ObjectKey{Namespace: s.ns, Name: "mastodon-streaming"}, &svc); err != nil {
				t.Fatal(err)
			}
			svc.Spec.Selector = map[string]string{"app": "elsewhere"}
			if err := s.c.Update(ctx, &svc); err != nil {
				t.Fatal(err)
			}
		},
		check: "ReleaseCollisions", object: "Service/mastodon-streaming",
		says: []string{"InPlace cannot hand it to release mastodon", "selector app=elsewhere picks no pod"},
	}, {
		name: "another image tag",
		breakIt: func(t *testing.T, s *stack) {
			s.overrides = setValue("image.tag", "v9.9.9")
		},
		check: "Image", object: "Deployment/mastodon-helm-web",
		says: []string{":v9.9.9", "spec.preflight.allowImageChange"},
	}, {
		name: "another image tag, allowed",
		breakIt: func(t *testing.T, s *stack) {
			s.overrides = setValue("image.tag", "v9.9.9")
			s.in.Migration.Spec.Preflight.AllowImageChange = true
		},
		noneOf: []string{"Image"},
	}, {
		name: "another database host",
		breakIt: func(t *testing.T, s *stack) {
			s.overrides = setValue("postgresql.hostname", "10.99.0.1")
		},
		check: "EnvParity", object: "Deployment/mastodon-web", about: "env DB_HOST:",
		says: []string{"env DB_HOST: changed ", `→ "10.99.0.1" (configmap mastodon-helm-env/DB_HOST) in web (mastodon-web → mastodon-helm-web), streaming`,
			"[Changes: the value differs]",
			"Fix: set postgresql.hostname", "add DB_HOST to spec.preflight.acceptEnvChanges"},
	}, {
		name: "a Service targets a port the chart lacks",
		breakIt: func(t *testing.T, s *stack) {
			var svc corev1.Service
			if err := s.c.Get(ctx, client.ObjectKey{Namespace: s.ns, Name: "mastodon-streaming"}, &svc); err != nil {
				t.Fatal(err)
			}
			svc.Spec.Ports[0].TargetPort = intstr.FromString("websocket")
			if err := s.c.Update(ctx, &svc); err != nil {
				t.Fatal(err)
			}
		},
		check: "TargetPorts", object: "Service/mastodon-streaming",
		says: []string{`"websocket"`, "mastodon-helm-streaming"},
	}, {
		name: "the API server refuses an object",
		breakIt: func(t *testing.T, s *stack) {
			s.overrides = setValue("mastodon.web.replicas", -1)
		},
		check: "ReleaseDryRun", object: "Deployment/mastodon-helm-web",
		says: []string{"refuses", "replicas"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			s := preparedStack(t)
			tc.breakIt(t, s)
			findings := run(t, s.in)
			found := false
			for _, f := range findings {
				if f.Check == tc.check && f.Object == tc.object && strings.HasPrefix(f.Message, tc.about) {
					found = true
					for _, want := range tc.says {
						if !strings.Contains(f.Message, want) {
							t.Errorf("finding %s %s: %q does not say %q", f.Check, f.Object, f.Message, want)
						}
					}
				}
				for _, none := range tc.noneOf {
					if f.Check == none {
						t.Errorf("unexpected finding %s %s: %s", f.Check, f.Object, f.Message)
					}
				}
				noSecretValue(t, s, f)
			}
			if tc.check != "" && !found {
				t.Errorf("no %s finding about %s; findings: %v", tc.check, tc.object, findings)
			}
		})
	}
}

// noSecretValue fails when a finding shows a value of a Secret of the namespace.
func noSecretValue(t *testing.T, s *stack, f v1alpha1.Finding) {
	t.Helper()
	var list corev1.SecretList
	if err := s.c.List(context.Background(), &list, client.InNamespace(s.ns)); err != nil {
		t.Fatal(err)
	}
	for _, secret := range list.Items {
		for k, v := range secret.Data {
			// DB_USER is the user name the old pods' ConfigMap holds in the clear.
			if k == "DB_USER" {
				continue
			}
			if len(v) >= 6 && strings.Contains(f.Message, string(v)) {
				t.Errorf("finding %s %s shows the value of Secret %s key %s", f.Check, f.Object, secret.Name, k)
			}
		}
	}
}
