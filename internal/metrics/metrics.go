// Package metrics exports what the migrations' status says as Prometheus metrics, in
// controller-runtime's registry, which the manager's metrics endpoint serves. Record derives every
// value from a status the API server accepted, so a scrape never says other than kubectl get.
package metrics

import (
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
)

// The per-migration series: one per migration (and per class, threshold or running step where
// there are a few), deleted with the migration, so hundreds of migrations stay cheap. They are
// served from one snapshot per migration (migrations), so a scrape sees each migration's series as
// one Record left them: never two phases at once, nor none while Record replaces them, either of
// which would break the alerts' joins or reset their "for".
var (
	phaseDesc = prometheus.NewDesc("mastodon_migration_phase",
		"1 for the phase a MastodonMigration is in (status.phase).", []string{"namespace", "name", "phase"}, nil)
	stalledDesc = prometheus.NewDesc("mastodon_migration_stalled",
		"1 while a MastodonMigration waits on a person (condition Stalled=True: blocking findings, a failed step, RolledBack), else 0.",
		[]string{"namespace", "name"}, nil)
	// An alert tells a step that takes too long from its start, without the operator writing.
	runningStepDesc = prometheus.NewDesc("mastodon_migration_running_step_started_timestamp_seconds",
		"Unix time at which the Running step of a MastodonMigration first started; absent when none runs.",
		[]string{"namespace", "name", "step"}, nil)
	errorRateDesc = prometheus.NewDesc("mastodon_migration_analysis_error_rate",
		"Last measured fraction (0-1) of 5xx responses of the new stack (status.analysis.errorRate).", []string{"namespace", "name"}, nil)
	latencyRatioDesc = prometheus.NewDesc("mastodon_migration_analysis_latency_ratio",
		"Last measured latency of the new stack over the old stack's baseline (status.analysis.latencyRatio).",
		[]string{"namespace", "name"}, nil)
	queueLatencyDesc = prometheus.NewDesc("mastodon_migration_analysis_sidekiq_queue_latency_seconds",
		"Age of the oldest enqueued Sidekiq job at the last measurement (status.analysis.queueLatency).",
		[]string{"namespace", "name"}, nil)
	// The label is "threshold", as alerts carry a "severity" of their own.
	breachesDesc = prometheus.NewDesc("mastodon_migration_analysis_breaches",
		"Thresholds the new stack crosses now, by threshold: Critical, High, Medium (status.analysis.breaches).",
		[]string{"namespace", "name", "threshold"}, nil)
	findingsDesc = prometheus.NewDesc("mastodon_migration_preflight_findings",
		"Findings of a MastodonMigration's last preflight, by class: Blocks, Changes, Informational (status.preflightSummary).",
		[]string{"namespace", "name", "class"}, nil)
)

var (
	// StepDuration is how long each step took, from its first start to its end.
	StepDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "mastodon_migration_step_duration_seconds",
		Help:    "Time from a step's first start to its end (Succeeded or Failed), by step.",
		Buckets: []float64{0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600},
	}, []string{"step", "state"})
	// Rollbacks counts the rollbacks started, by level and trigger, of every migration.
	Rollbacks = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mastodon_migration_rollbacks_total",
		Help: "Rollbacks started (an escalation counts at its new level), by level and trigger (Automatic, RollbackLevel, MastodonRollback).",
	}, []string{"level", "trigger"})
	// Notifications counts what the notification queues did with each message, by receiver.
	Notifications = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mastodon_operator_notifications_total",
		Help: "Notifications by receiver (webhook, slack) and result: sent, failed (after its retries), dropped (queue full).",
	}, []string{"receiver", "result"})
)

func init() {
	ctrlmetrics.Registry.MustRegister(migrations, StepDuration, Rollbacks, Notifications)
	// The rollback series exist at 0 from the start: increase() misses the first rollback of a
	// series that appears at 1. Automatic rollbacks go to level 2 at most.
	for _, trigger := range []string{"Automatic", "RollbackLevel", "MastodonRollback"} {
		for level := 1; level <= 3; level++ {
			if trigger != "Automatic" || level < 3 {
				Rollbacks.WithLabelValues(strconv.Itoa(level), trigger)
			}
		}
	}
	for _, receiver := range []string{"webhook", "slack"} {
		for _, result := range []string{"sent", "failed", "dropped"} {
			Notifications.WithLabelValues(receiver, result)
		}
	}
}

// Record sets a migration's series from its status, as the API server just accepted it (or
// as it stands, unchanged). before is the status the reconcile started from; what changed since
// (a step that ended, a rollback that started) is counted once, and only when written is true:
// a write that failed is tried again by the next reconcile, which counts it then.
func Record(before *v1alpha1.MastodonMigrationStatus, m *v1alpha1.MastodonMigration, written bool) {
	ns, name := m.Namespace, m.Name
	st := &m.Status
	set := series{}
	if st.Phase != "" {
		set.add(phaseDesc, 1, ns, name, string(st.Phase))
	}
	// Condition Stalled (controllers.ConditionStalled, which this package cannot import).
	set.add(stalledDesc, boolValue(meta.IsStatusConditionTrue(st.Conditions, "Stalled")), ns, name)
	for _, s := range st.Steps {
		if s.State == v1alpha1.StepRunning && s.StartedAt != nil {
			set.add(runningStepDesc, float64(s.StartedAt.UnixMicro())/1e6, ns, name, s.Name)
		}
	}
	if a := st.Analysis; a != nil {
		set.addIf(errorRateDesc, percent(a.ErrorRate), ns, name)
		set.addIf(latencyRatioDesc, number(a.LatencyRatio), ns, name)
		set.addIf(queueLatencyDesc, seconds(a.QueueLatency), ns, name)
		counts := map[string]float64{}
		for _, b := range a.Breaches {
			counts[b.Severity]++
		}
		for severity, n := range counts {
			set.add(breachesDesc, n, ns, name, severity)
		}
	}
	if p := st.PreflightSummary; p != nil {
		set.add(findingsDesc, float64(p.Blocks), ns, name, string(v1alpha1.FindingBlocks))
		set.add(findingsDesc, float64(p.Changes), ns, name, string(v1alpha1.FindingChanges))
		set.add(findingsDesc, float64(p.Informational), ns, name, string(v1alpha1.FindingInformational))
	}
	migrations.replace(types.NamespacedName{Namespace: ns, Name: name}, set)
	if !written {
		return
	}
	for _, s := range st.Steps {
		if ended(s) && !sameEnd(before, s) {
			StepDuration.WithLabelValues(s.Name, string(s.State)).Observe(s.FinishedAt.Sub(s.StartedAt.Time).Seconds())
		}
	}
	if rb := st.Rollback; rb != nil && (before.Rollback == nil || before.Rollback.Level != rb.Level) {
		Rollbacks.WithLabelValues(strconv.Itoa(int(rb.Level)), rb.Trigger).Inc()
	}
}

// Forget deletes every series of a migration, once it is deleted.
func Forget(namespace, name string) {
	migrations.replace(types.NamespacedName{Namespace: namespace, Name: name}, nil)
}

// series are one migration's series, by description and label values.
type series map[seriesKey]float64

type seriesKey struct {
	desc   *prometheus.Desc
	labels string // the label values, joined by a NUL
}

func (s series) add(desc *prometheus.Desc, v float64, labels ...string) {
	s[seriesKey{desc, strings.Join(labels, "\x00")}] = v
}

func (s series) addIf(desc *prometheus.Desc, v *float64, labels ...string) {
	if v != nil {
		s.add(desc, *v, labels...)
	}
}

// migrations is the collector of the per-migration series: the last Record of each migration.
var migrations = &migrationCollector{by: map[types.NamespacedName]series{}}

type migrationCollector struct {
	mu sync.Mutex
	by map[types.NamespacedName]series
}

func (c *migrationCollector) replace(key types.NamespacedName, now series) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(now) == 0 {
		delete(c.by, key)
		return
	}
	c.by[key] = now
}

func (c *migrationCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{phaseDesc, stalledDesc, runningStepDesc, errorRateDesc, latencyRatioDesc,
		queueLatencyDesc, breachesDesc, findingsDesc} {
		ch <- d
	}
}

func (c *migrationCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, set := range c.by {
		for k, v := range set {
			ch <- prometheus.MustNewConstMetric(k.desc, prometheus.GaugeValue, v, strings.Split(k.labels, "\x00")...)
		}
	}
}

func ended(s v1alpha1.StepStatus) bool {
	return (s.State == v1alpha1.StepSucceeded || s.State == v1alpha1.StepFailed) && s.StartedAt != nil && s.FinishedAt != nil
}

// sameEnd reports whether before already recorded this end of the step.
func sameEnd(before *v1alpha1.MastodonMigrationStatus, s v1alpha1.StepStatus) bool {
	for _, b := range before.Steps {
		if b.Name == s.Name {
			return b.State == s.State && b.FinishedAt != nil && b.FinishedAt.Equal(s.FinishedAt)
		}
	}
	return false
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// percent reads status' "12.50%" as 0.125.
func percent(s string) *float64 {
	if !strings.HasSuffix(s, "%") {
		return nil
	}
	v := number(strings.TrimSuffix(s, "%"))
	if v != nil {
		*v /= 100
	}
	return v
}

func number(s string) *float64 {
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return nil
	}
	return &v
}

// seconds reads status' Go duration, such as "1m30s".
func seconds(s string) *float64 {
	d, err := time.ParseDuration(s)
	if err != nil {
		return nil
	}
	v := d.Seconds()
	return &v
}
