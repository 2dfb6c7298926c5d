package preflight

import (
	"context"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
)

// oneSchedulerFindings runs OneScheduler on the stack, as "class object: message".
func oneSchedulerFindings(t *testing.T, s *stack) []string {
	t.Helper()
	in := s.in
	in.preview = &releasePreview{}
	found, err := oneScheduler(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, f := range found {
		out = append(out, string(f.Class)+" "+f.Object+": "+f.Message)
	}
	return out
}

func workers(entries ...map[string]any) map[string]any {
	list := make([]any, len(entries))
	for i, e := range entries {
		list[i] = e
	}
	return setValue("mastodon.sidekiq.workers", list)
}

// The production fixture's worker runs `bundle exec sidekiq -c 25`, which reads
// config/sidekiq.yml and so consumes the scheduler queue, with 2 replicas and an HPA of 2 to 8.
func TestOneSchedulerCountsTheSchedulersOfBothStacks(t *testing.T) {
	const old = "Informational Deployment/mastodon-worker: the old stack already runs 2 schedulers: " +
		"every scheduled job runs 2 times (up to 8 times as its HPA scales it), where Mastodon wants one process on the Sidekiq scheduler queue (Deployment mastodon-worker: " +
		"2 pods (HorizontalPodAutoscaler mastodon-worker: 2 to 8), sidekiq without -q reads Mastodon's config/sidekiq.yml, which lists scheduler); "
	// The generated values split the worker: 2 pods on the other queues, 1 on scheduler.
	const releasesOne = old + "the release runs 1 (Deployment mastodon-helm-sidekiq-scheduler, 1 replica: " +
		"mastodon.sidekiq.workers[1].replicas), started once the old ones' pods are gone"
	for _, tc := range []struct {
		name      string
		overrides map[string]any
		extra     bool
		want      []string
	}{
		{name: "the generated values run one", want: []string{releasesOne}},
		{name: "values that run three pods of a worker without queues", overrides: workers(
			map[string]any{"name": "worker", "replicas": 3, "queues": []any{}}),
			want: []string{old + "the release would run 3: see the Blocks finding on it",
				"Blocks Deployment/mastodon-helm-sidekiq-worker: the release's values run 3 pods on the Sidekiq scheduler queue (sidekiq " +
					"without -q reads Mastodon's config/sidekiq.yml, which lists scheduler): every scheduled job would run 3 times; set " +
					"mastodon.sidekiq.workers[0].replicas to 1 in spec.release.values, and give the worker's other queues a worker of their own to scale them"}},
		// The chart refuses a worker that lists `scheduler` with more replicas, not `scheduler,1`.
		{name: "values that weigh the scheduler queue", overrides: workers(
			map[string]any{"name": "push", "replicas": 2, "queues": []any{"push"}},
			map[string]any{"name": "rest", "replicas": 2, "queues": []any{"default,8", "scheduler,1"}}),
			want: []string{old + "the release would run 2: see the Blocks finding on it",
				"Blocks Deployment/mastodon-helm-sidekiq-rest: the release's values run 2 pods on the Sidekiq scheduler queue (sidekiq -q " +
					"scheduler): every scheduled job would run 2 times; set mastodon.sidekiq.workers[1].replicas to 1 in spec.release.values, " +
					"and give the worker's other queues a worker of their own to scale them"}},
		{name: "values with two consumers", overrides: workers(
			map[string]any{"name": "scheduler", "replicas": 1, "queues": []any{"scheduler"}},
			map[string]any{"name": "all", "replicas": 1, "queues": []any{}}),
			want: []string{old + "the release would run 2: see the Blocks finding on it",
				"Blocks Deployment/mastodon-helm-sidekiq-all: 2 workers of the release consume the Sidekiq scheduler queue (Deployment " +
					"mastodon-helm-sidekiq-all: 1 pod, sidekiq without -q reads Mastodon's config/sidekiq.yml, which lists scheduler; " +
					"Deployment mastodon-helm-sidekiq-scheduler: 1 pod, sidekiq -q scheduler): they would run 2 schedulers, and every " +
					"scheduled job 2 times; keep scheduler in the queues of one worker with 1 replica (mastodon.sidekiq.workers[1].queues, " +
					"mastodon.sidekiq.workers[0].queues in spec.release.values; a worker without queues reads config/sidekiq.yml, which lists scheduler)"}},
		// Generated values split the worker: the HPA moves to the half without scheduler.
		{name: "an HPA that Finish re-points", extra: true, want: []string{releasesOne}},
		{name: "an HPA that Finish re-points at the user's worker without scheduler", extra: true, overrides: workers(
			map[string]any{"name": "queues", "replicas": 2, "queues": []any{"default", "push"}},
			map[string]any{"name": "cron", "replicas": 1, "queues": []any{"scheduler"}}),
			want: []string{old + "the release runs 1 (Deployment mastodon-helm-sidekiq-cron, 1 replica: mastodon.sidekiq.workers[1].replicas), " +
				"started once the old ones' pods are gone"}},
		{name: "an HPA that Finish leaves", extra: true, overrides: workers(
			map[string]any{"name": "worker", "replicas": 1, "queues": []any{}}),
			want: []string{old + "the release runs 1 (Deployment mastodon-helm-sidekiq-worker, 1 replica: mastodon.sidekiq.workers[0].replicas), " +
				"started once the old ones' pods are gone",
				"Changes HorizontalPodAutoscaler/mastodon-worker: scales Deployment mastodon-worker (2 to 8 pods), but Finish will not " +
					"re-point it at the release: its release worker, Deployment mastodon-helm-sidekiq-worker, consumes the Sidekiq scheduler " +
					"queue (sidekiq without -q reads Mastodon's config/sidekiq.yml, which lists scheduler); it stays on the old Deployment, " +
					"which it no longer scales at 0 replicas, and the release's workers keep the replicas of the values: for the HPA to " +
					"scale the release, give that Deployment's queues but scheduler a worker named worker in spec.release.values (mastodon.sidekiq.workers), " +
					"or leave the HPA out of spec.source.extraResources to keep it so"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := preparedStack(t)
			s.overrides = tc.overrides
			if tc.extra {
				s.in.Migration.Spec.Source.ExtraResources = []v1alpha1.ObjectRef{
					{APIVersion: "autoscaling/v2", Kind: "HorizontalPodAutoscaler", Name: "mastodon-worker"}}
			}
			got := oneSchedulerFindings(t, s)
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("findings\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

// One old worker on the queue, and the rest on others: nothing to say.
func TestOneSchedulerSaysNothingOfOneScheduler(t *testing.T) {
	s := preparedStack(t)
	ctx := context.Background()
	hpa := &autoscalingv2.HorizontalPodAutoscaler{ObjectMeta: metav1.ObjectMeta{Namespace: s.ns, Name: "mastodon-worker"}}
	if err := s.c.Delete(ctx, hpa); err != nil {
		t.Fatal(err)
	}
	d := &appsv1.Deployment{}
	if err := s.c.Get(ctx, client.ObjectKey{Namespace: s.ns, Name: "mastodon-worker"}, d); err != nil {
		t.Fatal(err)
	}
	one := int32(1)
	d.Spec.Replicas = &one
	if err := s.c.Update(ctx, d); err != nil {
		t.Fatal(err)
	}
	if got := oneSchedulerFindings(t, s); len(got) > 0 {
		t.Errorf("findings %q, want none", got)
	}
}
