package e2e

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/onsi/gomega"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
	"github.com/mastodon-operator/mastodon-operator/controllers"
	"github.com/mastodon-operator/mastodon-operator/test/harness"
)

// haLeaderElection is short so that a standby takes over in seconds; main keeps
// controller-runtime's defaults (15s/10s/2s).
var haLeaderElection = &harness.LeaderElection{LeaseDuration: 4 * time.Second, RenewDeadline: 3 * time.Second, RetryPeriod: time.Second}

// TestHighAvailability runs the operator as two replicas with leader election, as a Deployment
// of two with --leader-elect does, and injects faults: the leader crashes in the middle of an
// install, of the traffic switch and of a level 2 rollback, and the API server restarts during
// an install. Each time the migration ends as it would have without the fault: one release
// revision, one snapshot, and the Services that carry Mastodon's traffic on ready pods.
func TestHighAvailability(t *testing.T) {
	ctx := context.Background()
	// The suite's operator does not elect a leader, so it would reconcile beside the pair: it
	// stops for this test and starts again after it, after the pair has stopped.
	if err := operator.Stop(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		var err error
		if operator, err = h.StartOperator(ctx); err != nil {
			t.Error(err)
		}
	})
	var faults []*fault
	t.Cleanup(func() { logFaults(t, faults) })
	pair := startReplicas(t, ctx)
	t.Cleanup(pair.stop)

	// completesAfter crashes the leader at the first request at matches, in step, and expects
	// the standby to complete the migration with one revision, one snapshot and the traffic on
	// ready release pods.
	completesAfter := func(t *testing.T, ns, step string, at func(*http.Request) bool) {
		f := pair.crashAt(t, ctx, "leader crashes", step, ns, at)
		faults = append(faults, f)
		objs, _, m := migrateTo(t, ctx, ns, v1alpha1.PhaseCompleted, shortWindow)
		g := gomega.NewWithT(t)
		pair.expectTakeover(g, ctx, f)
		expectOneDeployedRevision(g, ctx, ns, m.Spec.Release.Name)
		expectOneSnapshot(g, ctx, ns)
		expectTrafficOnRelease(t, ctx, ns, objs)
		f.outcome = "Completed, 1 revision, 1 snapshot, traffic on ready release pods"
	}

	t.Run("leader crashes in the middle of an install", func(t *testing.T) {
		ns := "mastodon-ha-install"
		completesAfter(t, ns, "Install", writesTo(http.MethodPost, "/apis/apps/v1/namespaces/"+ns+"/deployments", 1))
	})

	t.Run("leader crashes in the middle of the traffic switch", func(t *testing.T) {
		ns := "mastodon-ha-switch"
		// The second Service written: one Service has moved, the others not yet.
		completesAfter(t, ns, "ShiftTraffic", writesTo(http.MethodPatch+","+http.MethodPut, "/api/v1/namespaces/"+ns+"/services/", 2))
	})

	t.Run("leader crashes in the middle of a level 2 rollback", func(t *testing.T) {
		ns := "mastodon-ha-rollback"
		objs, before, m := migrateTo(t, ctx, ns, v1alpha1.PhaseObserving, func(m *v1alpha1.MastodonMigration) {
			m.Spec.Analysis.Window = &metav1.Duration{Duration: 10 * time.Minute}
		})
		// The uninstall's second Deployment: the release is half gone.
		f := pair.crashAt(t, ctx, "leader crashes", "RollbackUninstall", ns, writesTo(http.MethodDelete, "/apis/apps/v1/namespaces/"+ns+"/deployments/", 2))
		faults = append(faults, f)
		rollBackTo(t, ctx, m, 2)
		g := gomega.NewWithT(t)
		pair.expectTakeover(g, ctx, f)
		expectReleaseGoneAndStackRestored(t, g, ctx, m, objs, before)
		expectOneSnapshot(g, ctx, ns)
		expectServicesSelectReadyPods(t, ctx, ns)
		f.outcome = "RolledBack, release gone, every object as before, 1 snapshot, Services on ready old pods"
	})

	t.Run("the API server restarts in the middle of an install", func(t *testing.T) {
		ns := "mastodon-ha-apiserver"
		f := pair.fault(t, ctx, "API server restarts", "Install", ns)
		faults = append(faults, f)
		restarted := make(chan error, 1)
		go func() { restarted <- restartAPIServerIn(ctx, f, ns) }()
		objs, _, m := migrateTo(t, ctx, ns, v1alpha1.PhaseCompleted, shortWindow)
		g := gomega.NewWithT(t)
		g.Expect(<-restarted).To(gomega.Succeed())
		down := f.recovered.Sub(f.at).Round(10 * time.Millisecond)
		g.Expect(f.steps).To(gomega.ContainElement(f.want), "the API server was not restarted during %s", f.want)
		expectOneDeployedRevision(g, ctx, ns, m.Spec.Release.Name)
		expectOneSnapshot(g, ctx, ns)
		expectTrafficOnRelease(t, ctx, ns, objs)
		// A leader that could not renew its Lease while the API server was down ends, and the
		// standby takes over.
		if l := lease(g, ctx); l.Spec.AcquireTime.After(f.at) {
			f.recovered = l.Spec.AcquireTime.Time
		}
		f.outcome = fmt.Sprintf("API server ready again after %s; Completed, 1 revision, 1 snapshot, traffic on ready release pods", down)
	})
}

// fault is one injected fault and what came of it.
type fault struct {
	name, want string
	// match tells the request the leader crashes before.
	match func(*http.Request) bool
	ns    string
	// at is when it was injected; steps were running then; holder led then.
	at        time.Time
	steps     []string
	holder    string
	recovered time.Time
	outcome   string
	// ended says which replicas ended and were replaced.
	ended string
	hit   atomic.Bool
}

func logFaults(t *testing.T, faults []*fault) {
	var b strings.Builder
	fmt.Fprintf(&b, "%d faults injected\n| fault | step when injected | outcome | time to recover |\n|---|---|---|---|\n", len(faults))
	for _, f := range faults {
		took := "-"
		if !f.recovered.IsZero() {
			took = f.recovered.Sub(f.at).Round(10 * time.Millisecond).String()
		}
		fmt.Fprintf(&b, "| %s | %s | %s; %s | %s |\n", f.name, strings.Join(f.steps, ","), f.outcome, f.ended, took)
	}
	t.Log("\n" + b.String())
}

// writesTo matches the nth request with one of methods (comma-separated) whose path starts with
// prefix; preflight's server-side dry-runs change nothing, and do not count.
func writesTo(methods, prefix string, nth int32) func(*http.Request) bool {
	var seen atomic.Int32
	return func(req *http.Request) bool {
		return slices.Contains(strings.Split(methods, ","), req.Method) && strings.HasPrefix(req.URL.Path, prefix) &&
			!req.URL.Query().Has("dryRun") && seen.Add(1) == nth
	}
}

// replicas are the operator's replicas; the one whose request matches the armed fault crashes.
type replicas struct {
	t     *testing.T
	ops   []*harness.Operator
	armed atomic.Pointer[fault]
}

func startReplicas(t *testing.T, ctx context.Context) *replicas {
	r := &replicas{t: t}
	for range 2 {
		r.ops = append(r.ops, r.start(t, ctx))
	}
	return r
}

func (r *replicas) start(t *testing.T, ctx context.Context) *harness.Operator {
	op, err := h.StartOperatorWith(ctx, harness.OperatorOptions{LeaderElection: haLeaderElection, Crash: r.crash})
	if err != nil {
		t.Fatal(err)
	}
	return op
}

// fault records a fault to inject while step runs in namespace ns. When the test ends, each
// replica that crashed or ended is replaced, pass or fail, so the next test has two.
func (r *replicas) fault(t *testing.T, ctx context.Context, name, step, ns string) *fault {
	f := &fault{name: name, want: step, ns: ns, outcome: "did not recover"}
	t.Cleanup(func() {
		r.armed.CompareAndSwap(f, nil)
		f.ended = r.restartEnded(t, ctx)
	})
	return f
}

// crashAt arms a fault: the leader crashes before the request that match selects, which is
// meant to be sent while step runs in namespace ns.
func (r *replicas) crashAt(t *testing.T, ctx context.Context, name, step, ns string, match func(*http.Request) bool) *fault {
	f := r.fault(t, ctx, name, step, ns)
	f.match = match
	r.armed.Store(f)
	return f
}

// crash is every replica's OperatorOptions.Crash. It records the migration's running steps and
// the Lease's holder as the crash leaves them: the crashed replica sends nothing more.
func (r *replicas) crash(req *http.Request) bool {
	f := r.armed.Load()
	if f == nil || !f.match(req) || !r.armed.CompareAndSwap(f, nil) {
		return false
	}
	f.at = time.Now()
	ctx := context.Background()
	f.steps = runningSteps(ctx, f.ns)
	l := &coordinationv1.Lease{}
	if err := h.Client.Get(ctx, client.ObjectKey{Namespace: harness.LeaseNamespace, Name: controllers.LeaderElectionID}, l); err == nil && l.Spec.HolderIdentity != nil {
		f.holder = *l.Spec.HolderIdentity
	}
	f.hit.Store(true)
	return true
}

// expectTakeover: the leader crashed while f's step ran, and another replica then acquired
// the Lease.
func (r *replicas) expectTakeover(g gomega.Gomega, ctx context.Context, f *fault) {
	g.Expect(f.hit.Load()).To(gomega.BeTrue(), "the leader never sent the request it was to crash at")
	g.Expect(f.steps).To(gomega.ContainElement(f.want), "the leader crashed outside %s", f.want)
	l := lease(g, ctx)
	g.Expect(l.Spec.HolderIdentity).To(gomega.HaveValue(gomega.Not(gomega.Equal(f.holder))), "no other replica took over")
	g.Expect(l.Spec.AcquireTime.After(f.at)).To(gomega.BeTrue(), "the Lease was not acquired after the crash")
	f.recovered = l.Spec.AcquireTime.Time
}

// restartEnded starts a replica in place of each that crashed or ended, as a Deployment would,
// and says which.
func (r *replicas) restartEnded(t *testing.T, ctx context.Context) string {
	var ended []string
	for i, op := range r.ops {
		switch {
		case op.Crashed():
			// It ends once its reconciles have seen their context cancelled.
			if err := op.Stop(); err != nil {
				t.Error(err)
			}
			ended = append(ended, fmt.Sprintf("replica %d crashed", i))
		case isDone(op):
			ended = append(ended, fmt.Sprintf("replica %d ended (%v)", i, op.Stop()))
		default:
			continue
		}
		r.ops[i] = r.start(t, ctx)
	}
	if len(ended) == 0 {
		return "no replica ended"
	}
	return strings.Join(ended, ", ") + ", restarted"
}

func isDone(op *harness.Operator) bool {
	select {
	case <-op.Done():
		return true
	default:
		return false
	}
}

func (r *replicas) stop() {
	for _, op := range r.ops {
		if err := op.Stop(); err != nil {
			r.t.Error(err)
		}
	}
}

func lease(g gomega.Gomega, ctx context.Context) *coordinationv1.Lease {
	l := &coordinationv1.Lease{}
	g.Expect(h.Client.Get(ctx, client.ObjectKey{Namespace: harness.LeaseNamespace, Name: controllers.LeaderElectionID}, l)).To(gomega.Succeed())
	g.Expect(l.Spec.AcquireTime).NotTo(gomega.BeNil())
	return l
}

// runningSteps names the steps of the migration in ns that are running now.
func runningSteps(ctx context.Context, ns string) []string {
	var list v1alpha1.MastodonMigrationList
	if err := h.Client.List(ctx, &list, client.InNamespace(ns)); err != nil {
		return []string{err.Error()}
	}
	var out []string
	for _, m := range list.Items {
		for _, s := range m.Status.Steps {
			if s.State == v1alpha1.StepRunning {
				out = append(out, s.Name)
			}
		}
	}
	return out
}

// restartAPIServerIn restarts the API server as soon as f's step runs in namespace ns.
func restartAPIServerIn(ctx context.Context, f *fault, ns string) error {
	deadline := time.Now().Add(2 * time.Minute)
	for !slices.Contains(runningSteps(ctx, ns), f.want) {
		if time.Now().After(deadline) {
			return fmt.Errorf("%s never ran", f.want)
		}
		time.Sleep(50 * time.Millisecond)
	}
	f.at, f.steps = time.Now(), runningSteps(ctx, ns)
	if err := h.Cluster.RestartAPIServer(ctx); err != nil {
		return err
	}
	f.recovered = time.Now()
	return nil
}

// expectTrafficOnRelease: each Service that served the old web or streaming pods selects the
// release's pods, as the release's own Service of the component does, and they are ready.
func expectTrafficOnRelease(t *testing.T, ctx context.Context, ns string, objs []*unstructured.Unstructured) {
	t.Helper()
	g := gomega.NewWithT(t)
	after := liveObjects(t, ctx, ns, objs)
	for source, release := range map[string]string{"mastodon-web": "mastodon-helm-web", "mastodon-assets": "mastodon-helm-web",
		"mastodon-emoji": "mastodon-helm-web", "mastodon-streaming": "mastodon-helm-streaming"} {
		svc := &corev1.Service{}
		g.Expect(h.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: release}, svc)).To(gomega.Succeed())
		want := map[string]any{}
		for k, v := range svc.Spec.Selector {
			want[k] = v
		}
		g.Expect(after["Service/"+source].Object).To(gomega.HaveKeyWithValue("spec", gomega.HaveKeyWithValue("selector", want)), source)
	}
	expectServicesSelectReadyPods(t, ctx, ns)
}

// mastodonServices carry Mastodon's traffic: the switch moves them, a rollback moves them back.
var mastodonServices = []string{"mastodon-web", "mastodon-assets", "mastodon-emoji", "mastodon-streaming"}

// expectServicesSelectReadyPods: every Service that carries Mastodon's traffic selects pods, and
// all of them are Ready (the restored old pods may take a moment to start).
func expectServicesSelectReadyPods(t *testing.T, ctx context.Context, ns string) {
	t.Helper()
	eventually(t, func(g gomega.Gomega) {
		for _, name := range mastodonServices {
			svc := &corev1.Service{}
			g.Expect(h.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, svc)).To(gomega.Succeed())
			var pods corev1.PodList
			g.Expect(h.Client.List(ctx, &pods, client.InNamespace(ns), client.MatchingLabels(svc.Spec.Selector))).To(gomega.Succeed())
			g.Expect(pods.Items).NotTo(gomega.BeEmpty(), name)
			for _, p := range pods.Items {
				g.Expect(p.Status.Conditions).To(gomega.ContainElement(gomega.And(
					gomega.HaveField("Type", corev1.PodReady), gomega.HaveField("Status", corev1.ConditionTrue))), name+" selects "+p.Name)
			}
		}
	}).Should(gomega.Succeed())
}
