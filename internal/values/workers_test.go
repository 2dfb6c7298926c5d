package values

import (
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	"sigs.k8s.io/yaml"

	"github.com/mastodon-operator/mastodon-operator/internal/helm"
)

// The release worker that takes over an old Sidekiq Deployment's load, in the chart as rendered:
// with generated values the one made of it, never one that consumes the scheduler queue.
func TestReleaseWorker(t *testing.T) {
	one := int32(1)
	for _, tc := range []struct {
		name string
		// onePod runs the old worker on one pod, which generated values keep whole; values are
		// the user's, over the generated ones.
		onePod bool
		values string
		want   string // the release Deployment, or a part of why there is none
	}{
		{name: "generated, split", want: "mastodon-helm-sidekiq-worker"},
		{name: "generated, one pod", onePod: true, want: "its release worker, Deployment mastodon-helm-sidekiq-worker, consumes the Sidekiq scheduler queue"},
		{name: "the user's, one other worker", values: `{mastodon: {sidekiq: {workers: [
			{name: queues, replicas: 2, concurrency: 25, queues: [default, push]},
			{name: cron, replicas: 1, concurrency: 5, queues: [scheduler]}]}}}`, want: "mastodon-helm-sidekiq-queues"},
		{name: "the user's, two other workers", values: `{mastodon: {sidekiq: {workers: [
			{name: a, replicas: 2, concurrency: 25, queues: [default]},
			{name: b, replicas: 2, concurrency: 25, queues: [push]},
			{name: cron, replicas: 1, concurrency: 5, queues: [scheduler]}]}}}`, want: "the release has no worker worker, and 2 workers"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := fixtureSource(t)
			if tc.onePod {
				src.Sidekiq[0].Spec.Replicas = &one
			}
			vals, err := Generate(src)
			if err != nil {
				t.Fatal(err)
			}
			if tc.values != "" {
				var user map[string]any
				if err := yaml.Unmarshal([]byte(tc.values), &user); err != nil {
					t.Fatal(err)
				}
				vals = Merge(vals, user)
			}
			m, err := helm.Render(testChart(t), vals, "mastodon-helm", "mastodon")
			if err != nil {
				t.Fatal(err)
			}
			release, err := m.Deployments()
			if err != nil {
				t.Fatal(err)
			}
			d, why := ReleaseWorker([]*appsv1.Deployment{src.Sidekiq[0]}, 0, release)
			switch {
			case d != nil && d.Name != tc.want:
				t.Errorf("Deployment %s, want %s", d.Name, tc.want)
			case d == nil && !strings.Contains(why, tc.want):
				t.Errorf("none: %s; want %s", why, tc.want)
			}
		})
	}
}

// The worker split off for the scheduler queue takes a name no old worker has.
func TestSchedulerWorkerNameIsUnique(t *testing.T) {
	src := fixtureSource(t)
	two := int32(2)
	src.Sidekiq[0].Spec.Replicas = &two
	sched := src.Sidekiq[0].DeepCopy()
	sched.Name = "mastodon-sidekiq-scheduler"
	sched.Spec.Template.Spec.Containers[0].Command = []string{"bundle", "exec", "sidekiq", "-c", "5", "-q", "scheduler"}
	src.Sidekiq = append(src.Sidekiq, sched)
	vals, err := Generate(src)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, w := range lookup(vals, "mastodon", "sidekiq", "workers").([]any) {
		names = append(names, w.(map[string]any)["name"].(string))
	}
	if strings.Join(names, " ") != "worker scheduler-2 scheduler" {
		t.Errorf("workers %v, want worker scheduler-2 scheduler", names)
	}
	if got, _ := WorkerNames(src.Sidekiq); strings.Join(got, " ") != "worker scheduler" {
		t.Errorf("WorkerNames %v, want worker scheduler", got)
	}
}
