package controllers_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
)

// newNamespace creates a namespace of its own for one test.
func newNamespace(t *testing.T, ctx context.Context) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "test-"}}
	if err := k8sClient.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	return ns.Name
}

// migration is a valid MastodonMigration naming the fixture's objects.
func migration(ns, name string) *v1alpha1.MastodonMigration {
	return &v1alpha1.MastodonMigration{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: v1alpha1.MastodonMigrationSpec{
			Source: v1alpha1.SourceSpec{
				Web:       v1alpha1.ComponentRef{Deployment: "mastodon-web"},
				Streaming: v1alpha1.ComponentRef{Deployment: "mastodon-streaming"},
				Sidekiq:   []v1alpha1.ComponentRef{{Deployment: "mastodon-worker"}},
				Ingress:   "mastodon",
			},
			Release: v1alpha1.ReleaseSpec{Chart: v1alpha1.ChartRef{Repository: chartURL, Version: "1.0.2"}},
		},
	}
}

func TestAdmissionRefusesInvalidMigrations(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t, ctx)
	cases := []struct {
		name   string
		mutate func(m *v1alpha1.MastodonMigration)
		want   string
	}{
		{"unknown strategy", func(m *v1alpha1.MastodonMigration) { m.Spec.Strategy = "Rolling" },
			`spec.strategy: Unsupported value: "Rolling"`},
		{"no sidekiq", func(m *v1alpha1.MastodonMigration) { m.Spec.Source.Sidekiq = nil },
			"spec.source.sidekiq: Required value"},
		{"no web deployment", func(m *v1alpha1.MastodonMigration) { m.Spec.Source.Web.Deployment = "" },
			"spec.source.web.deployment"},
		{"chart repository not a URL", func(m *v1alpha1.MastodonMigration) { m.Spec.Release.Chart.Repository = "mastodon/mastodon" },
			"chart.repository must be an http(s):// Helm repository URL or an oci:// registry path"},
		{"notifications naming no Secret", func(m *v1alpha1.MastodonMigration) {
			m.Spec.Notifications = &v1alpha1.NotificationsSpec{}
		}, "spec.notifications.secretRef.name: Invalid value: \"\": spec.notifications.secretRef.name in body should be at least 1 chars long"},
		{"notifications naming a Secret by an invalid name", func(m *v1alpha1.MastodonMigration) {
			m.Spec.Notifications = &v1alpha1.NotificationsSpec{SecretRef: v1alpha1.LocalObjectReference{Name: "Slack URL"}}
		}, "spec.notifications.secretRef.name: Invalid value: \"Slack URL\": spec.notifications.secretRef.name in body should match"},
		{"rollback level out of range", func(m *v1alpha1.MastodonMigration) { m.Spec.RollbackLevel = 4 },
			"spec.rollbackLevel: Invalid value: 4: spec.rollbackLevel in body should be less than or equal to 3"},
		{"level 3 without confirmation", func(m *v1alpha1.MastodonMigration) {
			m.Spec.RollbackLevel = 3
			m.Spec.Rollback.Database.CloudSQL = &v1alpha1.CloudSQLInstance{Project: "p", Instance: "mastodon-db"}
		}, "set spec.confirmDataLoss: true to confirm"},
		{"level 3 without a database backup", func(m *v1alpha1.MastodonMigration) {
			m.Spec.RollbackLevel = 3
			m.Spec.ConfirmDataLoss = true
		}, "set spec.rollback.database.cloudSQL"},
		{"error rate above 1", func(m *v1alpha1.MastodonMigration) { m.Spec.Analysis.Thresholds.Critical.ErrorRate = "1.5" },
			"must be a decimal fraction between 0 and 1"},
		{"error rate not a number", func(m *v1alpha1.MastodonMigration) { m.Spec.Analysis.Thresholds.High.ErrorRate = "ten percent" },
			"must be a decimal fraction between 0 and 1"},
		{"latency ratio below 1", func(m *v1alpha1.MastodonMigration) { m.Spec.Analysis.Thresholds.High.LatencyRatio = "0.5" },
			"latencyRatio must be a decimal of at least 1"},
		{"dead jobs ratio above 1", func(m *v1alpha1.MastodonMigration) { m.Spec.Analysis.Thresholds.High.DeadJobsRatio = "1%" },
			`spec.analysis.thresholds.high.deadJobsRatio: Invalid value: "1%": must be a decimal fraction between 0 and 1`},
		{"queue latency over a day", func(m *v1alpha1.MastodonMigration) {
			m.Spec.Analysis.Thresholds.High.QueueLatency = &metav1.Duration{Duration: 25 * time.Hour}
		}, "high.queueLatency must be a duration between 0s and 24h"},
		{"negative queue latency warning", func(m *v1alpha1.MastodonMigration) {
			m.Spec.Analysis.Thresholds.Warning.QueueLatency = &metav1.Duration{Duration: -time.Second}
		}, "warning.queueLatency must be a duration between 0s and 24h"},
		{"timeout too short", func(m *v1alpha1.MastodonMigration) { m.Spec.Release.Timeout = &metav1.Duration{Duration: 1e9} },
			"release.timeout must be between 30s and 2h"},
		{"window shorter than interval", func(m *v1alpha1.MastodonMigration) {
			m.Spec.Analysis.Interval = &metav1.Duration{Duration: 60e9}
			m.Spec.Analysis.Window = &metav1.Duration{Duration: 30e9}
		}, "analysis.window must be at least analysis.interval"},
		{"Ingress traffic without an Ingress", func(m *v1alpha1.MastodonMigration) {
			m.Spec.Traffic.Method = v1alpha1.TrafficIngress
			m.Spec.Source.Ingress = ""
		}, "traffic.method Ingress moves the backends of an Ingress: set spec.source.ingress"},
		{"release name too long for Helm", func(m *v1alpha1.MastodonMigration) {
			m.Spec.Release.Name = "a-release-name-that-is-far-too-long-for-helm-to-accept-it"
		}, "spec.release.name: Too long"},
		{"name too long for the snapshot labels", func(m *v1alpha1.MastodonMigration) {
			m.Name = "migration-of-the-mastodon-instance-of-example-social"
		}, "a MastodonMigration's name can be at most 45 characters"},
		{"max automatic level 3", func(m *v1alpha1.MastodonMigration) { m.Spec.Rollback.MaxAutomaticLevel = 3 },
			"spec.rollback.maxAutomaticLevel: Invalid value: 3"},
		{"an error rate query without the requests it is over", func(m *v1alpha1.MastodonMigration) {
			m.Spec.Analysis.Prometheus = &v1alpha1.PrometheusAnalysis{Address: "http://prometheus:9090",
				ErrorRateQuery: `sum(rate(http_requests_total{code=~"5.."}[$window])) / sum(rate(http_requests_total[$window]))`}
		}, "analysis.prometheus.errorRateQuery needs analysis.prometheus.requestsQuery too"},
		{"minRequests below 0", func(m *v1alpha1.MastodonMigration) { m.Spec.Analysis.MinRequests = ptr.To[int32](-1) },
			"spec.analysis.minRequests: Invalid value: -1"},
		{"an instance path that is no path", func(m *v1alpha1.MastodonMigration) {
			m.Spec.HealthChecks.InstancePath = "api/v2/instance"
		}, "spec.healthChecks.instancePath: Invalid value"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := migration(ns, "invalid")
			tc.mutate(m)
			if m.Name == "" {
				m.Name = "invalid"
			}
			err := k8sClient.Create(ctx, m)
			if !apierrors.IsInvalid(err) {
				t.Fatalf("want the API server to refuse the migration as invalid, got %v", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want the refusal to say %q, got: %v", tc.want, err)
			}
		})
	}
}

func TestAdmissionDefaultsFollowTheRollbackProcedure(t *testing.T) {
	ctx := context.Background()
	m := migration(newNamespace(t, ctx), "defaults")
	if err := k8sClient.Create(ctx, m); err != nil {
		t.Fatal(err)
	}
	s := m.Spec
	got := map[string]string{
		"strategy":                 string(s.Strategy),
		"release.name":             s.Release.Name,
		"release.chart.name":       s.Release.Chart.Name,
		"release.timeout":          s.Release.Timeout.Duration.String(),
		"traffic.method":           string(s.Traffic.Method),
		"analysis.interval":        s.Analysis.Interval.Duration.String(),
		"analysis.window":          s.Analysis.Window.Duration.String(),
		"critical.errorRate":       string(s.Analysis.Thresholds.Critical.ErrorRate),
		"high.errorRate":           string(s.Analysis.Thresholds.High.ErrorRate),
		"high.latencyRatio":        s.Analysis.Thresholds.High.LatencyRatio,
		"high.for":                 s.Analysis.Thresholds.High.For.Duration.String(),
		"medium.errorRate":         string(s.Analysis.Thresholds.Medium.ErrorRate),
		"medium.for":               s.Analysis.Thresholds.Medium.For.Duration.String(),
		"high.deadJobsRatio":       string(s.Analysis.Thresholds.High.DeadJobsRatio),
		"high.queueLatency":        s.Analysis.Thresholds.High.QueueLatency.Duration.String(),
		"high.queueLatencyFor":     s.Analysis.Thresholds.High.QueueLatencyFor.Duration.String(),
		"warning.queueLatency":     s.Analysis.Thresholds.Warning.QueueLatency.Duration.String(),
		"rollback.maxAutomatic":    strconv.Itoa(int(s.Rollback.MaxAutomaticLevel)),
		"rollback.automatic (set)": strconv.FormatBool(s.Rollback.Automatic != nil && *s.Rollback.Automatic),
		"analysis.minRequests":     strconv.Itoa(int(ptr.Deref(s.Analysis.MinRequests, -1))),
		"healthChecks":             strings.Join([]string{s.HealthChecks.WebHealthPath, s.HealthChecks.InstancePath, s.HealthChecks.StreamingHealthPath, s.HealthChecks.StreamingPath}, " "),
	}
	want := map[string]string{
		"strategy": "BlueGreen", "release.name": "mastodon-helm", "release.chart.name": "mastodon",
		"release.timeout": "10m0s", "traffic.method": "ServiceSelector", "analysis.interval": "30s",
		"analysis.window": "30m0s", "critical.errorRate": "0.5", "high.errorRate": "0.1", "high.latencyRatio": "3",
		"high.for": "15m0s", "medium.errorRate": "0.05", "medium.for": "30m0s", "rollback.maxAutomatic": "1",
		"rollback.automatic (set)": "true", "analysis.minRequests": "50",
		"high.deadJobsRatio": "0.01", "high.queueLatency": "2m0s", "high.queueLatencyFor": "10m0s", "warning.queueLatency": "30s",
		"healthChecks": "/health /api/v2/instance /api/v1/streaming/health /api/v1/streaming",
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("default of %s: got %q, want %q", k, got[k], w)
		}
	}
}

func TestAdmissionRefusesLoweringTheRollbackLevel(t *testing.T) {
	ctx := context.Background()
	m := migration(newNamespace(t, ctx), "escalate")
	m.Spec.RollbackLevel = 2
	if err := k8sClient.Create(ctx, m); err != nil {
		t.Fatal(err)
	}
	lowered := m.DeepCopy()
	lowered.Spec.RollbackLevel = 1
	err := k8sClient.Patch(ctx, lowered, client.MergeFrom(m))
	if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "spec.rollbackLevel cannot be lowered once set") {
		t.Fatalf("want lowering 2 -> 1 refused, got %v", err)
	}
	cleared := m.DeepCopy()
	cleared.Spec.RollbackLevel = 0
	err = k8sClient.Patch(ctx, cleared, client.MergeFrom(m))
	if !apierrors.IsInvalid(err) {
		t.Fatalf("want clearing the rollback level refused, got %v", err)
	}
}

func TestAdmissionRefusesInvalidRollbacks(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t, ctx)
	rb := func(level int32, confirm bool) *v1alpha1.MastodonRollback {
		return &v1alpha1.MastodonRollback{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, GenerateName: "rb-"},
			Spec: v1alpha1.MastodonRollbackSpec{MigrationRef: v1alpha1.LocalObjectReference{Name: "to-helm"},
				Level: level, ConfirmDataLoss: confirm},
		}
	}
	if err := k8sClient.Create(ctx, rb(3, false)); !apierrors.IsInvalid(err) ||
		!strings.Contains(err.Error(), "set confirmDataLoss: true to confirm") {
		t.Fatalf("want level 3 without confirmation refused, got %v", err)
	}
	if err := k8sClient.Create(ctx, rb(0, false)); !apierrors.IsInvalid(err) ||
		!strings.Contains(err.Error(), "spec.level: Invalid value: 0") {
		t.Fatalf("want level 0 refused, got %v", err)
	}
	noRef := rb(1, false)
	noRef.Spec.MigrationRef.Name = ""
	if err := k8sClient.Create(ctx, noRef); !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "spec.migrationRef.name") {
		t.Fatalf("want a rollback without a migration refused, got %v", err)
	}
	ok := rb(1, false)
	if err := k8sClient.Create(ctx, ok); err != nil {
		t.Fatal(err)
	}
	changed := ok.DeepCopy()
	changed.Spec.Level = 2
	if err := k8sClient.Patch(ctx, changed, client.MergeFrom(ok)); !apierrors.IsInvalid(err) ||
		!strings.Contains(err.Error(), "cannot be changed once created") {
		t.Fatalf("want a change of a rollback refused, got %v", err)
	}
}
