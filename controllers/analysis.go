package controllers

import (
	"context"
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
	"github.com/mastodon-operator/mastodon-operator/internal/analysis"
	"github.com/mastodon-operator/mastodon-operator/internal/analysis/cloudmonitoring"
	"github.com/mastodon-operator/mastodon-operator/internal/analysis/httpprobe"
	"github.com/mastodon-operator/mastodon-operator/internal/analysis/prometheus"
	"github.com/mastodon-operator/mastodon-operator/internal/analysis/sidekiq"
)

// Verdicts of the analysis, as in status.analysis.verdict.
const (
	VerdictPass = string(analysis.Pass)
	// VerdictUnhealthy is a new stack whose Deployments are not ready, whatever the metrics say.
	VerdictUnhealthy = "Unhealthy"
)

// ConditionMetricsAvailable says whether every metric provider of the analysis gives data.
const ConditionMetricsAvailable = "MetricsAvailable"

// metricProviders builds the providers the spec asks for. The HTTP probe is the default: when
// no provider is named and the operator reaches Services, it probes the source web Service's
// /health, which is the old stack before the switch and the release after it. The HTTP probe
// also asks the instance API on its host, which must report version (empty: not compared), the
// version of the stack that should take the traffic now. close releases the providers'
// connections.
func (r *MastodonMigrationReconciler) metricProviders(ctx context.Context, m *v1alpha1.MastodonMigration, version string) (_ []analysis.Provider, closeAll func(), err error) {
	spec := m.Spec.Analysis
	var providers []analysis.Provider
	var closers []func() error
	closeAll = func() {
		for _, c := range closers {
			_ = c()
		}
	}
	defer func() {
		if err != nil {
			closeAll()
		}
	}()
	hc := healthChecks(m)
	// probe is the HTTP probe of target, which also asks the instance API on base.
	probe := func(target, base string, requests int, timeout time.Duration) (*httpprobe.Probe, error) {
		token, err := r.secretValue(ctx, m.Namespace, hc.AccessTokenSecretRef)
		if err != nil {
			return nil, fmt.Errorf("spec.healthChecks.accessTokenSecretRef: %w", err)
		}
		return httpprobe.New(target, requests, timeout, nil).CheckInstance(base+hc.InstancePath, token, version), nil
	}
	if h := spec.HTTP; h != nil {
		u, err := url.Parse(h.URL)
		if err != nil {
			return nil, closeAll, fmt.Errorf("analysis.http.url: %w", err)
		}
		p, err := probe(h.URL, u.Scheme+"://"+u.Host, int(h.Requests), durationOr(h.Timeout, 5*time.Second))
		if err != nil {
			return nil, closeAll, err
		}
		providers = append(providers, p)
	}
	if p := spec.Prometheus; p != nil {
		prom, err := prometheus.New(prometheus.Config{Address: p.Address, ErrorRateQuery: p.ErrorRateQuery,
			LatencyQuery: p.LatencyQuery, RequestsQuery: p.RequestsQuery, Namespace: m.Namespace, Ingress: m.Spec.Source.Ingress})
		if err != nil {
			return nil, closeAll, fmt.Errorf("analysis.prometheus: %w", err)
		}
		providers = append(providers, prom)
	}
	if c := spec.CloudMonitoring; c != nil {
		project := c.ProjectID
		if project == "" && m.Spec.Rollback.Database.CloudSQL != nil {
			project = m.Spec.Rollback.Database.CloudSQL.Project
		}
		services, err := r.loadBalancedServices(ctx, m)
		if err != nil {
			return nil, closeAll, err
		}
		cm, err := cloudmonitoring.New(ctx, cloudmonitoring.Config{ProjectID: project, Namespace: m.Namespace,
			Services: services, Filter: c.Filter}, r.CloudMonitoring...)
		if err != nil {
			return nil, closeAll, fmt.Errorf("analysis.cloudMonitoring: %w", err)
		}
		closers = append(closers, cm.Close)
		providers = append(providers, cm)
	}
	if s := spec.Sidekiq; s != nil {
		password, err := r.secretValue(ctx, m.Namespace, s.PasswordSecretRef)
		if err != nil {
			return nil, closeAll, fmt.Errorf("analysis.sidekiq.passwordSecretRef: %w", err)
		}
		sk := sidekiq.New(sidekiq.Config{Address: s.Address, Password: password, DB: int(s.DB), Namespace: s.Namespace})
		closers = append(closers, sk.Close)
		providers = append(providers, sk)
	}
	if len(providers) == 0 && r.ServiceAddress != nil {
		base, err := r.defaultProbeBase(ctx, m)
		if err != nil {
			return nil, closeAll, err
		}
		if base != "" {
			p, err := probe(base+hc.WebHealthPath, base, httpprobe.DefaultRequests, httpprobe.DefaultTimeout)
			if err != nil {
				return nil, closeAll, err
			}
			providers = append(providers, p)
		}
	}
	return providers, closeAll, nil
}

// defaultProbeBase is the address of the source web Service, the one the Ingress sends "/" to.
func (r *MastodonMigrationReconciler) defaultProbeBase(ctx context.Context, m *v1alpha1.MastodonMigration) (string, error) {
	src, err := r.sourceStack(ctx, m)
	if err != nil {
		return "", err
	}
	services, err := r.sourceServices(ctx, m, src)
	if err != nil {
		return "", err
	}
	for _, s := range services {
		if s.Name == src.web.Name && len(s.Spec.Ports) > 0 {
			return "http://" + r.ServiceAddress(s.Namespace, s.Name, s.Spec.Ports[0].Port), nil
		}
	}
	return "", nil
}

// loadBalancedServices names the Services a load balancer may send the migration's traffic to:
// the source Services, and the release's.
func (r *MastodonMigrationReconciler) loadBalancedServices(ctx context.Context, m *v1alpha1.MastodonMigration) ([]string, error) {
	src, err := r.sourceStack(ctx, m)
	if err != nil {
		return nil, err
	}
	services, err := r.sourceServices(ctx, m, src)
	if err != nil {
		return nil, err
	}
	// The Ingress method sends the load balancer to the release's Services instead.
	var release corev1.ServiceList
	if err := r.List(ctx, &release, client.InNamespace(m.Namespace),
		client.MatchingLabels{labelChartInstance: m.Spec.Release.Name}); err != nil {
		return nil, err
	}
	names := make([]string, 0, len(services)+len(release.Items))
	for _, s := range append(services, release.Items...) {
		names = append(names, s.Name)
	}
	return names, nil
}

// secretValue reads one key of a Secret. The value goes to the provider and nowhere else.
func (r *MastodonMigrationReconciler) secretValue(ctx context.Context, namespace string, ref *corev1.SecretKeySelector) (string, error) {
	if ref == nil {
		return "", nil
	}
	var s corev1.Secret
	if err := r.Get(ctx, client.ObjectKey{Namespace: namespace, Name: ref.Name}, &s); err != nil {
		return "", err
	}
	v, ok := s.Data[ref.Key]
	if !ok {
		return "", fmt.Errorf("Secret %s has no key %s", ref.Name, ref.Key)
	}
	return string(v), nil
}

// measureOnce runs every provider once over the analysis interval and applies the thresholds
// to what they saw, against the baseline and the state of the previous measurement.
func measureOnce(ctx context.Context, m *v1alpha1.MastodonMigration, providers []analysis.Provider, now time.Time) analysis.Result {
	var measured []analysis.Measurement
	failed := map[string]error{}
	for _, p := range providers {
		got, err := p.Measure(ctx, analysisInterval(m))
		if err != nil {
			failed[p.Name()] = err
			continue
		}
		got.Provider = p.Name()
		measured = append(measured, got)
	}
	return analysis.Evaluate(thresholds(m), baselineOf(m), measured, failed, stateOf(m), now)
}

// thresholds are the spec's thresholds; admission has checked that they parse.
func thresholds(m *v1alpha1.MastodonMigration) analysis.Thresholds {
	th := analysis.DefaultThresholds()
	t := m.Spec.Analysis.Thresholds
	parse := func(s string, into *float64) {
		if v, err := strconv.ParseFloat(s, 64); err == nil && s != "" {
			*into = v
		}
	}
	parse(string(t.Critical.ErrorRate), &th.CriticalErrorRate)
	parse(string(t.High.ErrorRate), &th.HighErrorRate)
	parse(t.High.LatencyRatio, &th.HighLatencyRatio)
	parse(string(t.Medium.ErrorRate), &th.MediumErrorRate)
	parse(string(t.High.DeadJobsRatio), &th.HighDeadJobsRatio)
	th.HighQueueLatency = durationOr(t.High.QueueLatency, th.HighQueueLatency)
	th.HighQueueLatencyFor = durationOr(t.High.QueueLatencyFor, th.HighQueueLatencyFor)
	th.WarningQueueLatency = durationOr(t.Warning.QueueLatency, th.WarningQueueLatency)
	if t.High.JobsNotProcessed != nil {
		th.HighJobsNotProcessed = *t.High.JobsNotProcessed
	}
	th.HighFor = durationOr(t.High.For, th.HighFor)
	th.MediumFor = durationOr(t.Medium.For, th.MediumFor)
	if n := m.Spec.Analysis.MinRequests; n != nil {
		th.MinRequests = float64(*n)
	}
	return th
}

func durationOr(d *metav1.Duration, def time.Duration) time.Duration {
	if d == nil {
		return def
	}
	return d.Duration
}

// baselineOf reads the baseline back from status.
func baselineOf(m *v1alpha1.MastodonMigration) analysis.Baseline {
	var b analysis.Baseline
	if a := m.Status.Analysis; a != nil && a.Baseline != nil {
		b.ErrorRate = parsePercent(a.Baseline.ErrorRate)
		if d, err := time.ParseDuration(a.Baseline.Latency); err == nil {
			b.Latency = &d
		}
		if j := a.Baseline.Jobs; j != nil {
			b.Jobs = &analysis.Jobs{Processed: j.Processed, Failed: j.Failed, Retry: j.Retry, Dead: j.Dead}
		}
	}
	return b
}

// stateOf reads the state of the previous measurement back from status, so that a breach's
// run survives a restart of the operator.
func stateOf(m *v1alpha1.MastodonMigration) analysis.State {
	var s analysis.State
	a := m.Status.Analysis
	if a == nil {
		return s
	}
	if a.LastMeasuredAt != nil {
		s.MeasuredAt = a.LastMeasuredAt.Time
	}
	s.Processed = a.JobsProcessed
	for _, b := range a.Breaches {
		s.Breaches = append(s.Breaches, analysis.Breach{Severity: analysis.Severity(b.Severity), Metric: b.Metric, Since: b.Since.Time})
	}
	return s
}

// recordAnalysis writes a measurement into status.analysis, keeping the baseline, and says
// whether the verdict changed.
func recordAnalysis(m *v1alpha1.MastodonMigration, res analysis.Result, providers []analysis.Provider, now metav1.Time) (verdictChanged bool) {
	prev := m.Status.Analysis
	a := &v1alpha1.AnalysisStatus{Verdict: string(res.Verdict), LastMeasuredAt: &now, JobsProcessed: res.State.Processed}
	if prev != nil {
		a.Baseline, a.UnhealthySince = prev.Baseline, prev.UnhealthySince
		verdictChanged = prev.Verdict != a.Verdict
	} else {
		verdictChanged = true
	}
	a.ErrorRate = formatPercent(res.ErrorRate)
	a.Latency = formatDuration(res.Latency)
	a.QueueLatency = formatDuration(res.QueueLatency)
	a.JobsSinceBaseline = sidekiqJobs(res.JobsSinceBaseline)
	a.DeadJobsRatio = formatPercent(res.DeadRatio)
	a.Warnings = res.Warnings
	if res.LatencyRatio != nil {
		a.LatencyRatio = strconv.FormatFloat(*res.LatencyRatio, 'f', 2, 64)
	}
	a.Breaches = breachStatus(res.Breaches)
	for _, p := range providers {
		ps := v1alpha1.ProviderStatus{Name: p.Name(), Available: true, Since: &now, Message: providerMessage(res, p.Name())}
		if err, down := res.Missing[p.Name()]; down {
			ps.Available, ps.Message = false, err.Error()
		}
		if prev != nil {
			for _, old := range prev.Providers {
				if old.Name == ps.Name && old.Available == ps.Available && old.Since != nil {
					ps.Since = old.Since
				}
			}
		}
		a.Providers = append(a.Providers, ps)
	}
	m.Status.Analysis = a
	return verdictChanged
}

func sidekiqJobs(j *analysis.Jobs) *v1alpha1.SidekiqJobs {
	if j == nil {
		return nil
	}
	return &v1alpha1.SidekiqJobs{Processed: j.Processed, Failed: j.Failed, Retry: j.Retry, Dead: j.Dead}
}

// providerMessage says what a provider that gave data measured: whether there were enough
// requests to judge, and its last failed request.
func providerMessage(res analysis.Result, provider string) string {
	msg := "measured"
	if n, few := res.TooFewRequests[provider]; few {
		msg = fmt.Sprintf("too few requests to judge: %.0f, fewer than analysis.minRequests (%.0f)", n, res.MinRequests)
	}
	if f := res.Failures[provider]; f != "" {
		msg += "; last failure: " + f
	}
	return msg
}

func breachStatus(breaches []analysis.Breach) []v1alpha1.Breach {
	out := make([]v1alpha1.Breach, len(breaches))
	for i, b := range breaches {
		out[i] = v1alpha1.Breach{Severity: string(b.Severity), Metric: b.Metric, Since: metav1.NewTime(b.Since),
			Value: formatMetric(b.Metric, b.Value), Threshold: formatMetric(b.Metric, b.Threshold)}
		if b.For > 0 {
			out[i].For = b.For.String()
		}
		if b.NoData {
			out[i].Value = "no data"
		}
	}
	return out
}

// unavailableProviders describes the providers that gave no data, with since when.
func unavailableProviders(a *v1alpha1.AnalysisStatus) []string {
	var out []string
	if a != nil {
		for _, p := range a.Providers {
			if !p.Available {
				out = append(out, fmt.Sprintf("%s (since %s): %s", p.Name, p.Since.UTC().Format(time.TimeOnly), p.Message))
			}
		}
	}
	sort.Strings(out)
	return out
}

// setMetricsCondition records whether the metric providers give data, with an Event when that
// changes.
func (r *MastodonMigrationReconciler) setMetricsCondition(m *v1alpha1.MastodonMigration, providers int) {
	down := unavailableProviders(m.Status.Analysis)
	was := conditionTrue(m, ConditionMetricsAvailable)
	switch {
	case providers == 0:
		setCondition(&m.Status.Conditions, m.Generation, ConditionMetricsAvailable, false, "NoProvider",
			"no metric provider is configured or reachable: the new stack is judged by its readiness alone; set spec.analysis.http, prometheus, cloudMonitoring or sidekiq")
	case len(down) > 0:
		msg := "no data from " + strings.Join(down, "; ") + ": the migration does not complete on missing data"
		setCondition(&m.Status.Conditions, m.Generation, ConditionMetricsAvailable, false, "ProviderUnavailable", msg)
		if was {
			r.Recorder.Eventf(m, nil, corev1.EventTypeWarning, "MetricsUnavailable", "Analyze", "%s", eventNote(msg))
		}
	default:
		setCondition(&m.Status.Conditions, m.Generation, ConditionMetricsAvailable, true, "Measured",
			fmt.Sprintf("%d metric provider(s) give data", providers))
	}
}

func conditionTrue(m *v1alpha1.MastodonMigration, typ string) bool {
	for _, c := range m.Status.Conditions {
		if c.Type == typ {
			return c.Status == metav1.ConditionTrue
		}
	}
	return true
}

func formatPercent(f *float64) string {
	if f == nil {
		return ""
	}
	return strconv.FormatFloat(*f*100, 'f', 2, 64) + "%"
}

func parsePercent(s string) *float64 {
	v, err := strconv.ParseFloat(strings.TrimSuffix(s, "%"), 64)
	if err != nil || s == "" {
		return nil
	}
	v /= 100
	return &v
}

func formatDuration(d *time.Duration) string {
	if d == nil {
		return ""
	}
	if *d < time.Millisecond {
		return d.Round(time.Microsecond).String()
	}
	return d.Round(time.Millisecond).String()
}

func formatMetric(metric string, v float64) string {
	switch metric {
	case analysis.MetricErrorRate, analysis.MetricDeadJobsRatio:
		return formatPercent(&v)
	case analysis.MetricQueueLatency:
		return (time.Duration(v * float64(time.Second))).Round(time.Second).String()
	case analysis.MetricLatencyRatio:
		return strconv.FormatFloat(v, 'f', 2, 64) + "x"
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}
