package controllers

import (
	"reflect"
	"testing"

	"helm.sh/helm/v3/pkg/chart/loader"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
	"github.com/mastodon-operator/mastodon-operator/test/fixture"
)

// The BlueGreen and Maintenance installs start every Deployment but the Sidekiq workers that
// consume the scheduler queue, as the official chart renders them.
func TestTheInstallStopsOnlyTheSchedulerConsumers(t *testing.T) {
	chrt, err := loader.Load(fixture.OfficialChart())
	if err != nil {
		t.Fatal(err)
	}
	split := fixture.OfficialChartMinimalValues("mastodon")
	split["mastodon"].(map[string]any)["sidekiq"] = map[string]any{"workers": []any{
		map[string]any{"name": "push-pull", "replicas": int64(3), "concurrency": int64(50), "queues": []any{"push", "pull"}},
		map[string]any{"name": "rest", "replicas": int64(1), "queues": []any{"default,8", "ingress", "mailers", "scheduler", "fasp"}},
		// No queues: `sidekiq -c 25` reads Mastodon's config/sidekiq.yml, which lists scheduler.
		map[string]any{"name": "config", "replicas": int64(1)},
	}}
	m := &v1alpha1.MastodonMigration{}
	m.Namespace, m.Spec.Release.Name = "mastodon", "mastodon-helm"
	for name, tc := range map[string]struct {
		vals map[string]any
		want map[string]int32
	}{
		"the chart's default worker": {fixture.OfficialChartMinimalValues("mastodon"),
			map[string]int32{"web": 1, "streaming": 1, "sidekiq-all-queues": 0}},
		"workers split by queue": {split,
			map[string]int32{"web": 1, "streaming": 1, "sidekiq-push-pull": 3, "sidekiq-rest": 0, "sidekiq-config": 0}},
	} {
		t.Run(name, func(t *testing.T) {
			consumers, err := schedulerWorkers(chrt, tc.vals, m)
			if err != nil {
				t.Fatal(err)
			}
			stopped := stopWorkers(tc.vals, chrt, func(w string) bool { return consumers[w] })
			if got := renderReplicas(t, stopped); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("replicas of the install: got %v, want %v", got, tc.want)
			}
		})
	}
}
