package values

import (
	"fmt"
	"maps"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/lint"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
	"github.com/mastodon-operator/mastodon-operator/internal/envparity"
	"github.com/mastodon-operator/mastodon-operator/internal/helm"
	"github.com/mastodon-operator/mastodon-operator/internal/scheduler"
	"github.com/mastodon-operator/mastodon-operator/test/fixture"
)

// The values generated from the production layout of the Kustomize fixture, as the runbook's
// mapping gives them for the official chart.
const fixtureValues = `
image: {repository: ghcr.io/mastodon/mastodon, tag: v4.6.2}
nodeSelector: {cloud.google.com/gke-nodepool: mastodon-pool}
httproute: {enabled: false}
ingress: {enabled: false}
mastodon:
  localDomain: example.social
  locale: ja
  singleUserMode: false
  trustedProxyIp: 35.191.0.0/16,130.211.0.0/22
  logLevel: {rails: warn}
  extraEnvVars: {RAILS_SERVE_STATIC_FILES: "true"}
  secrets:
    existingSecret: mastodon
    existingSecretKeys:
      secretKeyBase: SECRET_KEY_BASE
      vapidPrivateKey: VAPID_PRIVATE_KEY
      vapidPublicKey: VAPID_PUBLIC_KEY
      arePrimaryKey: ACTIVE_RECORD_ENCRYPTION_PRIMARY_KEY
      areDeterministicKey: ACTIVE_RECORD_ENCRYPTION_DETERMINISTIC_KEY
      areKeyDerivationSalt: ACTIVE_RECORD_ENCRYPTION_KEY_DERIVATION_SALT
  s3:
    enabled: true
    protocol: https
    endpoint: https://storage.googleapis.com
    hostname: storage.googleapis.com
    region: asia-northeast1
    bucket: example-social-media
    aliasHost: media.example.social
    existingSecret: mastodon
    existingSecretKeys: {accessKeyId: AWS_ACCESS_KEY_ID, secretAccessKey: AWS_SECRET_ACCESS_KEY}
  smtp:
    server: smtp.sendgrid.net
    port: 587
    fromAddress: notifications@example.social
    existingSecret: mastodon
    existingSecretKeys: {username: SMTP_LOGIN, password: SMTP_PASSWORD}
  web:
    replicas: 2
    workers: "2"
    maxThreads: "5"
    minThreads: "5"
    resources: {requests: {cpu: 500m, memory: 1Gi}, limits: {memory: 2Gi}}
    nodeSelector: {cloud.google.com/gke-nodepool: mastodon-pool}
  streaming:
    replicas: 2
    port: 4000
    image: {repository: ghcr.io/mastodon/mastodon-streaming, tag: v4.6.2}
    resources: {requests: {cpu: 100m, memory: 256Mi}, limits: {memory: 512Mi}}
    nodeSelector: {cloud.google.com/gke-nodepool: mastodon-pool}
  sidekiq:
    workers:
    - name: worker
      replicas: 2
      concurrency: 25
      queues: ["default,8", "push,6", "ingress,4", "mailers,2", pull, fasp]
      resources: {requests: {cpu: 500m, memory: 1Gi}, limits: {memory: 2Gi}}
      nodeSelector: {cloud.google.com/gke-nodepool: mastodon-pool}
      tolerations: []
      affinity: {}
    - name: scheduler
      replicas: 1
      concurrency: 5
      queues: [scheduler]
      resources: {requests: {cpu: 500m, memory: 1Gi}, limits: {memory: 2Gi}}
      nodeSelector: {cloud.google.com/gke-nodepool: mastodon-pool}
      tolerations: []
      affinity: {}
postgresql:
  hostname: 10.20.0.3
  port: 5432
  database: mastodon_production
  existingSecret: mastodon
  existingSecretKeys: {username: DB_USER, password: DB_PASS}
redis:
  hostname: 10.20.0.11
  port: 6379
  existingSecret: mastodon
  existingSecretKeys: {password: REDIS_PASSWORD}
elasticsearch:
  enabled: false
`

func TestGenerateFromTheFixture(t *testing.T) {
	src := fixtureSource(t)
	gen, err := GenerateWithNotes(src)
	if err != nil {
		t.Fatal(err)
	}
	got, notes := gen.Values, gen.Notes
	var want map[string]any
	if err := yaml.Unmarshal([]byte(fixtureValues), &want); err != nil {
		t.Fatal(err)
	}
	if gotJSON := viaJSON(t, got); !reflect.DeepEqual(gotJSON, want) {
		g, _ := yaml.Marshal(got)
		t.Errorf("generated values\n%s\nwant\n%s", g, fixtureValues)
	}
	// Numbers where the chart has numbers, strings where it has strings.
	for path, want := range map[string]any{
		"postgresql.port": int64(5432), "redis.port": int64(6379), "mastodon.smtp.port": int64(587),
		"mastodon.streaming.port": int64(4000), "mastodon.web.replicas": int64(2), "mastodon.streaming.replicas": int64(2),
		"mastodon.web.workers": "2", "mastodon.web.maxThreads": "5", "mastodon.s3.enabled": true, "mastodon.singleUserMode": false,
	} {
		if v := lookup(got, strings.Split(path, ".")...); v != want {
			t.Errorf("%s = %#v (%T), want %#v (%T)", path, v, v, want, want)
		}
	}
	workers := lookup(got, "mastodon", "sidekiq", "workers").([]any)
	// Two pods of a worker without -q are two schedulers (config/sidekiq.yml lists the queue):
	// the release's keeps two on the other queues and runs one on scheduler.
	if w := workers[0].(map[string]any); w["concurrency"] != int64(25) || w["replicas"] != int64(2) {
		t.Errorf("worker %v: want concurrency and replicas as int64 25 and 2", w)
	}
	if w := workers[1].(map[string]any); w["concurrency"] != int64(5) || w["replicas"] != int64(1) {
		t.Errorf("scheduler worker %v: want concurrency and replicas as int64 5 and 1", w)
	}
	// OTP_SECRET, which the chart does not pass, comes from the old Secret key by secretEnv.
	if want := []v1alpha1.SecretEnvVar{{Name: "OTP_SECRET", SecretName: "mastodon", Key: "OTP_SECRET"}}; !reflect.DeepEqual(gen.SecretEnv, want) {
		t.Errorf("secretEnv %v, want %v", gen.SecretEnv, want)
	}
	wantNotes(t, notes, []Note{
		{Kind: Injected, Variable: "OTP_SECRET"},
		{Kind: Unmapped, Variable: "SMTP_LOGIN"}, {Kind: Unmapped, Variable: "SMTP_PASSWORD"}, // web had them, the chart gives them to Sidekiq
		{Kind: Adjusted, Message: "Ingress mastodon"},
		{Kind: Adjusted, Variable: "MIN_THREADS"},
		{Kind: Unmapped, Variable: "BIND"}, {Kind: Unmapped, Variable: "MAX_THREADS"}, {Kind: Unmapped, Variable: "WEB_CONCURRENCY"},
		{Kind: ChartDefault, Message: "hook Jobs"},
		{Kind: Unmapped, Variable: "SINGLE_USER_MODE", Message: "reads as false too"},
		{Kind: Adjusted, Message: "runs the Sidekiq scheduler queue with 2 replicas (sidekiq without -q reads Mastodon's config/sidekiq.yml, " +
			"which lists scheduler), where Mastodon wants one process (every scheduled job runs once per process): it is split in two, " +
			"mastodon.sidekiq.workers[0] (worker) with its 2 replicas on the other queues (default,8 push,6 ingress,4 mailers,2 pull fasp) " +
			"and mastodon.sidekiq.workers[1] (scheduler) with 1 replica on scheduler alone"},
	})
	noSecretValues(t, src, gen)

	plain, err := Generate(src)
	if err != nil || !reflect.DeepEqual(plain, got) {
		t.Errorf("Generate differs from GenerateWithNotes: %v", err)
	}
}

// wantNotes checks that notes are exactly those of want, in any order: each of kind and
// variable, and whose message contains want's Message.
func wantNotes(t *testing.T, notes []Note, want []Note) {
	t.Helper()
	left := slices.Clone(notes)
	for _, w := range want {
		i := slices.IndexFunc(left, func(n Note) bool {
			return n.Kind == w.Kind && n.Variable == w.Variable && strings.Contains(n.Message, w.Message)
		})
		if i < 0 {
			t.Errorf("no %s note about %q saying %q", w.Kind, w.Variable, w.Message)
			continue
		}
		left = slices.Delete(left, i, i+1)
	}
	for _, n := range left {
		t.Errorf("unexpected note %s", n)
	}
}

// The generated values install the official chart: every required value is there, helm lint
// is clean, and the objects run what the old ones ran, reading every credential from the old
// Secret under the old key.
func TestGeneratedValuesRenderTheChart(t *testing.T) {
	src := fixtureSource(t)
	vals, err := Generate(src)
	if err != nil {
		t.Fatal(err)
	}
	m, err := helm.Render(testChart(t), vals, "mastodon-helm", "mastodon")
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	for _, msg := range lint.All(chartDir(t), vals, "mastodon", false).Messages {
		t.Errorf("lint: %s", msg)
	}
	for _, obj := range slices.Concat(m.Resources, m.Hooks) {
		if obj.GetKind() == "Secret" {
			t.Errorf("the chart renders its own Secret %s; every credential should come from Secret mastodon", obj.GetName())
		}
		if kind := obj.GetKind(); kind == "HTTPRoute" || kind == "Ingress" {
			t.Errorf("the chart renders %s %s; the old Ingress keeps the routing", kind, obj.GetName())
		}
	}

	// The old worker, `sidekiq -c 25` on 2 pods, consumes the scheduler queue twice: the release
	// runs its other queues on as many pods, and scheduler on one pod of its own.
	otherQueues := []string{"bundle", "exec", "sidekiq", "-c", "25",
		"-q", "default,8", "-q", "push,6", "-q", "ingress,4", "-q", "mailers,2", "-q", "pull", "-q", "fasp"}
	pairs := []struct {
		old       *appsv1.Deployment
		oldName   string
		newName   string
		container string
		// runs is the new command, when it is not the old one; replicas, when not the old ones.
		runs      []string
		replicas  int32
		scheduler bool
	}{
		{old: src.Web, oldName: "web", newName: "mastodon-helm-web", container: "mastodon-web"},
		{old: src.Streaming, oldName: "streaming", newName: "mastodon-helm-streaming", container: "mastodon-streaming"},
		{old: src.Sidekiq[0], oldName: "worker", newName: "mastodon-helm-sidekiq-worker", container: "mastodon", runs: otherQueues},
		{old: src.Sidekiq[0], oldName: "worker", newName: "mastodon-helm-sidekiq-scheduler", container: "mastodon",
			runs: []string{"bundle", "exec", "sidekiq", "-c", "5", "-q", "scheduler"}, replicas: 1, scheduler: true},
	}
	for _, p := range pairs {
		obj := m.Find("Deployment", p.newName)
		if obj == nil {
			t.Errorf("no Deployment %s", p.newName)
			continue
		}
		var d appsv1.Deployment
		convert(t, obj, &d)
		oldC, newC := container(t, p.old, p.oldName), container(t, &d, p.container)
		want := *p.old.Spec.Replicas
		if p.replicas != 0 {
			want = p.replicas
		}
		if *d.Spec.Replicas != want {
			t.Errorf("%s: replicas %d, want %d", d.Name, *d.Spec.Replicas, want)
		}
		if newC.Image != oldC.Image {
			t.Errorf("%s: image %s, want the old %s", d.Name, newC.Image, oldC.Image)
		}
		runs := slices.Concat(oldC.Command, oldC.Args)
		if p.runs != nil {
			runs = p.runs
		}
		if p.oldName != "streaming" && !slices.Equal(slices.Concat(newC.Command, newC.Args), runs) {
			t.Errorf("%s: runs %q, want %q", d.Name, slices.Concat(newC.Command, newC.Args), runs)
		}
		if p.oldName == "worker" {
			if v := scheduler.Consumes(d.Spec.Template.Spec); v.Consumes != p.scheduler {
				t.Errorf("%s: consumes the scheduler queue %v (%s), want %v", d.Name, v.Consumes, v.Why, p.scheduler)
			}
		}
		if !reflect.DeepEqual(newC.Resources, oldC.Resources) {
			t.Errorf("%s: resources %v, want %v", d.Name, newC.Resources, oldC.Resources)
		}
		if !reflect.DeepEqual(d.Spec.Template.Spec.NodeSelector, p.old.Spec.Template.Spec.NodeSelector) {
			t.Errorf("%s: nodeSelector %v, want %v", d.Name, d.Spec.Template.Spec.NodeSelector, p.old.Spec.Template.Spec.NodeSelector)
		}
		for _, e := range newC.Env {
			if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
				if ref := e.ValueFrom.SecretKeyRef; ref.Name != "mastodon" || ref.Key != e.Name {
					t.Errorf("%s: %s from Secret %s key %s, want Secret mastodon key %s", d.Name, e.Name, ref.Name, ref.Key, e.Name)
				}
			}
		}
	}
	// The chart places its database Jobs nowhere, as a note said.
	for _, hook := range m.Hooks {
		if hook.GetKind() != "Job" {
			continue
		}
		if sel, _, _ := unstructured.NestedStringMap(hook.Object, "spec", "template", "spec", "nodeSelector"); len(sel) > 0 {
			t.Errorf("Job %s: nodeSelector %v; the note says the chart gives the hook Jobs none", hook.GetName(), sel)
		}
	}
}

// Without DB_HOST the chart's `required` stops the render, and a note said so beforehand.
func TestMissingDatabaseHostIsRequired(t *testing.T) {
	src := fixtureSource(t)
	cm := src.ConfigMaps["mastodon-env"].DeepCopy()
	delete(cm.Data, "DB_HOST")
	src.ConfigMaps = map[string]*corev1.ConfigMap{"mastodon-env": cm}
	gen, err := GenerateWithNotes(src)
	if err != nil {
		t.Fatal(err)
	}
	if !hasNote(gen.Notes, Required, "DB_HOST") {
		t.Errorf("notes %v, want a Required one about DB_HOST", gen.Notes)
	}
	_, err = helm.Render(testChart(t), gen.Values, "mastodon-helm", "mastodon")
	if err == nil || !strings.Contains(err.Error(), "Database hostname must be given") {
		t.Errorf("render error %v, want the chart's required message", err)
	}
	// spec.release.values fills it in.
	if _, err := helm.Render(testChart(t), Merge(gen.Values, map[string]any{"postgresql": map[string]any{"hostname": "10.20.0.3"}}), "mastodon-helm", "mastodon"); err != nil {
		t.Error(err)
	}
}

// The one-secret layout keeps every variable in one Terraform-made Secret. The configuration
// in it goes into the values, each with a note saying from which key; every credential is
// referenced: existingSecret for what the chart reads from Secrets, secretEnv for the rest.
func TestGenerateFromTheOneSecretLayout(t *testing.T) {
	src := layoutSource(t, fixture.LayoutOneSecret, "mastodon-sidekiq")
	gen, err := GenerateWithNotes(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range gen.Notes {
		t.Log(n)
	}
	noSecretValues(t, src, gen)
	for path, want := range map[string]any{
		"mastodon.localDomain":                           "example.town",
		"mastodon.webDomain":                             "social.example.town",
		"mastodon.authorizedFetch":                       true,
		"mastodon.logLevel.rails":                        "warn",
		"postgresql.hostname":                            "10.30.0.5",
		"postgresql.port":                                int64(5432),
		"postgresql.database":                            "mastodon",
		"postgresql.username":                            nil, // the chart reads DB_USER from the Secret
		"postgresql.existingSecret":                      "mastodon-secrets",
		"postgresql.existingSecretKeys.username":         "DB_USER",
		"postgresql.existingSecretKeys.password":         "DB_PASS",
		"redis.hostname":                                 "10.30.0.12",
		"redis.existingSecretKeys.password":              "REDIS_PASSWORD",
		"elasticsearch.enabled":                          true,
		"elasticsearch.hostname":                         "http://mastodon-es-http.elastic.svc",
		"elasticsearch.tls":                              false, // so that ES_HOST stays as it was
		"elasticsearch.port":                             int64(9200),
		"elasticsearch.existingSecretKeys.username":      "ES_USER",
		"mastodon.s3.enabled":                            true,
		"mastodon.s3.bucket":                             "example-town-media",
		"mastodon.s3.region":                             "europe-west1",
		"mastodon.s3.aliasHost":                          "files.example.town",
		"mastodon.s3.existingSecret":                     "mastodon-secrets",
		"mastodon.smtp.server":                           "smtp.eu.mailgun.org",
		"mastodon.smtp.fromAddress":                      "Mastodon <notifications@example.town>",
		"mastodon.smtp.existingSecretKeys.username":      "SMTP_LOGIN",
		"mastodon.secrets.existingSecret":                "mastodon-secrets",
		"mastodon.extraEnvVars.DB_POOL":                  "25",
		"mastodon.extraEnvVars.LIBRE_TRANSLATE_ENDPOINT": "https://translate.example.town",
		"mastodon.extraEnvVars.LIBRE_TRANSLATE_API_KEY":  nil,
		"mastodon.extraEnvVars.OTP_SECRET":               nil,
		"mastodon.web.workers":                           "3",
		"image.tag":                                      "nightly",
		"image.pullPolicy":                               "Always",
		"mastodon.streaming.image.tag":                   "nightly",
		"httproute.enabled":                              false,
		"ingress.enabled":                                false,
	} {
		if got := lookup(gen.Values, strings.Split(path, ".")...); !reflect.DeepEqual(got, want) {
			t.Errorf("%s = %#v, want %#v", path, got, want)
		}
	}
	worker := lookup(gen.Values, "mastodon", "sidekiq", "workers").([]any)[0].(map[string]any)
	if want := []any{"default,8", "push,6", "ingress,4", "mailers,2", "pull", "scheduler", "fasp"}; worker["name"] != "worker" ||
		worker["replicas"] != int64(1) || !reflect.DeepEqual(worker["queues"], want) {
		t.Errorf("worker %v, want worker with 1 replica and the old queues", worker)
	}
	wantEnv := []v1alpha1.SecretEnvVar{
		{Name: "LIBRE_TRANSLATE_API_KEY", SecretName: "mastodon-secrets", Key: "LIBRE_TRANSLATE_API_KEY"},
		{Name: "OTP_SECRET", SecretName: "mastodon-secrets", Key: "OTP_SECRET"},
	}
	if !reflect.DeepEqual(gen.SecretEnv, wantEnv) {
		t.Errorf("secretEnv %v, want %v", gen.SecretEnv, wantEnv)
	}
	var want []Note
	for _, name := range []string{
		"AUTHORIZED_FETCH", "DB_HOST", "DB_NAME", "DB_POOL", "DB_PORT", "DEFAULT_LOCALE", "ES_ENABLED", "ES_HOST", "ES_PORT",
		"LIBRE_TRANSLATE_ENDPOINT", "LOCAL_DOMAIN", "MAX_THREADS", "NODE_ENV", "RAILS_ENV", "RAILS_LOG_LEVEL",
		"RAILS_SERVE_STATIC_FILES", "REDIS_HOST", "REDIS_PORT", "S3_ALIAS_HOST", "S3_BUCKET", "S3_ENABLED", "S3_ENDPOINT",
		"S3_HOSTNAME", "S3_PROTOCOL", "S3_REGION", "SINGLE_USER_MODE", "SMTP_ENABLE_STARTTLS_AUTO", "SMTP_FROM_ADDRESS",
		"SMTP_PORT", "SMTP_SERVER", "TRUSTED_PROXY_IP", "WEB_CONCURRENCY", "WEB_DOMAIN",
	} {
		want = append(want, Note{Kind: FromSecret, Variable: name, Message: "Secret mastodon-secrets key " + name + " "})
	}
	want = append(want,
		Note{Kind: Injected, Variable: "OTP_SECRET"}, Note{Kind: Injected, Variable: "LIBRE_TRANSLATE_API_KEY"},
		// The chart gives these to some components only.
		Note{Kind: Unmapped, Variable: "ES_USER", Message: "streaming"}, Note{Kind: Unmapped, Variable: "ES_PASS", Message: "streaming"},
		Note{Kind: Unmapped, Variable: "AWS_ACCESS_KEY_ID", Message: "streaming"}, Note{Kind: Unmapped, Variable: "AWS_SECRET_ACCESS_KEY", Message: "streaming"},
		Note{Kind: Unmapped, Variable: "SMTP_LOGIN", Message: "web"}, Note{Kind: Unmapped, Variable: "SMTP_PASSWORD", Message: "web"},
		Note{Kind: Unmapped, Variable: "MAX_THREADS"}, Note{Kind: Unmapped, Variable: "WEB_CONCURRENCY"},
		Note{Kind: Adjusted, Message: "Ingress mastodon"}, Note{Kind: Adjusted, Variable: "MIN_THREADS"},
		Note{Kind: ChartDefault, Message: "hook Jobs"}, Note{Kind: ChartDefault, Variable: "ES_PRESET"},
		Note{Kind: Unmapped, Variable: "SINGLE_USER_MODE", Message: "reads as false too"},
		Note{Kind: Unpinned, Message: "ghcr.io/mastodon/mastodon:nightly"}, Note{Kind: Unpinned, Message: "ghcr.io/mastodon/mastodon-streaming:nightly"},
	)
	wantNotes(t, gen.Notes, want)
}

// With the values and secretEnv generated from the one-secret layout, the official chart
// renders; every Secret key its pods and hook Jobs read is in the layout's Secret; and the new
// pods have every variable the old ones had, with the same value, except those a note explains.
func TestOneSecretLayoutMigratesItsEnvironment(t *testing.T) {
	src := layoutSource(t, fixture.LayoutOneSecret, "mastodon-sidekiq")
	gen, err := GenerateWithNotes(src)
	if err != nil {
		t.Fatal(err)
	}
	m, err := helm.Render(testChart(t), gen.Values, "mastodon-helm", "mastodon", helm.WithSecretEnv(gen.SecretEnv))
	if err != nil {
		t.Fatal(err)
	}
	configMaps := map[string]*corev1.ConfigMap{}
	for _, obj := range slices.Concat(m.Resources, m.Hooks) {
		switch obj.GetKind() {
		case "Secret":
			t.Errorf("the chart renders Secret %s; every credential should come from Secret mastodon-secrets", obj.GetName())
		case "ConfigMap":
			var cm corev1.ConfigMap
			convert(t, obj, &cm)
			configMaps[cm.Name] = &cm
		}
	}

	// Every reference of the release's pods resolves, as preflight's ReleaseReferences checks.
	for _, obj := range slices.Concat(m.Resources, m.Hooks) {
		pod, ok := podSpec(t, obj)
		if !ok {
			continue
		}
		for _, c := range slices.Concat(pod.InitContainers, pod.Containers) {
			for _, from := range c.EnvFrom {
				if r := from.ConfigMapRef; r != nil && configMaps[r.Name] == nil {
					t.Errorf("%s %s container %s reads ConfigMap %s, which nothing creates", obj.GetKind(), obj.GetName(), c.Name, r.Name)
				}
				if from.SecretRef != nil {
					t.Errorf("%s %s container %s reads a whole Secret", obj.GetKind(), obj.GetName(), c.Name)
				}
			}
			for _, e := range c.Env {
				if e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
					continue
				}
				ref := e.ValueFrom.SecretKeyRef
				if s := src.Secrets[ref.Name]; s == nil || !slices.Contains(envparity.SecretKeys(s), ref.Key) {
					t.Errorf("%s %s container %s: %s from Secret %s key %s, which the layout lacks", obj.GetKind(), obj.GetName(), c.Name, e.Name, ref.Name, ref.Key)
				}
			}
		}
	}
	// The Rails hook Jobs get the secretEnv too.
	var prepare batchv1.Job
	convert(t, m.Find("Job", "mastodon-helm-db-prepare"), &prepare)
	for _, name := range []string{"OTP_SECRET", "LIBRE_TRANSLATE_API_KEY"} {
		if !slices.ContainsFunc(prepare.Spec.Template.Spec.Containers[0].Env, func(e corev1.EnvVar) bool { return e.Name == name }) {
			t.Errorf("Job db-prepare lacks %s", name)
		}
	}

	noted := map[string]bool{}
	for _, n := range gen.Notes {
		if n.Kind != FromSecret && n.Kind != Injected {
			noted[n.Variable] = true
		}
	}
	rendered, err := m.Deployments()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []struct {
		old       *appsv1.Deployment
		component string
	}{{src.Web, "web"}, {src.Streaming, "streaming"}, {src.Sidekiq[0], "sidekiq-worker"}} {
		d := rendered[p.component]
		if d == nil {
			t.Errorf("the release has no %s Deployment", p.component)
			continue
		}
		oldEnv, err := envparity.Effective(p.old.Spec.Template.Spec, p.old.Spec.Template.Spec.Containers[0].Name, src.ConfigMaps, src.Secrets)
		if err != nil {
			t.Fatal(err)
		}
		newEnv, err := envparity.Effective(d.Spec.Template.Spec, d.Spec.Template.Spec.Containers[0].Name, configMaps, src.Secrets)
		if err != nil {
			t.Fatal(err)
		}
		checked := 0
		for _, diff := range envparity.Diff(oldEnv, newEnv, src.Secrets) {
			switch {
			case diff.Kind == envparity.KindAdded, noted[diff.Name]:
			case diff.Kind == envparity.KindChanged && strings.Contains(diff.Old, "(same value)"):
				checked++ // configuration moved out of the Secret into the chart's ConfigMap, same value
			default:
				t.Errorf("%s: %s, and no note explains it", p.component, diff)
			}
		}
		if checked == 0 {
			t.Errorf("%s: no variable moved out of the Secret; the comparison compared nothing", p.component)
		}
		if v := newEnv["OTP_SECRET"]; v.FromSecret == nil || *v.FromSecret != (envparity.Ref{Name: "mastodon-secrets", Key: "OTP_SECRET"}) {
			t.Errorf("%s: OTP_SECRET is %s, want Secret mastodon-secrets key OTP_SECRET", p.component, v)
		}
	}
}

// The one-secret layout's one worker runs every queue, scheduler included, on 1 pod that its HPA
// scales up to 3 (or an HPA scaled it to 3): the chart refuses 3 pods on the scheduler queue,
// so the values keep the worker's replicas on the other queues and run scheduler on one pod of
// its own, and a note says why.
func TestHPAScaledSchedulerWorkerIsSplit(t *testing.T) {
	objs, err := fixture.Layout(fixture.LayoutOneSecret)
	if err != nil {
		t.Fatal(err)
	}
	var hpa autoscalingv2.HorizontalPodAutoscaler
	convert(t, findObject(objs, "HorizontalPodAutoscaler", "mastodon-sidekiq"), &hpa)
	for _, tc := range []struct {
		name     string
		replicas int32
		hpas     []*autoscalingv2.HorizontalPodAutoscaler
		pods     string
	}{
		{"scaled to 3", 3, nil, "3 replicas"},
		{"its HPA, which Finish moves", 1, []*autoscalingv2.HorizontalPodAutoscaler{&hpa},
			"1 replica and HorizontalPodAutoscaler mastodon-sidekiq up to 3, which Finish moves to the release"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := layoutSource(t, fixture.LayoutOneSecret, "mastodon-sidekiq")
			src.Sidekiq[0].Spec.Replicas = &tc.replicas
			src.HPAs = tc.hpas
			gen, err := GenerateWithNotes(src)
			if err != nil {
				t.Fatal(err)
			}
			workers := lookup(gen.Values, "mastodon", "sidekiq", "workers").([]any)
			if len(workers) != 2 {
				t.Fatalf("workers %v, want 2", workers)
			}
			worker, sched := workers[0].(map[string]any), workers[1].(map[string]any)
			if worker["name"] != "worker" || worker["replicas"] != int64(tc.replicas) || slices.Contains(worker["queues"].([]any), any("scheduler")) {
				t.Errorf("worker %v: want worker, %d replicas, without scheduler", worker, tc.replicas)
			}
			if sched["name"] != "scheduler" || sched["replicas"] != int64(1) || !reflect.DeepEqual(sched["queues"], []any{"scheduler"}) {
				t.Errorf("scheduler worker %v: want scheduler, 1 replica, queues [scheduler]", sched)
			}
			if !reflect.DeepEqual(worker["resources"], sched["resources"]) || !reflect.DeepEqual(worker["nodeSelector"], sched["nodeSelector"]) {
				t.Errorf("scheduler worker %v is not placed and sized as worker %v", sched, worker)
			}
			if !slices.ContainsFunc(gen.Notes, func(n Note) bool {
				return n.Kind == Adjusted && strings.Contains(n.Message, "scheduler queue with "+tc.pods) &&
					strings.Contains(n.Message, "mastodon.sidekiq.workers[0] (worker)") && strings.Contains(n.Message, "mastodon.sidekiq.workers[1] (scheduler)")
			}) {
				t.Errorf("no note about the split in %v", gen.Notes)
			}
			if _, err := helm.Render(testChart(t), gen.Values, "mastodon-helm", "mastodon"); err != nil {
				t.Error(err)
			}
		})
	}
}

func findObject(objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	return nil
}

func podSpec(t *testing.T, obj *unstructured.Unstructured) (corev1.PodSpec, bool) {
	t.Helper()
	switch obj.GetKind() {
	case "Deployment":
		var d appsv1.Deployment
		convert(t, obj, &d)
		return d.Spec.Template.Spec, true
	case "Job":
		var j batchv1.Job
		convert(t, obj, &j)
		return j.Spec.Template.Spec, true
	}
	return corev1.PodSpec{}, false
}

// Every plain setting of the chart may be read from a Secret (configInSecret says why it is no
// credential), and no variable the chart reads from a Secret is.
func TestConfigInSecretIsConfiguration(t *testing.T) {
	for name := range plainVars {
		if configInSecret[name] == "" {
			t.Errorf("%s is a plain setting of the chart but not in configInSecret", name)
		}
	}
	for name := range componentVars {
		if configInSecret[name] == "" {
			t.Errorf("%s is a plain setting of the chart but not in configInSecret", name)
		}
	}
	for name := range secretVars {
		if _, ok := configInSecret[name]; ok {
			t.Errorf("%s, which the chart reads from a Secret, is in configInSecret", name)
		}
	}
}

func deployment(name string, replicas int32, pod corev1.PodSpec) *appsv1.Deployment {
	return &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: appsv1.DeploymentSpec{
		Replicas: &replicas, Template: corev1.PodTemplateSpec{Spec: pod}}}
}

func envFrom(configMaps []string, secrets ...string) []corev1.EnvFromSource {
	var from []corev1.EnvFromSource
	for _, n := range configMaps {
		from = append(from, corev1.EnvFromSource{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: n}}})
	}
	for _, n := range secrets {
		from = append(from, corev1.EnvFromSource{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: n}}})
	}
	return from
}

func secretEnv(name, secret, key string) corev1.EnvVar {
	return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
		LocalObjectReference: corev1.LocalObjectReference{Name: secret}, Key: key}}}
}

// edgeSource is a stack that exercises what the fixture does not: Secret-sourced variables
// the chart cannot take, a group of secrets spread over two Secrets, plain secrets, run-time
// values, $ in values, Sidekiq command lines, a digest-pinned image, components that disagree.
func edgeSource() Source {
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "env"}, Data: map[string]string{
		"LOCAL_DOMAIN": "edge.example", "DB_PORT": "6432", "REDIS_HOST": "redis", "MAX_THREADS": "8",
		"SINGLE_USER_MODE": "yes", "ALTERNATE_DOMAINS": "a.example,b.example", "DB_PASS": "plain-db-pass",
		"PRICE": "costs $(5) and $$", "S3_ENABLED": "false", "S3_OPEN_TIMEOUT": "5", "AWS_ACCESS_KEY_ID": "AKIAPLAIN",
	}}
	secrets := map[string]*corev1.Secret{
		"app": {ObjectMeta: metav1.ObjectMeta{Name: "app"}, Data: map[string][]byte{
			"SECRET_KEY_BASE": []byte("zz-secret-key-base-value"), "HCAPTCHA_SECRET_KEY": []byte("zz-hcaptcha-value"),
			"db-host": []byte("zz-db-host-value"), "are-primary-key": []byte("zz-are-value"),
		}},
		"vapid": {ObjectMeta: metav1.ObjectMeta{Name: "vapid"}, StringData: map[string]string{
			"private": "zz-vapid-private-value", "public": "zz-vapid-public-value",
		}},
	}
	web := corev1.PodSpec{ServiceAccountName: "mastodon-sa", NodeSelector: map[string]string{"pool": "web"}, Containers: []corev1.Container{
		{Name: "cloud-sql-proxy", Image: "gcr.io/cloud-sql-connectors/cloud-sql-proxy:2"},
		{Name: "puma", Image: "registry.local:5000/mastodon@sha256:0123abcd", ImagePullPolicy: corev1.PullAlways,
			EnvFrom: envFrom([]string{"env"}),
			Env: []corev1.EnvVar{
				secretEnv("SECRET_KEY_BASE", "app", "SECRET_KEY_BASE"),
				secretEnv("VAPID_PRIVATE_KEY", "vapid", "private"),
				secretEnv("HCAPTCHA_SECRET_KEY", "app", "HCAPTCHA_SECRET_KEY"),
				secretEnv("DB_HOST", "app", "db-host"),
				{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
				{Name: "HOME_URL", Value: "https://$(LOCAL_DOMAIN)/home"},
			}},
	}}
	streaming := corev1.PodSpec{ServiceAccountName: "mastodon-sa", Containers: []corev1.Container{{Name: "node",
		Image: "registry.local:5000/mastodon-streaming", EnvFrom: envFrom([]string{"env"}),
		Env: []corev1.EnvVar{
			{Name: "PORT", Value: "4001"}, {Name: "BIND", Value: "127.0.0.1"}, {Name: "STREAMING_CLUSTER_NUM", Value: "2"},
			{Name: "LOCAL_DOMAIN", Value: "other.example"},
		}}}}
	push := corev1.PodSpec{ServiceAccountName: "mastodon-sa", Containers: []corev1.Container{{Name: "sidekiq",
		Image:   "registry.local:5000/mastodon@sha256:0123abcd",
		Command: []string{"bundle", "exec", "sidekiq"}, Args: []string{"-c", "10", "-q", "push", "-q", "mailers,2", "--queue=pull", "-t", "30"},
		EnvFrom: envFrom([]string{"env"})}}}
	rest := corev1.PodSpec{ServiceAccountName: "mastodon-sa", Containers: []corev1.Container{{Name: "main",
		Image:   "registry.local:5000/mastodon@sha256:0123abcd",
		Command: []string{"sh", "-c", "bundle exec sidekiq"}, EnvFrom: envFrom([]string{"env"})}}}
	return Source{
		Web:        deployment("web", 3, web),
		Streaming:  deployment("streaming", 1, streaming),
		Sidekiq:    []*appsv1.Deployment{deployment("mastodon-sidekiq-push", 2, push), deployment("mastodon-sidekiq", 1, rest)},
		ConfigMaps: map[string]*corev1.ConfigMap{"env": cm},
		Secrets:    secrets,
	}
}

func TestGenerateEdgeCases(t *testing.T) {
	src := edgeSource()
	gen, err := GenerateWithNotes(src)
	if err != nil {
		t.Fatal(err)
	}
	vals, notes := gen.Values, gen.Notes
	for _, n := range notes {
		t.Log(n)
	}
	noSecretValues(t, src, gen)

	for path, want := range map[string]any{
		"image.repository":                                    "registry.local:5000/mastodon@sha256",
		"image.tag":                                           "0123abcd",
		"image.pullPolicy":                                    "Always",
		"mastodon.streaming.image.repository":                 "registry.local:5000/mastodon-streaming",
		"mastodon.streaming.image.tag":                        "latest",
		"mastodon.localDomain":                                "edge.example",
		"mastodon.singleUserMode":                             false,
		"mastodon.s3.enabled":                                 false,
		"postgresql.port":                                     int64(6432),
		"postgresql.database":                                 "mastodon_production",
		"postgresql.password":                                 "plain-db-pass",
		"postgresql.hostname":                                 "zz-db-host-value", // configuration, read from the Secret
		"mastodon.secrets.existingSecret":                     "app",
		"mastodon.secrets.existingSecretKeys.secretKeyBase":   "SECRET_KEY_BASE",
		"mastodon.secrets.existingSecretKeys.vapidPrivateKey": nil,
		"mastodon.web.maxThreads":                             "8",
		"mastodon.web.minThreads":                             "8",
		"mastodon.web.replicas":                               int64(3),
		"mastodon.streaming.port":                             int64(4001),
		"mastodon.streaming.workers":                          int64(2),
		"mastodon.extraEnvVars.PRICE":                         "costs $(5) and $$",
		"mastodon.extraEnvVars.HOME_URL":                      "https://edge.example/home",
		"mastodon.extraEnvVars.S3_OPEN_TIMEOUT":               "5",
		"mastodon.extraEnvVars.AWS_ACCESS_KEY_ID":             "AKIAPLAIN", // S3 is off: the chart would not pass it
		"mastodon.hcaptcha.existingSecret":                    "app",
		"mastodon.hcaptcha.existingSecretKeys.apiKey":         "HCAPTCHA_SECRET_KEY",
		"mastodon.hcaptcha.enabled":                           nil,
		"httproute.enabled":                                   false,
		"mastodon.extraEnvVars.HCAPTCHA_SECRET_KEY":           nil,
		"mastodon.extraEnvVars.POD_NAME":                      nil,
		"mastodon.extraEnvVars.DB_HOST":                       nil,
		"mastodon.extraEnvVars.MAX_THREADS":                   nil,
		"serviceAccount.create":                               false,
		"serviceAccount.name":                                 "mastodon-sa",
		"nodeSelector":                                        nil,
		"mastodon.web.nodeSelector.pool":                      "web",
	} {
		if got := lookup(vals, strings.Split(path, ".")...); !reflect.DeepEqual(got, want) {
			t.Errorf("%s = %#v, want %#v", path, got, want)
		}
	}
	if got, want := lookup(vals, "mastodon", "alternateDomains"), []any{"a.example", "b.example"}; !reflect.DeepEqual(got, want) {
		t.Errorf("alternateDomains = %#v, want %#v", got, want)
	}
	workers := lookup(vals, "mastodon", "sidekiq", "workers").([]any)
	push, rest := workers[0].(map[string]any), workers[1].(map[string]any)
	if push["name"] != "push" || push["concurrency"] != int64(10) || push["replicas"] != int64(2) ||
		!reflect.DeepEqual(push["queues"], []any{"push", "mailers,2", "pull"}) {
		t.Errorf("push worker %v", push)
	}
	if rest["name"] != "all-queues" || rest["concurrency"] != int64(25) || !reflect.DeepEqual(rest["queues"], []any{}) {
		t.Errorf("second worker %v", rest)
	}

	for _, want := range []struct {
		kind     NoteKind
		variable string
	}{
		{Injected, "HCAPTCHA_SECRET_KEY"}, {FromSecret, "DB_HOST"}, {Unmapped, "POD_NAME"},
		{Conflict, "VAPID_PRIVATE_KEY"}, {Conflict, "LOCAL_DOMAIN"},
		{Required, "VAPID_PUBLIC_KEY"}, {ChartDefault, "ACTIVE_RECORD_ENCRYPTION_PRIMARY_KEY"},
		{Adjusted, "DB_PASS"}, {Required, "DB_USER"}, {Adjusted, "DB_NAME"}, {Adjusted, "MIN_THREADS"}, {Adjusted, "SINGLE_USER_MODE"},
		{Required, "REDIS_PASSWORD"}, {Required, "SMTP_LOGIN"}, {ChartDefault, "SMTP_SERVER"}, {Required, "S3_ENABLED"},
		{Unmapped, "BIND"}, {Unmapped, "MAX_THREADS"},
	} {
		if !hasNote(notes, want.kind, want.variable) {
			t.Errorf("no %s note about %s", want.kind, want.variable)
		}
	}
	if want := []v1alpha1.SecretEnvVar{{Name: "HCAPTCHA_SECRET_KEY", SecretName: "app", Key: "HCAPTCHA_SECRET_KEY"}}; !reflect.DeepEqual(gen.SecretEnv, want) {
		t.Errorf("secretEnv %v, want %v", gen.SecretEnv, want)
	}
	for _, fragment := range []string{"-t 30", "no -c", "placed differently", "has no tag", "listen on 0.0.0.0", "DB_POOL"} {
		if !slices.ContainsFunc(notes, func(n Note) bool { return strings.Contains(n.Message, fragment) }) {
			t.Errorf("no note saying %q", fragment)
		}
	}

	// With what the Required notes ask for, the chart renders, runs the pinned image and gives
	// the variables that went to extraEnvVars the old values.
	vals = Merge(vals, map[string]any{
		"postgresql": map[string]any{"username": "mastodon"},
		"redis":      map[string]any{"existingSecret": "app"},
		"mastodon":   map[string]any{"pvc": map[string]any{"enabled": true}, "smtp": map[string]any{"existingSecret": "app"}},
	})
	m, err := helm.Render(testChart(t), vals, "edge", "mastodon", helm.WithSecretEnv(gen.SecretEnv))
	if err != nil {
		t.Fatal(err)
	}
	var web appsv1.Deployment
	convert(t, m.Find("Deployment", "edge-mastodon-web"), &web)
	if got := container(t, &web, "mastodon-web").Image; got != "registry.local:5000/mastodon@sha256:0123abcd" {
		t.Errorf("web image %s", got)
	}
	var sk appsv1.Deployment
	convert(t, m.Find("Deployment", "edge-mastodon-sidekiq-push"), &sk)
	if got, want := container(t, &sk, "mastodon").Command, []string{"bundle", "exec", "sidekiq", "-c", "10", "-q", "push", "-q", "mailers,2", "-q", "pull"}; !slices.Equal(got, want) {
		t.Errorf("push worker runs %q, want %q", got, want)
	}
	convert(t, m.Find("Deployment", "edge-mastodon-sidekiq-all-queues"), &sk)
	if got, want := container(t, &sk, "mastodon").Command, []string{"bundle", "exec", "sidekiq", "-c", "25"}; !slices.Equal(got, want) {
		t.Errorf("second worker runs %q, want %q", got, want)
	}
	var cm corev1.ConfigMap
	convert(t, m.Find("ConfigMap", "edge-mastodon-env"), &cm)
	oldEnv, err := envparity.Effective(src.Web.Spec.Template.Spec, "puma", src.ConfigMaps, src.Secrets)
	if err != nil {
		t.Fatal(err)
	}
	newEnv, err := envparity.Effective(web.Spec.Template.Spec, "mastodon-web", map[string]*corev1.ConfigMap{cm.Name: &cm}, src.Secrets)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"PRICE", "HOME_URL", "S3_OPEN_TIMEOUT", "DB_HOST"} {
		if oldEnv[name].Literal != newEnv[name].Literal && !(name == "DB_HOST" && newEnv[name].Literal == "zz-db-host-value") {
			t.Errorf("%s: old %s, new %s", name, oldEnv[name], newEnv[name])
		}
	}
	if v := newEnv["HCAPTCHA_SECRET_KEY"]; v.FromSecret == nil || *v.FromSecret != (envparity.Ref{Name: "app", Key: "HCAPTCHA_SECRET_KEY"}) {
		t.Errorf("HCAPTCHA_SECRET_KEY of the new web pods is %s, want the old key by secretEnv", v)
	}
}

func TestGenerateErrors(t *testing.T) {
	if _, err := Generate(Source{}); err == nil {
		t.Error("no error without a web Deployment")
	}
	pod := corev1.PodSpec{Containers: []corev1.Container{{Name: "web", EnvFrom: envFrom([]string{"gone"})}}}
	if _, err := Generate(Source{Web: deployment("web", 1, pod)}); err == nil || !strings.Contains(err.Error(), "gone") {
		t.Errorf("error %v, want one naming the missing ConfigMap", err)
	}
	two := corev1.PodSpec{Containers: []corev1.Container{{Name: "a", Image: "nginx"}, {Name: "b", Image: "redis"}}}
	if _, err := Generate(Source{Web: deployment("web", 1, two)}); err == nil {
		t.Error("no error for a web Deployment without a Mastodon container")
	}
}

func TestMerge(t *testing.T) {
	generated := map[string]any{
		"image":    map[string]any{"repository": "ghcr.io/mastodon/mastodon", "tag": "v4.6.2"},
		"mastodon": map[string]any{"web": map[string]any{"replicas": int64(2), "resources": map[string]any{"limits": map[string]any{"memory": "2Gi"}}}},
		"list":     []any{"a", "b"},
		"scalar":   "generated",
	}
	specValues := map[string]any{
		"mastodon": map[string]any{"web": map[string]any{"replicas": int64(3), "resources": nil}},
		"list":     []any{"c"},
		"scalar":   map[string]any{"now": "a table"},
	}
	valuesFrom1 := map[string]any{"image": map[string]any{"tag": "v4.6.3"}, "scalar": "last"}
	valuesFrom2 := map[string]any{"image": map[string]any{"tag": "v4.6.4"}}
	before := fmt.Sprint(generated, specValues, valuesFrom1, valuesFrom2)

	got := Merge(generated, specValues, nil, valuesFrom1, valuesFrom2)
	want := map[string]any{
		"image":    map[string]any{"repository": "ghcr.io/mastodon/mastodon", "tag": "v4.6.4"},
		"mastodon": map[string]any{"web": map[string]any{"replicas": int64(3), "resources": nil}},
		"list":     []any{"c"},
		"scalar":   "last",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Merge\n%v\nwant\n%v", got, want)
	}
	got["image"].(map[string]any)["repository"] = "changed"
	got["list"].([]any)[0] = "changed"
	if after := fmt.Sprint(generated, specValues, valuesFrom1, valuesFrom2); after != before {
		t.Errorf("Merge changed its layers:\n%s\n%s", before, after)
	}
	if m := Merge(); m == nil || len(m) != 0 {
		t.Errorf("Merge() = %#v, want an empty map", m)
	}
}

// Merge(a, b) is Helm's chartutil.MergeTables(b, a): the first argument of MergeTables wins.
// (Its sibling CoalesceTables differs on null: it drops the key, letting the chart's default
// back in; Merge keeps the null, so that Helm drops the default, as for `helm install -f`.)
func TestMergeIsHelmsMergeTables(t *testing.T) {
	a := map[string]any{"x": map[string]any{"y": int64(1), "z": []any{"a"}, "n": "kept"}, "s": "a", "t": map[string]any{"u": int64(1)}}
	b := map[string]any{"x": map[string]any{"y": int64(2), "z": []any{"b"}, "w": true}, "s": "b", "v": nil}
	want := mergeTables(deepCopy(b).(map[string]any), deepCopy(a).(map[string]any))
	if got := Merge(a, b); !reflect.DeepEqual(got, want) {
		t.Errorf("Merge(a, b) = %v, chartutil.MergeTables(b, a) = %v", got, want)
	}
}

func hasNote(notes []Note, kind NoteKind, variable string) bool {
	return slices.ContainsFunc(notes, func(n Note) bool { return n.Kind == kind && n.Variable == variable })
}

// noSecretValues fails when the value of a Secret key the old pods read shows in the generated
// values, notes or secretEnv, except the keys of the configuration they read from Secrets
// (configInSecret), which the values carry on purpose.
func noSecretValues(t *testing.T, src Source, gen Generated) {
	t.Helper()
	doc, err := yaml.Marshal(map[string]any{"values": gen.Values, "secretEnv": gen.SecretEnv})
	if err != nil {
		t.Fatal(err)
	}
	text := string(doc) + fmt.Sprint(gen.Notes)
	config := map[envparity.Ref]bool{}
	for _, d := range slices.Concat([]*appsv1.Deployment{src.Web, src.Streaming}, src.Sidekiq) {
		if d == nil {
			continue
		}
		for _, c := range d.Spec.Template.Spec.Containers {
			env, err := envparity.Effective(d.Spec.Template.Spec, c.Name, src.ConfigMaps, src.Secrets)
			if err != nil {
				t.Fatal(err)
			}
			for name, v := range env {
				if _, ok := configInSecret[name]; ok && v.FromSecret != nil {
					config[*v.FromSecret] = true
				}
			}
		}
	}
	// A value the pods also read from a ConfigMap is public there (DB_USER, say).
	public := map[string]bool{}
	for _, cm := range src.ConfigMaps {
		for _, v := range cm.Data {
			public[v] = true
		}
	}
	checked := 0
	for _, s := range src.Secrets {
		values := map[string]string{}
		for k, v := range s.Data {
			values[k] = string(v)
		}
		maps.Copy(values, s.StringData)
		for k, v := range values {
			if config[envparity.Ref{Name: s.Name, Key: k}] || public[v] {
				continue
			}
			checked++
			if len(v) > 3 && strings.Contains(text, v) {
				t.Errorf("the value of Secret %s key %s shows in the values, notes or secretEnv", s.Name, k)
			}
		}
	}
	if checked == 0 {
		t.Error("no Secret value to look for")
	}
	// Whatever configInSecret says: the fixtures' credentials are all fake-something.
	if strings.Contains(strings.ToLower(text), "fake") {
		t.Error("a fake credential of the fixture shows in the values, notes or secretEnv")
	}
}

func testChart(t *testing.T) *chart.Chart {
	t.Helper()
	chrt, err := loader.Load(fixture.OfficialChart())
	if err != nil {
		t.Fatal(err)
	}
	return chrt
}

// chartDir is the official chart unpacked, for lint.
func chartDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := chartutil.ExpandFile(dir, fixture.OfficialChart()); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, "mastodon")
}

func container(t *testing.T, d *appsv1.Deployment, name string) corev1.Container {
	t.Helper()
	for _, c := range d.Spec.Template.Spec.Containers {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("Deployment %s has no container %s", d.Name, name)
	return corev1.Container{}
}

func convert(t *testing.T, obj *unstructured.Unstructured, into any) {
	t.Helper()
	if obj == nil {
		t.Fatal("no such object")
	}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(obj.Object, into); err != nil {
		t.Fatal(err)
	}
}

func lookup(m map[string]any, path ...string) any {
	var v any = m
	for _, k := range path {
		mm, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = mm[k]
	}
	return v
}

// viaJSON gives values as a YAML document would read back (numbers float64).
func viaJSON(t *testing.T, v map[string]any) map[string]any {
	t.Helper()
	doc, err := yaml.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if err := yaml.Unmarshal(doc, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// A worker of other queues keeps its replicas; one that reads config/sidekiq.yml (no -q), and
// so consumes the scheduler queue, gets one, as one that lists it does.
// A worker that runs the scheduler queue on more than one pod is split: its other queues keep
// its replicas, scheduler gets one pod of its own. One on one pod, or on no scheduler, stays
// as it is; one of scheduler alone is cut to one pod. Whatever the command, the release runs
// one scheduler process at most.
func TestMultiReplicaSchedulerWorkersAreSplit(t *testing.T) {
	sidekiq := []string{"bundle", "exec", "sidekiq", "-c", "25"}
	config := []any{"default,8", "push,6", "ingress,4", "mailers,2", "pull", "fasp"}
	type worker struct {
		name     string
		replicas int64
		queues   []any
	}
	for _, tc := range []struct {
		args     []string
		replicas int32
		want     []worker
		note     NoteKind // of the note on the scheduler queue, if any
	}{
		{[]string{"-q", "default", "-q", "push"}, 3, []worker{{"worker", 3, []any{"default", "push"}}}, ""},
		{nil, 3, []worker{{"worker", 3, config}, {"scheduler", 1, []any{"scheduler"}}}, Adjusted},
		{nil, 1, []worker{{"worker", 1, []any{}}}, ""},
		{[]string{"-q", "default", "-q", "scheduler,2"}, 3, []worker{{"worker", 3, []any{"default"}}, {"scheduler", 1, []any{"scheduler"}}}, Adjusted},
		{[]string{"-q", "scheduler"}, 3, []worker{{"worker", 1, []any{"scheduler"}}}, Conflict},
		// Queue default with a weight Sidekiq ignores: no scheduler.
		{[]string{"-q", "default,scheduler"}, 3, []worker{{"worker", 3, []any{"default,scheduler"}}}, ""},
	} {
		src := fixtureSource(t)
		src.Sidekiq[0].Spec.Replicas = &tc.replicas
		src.Sidekiq[0].Spec.Template.Spec.Containers[0].Command = slices.Concat(sidekiq, tc.args)
		gen, err := GenerateWithNotes(src)
		if err != nil {
			t.Fatal(err)
		}
		var got []worker
		schedulers := int64(0)
		for _, w := range lookup(gen.Values, "mastodon", "sidekiq", "workers").([]any) {
			w := w.(map[string]any)
			got = append(got, worker{w["name"].(string), w["replicas"].(int64), w["queues"].([]any)})
			var queues []string
			for _, q := range w["queues"].([]any) {
				queues = append(queues, q.(string))
			}
			if scheduler.Consumes(chartWorkerPod(queues)).Consumes {
				schedulers += w["replicas"].(int64)
			}
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%q on %d pods: workers %v, want %v", tc.args, tc.replicas, got, tc.want)
		}
		if consumes := scheduler.Consumes(src.Sidekiq[0].Spec.Template.Spec).Consumes; schedulers != map[bool]int64{true: 1}[consumes] {
			t.Errorf("%q on %d pods: the release runs %d schedulers", tc.args, tc.replicas, schedulers)
		}
		i := slices.IndexFunc(gen.Notes, func(n Note) bool { return strings.Contains(n.Message, "scheduler queue with 3 replicas") })
		if kind := NoteKind(""); i >= 0 {
			kind = gen.Notes[i].Kind
			if kind != tc.note {
				t.Errorf("%q on %d pods: a %s note, want %q: %s", tc.args, tc.replicas, kind, tc.note, gen.Notes[i])
			}
		} else if tc.note != "" {
			t.Errorf("%q on %d pods: no %s note on the scheduler queue", tc.args, tc.replicas, tc.note)
		}
		names, err := WorkerNames(src.Sidekiq)
		if err != nil || names[0] != tc.want[0].name {
			t.Errorf("%q: WorkerNames %v, %v; want %s, the worker that keeps the other queues", tc.args, names, err, tc.want[0].name)
		}
	}
}
