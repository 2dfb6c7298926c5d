// Package sidekiq reads Sidekiq's queues and counters from its Redis, for the runbook's
// "background jobs are not processed".
package sidekiq

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mastodon-operator/mastodon-operator/internal/analysis"
)

// Config is where Sidekiq keeps its data.
type Config struct {
	// Address is host:port of the Redis server.
	Address string
	// Password is the Redis password; it goes to Redis and nowhere else.
	Password string
	DB       int
	// Namespace is the key prefix (REDIS_NAMESPACE), if any.
	Namespace string
}

// Provider reads Sidekiq's keys.
type Provider struct {
	rdb    *redis.Client
	prefix string
}

// New connects lazily to Redis.
func New(cfg Config) *Provider {
	p := &Provider{rdb: redis.NewClient(&redis.Options{Addr: cfg.Address, Password: cfg.Password, DB: cfg.DB,
		DialTimeout: 5 * time.Second, ReadTimeout: 5 * time.Second, MaxRetries: 1})}
	if cfg.Namespace != "" {
		p.prefix = cfg.Namespace + ":"
	}
	return p
}

// Name implements analysis.Provider.
func (p *Provider) Name() string { return "sidekiq" }

// Close releases the connections.
func (p *Provider) Close() error { return p.rdb.Close() }

// Measure reads how many jobs wait, the age of the oldest (each queue is a list Sidekiq pushes
// on the left, so the oldest job is the last), and the processed counter, which Evaluate
// compares with the previous measurement's.
func (p *Provider) Measure(ctx context.Context, _ time.Duration) (analysis.Measurement, error) {
	var m analysis.Measurement
	queues, err := p.rdb.SMembers(ctx, p.prefix+"queues").Result()
	if err != nil {
		return m, fmt.Errorf("reading Sidekiq's queues from %s: %w", p.rdb.Options().Addr, err)
	}
	var enqueued int64
	var oldest time.Duration
	now := time.Now()
	for _, q := range queues {
		key := p.prefix + "queue:" + q
		n, err := p.rdb.LLen(ctx, key).Result()
		if err != nil {
			return m, fmt.Errorf("reading queue %s: %w", q, err)
		}
		enqueued += n
		if n == 0 {
			continue
		}
		last, err := p.rdb.LIndex(ctx, key, -1).Result()
		if errors.Is(err, redis.Nil) {
			continue // taken by a worker meanwhile
		} else if err != nil {
			return m, fmt.Errorf("reading queue %s: %w", q, err)
		}
		at, err := enqueuedAt(last)
		if err != nil {
			return m, fmt.Errorf("queue %s: %w", q, err)
		}
		oldest = max(oldest, now.Sub(at))
	}
	processed, err := p.rdb.Get(ctx, p.prefix+"stat:processed").Int64()
	if err != nil && !errors.Is(err, redis.Nil) {
		return m, fmt.Errorf("reading stat:processed: %w", err)
	}
	m.Enqueued, m.QueueLatency, m.Processed = &enqueued, &oldest, &processed
	return m, nil
}

// enqueuedAt reads a job's enqueued_at: seconds as a float up to Sidekiq 7, milliseconds as
// an integer from Sidekiq 8.
func enqueuedAt(job string) (time.Time, error) {
	var j struct {
		EnqueuedAt json.Number `json:"enqueued_at"`
	}
	if err := json.Unmarshal([]byte(job), &j); err != nil {
		return time.Time{}, fmt.Errorf("a job that is not Sidekiq's JSON: %w", err)
	}
	if !strings.Contains(j.EnqueuedAt.String(), ".") {
		ms, err := j.EnqueuedAt.Int64()
		if err != nil {
			return time.Time{}, fmt.Errorf("enqueued_at %q: %w", j.EnqueuedAt, err)
		}
		return time.UnixMilli(ms), nil
	}
	s, err := j.EnqueuedAt.Float64()
	if err != nil {
		return time.Time{}, fmt.Errorf("enqueued_at %q: %w", j.EnqueuedAt, err)
	}
	return time.UnixMilli(int64(s * 1000)), nil
}
