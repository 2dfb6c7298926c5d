// Package analysis watches the stack that takes the traffic: metric providers behind one
// interface, and the rollback procedure's thresholds applied to what they measure.
package analysis

import (
	"context"
	"time"
)

// Measurement is what one provider saw over the last interval. A nil field was not measured by
// this provider, or there was nothing to measure (no requests).
type Measurement struct {
	// Provider is the name of the provider that measured.
	Provider string
	// ErrorRate is the fraction of responses that were 5xx (or failed), from 0 to 1.
	ErrorRate *float64
	// Requests is how many requests the error rate (and the latency) is over: a provider that
	// measures an error rate sets it, 0 when it counted none.
	Requests float64
	// OwnRequests says that the provider sent the requests itself (the HTTP probe), as many as
	// its spec asks: Thresholds.MinRequests does not apply to them.
	OwnRequests bool
	// Failure is the last failed request of the measurement, as on-call reads it (GET ...:
	// 502 Bad Gateway); empty when none failed.
	Failure string
	// Latency of the responses (the provider says which: mean, or a percentile).
	Latency *time.Duration
	// QueueLatency is the age of the oldest enqueued Sidekiq job.
	QueueLatency *time.Duration
	// Enqueued is how many Sidekiq jobs wait in the queues.
	Enqueued *int64
	// Processed is Sidekiq's total processed counter; Evaluate compares it with the previous
	// measurement to tell whether jobs are processed.
	Processed *int64
	// Failed is Sidekiq's total failed counter; Retry and Dead the sizes of its retry and dead
	// sets. With Processed, Evaluate counts them from the baseline's.
	Failed, Retry, Dead *int64
}

// Provider measures the stack that takes the traffic now.
type Provider interface {
	// Name is the provider's name in status: http, prometheus, cloudMonitoring or sidekiq.
	Name() string
	// Measure returns what the provider saw over the last interval. An error means no data:
	// the provider is unreachable, or has no samples. No data is never a pass nor a breach.
	Measure(ctx context.Context, interval time.Duration) (Measurement, error)
}
