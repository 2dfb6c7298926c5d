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

// chartAddsOrDrops are the variables the chart gives its containers that the fixture's did not
// have, or drops, as values.Generate maps the fixture: accepted on purpose, so that the test
// documents them.
var chartAddsOrDrops = []string{
	// The chart sets the Puma settings of web explicitly, and STREAMING_CLUSTER_NUM of streaming.
	"PORT", "MIN_THREADS", "PERSISTENT_TIMEOUT", "STREAMING_CLUSTER_NUM",
	// The fixture's shared ConfigMap gave every pod web's Puma settings and the chart's defaults
	// of these switches; the chart sets them where they matter, or leaves Mastodon's defaults.
	"WEB_CONCURRENCY", "MAX_THREADS", "SINGLE_USER_MODE", "ES_ENABLED",
	// The chart gives streaming the same secrets as the Rails pods (the same Secret mastodon).
	"SECRET_KEY_BASE", "OTP_SECRET", "VAPID_PRIVATE_KEY", "VAPID_PUBLIC_KEY",
	"ACTIVE_RECORD_ENCRYPTION_DETERMINISTIC_KEY", "ACTIVE_RECORD_ENCRYPTION_KEY_DERIVATION_SALT",
	"ACTIVE_RECORD_ENCRYPTION_PRIMARY_KEY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
	"SMTP_LOGIN", "SMTP_PASSWORD",
}

// stack is the fixture applied in a namespace of its own, and the Input the controller would
// build for it.
type stack struct {
	c      client.Client
	ns     string
	source values.Source
	in     Input
	// values are the generated ones; Input.Values returns them merged with overrides.
	values    map[string]any
	overrides map[string]any
}

var nsCount struct {
	sync.Mutex
	n int
}

func newStack(t *testing.T) *stack {
	t.Helper()
	ctx := context.Background()
	c := apiServer(t)
	nsCount.Lock()
	nsCount.n++
	ns := fmt.Sprintf("preflight-%d", nsCount.n)
	nsCount.Unlock()
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	objs, err := fixture.Objects()
	if err != nil {
		t.Fatal(err)
	}
	if err := fixture.Apply(ctx, c, ns, objs); err != nil {
		t.Fatal(err)
	}
	s := &stack{c: c, ns: ns}
	s.source = readSource(t, c, ns)
	if s.values, err = values.Generate(s.source); err != nil {
		t.Fatal(err)
	}
	chrt, err := testChart()
	if err != nil {
		t.Fatal(err)
	}
	m := &v1alpha1.MastodonMigration{
		ObjectMeta: metav1.ObjectMeta{Name: "migrate", Namespace: ns},
		Spec: v1alpha1.MastodonMigrationSpec{
			Source: v1alpha1.SourceSpec{
				Web:       v1alpha1.ComponentRef{Deployment: "mastodon-web"},
				Streaming: v1alpha1.ComponentRef{Deployment: "mastodon-streaming"},
				Sidekiq:   []v1alpha1.ComponentRef{{Deployment: "mastodon-worker"}},
			},
			Release:   v1alpha1.ReleaseSpec{Name: "mastodon-helm", Chart: v1alpha1.ChartRef{Repository: "oci://example.invalid/charts", Name: "mastodon"}},
			Preflight: v1alpha1.PreflightSpec{AcceptEnvChanges: chartAddsOrDrops},
		},
	}
	s.in = Input{Client: c, Writer: c, Migration: m, Charts: dirChart{chrt},
		Values: func(context.Context) (map[string]any, error) { return values.Merge(s.values, s.overrides), nil }}
	return s
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
		case "ReleaseRenders", "ReleaseReferences", "ReleaseCollisions", "ReleaseDryRun", "Image", "EnvParity", "TargetPorts":
			out = append(out, r)
		}
	}
	return out
}

func run(t *testing.T, in Input) []v1alpha1.Finding {
	t.Helper()
	findings, err := Run(context.Background(), in, releaseRules())
	if err != nil {
		t.Fatal(err)
	}
	return findings
}

func TestReleaseRulesPassOnTheFixture(t *testing.T) {
	s := newStack(t)
	for _, f := range run(t, s.in) {
		t.Errorf("finding %s %s: %s", f.Check, f.Object, f.Message)
	}
}

// Each rule broken on purpose gives its finding.
func TestReleaseRulesFindWhatIsBroken(t *testing.T) {
	ctx := context.Background()
	set := func(path string, v any) map[string]any {
		keys := strings.Split(path, ".")
		out := map[string]any{keys[len(keys)-1]: v}
		for i := len(keys) - 2; i >= 0; i-- {
			out = map[string]any{keys[i]: out}
		}
		return out
	}
	for _, tc := range []struct {
		name    string
		breakIt func(t *testing.T, s *stack)
		check   string
		object  string
		says    []string
		// noneOf: these rules must find nothing.
		noneOf []string
	}{{
		name: "no database host",
		breakIt: func(t *testing.T, s *stack) {
			delete(s.values["postgresql"].(map[string]any), "hostname")
		},
		check: "ReleaseRenders", object: "Release/mastodon-helm",
		says: []string{"postgresql.hostname is required", "set it in spec.release.values"},
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
		says: []string{"has no key OTP_SECRET", "Deployment/mastodon-helm-web container web (env OTP_SECRET)", "Job/"},
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
			s.overrides = set("mastodon.localDomain", "other.example")
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
			s.overrides = set("image.tag", "v9.9.9")
		},
		check: "Image", object: "Deployment/mastodon-helm-web",
		says: []string{":v9.9.9", "spec.preflight.allowImageChange"},
	}, {
		name: "another image tag, allowed",
		breakIt: func(t *testing.T, s *stack) {
			s.overrides = set("image.tag", "v9.9.9")
			s.in.Migration.Spec.Preflight.AllowImageChange = true
		},
		noneOf: []string{"Image"},
	}, {
		name: "another database host",
		breakIt: func(t *testing.T, s *stack) {
			s.overrides = set("postgresql.hostname", "10.99.0.1")
		},
		check: "EnvParity", object: "Deployment/mastodon-web",
		says: []string{"env DB_HOST: changed", `→ "10.99.0.1"`, "spec.preflight.acceptEnvChanges"},
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
			s.overrides = set("mastodon.web.replicas", -1)
		},
		check: "ReleaseDryRun", object: "Deployment/mastodon-helm-web",
		says: []string{"refuses", "replicas"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStack(t)
			tc.breakIt(t, s)
			findings := run(t, s.in)
			found := false
			for _, f := range findings {
				if f.Check == tc.check && f.Object == tc.object {
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
			if len(v) >= 6 && strings.Contains(f.Message, string(v)) {
				t.Errorf("finding %s %s shows the value of Secret %s key %s", f.Check, f.Object, secret.Name, k)
			}
		}
	}
}
