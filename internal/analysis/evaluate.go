package analysis

import (
	"cmp"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Thresholds are the rollback procedure's criteria.
type Thresholds struct {
	// CriticalErrorRate acts at once when the error rate is above it.
	CriticalErrorRate float64
	// HighErrorRate (above), HighLatencyRatio (latency over the baseline's, at or above; 0 turns
	// it off) and HighJobsNotProcessed act once they have held for HighFor.
	HighErrorRate    float64
	HighLatencyRatio float64
	// LatencyFloor is the latency at or below which no ratio to the baseline is a breach: 4 ms
	// against a 1 ms baseline is 4x, and nothing a user notices (a health path's latency is
	// mostly jitter).
	LatencyFloor         time.Duration
	HighJobsNotProcessed bool
	HighFor              time.Duration
	// MediumErrorRate (above) acts once it has held for MediumFor.
	MediumErrorRate float64
	MediumFor       time.Duration
	// MinRequests is the fewest requests a measurement's error rate and latency must be over to
	// be judged, unless the provider sent them itself (OwnRequests).
	MinRequests float64
	// HighDeadJobsRatio is the Sidekiq jobs that died since the baseline over those processed
	// since (above; 0 turns it off); it acts once it has held for HighFor.
	HighDeadJobsRatio float64
	// HighQueueLatency is the age of the oldest waiting Sidekiq job (above; 0 turns it off) that
	// acts once it has held for HighQueueLatencyFor.
	HighQueueLatency    time.Duration
	HighQueueLatencyFor time.Duration
	// WarningQueueLatency (above; 0 turns it off) is shown as a warning, never a breach.
	WarningQueueLatency time.Duration
}

// DefaultMinRequests is the fewest requests a rate is judged over by default: low traffic makes
// error rates meaningless (Cloud Run's release manager judges over at least 100).
const DefaultMinRequests = 50

// DefaultLatencyFloor is the default Thresholds.LatencyFloor.
const DefaultLatencyFloor = 100 * time.Millisecond

// DefaultThresholds are the rollback procedure's own: 5xx above 50% at once; above 10%, latency
// 3x the baseline (and above DefaultLatencyFloor), jobs not processed or more than 1% of the processed jobs dead for 15 minutes;
// above 5% for 30 minutes; each rate over at least DefaultMinRequests requests. The queue
// latency's are a production instance's alerts: a warning above 30 s, high above 120 s for 10
// minutes.
func DefaultThresholds() Thresholds {
	return Thresholds{CriticalErrorRate: 0.5, HighErrorRate: 0.1, HighLatencyRatio: 3, LatencyFloor: DefaultLatencyFloor, HighJobsNotProcessed: true,
		HighFor: 15 * time.Minute, MediumErrorRate: 0.05, MediumFor: 30 * time.Minute, MinRequests: DefaultMinRequests,
		HighDeadJobsRatio: 0.01, HighQueueLatency: 120 * time.Second, HighQueueLatencyFor: 10 * time.Minute,
		WarningQueueLatency: 30 * time.Second}
}

// rule is the threshold and the hold time of one band of one metric.
func (th Thresholds) rule(sev Severity, metric string) (threshold float64, hold time.Duration) {
	switch metric {
	case MetricErrorRate:
		switch sev {
		case Critical:
			return th.CriticalErrorRate, 0
		case Medium:
			return th.MediumErrorRate, th.MediumFor
		}
		return th.HighErrorRate, th.HighFor
	case MetricLatencyRatio:
		return th.HighLatencyRatio, th.HighFor
	case MetricDeadJobsRatio:
		return th.HighDeadJobsRatio, th.HighFor
	case MetricQueueLatency:
		return th.HighQueueLatency.Seconds(), th.HighQueueLatencyFor
	}
	return 0, th.HighFor
}

// Severity is the band a breach falls in.
type Severity string

// The severities, from the most severe.
const (
	Critical Severity = "Critical"
	High     Severity = "High"
	Medium   Severity = "Medium"
)

var rank = map[Severity]int{Critical: 0, High: 1, Medium: 2}

// The metrics a breach is about.
const (
	MetricErrorRate        = "errorRate"
	MetricLatencyRatio     = "latencyRatio"
	MetricJobsNotProcessed = "jobsNotProcessed"
	// MetricDeadJobsRatio is the jobs that died since the baseline over those processed since.
	MetricDeadJobsRatio = "deadJobsRatio"
	// MetricQueueLatency is the age of the oldest waiting Sidekiq job, in seconds.
	MetricQueueLatency = "queueLatency"
)

// Breach is a threshold crossed, and since when it has been crossed without a break.
type Breach struct {
	Severity Severity
	Metric   string
	// Value is the metric when last measured: a rate, a ratio, the number of jobs waiting, or
	// seconds.
	Value, Threshold float64
	Since            time.Time
	// For is how long it must hold before it acts.
	For time.Duration
	// NoData is a breach carried over from the previous state because its metric was not
	// measured this time: its run goes on, but it does not act until data confirms it.
	NoData bool
}

// Held reports whether the breach has held long enough to act at now.
func (b Breach) Held(now time.Time) bool { return now.Sub(b.Since) >= b.For }

// Baseline is the old stack measured before the traffic moved. The latency is judged against
// it, and the Sidekiq counters count from it; the error rate thresholds are absolute, as in the
// rollback procedure.
type Baseline struct {
	ErrorRate *float64
	Latency   *time.Duration
	Jobs      *Jobs
}

// Jobs are Sidekiq's counters (stat:processed, stat:failed) and the sizes of its retry and dead
// sets: at a moment, or their growth since the baseline.
type Jobs struct {
	Processed, Failed, Retry, Dead int64
}

// growth is j since base. A counter below its baseline was reset (Redis flushed or restarted
// without persistence) and counts from 0; a set smaller than at the baseline was emptied by
// hand and counts as no growth.
func (j Jobs) growth(base Jobs) Jobs {
	counter := func(now, then int64) int64 {
		if now < then {
			return now
		}
		return now - then
	}
	return Jobs{Processed: counter(j.Processed, base.Processed), Failed: counter(j.Failed, base.Failed),
		Retry: max(0, j.Retry-base.Retry), Dead: max(0, j.Dead-base.Dead)}
}

// DeadRatio is the dead jobs over the processed ones; a job counts as processed when it dies,
// so the ratio is at most 1 even when the counters disagree. Nil when nothing was processed.
func (j Jobs) DeadRatio() *float64 {
	if j.Processed == 0 && j.Dead == 0 {
		return nil
	}
	r := float64(j.Dead) / float64(max(j.Processed, j.Dead))
	return &r
}

// State is what Evaluate needs from the previous evaluation; the caller keeps it (in status),
// so that a breach's run survives a restart of the caller.
type State struct {
	// Breaches are the previous result's; only Severity, Metric and Since are read.
	Breaches []Breach
	// Processed is Sidekiq's processed counter when last measured.
	Processed *int64
	// MeasuredAt is when the state was computed. Evaluate does not read it.
	MeasuredAt time.Time
}

// Verdict is the outcome of one evaluation.
type Verdict string

// The verdicts.
const (
	// Pass: data, and no breach.
	Pass Verdict = "Pass"
	// Inconclusive: no provider measured anything, or a provider's rate was over fewer requests
	// than Thresholds.MinRequests, and nothing breaches. Never a pass, never a breach by itself.
	Inconclusive Verdict = "Inconclusive"
	// Breaching: a breach is on record but none has held long enough to act.
	Breaching Verdict = "Breaching"
	// Failed: a breach calls for a rollback.
	Failed Verdict = "Failed"
)

// Result is one evaluation.
type Result struct {
	Verdict Verdict
	// The worst values across the providers that measured them; nil when none did.
	ErrorRate    *float64
	Latency      *time.Duration
	LatencyRatio *float64
	QueueLatency *time.Duration
	// Jobs are Sidekiq's counters and sets measured now, and JobsSinceBaseline their growth
	// since the baseline (nil without a baseline of them); DeadRatio is its dead over processed.
	Jobs              *Jobs
	JobsSinceBaseline *Jobs
	DeadRatio         *float64
	// Warnings are thresholds crossed that are shown, never acted on (the queue latency's
	// warning).
	Warnings []string
	// Breaches are the thresholds crossed now, and those whose metric was not measured this
	// time (NoData), most severe first.
	Breaches []Breach
	// Acting is the breach that calls for a rollback: the most severe that has held for its For.
	Acting *Breach
	// Missing are the providers that gave no data, and why. A Pass can come with Missing: the
	// other providers measured enough to pass, and the caller decides what a silent provider
	// means.
	Missing map[string]error
	// TooFewRequests are the providers whose error rate and latency were over fewer requests
	// than MinRequests (the threshold's), with how many: not judged, and the verdict is no Pass.
	TooFewRequests map[string]float64
	MinRequests    float64
	// Failures are the providers' last failed requests (Measurement.Failure), by provider.
	Failures map[string]string
	// State is what to pass to the next evaluation.
	State State
}

// Evaluate applies th to the providers' measurements (failed are the providers that gave no
// data, and why). Values are combined across providers by taking the worst. A breach keeps the
// Since of the same severity and metric in prev, so that a run of breaching measurements acts
// once it has held for its For, across calls and restarts of the caller; a rate above a band is
// above the lower bands too, so their runs go on if it drops. A breach whose metric is measured
// and no longer crossed is dropped. A breach whose metric is not measured this time is kept with
// its Since, but does not act: a gap in the data neither clears a breach nor confirms it. A
// measurement of traffic over fewer requests than th.MinRequests is such a gap, and keeps the
// verdict from a Pass. When nothing at all is measured the verdict is Inconclusive.
func Evaluate(th Thresholds, base Baseline, measured []Measurement, failed map[string]error, prev State, now time.Time) Result {
	res := Result{Missing: failed, MinRequests: th.MinRequests, State: State{Processed: prev.Processed, MeasuredAt: now}}
	var enqueued, processed *int64
	for _, m := range measured {
		if m.Failure != "" {
			res.Failures = setIn(res.Failures, m.Provider, m.Failure)
		}
		traffic := m.ErrorRate != nil || m.Latency != nil
		if traffic && !m.OwnRequests && m.Requests < th.MinRequests {
			res.TooFewRequests = setIn(res.TooFewRequests, m.Provider, m.Requests)
		} else {
			res.ErrorRate = worst(res.ErrorRate, m.ErrorRate)
			res.Latency = worst(res.Latency, m.Latency)
		}
		res.QueueLatency = worst(res.QueueLatency, m.QueueLatency)
		enqueued = worst(enqueued, m.Enqueued)
		if m.Processed != nil {
			processed = m.Processed
		}
		if m.Processed != nil && m.Failed != nil && m.Retry != nil && m.Dead != nil {
			res.Jobs = &Jobs{Processed: *m.Processed, Failed: *m.Failed, Retry: *m.Retry, Dead: *m.Dead}
		}
	}
	if processed != nil {
		res.State.Processed = processed
	}
	if res.Jobs != nil && base.Jobs != nil {
		g := res.Jobs.growth(*base.Jobs)
		res.JobsSinceBaseline, res.DeadRatio = &g, g.DeadRatio()
	}
	if q := res.QueueLatency; q != nil && th.WarningQueueLatency > 0 && *q > th.WarningQueueLatency {
		res.Warnings = append(res.Warnings, fmt.Sprintf("oldest Sidekiq job waiting %s > %s (warning; high above %s for %s)",
			short(q.Round(time.Second)), short(th.WarningQueueLatency), short(th.HighQueueLatency), short(th.HighQueueLatencyFor)))
	}
	if res.Latency != nil && base.Latency != nil && *base.Latency > 0 {
		r := float64(*res.Latency) / float64(*base.Latency)
		res.LatencyRatio = &r
	}
	conclusive := res.ErrorRate != nil || res.Latency != nil || res.QueueLatency != nil || enqueued != nil || processed != nil
	judged := map[string]bool{
		MetricErrorRate:     res.ErrorRate != nil,
		MetricLatencyRatio:  res.LatencyRatio != nil,
		MetricQueueLatency:  res.QueueLatency != nil,
		MetricDeadJobsRatio: res.JobsSinceBaseline != nil,
		// Whether jobs move takes two counters: the first measurement cannot tell.
		MetricJobsNotProcessed: enqueued != nil && processed != nil && prev.Processed != nil,
	}

	var breaches []Breach
	cross := func(sev Severity, metric string, value float64) {
		threshold, hold := th.rule(sev, metric)
		breaches = append(breaches, Breach{Severity: sev, Metric: metric, Value: value, Threshold: threshold, Since: now, For: hold})
	}
	if e := res.ErrorRate; e != nil {
		if *e > th.CriticalErrorRate {
			cross(Critical, MetricErrorRate, *e)
		}
		if *e > th.HighErrorRate {
			cross(High, MetricErrorRate, *e)
		}
		if *e > th.MediumErrorRate {
			cross(Medium, MetricErrorRate, *e)
		}
	}
	if r := res.LatencyRatio; r != nil && th.HighLatencyRatio > 0 && *r >= th.HighLatencyRatio && *res.Latency > th.LatencyFloor {
		cross(High, MetricLatencyRatio, *r)
	}
	if th.HighJobsNotProcessed && judged[MetricJobsNotProcessed] && *enqueued > 0 && *processed == *prev.Processed {
		cross(High, MetricJobsNotProcessed, float64(*enqueued))
	}
	if r := res.DeadRatio; r != nil && th.HighDeadJobsRatio > 0 && *r > th.HighDeadJobsRatio {
		cross(High, MetricDeadJobsRatio, *r)
	}
	if q := res.QueueLatency; q != nil && th.HighQueueLatency > 0 && *q > th.HighQueueLatency {
		cross(High, MetricQueueLatency, q.Seconds())
	}
	for i, b := range breaches {
		for _, p := range prev.Breaches {
			if p.Severity == b.Severity && p.Metric == b.Metric && !p.Since.IsZero() && p.Since.Before(now) {
				breaches[i].Since = p.Since
			}
		}
	}
	for _, p := range prev.Breaches {
		if !judged[p.Metric] {
			p.Threshold, p.For = th.rule(p.Severity, p.Metric)
			p.NoData = true
			breaches = append(breaches, p)
		}
	}
	sort.SliceStable(breaches, func(i, j int) bool { return rank[breaches[i].Severity] < rank[breaches[j].Severity] })
	res.Breaches, res.State.Breaches = breaches, breaches

	for i, b := range breaches {
		if !b.NoData && b.Held(now) {
			res.Acting = &breaches[i]
			res.Verdict = Failed
			return res
		}
	}
	switch {
	case !conclusive:
		res.Verdict = Inconclusive
	case len(breaches) > 0:
		res.Verdict = Breaching
	case len(res.TooFewRequests) > 0:
		res.Verdict = Inconclusive
	default:
		res.Verdict = Pass
	}
	return res
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func setIn[V any](m map[string]V, k string, v V) map[string]V {
	if m == nil {
		m = map[string]V{}
	}
	m[k] = v
	return m
}

// worst is the higher of two optional values.
func worst[T cmp.Ordered](a, b *T) *T {
	if a == nil || (b != nil && *b > *a) {
		return b
	}
	return a
}

// Describe sums up a result in one line, for Events and rollback reasons: the acting breach
// first, then the most severe breach of each other metric, or the values when nothing breaches,
// then the providers that gave no data.
func Describe(r Result) string {
	var parts []string
	described := map[string]bool{}
	if r.Acting != nil {
		parts = append(parts, describeBreach(*r.Acting, r.State.MeasuredAt))
		described[r.Acting.Metric] = true
	}
	for _, b := range r.Breaches {
		if !described[b.Metric] {
			parts = append(parts, describeBreach(b, time.Time{}))
			described[b.Metric] = true
		}
	}
	if len(parts) == 0 && (r.Verdict != Inconclusive || r.ErrorRate != nil || r.Latency != nil) {
		parts = append(parts, describeValues(r))
	}
	parts = append(parts, r.Warnings...)
	if len(r.TooFewRequests) > 0 {
		var few []string
		for _, n := range sortedKeys(r.TooFewRequests) {
			few = append(few, fmt.Sprintf("%s counted %.0f", n, r.TooFewRequests[n]))
		}
		parts = append(parts, fmt.Sprintf("too few requests to judge (fewer than %s): %s", number(r.MinRequests), strings.Join(few, ", ")))
	}
	for _, n := range sortedKeys(r.Failures) {
		parts = append(parts, n+" last failure: "+r.Failures[n])
	}
	if len(r.Missing) > 0 {
		names := make([]string, 0, len(r.Missing))
		for n := range r.Missing {
			names = append(names, n)
		}
		sort.Strings(names)
		for i, n := range names {
			names[i] = n + ": " + r.Missing[n].Error()
		}
		parts = append(parts, "no data: "+strings.Join(names, "; "))
	} else if r.Verdict == Inconclusive && len(r.TooFewRequests) == 0 {
		parts = append(parts, "no data: nothing was measured (no requests?)")
	}
	return strings.Join(parts, "; ")
}

func describeValues(r Result) string {
	var values []string
	if r.ErrorRate != nil {
		values = append(values, fmt.Sprintf("error rate %.1f%%", *r.ErrorRate*100))
	}
	if r.Latency != nil {
		l := "latency " + r.Latency.Round(time.Millisecond).String()
		if r.LatencyRatio != nil {
			l += fmt.Sprintf(" (%.1fx baseline)", *r.LatencyRatio)
		}
		values = append(values, l)
	}
	if r.QueueLatency != nil {
		values = append(values, "oldest job waiting "+r.QueueLatency.Round(time.Second).String())
	}
	if j := r.JobsSinceBaseline; j != nil {
		values = append(values, fmt.Sprintf("since the baseline %d job(s) processed, %d failed, %d more to retry, %d dead",
			j.Processed, j.Failed, j.Retry, j.Dead))
	}
	if len(values) == 0 {
		return "no threshold crossed"
	}
	return strings.Join(values, ", ")
}

// describeBreach describes b; actingAt is when it acts, zero when it does not.
func describeBreach(b Breach, actingAt time.Time) string {
	var what string
	switch b.Metric {
	case MetricErrorRate:
		what = fmt.Sprintf("error rate %.1f%% > %s%%", b.Value*100, number(b.Threshold*100))
		if b.NoData {
			what = fmt.Sprintf("error rate > %s%%", number(b.Threshold*100))
		}
	case MetricLatencyRatio:
		what = fmt.Sprintf("latency %.1fx baseline >= %sx", b.Value, number(b.Threshold))
		if b.NoData {
			what = fmt.Sprintf("latency >= %sx baseline", number(b.Threshold))
		}
	case MetricDeadJobsRatio:
		what = fmt.Sprintf("%.1f%% of the Sidekiq jobs processed since the baseline dead > %s%%", b.Value*100, number(b.Threshold*100))
		if b.NoData {
			what = fmt.Sprintf("Sidekiq dead jobs > %s%% of processed", number(b.Threshold*100))
		}
	case MetricQueueLatency:
		what = fmt.Sprintf("oldest Sidekiq job waiting %s > %s", short(seconds(b.Value)), short(seconds(b.Threshold)))
		if b.NoData {
			what = fmt.Sprintf("oldest Sidekiq job waiting > %s", short(seconds(b.Threshold)))
		}
	default:
		what = fmt.Sprintf("%.0f Sidekiq job(s) waiting, none processed", b.Value)
		if b.NoData {
			what = "Sidekiq jobs not processed"
		}
	}
	if b.For > 0 {
		what += " since " + b.Since.UTC().Format(time.TimeOnly)
	}
	sev := strings.ToLower(string(b.Severity))
	switch {
	case !actingAt.IsZero() && b.For > 0:
		return fmt.Sprintf("%s (%s, held %s, acting now)", what, sev, short(actingAt.Sub(b.Since).Round(time.Second)))
	case !actingAt.IsZero():
		return fmt.Sprintf("%s (%s, acting now)", what, sev)
	case b.NoData:
		return fmt.Sprintf("%s (%s, not measured now: acts only once data confirms it)", what, sev)
	}
	return fmt.Sprintf("%s (%s, acts after %s)", what, sev, short(b.For))
}

func seconds(s float64) time.Duration {
	return time.Duration(s * float64(time.Second)).Round(time.Second)
}

// number prints a threshold without noise: 50, 2.5, 0.1.
func number(f float64) string {
	return strconv.FormatFloat(math.Round(f*1e4)/1e4, 'f', -1, 64)
}

// short prints 15m rather than 15m0s.
func short(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
