package scheduler

import (
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chart/loader"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/mastodon-operator/mastodon-operator/internal/helm"
	"github.com/mastodon-operator/mastodon-operator/test/fixture"
)

func pod(containers ...corev1.Container) corev1.PodSpec {
	return corev1.PodSpec{Containers: containers}
}

func worker(command, args []string, env ...corev1.EnvVar) corev1.Container {
	return corev1.Container{Name: "worker", Command: command, Args: args, Env: env}
}

func TestConsumes(t *testing.T) {
	for _, tc := range []struct {
		name string
		spec corev1.PodSpec
		want bool
		why  string // a part of the reason
	}{
		{"plain bundle exec sidekiq reads Mastodon's config", pod(worker([]string{"bundle", "exec", "sidekiq", "-c", "15"}, nil)), true, "config/sidekiq.yml"},
		{"-q scheduler alone", pod(worker([]string{"bundle", "exec", "sidekiq"}, []string{"-q", "scheduler"})), true, "-q scheduler"},
		{"weighted, quoted as the chart renders", pod(worker([]string{"bundle", "exec", "sidekiq", "-c", "25", "-q", "default,8", "-q", "scheduler,1"}, nil)), true, "-q scheduler"},
		{"-qscheduler glued", pod(worker(nil, []string{"bundle", "exec", "sidekiq", "-qscheduler"})), true, "-q scheduler"},
		{"--queue=scheduler", pod(worker([]string{"bin/sidekiq"}, []string{"--queue=scheduler"})), true, "-q scheduler"},
		{"--queue scheduler", pod(worker([]string{"/usr/local/bundle/bin/sidekiq", "--queue", "scheduler"}, nil)), true, "-q scheduler"},
		{"-q default,scheduler is one queue with a weight", pod(worker([]string{"bundle", "exec", "sidekiq", "-q", "default,scheduler"}, nil)), false, "names one queue and a weight"},
		{"only push and pull", pod(worker([]string{"bundle", "exec", "sidekiq", "-c", "50", "-q", "push", "-q", "pull"}, nil)), false, "only push, pull"},
		{"-C Mastodon's config", pod(worker([]string{"bundle", "exec", "sidekiq", "-C", "config/sidekiq.yml"}, nil)), true, "Mastodon's"},
		{"-C another file, unknown", pod(worker([]string{"bundle", "exec", "sidekiq", "-C", "/etc/sidekiq/ingress.yml"}, nil)), true, "cannot be read"},
		{"-q wins over -C", pod(worker([]string{"bundle", "exec", "sidekiq", "-C", "config/sidekiq.yml", "-q", "mailers"}, nil)), false, "only mailers"},
		{"sh -c with migrations first", pod(worker([]string{"/bin/sh", "-c"}, []string{"bundle exec rake db:migrate && exec bundle exec sidekiq -c 10 -q 'default,4' -q \"scheduler\""})), true, "-q scheduler"},
		{"bash -ec with an env queue", pod(worker([]string{"bash", "-ec", "exec bundle exec sidekiq -q $QUEUE"}, nil,
			corev1.EnvVar{Name: "QUEUE", Value: "scheduler"})), true, "-q scheduler"},
		{"sh -c without sidekiq is not a consumer", pod(worker([]string{"sh", "-c", "bundle exec rails s -p 3000"}, nil)), false, "no container runs sidekiq"},
		{"a sidecar beside the worker", pod(corev1.Container{Name: "statsd", Command: []string{"statsd_exporter"}},
			worker([]string{"bundle", "exec", "sidekiq", "-q", "ingress"}, nil)), false, "only ingress"},
		{"the image's own command", pod(corev1.Container{Name: "web", Image: "ghcr.io/mastodon/mastodon"}), false, "no container runs sidekiq"},
		{"web", pod(worker([]string{"bundle", "exec", "puma", "-C", "config/puma.rb"}, nil)), false, "no container runs sidekiq"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Consumes(tc.spec)
			if got.Consumes != tc.want || !strings.Contains(got.Why, tc.why) {
				t.Errorf("Consumes = %+v, want consumes=%v with a reason containing %q", got, tc.want, tc.why)
			}
		})
	}
}

// The fixture's layouts: production's one worker for all queues (`sidekiq -c 25`, no -q), and
// one-secret's worker that lists every queue.
func TestConsumesOnTheFixtureLayouts(t *testing.T) {
	for layout, want := range map[string]string{fixture.LayoutProduction: "mastodon-worker", fixture.LayoutOneSecret: "mastodon-sidekiq"} {
		objs, err := fixture.Layout(layout)
		if err != nil {
			t.Fatal(err)
		}
		var consumers []string
		for _, o := range objs {
			if o.GetKind() != "Deployment" {
				continue
			}
			var d appsv1.Deployment
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &d); err != nil {
				t.Fatal(err)
			}
			if Consumes(d.Spec.Template.Spec).Consumes {
				consumers = append(consumers, d.Name)
			}
		}
		if len(consumers) != 1 || consumers[0] != want {
			t.Errorf("layout %s: scheduler consumers %v, want [%s]", layout, consumers, want)
		}
	}
}

// The official chart's default worker all-queues lists scheduler; a worker of the values
// without it does not consume it.
func TestConsumesOnTheOfficialChart(t *testing.T) {
	chrt, err := loader.Load(fixture.OfficialChart())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		workers []any
		want    map[string]bool
	}{
		{nil, map[string]bool{"sidekiq-all-queues": true}},
		{[]any{
			map[string]any{"name": "push-pull", "replicas": 3, "concurrency": 50, "queues": []any{"push", "pull"}},
			map[string]any{"name": "rest", "replicas": 1, "concurrency": 25, "queues": []any{"default,8", "ingress", "mailers", "scheduler", "fasp"}},
		}, map[string]bool{"sidekiq-push-pull": false, "sidekiq-rest": true}},
	} {
		vals := fixture.OfficialChartMinimalValues("mastodon")
		if tc.workers != nil {
			vals["mastodon"].(map[string]any)["sidekiq"] = map[string]any{"workers": tc.workers}
		}
		manifests, err := helm.Render(chrt, vals, "mastodon-helm", "mastodon")
		if err != nil {
			t.Fatal(err)
		}
		deployments, err := manifests.Deployments()
		if err != nil {
			t.Fatal(err)
		}
		for component, want := range tc.want {
			d := deployments[component]
			if d == nil {
				t.Fatalf("no Deployment of component %s in %v", component, deployments)
			}
			if got := Consumes(d.Spec.Template.Spec); got.Consumes != want {
				t.Errorf("%s: %+v, want consumes=%v", d.Name, got, want)
			}
		}
		for _, c := range []string{"web", "streaming"} {
			if Consumes(deployments[c].Spec.Template.Spec).Consumes {
				t.Errorf("%s consumes the scheduler", c)
			}
		}
	}
}
