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

	"github.com/mastodon-operator/mastodon-operator/test/fixture"
)

// databases are the values the chart cannot do without: the database and Redis hosts, and
// every credential from an existing Secret.
func databases() map[string]any { return fixture.OfficialChartMinimalValues("mastodon") }

func TestRenderNamesTheMissingRequiredValue(t *testing.T) {
	chrt := loadTestChart(t)
	for _, tc := range []struct {
		drop []string // the path of the value left out of databases()
		want string
	}{
		{[]string{"postgresql", "hostname"}, "Database hostname must be given"},
		{[]string{"redis", "hostname"}, "Redis hostname is required"},
		{[]string{"mastodon", "secrets", "existingSecret"}, "secretKeyBase is required"},
		{[]string{"mastodon", "smtp", "existingSecret"}, "SMTP username is required with no existing secret"},
		{[]string{"postgresql", "existingSecret"}, "PostgreSQL password is required with no existing secret"},
	} {
		values := databases()
		parent := values
		for _, k := range tc.drop[:len(tc.drop)-1] {
			parent = parent[k].(map[string]any)
		}
		delete(parent, tc.drop[len(tc.drop)-1])
		_, err := Render(chrt, values, "mastodon-helm", "mastodon")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Render without %s = %v, want an error containing %q", strings.Join(tc.drop, "."), err, tc.want)
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
		// The chart's own key names, from the Secret that mastodon.secrets.existingSecret names.
		if ref := secretRef(container, "SECRET_KEY_BASE"); ref == nil || ref.Name != "mastodon" || ref.Key != "secret-key-base" {
			t.Errorf("%s SECRET_KEY_BASE from %v, want Secret mastodon key secret-key-base", tc.deployment, ref)
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
	if env.Data["DB_HOST"] != "10.20.0.3" || env.Data["REDIS_HOST"] != "10.20.0.11" || env.Data["LOCAL_DOMAIN"] != "mastodon.local" {
		t.Errorf("ConfigMap mastodon-helm-env = %v, want the database hosts and LOCAL_DOMAIN mastodon.local", env.Data)
	}
	if m.Find("ServiceAccount", "mastodon-helm") == nil {
		t.Errorf("no ServiceAccount mastodon-helm among %v", names(m.Resources))
	}
	if m.Find("Ingress", "mastodon-helm") != nil {
		t.Error("an Ingress is rendered though ingress.enabled defaults to false")
	}
	// The HTTPRoute is on by default: without the Gateway API's CRDs the install fails.
	withRoute := databases()
	delete(withRoute, "httproute")
	routed, err := Render(loadTestChart(t), withRoute, "mastodon-helm", "mastodon")
	if err != nil {
		t.Fatal(err)
	}
	if routed.Find("HTTPRoute", "mastodon-helm") == nil {
		t.Errorf("no HTTPRoute mastodon-helm with the chart's default httproute.enabled among %v", names(routed.Resources))
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
	// With every credential in existing Secrets, the chart renders no Secret of its own.
	want := map[string][2]string{ // kind/name → hook, weight
		"ServiceAccount/mastodon-helm-predeploy": {"pre-install,pre-upgrade", "-10"},
		"ConfigMap/mastodon-helm-env-predeploy":  {"pre-install,pre-upgrade,post-install,post-upgrade", "-10"},
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

	// Every Job reads the predeploy ConfigMap, which exists from pre-install to post-upgrade; the
	// Jobs before the install run as the predeploy ServiceAccount, the one after as the release's.
	// Credentials come from the existing Secret.
	for job, account := range map[string]string{
		"mastodon-helm-db-prepare": "mastodon-helm-predeploy", "mastodon-helm-db-pre-migrate": "mastodon-helm-predeploy",
		"mastodon-helm-db-migrate": "mastodon-helm",
	} {
		var j batchv1.Job
		convert(t, m.Find("Job", job), &j)
		pod := j.Spec.Template.Spec
		dbPass := secretRef(pod.Containers[0], "DB_PASS")
		if pod.ServiceAccountName != account || pod.Containers[0].EnvFrom[0].ConfigMapRef.Name != "mastodon-helm-env-predeploy" ||
			dbPass == nil || dbPass.Name != "mastodon" || dbPass.Key != "password" {
			t.Errorf("Job %s runs as %s with %v and DB_PASS from %v, want ServiceAccount %s, ConfigMap mastodon-helm-env-predeploy and Secret mastodon key password",
				job, pod.ServiceAccountName, pod.Containers[0].EnvFrom, dbPass, account)
		}
	}

	disabled := databases()
	disabled["mastodon"].(map[string]any)["hooks"] = map[string]any{
		"dbPrepare": map[string]any{"enabled": false}, "dbMigrate": map[string]any{"enabled": false},
	}
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

// The operator reuses the old stack's Secret: every key the chart passes is read from it under
// the old name, and the chart creates no Secret of its own. OTP_SECRET is not among them: the
// chart does not pass it (mastodon/helm-charts#80), so the operator adds it (spec.release.secretEnv).
func TestRenderReadsSecretsFromExistingSecrets(t *testing.T) {
	values := databases()
	values["postgresql"].(map[string]any)["existingSecretKeys"] = map[string]any{"password": "DB_PASS", "username": "DB_USER"}
	values["redis"].(map[string]any)["existingSecretKeys"] = map[string]any{"password": "REDIS_PASSWORD"}
	mastodon := values["mastodon"].(map[string]any)
	mastodon["secrets"].(map[string]any)["existingSecretKeys"] = map[string]any{
		"secretKeyBase": "SECRET_KEY_BASE", "vapidPrivateKey": "VAPID_PRIVATE_KEY", "vapidPublicKey": "VAPID_PUBLIC_KEY",
		"arePrimaryKey":        "ACTIVE_RECORD_ENCRYPTION_PRIMARY_KEY",
		"areDeterministicKey":  "ACTIVE_RECORD_ENCRYPTION_DETERMINISTIC_KEY",
		"areKeyDerivationSalt": "ACTIVE_RECORD_ENCRYPTION_KEY_DERIVATION_SALT",
	}
	mastodon["s3"].(map[string]any)["bucket"] = "media"
	mastodon["s3"].(map[string]any)["existingSecretKeys"] = map[string]any{"accessKeyId": "AWS_ACCESS_KEY_ID", "secretAccessKey": "AWS_SECRET_ACCESS_KEY"}
	mastodon["smtp"].(map[string]any)["existingSecretKeys"] = map[string]any{"username": "SMTP_LOGIN", "password": "SMTP_PASSWORD"}
	mastodon["extraEnvVars"] = map[string]any{"RAILS_SERVE_STATIC_FILES": "true"}
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
		"SECRET_KEY_BASE", "VAPID_PRIVATE_KEY", "VAPID_PUBLIC_KEY",
		"ACTIVE_RECORD_ENCRYPTION_PRIMARY_KEY", "ACTIVE_RECORD_ENCRYPTION_DETERMINISTIC_KEY",
		"ACTIVE_RECORD_ENCRYPTION_KEY_DERIVATION_SALT", "DB_PASS", "DB_USER", "REDIS_PASSWORD",
		"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
	} {
		ref := secretRef(container, key)
		if ref == nil || ref.Name != "mastodon" || ref.Key != key || (ref.Optional != nil && *ref.Optional) {
			t.Errorf("web %s from %+v, want the required key %s of Secret mastodon", key, ref, key)
		}
	}
	// Only Sidekiq sends mail: the SMTP credentials go to its pods alone.
	var sidekiq appsv1.Deployment
	convert(t, m.Find("Deployment", "mastodon-helm-sidekiq-all-queues"), &sidekiq)
	for _, key := range []string{"SMTP_LOGIN", "SMTP_PASSWORD"} {
		if ref := secretRef(sidekiq.Spec.Template.Spec.Containers[0], key); ref == nil || ref.Name != "mastodon" || ref.Key != key {
			t.Errorf("sidekiq %s from %+v, want key %s of Secret mastodon", key, ref, key)
		}
		if ref := secretRef(container, key); ref != nil {
			t.Errorf("web reads %s from %+v, want only sidekiq to", key, ref)
		}
	}
	if ref := secretRef(container, "OTP_SECRET"); ref != nil {
		t.Errorf("web reads OTP_SECRET from %+v: the chart was thought not to pass it", ref)
	}
	// mastodon.extraEnvVars go into the env ConfigMap, not the pod spec.
	var env corev1.ConfigMap
	convert(t, m.Find("ConfigMap", "mastodon-helm-env"), &env)
	if env.Data["S3_ENABLED"] != "true" || env.Data["S3_BUCKET"] != "media" || env.Data["RAILS_SERVE_STATIC_FILES"] != "true" {
		t.Errorf("ConfigMap mastodon-helm-env = %v, want S3_ENABLED=true, S3_BUCKET=media and RAILS_SERVE_STATIC_FILES=true", env.Data)
	}
}

func loadTestChart(t *testing.T) *chart.Chart {
	t.Helper()
	chrt, err := loader.Load(testChart)
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
