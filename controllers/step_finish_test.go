package controllers

import (
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
)

// sidekiqDeployment is a Deployment whose one container runs sidekiq with these arguments.
func sidekiqDeployment(name string, args ...string) *appsv1.Deployment {
	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: name}}
	d.Spec.Template.Spec.Containers = []corev1.Container{{Name: "sidekiq", Command: append([]string{"bundle", "exec", "sidekiq", "-c", "25"}, args...)}}
	return d
}

// Finish re-points an old worker's HPA at the release worker made of it, never at one that
// consumes the scheduler queue, where the HPA would scale the scheduler.
func TestReleaseTargets(t *testing.T) {
	web, streaming := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "mastodon-web"}},
		&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "mastodon-streaming"}}
	release := func(workers ...*appsv1.Deployment) map[string]*appsv1.Deployment {
		out := map[string]*appsv1.Deployment{
			"web":       {ObjectMeta: metav1.ObjectMeta{Name: "mastodon-helm-web"}},
			"streaming": {ObjectMeta: metav1.ObjectMeta{Name: "mastodon-helm-streaming"}},
		}
		for _, w := range workers {
			out[strings.TrimPrefix(w.Name, "mastodon-helm-")] = w
		}
		return out
	}
	for _, tc := range []struct {
		name     string
		sidekiq  []*appsv1.Deployment
		release  map[string]*appsv1.Deployment
		setAside []v1alpha1.SetAsideDeployment
		want     map[string]string // source Deployment -> release Deployment, or -> "none: <part of why>"
	}{{
		name:    "generated values split the worker",
		sidekiq: []*appsv1.Deployment{sidekiqDeployment("mastodon-worker")},
		release: release(sidekiqDeployment("mastodon-helm-sidekiq-worker", "-q", "default,8", "-q", "push,6"),
			sidekiqDeployment("mastodon-helm-sidekiq-scheduler", "-q", "scheduler")),
		want: map[string]string{"mastodon-worker": "mastodon-helm-sidekiq-worker"},
	}, {
		name:    "generated values kept a one-pod worker whole",
		sidekiq: []*appsv1.Deployment{sidekiqDeployment("mastodon-worker")},
		release: release(sidekiqDeployment("mastodon-helm-sidekiq-worker")),
		want:    map[string]string{"mastodon-worker": "none: consumes the Sidekiq scheduler queue"},
	}, {
		name:    "each worker to its own",
		sidekiq: []*appsv1.Deployment{sidekiqDeployment("mastodon-sidekiq-default", "-q", "default"), sidekiqDeployment("mastodon-sidekiq-push", "-q", "push")},
		release: release(sidekiqDeployment("mastodon-helm-sidekiq-default", "-q", "default"), sidekiqDeployment("mastodon-helm-sidekiq-push", "-q", "push")),
		want:    map[string]string{"mastodon-sidekiq-default": "mastodon-helm-sidekiq-default", "mastodon-sidekiq-push": "mastodon-helm-sidekiq-push"},
	}, {
		name:    "the user's workers: the only one without scheduler",
		sidekiq: []*appsv1.Deployment{sidekiqDeployment("mastodon-worker")},
		release: release(sidekiqDeployment("mastodon-helm-sidekiq-queues", "-q", "default"), sidekiqDeployment("mastodon-helm-sidekiq-cron", "-q", "scheduler")),
		want:    map[string]string{"mastodon-worker": "mastodon-helm-sidekiq-queues"},
	}, {
		name:    "the user's workers: two without scheduler",
		sidekiq: []*appsv1.Deployment{sidekiqDeployment("mastodon-worker")},
		release: release(sidekiqDeployment("mastodon-helm-sidekiq-a", "-q", "default"), sidekiqDeployment("mastodon-helm-sidekiq-b", "-q", "push")),
		want:    map[string]string{"mastodon-worker": "none: 2 workers that do not consume"},
	}, {
		name:     "InPlace set one aside: named as it was",
		sidekiq:  []*appsv1.Deployment{sidekiqDeployment("mastodon-sidekiq-default-previous", "-q", "default"), sidekiqDeployment("mastodon-sidekiq-push", "-q", "push")},
		release:  release(sidekiqDeployment("mastodon-helm-sidekiq-default", "-q", "default"), sidekiqDeployment("mastodon-helm-sidekiq-push", "-q", "push")),
		setAside: []v1alpha1.SetAsideDeployment{{Name: "mastodon-sidekiq-default", As: "mastodon-sidekiq-default-previous"}},
		want:     map[string]string{"mastodon-sidekiq-default-previous": "mastodon-helm-sidekiq-default", "mastodon-sidekiq-push": "mastodon-helm-sidekiq-push"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			m := &v1alpha1.MastodonMigration{}
			if tc.setAside != nil {
				m.Status.Adoption = &v1alpha1.AdoptionStatus{SetAside: tc.setAside}
			}
			targets, none := releaseTargets(m, sourceStack{web: web, streaming: streaming, sidekiq: tc.sidekiq}, tc.release)
			if targets["mastodon-web"] != "mastodon-helm-web" || targets["mastodon-streaming"] != "mastodon-helm-streaming" {
				t.Errorf("web and streaming: %v", targets)
			}
			for from, want := range tc.want {
				if why, ok := strings.CutPrefix(want, "none: "); ok {
					if _, re := targets[from]; re || !strings.Contains(none[from], why) {
						t.Errorf("%s: target %q, none %q; want none: %s", from, targets[from], none[from], why)
					}
				} else if targets[from] != want {
					t.Errorf("%s: target %q (none: %q), want %s", from, targets[from], none[from], want)
				}
			}
		})
	}
}
