package sidekiq

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mastodon-operator/mastodon-operator/internal/testenv/redisserver"
)

// server is the package's redis-server, started by the first test that needs it and stopped
// by TestMain.
var server struct {
	once sync.Once
	addr string
	stop func()
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if server.stop != nil {
		server.stop()
	}
	os.Exit(code)
}

// sharedRedis is the address of the package's redis-server, emptied for the test.
func sharedRedis(t *testing.T) string {
	t.Helper()
	server.once.Do(func() { server.addr, server.stop, server.err = redisserver.Start() })
	if server.err != nil {
		t.Fatal(server.err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: server.addr})
	defer func() { _ = rdb.Close() }()
	if err := rdb.FlushAll(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	return server.addr
}

// sidekiqClient writes to Redis as Sidekiq's client does, under prefix.
type sidekiqClient struct {
	t      *testing.T
	rdb    *redis.Client
	prefix string
}

func newSidekiqClient(t *testing.T, addr, namespace string) *sidekiqClient {
	c := &sidekiqClient{t: t, rdb: redis.NewClient(&redis.Options{Addr: addr})}
	if namespace != "" {
		c.prefix = namespace + ":"
	}
	t.Cleanup(func() { _ = c.rdb.Close() })
	return c
}

// push enqueues a job whose enqueued_at is the JSON number given.
func (c *sidekiqClient) push(queue, enqueuedAt string) {
	c.t.Helper()
	job := fmt.Sprintf(`{"retry":true,"queue":%q,"class":"ActivityPub::DeliveryWorker","args":["{}",1,"https://example.com/inbox"],"jid":"0123456789abcdef01234567","created_at":%s,"enqueued_at":%s}`,
		queue, enqueuedAt, enqueuedAt)
	c.pushRaw(queue, job)
}

func (c *sidekiqClient) pushRaw(queue, job string) {
	c.t.Helper()
	ctx := context.Background()
	if _, err := c.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		pipe.SAdd(ctx, c.prefix+"queues", queue)
		pipe.LPush(ctx, c.prefix+"queue:"+queue, job)
		return nil
	}); err != nil {
		c.t.Fatal(err)
	}
}

func (c *sidekiqClient) processed(n int64) {
	c.t.Helper()
	if err := c.rdb.IncrBy(context.Background(), c.prefix+"stat:processed", n).Err(); err != nil {
		c.t.Fatal(err)
	}
}

// Sidekiq 7 writes enqueued_at as float seconds, Sidekiq 8 as integer milliseconds.
func seconds(t time.Time) string      { return fmt.Sprintf("%.3f", float64(t.UnixMilli())/1000) }
func milliseconds(t time.Time) string { return fmt.Sprint(t.UnixMilli()) }

func measure(t *testing.T, cfg Config) (enqueued int64, latency time.Duration, processed int64) {
	t.Helper()
	p := New(cfg)
	defer func() { _ = p.Close() }()
	m, err := p.Measure(context.Background(), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if m.Enqueued == nil || m.QueueLatency == nil || m.Processed == nil || m.ErrorRate != nil || m.Latency != nil {
		t.Fatalf("measured %+v: want the queues and the counter, and nothing else", m)
	}
	return *m.Enqueued, *m.QueueLatency, *m.Processed
}

func near(d, want time.Duration) bool { return (d - want).Abs() < 2*time.Second }

func TestAnEmptySidekiq(t *testing.T) {
	addr := sharedRedis(t)
	if n, l, p := measure(t, Config{Address: addr}); n != 0 || l != 0 || p != 0 {
		t.Fatalf("an empty Redis: %d jobs, oldest %s, %d processed; want 0, 0, 0", n, l, p)
	}
	// Queues Sidekiq knows of, all empty.
	c := newSidekiqClient(t, addr, "")
	c.push("default", milliseconds(time.Now()))
	if err := c.rdb.Del(context.Background(), "queue:default").Err(); err != nil {
		t.Fatal(err)
	}
	c.processed(7)
	if n, l, p := measure(t, Config{Address: addr}); n != 0 || l != 0 || p != 7 {
		t.Fatalf("empty queues: %d jobs, oldest %s, %d processed; want 0, 0, 7", n, l, p)
	}
}

func TestTheOldestJobOfEveryVersion(t *testing.T) {
	for name, format := range map[string]func(time.Time) string{"Sidekiq 7": seconds, "Sidekiq 8": milliseconds} {
		t.Run(name, func(t *testing.T) {
			addr := sharedRedis(t)
			c := newSidekiqClient(t, addr, "")
			now := time.Now()
			c.push("default", format(now.Add(-2*time.Minute)))
			c.push("default", format(now.Add(-10*time.Second)))
			c.push("push", format(now.Add(-30*time.Second)))
			c.processed(1234)
			n, l, p := measure(t, Config{Address: addr})
			if n != 3 || !near(l, 2*time.Minute) || p != 1234 {
				t.Fatalf("%d jobs, oldest %s, %d processed; want 3, 2m, 1234", n, l, p)
			}
		})
	}
}

func TestTheNamespaceIsAKeyPrefix(t *testing.T) {
	addr := sharedRedis(t)
	now := time.Now()
	ours := newSidekiqClient(t, addr, "mastodon")
	ours.push("default", milliseconds(now.Add(-90*time.Second)))
	ours.push("ingress", seconds(now.Add(-20*time.Second)))
	ours.processed(42)
	// Another instance's Sidekiq, without a namespace, in the same Redis.
	theirs := newSidekiqClient(t, addr, "")
	theirs.push("default", milliseconds(now.Add(-time.Hour)))
	theirs.push("default", milliseconds(now.Add(-time.Hour)))
	theirs.processed(99999)

	n, l, p := measure(t, Config{Address: addr, Namespace: "mastodon"})
	if n != 2 || !near(l, 90*time.Second) || p != 42 {
		t.Fatalf("%d jobs, oldest %s, %d processed; want 2, 1m30s, 42", n, l, p)
	}
	if n, _, p := measure(t, Config{Address: addr}); n != 2 || p != 99999 {
		t.Fatalf("without the namespace: %d jobs, %d processed; want the other instance's 2, 99999", n, p)
	}
}

func TestTheProcessedCounterMoves(t *testing.T) {
	addr := sharedRedis(t)
	c := newSidekiqClient(t, addr, "")
	c.push("default", milliseconds(time.Now()))
	p := New(Config{Address: addr})
	defer func() { _ = p.Close() }()
	var counts []int64
	for _, n := range []int64{10, 5} {
		c.processed(n)
		m, err := p.Measure(context.Background(), time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		counts = append(counts, *m.Processed)
	}
	if counts[0] != 10 || counts[1] != 15 {
		t.Fatalf("processed %v, want [10 15]", counts)
	}
}

func TestAJobWithoutEnqueuedAtHasNoAge(t *testing.T) {
	addr := sharedRedis(t)
	c := newSidekiqClient(t, addr, "")
	c.pushRaw("default", `{"queue":"default","class":"Scheduler::IndexingScheduler","args":[],"jid":"1"}`)
	if n, l, _ := measure(t, Config{Address: addr}); n != 1 || l != 0 {
		t.Fatalf("%d jobs, oldest %s; want 1, 0", n, l)
	}
	c.pushRaw("mailers", `not JSON, with a user's data`)
	p := New(Config{Address: addr})
	defer func() { _ = p.Close() }()
	_, err := p.Measure(context.Background(), time.Minute)
	if err == nil || !strings.Contains(err.Error(), "mailers") || strings.Contains(err.Error(), "user's data") {
		t.Fatalf("a job that is not JSON: %v; want an error naming the queue, not quoting the job", err)
	}
}

func TestPasswordIsUsedAndNeverShown(t *testing.T) {
	const password = "s3cret-redis-pass"
	addr, stop, err := redisserver.Start("--requirepass", password)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	if n, _, _ := measure(t, Config{Address: addr, Password: password}); n != 0 {
		t.Fatalf("%d jobs in an empty Redis", n)
	}
	for name, cfg := range map[string]Config{
		"a wrong password": {Address: addr, Password: "wrong-" + password},
		"no password":      {Address: addr},
		// A URL in the address would put the password in a dial error.
		"a URL with the password": {Address: "redis://:" + password + "@" + addr, Password: password},
	} {
		p := New(cfg)
		_, err := p.Measure(context.Background(), time.Minute)
		_ = p.Close()
		if err == nil {
			t.Errorf("%s measured", name)
			continue
		}
		if strings.Contains(err.Error(), password) {
			t.Errorf("%s: the error shows the password: %v", name, err)
		}
	}
}

func TestRedisDownIsAnError(t *testing.T) {
	port, err := redisserver.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	p := New(Config{Address: net.JoinHostPort("127.0.0.1", fmt.Sprint(port)), Password: "pw-not-shown"})
	defer func() { _ = p.Close() }()
	_, err = p.Measure(context.Background(), time.Minute)
	var opErr *net.OpError
	if err == nil || !errors.As(err, &opErr) || strings.Contains(err.Error(), "pw-not-shown") {
		t.Fatalf("an unreachable Redis: %v; want the dial error, without the password", err)
	}
}

// fail records a job as Sidekiq's job retry does: the failed counter, and the job in the retry
// set (scored by its next attempt) or, out of retries, in the dead set (scored by its death).
func (c *sidekiqClient) fail(set string, jid string) {
	c.t.Helper()
	ctx := context.Background()
	at := float64(time.Now().UnixMilli()) / 1000
	job := fmt.Sprintf(`{"retry":true,"queue":"push","class":"Web::PushNotificationWorker","args":[1,2],"jid":%q,"error_message":"Net::ReadTimeout","retry_count":3,"failed_at":%.3f}`, jid, at)
	if _, err := c.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		pipe.IncrBy(ctx, c.prefix+"stat:processed", 1)
		pipe.IncrBy(ctx, c.prefix+"stat:failed", 1)
		pipe.ZAdd(ctx, c.prefix+set, redis.Z{Score: at, Member: job})
		return nil
	}); err != nil {
		c.t.Fatal(err)
	}
}

func TestTheRetryAndDeadSetsAndTheFailedCounter(t *testing.T) {
	addr := sharedRedis(t)
	ours := newSidekiqClient(t, addr, "mastodon")
	ours.processed(100)
	for i := range 3 {
		ours.fail("retry", fmt.Sprint("r", i))
	}
	ours.fail("dead", "d0")
	// Another instance's failures, without a namespace, in the same Redis.
	theirs := newSidekiqClient(t, addr, "")
	for i := range 5 {
		theirs.fail("dead", fmt.Sprint("other", i))
	}

	p := New(Config{Address: addr, Namespace: "mastodon"})
	defer func() { _ = p.Close() }()
	m, err := p.Measure(context.Background(), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if m.Failed == nil || m.Retry == nil || m.Dead == nil {
		t.Fatalf("measured %+v: want the failed counter and both sets", m)
	}
	if *m.Processed != 104 || *m.Failed != 4 || *m.Retry != 3 || *m.Dead != 1 {
		t.Fatalf("processed %d, failed %d, retry %d, dead %d; want 104, 4, 3, 1", *m.Processed, *m.Failed, *m.Retry, *m.Dead)
	}
	// An instance whose Sidekiq never failed has no such keys: zero, not an error.
	other := New(Config{Address: addr, Namespace: "quiet"})
	defer func() { _ = other.Close() }()
	if m, err := other.Measure(context.Background(), time.Minute); err != nil || *m.Failed != 0 || *m.Retry != 0 || *m.Dead != 0 {
		t.Fatalf("no failures yet: %+v, %v", m, err)
	}
}

func TestAKeyOfAnotherTypeIsAnError(t *testing.T) {
	addr := sharedRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer func() { _ = rdb.Close() }()
	if err := rdb.Set(context.Background(), "dead", "not a sorted set", 0).Err(); err != nil {
		t.Fatal(err)
	}
	p := New(Config{Address: addr})
	defer func() { _ = p.Close() }()
	if _, err := p.Measure(context.Background(), time.Minute); err == nil || !strings.Contains(err.Error(), "sorted set dead") {
		t.Fatalf("a dead key that is no sorted set: %v; want an error naming it", err)
	}
}
