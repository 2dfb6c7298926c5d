// Package e2e runs the operator against the whole local cluster: etcd, kube-apiserver,
// kube-controller-manager, kube-scheduler and kwok, with the production-like Kustomize fixture
// deployed on it and the official chart served from a Helm repository on loopback. Deployments roll
// out and pods turn Ready because the cluster's own controllers and scheduler make them.
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
	"github.com/mastodon-operator/mastodon-operator/internal/database/sqladmintest"
	"github.com/mastodon-operator/mastodon-operator/internal/snapshot"
	"github.com/mastodon-operator/mastodon-operator/test/harness"
)

var (
	h *harness.Harness
	// cloudSQL is a local server speaking the Cloud SQL Admin API, holding instance my-project/mastodon-db.
	cloudSQL *sqladmintest.Server
	// operator is the operator every test shares; a test may stop it and start another.
	operator *harness.Operator
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if os.Getenv("MASTODON_OPERATOR_BIN_DIR") == "" {
		fmt.Fprintln(os.Stderr, "MASTODON_OPERATOR_BIN_DIR is not set: run `make test`")
		return 1
	}
	ctx := context.Background()
	logFile, err := os.CreateTemp("", "mastodon-operator-e2e-*.log")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	cloudSQL = sqladmintest.New(sqladmintest.Options{})
	defer cloudSQL.Close()
	cloudSQL.AddInstance("my-project", "mastodon-db")
	h, err = harness.Start(ctx, harness.Options{OperatorLog: logFile, CloudSQL: cloudSQL.ClientOptions()})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer h.Stop()
	operator, err = h.StartOperator(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = operator.Stop() }()
	code := m.Run()
	if code != 0 {
		fmt.Fprintf(os.Stderr, "the operator's log is in %s\n", logFile.Name())
	}
	return code
}

// sampleMigration reads the sample users start from, pointed at the loopback chart repository.
func sampleMigration(t testing.TB, namespace string) *v1alpha1.MastodonMigration {
	t.Helper()
	m, err := h.SampleMigration(namespace)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func kubectl(t testing.TB, stdin string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(filepath.Join(os.Getenv("MASTODON_OPERATOR_BIN_DIR"), "kubectl"),
		append([]string{"--kubeconfig", h.Cluster.KubeconfigPath()}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

func eventually(t testing.TB, f any) gomega.AsyncAssertion {
	return gomega.NewWithT(t).Eventually(f).WithTimeout(90 * time.Second).WithPolling(200 * time.Millisecond)
}

func getMigration(ctx context.Context, m *v1alpha1.MastodonMigration) func() (*v1alpha1.MastodonMigration, error) {
	return func() (*v1alpha1.MastodonMigration, error) {
		got := &v1alpha1.MastodonMigration{}
		err := h.Client.Get(ctx, client.ObjectKeyFromObject(m), got)
		return got, err
	}
}

// liveObjects reads the fixture's objects as they are in the cluster now.
func liveObjects(t testing.TB, ctx context.Context, ns string, objs []*unstructured.Unstructured) map[string]*unstructured.Unstructured {
	t.Helper()
	out := map[string]*unstructured.Unstructured{}
	for _, o := range objs {
		u := &unstructured.Unstructured{}
		u.SetGroupVersionKind(o.GroupVersionKind())
		if err := h.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: o.GetName()}, u); err != nil {
			t.Fatal(err)
		}
		out[o.GetKind()+"/"+o.GetName()] = u
	}
	return out
}

// migrateTo deploys the fixture in a namespace of its own, creates the sample migration as
// configure changes it, and waits until the migration reaches phase. It returns the fixture's
// objects, what they were before the migration, and the migration.
func migrateTo(t testing.TB, ctx context.Context, ns string, phase v1alpha1.Phase,
	configure func(*v1alpha1.MastodonMigration)) ([]*unstructured.Unstructured, map[string]*unstructured.Unstructured, *v1alpha1.MastodonMigration) {
	t.Helper()
	objs, err := h.DeployMastodon(ctx, ns)
	if err != nil {
		t.Fatal(err)
	}
	before := liveObjects(t, ctx, ns, objs)
	m := sampleMigration(t, ns)
	configure(m)
	if err := h.Client.Create(ctx, m); err != nil {
		t.Fatal(err)
	}
	eventually(t, getMigration(ctx, m)).Should(gomega.HaveField("Status.Phase", phase))
	return objs, before, m
}

// rollBackTo raises spec.rollbackLevel, as on-call would, and waits until the migration is
// rolled back.
func rollBackTo(t *testing.T, ctx context.Context, m *v1alpha1.MastodonMigration, level int32) {
	t.Helper()
	latest, err := getMigration(ctx, m)()
	if err != nil {
		t.Fatal(err)
	}
	raised := latest.DeepCopy()
	raised.Spec.RollbackLevel = level
	if err := h.Client.Patch(ctx, raised, client.MergeFrom(latest)); err != nil {
		t.Fatal(err)
	}
	eventually(t, getMigration(ctx, m)).Should(gomega.HaveField("Status.Phase", v1alpha1.PhaseRolledBack))
}

// stopping lists the findings that stop a migration: Blocks and Changes. Informational ones
// (the official chart's own harmless differences) are listed beside them.
func stopping(m *v1alpha1.MastodonMigration) []v1alpha1.Finding {
	var out []v1alpha1.Finding
	for _, f := range m.Status.Preflight {
		if f.Class != v1alpha1.FindingInformational {
			out = append(out, f)
		}
	}
	return out
}

// stepStates lists the steps of a migration as Name=State, in order.
func stepStates(m *v1alpha1.MastodonMigration) []string {
	var out []string
	for _, s := range m.Status.Steps {
		out = append(out, s.Name+"="+string(s.State))
	}
	return out
}

// shortWindow watches the new stack for 5 s, so the migration completes quickly.
func shortWindow(m *v1alpha1.MastodonMigration) {
	m.Spec.Analysis.Window = &metav1.Duration{Duration: 5 * time.Second}
	m.Spec.Analysis.Interval = &metav1.Duration{Duration: 5 * time.Second}
}

func TestBlueGreenMigrationCompletes(t *testing.T) {
	ctx := context.Background()
	ns := "mastodon-bluegreen"
	objs, before, m := migrateTo(t, ctx, ns, v1alpha1.PhaseCompleted, shortWindow)
	got, _ := getMigration(ctx, m)()
	g := gomega.NewWithT(t)
	g.Expect(meta.IsStatusConditionTrue(got.Status.Conditions, "Ready")).To(gomega.BeTrue())
	g.Expect(got.Status.ObservedGeneration).To(gomega.Equal(got.Generation))
	var steps []string
	for _, s := range got.Status.Steps {
		steps = append(steps, s.Name+"="+string(s.State))
	}
	g.Expect(steps).To(gomega.Equal([]string{"Preflight=Succeeded", "GenerateValues=Succeeded", "Snapshot=Succeeded",
		"DatabaseBackup=Skipped", "Install=Succeeded", "Verify=Succeeded", "Baseline=Succeeded", "HandOverScheduler=Succeeded", "ShiftTraffic=Succeeded", "Observe=Succeeded",
		"Finish=Succeeded"}))
	g.Expect(got.Status.Release).To(gomega.HaveField("Status", "deployed"))
	g.Expect(got.Status.Traffic).To(gomega.HaveField("Target", v1alpha1.TrafficToRelease))

	// Every Service that served the old web or streaming pods now selects the release's pods,
	// exactly as the release's own Service of the same component does.
	after := liveObjects(t, ctx, ns, objs)
	releaseSelector := func(name string) map[string]any {
		svc := &corev1.Service{}
		g.Expect(h.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, svc)).To(gomega.Succeed())
		out := map[string]any{}
		for k, v := range svc.Spec.Selector {
			out[k] = v
		}
		return out
	}
	switched := map[string]string{"mastodon-web": "mastodon-helm-web", "mastodon-assets": "mastodon-helm-web",
		"mastodon-emoji": "mastodon-helm-web", "mastodon-streaming": "mastodon-helm-streaming"}
	for source, release := range switched {
		g.Expect(after["Service/"+source].Object).To(gomega.HaveKeyWithValue("spec",
			gomega.HaveKeyWithValue("selector", releaseSelector(release))), source)
	}
	// What is not Mastodon, and the Ingress with its static IP and certificate, is untouched.
	for _, key := range []string{"Service/mastodon-media-proxy", "Deployment/mastodon-media-proxy", "Ingress/mastodon", "BackendConfig/mastodon-web-backend-config"} {
		g.Expect(snapshot.Compare(after[key], before[key])).To(gomega.BeEmpty(), key)
	}
	// The old stack is kept at 0 replicas, and the HPAs drive the release.
	for _, name := range []string{"mastodon-web", "mastodon-streaming", "mastodon-worker"} {
		d := &appsv1.Deployment{}
		g.Expect(h.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, d)).To(gomega.Succeed())
		g.Expect(*d.Spec.Replicas).To(gomega.BeZero(), name)
	}
	hpa := &autoscalingv2.HorizontalPodAutoscaler{}
	g.Expect(h.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "mastodon-web"}, hpa)).To(gomega.Succeed())
	g.Expect(hpa.Spec.ScaleTargetRef.Name).To(gomega.Equal("mastodon-helm-web"))
	// Exactly one release revision in Helm's Secrets storage.
	var releases corev1.SecretList
	g.Expect(h.Client.List(ctx, &releases, client.InNamespace(ns), client.MatchingLabels{"owner": "helm", "name": "mastodon-helm"})).To(gomega.Succeed())
	g.Expect(releases.Items).To(gomega.HaveLen(1))
	// The snapshot holds every object as it was before the migration.
	stored, err := snapshot.Load(ctx, h.Client, ns, got.Status.Snapshot.Name)
	g.Expect(err).NotTo(gomega.HaveOccurred())
	g.Expect(len(stored)).To(gomega.BeNumerically("==", got.Status.Snapshot.Objects))
	for _, u := range stored {
		if b, ok := before[u.GetKind()+"/"+u.GetName()]; ok {
			g.Expect(snapshot.Compare(b, u)).To(gomega.BeEmpty(), u.GetKind()+"/"+u.GetName())
		}
	}

	// What a person sees.
	out, err := kubectl(t, "", "get", "mastodonmigrations", "-n", ns)
	g.Expect(err).NotTo(gomega.HaveOccurred(), out)
	g.Expect(out).To(gomega.MatchRegexp(`NAME\s+PHASE\s+STRATEGY\s+RELEASE\s+TRAFFIC\s+ERROR RATE\s+AGE`))
	g.Expect(out).To(gomega.MatchRegexp(`to-helm\s+Completed\s+BlueGreen\s+mastodon-helm\s+Release\s+`))
	out, err = kubectl(t, "", "describe", "mastodonmigration", "to-helm", "-n", ns)
	g.Expect(err).NotTo(gomega.HaveOccurred(), out)
	g.Expect(out).To(gomega.MatchRegexp(`Name:\s+Preflight`))
	// The official chart's own differences from the fixture's environment, none of which changes
	// what Mastodon does, are listed; the migration went on.
	g.Expect(out).To(gomega.MatchRegexp(`\d+ findings, all informational: the migration goes on`))
	g.Expect(out).To(gomega.MatchRegexp(`Normal\s+Completed`))
}

// TestBlueGreenSurvivesARestartInEveryStep stops the operator, as SIGTERM would, as soon as each
// step is seen running (an install is cut off half-way), and starts a new one: the migration
// still completes, with exactly one Helm release.
func TestBlueGreenSurvivesARestartInEveryStep(t *testing.T) {
	ctx := context.Background()
	ns := "mastodon-restarts"
	if _, err := h.DeployMastodon(ctx, ns); err != nil {
		t.Fatal(err)
	}
	sampler := watchScheduler(t, ns, "mastodon-helm")
	m := sampleMigration(t, ns)
	shortWindow(m)
	if err := h.Client.Create(ctx, m); err != nil {
		t.Fatal(err)
	}
	restartedIn := restartInEveryStep(t, ctx, m)
	g := gomega.NewWithT(t)
	for _, step := range []string{"Preflight", "Snapshot", "Install", "Verify", "HandOverScheduler", "ShiftTraffic", "Observe", "Finish"} {
		g.Expect(restartedIn).To(gomega.HaveKey(step), "the operator was not restarted while %s ran", step)
	}
	expectOneDeployedRevision(g, ctx, ns, "mastodon-helm")
	expectOneSnapshot(g, ctx, ns)
	got, _ := getMigration(ctx, m)()
	clash, seen := sampler.done()
	expectSchedulerHandedOver(t, got, "mastodon-helm-sidekiq-scheduler", clash, seen, 1)
}

// restartInEveryStep restarts the operator once in each step, as soon as a status write shows
// it running, until the migration completes; it returns the steps it restarted in.
func restartInEveryStep(t *testing.T, ctx context.Context, m *v1alpha1.MastodonMigration) map[string]bool {
	t.Helper()
	// A watch delivers every status write, so each step is seen as it starts, even one that
	// ends a millisecond later.
	wc, err := client.NewWithWatch(h.Cluster.RESTConfig(), client.Options{Scheme: h.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	w, err := wc.Watch(ctx, &v1alpha1.MastodonMigrationList{}, client.InNamespace(m.Namespace), client.MatchingFields{"metadata.name": m.Name})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	restartedIn := map[string]bool{}
	timeout := time.After(3 * time.Minute)
	for {
		select {
		case <-timeout:
			t.Fatalf("not completed within 3 minutes; restarted in %v", restartedIn)
		case ev, ok := <-w.ResultChan():
			if !ok {
				t.Fatal("the watch ended")
			}
			got, isMigration := ev.Object.(*v1alpha1.MastodonMigration)
			if !isMigration {
				continue
			}
			if got.Status.Phase == v1alpha1.PhaseCompleted {
				return restartedIn
			}
			for _, s := range got.Status.Steps {
				if s.State == v1alpha1.StepRunning && !restartedIn[s.Name] {
					restartedIn[s.Name] = true
					if err := operator.Stop(); err != nil {
						t.Fatal(err)
					}
					if operator, err = h.StartOperator(ctx); err != nil {
						t.Fatal(err)
					}
				}
			}
		}
	}
}

func TestPreflightFindsASourceDeploymentThatDoesNotRollOutAndChangesNothing(t *testing.T) {
	ctx := context.Background()
	ns := "mastodon-stuck"
	if _, err := h.DeployMastodon(ctx, ns); err != nil {
		t.Fatal(err)
	}
	// Send the worker's new pods to a node pool that has no nodes: the rollout stalls.
	worker := &appsv1.Deployment{}
	if err := h.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "mastodon-worker"}, worker); err != nil {
		t.Fatal(err)
	}
	stuck := worker.DeepCopy()
	stuck.Spec.Template.Spec.NodeSelector = map[string]string{harness.NodePoolLabel: "no-such-pool"}
	if err := h.Client.Patch(ctx, stuck, client.MergeFrom(worker)); err != nil {
		t.Fatal(err)
	}
	before := snapshotDeployments(t, ctx, ns)

	m := sampleMigration(t, ns)
	if err := h.Client.Create(ctx, m); err != nil {
		t.Fatal(err)
	}
	eventually(t, getMigration(ctx, m)).Should(gomega.WithTransform(stopping, gomega.ConsistOf(gomega.And(
		gomega.HaveField("Check", "SourceDeployments"),
		gomega.HaveField("Object", "Deployment/mastodon-worker"),
		gomega.HaveField("Message", gomega.HavePrefix("Deployment mastodon-worker is not available: ")),
	))))
	got, _ := getMigration(ctx, m)()
	gomega.NewWithT(t).Expect(meta.IsStatusConditionTrue(got.Status.Conditions, "Stalled")).To(gomega.BeTrue())
	gomega.NewWithT(t).Expect(snapshotDeployments(t, ctx, ns)).To(gomega.Equal(before), "preflight must change nothing")
}

func TestInvalidMigrationIsRefusedWithWhatToFix(t *testing.T) {
	m := sampleMigration(t, "default")
	m.Spec.RollbackLevel = 3
	m.Spec.Rollback.Database.CloudSQL = &v1alpha1.CloudSQLInstance{Project: "my-project", Instance: "mastodon-db"}
	m.APIVersion, m.Kind = v1alpha1.GroupVersion.String(), "MastodonMigration"
	manifest, err := yaml.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	out, err := kubectl(t, string(manifest), "apply", "-f", "-")
	g := gomega.NewWithT(t)
	g.Expect(err).To(gomega.HaveOccurred(), "kubectl apply must fail")
	g.Expect(out).To(gomega.ContainSubstring("set spec.confirmDataLoss: true to confirm"))
}

// snapshotDeployments records what a migration could change in a namespace's Deployments.
func snapshotDeployments(t *testing.T, ctx context.Context, ns string) map[string]string {
	t.Helper()
	var list appsv1.DeploymentList
	if err := h.Client.List(ctx, &list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, d := range list.Items {
		out[d.Name] = fmt.Sprintf("generation=%d replicas=%d selector=%v", d.Generation, *d.Spec.Replicas, metav1.FormatLabelSelector(d.Spec.Selector))
	}
	return out
}

// TestVerifyWaitsForTheHealthEndpoints makes the release's web Service answer 503 on /health:
// Verify keeps the traffic where it is and says why, and goes on once /health answers 200.
func TestVerifyWaitsForTheHealthEndpoints(t *testing.T) {
	ctx := context.Background()
	ns := "mastodon-health"
	h.Web.Answer("/health", http.StatusServiceUnavailable, 0)
	t.Cleanup(h.Web.Reset)
	if _, err := h.DeployMastodon(ctx, ns); err != nil {
		t.Fatal(err)
	}
	m := sampleMigration(t, ns)
	shortWindow(m)
	if err := h.Client.Create(ctx, m); err != nil {
		t.Fatal(err)
	}
	verifyMessage := func() (string, error) {
		got, err := getMigration(ctx, m)()
		for _, s := range got.Status.Steps {
			if s.Name == "Verify" {
				return string(s.State) + ": " + s.Message, err
			}
		}
		return "", err
	}
	eventually(t, verifyMessage).Should(gomega.MatchRegexp(
		`^Running: .*Service mastodon-helm-web is not healthy: GET http://.*/health: 503 Service Unavailable`))
	got, _ := getMigration(ctx, m)()
	g := gomega.NewWithT(t)
	g.Expect(got.Status.Traffic).To(gomega.BeNil(), "the traffic moved to a release that is not healthy")

	h.Web.Reset()
	eventually(t, getMigration(ctx, m)).Should(gomega.HaveField("Status.Phase", v1alpha1.PhaseCompleted))
	g.Expect(verifyMessage()).To(gomega.MatchRegexp(
		`^Succeeded: .*healthy: http://[^ ]*/health, http://[^ ]*/api/v2/instance \(version 4.6.2\), http://[^ ]*/api/v1/streaming/health, WebSocket http://[^ ]*/api/v1/streaming$`))
}

// TestVerifyAsksTheInstanceAPIAndTheStreamingAPI makes the release answer /health with 200
// while what needs the database fails: the instance API answers 503, then reports another
// version, then the streaming API refuses the WebSocket. Verify keeps the traffic where it is
// and names each in turn, and goes on once the stack answers as Mastodon 4.6.2 does.
func TestVerifyAsksTheInstanceAPIAndTheStreamingAPI(t *testing.T) {
	ctx := context.Background()
	ns := "mastodon-instance-api"
	h.Web.Answer(harness.InstancePath, http.StatusServiceUnavailable, 0)
	t.Cleanup(h.Web.Reset)
	if _, err := h.DeployMastodon(ctx, ns); err != nil {
		t.Fatal(err)
	}
	m := sampleMigration(t, ns)
	shortWindow(m)
	if err := h.Client.Create(ctx, m); err != nil {
		t.Fatal(err)
	}
	verifyMessage := func() (string, error) {
		got, err := getMigration(ctx, m)()
		for _, s := range got.Status.Steps {
			if s.Name == "Verify" {
				return string(s.State) + ": " + s.Message, err
			}
		}
		return "", err
	}
	g := gomega.NewWithT(t)
	noTrafficMoved := func() {
		t.Helper()
		got, _ := getMigration(ctx, m)()
		g.Expect(got.Status.Traffic).To(gomega.BeNil(), "the traffic moved to a release that is not healthy")
	}
	eventually(t, verifyMessage).Should(gomega.MatchRegexp(
		`^Running: Service mastodon-helm-web is not healthy: GET http://[^ ]*/api/v2/instance: 503 Service Unavailable; `))
	noTrafficMoved()

	h.Web.Answer(harness.InstancePath, http.StatusOK, 0)
	h.Web.ReportVersion("4.5.0")
	eventually(t, verifyMessage).Should(gomega.MatchRegexp(
		`^Running: Service mastodon-helm-web is not healthy: GET http://[^ ]*/api/v2/instance answered version 4.5.0, want 4.6.2: the old stack answered\?; `))
	msg, _ := verifyMessage()
	t.Logf("Verify refused: %s", msg)
	noTrafficMoved()

	h.Web.ReportVersion("4.6.2+glitch")
	h.Web.Answer(harness.StreamingPath, http.StatusServiceUnavailable, 0)
	eventually(t, verifyMessage).Should(gomega.MatchRegexp(
		`^Running: Service mastodon-helm-streaming is not healthy: WebSocket to http://[^ ]*/api/v1/streaming answered 503 Service Unavailable, not 101 Switching Protocols; `))
	noTrafficMoved()

	h.Web.Reset()
	eventually(t, getMigration(ctx, m)).Should(gomega.HaveField("Status.Phase", v1alpha1.PhaseCompleted))
	g.Expect(verifyMessage()).To(gomega.MatchRegexp(`^Succeeded: .*/api/v2/instance \(version 4.6.2\), .*, WebSocket http://[^ ]*/api/v1/streaming$`))
}

// expectOneDeployedRevision: the release has exactly one revision, deployed; a restart or a
// second run never installs twice.
func expectOneDeployedRevision(g gomega.Gomega, ctx context.Context, ns, release string) {
	var releases corev1.SecretList
	g.Expect(h.Client.List(ctx, &releases, client.InNamespace(ns), client.MatchingLabels{"owner": "helm", "name": release})).To(gomega.Succeed())
	g.Expect(releases.Items).To(gomega.HaveLen(1), "exactly one release revision")
	g.Expect(releases.Items[0].Labels).To(gomega.HaveKeyWithValue("status", "deployed"))
}

// expectOneSnapshot: the migration stored the pre-migration state once.
func expectOneSnapshot(g gomega.Gomega, ctx context.Context, ns string) {
	var snapshots corev1.SecretList
	g.Expect(h.Client.List(ctx, &snapshots, client.InNamespace(ns), client.HasLabels{"migration.mastodon-operator.io/migration"})).To(gomega.Succeed())
	names := map[string]bool{}
	for _, s := range snapshots.Items {
		names[s.Labels[snapshot.LabelSnapshot]] = true
	}
	g.Expect(names).To(gomega.HaveLen(1), "exactly one snapshot")
}

// expectReleaseStopped: the release's four Deployments (web, streaming, and the fixture's
// worker split in two by the generated values: worker and scheduler) are kept, at 0 replicas
// (level 1).
func expectReleaseStopped(g gomega.Gomega, ctx context.Context, ns, release string) {
	var list appsv1.DeploymentList
	g.Expect(h.Client.List(ctx, &list, client.InNamespace(ns), client.MatchingLabels{"app.kubernetes.io/instance": release})).To(gomega.Succeed())
	g.Expect(list.Items).To(gomega.HaveLen(4))
	for _, d := range list.Items {
		g.Expect(*d.Spec.Replicas).To(gomega.BeZero(), d.Name)
	}
}

// expectReleaseGoneAndStackRestored: after a level 2 rollback no revision of the release and none
// of its Deployments remain, and every object of the fixture is as it was before the migration.
// It returns the objects as they are now.
func expectReleaseGoneAndStackRestored(t testing.TB, g gomega.Gomega, ctx context.Context, m *v1alpha1.MastodonMigration,
	objs []*unstructured.Unstructured, before map[string]*unstructured.Unstructured) map[string]*unstructured.Unstructured {
	t.Helper()
	var releases corev1.SecretList
	g.Expect(h.Client.List(ctx, &releases, client.InNamespace(m.Namespace), client.MatchingLabels{"owner": "helm"})).To(gomega.Succeed())
	g.Expect(releases.Items).To(gomega.BeEmpty())
	var deployments appsv1.DeploymentList
	g.Expect(h.Client.List(ctx, &deployments, client.InNamespace(m.Namespace),
		client.MatchingLabels{"app.kubernetes.io/instance": m.Spec.Release.Name})).To(gomega.Succeed())
	g.Expect(deployments.Items).To(gomega.BeEmpty())
	after := liveObjects(t, ctx, m.Namespace, objs)
	for key, b := range before {
		g.Expect(snapshot.Compare(after[key], b)).To(gomega.BeEmpty(), key)
	}
	return after
}
