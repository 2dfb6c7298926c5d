package e2e

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
	"github.com/mastodon-operator/mastodon-operator/internal/snapshot"
)

// inPlace asks for the InPlace strategy with a short observation window.
func inPlace(m *v1alpha1.MastodonMigration) {
	m.Spec.Strategy = v1alpha1.StrategyInPlace
	shortWindow(m)
}

// The fixture's Services that serve Mastodon, by the release Service whose pods they must
// select once migrated.
var inPlaceSwitched = map[string]string{"mastodon-web": "mastodon-helm-web", "mastodon-assets": "mastodon-helm-web",
	"mastodon-emoji": "mastodon-helm-web", "mastodon-streaming": "mastodon-helm-streaming"}

// readyEndpoints counts the ready endpoints of a Service, as kube-proxy and a NEG see them.
func readyEndpoints(ctx context.Context, ns, service string) (int, error) {
	var list discoveryv1.EndpointSliceList
	if err := h.Client.List(ctx, &list, client.InNamespace(ns), client.MatchingLabels{discoveryv1.LabelServiceName: service}); err != nil {
		return 0, err
	}
	n := 0
	for _, s := range list.Items {
		for _, e := range s.Endpoints {
			if e.Conditions.Ready == nil || *e.Conditions.Ready {
				n++
			}
		}
	}
	return n, nil
}

// sampleEndpoints looks at the ready endpoints of the Services every 50 ms until stop is
// called, which returns each moment a Service had none.
func sampleEndpoints(ctx context.Context, ns string, services []string) (stop func() []string) {
	ctx, cancel := context.WithCancel(ctx)
	var mu sync.Mutex
	var empty []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			for _, s := range services {
				if n, err := readyEndpoints(ctx, ns, s); err == nil && n == 0 {
					mu.Lock()
					empty = append(empty, fmt.Sprintf("%s at %s", s, time.Now().Format(time.StampMilli)))
					mu.Unlock()
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	return func() []string {
		cancel()
		<-done
		return empty
	}
}

// sampleDefaultQueueWorkers samples, every 50 ms, the Ready pods that run Sidekiq's default queue
// (and push, ingress, ...): the old worker's, and the release's worker made of it, which
// generated values split from the scheduler queue. stop returns the moments there was none: jobs
// waited in Redis for a worker.
func sampleDefaultQueueWorkers(ctx context.Context, ns, release string) (stop func() []string) {
	ctx, cancel := context.WithCancel(ctx)
	var none []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			var old, split corev1.PodList
			errOld := h.Client.List(ctx, &old, client.InNamespace(ns), client.MatchingLabels{"app": "mastodon-worker"})
			errSplit := h.Client.List(ctx, &split, client.InNamespace(ns), client.MatchingLabels{
				"app.kubernetes.io/instance": release, "app.kubernetes.io/component": "sidekiq-worker"})
			if errOld == nil && errSplit == nil && readyPods(old.Items)+readyPods(split.Items) == 0 {
				none = append(none, time.Now().Format(time.StampMilli))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	return func() []string {
		cancel()
		<-done
		return none
	}
}

func readyPods(pods []corev1.Pod) int {
	n := 0
	for i := range pods {
		if pods[i].DeletionTimestamp == nil && podReady(&pods[i]) {
			n++
		}
	}
	return n
}

// deployWatched deploys the fixture in ns and starts sampling the ready endpoints of the Services
// users reach (sampleEndpoints), once each has one.
func deployWatched(t *testing.T, ctx context.Context, ns string) (objs []*unstructured.Unstructured, before map[string]*unstructured.Unstructured, stop func() []string) {
	t.Helper()
	objs, err := h.DeployMastodon(ctx, ns)
	if err != nil {
		t.Fatal(err)
	}
	before = liveObjects(t, ctx, ns, objs)
	var services []string
	for s := range inPlaceSwitched {
		services = append(services, s)
		eventually(t, func() (int, error) { return readyEndpoints(ctx, ns, s) }).Should(gomega.BeNumerically(">", 0), s)
	}
	return objs, before, sampleEndpoints(ctx, ns, services)
}

// completeWatched creates m and waits until it completes; the Services users reach never went
// without a ready endpoint meanwhile (stop is deployWatched's).
func completeWatched(t *testing.T, ctx context.Context, m *v1alpha1.MastodonMigration, stop func() []string) *v1alpha1.MastodonMigration {
	t.Helper()
	if err := h.Client.Create(ctx, m); err != nil {
		t.Fatal(err)
	}
	eventually(t, getMigration(ctx, m)).Should(gomega.HaveField("Status.Phase", v1alpha1.PhaseCompleted))
	gomega.NewWithT(t).Expect(stop()).To(gomega.BeEmpty(), "moments a Service users reach had no ready endpoint")
	got, err := getMigration(ctx, m)()
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// inPlaceSlowPods asks for InPlace with release pods that turn Ready 2 s after they start, as
// real ones take a while: traffic that moved before they were ready would find no ready
// endpoint for that long.
func inPlaceSlowPods(m *v1alpha1.MastodonMigration) {
	inPlace(m)
	m.Spec.Release.Values = &apiextensionsv1.JSON{Raw: []byte(`{"podAnnotations": {"pod-ready.stage.kwok.x-k8s.io/delay": "2s"}}`)}
}

// TestInPlaceMigrationCompletes moves the fixture component by component, and watches the
// Services users reach all along: none is ever without a ready endpoint.
func TestInPlaceMigrationCompletes(t *testing.T) {
	ctx := context.Background()
	ns := "mastodon-inplace"
	objs, before, stop := deployWatched(t, ctx, ns)
	stopQueues := sampleDefaultQueueWorkers(ctx, ns, "mastodon-helm")
	m := sampleMigration(t, ns)
	inPlaceSlowPods(m)
	got := completeWatched(t, ctx, m, stop)
	g := gomega.NewWithT(t)
	// The release's worker took the old worker's other queues before the scheduler moved.
	g.Expect(stopQueues()).To(gomega.BeEmpty(), "moments no Ready pod ran Sidekiq's default queue")
	g.Expect(meta.IsStatusConditionTrue(got.Status.Conditions, "Ready")).To(gomega.BeTrue())
	g.Expect(stepStates(got)).To(gomega.Equal([]string{"Preflight=Succeeded", "GenerateValues=Succeeded", "Snapshot=Succeeded",
		"DatabaseBackup=Skipped", "HandOver=Skipped", "Install=Succeeded", "Baseline=Succeeded", "HandOverScheduler=Succeeded", "RollSidekiq=Succeeded", "RollStreaming=Succeeded", "RollWeb=Succeeded",
		"Observe=Succeeded", "Finish=Succeeded"}))
	// Each component started only once the one before it had handed over.
	var prev *metav1.MicroTime
	for _, s := range got.Status.Steps[8:11] {
		if prev != nil {
			g.Expect(s.StartedAt.Time).NotTo(gomega.BeTemporally("<", prev.Time), s.Name)
		}
		prev = s.FinishedAt
	}
	g.Expect(got.Status.Steps[9].Message).To(gomega.ContainSubstring("Service/mastodon-streaming by ServiceSelector"))
	g.Expect(got.Status.Traffic).To(gomega.HaveField("Target", v1alpha1.TrafficToRelease))
	g.Expect(got.Status.Traffic.Changes).To(gomega.HaveLen(len(inPlaceSwitched)))

	after := liveObjects(t, ctx, ns, objs)
	for source, release := range inPlaceSwitched {
		svc := &corev1.Service{}
		g.Expect(h.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: release}, svc)).To(gomega.Succeed())
		g.Expect(after["Service/"+source].Object).To(gomega.HaveKeyWithValue("spec", gomega.HaveKeyWithValue("selector", selectorOf(svc))), source)
	}
	for _, key := range []string{"Service/mastodon-media-proxy", "Deployment/mastodon-media-proxy", "Ingress/mastodon", "BackendConfig/mastodon-web-backend-config"} {
		g.Expect(snapshot.Compare(after[key], before[key])).To(gomega.BeEmpty(), key)
	}
	// The old stack is at 0; the release runs the replicas the old stack ran (generated values).
	for _, name := range []string{"mastodon-web", "mastodon-streaming", "mastodon-worker"} {
		d := &appsv1.Deployment{}
		g.Expect(h.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, d)).To(gomega.Succeed())
		g.Expect(*d.Spec.Replicas).To(gomega.BeZero(), name)
	}
	var release appsv1.DeploymentList
	g.Expect(h.Client.List(ctx, &release, client.InNamespace(ns), client.MatchingLabels{"app.kubernetes.io/instance": "mastodon-helm"})).To(gomega.Succeed())
	// The old worker's 2 pods consumed the scheduler queue: the release runs its other queues on
	// 2 and scheduler on 1 of its own.
	wantReplicas := map[string]int32{"mastodon-helm-web": 2, "mastodon-helm-streaming": 2, "mastodon-helm-sidekiq-worker": 2, "mastodon-helm-sidekiq-scheduler": 1}
	g.Expect(release.Items).To(gomega.HaveLen(len(wantReplicas)))
	for _, d := range release.Items {
		g.Expect(wantReplicas).To(gomega.HaveKey(d.Name))
		g.Expect(*d.Spec.Replicas).To(gomega.Equal(wantReplicas[d.Name]), d.Name)
		g.Expect(d.Status.ReadyReplicas).To(gomega.Equal(wantReplicas[d.Name]), d.Name)
	}
	for s := range inPlaceSwitched {
		g.Expect(readyEndpoints(ctx, ns, s)).To(gomega.Equal(2), s)
	}
	expectOneDeployedRevision(g, ctx, ns, "mastodon-helm")
}

// TestInPlaceSurvivesARestartInEveryStep stops the operator as soon as each step is seen
// running and starts a new one: the migration still completes, with one Helm release. The
// release is named mastodon, so that the hand-over of the old stack's objects is interrupted too.
func TestInPlaceSurvivesARestartInEveryStep(t *testing.T) {
	ctx := context.Background()
	ns := "mastodon-inplace-restarts"
	if _, err := h.DeployMastodon(ctx, ns); err != nil {
		t.Fatal(err)
	}
	sampler := watchScheduler(t, ns, "mastodon")
	m := sampleMigration(t, ns)
	inPlace(m)
	m.Spec.Release.Name = "mastodon"
	if err := h.Client.Create(ctx, m); err != nil {
		t.Fatal(err)
	}
	restartedIn := restartInEveryStep(t, ctx, m)
	g := gomega.NewWithT(t)
	for _, step := range []string{"Preflight", "Snapshot", "HandOver", "Install", "HandOverScheduler", "RollSidekiq", "RollStreaming", "RollWeb", "Observe", "Finish"} {
		g.Expect(restartedIn).To(gomega.HaveKey(step), "the operator was not restarted while %s ran", step)
	}
	got, _ := getMigration(ctx, m)()
	g.Expect(stepStates(got)).To(gomega.ContainElements("RollSidekiq=Succeeded", "RollStreaming=Succeeded", "RollWeb=Succeeded"))
	g.Expect(got.Status.Traffic.Changes).To(gomega.HaveLen(len(inPlaceSwitched)), "each field recorded once")
	expectOneDeployedRevision(g, ctx, ns, "mastodon")
	expectOneSnapshot(g, ctx, ns)
	for _, name := range []string{"mastodon-web-previous", "mastodon-streaming-previous", "mastodon-worker"} {
		d := &appsv1.Deployment{}
		g.Expect(h.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, d)).To(gomega.Succeed())
		g.Expect(*d.Spec.Replicas).To(gomega.BeZero(), name)
	}
	clash, seen := sampler.done()
	expectSchedulerHandedOver(t, got, "mastodon-sidekiq-scheduler", clash, seen, 1)
}

// TestInPlaceLevel2RollbackRestoresTheFixtureExactly rolls a completed InPlace migration back
// at level 2: the release is gone and every object is as it was before.
func TestInPlaceLevel2RollbackRestoresTheFixtureExactly(t *testing.T) {
	ctx := context.Background()
	ns := "mastodon-inplace-level2"
	objs, before, m := migrateTo(t, ctx, ns, v1alpha1.PhaseCompleted, inPlace)
	rollBackTo(t, ctx, m, 2)
	g := gomega.NewWithT(t)
	expectReleaseGoneAndStackRestored(t, g, ctx, m, objs, before)
	for _, name := range []string{"mastodon-web", "mastodon-streaming", "mastodon-worker"} {
		g.Expect(h.WaitCurrent(ctx, "apps/v1", "Deployment", ns, name, time.Minute)).To(gomega.Succeed())
	}
}

// ownedReplicaSets names the ReplicaSets a Deployment controls, with their pods' count.
func ownedReplicaSets(ctx context.Context, ns, deployment string) ([]string, error) {
	var list appsv1.ReplicaSetList
	if err := h.Client.List(ctx, &list, client.InNamespace(ns)); err != nil {
		return nil, err
	}
	var out []string
	for _, rs := range list.Items {
		if c := metav1.GetControllerOf(&rs); c != nil && c.Kind == "Deployment" && c.Name == deployment && *rs.Spec.Replicas > 0 {
			out = append(out, rs.Name)
		}
	}
	return out, nil
}

// TestInPlaceHandsTheOldStacksObjectsToTheRelease names the release mastodon, so the chart's
// objects take the fixture's names (mastodon-web, mastodon-streaming, mastodon-env). The old
// Deployments are set aside with their running pods, the Services and the ConfigMap are adopted
// by the release as they are, every component rolls without a moment with no ready endpoint,
// and a level 2 rollback gives every object back exactly, with the old pods never restarted.
func TestInPlaceHandsTheOldStacksObjectsToTheRelease(t *testing.T) {
	ctx := context.Background()
	ns := "mastodon-inplace-adopt"
	objs, before, stop := deployWatched(t, ctx, ns)
	oldReplicaSets := map[string][]string{}
	for _, name := range []string{"mastodon-web", "mastodon-streaming"} {
		eventually(t, func() ([]string, error) { return ownedReplicaSets(ctx, ns, name) }).Should(gomega.HaveLen(1), name)
		oldReplicaSets[name], _ = ownedReplicaSets(ctx, ns, name)
	}
	m := sampleMigration(t, ns)
	inPlaceSlowPods(m)
	m.Spec.Release.Name = "mastodon"
	got := completeWatched(t, ctx, m, stop)
	g := gomega.NewWithT(t)
	g.Expect(stepStates(got)).To(gomega.ContainElements("HandOver=Succeeded", "RollWeb=Succeeded", "Finish=Succeeded"))
	g.Expect(got.Status.Adoption).NotTo(gomega.BeNil())
	g.Expect(got.Status.Adoption.SetAside).To(gomega.ConsistOf(
		v1alpha1.SetAsideDeployment{Name: "mastodon-web", As: "mastodon-web-previous"},
		v1alpha1.SetAsideDeployment{Name: "mastodon-streaming", As: "mastodon-streaming-previous"}))
	g.Expect(got.Status.Adoption.Adopted).To(gomega.ConsistOf("Service/mastodon-web", "Service/mastodon-streaming", "ConfigMap/mastodon-env"))

	// The old pods moved to the set-aside Deployments without a restart: the very ReplicaSets.
	for name, rss := range oldReplicaSets {
		aside := &appsv1.Deployment{}
		g.Expect(h.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name + "-previous"}, aside)).To(gomega.Succeed())
		g.Expect(*aside.Spec.Replicas).To(gomega.BeZero(), "the old %s is stopped", name)
		var rs appsv1.ReplicaSet
		g.Expect(h.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: rss[0]}, &rs)).To(gomega.Succeed())
		g.Expect(metav1.GetControllerOf(&rs)).To(gomega.HaveField("Name", name+"-previous"))
		// The name is the release's now, with the chart's selector.
		d := &appsv1.Deployment{}
		g.Expect(h.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, d)).To(gomega.Succeed())
		g.Expect(d.Spec.Selector.MatchLabels).To(gomega.HaveKeyWithValue("app.kubernetes.io/instance", "mastodon"))
		g.Expect(d.Annotations).To(gomega.HaveKeyWithValue("meta.helm.sh/release-name", "mastodon"))
		g.Expect(d.Status.ReadyReplicas).To(gomega.BeEquivalentTo(2), name)
	}
	// The adopted Services belong to the release and select its pods; the ConfigMap kept every
	// key the old pods read.
	for _, name := range []string{"mastodon-web", "mastodon-streaming"} {
		svc := &corev1.Service{}
		g.Expect(h.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, svc)).To(gomega.Succeed())
		g.Expect(svc.Annotations).To(gomega.HaveKeyWithValue("meta.helm.sh/release-name", "mastodon"))
		g.Expect(svc.Spec.Selector).To(gomega.HaveKeyWithValue("app.kubernetes.io/instance", "mastodon"))
		g.Expect(readyEndpoints(ctx, ns, name)).To(gomega.Equal(2), name)
	}
	env := &corev1.ConfigMap{}
	g.Expect(h.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "mastodon-env"}, env)).To(gomega.Succeed())
	for k, v := range before["ConfigMap/mastodon-env"].Object["data"].(map[string]any) {
		g.Expect(env.Data).To(gomega.HaveKeyWithValue(k, v), k)
	}
	expectOneDeployedRevision(g, ctx, ns, "mastodon")

	rollBackTo(t, ctx, m, 2)
	after := expectReleaseGoneAndStackRestored(t, g, ctx, m, objs, before)
	// Uninstalling the release left what it had adopted in place (never deleted and created
	// again, which would cut a Service off its load balancer).
	for _, key := range got.Status.Adoption.Adopted {
		g.Expect(after[key].GetUID()).To(gomega.Equal(before[key].GetUID()), key)
	}
	// and said so before it ran: the Services and the ConfigMap the old pods read are kept.
	rolledBack, _ := getMigration(ctx, m)()
	uninstall := rolledBack.Status.Rollback.Uninstall
	g.Expect(uninstall).NotTo(gomega.BeNil())
	t.Logf("status.rollback.uninstall.summary: %s", uninstall.Summary)
	g.Expect(uninstall.Keeps).To(gomega.ConsistOf(got.Status.Adoption.Adopted))
	g.Expect(uninstall.Keeps).To(gomega.ContainElement("ConfigMap/mastodon-env"))
	g.Expect(uninstall.Deletes).To(gomega.ContainElement("Deployment/mastodon-web"))
	for name, rss := range oldReplicaSets {
		g.Expect(h.WaitCurrent(ctx, "apps/v1", "Deployment", ns, name, time.Minute)).To(gomega.Succeed())
		g.Expect(ownedReplicaSets(ctx, ns, name)).To(gomega.Equal(rss), "%s runs its own ReplicaSet again", name)
		aside := &appsv1.Deployment{}
		err := h.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name + "-previous"}, aside)
		g.Expect(apierrors.IsNotFound(err)).To(gomega.BeTrue(), "%s-previous is gone: %v", name, err)
	}
}

// TestInPlaceLevel1RollbackMovesEveryComponentBack rolls back while the new stack is watched:
// the old pods run again, every Service selects them exactly as before, the release is at 0.
func TestInPlaceLevel1RollbackMovesEveryComponentBack(t *testing.T) {
	ctx := context.Background()
	ns := "mastodon-inplace-level1"
	objs, before, m := migrateTo(t, ctx, ns, v1alpha1.PhaseObserving, func(m *v1alpha1.MastodonMigration) {
		m.Spec.Strategy = v1alpha1.StrategyInPlace
		m.Spec.Analysis.Window = &metav1.Duration{Duration: 10 * time.Minute}
	})
	rollBackTo(t, ctx, m, 1)
	g := gomega.NewWithT(t)
	after := liveObjects(t, ctx, ns, objs)
	for name := range inPlaceSwitched {
		g.Expect(snapshot.Compare(after["Service/"+name], before["Service/"+name])).To(gomega.BeEmpty(), name)
	}
	for _, name := range []string{"mastodon-web", "mastodon-streaming", "mastodon-worker"} {
		g.Expect(h.WaitCurrent(ctx, "apps/v1", "Deployment", ns, name, time.Minute)).To(gomega.Succeed())
		d := &appsv1.Deployment{}
		g.Expect(h.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, d)).To(gomega.Succeed())
		g.Expect(*d.Spec.Replicas).To(gomega.BeEquivalentTo(2), name)
	}
	expectReleaseStopped(g, ctx, ns, "mastodon-helm")
}

// TestInPlaceLevel1RollbackAfterAHandOver rolls back at level 1 while the release named mastodon
// is watched: the set-aside Deployments run the old pods again, and the Services the release
// adopted select them exactly as before, still the release's objects.
func TestInPlaceLevel1RollbackAfterAHandOver(t *testing.T) {
	ctx := context.Background()
	ns := "mastodon-inplace-adopt-level1"
	_, before, m := migrateTo(t, ctx, ns, v1alpha1.PhaseObserving, func(m *v1alpha1.MastodonMigration) {
		m.Spec.Strategy = v1alpha1.StrategyInPlace
		m.Spec.Release.Name = "mastodon"
		m.Spec.Analysis.Window = &metav1.Duration{Duration: 10 * time.Minute}
	})
	rollBackTo(t, ctx, m, 1)
	g := gomega.NewWithT(t)
	for source := range inPlaceSwitched {
		svc := &corev1.Service{}
		g.Expect(h.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: source}, svc)).To(gomega.Succeed())
		g.Expect(before["Service/"+source].Object).To(gomega.HaveKeyWithValue("spec", gomega.HaveKeyWithValue("selector", selectorOf(svc))), source)
	}
	for _, name := range []string{"mastodon-web-previous", "mastodon-streaming-previous", "mastodon-worker"} {
		g.Expect(h.WaitCurrent(ctx, "apps/v1", "Deployment", ns, name, time.Minute)).To(gomega.Succeed())
		d := &appsv1.Deployment{}
		g.Expect(h.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, d)).To(gomega.Succeed())
		g.Expect(*d.Spec.Replicas).To(gomega.BeEquivalentTo(2), name)
	}
	expectReleaseStopped(g, ctx, ns, "mastodon")
}

// selectorOf is a Service's selector as an unstructured object holds it.
func selectorOf(svc *corev1.Service) map[string]any {
	out := map[string]any{}
	for k, v := range svc.Spec.Selector {
		out[k] = v
	}
	return out
}
