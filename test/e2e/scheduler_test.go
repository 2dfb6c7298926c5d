package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
	"github.com/mastodon-operator/mastodon-operator/internal/scheduler"
)

// schedulerSampler watches every pod of a namespace and, on each change, looks at the pods that
// consume Sidekiq's scheduler queue (judged from each pod's own command) by stack: the release's
// (by the chart's instance label) and the old one's.
type schedulerSampler struct {
	release string
	stop    chan struct{}

	mu sync.Mutex
	// pods are the consumer pods that exist, by name, and whether each is Ready.
	pods  map[string]consumerPod
	clash []string
	// holder is the stack whose consumer pods were last the only ones to exist and be Ready.
	holder      string
	lastGone    map[string]time.Time
	handOvers   []string
	handOverDur []time.Duration
}

type consumerPod struct {
	stack string
	ready bool
}

// watchScheduler starts a sampler on ns once it has seen every pod that exists.
func watchScheduler(t *testing.T, ns, release string) *schedulerSampler {
	t.Helper()
	cs, err := kubernetes.NewForConfig(h.Cluster.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	s := &schedulerSampler{release: release, stop: make(chan struct{}), pods: map[string]consumerPod{}, lastGone: map[string]time.Time{}}
	factory := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithNamespace(ns))
	inf := factory.Core().V1().Pods().Informer()
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { s.seen(o, false) },
		UpdateFunc: func(_, o any) { s.seen(o, false) },
		DeleteFunc: func(o any) {
			if d, ok := o.(cache.DeletedFinalStateUnknown); ok {
				o = d.Obj
			}
			s.seen(o, true)
		},
	}); err != nil {
		t.Fatal(err)
	}
	factory.Start(s.stop)
	if !cache.WaitForCacheSync(s.stop, inf.HasSynced) {
		t.Fatal("the pod informer did not sync")
	}
	return s
}

func (s *schedulerSampler) seen(o any, deleted bool) {
	p, ok := o.(*corev1.Pod)
	if !ok || !scheduler.Consumes(p.Spec).Consumes {
		return
	}
	now := time.Now()
	stack := "old"
	if p.Labels["app.kubernetes.io/instance"] == s.release {
		stack = "release"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if deleted {
		delete(s.pods, p.Name)
	} else {
		s.pods[p.Name] = consumerPod{stack: stack, ready: podReady(p)}
	}
	exists, ready := map[string]int{}, map[string]int{}
	for _, c := range s.pods {
		exists[c.stack]++
		if c.ready {
			ready[c.stack]++
		}
	}
	if deleted && exists[stack] == 0 {
		s.lastGone[stack] = now
	}
	// A Ready consumer beside any consumer pod of the other stack, terminating ones included:
	// a pod that is being deleted may still run its jobs.
	for _, st := range []string{"old", "release"} {
		other := map[string]string{"old": "release", "release": "old"}[st]
		if ready[st] > 0 && exists[other] > 0 {
			s.clash = append(s.clash, fmt.Sprintf("%s: %d Ready %s consumer(s) while %d %s consumer pod(s) exist",
				now.Format(time.StampMilli), ready[st], st, exists[other], other))
		}
	}
	if !deleted && ready[stack] > 0 && exists[otherStack(stack)] == 0 && s.holder != stack {
		if s.holder != "" {
			gone := s.lastGone[s.holder]
			s.handOvers = append(s.handOvers, fmt.Sprintf("scheduler %s -> %s: old stopped %s, new ready %s (%s)", s.holder, stack,
				gone.UTC().Format("15:04:05.000"), now.UTC().Format("15:04:05.000"), now.Sub(gone).Round(time.Millisecond)))
			s.handOverDur = append(s.handOverDur, now.Sub(gone))
		}
		s.holder = stack
	}
}

func otherStack(stack string) string {
	if stack == "old" {
		return "release"
	}
	return "old"
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// done stops the sampler and returns the moments both stacks ran a consumer, and the hand-overs
// it saw.
func (s *schedulerSampler) done() (clash, handOvers []string) {
	close(s.stop)
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.clash), slices.Clone(s.handOvers)
}

// expectSchedulerHandedOver checks what the operator recorded against what the sampler saw.
func expectSchedulerHandedOver(t *testing.T, got *v1alpha1.MastodonMigration, holder string, clash, seen []string, want int) {
	t.Helper()
	g := gomega.NewWithT(t)
	for _, line := range seen {
		t.Logf("sampler: %s", line)
	}
	st := got.Status.Scheduler
	g.Expect(st).NotTo(gomega.BeNil(), "status.scheduler")
	for _, ho := range st.HandOvers {
		t.Logf("status.scheduler.handOvers: %s -> %s: old stopped %s, new ready %s", ho.From, ho.To,
			ho.OldStoppedAt.UTC().Format("15:04:05.000"), ho.NewStartedAt.UTC().Format("15:04:05.000"))
	}
	t.Logf("status.scheduler: holder %s since %s", st.Holder, st.Since.UTC().Format("15:04:05.000"))
	g.Expect(clash).To(gomega.BeEmpty(), "moments with scheduler consumers of both stacks")
	g.Expect(seen).To(gomega.HaveLen(want), "hand-overs the sampler saw")
	g.Expect(st.HandOvers).To(gomega.HaveLen(want))
	g.Expect(st.Holder).To(gomega.Equal(holder))
	for _, ho := range st.HandOvers {
		g.Expect(ho.NewStartedAt.Time).To(gomega.BeTemporally(">=", ho.OldStoppedAt.Time), ho.From+" -> "+ho.To)
	}
}

// TestBlueGreenHandsTheSchedulerOverAndBack migrates the production layout, whose one worker
// for all queues (`sidekiq -c 25`, no -q, 2 replicas) consumes the scheduler queue, to the
// release (whose generated values split it: worker on the other queues, scheduler on its own),
// then rolls back at level 1, while a sampler watches every pod: at no moment does a consumer
// of one stack run beside one of the other.
func TestBlueGreenHandsTheSchedulerOverAndBack(t *testing.T) {
	ctx := context.Background()
	ns := "mastodon-scheduler"
	if _, err := h.DeployMastodon(ctx, ns); err != nil {
		t.Fatal(err)
	}
	s := watchScheduler(t, ns, "mastodon-helm")
	m := sampleMigration(t, ns)
	m.Spec.Analysis.Window = nil
	if err := h.Client.Create(ctx, m); err != nil {
		t.Fatal(err)
	}
	eventually(t, getMigration(ctx, m)).Should(gomega.HaveField("Status.Phase", v1alpha1.PhaseObserving))
	got, _ := getMigration(ctx, m)()
	gomega.NewWithT(t).Expect(got.Status.Scheduler).To(gomega.HaveField("Holder", "mastodon-helm-sidekiq-scheduler"))
	rollBackTo(t, ctx, m, 1)
	got, _ = getMigration(ctx, m)()
	clash, seen := s.done()
	expectSchedulerHandedOver(t, got, "mastodon-worker", clash, seen, 2)
	for _, step := range got.Status.Steps {
		if strings.Contains(step.Name, "Scheduler") || step.Name == "RollbackSource" {
			t.Logf("step %s: %s", step.Name, step.Message)
		}
	}
}

// TestMaintenanceHandsTheSchedulerOver: the old stack stops before the install, and the
// release's consumer starts only at the hand-over.
func TestMaintenanceHandsTheSchedulerOver(t *testing.T) {
	ctx := context.Background()
	ns := "mastodon-scheduler-maintenance"
	if _, err := h.DeployMastodon(ctx, ns); err != nil {
		t.Fatal(err)
	}
	s := watchScheduler(t, ns, "mastodon-helm")
	m := sampleMigration(t, ns)
	maintenance(m)
	if err := h.Client.Create(ctx, m); err != nil {
		t.Fatal(err)
	}
	eventually(t, getMigration(ctx, m)).Should(gomega.HaveField("Status.Phase", v1alpha1.PhaseCompleted))
	got, _ := getMigration(ctx, m)()
	clash, seen := s.done()
	expectSchedulerHandedOver(t, got, "mastodon-helm-sidekiq-scheduler", clash, seen, 1)
}

// TestInPlaceHandsTheSchedulerOverAndBack: InPlace rolls Sidekiq first; the scheduler moves
// before the roll, then back at level 1.
func TestInPlaceHandsTheSchedulerOverAndBack(t *testing.T) {
	ctx := context.Background()
	ns := "mastodon-scheduler-inplace"
	if _, err := h.DeployMastodon(ctx, ns); err != nil {
		t.Fatal(err)
	}
	s := watchScheduler(t, ns, "mastodon-helm")
	m := sampleMigration(t, ns)
	inPlace(m)
	m.Spec.Analysis.Window = nil
	if err := h.Client.Create(ctx, m); err != nil {
		t.Fatal(err)
	}
	eventually(t, getMigration(ctx, m)).Should(gomega.HaveField("Status.Phase", v1alpha1.PhaseObserving))
	rollBackTo(t, ctx, m, 1)
	got, _ := getMigration(ctx, m)()
	clash, seen := s.done()
	expectSchedulerHandedOver(t, got, "mastodon-worker", clash, seen, 2)
}

// holdFinalizer keeps a deleted pod Terminating, as a Sidekiq that drains its jobs for its
// grace period does.
const holdFinalizer = "e2e.mastodon-operator.io/hold"

// setPodFinalizer adds or removes holdFinalizer on every pod of the old worker.
func setPodFinalizer(t *testing.T, ctx context.Context, ns string, hold bool) {
	t.Helper()
	holdPods(t, ctx, ns, client.MatchingLabels{"app": "mastodon-worker"}, hold)
}

// holdPods adds or removes holdFinalizer on every pod that matches.
func holdPods(t *testing.T, ctx context.Context, ns string, matching client.MatchingLabels, hold bool) {
	t.Helper()
	var pods corev1.PodList
	if err := h.Client.List(ctx, &pods, client.InNamespace(ns), matching); err != nil {
		t.Fatal(err)
	}
	for i := range pods.Items {
		p := &pods.Items[i]
		before := p.DeepCopy()
		if hold {
			p.Finalizers = append(p.Finalizers, holdFinalizer)
		} else {
			p.Finalizers = slices.DeleteFunc(p.Finalizers, func(f string) bool { return f == holdFinalizer })
		}
		if err := h.Client.Patch(ctx, p, client.MergeFrom(before)); err != nil {
			t.Fatal(err)
		}
	}
}

// TestTheSchedulerWaitsForTheOldWorkersPodsToGo: the old worker's pods stay Terminating after
// it is scaled to 0 (its Deployment then counts no replica), and the operator restarts
// meanwhile: the release's scheduler worker stays at 0 until the last old pod is gone, while
// its worker of the other queues runs.
func TestTheSchedulerWaitsForTheOldWorkersPodsToGo(t *testing.T) {
	ctx := context.Background()
	ns := "mastodon-scheduler-draining"
	if _, err := h.DeployMastodon(ctx, ns); err != nil {
		t.Fatal(err)
	}
	s := watchScheduler(t, ns, "mastodon-helm")
	setPodFinalizer(t, ctx, ns, true)
	m := sampleMigration(t, ns)
	m.Spec.Analysis.Window = nil
	if err := h.Client.Create(ctx, m); err != nil {
		t.Fatal(err)
	}
	handOver := func(m *v1alpha1.MastodonMigration) v1alpha1.StepStatus {
		for _, st := range m.Status.Steps {
			if st.Name == "HandOverScheduler" {
				return st
			}
		}
		return v1alpha1.StepStatus{}
	}
	draining := gomega.WithTransform(handOver, gomega.And(gomega.HaveField("State", v1alpha1.StepRunning),
		gomega.HaveField("Message", gomega.MatchRegexp(`^waiting for 2 pods of the scheduler consumer mastodon-worker to stop before mastodon-helm-sidekiq-scheduler starts: `+
			`mastodon-worker-\S+ \(Terminating\), mastodon-worker-\S+ \(Terminating\)$`))))
	eventually(t, getMigration(ctx, m)).Should(draining)
	var err error
	if err = operator.Stop(); err != nil {
		t.Fatal(err)
	}
	if operator, err = h.StartOperator(ctx); err != nil {
		t.Fatal(err)
	}
	g := gomega.NewWithT(t)
	consumer, others := &appsv1.Deployment{}, &appsv1.Deployment{}
	g.Consistently(func(g gomega.Gomega) {
		g.Expect(h.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "mastodon-helm-sidekiq-scheduler"}, consumer)).To(gomega.Succeed())
		g.Expect(*consumer.Spec.Replicas).To(gomega.BeZero(), "the release's scheduler worker started beside Terminating old pods")
		// The generated values split the old worker: its other queues run on the release's
		// worker, at the old one's 2 replicas, while the old pods drain.
		g.Expect(h.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "mastodon-helm-sidekiq-worker"}, others)).To(gomega.Succeed())
		g.Expect(*others.Spec.Replicas).To(gomega.Equal(int32(2)), "the release's worker of the other queues")
		got, err := getMigration(ctx, m)()
		g.Expect(err).NotTo(gomega.HaveOccurred())
		g.Expect(got).To(draining)
	}).WithTimeout(3 * time.Second).WithPolling(200 * time.Millisecond).Should(gomega.Succeed())
	got, _ := getMigration(ctx, m)()
	t.Logf("while the old pods drain: %s", handOver(got).Message)

	setPodFinalizer(t, ctx, ns, false)
	eventually(t, getMigration(ctx, m)).Should(gomega.HaveField("Status.Phase", v1alpha1.PhaseObserving))
	got, _ = getMigration(ctx, m)()
	clash, seen := s.done()
	expectSchedulerHandedOver(t, got, "mastodon-helm-sidekiq-scheduler", clash, seen, 1)
	t.Logf("step HandOverScheduler: %s", handOver(got).Message)
}
