// Package sidekiq reads Sidekiq's queues and processed counter from its Redis, for the rollback
// procedure's "background jobs are not processed".
package sidekiq

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/mastodon-operator/mastodon-operator/internal/analysis"
)

// Config is where Sidekiq keeps its data.
type Config struct {
	// Address is host:port of the Redis server.
	Address string
	// Password is the Redis password (requirepass); it goes to Redis and nowhere else.
	Password string
	DB       int
	// Namespace is the key prefix (Mastodon's REDIS_NAMESPACE), if any: the keys are
	// "<Namespace>:queues" and so on.
	Namespace string
}

// Provider reads Sidekiq's keys.
type Provider struct {
	rdb      *redis.Client
	address  string
	password string
	prefix   string
}

// New makes a provider; it connects when it measures.
func New(cfg Config) *Provider {
	p := &Provider{address: cfg.Address, password: cfg.Password}
	if cfg.Namespace != "" {
		p.prefix = cfg.Namespace + ":"
	}
	p.rdb = redis.NewClient(&redis.Options{
		Addr: cfg.Address, Password: cfg.Password, DB: cfg.DB,
		DialTimeout: 5 * time.Second, ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second,
		MaxRetries: 1, PoolSize: 2,
		// A plain Redis that a probe reads from: no cluster maintenance to follow.
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	})
	return p
}

// Name implements analysis.Provider.
func (p *Provider) Name() string { return "sidekiq" }

// Close releases the connections.
func (p *Provider) Close() error { return p.rdb.Close() }

// Measure reads how many jobs wait in the queues, how long the oldest has waited, the processed
// and failed counters and the sizes of the retry and dead sets, which Evaluate compares with the
// previous measurement's and the baseline's. The interval does
// not matter: these are Sidekiq's state now.
func (p *Provider) Measure(ctx context.Context, _ time.Duration) (analysis.Measurement, error) {
	m, err := p.measure(ctx)
	if err != nil {
		return analysis.Measurement{}, p.redact(err)
	}
	return m, nil
}

func (p *Provider) measure(ctx context.Context) (analysis.Measurement, error) {
	// A URL with credentials in it would be in the dial error otherwise.
	if _, _, err := net.SplitHostPort(p.address); err != nil {
		return analysis.Measurement{}, errors.New("the Redis address is not host:port")
	}
	var queues *redis.StringSliceCmd
	var processed, failed *redis.StringCmd
	var retry, dead *redis.IntCmd
	// Each command's error is looked at below: a missing counter is no error.
	_, _ = p.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		queues = pipe.SMembers(ctx, p.prefix+"queues")
		processed = pipe.Get(ctx, p.prefix+"stat:processed")
		failed = pipe.Get(ctx, p.prefix+"stat:failed")
		retry = pipe.ZCard(ctx, p.prefix+"retry")
		dead = pipe.ZCard(ctx, p.prefix+"dead")
		return nil
	})
	if err := queues.Err(); err != nil {
		return analysis.Measurement{}, fmt.Errorf("reading Sidekiq's queues from Redis at %s: %w", p.address, err)
	}
	var total, totalFailed int64
	for _, c := range []struct {
		cmd  *redis.StringCmd
		into *int64
	}{{processed, &total}, {failed, &totalFailed}} {
		n, err := c.cmd.Int64()
		if err != nil && !errors.Is(err, redis.Nil) {
			return analysis.Measurement{}, fmt.Errorf("reading %s from Redis at %s: %w", c.cmd.Args()[1], p.address, err)
		}
		*c.into = n
	}
	for _, c := range []*redis.IntCmd{retry, dead} {
		if err := c.Err(); err != nil {
			return analysis.Measurement{}, fmt.Errorf("reading the sorted set %s from Redis at %s: %w", c.Args()[1], p.address, err)
		}
	}
	retrying, died := retry.Val(), dead.Val()

	// Sidekiq pushes a job on the left of its queue's list: the oldest is the last.
	lengths := make([]*redis.IntCmd, len(queues.Val()))
	oldest := make([]*redis.StringCmd, len(queues.Val()))
	_, _ = p.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for i, q := range queues.Val() {
			lengths[i] = pipe.LLen(ctx, p.prefix+"queue:"+q)
			oldest[i] = pipe.LIndex(ctx, p.prefix+"queue:"+q, -1)
		}
		return nil
	})
	now := time.Now()
	var enqueued int64
	var latency time.Duration
	for i, q := range queues.Val() {
		n, err := lengths[i].Result()
		if err != nil {
			return analysis.Measurement{}, fmt.Errorf("reading queue %s from Redis at %s: %w", q, p.address, err)
		}
		enqueued += n
		job, err := oldest[i].Result()
		if errors.Is(err, redis.Nil) {
			continue // an empty queue
		}
		if err != nil {
			return analysis.Measurement{}, fmt.Errorf("reading queue %s from Redis at %s: %w", q, p.address, err)
		}
		at, ok, err := enqueuedAt(job)
		if err != nil {
			return analysis.Measurement{}, fmt.Errorf("the oldest job of queue %s: %w", q, err)
		}
		if ok {
			latency = max(latency, now.Sub(at))
		}
	}
	return analysis.Measurement{Provider: p.Name(), Enqueued: &enqueued, QueueLatency: &latency, Processed: &total,
		Failed: &totalFailed, Retry: &retrying, Dead: &died}, nil
}

// enqueuedAt reads a job's enqueued_at: seconds as a float up to Sidekiq 7, milliseconds as an
// integer from Sidekiq 8. Told apart by magnitude, which is what they mean for any date after
// 1973, whichever way a client wrote them. A job without one has no age, as in Sidekiq's
// Queue#latency.
func enqueuedAt(job string) (time.Time, bool, error) {
	var j struct {
		EnqueuedAt *float64 `json:"enqueued_at"`
	}
	if err := json.Unmarshal([]byte(job), &j); err != nil {
		// Not the job itself: its arguments are Mastodon's users' data.
		return time.Time{}, false, errors.New("not Sidekiq's JSON")
	}
	if j.EnqueuedAt == nil {
		return time.Time{}, false, nil
	}
	ms := *j.EnqueuedAt
	if ms < 1e11 {
		ms *= 1000
	}
	return time.UnixMilli(int64(ms)), true, nil
}

// redact takes the password out of an error, whatever put it there.
func (p *Provider) redact(err error) error {
	if p.password == "" || !strings.Contains(err.Error(), p.password) {
		return err
	}
	return errors.New(strings.ReplaceAll(err.Error(), p.password, "[redacted]"))
}
