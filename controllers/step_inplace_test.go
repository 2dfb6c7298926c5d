package controllers

import (
	"reflect"
	"testing"

	"helm.sh/helm/v3/pkg/chart/loader"
	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
	"github.com/mastodon-operator/mastodon-operator/internal/helm"
	"github.com/mastodon-operator/mastodon-operator/internal/traffic"
	"github.com/mastodon-operator/mastodon-operator/test/fixture"
)

func renderReplicas(t *testing.T, vals map[string]any) map[string]int32 {
	t.Helper()
	chrt, err := loader.Load(fixture.OfficialChart())
	if err != nil {
		t.Fatal(err)
	}
	m, err := helm.Render(chrt, vals, "mastodon-helm", "mastodon")
	if err != nil {
		t.Fatal(err)
	}
	got, err := renderedReplicas(m)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func TestStoppedValuesInstallEveryDeploymentAtZero(t *testing.T) {
	chrt, err := loader.Load(fixture.OfficialChart())
	if err != nil {
		t.Fatal(err)
	}
	required := fixture.OfficialChartMinimalValues("mastodon")
	withWorkers := fixture.OfficialChartMinimalValues("mastodon")
	withWorkers["mastodon"].(map[string]any)["web"] = map[string]any{"replicas": int64(3)}
	withWorkers["mastodon"].(map[string]any)["sidekiq"] = map[string]any{"workers": []any{
		map[string]any{"name": "default", "replicas": int64(2), "concurrency": int64(10)},
		map[string]any{"name": "push", "replicas": int64(4)},
	}}
	for name, tc := range map[string]struct {
		vals        map[string]any
		running     map[string]int32
		keptWorkers bool
	}{
		"the chart's default worker": {vals: required,
			running: map[string]int32{"web": 1, "streaming": 1, "sidekiq-all-queues": 1}},
		"the values' workers": {vals: withWorkers, keptWorkers: true,
			running: map[string]int32{"web": 3, "streaming": 1, "sidekiq-default": 2, "sidekiq-push": 4}},
	} {
		t.Run(name, func(t *testing.T) {
			if got := renderReplicas(t, tc.vals); !reflect.DeepEqual(got, tc.running) {
				t.Fatalf("replicas from the values: got %v, want %v", got, tc.running)
			}
			stopped := stoppedValues(tc.vals, chrt)
			want := map[string]int32{}
			for c := range tc.running {
				want[c] = 0
			}
			if got := renderReplicas(t, stopped); !reflect.DeepEqual(got, want) {
				t.Fatalf("replicas of the InPlace install: got %v, want every Deployment at 0: %v", got, want)
			}
			if again := renderReplicas(t, tc.vals); !reflect.DeepEqual(again, tc.running) {
				t.Fatalf("stoppedValues changed the values it was given: now %v", again)
			}
			if tc.keptWorkers {
				workers, _ := lookupList(stopped, "mastodon", "sidekiq", "workers")
				if c := workers[0].(map[string]any)["concurrency"]; c != int64(10) {
					t.Fatalf("a stopped worker must keep its other settings: concurrency is %v", c)
				}
			}
		})
	}
}

func TestComponentDeploymentsOfTheRelease(t *testing.T) {
	d := func(name string) *appsv1.Deployment {
		return &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: name}}
	}
	release := map[string]*appsv1.Deployment{"web": d("r-web"), "streaming": d("r-streaming"),
		"sidekiq-push": d("r-sidekiq-push"), "sidekiq-default": d("r-sidekiq-default")}
	names := func(ds []*appsv1.Deployment) []string {
		var out []string
		for _, d := range ds {
			out = append(out, d.Name)
		}
		return out
	}
	for component, want := range map[string][]string{
		rollSidekiq: {"r-sidekiq-default", "r-sidekiq-push"}, rollStreaming: {"r-streaming"}, rollWeb: {"r-web"},
	} {
		if got := names(componentDeployments(release, component)); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: got %v, want %v", component, got, want)
		}
	}
}

func TestComponentChangesAreRecordedOnce(t *testing.T) {
	planned := []traffic.Change{
		{Kind: "Service", Name: "mastodon-web", Path: traffic.PathSelector, Component: traffic.Web, Before: `{"app":"w"}`, After: `{"x":"1"}`},
		{Kind: "Service", Name: "mastodon-streaming", Path: traffic.PathSelector, Component: traffic.Streaming, Before: `{"app":"s"}`, After: `{"x":"2"}`},
		{Kind: "Service", Name: "mastodon-assets", Path: traffic.PathSelector, Component: traffic.Web, Before: `{"app":"w"}`, After: `{"x":"1"}`},
	}
	streaming := componentChanges(planned, traffic.Streaming)
	if len(streaming) != 1 || streaming[0].Name != "mastodon-streaming" {
		t.Fatalf("streaming changes: got %v", streaming)
	}
	recorded, added := appendChanges(nil, recordChanges(streaming))
	if added != 1 {
		t.Fatalf("added %d, want 1", added)
	}
	recorded, added = appendChanges(recorded, recordChanges(componentChanges(planned, traffic.Web)))
	if added != 2 || len(recorded) != 3 {
		t.Fatalf("after web: added %d, recorded %d; want 2 and 3", added, len(recorded))
	}
	again, added := appendChanges(recorded, recordChanges(componentChanges(planned, traffic.Web)))
	if added != 0 || !reflect.DeepEqual(again, recorded) {
		t.Fatalf("a rerun must record nothing twice: added %d, recorded %v", added, again)
	}
	want := []v1alpha1.TrafficChange{recordChanges(streaming)[0]}
	if !reflect.DeepEqual(recorded[:1], want) {
		t.Fatalf("the first recorded change must stay first (Reverse undoes in the opposite order): %v", recorded)
	}
}
