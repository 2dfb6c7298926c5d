package helm

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/release"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"

	"github.com/mastodon-operator/mastodon-operator/internal/chartrepo"
	"github.com/mastodon-operator/mastodon-operator/internal/localcluster"
	"github.com/mastodon-operator/mastodon-operator/test/fixture"
)

// The release actions run against a real local cluster (etcd, kube-apiserver,
// kube-controller-manager, kube-scheduler, kwok): Jobs complete, Deployments become available
// and garbage collection runs, as Helm's waits need. No container runs: the chart's pods
// are scheduled and become ready (or complete) without doing anything.

const (
	releaseName = "mastodon-helm"
	// releaseTimeout bounds the installs that are expected to succeed; they take seconds.
	releaseTimeout = 2 * time.Minute
)

// releaseEnv is what every subtest shares: one cluster, one chart.
type releaseEnv struct {
	config   *rest.Config
	client   kubernetes.Interface
	metadata metadata.Interface
	chart    *chart.Chart
}

func TestReleaseActions(t *testing.T) {
	env := startReleaseEnv(t)

	t.Run("InstallWaitsForHooksAndResourcesThenUninstall", func(t *testing.T) { testInstall(t, env) })
	t.Run("InstallRecoversAPendingInstall", func(t *testing.T) { testRecoverPendingInstall(t, env) })
	t.Run("RecoverRollsBackAPendingUpgrade", func(t *testing.T) { testRecoverPendingUpgrade(t, env) })
	t.Run("CancelReturnsPromptlyAndIsRecovered", func(t *testing.T) { testCancel(t, env) })
	t.Run("FailingHookSurfacesHelmsError", func(t *testing.T) { testFailingHook(t, env) })
}

func testInstall(t *testing.T, env *releaseEnv) {
	ctx := t.Context()
	ns := releaseNamespace(t, env, "install")
	cfg := releaseConfig(t, env, ns)

	began := time.Now()
	rel, err := Install(ctx, cfg, env.chart, releaseName, ns, releaseValues(), releaseTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("installed in %s", time.Since(began).Round(time.Millisecond))
	if rel.Version != 1 || rel.Info.Status != release.StatusDeployed {
		t.Fatalf("Install = revision %d %s, want revision 1 deployed", rel.Version, rel.Info.Status)
	}

	// Helm waited for the hooks: both Jobs ran to completion, then their delete policy
	// (hook-succeeded) removed them.
	for _, name := range []string{releaseName + "-db-prepare", releaseName + "-db-migrate"} {
		hook := findHook(rel, "Job", name)
		if hook == nil {
			t.Fatalf("release has no hook Job %s", name)
		}
		if hook.LastRun.Phase != release.HookPhaseSucceeded {
			t.Errorf("hook Job %s: last run %s, want %s", name, hook.LastRun.Phase, release.HookPhaseSucceeded)
		}
	}
	if jobs := listNames(t, env, ns, "jobs"); len(jobs) != 0 {
		t.Errorf("Jobs left after a successful install: %v", jobs)
	}

	// Helm waited for the resources: every Deployment is available when Install returns.
	deployments, err := env.client.AppsV1().Deployments(ns).List(ctx, instanceSelector())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{releaseName + "-web": true, releaseName + "-streaming": true, releaseName + "-sidekiq-all-queues": true}
	for _, d := range deployments.Items {
		delete(want, d.Name)
		if d.Status.AvailableReplicas != *d.Spec.Replicas {
			t.Errorf("Deployment %s: %d of %d replicas available when Install returned", d.Name, d.Status.AvailableReplicas, *d.Spec.Replicas)
		}
	}
	if len(want) > 0 {
		t.Errorf("Deployments missing: %v", want)
	}

	// The release is stored as `helm` stores it: a Secret in the release's namespace.
	stored := releaseSecrets(t, env, ns)
	if len(stored) != 1 || stored[0].Name != "sh.helm.release.v1."+releaseName+".v1" || stored[0].Labels["status"] != "deployed" {
		t.Errorf("release Secrets = %v, want sh.helm.release.v1.%s.v1 with status deployed", secretSummary(stored), releaseName)
	}
	if got, err := Status(cfg, releaseName); err != nil || got == nil || got.Version != 1 || got.Info.Status != release.StatusDeployed {
		t.Errorf("Status = %v, %v; want revision 1 deployed", describe(got), err)
	}

	// Installing again changes nothing.
	began = time.Now()
	again, err := Install(ctx, cfg, env.chart, releaseName, ns, releaseValues(), releaseTimeout)
	if err != nil {
		t.Fatal(err)
	}
	if again.Version != 1 || again.Info.Status != release.StatusDeployed {
		t.Errorf("second Install = %s, want revision 1 deployed", describe(again))
	}
	if n := len(releaseSecrets(t, env, ns)); n != 1 {
		t.Errorf("%d release Secrets after the second Install, want 1", n)
	}
	t.Logf("second Install (a no-op) in %s", time.Since(began).Round(time.Millisecond))

	// Uninstall removes every object of the release, pods included, and its history.
	began = time.Now()
	if err := Uninstall(ctx, cfg, releaseName, releaseTimeout); err != nil {
		t.Fatal(err)
	}
	t.Logf("uninstalled in %s", time.Since(began).Round(time.Millisecond))
	assertNoReleaseObjects(t, env, ns)
	if got, err := Status(cfg, releaseName); got != nil || err != nil {
		t.Errorf("Status after Uninstall = %v, %v; want nil, nil", describe(got), err)
	}
	if err := Uninstall(ctx, cfg, releaseName, releaseTimeout); err != nil {
		t.Errorf("second Uninstall: %v", err)
	}
}

func testRecoverPendingInstall(t *testing.T, env *releaseEnv) {
	ctx := t.Context()
	ns := releaseNamespace(t, env, "pending-install")
	cfg := releaseConfig(t, env, ns)
	if _, err := Install(ctx, cfg, env.chart, releaseName, ns, releaseValues(), releaseTimeout); err != nil {
		t.Fatal(err)
	}

	// What an operator killed during its install leaves: the only revision, pending-install.
	setStatus(t, cfg, release.StatusPendingInstall)
	// Helm's lock is real: plain Helm refuses to go on.
	plain := action.NewInstall(cfg)
	plain.ReleaseName, plain.Namespace = releaseName, ns
	if _, err := plain.Run(env.chart, releaseValues()); err == nil || !strings.Contains(err.Error(), "cannot re-use a name that is still in use") {
		t.Errorf("helm install over pending-install: %v, want \"cannot re-use a name that is still in use\"", err)
	}
	upgrade := action.NewUpgrade(cfg)
	upgrade.Namespace = ns
	if _, err := upgrade.Run(releaseName, env.chart, releaseValues()); err == nil || !strings.Contains(err.Error(), "another operation (install/upgrade/rollback) is in progress") {
		t.Errorf("helm upgrade over pending-install: %v, want \"another operation (install/upgrade/rollback) is in progress\"", err)
	}

	rel, err := Install(ctx, cfg, env.chart, releaseName, ns, releaseValues(), releaseTimeout)
	if err != nil {
		t.Fatalf("Install over a pending-install: %v", err)
	}
	if rel.Version != 1 || rel.Info.Status != release.StatusDeployed || rel.Info.Description != "Install complete" {
		t.Errorf("Install over a pending-install = %s, want a fresh revision 1, deployed", describe(rel))
	}
	if hook := findHook(rel, "Job", releaseName+"-db-prepare"); hook == nil || hook.LastRun.Phase != release.HookPhaseSucceeded {
		t.Errorf("the reinstall did not run db-prepare to completion: %+v", hook)
	}
	assertDeploymentsAvailable(t, env, ns)
	if stored := releaseSecrets(t, env, ns); len(stored) != 1 || stored[0].Labels["status"] != "deployed" {
		t.Errorf("release Secrets = %v, want one, deployed", secretSummary(stored))
	}
}

func testRecoverPendingUpgrade(t *testing.T, env *releaseEnv) {
	ctx := t.Context()
	ns := releaseNamespace(t, env, "pending-upgrade")
	cfg := releaseConfig(t, env, ns)
	if _, err := Install(ctx, cfg, env.chart, releaseName, ns, releaseValues(), releaseTimeout); err != nil {
		t.Fatal(err)
	}
	// Revision 2, an upgrade (two web replicas), then left pending as by a killed operator.
	upgrade := action.NewUpgrade(cfg)
	upgrade.Namespace, upgrade.Wait, upgrade.Timeout = ns, true, releaseTimeout
	values := releaseValues()
	values["mastodon"].(map[string]any)["web"] = map[string]any{"replicas": 2}
	if _, err := upgrade.Run(releaseName, env.chart, values); err != nil {
		t.Fatal(err)
	}
	setStatus(t, cfg, release.StatusPendingUpgrade)

	recovered, err := Recover(ctx, cfg, releaseName, releaseTimeout)
	if err != nil || !recovered {
		t.Fatalf("Recover = %t, %v; want true, nil", recovered, err)
	}
	rel, err := Status(cfg, releaseName)
	if err != nil {
		t.Fatal(err)
	}
	if rel.Version != 3 || rel.Info.Status != release.StatusDeployed || rel.Info.Description != "Rollback to 1" {
		t.Errorf("after Recover: %s, want revision 3 deployed, \"Rollback to 1\"", describe(rel))
	}
	unlocked, err := cfg.Releases.Get(releaseName, 2)
	if err != nil {
		t.Fatal(err)
	}
	if unlocked.Info.Status != release.StatusFailed || unlocked.Info.Description != "Release unlocked from stale 'pending-upgrade' state" {
		t.Errorf("revision 2 after Recover: %s", describe(unlocked))
	}
	web, err := env.client.AppsV1().Deployments(ns).Get(ctx, releaseName+"-web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if *web.Spec.Replicas != 1 || web.Status.AvailableReplicas != 1 {
		t.Errorf("web after the rollback: %d replicas, %d available; want revision 1's 1", *web.Spec.Replicas, web.Status.AvailableReplicas)
	}

	// Nothing left to recover, nothing to install.
	if recovered, err := Recover(ctx, cfg, releaseName, releaseTimeout); recovered || err != nil {
		t.Errorf("second Recover = %t, %v; want false, nil", recovered, err)
	}
	if again, err := Install(ctx, cfg, env.chart, releaseName, ns, releaseValues(), releaseTimeout); err != nil || again.Version != 3 {
		t.Errorf("Install after the rollback = %s, %v; want revision 3 as is", describe(again), err)
	}
}

func testCancel(t *testing.T, env *releaseEnv) {
	ns := releaseNamespace(t, env, "cancel")
	cfg := releaseConfig(t, env, ns)

	// db-prepare gets no pod: the install waits in its pre-install hook until canceled.
	liftQuota := noPods(t, env, ns)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	type result struct {
		rel *release.Release
		err error
	}
	done := make(chan result, 1)
	go func() {
		rel, err := Install(ctx, cfg, env.chart, releaseName, ns, releaseValues(), time.Minute)
		done <- result{rel, err}
	}()
	poll(t, "the db-prepare Job exists", 30*time.Second, func(ctx context.Context) error {
		_, err := env.client.BatchV1().Jobs(ns).Get(ctx, releaseName+"-db-prepare", metav1.GetOptions{})
		return err
	})
	cancel()
	canceled := time.Now()
	var res result
	select {
	case res = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Install still running 10s after its context was canceled")
	}
	returned := time.Since(canceled)
	t.Logf("Install returned %s after the cancellation: %v", returned.Round(time.Millisecond), res.err)
	if returned > 2*time.Second {
		t.Errorf("Install returned %s after the cancellation, want at once", returned)
	}
	if !errors.Is(res.err, context.Canceled) {
		t.Errorf("Install after cancellation: %v, want context.Canceled", res.err)
	}
	if res.rel != nil {
		t.Errorf("Install after cancellation returned a release: %s", describe(res.rel))
	}

	// Helm's run stopped and recorded the interruption as a failure "... context canceled"
	// (had the process died first, it would be pending-install): an interruption, either way,
	// that Install recovers, not a failure of the chart.
	rel, err := Status(cfg, releaseName)
	if err != nil || rel == nil {
		t.Fatalf("Status after cancellation = %v, %v", describe(rel), err)
	}
	if rel.Info.Status != release.StatusFailed || !strings.HasSuffix(rel.Info.Description, "context canceled") || !interrupted(rel) {
		t.Errorf("release after cancellation: %s, want failed with \"context canceled\", seen as interrupted", describe(rel))
	}
	t.Logf("release after cancellation: %s", describe(rel))
	if deployments := listNames(t, env, ns, "deployments"); len(deployments) != 0 {
		t.Errorf("Deployments created by a canceled install: %v", deployments)
	}

	liftQuota()
	began := time.Now()
	rel, err = Install(t.Context(), cfg, env.chart, releaseName, ns, releaseValues(), releaseTimeout)
	if err != nil {
		t.Fatalf("Install after an interrupted install: %v", err)
	}
	t.Logf("recovered and installed in %s", time.Since(began).Round(time.Millisecond))
	if rel.Version != 1 || rel.Info.Status != release.StatusDeployed {
		t.Errorf("Install after an interrupted install = %s, want revision 1 deployed", describe(rel))
	}
	assertDeploymentsAvailable(t, env, ns)
	if jobs := listNames(t, env, ns, "jobs"); len(jobs) != 0 {
		t.Errorf("Jobs left: %v (the db-prepare that got no pod should have been replaced, then completed)", jobs)
	}
}

func testFailingHook(t *testing.T, env *releaseEnv) {
	ctx := t.Context()
	ns := releaseNamespace(t, env, "failing-hook")
	cfg := releaseConfig(t, env, ns)

	// The db-prepare Job never completes (it gets no pod); Helm gives up when the timeout is
	// over. The Job itself cannot be made to fail on this cluster: kwok completes every Job pod
	// it runs.
	noPods(t, env, ns)
	const timeout = 5 * time.Second
	began := time.Now()
	rel, err := Install(ctx, cfg, env.chart, releaseName, ns, releaseValues(), timeout)
	took := time.Since(began)
	t.Logf("Install failed after %s: %v", took.Round(time.Millisecond), err)
	if !errors.Is(err, ErrFailed) || !strings.Contains(err.Error(), "failed pre-install") || !strings.Contains(err.Error(), "timed out waiting for the condition") {
		t.Fatalf("Install with a hook that never completes: %v, want ErrFailed with Helm's \"failed pre-install: ... timed out waiting for the condition\"", err)
	}
	if took > timeout+5*time.Second {
		t.Errorf("Install took %s, want about its timeout of %s", took, timeout)
	}
	if rel == nil || rel.Info.Status != release.StatusFailed {
		t.Fatalf("Install returned %s, want the failed release", describe(rel))
	}
	if hook := findHook(rel, "Job", releaseName+"-db-prepare"); hook == nil || hook.LastRun.Phase != release.HookPhaseFailed {
		t.Errorf("db-prepare hook: %+v, want its last run failed", hook)
	}

	// The failure is the caller's: stored as Helm recorded it, and neither recovered nor
	// retried by the next Install.
	stored, err := Status(cfg, releaseName)
	if err != nil || stored == nil || stored.Info.Status != release.StatusFailed || !strings.Contains(stored.Info.Description, "failed pre-install") {
		t.Fatalf("stored release: %s, %v", describe(stored), err)
	}
	if recovered, err := Recover(ctx, cfg, releaseName, timeout); recovered || err != nil {
		t.Errorf("Recover of a failed install = %t, %v; want false, nil", recovered, err)
	}
	if _, err := Install(ctx, cfg, env.chart, releaseName, ns, releaseValues(), releaseTimeout); !errors.Is(err, ErrFailed) || !strings.Contains(err.Error(), "failed pre-install") {
		t.Errorf("Install over a failed release: %v, want ErrFailed with the stored failure", err)
	}
	if jobs := listNames(t, env, ns, "jobs"); len(jobs) != 1 {
		t.Errorf("Jobs after the failure: %v, want the failed db-prepare left for inspection", jobs)
	}

	// Uninstall removes the release and the hook Job Helm would leave behind.
	if err := Uninstall(ctx, cfg, releaseName, releaseTimeout); err != nil {
		t.Fatal(err)
	}
	assertNoReleaseObjects(t, env, ns)
}

// startReleaseEnv starts the cluster and loads the official chart from a repository on loopback,
// as the operator loads the official one.
func startReleaseEnv(t *testing.T) *releaseEnv {
	t.Helper()
	if os.Getenv(localcluster.BinDirEnv) == "" {
		t.Fatalf("%s is unset: run `export %s=$(hack/tools/build.sh)` first", localcluster.BinDirEnv, localcluster.BinDirEnv)
	}
	began := time.Now()
	cluster, err := localcluster.Start(t.Context(), localcluster.Options{
		Dir:   t.TempDir(),
		Nodes: []localcluster.Node{{Name: "node-0"}, {Name: "node-1"}},
		Logf:  t.Logf,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := cluster.Stop(); err != nil {
			t.Error(err)
		}
	})
	t.Logf("cluster up in %s", time.Since(began).Round(time.Millisecond))

	repo, err := chartrepo.Serve("../../test/testdata/charts/mastodon-1.0.2.tgz")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { repo.Close() })
	chrt, err := LoadChart(t.Context(), ChartRef{Repository: repo.URL(), Name: "mastodon", Version: "1.0.2"})
	if err != nil {
		t.Fatal(err)
	}
	config := cluster.RESTConfig()
	return &releaseEnv{
		config:   config,
		client:   kubernetes.NewForConfigOrDie(config),
		metadata: metadata.NewForConfigOrDie(config),
		chart:    chrt,
	}
}

// releaseNamespace creates a namespace for one subtest with the Secrets the chart's pods read,
// as a production install that keeps its secrets out of the values does.
func releaseNamespace(t *testing.T, env *releaseEnv, name string) string {
	t.Helper()
	ctx := t.Context()
	if _, err := env.client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	secrets := map[string]map[string]string{
		"mastodon-secrets": {
			"secret-key-base": "0123456789abcdef", "otp-secret": "fedcba9876543210",
			"vapid-private-key": "vapid-private", "vapid-public-key": "vapid-public",
			"are-primary-key": "are-primary", "are-deterministic-key": "are-deterministic", "are-derivation-salt": "are-salt",
		},
		"mastodon-postgresql": {"password": "postgres-password"},
		"mastodon-redis":      {"password": "redis-password"},
	}
	for secretName, data := range secrets {
		secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: secretName, Namespace: name}, StringData: data}
		if _, err := env.client.CoreV1().Secrets(name).Create(ctx, secret, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	return name
}

func releaseValues() map[string]any {
	values := fixture.OfficialChartMinimalValues("mastodon-secrets")
	values["mastodon"].(map[string]any)["localDomain"] = "example.social"
	return values
}

// noPods forbids pods in ns with a ResourceQuota of 0 pods, until the returned func lifts it: the
// hook Jobs' pods are never created, so the install waits in its pre-install hook. (The official
// chart gives its hook Jobs no nodeSelector, so they cannot be kept off the nodes by values.)
func noPods(t *testing.T, env *releaseEnv, ns string) (lift func()) {
	t.Helper()
	quota := &corev1.ResourceQuota{
		ObjectMeta: metav1.ObjectMeta{Name: "no-pods"},
		Spec:       corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{corev1.ResourcePods: resource.MustParse("0")}},
	}
	if _, err := env.client.CoreV1().ResourceQuotas(ns).Create(t.Context(), quota, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return func() {
		if err := env.client.CoreV1().ResourceQuotas(ns).Delete(t.Context(), quota.Name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
}

// releaseConfig is a configuration whose Helm log goes to the test log if the test fails. The
// log outlives the test: a wait that an interrupted action leaves behind may still write to it.
func releaseConfig(t *testing.T, env *releaseEnv, ns string) *action.Configuration {
	t.Helper()
	var mu sync.Mutex
	var lines []string
	logf := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		lines = append(lines, fmt.Sprintf(format, args...))
	}
	t.Cleanup(func() {
		if t.Failed() {
			mu.Lock()
			defer mu.Unlock()
			t.Logf("helm log:\n%s", strings.Join(lines[max(0, len(lines)-150):], "\n"))
		}
	})
	cfg, err := NewConfig(env.config, ns, logf)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// setStatus sets the status of the last revision through the storage, as a killed operator
// leaves it.
func setStatus(t *testing.T, cfg *action.Configuration, status release.Status) {
	t.Helper()
	rel, err := cfg.Releases.Last(releaseName)
	if err != nil {
		t.Fatal(err)
	}
	rel.Info.Status = status
	if err := cfg.Releases.Update(rel); err != nil {
		t.Fatal(err)
	}
}

func assertDeploymentsAvailable(t *testing.T, env *releaseEnv, ns string) {
	t.Helper()
	deployments, err := env.client.AppsV1().Deployments(ns).List(t.Context(), instanceSelector())
	if err != nil {
		t.Fatal(err)
	}
	if len(deployments.Items) != 3 {
		t.Errorf("%d Deployments, want 3", len(deployments.Items))
	}
	for _, d := range deployments.Items {
		if d.Status.AvailableReplicas != *d.Spec.Replicas {
			t.Errorf("Deployment %s: %d of %d replicas available", d.Name, d.Status.AvailableReplicas, *d.Spec.Replicas)
		}
	}
}

// assertNoReleaseObjects checks that nothing of the release is left in ns: no object of the
// chart (all carry its instance label), no pod, no release Secret.
func assertNoReleaseObjects(t *testing.T, env *releaseEnv, ns string) {
	t.Helper()
	for _, kind := range []string{"deployments", "replicasets", "pods", "services", "configmaps", "secrets", "serviceaccounts", "jobs"} {
		if left := listNames(t, env, ns, kind); len(left) != 0 {
			t.Errorf("%s left after Uninstall: %v", kind, left)
		}
	}
	if stored := releaseSecrets(t, env, ns); len(stored) != 0 {
		t.Errorf("release Secrets left after Uninstall: %v", secretSummary(stored))
	}
}

func instanceSelector() metav1.ListOptions {
	return metav1.ListOptions{LabelSelector: "app.kubernetes.io/instance=" + releaseName}
}

// releaseKinds are the resources listNames knows.
var releaseKinds = map[string]schema.GroupVersionResource{
	"deployments":     appsv1.SchemeGroupVersion.WithResource("deployments"),
	"replicasets":     appsv1.SchemeGroupVersion.WithResource("replicasets"),
	"jobs":            batchv1.SchemeGroupVersion.WithResource("jobs"),
	"pods":            corev1.SchemeGroupVersion.WithResource("pods"),
	"services":        corev1.SchemeGroupVersion.WithResource("services"),
	"configmaps":      corev1.SchemeGroupVersion.WithResource("configmaps"),
	"secrets":         corev1.SchemeGroupVersion.WithResource("secrets"),
	"serviceaccounts": corev1.SchemeGroupVersion.WithResource("serviceaccounts"),
}

// listNames lists the objects of one kind in ns that carry the release's instance label.
func listNames(t *testing.T, env *releaseEnv, ns, kind string) []string {
	t.Helper()
	gvr, ok := releaseKinds[kind]
	if !ok {
		t.Fatalf("listNames: unknown kind %s", kind)
	}
	l, err := env.metadata.Resource(gvr).Namespace(ns).List(t.Context(), instanceSelector())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, item := range l.Items {
		names = append(names, item.Name)
	}
	return names
}

// releaseSecrets are the storage Secrets of the release, found as `helm` finds them.
func releaseSecrets(t *testing.T, env *releaseEnv, ns string) []corev1.Secret {
	t.Helper()
	l, err := env.client.CoreV1().Secrets(ns).List(t.Context(), metav1.ListOptions{LabelSelector: "owner=helm,name=" + releaseName})
	if err != nil {
		t.Fatal(err)
	}
	return l.Items
}

func secretSummary(secrets []corev1.Secret) []string {
	var out []string
	for _, s := range secrets {
		out = append(out, s.Name+" ("+s.Labels["status"]+")")
	}
	return out
}

func findHook(rel *release.Release, kind, name string) *release.Hook {
	for _, h := range rel.Hooks {
		if h.Kind == kind && h.Name == name {
			return h
		}
	}
	return nil
}

func describe(rel *release.Release) string {
	if rel == nil {
		return "no release"
	}
	return fmt.Sprintf("revision %d %s (%q)", rel.Version, rel.Info.Status, rel.Info.Description)
}

// poll checks cond every 100ms until it holds, failing the test after timeout.
func poll(t *testing.T, what string, timeout time.Duration, cond func(context.Context) error) {
	t.Helper()
	var last error
	err := wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		last = cond(ctx)
		return last == nil, nil
	})
	if err != nil {
		t.Fatalf("%s: %v (last: %v)", what, err, last)
	}
}

// Interrupted or failed: what decides between recovering a release and leaving it to the
// caller.
func TestInterrupted(t *testing.T) {
	for _, tc := range []struct {
		status      release.Status
		description string
		want        bool
	}{
		{release.StatusPendingInstall, "Initial install underway", true},
		{release.StatusPendingUpgrade, "Preparing upgrade", true},
		{release.StatusPendingRollback, "Rollback to 1", true},
		{release.StatusFailed, `Release "m" failed: failed pre-install: unable to build kubernetes object for deleting hook x.yaml: context canceled`, true},
		{release.StatusFailed, `Rollback "m" failed: context canceled`, true},
		{release.StatusFailed, "Release unlocked from stale 'pending-install' state", true},
		// Helm's own failures, timeouts included, are the caller's.
		{release.StatusFailed, "Release \"m\" failed: failed pre-install: 1 error occurred:\n\t* timed out waiting for the condition\n\n", false},
		{release.StatusFailed, `Release "m" failed: context deadline exceeded`, false},
		{release.StatusFailed, `Release "m" failed: failed pre-install: job m-db-prepare failed: BackoffLimitExceeded`, false},
		{release.StatusDeployed, "Install complete", false},
		{release.StatusUninstalling, "Deletion in progress (or silently failed)", false},
	} {
		rel := &release.Release{Info: &release.Info{Status: tc.status, Description: tc.description}}
		if got := interrupted(rel); got != tc.want {
			t.Errorf("interrupted(%s %q) = %t, want %t", tc.status, tc.description, got, tc.want)
		}
	}
}

func TestLastServed(t *testing.T) {
	history := func(statuses ...release.Status) []*release.Release {
		var rels []*release.Release
		for i, s := range statuses {
			rels = append(rels, &release.Release{Version: i + 1, Info: &release.Info{Status: s}})
		}
		return rels
	}
	for _, tc := range []struct {
		history []*release.Release
		want    int // 0: none
	}{
		{history(release.StatusPendingInstall), 0},
		{history(release.StatusFailed, release.StatusPendingUpgrade), 0},
		{history(release.StatusDeployed, release.StatusPendingUpgrade), 1},
		{history(release.StatusSuperseded, release.StatusDeployed, release.StatusFailed, release.StatusPendingUpgrade), 2},
		{history(release.StatusSuperseded, release.StatusFailed, release.StatusPendingRollback), 1},
	} {
		last := tc.history[len(tc.history)-1].Version
		got := lastServed(tc.history, last)
		if (got == nil && tc.want != 0) || (got != nil && got.Version != tc.want) {
			t.Errorf("lastServed(%d revisions) = %v, want revision %d", len(tc.history), describe(got), tc.want)
		}
	}
}
