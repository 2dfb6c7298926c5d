package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/redis/go-redis/v9"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
	"github.com/mastodon-operator/mastodon-operator/internal/testenv/redisserver"
)

// TestDeadSidekiqJobsRollBackAutomatically has the analysis read Sidekiq from a real
// redis-server, keys under Mastodon's REDIS_NAMESPACE, with a dead set and counters from long
// before the migration. The baseline records them; once the traffic has moved, jobs are
// processed while one waits 45s (a warning in status, no breach), then 40 jobs die: above 1% of
// those processed since the baseline, a high breach that acts once held (high.for 5s here) and
// rolls back at level 1.
func TestDeadSidekiqJobsRollBackAutomatically(t *testing.T) {
	ctx := context.Background()
	ns := "mastodon-sidekiq-dead"
	addr, stop, err := redisserver.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { _ = rdb.Close() })
	const prefix = "mastodon:"
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	job := func(jid string, at time.Time) string {
		return fmt.Sprintf(`{"retry":true,"queue":"push","class":"ActivityPub::DeliveryWorker","args":["{}",1,"https://example.com/inbox"],"jid":%q,"created_at":%d,"enqueued_at":%d}`,
			jid, at.UnixMilli(), at.UnixMilli())
	}
	// Months of an instance's life: counters and a dead set the new stack is not judged by.
	must(rdb.Set(ctx, prefix+"stat:processed", 8_000_000, 0).Err())
	must(rdb.Set(ctx, prefix+"stat:failed", 90_000, 0).Err())
	for i := range 300 {
		must(rdb.ZAdd(ctx, prefix+"dead", redis.Z{Score: float64(time.Now().Add(-time.Duration(i) * time.Hour).Unix()),
			Member: job(fmt.Sprint("old-dead-", i), time.Now().Add(-time.Duration(i)*time.Hour))}).Err())
	}

	_, _, m := migrateTo(t, ctx, ns, v1alpha1.PhaseObserving, func(m *v1alpha1.MastodonMigration) {
		probed("/probe/"+ns, 10*time.Minute)(m)
		m.Spec.Analysis.Sidekiq = &v1alpha1.SidekiqAnalysis{Address: addr, Namespace: "mastodon"}
		m.Spec.Analysis.Thresholds.High.For = &metav1.Duration{Duration: 5 * time.Second}
	})
	got, _ := getMigration(ctx, m)()
	g := gomega.NewWithT(t)
	g.Expect(got.Status.Analysis.Baseline).To(gomega.HaveField("Jobs",
		gomega.Equal(&v1alpha1.SidekiqJobs{Processed: 8_000_000, Failed: 90_000, Dead: 300})))

	// The new stack's Sidekiq processes jobs, while the oldest of a queue has waited 45s.
	processing, done := context.WithCancel(ctx)
	t.Cleanup(done)
	go func() {
		for tick := time.NewTicker(time.Second); processing.Err() == nil; <-tick.C {
			_ = rdb.IncrBy(processing, prefix+"stat:processed", 20).Err()
		}
	}()
	must(rdb.SAdd(ctx, prefix+"queues", "push").Err())
	must(rdb.LPush(ctx, prefix+"queue:push", job("waiting", time.Now().Add(-45*time.Second))).Err())
	eventually(t, getMigration(ctx, m)).Should(gomega.HaveField("Status.Analysis", gomega.And(
		gomega.HaveField("Verdict", "Pass"),
		gomega.HaveField("Warnings", gomega.ContainElement(gomega.MatchRegexp(`^oldest Sidekiq job waiting \d+s > 30s \(warning; high above 2m for 10m\)$`))))))
	got, _ = getMigration(ctx, m)()
	t.Logf("warning: %s; since the baseline: %+v, dead %s", got.Status.Analysis.Warnings, *got.Status.Analysis.JobsSinceBaseline,
		got.Status.Analysis.DeadJobsRatio)

	// Then its jobs die, out of retries.
	for i := range 40 {
		must(rdb.ZAdd(ctx, prefix+"dead", redis.Z{Score: float64(time.Now().Unix()), Member: job(fmt.Sprint("dead-", i), time.Now())}).Err())
	}
	must(rdb.IncrBy(ctx, prefix+"stat:failed", 40).Err())
	eventually(t, getMigration(ctx, m)).Should(gomega.HaveField("Status.Phase", v1alpha1.PhaseRolledBack))
	got, _ = getMigration(ctx, m)()
	t.Logf("rollback: %s", got.Status.Rollback.Reason)
	g.Expect(got.Status.Rollback).To(gomega.And(
		gomega.HaveField("Level", int32(1)), gomega.HaveField("Trigger", "Automatic"),
		gomega.HaveField("Reason", gomega.MatchRegexp(`^\d+\.\d% of the Sidekiq jobs processed since the baseline dead > 1% since \S+ \(high, held \d+s, acting now\)`)),
		gomega.HaveField("Breaches", gomega.ContainElement(gomega.And(
			gomega.HaveField("Severity", "High"), gomega.HaveField("Metric", "deadJobsRatio"), gomega.HaveField("Threshold", "1.00%"))))))
	g.Expect(got.Status.Traffic.Target).To(gomega.Equal(v1alpha1.TrafficToSource))
}
