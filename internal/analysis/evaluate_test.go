package analysis

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// rate and latency are measurements of enough traffic to be judged.
func rate(v float64) []Measurement {
	return []Measurement{{Provider: "prometheus", ErrorRate: &v, Requests: 2 * DefaultMinRequests}}
}

func latency(d time.Duration) []Measurement {
	return []Measurement{{Provider: "prometheus", Latency: &d, Requests: 2 * DefaultMinRequests}}
}

// few is an error rate over n requests of the stack's traffic; probed one over n requests the
// HTTP probe sent itself.
func few(v, n float64) []Measurement {
	return []Measurement{{Provider: "prometheus", ErrorRate: &v, Requests: n}}
}

func probed(v, n float64) []Measurement {
	return []Measurement{{Provider: "http", ErrorRate: &v, Requests: n, OwnRequests: true}}
}

func jobs(enqueued, processed int64) []Measurement {
	return []Measurement{{Provider: "sidekiq", Enqueued: &enqueued, Processed: &processed}}
}

// sidekiq is what the Sidekiq provider measures: the oldest job's age, the counters and the sets.
func sidekiq(oldest time.Duration, processed, failed, retry, dead int64) []Measurement {
	enqueued := int64(40)
	return []Measurement{{Provider: "sidekiq", Enqueued: &enqueued, QueueLatency: &oldest, Processed: &processed,
		Failed: &failed, Retry: &retry, Dead: &dead}}
}

// growing is n rounds a minute apart in which Sidekiq processes perMinute jobs and deadPerMinute
// of them die, from the baseline's counters.
func growing(n int, perMinute, deadPerMinute int64) [][]Measurement {
	var out [][]Measurement
	for i := range int64(n) {
		out = append(out, sidekiq(time.Second, 1000+(i+1)*perMinute, 30+(i+1)*deadPerMinute, 5, 200+(i+1)*deadPerMinute))
	}
	return out
}

// behind is n rounds a minute apart in which the oldest job has waited oldest while Sidekiq
// processes jobs, none of which dies.
func behind(oldest time.Duration, n int) [][]Measurement {
	var out [][]Measurement
	for i := range int64(n) {
		out = append(out, sidekiq(oldest, 2000+i*100, 30, 5, 200))
	}
	return out
}

// down is a round where every provider failed; idle one where the probe answered but measured
// nothing (no requests).
var (
	down []Measurement
	idle = []Measurement{{Provider: "http"}}
)

func repeat(ms []Measurement, n int) [][]Measurement {
	out := make([][]Measurement, n)
	for i := range out {
		out[i] = ms
	}
	return out
}

func rounds(parts ...[][]Measurement) [][]Measurement { return slices.Concat(parts...) }

func one(ms []Measurement) [][]Measurement { return [][]Measurement{ms} }

var (
	t0        = time.Date(2026, 11, 25, 3, 0, 0, 0, time.UTC)
	base100ms = 100 * time.Millisecond
)

// run evaluates one round a minute, from t0, passing each result's state to the next, as the
// controller does through status; nil rounds are rounds where the http provider failed.
func run(th Thresholds, base Baseline, rs [][]Measurement) []Result {
	var state State
	var out []Result
	for i, ms := range rs {
		var failed map[string]error
		if ms == nil {
			failed = map[string]error{"http": errors.New("connection refused")}
		}
		r := Evaluate(th, base, ms, failed, state, t0.Add(time.Duration(i)*time.Minute))
		// Status keeps only the severity, the metric and the start of each run.
		state = State{Processed: r.State.Processed, MeasuredAt: r.State.MeasuredAt}
		for _, b := range r.State.Breaches {
			state.Breaches = append(state.Breaches, Breach{Severity: b.Severity, Metric: b.Metric, Since: b.Since})
		}
		out = append(out, r)
	}
	return out
}

// breachList writes breaches as Severity/metric@minute of Since, with a * when NoData.
func breachList(bs []Breach) string {
	var out []string
	for _, b := range bs {
		s := fmt.Sprintf("%s/%s@%dm", b.Severity, b.Metric, int(b.Since.Sub(t0).Minutes()))
		if b.NoData {
			s += "*"
		}
		out = append(out, s)
	}
	return strings.Join(out, " ")
}

func TestEvaluate(t *testing.T) {
	stalled := repeat(jobs(40, 1000), 17)
	var moving [][]Measurement
	for i := range 17 {
		moving = append(moving, jobs(40, int64(1000+i*50)))
	}
	noJobsRule := DefaultThresholds()
	noJobsRule.HighJobsNotProcessed = false
	jobsBase := Baseline{Jobs: &Jobs{Processed: 1000, Failed: 30, Retry: 5, Dead: 200}}
	strictDead := DefaultThresholds()
	strictDead.HighDeadJobsRatio = 0.001
	noDeadRule := DefaultThresholds()
	noDeadRule.HighDeadJobsRatio = 0

	for _, tc := range []struct {
		name     string
		th       Thresholds
		base     Baseline
		rounds   [][]Measurement
		verdict  Verdict
		acting   string // Severity/metric, empty when nothing acts
		breaches string
	}{
		{name: "no errors pass", rounds: one(rate(0)), verdict: Pass},
		{name: "at the medium rate is not above it", rounds: one(rate(0.05)), verdict: Pass},
		{name: "medium band", rounds: one(rate(0.06)), verdict: Breaching, breaches: "Medium/errorRate@0m"},
		{name: "at the high rate is only medium", rounds: one(rate(0.1)), verdict: Breaching, breaches: "Medium/errorRate@0m"},
		{name: "high band is medium too", rounds: one(rate(0.2)), verdict: Breaching,
			breaches: "High/errorRate@0m Medium/errorRate@0m"},
		{name: "at the critical rate is only high", rounds: one(rate(0.5)), verdict: Breaching,
			breaches: "High/errorRate@0m Medium/errorRate@0m"},
		{name: "critical acts at once", rounds: one(rate(0.62)), verdict: Failed, acting: "Critical/errorRate",
			breaches: "Critical/errorRate@0m High/errorRate@0m Medium/errorRate@0m"},

		{name: "high waits: 14 minutes held", rounds: repeat(rate(0.2), 15), verdict: Breaching,
			breaches: "High/errorRate@0m Medium/errorRate@0m"},
		{name: "high acts after 15 minutes", rounds: repeat(rate(0.2), 16), verdict: Failed, acting: "High/errorRate",
			breaches: "High/errorRate@0m Medium/errorRate@0m"},
		{name: "medium waits: 29 minutes held", rounds: repeat(rate(0.07), 30), verdict: Breaching, breaches: "Medium/errorRate@0m"},
		{name: "medium acts after 30 minutes", rounds: repeat(rate(0.07), 31), verdict: Failed, acting: "Medium/errorRate",
			breaches: "Medium/errorRate@0m"},
		{name: "hold times come from the thresholds", th: Thresholds{CriticalErrorRate: 0.5, HighErrorRate: 0.1, MediumErrorRate: 0.05,
			HighFor: 2 * time.Minute, MediumFor: time.Hour}, rounds: repeat(rate(0.2), 3), verdict: Failed, acting: "High/errorRate",
			breaches: "High/errorRate@0m Medium/errorRate@0m"},

		{name: "a pass ends the run", rounds: rounds(repeat(rate(0.2), 14), one(rate(0)), repeat(rate(0.2), 5)),
			verdict: Breaching, breaches: "High/errorRate@15m Medium/errorRate@15m"},
		{name: "dropping to medium ends the high run only", rounds: rounds(repeat(rate(0.2), 10), repeat(rate(0.07), 21)),
			verdict: Failed, acting: "Medium/errorRate", breaches: "Medium/errorRate@0m"},
		{name: "after a critical rate the high run goes on", rounds: rounds(one(rate(0.9)), repeat(rate(0.2), 15)),
			verdict: Failed, acting: "High/errorRate", breaches: "High/errorRate@0m Medium/errorRate@0m"},

		{name: "the worst provider's error rate counts", rounds: one(slices.Concat(rate(0), rate(0.7), idle)),
			verdict: Failed, acting: "Critical/errorRate", breaches: "Critical/errorRate@0m High/errorRate@0m Medium/errorRate@0m"},
		{name: "the worst provider's latency counts", base: Baseline{Latency: &base100ms},
			rounds: one(slices.Concat(latency(100*time.Millisecond), latency(300*time.Millisecond))), verdict: Breaching,
			breaches: "High/latencyRatio@0m"},

		{name: "latency 3x the baseline breaches", base: Baseline{Latency: &base100ms}, rounds: one(latency(300 * time.Millisecond)),
			verdict: Breaching, breaches: "High/latencyRatio@0m"},
		{name: "latency 2.9x the baseline passes", base: Baseline{Latency: &base100ms}, rounds: one(latency(290 * time.Millisecond)),
			verdict: Pass},
		{name: "latency acts after 15 minutes", base: Baseline{Latency: &base100ms}, rounds: repeat(latency(350*time.Millisecond), 16),
			verdict: Failed, acting: "High/latencyRatio", breaches: "High/latencyRatio@0m"},
		{name: "latency 4x a 1 ms baseline, still under the floor, passes", base: Baseline{Latency: new(time.Millisecond)},
			rounds: repeat(latency(4*time.Millisecond), 16), verdict: Pass},
		{name: "latency 3x a 40 ms baseline, just over the floor, breaches", base: Baseline{Latency: new(40 * time.Millisecond)},
			rounds: one(latency(120 * time.Millisecond)), verdict: Breaching, breaches: "High/latencyRatio@0m"},
		{name: "latency without a baseline is not judged", rounds: repeat(latency(10*time.Second), 16), verdict: Pass},
		{name: "latency against a zero baseline is not judged", base: Baseline{Latency: new(time.Duration)},
			rounds: one(latency(10 * time.Second)), verdict: Pass},

		{name: "the first counter cannot tell whether jobs move", rounds: one(jobs(40, 1000)), verdict: Pass},
		{name: "a still counter with jobs waiting breaches", rounds: repeat(jobs(40, 1000), 2), verdict: Breaching,
			breaches: "High/jobsNotProcessed@1m"},
		{name: "a still counter acts after 15 minutes", rounds: stalled, verdict: Failed, acting: "High/jobsNotProcessed",
			breaches: "High/jobsNotProcessed@1m"},
		{name: "a moving counter passes", rounds: moving, verdict: Pass},
		{name: "a still counter with empty queues passes", rounds: repeat(jobs(0, 1000), 17), verdict: Pass},
		{name: "a counter that moves once ends the run", rounds: rounds(repeat(jobs(40, 1000), 10), one(jobs(40, 1001)), repeat(jobs(40, 1001), 2)),
			verdict: Breaching, breaches: "High/jobsNotProcessed@11m"},
		{name: "the counter of a failed round is not forgotten", rounds: rounds(one(jobs(40, 1000)), one(down), one(jobs(40, 1000))),
			verdict: Breaching, breaches: "High/jobsNotProcessed@2m"},
		{name: "another provider does not hide the queue", rounds: repeat(slices.Concat(jobs(40, 1000), rate(0)), 2),
			verdict: Breaching, breaches: "High/jobsNotProcessed@1m"},
		{name: "the jobs rule can be turned off", th: noJobsRule, rounds: stalled, verdict: Pass},

		{name: "1% of the processed jobs dead is not above it", base: jobsBase, rounds: growing(16, 1000, 10), verdict: Pass},
		{name: "2% dead breaches", base: jobsBase, rounds: growing(1, 1000, 20), verdict: Breaching,
			breaches: "High/deadJobsRatio@0m"},
		{name: "2% dead acts after 15 minutes", base: jobsBase, rounds: growing(16, 1000, 20), verdict: Failed,
			acting: "High/deadJobsRatio", breaches: "High/deadJobsRatio@0m"},
		{name: "the dead jobs before the baseline do not count", base: Baseline{Jobs: &Jobs{Processed: 1000, Failed: 30, Retry: 5, Dead: 200}},
			rounds: one(sidekiq(time.Second, 1000, 30, 5, 200)), verdict: Pass},
		{name: "dead jobs without a baseline of the counters are not judged", rounds: growing(16, 1000, 500), verdict: Pass},
		{name: "jobs that die while none is processed breach", base: jobsBase, rounds: one(sidekiq(time.Second, 1000, 31, 5, 201)),
			verdict: Breaching, breaches: "High/deadJobsRatio@0m"},
		{name: "a dead set emptied by hand is no growth", base: jobsBase, rounds: growing(16, 1000, 0)[:1],
			verdict: Pass},
		{name: "a counter reset counts from 0", base: Baseline{Jobs: &Jobs{Processed: 1_000_000, Dead: 0}},
			rounds: one(sidekiq(time.Second, 100, 10, 0, 10)), verdict: Breaching, breaches: "High/deadJobsRatio@0m"},
		{name: "the dead jobs ratio is configurable", th: strictDead, base: jobsBase, rounds: growing(1, 1000, 5), verdict: Breaching,
			breaches: "High/deadJobsRatio@0m"},
		{name: "the dead jobs rule can be turned off", th: noDeadRule, base: jobsBase, rounds: growing(16, 1000, 500), verdict: Pass},
		{name: "a dead jobs breach without data is kept", base: jobsBase, rounds: rounds(growing(2, 1000, 20), repeat(down, 3)),
			verdict: Inconclusive, breaches: "High/deadJobsRatio@0m*"},

		{name: "a queue 30s behind is only a warning", base: jobsBase, rounds: behind(45*time.Second, 30),
			verdict: Pass},
		{name: "a queue 120s behind is not above it", base: jobsBase, rounds: behind(120*time.Second, 30),
			verdict: Pass},
		{name: "a queue over 120s behind waits: 9 minutes held", base: jobsBase, rounds: behind(3*time.Minute, 10),
			verdict: Breaching, breaches: "High/queueLatency@0m"},
		{name: "a queue over 120s behind acts after 10 minutes", base: jobsBase, rounds: behind(3*time.Minute, 11),
			verdict: Failed, acting: "High/queueLatency", breaches: "High/queueLatency@0m"},
		{name: "a queue that catches up ends the run", base: jobsBase, rounds: rounds(behind(3*time.Minute, 9),
			behind(10*time.Second, 1), behind(3*time.Minute, 3)),
			verdict: Breaching, breaches: "High/queueLatency@10m"},
		{name: "the queue latency's hold comes from the thresholds", th: func() Thresholds {
			th := DefaultThresholds()
			th.HighQueueLatency, th.HighQueueLatencyFor = time.Minute, 2*time.Minute
			return th
		}(), rounds: behind(90*time.Second, 3), verdict: Failed, acting: "High/queueLatency",
			breaches: "High/queueLatency@0m"},

		{name: "every provider down is inconclusive", rounds: one(down), verdict: Inconclusive},
		{name: "no requests is inconclusive", rounds: one(idle), verdict: Inconclusive},
		{name: "no data keeps the breaches without acting", rounds: rounds(repeat(rate(0.2), 10), repeat(down, 8)),
			verdict: Inconclusive, breaches: "High/errorRate@0m* Medium/errorRate@0m*"},
		{name: "data after the gap confirms the breach", rounds: rounds(repeat(rate(0.2), 10), repeat(down, 8), one(rate(0.2))),
			verdict: Failed, acting: "High/errorRate", breaches: "High/errorRate@0m Medium/errorRate@0m"},
		{name: "data after the gap clears the breach", rounds: rounds(repeat(rate(0.2), 10), repeat(idle, 8), one(rate(0))),
			verdict: Pass},
		{name: "a rate over too few requests is not critical but inconclusive", rounds: one(few(0.67, 3)), verdict: Inconclusive},
		{name: "a clean rate over too few requests is no pass", rounds: one(few(0, 49)), verdict: Inconclusive},
		{name: "a rate over minRequests is judged", rounds: one(few(0.62, DefaultMinRequests)), verdict: Failed,
			acting: "Critical/errorRate", breaches: "Critical/errorRate@0m High/errorRate@0m Medium/errorRate@0m"},
		{name: "minRequests 0 judges every rate", th: func() Thresholds { th := DefaultThresholds(); th.MinRequests = 0; return th }(),
			rounds: one(few(0.67, 3)), verdict: Failed, acting: "Critical/errorRate",
			breaches: "Critical/errorRate@0m High/errorRate@0m Medium/errorRate@0m"},
		{name: "the probe's own requests are judged however few", rounds: one(probed(0.6, 5)), verdict: Failed,
			acting: "Critical/errorRate", breaches: "Critical/errorRate@0m High/errorRate@0m Medium/errorRate@0m"},
		{name: "the latency of too few requests is not judged", base: Baseline{Latency: &base100ms},
			rounds: one([]Measurement{{Provider: "prometheus", Latency: ptr(2 * time.Second), Requests: 4}}), verdict: Inconclusive},
		{name: "too few requests neither clear nor confirm a breach", rounds: rounds(repeat(rate(0.2), 10), repeat(few(0, 4), 8)),
			verdict: Inconclusive, breaches: "High/errorRate@0m* Medium/errorRate@0m*"},
		{name: "another provider's pass does not pass too few requests", rounds: one(slices.Concat(probed(0, 5), few(0.9, 3))),
			verdict: Inconclusive},
		{name: "another provider's breach is breaching beside too few requests", rounds: one(slices.Concat(probed(0.2, 5), few(0, 3))),
			verdict: Breaching, breaches: "High/errorRate@0m Medium/errorRate@0m"},
		{name: "a breach whose metric another provider did not measure is kept",
			rounds:  rounds(repeat(rate(0.2), 10), repeat(jobs(0, 1000), 8)),
			verdict: Breaching, breaches: "High/errorRate@0m* Medium/errorRate@0m*"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			th := tc.th
			if th == (Thresholds{}) {
				th = DefaultThresholds()
			}
			rs := run(th, tc.base, tc.rounds)
			last := rs[len(rs)-1]
			var acting string
			if last.Acting != nil {
				acting = string(last.Acting.Severity) + "/" + last.Acting.Metric
			}
			if last.Verdict != tc.verdict || acting != tc.acting || breachList(last.Breaches) != tc.breaches {
				t.Fatalf("got %s, acting %q, breaches %q; want %s, %q, %q\n%s", last.Verdict, acting, breachList(last.Breaches),
					tc.verdict, tc.acting, tc.breaches, Describe(last))
			}
			if got := breachList(last.State.Breaches); got != tc.breaches {
				t.Fatalf("state keeps %q, want %q", got, tc.breaches)
			}
		})
	}
}

func TestCarriedBreachesTakeTheirRuleFromTheThresholds(t *testing.T) {
	th := DefaultThresholds()
	prev := State{Breaches: []Breach{{Severity: High, Metric: MetricErrorRate, Since: t0}}}
	r := Evaluate(th, Baseline{}, nil, map[string]error{"http": errors.New("timeout")}, prev, t0.Add(time.Hour))
	if b := r.Breaches[0]; b.For != th.HighFor || b.Threshold != th.HighErrorRate || !b.NoData || r.Acting != nil {
		t.Fatalf("carried %+v, acting %v", b, r.Acting)
	}
}

func TestCombinedValues(t *testing.T) {
	fast, slow, q1, q2 := 100*time.Millisecond, 400*time.Millisecond, time.Second, time.Minute
	r := Evaluate(DefaultThresholds(), Baseline{Latency: &base100ms}, []Measurement{
		{Provider: "http", ErrorRate: ptr(0.01), Latency: &slow, Requests: 5, OwnRequests: true},
		{Provider: "prometheus", ErrorRate: ptr(0.02), Latency: &fast, Requests: 1000},
		{Provider: "sidekiq", QueueLatency: &q2},
		{Provider: "other", QueueLatency: &q1},
	}, nil, State{}, t0)
	if *r.ErrorRate != 0.02 || *r.Latency != slow || *r.LatencyRatio != 4 || *r.QueueLatency != q2 {
		t.Fatalf("got error rate %v, latency %v (%vx), queue latency %v", *r.ErrorRate, *r.Latency, *r.LatencyRatio, *r.QueueLatency)
	}
}

func ptr[T any](v T) *T { return &v }

func TestDescribe(t *testing.T) {
	th := DefaultThresholds()
	refused := map[string]error{"prometheus": errors.New("connection refused")}
	since := t0.Add(2*time.Minute + 10*time.Second)
	for _, tc := range []struct {
		name string
		r    Result
		want string
	}{
		{"critical", Evaluate(th, Baseline{}, rate(0.62), nil, State{}, t0),
			"error rate 62.0% > 50% (critical, acting now)"},
		{"high, waiting", Evaluate(th, Baseline{Latency: &base100ms}, latency(340*time.Millisecond), nil,
			State{Breaches: []Breach{{Severity: High, Metric: MetricLatencyRatio, Since: since}}}, t0.Add(5*time.Minute)),
			"latency 3.4x baseline >= 3x since 03:02:10 (high, acts after 15m)"},
		{"high, acting", Evaluate(th, Baseline{}, rate(0.12), nil,
			State{Breaches: []Breach{{Severity: High, Metric: MetricErrorRate, Since: t0}}}, t0.Add(20*time.Minute)),
			"error rate 12.0% > 10% since 03:00:00 (high, held 20m, acting now)"},
		{"jobs", Evaluate(th, Baseline{}, jobs(40, 7), nil, State{Processed: ptr(int64(7))}, t0),
			"40 Sidekiq job(s) waiting, none processed since 03:00:00 (high, acts after 15m)"},
		{"dead jobs", Evaluate(th, Baseline{Jobs: &Jobs{Processed: 1000, Failed: 30, Retry: 5, Dead: 200}},
			sidekiq(time.Second, 1500, 45, 12, 210), nil, State{}, t0),
			"2.0% of the Sidekiq jobs processed since the baseline dead > 1% since 03:00:00 (high, acts after 15m)"},
		{"queue latency", Evaluate(th, Baseline{}, sidekiq(150*time.Second, 1500, 45, 12, 210), nil,
			State{Breaches: []Breach{{Severity: High, Metric: MetricQueueLatency, Since: t0}}}, t0.Add(10*time.Minute)),
			"oldest Sidekiq job waiting 2m30s > 2m since 03:00:00 (high, held 10m, acting now); oldest Sidekiq job waiting 2m30s > 30s (warning; high above 2m for 10m)"},
		{"queue latency warning and the jobs since the baseline", Evaluate(th, Baseline{Jobs: &Jobs{Processed: 1000, Failed: 30, Retry: 5, Dead: 200}},
			sidekiq(45*time.Second, 2000, 45, 12, 205), nil, State{}, t0),
			"oldest job waiting 45s, since the baseline 1000 job(s) processed, 15 failed, 7 more to retry, 5 dead; oldest Sidekiq job waiting 45s > 30s (warning; high above 2m for 10m)"},
		{"no data", Evaluate(th, Baseline{}, nil, refused, State{}, t0),
			"no data: prometheus: connection refused"},
		{"no requests", Evaluate(th, Baseline{}, idle, nil, State{}, t0),
			"no data: nothing was measured (no requests?)"},
		{"no data with a breach", Evaluate(th, Baseline{}, nil, refused,
			State{Breaches: []Breach{{Severity: Medium, Metric: MetricErrorRate, Since: t0}}}, t0.Add(time.Hour)),
			"error rate > 5% since 03:00:00 (medium, not measured now: acts only once data confirms it); no data: prometheus: connection refused"},
		{"too few requests", Evaluate(th, Baseline{}, few(0.67, 3), nil, State{}, t0),
			"too few requests to judge (fewer than 50): prometheus counted 3"},
		{"the last failure", Evaluate(th, Baseline{}, []Measurement{{Provider: "http", ErrorRate: ptr(0.2), Requests: 5, OwnRequests: true,
			Failure: "GET https://example.social/api/v2/instance answered version 4.5.0, want 4.6.2: the old stack answered?"}}, nil, State{}, t0),
			"error rate 20.0% > 10% since 03:00:00 (high, acts after 15m); http last failure: GET https://example.social/api/v2/instance answered version 4.5.0, want 4.6.2: the old stack answered?"},
		{"pass", Evaluate(th, Baseline{Latency: &base100ms}, slices.Concat(rate(0.001), latency(120*time.Millisecond)), refused, State{}, t0),
			"error rate 0.1%, latency 120ms (1.2x baseline); no data: prometheus: connection refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Describe(tc.r); got != tc.want {
				t.Fatalf("got  %q\nwant %q", got, tc.want)
			}
		})
	}
}
