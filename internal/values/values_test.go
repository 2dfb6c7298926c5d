package values

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/lint"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"

	"github.com/mastodon-operator/mastodon-operator/internal/envparity"
	"github.com/mastodon-operator/mastodon-operator/internal/helm"
	"github.com/mastodon-operator/mastodon-operator/test/fixture"
)

// The values generated from the Kustomize fixture, as the runbook's mapping gives them.
const fixtureValues = `
image: {repository: ghcr.io/mastodon/mastodon, tag: v4.6.2}
nodeSelector: {cloud.google.com/gke-nodepool: mastodon-pool}
mastodon:
  localDomain: example.social
  locale: ja
  singleUserMode: false
  trustedProxyIp: 35.191.0.0/16,130.211.0.0/22
  extraEnvVars: {RAILS_LOG_LEVEL: warn, RAILS_SERVE_STATIC_FILES: "true"}
  secrets:
    existingSecret: mastodon
    existingSecretKeys:
      secretKeyBase: SECRET_KEY_BASE
      otpSecret: OTP_SECRET
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
      queues: []
      resources: {requests: {cpu: 500m, memory: 1Gi}, limits: {memory: 2Gi}}
      nodeSelector: {cloud.google.com/gke-nodepool: mastodon-pool}
      tolerations: []
      affinity: {}
postgresql:
  hostname: 10.20.0.3
  port: 5432
  database: mastodon_production
  username: mastodon
  existingSecret: mastodon
  existingSecretKeys: {password: DB_PASS}
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
	got, notes, err := GenerateWithNotes(src)
	if err != nil {
		t.Fatal(err)
	}
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
	worker := lookup(got, "mastodon", "sidekiq", "workers").([]any)[0].(map[string]any)
	if worker["concurrency"] != int64(25) || worker["replicas"] != int64(2) {
		t.Errorf("worker %v: want concurrency and replicas as int64 25 and 2", worker)
	}
	wantNotes := []Note{{Adjusted, "MIN_THREADS", "not set in the old web pods, so Puma used MAX_THREADS (5); mastodon.web.minThreads is set to it"}}
	if !reflect.DeepEqual(notes, wantNotes) {
		t.Errorf("notes %v, want %v", notes, wantNotes)
	}
	noSecretValues(t, src.Secrets, got, notes)

	plain, err := Generate(src)
	if err != nil || !reflect.DeepEqual(plain, got) {
		t.Errorf("Generate differs from GenerateWithNotes: %v", err)
	}
}

// The generated values install the test chart (which mirrors the official chart's interface):
// every required value is there, helm lint is clean, and the objects run what the old ones ran.
func TestGeneratedValuesRenderTheChart(t *testing.T) {
	src := fixtureSource(t)
	vals, err := Generate(src)
	if err != nil {
		t.Fatal(err)
	}
	chrt := testChart(t)
	m, err := helm.Render(chrt, vals, "mastodon-helm", "mastodon")
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	for _, msg := range lint.All(fixture.OfficialChart(), vals, "mastodon", false).Messages {
		t.Errorf("lint: %s", msg)
	}
	if s := m.Find("Secret", "mastodon-helm"); s != nil {
		t.Errorf("the chart renders its own Secret %v; every secret should come from Secret mastodon", s.Object["data"])
	}

	pairs := []struct {
		old       *appsv1.Deployment
		oldName   string
		newName   string
		container string
	}{
		{src.Web, "web", "mastodon-helm-web", "web"},
		{src.Streaming, "streaming", "mastodon-helm-streaming", "streaming"},
		{src.Sidekiq[0], "worker", "mastodon-helm-sidekiq-worker", "sidekiq"},
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
		if *d.Spec.Replicas != *p.old.Spec.Replicas {
			t.Errorf("%s: replicas %d, want %d", d.Name, *d.Spec.Replicas, *p.old.Spec.Replicas)
		}
		if newC.Image != oldC.Image {
			t.Errorf("%s: image %s, want the old %s", d.Name, newC.Image, oldC.Image)
		}
		if !slices.Equal(slices.Concat(newC.Command, newC.Args), slices.Concat(oldC.Command, oldC.Args)) {
			t.Errorf("%s: runs %q, want the old %q", d.Name, slices.Concat(newC.Command, newC.Args), slices.Concat(oldC.Command, oldC.Args))
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
	// The database Jobs run where the rest runs.
	for _, hook := range m.Hooks {
		if hook.GetKind() != "Job" {
			continue
		}
		sel, _, _ := unstructured.NestedStringMap(hook.Object, "spec", "template", "spec", "nodeSelector")
		if sel["cloud.google.com/gke-nodepool"] != "mastodon-pool" {
			t.Errorf("Job %s: nodeSelector %v", hook.GetName(), sel)
		}
	}
}

// Without DB_HOST the chart's `required` stops the render, and a note said so beforehand.
func TestMissingDatabaseHostIsRequired(t *testing.T) {
	src := fixtureSource(t)
	cm := src.ConfigMaps["mastodon-env"].DeepCopy()
	delete(cm.Data, "DB_HOST")
	src.ConfigMaps = map[string]*corev1.ConfigMap{"mastodon-env": cm}
	vals, notes, err := GenerateWithNotes(src)
	if err != nil {
		t.Fatal(err)
	}
	if !hasNote(notes, Required, "DB_HOST") {
		t.Errorf("notes %v, want a Required one about DB_HOST", notes)
	}
	_, err = helm.Render(testChart(t), vals, "mastodon-helm", "mastodon")
	if err == nil || !strings.Contains(err.Error(), "postgresql.hostname is required") {
		t.Errorf("render error %v, want the chart's required message", err)
	}
	// spec.release.values fills it in.
	if _, err := helm.Render(testChart(t), Merge(vals, map[string]any{"postgresql": map[string]any{"hostname": "10.20.0.3"}}), "mastodon-helm", "mastodon"); err != nil {
		t.Error(err)
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
	vals, notes, err := GenerateWithNotes(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range notes {
		t.Log(n)
	}
	noSecretValues(t, src.Secrets, vals, notes)

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
		"postgresql.hostname":                                 nil,
		"mastodon.secrets.existingSecret":                     "app",
		"mastodon.secrets.existingSecretKeys.secretKeyBase":   "SECRET_KEY_BASE",
		"mastodon.secrets.existingSecretKeys.vapidPrivateKey": nil,
		"mastodon.web.maxThreads":                             "8",
		"mastodon.web.minThreads":                             "8",
		"mastodon.web.replicas":                               int64(3),
		"mastodon.streaming.port":                             int64(4001),
		"mastodon.streaming.workers":                          int64(2),
		"mastodon.extraEnvVars.PRICE":                         "costs $$(5) and $$$$",
		"mastodon.extraEnvVars.HOME_URL":                      "https://$(LOCAL_DOMAIN)/home",
		"mastodon.extraEnvVars.S3_OPEN_TIMEOUT":               "5",
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
		{Unmapped, "HCAPTCHA_SECRET_KEY"}, {Unmapped, "DB_HOST"}, {Unmapped, "POD_NAME"},
		{Conflict, "VAPID_PRIVATE_KEY"}, {Conflict, "LOCAL_DOMAIN"},
		{Required, "OTP_SECRET"}, {ChartDefault, "ACTIVE_RECORD_ENCRYPTION_PRIMARY_KEY"},
		{Adjusted, "DB_PASS"}, {Adjusted, "DB_NAME"}, {Adjusted, "MIN_THREADS"}, {Adjusted, "SINGLE_USER_MODE"},
		{ChartDefault, "REDIS_PASSWORD"}, {ChartDefault, "SMTP_SERVER"},
		{Unmapped, "BIND"}, {Unmapped, "MAX_THREADS"}, {Unmapped, "AWS_ACCESS_KEY_ID"},
	} {
		if !hasNote(notes, want.kind, want.variable) {
			t.Errorf("no %s note about %s", want.kind, want.variable)
		}
	}
	for _, fragment := range []string{"-t 30", "no -c", "placed differently", "has no tag"} {
		if !slices.ContainsFunc(notes, func(n Note) bool { return strings.Contains(n.Message, fragment) }) {
			t.Errorf("no note saying %q", fragment)
		}
	}

	// With the database host given, the chart renders, runs the pinned image and gives the
	// variables that went to extraEnvVars the old values.
	vals = Merge(vals, map[string]any{"postgresql": map[string]any{"hostname": "db"}})
	m, err := helm.Render(testChart(t), vals, "edge", "mastodon")
	if err != nil {
		t.Fatal(err)
	}
	var web appsv1.Deployment
	convert(t, m.Find("Deployment", "edge-mastodon-web"), &web)
	if got := container(t, &web, "web").Image; got != "registry.local:5000/mastodon@sha256:0123abcd" {
		t.Errorf("web image %s", got)
	}
	var sk appsv1.Deployment
	convert(t, m.Find("Deployment", "edge-mastodon-sidekiq-push"), &sk)
	if got, want := container(t, &sk, "sidekiq").Command, []string{"bundle", "exec", "sidekiq", "-c", "10", "-q", "push", "-q", "mailers,2", "-q", "pull"}; !slices.Equal(got, want) {
		t.Errorf("push worker runs %q, want %q", got, want)
	}
	convert(t, m.Find("Deployment", "edge-mastodon-sidekiq-all-queues"), &sk)
	if got, want := container(t, &sk, "sidekiq").Command, []string{"bundle", "exec", "sidekiq", "-c", "25"}; !slices.Equal(got, want) {
		t.Errorf("second worker runs %q, want %q", got, want)
	}
	var cm corev1.ConfigMap
	convert(t, m.Find("ConfigMap", "edge-mastodon-env"), &cm)
	oldEnv, err := envparity.Effective(src.Web.Spec.Template.Spec, "puma", src.ConfigMaps, src.Secrets)
	if err != nil {
		t.Fatal(err)
	}
	newEnv, err := envparity.Effective(web.Spec.Template.Spec, "web", map[string]*corev1.ConfigMap{cm.Name: &cm}, src.Secrets)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"PRICE", "HOME_URL", "S3_OPEN_TIMEOUT"} {
		if oldEnv[name].Literal != newEnv[name].Literal {
			t.Errorf("%s: old %s, new %s", name, oldEnv[name], newEnv[name])
		}
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

// noSecretValues fails when a value of the Secrets shows in the values or notes.
func noSecretValues(t *testing.T, secrets map[string]*corev1.Secret, vals map[string]any, notes []Note) {
	t.Helper()
	doc, err := yaml.Marshal(vals)
	if err != nil {
		t.Fatal(err)
	}
	text := string(doc) + fmt.Sprint(notes)
	for _, s := range secrets {
		for k, v := range s.Data {
			if len(v) > 3 && strings.Contains(text, string(v)) {
				t.Errorf("the value of Secret %s key %s shows in the values or notes", s.Name, k)
			}
		}
		for k, v := range s.StringData {
			if len(v) > 3 && strings.Contains(text, v) {
				t.Errorf("the value of Secret %s key %s shows in the values or notes", s.Name, k)
			}
		}
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
