package kubectlmastodon

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
	"github.com/mastodon-operator/mastodon-operator/internal/chartrepo"
	"github.com/mastodon-operator/mastodon-operator/internal/snapshot"
	"github.com/mastodon-operator/mastodon-operator/internal/testenv"
	"github.com/mastodon-operator/mastodon-operator/test/fixture"
)

// These tests run the plugin's commands against a real API server (envtest) with the
// Kustomize fixture applied; no operator runs, so a test writes a migration's status itself
// where the command only reads it. test/e2e runs them against migrations the operator made.

var apiServerEnv = testenv.Shared{CRDs: []string{fixture.Testdata("crds"), filepath.Join("..", "..", "config", "crd", "bases")}}

func TestMain(m *testing.M) {
	code := m.Run()
	apiServerEnv.Stop()
	os.Exit(code)
}

var (
	kubeconfigOnce sync.Once
	kubeconfigPath string
	nsMu           sync.Mutex
	nsCount        int
)

// cluster returns a client of the API server and a kubeconfig file for the plugin.
func cluster(t *testing.T) (client.Client, string) {
	t.Helper()
	cfg := apiServerEnv.Config(t)
	c, err := client.New(cfg, client.Options{Scheme: scheme()})
	if err != nil {
		t.Fatal(err)
	}
	kubeconfigOnce.Do(func() {
		kc := clientcmdapi.NewConfig()
		kc.Clusters["envtest"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
		kc.AuthInfos["admin"] = &clientcmdapi.AuthInfo{ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData, Token: cfg.BearerToken}
		kc.Contexts["envtest"] = &clientcmdapi.Context{Cluster: "envtest", AuthInfo: "admin"}
		kc.CurrentContext = "envtest"
		dir, err := os.MkdirTemp("", "kubectl-mastodon-")
		if err == nil {
			kubeconfigPath = filepath.Join(dir, "kubeconfig")
			err = clientcmd.WriteToFile(*kc, kubeconfigPath)
		}
		if err != nil {
			t.Fatal(err)
		}
	})
	return c, kubeconfigPath
}

// namespaceWithFixture creates a namespace of its own with the production layout applied.
func namespaceWithFixture(t *testing.T, c client.Client) string {
	t.Helper()
	nsMu.Lock()
	nsCount++
	ns := fmt.Sprintf("plugin-%d", nsCount)
	nsMu.Unlock()
	ctx := context.Background()
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	objs, err := fixture.Layout(fixture.LayoutProduction)
	if err != nil {
		t.Fatal(err)
	}
	if err := fixture.Apply(ctx, c, ns, objs); err != nil {
		t.Fatal(err)
	}
	return ns
}

// run runs the plugin as kubectl would, and returns its output and exit code.
func run(t *testing.T, kubeconfig, ns string, args ...string) (string, int) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := Main(append([]string{"--kubeconfig", kubeconfig, "-n", ns}, args...), strings.NewReader(""), &out, &errOut)
	return out.String() + errOut.String(), code
}

// sample is the users' sample migration, pointed at repository, in ns.
func sample(t *testing.T, ns, repository string) *v1alpha1.MastodonMigration {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "..", "config", "samples", "migration_v1alpha1_mastodonmigration.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	m := &v1alpha1.MastodonMigration{}
	if err := yaml.UnmarshalStrict(raw, m); err != nil {
		t.Fatal(err)
	}
	m.Namespace = ns
	m.Spec.Release.Chart.Repository = repository
	return m
}

// resourceVersions lists every object of the kinds the plugin could touch in ns.
func resourceVersions(t *testing.T, c client.Client, ns string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, list := range []client.ObjectList{&corev1.ConfigMapList{}, &corev1.SecretList{}, &corev1.ServiceList{},
		&appsv1.DeploymentList{}, &v1alpha1.MastodonMigrationList{}, &v1alpha1.MastodonRollbackList{}} {
		if err := c.List(context.Background(), list, client.InNamespace(ns)); err != nil {
			t.Fatal(err)
		}
		items, _ := metaItems(list)
		for _, o := range items {
			out[fmt.Sprintf("%T/%s", list, o.GetName())] = o.GetResourceVersion()
		}
	}
	return out
}

func metaItems(list client.ObjectList) ([]metav1.Object, error) {
	var out []metav1.Object
	switch l := list.(type) {
	case *corev1.ConfigMapList:
		for i := range l.Items {
			out = append(out, &l.Items[i])
		}
	case *corev1.SecretList:
		for i := range l.Items {
			out = append(out, &l.Items[i])
		}
	case *corev1.ServiceList:
		for i := range l.Items {
			out = append(out, &l.Items[i])
		}
	case *appsv1.DeploymentList:
		for i := range l.Items {
			out = append(out, &l.Items[i])
		}
	case *v1alpha1.MastodonMigrationList:
		for i := range l.Items {
			out = append(out, &l.Items[i])
		}
	case *v1alpha1.MastodonRollbackList:
		for i := range l.Items {
			out = append(out, &l.Items[i])
		}
	}
	return out, nil
}

func TestPlanShowsFindingsValuesDiffAndTrafficAndChangesNothing(t *testing.T) {
	c, kubeconfig := cluster(t)
	ns := namespaceWithFixture(t, c)
	repo, err := chartrepo.Serve(fixture.OfficialChart())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = repo.Close() }()
	// An object of the release's name already there: plan diffs it against the rendering.
	existing := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "mastodon-helm-env"},
		Data: map[string]string{"LOCAL_DOMAIN": "old.example"}}
	if err := c.Create(context.Background(), existing); err != nil {
		t.Fatal(err)
	}
	m := sample(t, ns, repo.URL())
	m.Spec.Release.Values = nil
	raw, err := yaml.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "migration.yaml")
	if err := os.WriteFile(file, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	before := resourceVersions(t, c, ns)

	out, code := run(t, kubeconfig, ns, "plan", "-f", file)
	t.Log(out)

	// mastodon-helm-env collides: preflight would stop the migration, and plan says so by its
	// exit code.
	if code != ExitFailed {
		t.Errorf("exit code %d, want %d", code, ExitFailed)
	}
	for _, want := range []string{
		"Plan for migration " + ns + "/to-helm (BlueGreen to release mastodon-helm): ",
		"Nothing was changed.",
		"## Preflight: Blocks",
		"ReleaseCollisions ConfigMap/mastodon-helm-env: ",
		"## Preflight: Informational",
		"## Values of release mastodon-helm",
		"localDomain: example.social",
		"+ Deployment/mastodon-helm-web (new)",
		"~ ConfigMap/mastodon-helm-env (exists, changed)",
		"-  LOCAL_DOMAIN: old.example",
		"## Traffic switch (ServiceSelector)",
		"Service/mastodon-web /spec/selector: ",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("plan's output lacks %q", want)
		}
	}
	if strings.Index(out, "## Preflight: Blocks") > strings.Index(out, "## Preflight: Informational") {
		t.Error("the blocking findings do not come first")
	}
	if after := resourceVersions(t, c, ns); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("plan changed the namespace:\nbefore %v\nafter  %v", before, after)
	}
}

// withStatus creates the sample migration in ns and gives it status, as the operator would.
func withStatus(t *testing.T, c client.Client, ns, name string, status v1alpha1.MastodonMigrationStatus) *v1alpha1.MastodonMigration {
	t.Helper()
	m := sample(t, ns, "https://charts.example/")
	m.Name = name
	ctx := context.Background()
	if err := c.Create(ctx, m); err != nil {
		t.Fatal(err)
	}
	m.Status = status
	if err := c.Status().Update(ctx, m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestStatusShowsStepsAnalysisRollbackAndSchedulerWithExitCodes(t *testing.T) {
	c, kubeconfig := cluster(t)
	ns := namespaceWithFixture(t, c)
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	at := func(s int) *metav1.MicroTime {
		mt := metav1.NewMicroTime(t0.Add(time.Duration(s) * time.Second))
		return &mt
	}
	steps := []v1alpha1.StepStatus{
		{Name: "Preflight", State: v1alpha1.StepSucceeded, StartedAt: at(0), FinishedAt: at(2), Message: "every pre-migration check passed"},
		{Name: "Install", State: v1alpha1.StepSucceeded, StartedAt: at(2), FinishedAt: at(7), Message: "release mastodon-helm revision 1 deployed"},
	}
	rolledBack := v1alpha1.MastodonMigrationStatus{Phase: v1alpha1.PhaseRolledBack, Steps: steps,
		Analysis: &v1alpha1.AnalysisStatus{Verdict: "Fail", ErrorRate: "0.62",
			Breaches: []v1alpha1.Breach{{Severity: "Critical", Metric: "errorRate", Value: "0.62", Threshold: "0.5", Since: metav1.NewTime(t0)}}},
		Rollback: &v1alpha1.RollbackStatus{Level: 1, Trigger: "Analysis", Reason: "error rate 0.62 over 0.5"},
		Scheduler: &v1alpha1.SchedulerStatus{Holder: "mastodon-worker", HandOvers: []v1alpha1.SchedulerHandOver{
			{From: "mastodon-worker", To: "mastodon-helm-sidekiq-all-queues", OldStoppedAt: at(10), NewStartedAt: at(12)}}}}
	cases := []struct {
		name   string
		status v1alpha1.MastodonMigrationStatus
		code   int
		want   []string
	}{
		{"completed", v1alpha1.MastodonMigrationStatus{Phase: v1alpha1.PhaseCompleted, Steps: steps}, ExitCompleted,
			[]string{"Migration " + ns + "/completed: Completed (BlueGreen, release mastodon-helm)", "Install", "5s", "release mastodon-helm revision 1 deployed"}},
		{"rolled-back", rolledBack, ExitRolledBack, []string{"RolledBack", "Analysis: Fail, error rate 0.62",
			"breach: Critical errorRate = 0.62 (threshold 0.5) since 2026-12-01T10:00:00Z", "Rollback: level 1 by Analysis: error rate 0.62 over 0.5",
			"Sidekiq scheduler: held by mastodon-worker", "hand-over mastodon-worker -> mastodon-helm-sidekiq-all-queues: none consumed it for 2s"}},
		{"failed", v1alpha1.MastodonMigrationStatus{Phase: v1alpha1.PhaseFailed, Steps: steps}, ExitFailed, []string{"Failed"}},
		{"stalled", v1alpha1.MastodonMigrationStatus{Phase: v1alpha1.PhasePreflight, Conditions: []metav1.Condition{{Type: "Stalled",
			Status: metav1.ConditionTrue, Reason: "PreflightFailed", Message: "1 finding: 1 blocks the migration", LastTransitionTime: metav1.NewTime(t0)}}},
			ExitFailed, []string{"Stalled=True PreflightFailed: 1 finding: 1 blocks the migration"}},
		{"running", v1alpha1.MastodonMigrationStatus{Phase: v1alpha1.PhaseObserving, Steps: append(steps,
			v1alpha1.StepStatus{Name: "Observe", State: v1alpha1.StepRunning, StartedAt: at(8)})}, ExitRunning, []string{"Observing", "so far"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			withStatus(t, c, ns, tc.name, tc.status)
			out, code := run(t, kubeconfig, ns, "status", tc.name)
			if code != tc.code {
				t.Errorf("exit code %d, want %d\n%s", code, tc.code, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}

	// --wait returns once the migration ends, with its exit code.
	m := withStatus(t, c, ns, "waited", v1alpha1.MastodonMigrationStatus{Phase: v1alpha1.PhaseObserving, Steps: steps})
	go func() {
		time.Sleep(time.Second)
		m.Status.Phase = v1alpha1.PhaseRolledBack
		_ = c.Status().Update(context.Background(), m)
	}()
	start := time.Now()
	out, code := run(t, kubeconfig, ns, "status", "waited", "--wait", "--timeout", "30s")
	if code != ExitRolledBack || time.Since(start) < time.Second {
		t.Errorf("status --wait: exit code %d after %s, want %d after the rollback\n%s", code, time.Since(start), ExitRolledBack, out)
	}
}

func TestRollbackPauseAndResume(t *testing.T) {
	c, kubeconfig := cluster(t)
	ns := namespaceWithFixture(t, c)
	ctx := context.Background()
	m := withStatus(t, c, ns, "to-helm", v1alpha1.MastodonMigrationStatus{Phase: v1alpha1.PhaseObserving})

	out, code := run(t, kubeconfig, ns, "pause", "to-helm")
	if err := c.Get(ctx, client.ObjectKeyFromObject(m), m); code != 0 || err != nil || !m.Spec.Paused {
		t.Fatalf("pause: code %d, paused %t, %v\n%s", code, m.Spec.Paused, err, out)
	}
	out, code = run(t, kubeconfig, ns, "resume", "to-helm")
	if err := c.Get(ctx, client.ObjectKeyFromObject(m), m); code != 0 || err != nil || m.Spec.Paused {
		t.Fatalf("resume: code %d, paused %t, %v\n%s", code, m.Spec.Paused, err, out)
	}

	out, code = run(t, kubeconfig, ns, "rollback", "to-helm", "--level", "2", "--reason", "5xx over 50%")
	if code != 0 || !strings.Contains(out, "level 2 of migration to-helm") {
		t.Fatalf("rollback: code %d\n%s", code, out)
	}
	var rollbacks v1alpha1.MastodonRollbackList
	if err := c.List(ctx, &rollbacks, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	if len(rollbacks.Items) != 1 || rollbacks.Items[0].Spec != (v1alpha1.MastodonRollbackSpec{
		MigrationRef: v1alpha1.LocalObjectReference{Name: "to-helm"}, Level: 2, Reason: "5xx over 50%"}) {
		t.Errorf("MastodonRollbacks: %+v", rollbacks.Items)
	}
	// The API server's own rule says what is missing.
	out, code = run(t, kubeconfig, ns, "rollback", "to-helm", "--level", "3", "--reason", "data")
	if code != ExitError || !strings.Contains(out, "confirmDataLoss") {
		t.Errorf("level 3 without --confirm-data-loss: code %d\n%s", code, out)
	}
	if out, code := run(t, kubeconfig, ns, "pause", "missing"); code != ExitError || !strings.Contains(out, "not found") {
		t.Errorf("pause of a missing migration: code %d\n%s", code, out)
	}
}

func TestSnapshotExportIsWhatKubectlApplyRestores(t *testing.T) {
	c, kubeconfig := cluster(t)
	ns := namespaceWithFixture(t, c)
	ctx := context.Background()
	refs := []snapshot.Ref{{APIVersion: "apps/v1", Kind: "Deployment", Name: "mastodon-web"},
		{APIVersion: "v1", Kind: "Service", Name: "mastodon-web"}, {APIVersion: "v1", Kind: "Secret", Name: "mastodon"}}
	snap, err := snapshot.Take(ctx, c, ns, "to-helm-snapshot-12345678", nil, refs)
	if err != nil {
		t.Fatal(err)
	}
	taken := metav1.NewTime(snap.TakenAt)
	withStatus(t, c, ns, "to-helm", v1alpha1.MastodonMigrationStatus{Phase: v1alpha1.PhaseCompleted,
		Snapshot: &v1alpha1.SnapshotStatus{Name: snap.Name, Objects: int32(snap.Objects), TakenAt: &taken}})
	stored, err := snapshot.Load(ctx, c, ns, snap.Name)
	if err != nil {
		t.Fatal(err)
	}

	file := filepath.Join(t.TempDir(), "old-stack.yaml")
	if out, code := run(t, kubeconfig, ns, "snapshot", "export", "to-helm", "-o", file); code != 0 {
		t.Fatalf("export: code %d\n%s", code, out)
	}
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(raw), 4096)
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); err != nil {
			break
		}
		if len(u.Object) == 0 {
			continue
		}
		kinds = append(kinds, u.GetKind())
		if u.GetResourceVersion() != "" || u.GetUID() != "" || u.GetManagedFields() != nil || u.Object["status"] != nil {
			t.Errorf("%s %s is not clean: %v", u.GetKind(), u.GetName(), u.Object["metadata"])
		}
	}
	if strings.Join(kinds, ",") != "Deployment,Service" || !strings.Contains(string(raw), "Left out (--include-secrets to export them): Secret [mastodon]") {
		t.Errorf("exported %v:\n%s", kinds, raw)
	}

	// The way back without the operator: the objects are gone or changed, kubectl apply restores them.
	if err := c.Delete(ctx, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "mastodon-web"}}); err != nil {
		t.Fatal(err)
	}
	svc := &corev1.Service{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "mastodon-web"}, svc); err != nil {
		t.Fatal(err)
	}
	svc.Spec.Selector = map[string]string{"app.kubernetes.io/instance": "mastodon-helm"}
	if err := c.Update(ctx, svc); err != nil {
		t.Fatal(err)
	}
	kubectl := exec.Command(filepath.Join(os.Getenv("KUBEBUILDER_ASSETS"), "kubectl"), "--kubeconfig", kubeconfig,
		"apply", "--server-side", "--force-conflicts", "-f", file)
	if out, err := kubectl.CombinedOutput(); err != nil {
		t.Fatalf("kubectl apply: %v\n%s", err, out)
	}
	for _, u := range stored {
		if u.GetKind() == "Secret" {
			continue
		}
		live := &unstructured.Unstructured{}
		live.SetGroupVersionKind(u.GroupVersionKind())
		if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: u.GetName()}, live); err != nil {
			t.Fatal(err)
		}
		if diff := snapshot.Compare(live, u); len(diff) > 0 {
			t.Errorf("%s %s differs from the snapshot after kubectl apply: %v", u.GetKind(), u.GetName(), diff)
		}
	}
}

func TestHandoffWritesEachKeyAsAFile(t *testing.T) {
	c, kubeconfig := cluster(t)
	ns := namespaceWithFixture(t, c)
	withStatus(t, c, ns, "to-helm", v1alpha1.MastodonMigrationStatus{Phase: v1alpha1.PhaseCompleted})
	if out, code := run(t, kubeconfig, ns, "handoff", "to-helm", "-o", t.TempDir()); code != ExitError || !strings.Contains(out, "to-helm-handoff") {
		t.Errorf("handoff before Finish wrote it: code %d\n%s", code, out)
	}
	data := map[string]string{"README.txt": "Hand-off of migration\n", "values.yaml": "a: 1\n", "flux.yaml": "kind: HelmRelease\n"}
	if err := c.Create(context.Background(), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "to-helm-handoff"}, Data: data}); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "handoff")
	out, code := run(t, kubeconfig, ns, "handoff", "to-helm", "-o", dir)
	if code != 0 || !strings.Contains(out, "Hand-off of migration") {
		t.Fatalf("handoff: code %d\n%s", code, out)
	}
	for k, v := range data {
		got, err := os.ReadFile(filepath.Join(dir, k))
		if err != nil || string(got) != v {
			t.Errorf("%s: %q, %v", k, got, err)
		}
	}
}
