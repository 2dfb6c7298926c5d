package helm

import (
	"maps"
	"slices"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
)

// databases are the values the chart cannot do without.
func databases() map[string]any {
	return map[string]any{
		"postgresql": map[string]any{"hostname": "10.0.0.5"},
		"redis":      map[string]any{"hostname": "redis.mastodon.svc"},
	}
}

func TestRenderNamesTheMissingRequiredValue(t *testing.T) {
	chrt := loadTestChart(t)
	for _, tc := range []struct {
		values map[string]any
		want   string
	}{
		{nil, "postgresql.hostname is required"},
		{map[string]any{"postgresql": map[string]any{"hostname": "db"}}, "redis.hostname is required"},
	} {
		_, err := Render(chrt, tc.values, "mastodon-helm", "mastodon")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Render(%v) = %v, want an error containing %q", tc.values, err, tc.want)
		}
	}
}

func TestRenderYieldsTheOfficialChartsObjects(t *testing.T) {
	m, err := Render(loadTestChart(t), databases(), "mastodon-helm", "mastodon")
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		deployment, component, port string
		rails                       bool
	}{
		{"mastodon-helm-web", "web", "http", true},
		{"mastodon-helm-streaming", "streaming", "streaming", false},
		{"mastodon-helm-sidekiq-all-queues", "sidekiq-all-queues", "", true},
	} {
		var d appsv1.Deployment
		convert(t, m.Find("Deployment", tc.deployment), &d)
		want := map[string]string{
			"app.kubernetes.io/name":      "mastodon",
			"app.kubernetes.io/instance":  "mastodon-helm",
			"app.kubernetes.io/component": tc.component,
		}
		if tc.rails {
			want["app.kubernetes.io/part-of"] = "rails"
		}
		if got := d.Spec.Selector.MatchLabels; !maps.Equal(got, want) {
			t.Errorf("%s selects %v, want %v", tc.deployment, got, want)
		}
		if !maps.Equal(d.Spec.Template.Labels, want) {
			t.Errorf("%s pods are labelled %v, want %v", tc.deployment, d.Spec.Template.Labels, want)
		}
		container := d.Spec.Template.Spec.Containers[0]
		if tc.port != "" && (len(container.Ports) != 1 || container.Ports[0].Name != tc.port) {
			t.Errorf("%s ports %v, want one named %s", tc.deployment, container.Ports, tc.port)
		}
		if len(container.EnvFrom) != 1 || container.EnvFrom[0].ConfigMapRef.Name != "mastodon-helm-env" {
			t.Errorf("%s envFrom %v, want ConfigMap mastodon-helm-env", tc.deployment, container.EnvFrom)
		}
		if ref := secretRef(container, "SECRET_KEY_BASE"); ref == nil || ref.Name != "mastodon-helm" || ref.Key != "SECRET_KEY_BASE" {
			t.Errorf("%s SECRET_KEY_BASE from %v, want Secret mastodon-helm key SECRET_KEY_BASE", tc.deployment, ref)
		}
		if d.Spec.Template.Spec.SecurityContext == nil || *d.Spec.Template.Spec.SecurityContext.RunAsUser != 991 {
			t.Errorf("%s pods do not run as uid 991", tc.deployment)
		}
	}

	var web appsv1.Deployment
	convert(t, m.Find("Deployment", "mastodon-helm-web"), &web)
	if got := web.Spec.Template.Spec.Containers[0]; got.Image != "ghcr.io/mastodon/mastodon:v4.6.2" || got.ReadinessProbe.HTTPGet.Path != "/health" {
		t.Errorf("web runs %s probed at %s, want ghcr.io/mastodon/mastodon:v4.6.2 probed at /health", got.Image, got.ReadinessProbe.HTTPGet.Path)
	}
	var streaming appsv1.Deployment
	convert(t, m.Find("Deployment", "mastodon-helm-streaming"), &streaming)
	if got := streaming.Spec.Template.Spec.Containers[0]; got.Image != "ghcr.io/mastodon/mastodon-streaming:v4.6.2" || got.ReadinessProbe.HTTPGet.Path != "/api/v1/streaming/health" {
		t.Errorf("streaming runs %s probed at %s, want ghcr.io/mastodon/mastodon-streaming:v4.6.2 probed at /api/v1/streaming/health", got.Image, got.ReadinessProbe.HTTPGet.Path)
	}
	var sidekiq appsv1.Deployment
	convert(t, m.Find("Deployment", "mastodon-helm-sidekiq-all-queues"), &sidekiq)
	if got := strings.Join(sidekiq.Spec.Template.Spec.Containers[0].Command, " "); !strings.HasPrefix(got, "bundle exec sidekiq -c 25 -q default,8") {
		t.Errorf("sidekiq runs %q, want bundle exec sidekiq -c 25 -q default,8 …", got)
	}

	for name, port := range map[string]struct {
		number int32
		target string
	}{"mastodon-helm-web": {3000, "http"}, "mastodon-helm-streaming": {4000, "streaming"}} {
		var svc corev1.Service
		convert(t, m.Find("Service", name), &svc)
		if p := svc.Spec.Ports; len(p) != 1 || p[0].Port != port.number || p[0].TargetPort.StrVal != port.target {
			t.Errorf("Service %s ports %v, want %d → %s", name, p, port.number, port.target)
		}
	}

	var env corev1.ConfigMap
	convert(t, m.Find("ConfigMap", "mastodon-helm-env"), &env)
	if env.Data["DB_HOST"] != "10.0.0.5" || env.Data["REDIS_HOST"] != "redis.mastodon.svc" || env.Data["LOCAL_DOMAIN"] != "mastodon.local" {
		t.Errorf("ConfigMap mastodon-helm-env = %v, want the database hosts and LOCAL_DOMAIN mastodon.local", env.Data)
	}
	if m.Find("ServiceAccount", "mastodon-helm") == nil || m.Find("Secret", "mastodon-helm") == nil {
		t.Errorf("no ServiceAccount and Secret mastodon-helm among %v", names(m.Resources))
	}
	if m.Find("Ingress", "mastodon-helm") != nil {
		t.Error("an Ingress is rendered though ingress.enabled defaults to false")
	}
	for _, obj := range m.Resources {
		if _, isHook := obj.GetAnnotations()["helm.sh/hook"]; isHook {
			t.Errorf("hook %s %s is among the resources", obj.GetKind(), obj.GetName())
		}
	}
}

func TestRenderHooksMatchTheOfficialChart(t *testing.T) {
	m, err := Render(loadTestChart(t), databases(), "mastodon-helm", "mastodon")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][2]string{ // kind/name → hook, weight
		"ServiceAccount/mastodon-helm-predeploy": {"pre-install,pre-upgrade", "-10"},
		"ConfigMap/mastodon-helm-env-predeploy":  {"pre-install,pre-upgrade", "-10"},
		"Secret/mastodon-helm-predeploy":         {"pre-install,pre-upgrade", "-10"},
		"Job/mastodon-helm-db-prepare":           {"pre-install", "-2"},
		"Job/mastodon-helm-db-pre-migrate":       {"pre-upgrade", "-1"},
		"Job/mastodon-helm-db-migrate":           {"post-install,post-upgrade", "-1"},
	}
	got := map[string][2]string{}
	for _, hook := range m.Hooks {
		a := hook.GetAnnotations()
		got[hook.GetKind()+"/"+hook.GetName()] = [2]string{a["helm.sh/hook"], a["helm.sh/hook-weight"]}
		if a["helm.sh/hook-delete-policy"] != "before-hook-creation,hook-succeeded" {
			t.Errorf("hook %s/%s delete policy %q", hook.GetKind(), hook.GetName(), a["helm.sh/hook-delete-policy"])
		}
	}
	if !maps.Equal(got, want) {
		t.Errorf("hooks %v, want %v", got, want)
	}

	// Jobs before install or upgrade use the predeploy copies; the one after uses the release's.
	for job, suffix := range map[string]string{
		"mastodon-helm-db-prepare": "-predeploy", "mastodon-helm-db-pre-migrate": "-predeploy", "mastodon-helm-db-migrate": "",
	} {
		var j batchv1.Job
		convert(t, m.Find("Job", job), &j)
		pod := j.Spec.Template.Spec
		dbPass := secretRef(pod.Containers[0], "DB_PASS")
		if pod.ServiceAccountName != "mastodon-helm"+suffix ||
			pod.Containers[0].EnvFrom[0].ConfigMapRef.Name != "mastodon-helm-env"+suffix ||
			dbPass == nil || dbPass.Name != "mastodon-helm"+suffix {
			t.Errorf("Job %s does not use the ServiceAccount, ConfigMap and Secret named mastodon-helm…%s", job, suffix)
		}
	}

	disabled := databases()
	disabled["mastodon"] = map[string]any{"hooks": map[string]any{
		"dbPrepare": map[string]any{"enabled": false}, "dbMigrate": map[string]any{"enabled": false},
	}}
	m, err = Render(loadTestChart(t), disabled, "mastodon-helm", "mastodon")
	if err != nil {
		t.Fatal(err)
	}
	for _, hook := range m.Hooks {
		if hook.GetKind() == "Job" {
			t.Errorf("Job %s rendered with the database hooks disabled", hook.GetName())
		}
	}
}

func TestRenderFullnameRules(t *testing.T) {
	chrt := loadTestChart(t)
	for _, tc := range []struct {
		release, fullnameOverride, wantWeb string
	}{
		{"mastodon-helm", "", "mastodon-helm-web"},
		{"mastodon", "", "mastodon-web"},
		{"social", "", "social-mastodon-web"},
		{"social", "toot", "toot-web"},
	} {
		values := databases()
		values["fullnameOverride"] = tc.fullnameOverride
		m, err := Render(chrt, values, tc.release, "mastodon")
		if err != nil {
			t.Fatal(err)
		}
		if m.Find("Deployment", tc.wantWeb) == nil {
			t.Errorf("release %q with fullnameOverride %q: no Deployment %s among %v", tc.release, tc.fullnameOverride, tc.wantWeb, names(m.Resources))
		}
	}
}

// The operator reuses the old stack's Secret: every key is read from it under the old name, and
// the chart creates no Secret of its own.
func TestRenderReadsSecretsFromExistingSecrets(t *testing.T) {
	values := databases()
	values["postgresql"].(map[string]any)["existingSecret"] = "mastodon"
	values["postgresql"].(map[string]any)["existingSecretKeys"] = map[string]any{"password": "DB_PASS"}
	values["redis"].(map[string]any)["existingSecret"] = "mastodon"
	values["redis"].(map[string]any)["existingSecretKeys"] = map[string]any{"password": "REDIS_PASSWORD"}
	values["mastodon"] = map[string]any{
		"secrets": map[string]any{
			"existingSecret": "mastodon",
			"existingSecretKeys": map[string]any{
				"secretKeyBase": "SECRET_KEY_BASE", "otpSecret": "OTP_SECRET",
				"vapidPrivateKey": "VAPID_PRIVATE_KEY", "vapidPublicKey": "VAPID_PUBLIC_KEY",
				"arePrimaryKey":        "ACTIVE_RECORD_ENCRYPTION_PRIMARY_KEY",
				"areDeterministicKey":  "ACTIVE_RECORD_ENCRYPTION_DETERMINISTIC_KEY",
				"areKeyDerivationSalt": "ACTIVE_RECORD_ENCRYPTION_KEY_DERIVATION_SALT",
			},
		},
		"s3": map[string]any{
			"enabled": true, "bucket": "media", "existingSecret": "mastodon",
			"existingSecretKeys": map[string]any{"accessKeyId": "AWS_ACCESS_KEY_ID", "secretAccessKey": "AWS_SECRET_ACCESS_KEY"},
		},
		"extraEnvVars": map[string]any{"RAILS_LOG_LEVEL": "warn"},
	}
	m, err := Render(loadTestChart(t), values, "mastodon-helm", "mastodon")
	if err != nil {
		t.Fatal(err)
	}
	for _, obj := range slices.Concat(m.Resources, m.Hooks) {
		if obj.GetKind() == "Secret" {
			t.Errorf("Secret %s rendered, want none", obj.GetName())
		}
	}

	var web appsv1.Deployment
	convert(t, m.Find("Deployment", "mastodon-helm-web"), &web)
	container := web.Spec.Template.Spec.Containers[0]
	for _, key := range []string{
		"SECRET_KEY_BASE", "OTP_SECRET", "VAPID_PRIVATE_KEY", "VAPID_PUBLIC_KEY",
		"ACTIVE_RECORD_ENCRYPTION_PRIMARY_KEY", "ACTIVE_RECORD_ENCRYPTION_DETERMINISTIC_KEY",
		"ACTIVE_RECORD_ENCRYPTION_KEY_DERIVATION_SALT", "DB_PASS", "REDIS_PASSWORD",
		"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
	} {
		ref := secretRef(container, key)
		if ref == nil || ref.Name != "mastodon" || ref.Key != key || (ref.Optional != nil && *ref.Optional) {
			t.Errorf("web %s from %+v, want the required key %s of Secret mastodon", key, ref, key)
		}
	}
	if i := slices.IndexFunc(container.Env, func(e corev1.EnvVar) bool { return e.Name == "RAILS_LOG_LEVEL" }); i < 0 || container.Env[i].Value != "warn" {
		t.Errorf("web env %v lacks RAILS_LOG_LEVEL=warn from mastodon.extraEnvVars", container.Env)
	}
	var env corev1.ConfigMap
	convert(t, m.Find("ConfigMap", "mastodon-helm-env"), &env)
	if env.Data["S3_ENABLED"] != "true" || env.Data["S3_BUCKET"] != "media" {
		t.Errorf("ConfigMap mastodon-helm-env = %v, want S3_ENABLED=true and S3_BUCKET=media", env.Data)
	}
}

func loadTestChart(t *testing.T) *chart.Chart {
	t.Helper()
	chrt, err := loader.LoadDir(testChart)
	if err != nil {
		t.Fatal(err)
	}
	return chrt
}

func convert(t *testing.T, obj *unstructured.Unstructured, into any) {
	t.Helper()
	if obj == nil {
		t.Fatalf("no object to read into %T", into)
	}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(obj.Object, into); err != nil {
		t.Fatal(err)
	}
}

func secretRef(c corev1.Container, name string) *corev1.SecretKeySelector {
	for _, e := range c.Env {
		if e.Name == name && e.ValueFrom != nil {
			return e.ValueFrom.SecretKeyRef
		}
	}
	return nil
}

func names(objs []*unstructured.Unstructured) []string {
	var out []string
	for _, obj := range objs {
		out = append(out, obj.GetKind()+"/"+obj.GetName())
	}
	return out
}
