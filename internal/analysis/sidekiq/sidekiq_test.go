package sidekiq

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// startRedis runs Debian's redis-server on loopback for one test; password "" runs it open.
func startRedis(t *testing.T, password string) string {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatal("redis-server is not installed: `make test` installs it (hack/test-deps.sh)")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().(*net.TCPAddr)
	_ = l.Close()
	args := []string{"--port", fmt.Sprint(addr.Port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", t.TempDir()}
	if password != "" {
		args = append(args, "--requirepass", password)
	}
	cmd := exec.Command(bin, args...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	rdb := redis.NewClient(&redis.Options{Addr: addr.String(), Password: password})
	defer func() { _ = rdb.Close() }()
	for deadline := time.Now().Add(10 * time.Second); rdb.Ping(context.Background()).Err() != nil; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("redis-server did not start")
		}
	}
	return addr.String()
}

// enqueue pushes a job as Sidekiq's client does.
func enqueue(t *testing.T, rdb *redis.Client, prefix, queue, enqueuedAt string) {
	ctx := context.Background()
	if err := rdb.SAdd(ctx, prefix+"queues", queue).Err(); err != nil {
		t.Fatal(err)
	}
	job := fmt.Sprintf(`{"class":"LinkCrawlWorker","args":[1],"queue":%q,"jid":"abc","enqueued_at":%s}`, queue, enqueuedAt)
	if err := rdb.LPush(ctx, prefix+"queue:"+queue, job).Err(); err != nil {
		t.Fatal(err)
	}
}

func TestQueuesAndTheProcessedCounter(t *testing.T) {
	addr := startRedis(t, "")
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer func() { _ = rdb.Close() }()
	ctx := context.Background()
	p := New(Config{Address: addr, Namespace: "mastodon"})
	defer func() { _ = p.Close() }()

	m, err := p.Measure(ctx, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if *m.Enqueued != 0 || *m.QueueLatency != 0 || *m.Processed != 0 {
		t.Fatalf("an empty Sidekiq measured %d jobs, %s, %d processed", *m.Enqueued, *m.QueueLatency, *m.Processed)
	}

	now := time.Now()
	// The oldest job (Sidekiq 7: float seconds) waits 90 s; a newer one (Sidekiq 8: integer ms).
	enqueue(t, rdb, "mastodon:", "default", fmt.Sprintf("%.3f", float64(now.Add(-90*time.Second).UnixMilli())/1000))
	enqueue(t, rdb, "mastodon:", "default", fmt.Sprint(now.Add(-5*time.Second).UnixMilli()))
	enqueue(t, rdb, "mastodon:", "push", fmt.Sprint(now.Add(-30*time.Second).UnixMilli()))
	// Keys of another namespace are not Sidekiq's of this instance.
	enqueue(t, rdb, "", "default", fmt.Sprint(now.Add(-time.Hour).UnixMilli()))
	if err := rdb.IncrBy(ctx, "mastodon:stat:processed", 1234).Err(); err != nil {
		t.Fatal(err)
	}
	if m, err = p.Measure(ctx, time.Minute); err != nil {
		t.Fatal(err)
	}
	if *m.Enqueued != 3 || *m.Processed != 1234 {
		t.Fatalf("measured %d jobs and %d processed, want 3 and 1234", *m.Enqueued, *m.Processed)
	}
	if d := *m.QueueLatency; d < 89*time.Second || d > 95*time.Second {
		t.Fatalf("queue latency %s, want about 90s", d)
	}
}

func TestPasswordIsUsedAndNeverShown(t *testing.T) {
	const password = "s3cret-redis-pass"
	addr := startRedis(t, password)
	ok := New(Config{Address: addr, Password: password})
	defer func() { _ = ok.Close() }()
	if _, err := ok.Measure(context.Background(), time.Minute); err != nil {
		t.Fatal(err)
	}
	wrong := New(Config{Address: addr, Password: "wrong-" + password})
	defer func() { _ = wrong.Close() }()
	_, err := wrong.Measure(context.Background(), time.Minute)
	if err == nil {
		t.Fatal("a wrong password measured")
	}
	if strings.Contains(err.Error(), password) {
		t.Fatalf("the error shows the password: %v", err)
	}
}

func TestRedisDownIsNoData(t *testing.T) {
	p := New(Config{Address: "127.0.0.1:9"})
	defer func() { _ = p.Close() }()
	if _, err := p.Measure(context.Background(), time.Minute); err == nil {
		t.Fatal("an unreachable Redis measured")
	}
}
