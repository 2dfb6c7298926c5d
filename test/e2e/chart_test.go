package e2e

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"maps"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/onsi/gomega"
	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/releaseutil"
	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	eventsv1 "k8s.io/api/events/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	apiruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/yaml"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
	"github.com/mastodon-operator/mastodon-operator/controllers"
	"github.com/mastodon-operator/mastodon-operator/internal/helm"
	"github.com/mastodon-operator/mastodon-operator/internal/manager"
	"github.com/mastodon-operator/mastodon-operator/internal/testenv/server"
	"github.com/mastodon-operator/mastodon-operator/test/fixture"
	"github.com/mastodon-operator/mastodon-operator/test/harness"
)

// chartNamespace is where the operator's chart is installed, as the README says.
const chartNamespace = "mastodon-operator-system"

// installOperatorChart installs charts/mastodon-operator with the Helm SDK, as `helm install`
// would, then upgrades it: the CRDs the harness created are taken over by the release (as from a
// kustomize install), installed first without the MastodonRollback CRD's printer columns, and
// the upgrade must bring them back. Once installed, it only upgrades the release to values.
func installOperatorChart(t *testing.T, ctx context.Context, values map[string]any) {
	t.Helper()
	cfg, err := helm.NewConfig(h.Cluster.RESTConfig(), chartNamespace, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	load := func() *chart.Chart {
		chrt, err := loader.Load(harness.RepoPath("charts", "mastodon-operator"))
		if err != nil {
			t.Fatal(err)
		}
		return chrt
	}
	upgrade := action.NewUpgrade(cfg)
	upgrade.Namespace = chartNamespace
	if last, err := helm.Status(cfg, "mastodon-operator"); err != nil || last != nil {
		if err != nil {
			t.Fatal(err)
		}
		if _, err := upgrade.RunWithContext(ctx, "mastodon-operator", load(), values); err != nil {
			t.Fatalf("helm upgrade: %v", err)
		}
		return
	}
	older := load()
	for _, tpl := range older.Templates {
		if strings.HasSuffix(tpl.Name, "_mastodonrollbacks.yaml") {
			// The version's list item starts with its printer columns, and goes on with its name.
			data := string(tpl.Data)
			i := strings.Index(data, "  - additionalPrinterColumns:")
			j := strings.Index(data, "    name: v1alpha1\n")
			if i < 0 || j < i {
				t.Fatal("the MastodonRollback CRD template has no printer columns to strip")
			}
			tpl.Data = []byte(data[:i] + "  - name: v1alpha1\n" + data[j+len("    name: v1alpha1\n"):])
		}
	}
	install := action.NewInstall(cfg)
	install.ReleaseName, install.Namespace, install.CreateNamespace = "mastodon-operator", chartNamespace, true
	install.TakeOwnership = true
	if _, err := install.RunWithContext(ctx, older, values); err != nil {
		t.Fatalf("helm install: %v", err)
	}
	if got := printerColumns(t, ctx); len(got) != 0 {
		t.Fatalf("the install left the MastodonRollback CRD's printer columns %v", got)
	}
	if _, err := upgrade.RunWithContext(ctx, "mastodon-operator", load(), values); err != nil {
		t.Fatalf("helm upgrade: %v", err)
	}
	if got := printerColumns(t, ctx); len(got) == 0 {
		t.Fatal("helm upgrade did not update the MastodonRollback CRD")
	}
}

func printerColumns(t *testing.T, ctx context.Context) []any {
	t.Helper()
	crd := &unstructured.Unstructured{}
	crd.SetAPIVersion("apiextensions.k8s.io/v1")
	crd.SetKind("CustomResourceDefinition")
	if err := h.Client.Get(ctx, client.ObjectKey{Name: "mastodonrollbacks.migration.mastodon-operator.io"}, crd); err != nil {
		t.Fatal(err)
	}
	versions, _, _ := unstructured.NestedSlice(crd.Object, "spec", "versions")
	if len(versions) == 0 {
		t.Fatal("the MastodonRollback CRD has no versions")
	}
	columns, _, _ := unstructured.NestedSlice(versions[0].(map[string]any), "additionalPrinterColumns")
	return columns
}

// stopSharedOperator stops the operator every test shares, which holds admin credentials, and
// starts it again once the test and every later cleanup are done.
func stopSharedOperator(t *testing.T, ctx context.Context) {
	t.Helper()
	if err := operator.Stop(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		var err error
		if operator, err = h.StartOperator(ctx); err != nil {
			t.Fatal(err)
		}
	})
}

// serviceAccountToken is a token of a ServiceAccount from the TokenRequest API, as the kubelet
// mounts one.
func serviceAccountToken(t *testing.T, ctx context.Context, namespace, name string) string {
	t.Helper()
	clientset, err := kubernetes.NewForConfig(h.Cluster.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	tr, err := clientset.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, name,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600)}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("TokenRequest for ServiceAccount %s/%s: %v", namespace, name, err)
	}
	return tr.Status.Token
}

// serviceAccountConfig is a client config that authenticates with a token of the chart's
// ServiceAccount and trusts the cluster's CA: no admin certificate.
func serviceAccountConfig(t *testing.T, ctx context.Context) *rest.Config {
	t.Helper()
	admin := h.Cluster.RESTConfig()
	return &rest.Config{Host: admin.Host, BearerToken: serviceAccountToken(t, ctx, chartNamespace, "mastodon-operator"),
		TLSClientConfig: rest.TLSClientConfig{CAData: admin.CAData}}
}

// chartManager is the manager running in this process as the installed chart's Deployment runs it.
type chartManager struct {
	// Flags are the Deployment's arguments, as the manager reads them.
	Flags *manager.Flags
	// Config authenticates as the chart's ServiceAccount.
	Config *rest.Config
	// MetricsURL is the HTTPS metrics endpoint.
	MetricsURL string
}

// runChartManager runs the manager, until the test ends, with the arguments of the installed
// chart's Deployment and a token of its ServiceAccount, wired as main wires it. What differs
// from the pod: the metrics endpoint listens on a free loopback port (:8443 is the host's here)
// and the probes are off; the Lease's namespace, which a pod reads from its ServiceAccount
// mount, is given; the Lease is released on stop, so that the next manager need not wait for it
// to expire; Verify and the HTTP analysis reach Services through the harness's web server, and
// Cloud SQL is the local Admin API.
func runChartManager(t *testing.T, ctx context.Context) *chartManager {
	t.Helper()
	deployment := &appsv1.Deployment{}
	if err := h.Client.Get(ctx, client.ObjectKey{Namespace: chartNamespace, Name: "mastodon-operator"}, deployment); err != nil {
		t.Fatal(err)
	}
	container := deployment.Spec.Template.Spec.Containers[0]
	flags, err := manager.Parse(flag.NewFlagSet("manager", flag.ContinueOnError), container.Args)
	if err != nil {
		t.Fatalf("the chart's Deployment's arguments %q: %v", container.Args, err)
	}
	port, err := server.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	metricsAddress := fmt.Sprintf("127.0.0.1:%d", port)
	logFile, err := os.CreateTemp("", "mastodon-operator-chart-*.log")
	if err != nil {
		t.Fatal(err)
	}
	cfg := serviceAccountConfig(t, ctx)
	mgr, err := flags.New(cfg, func(mgrOpts *ctrl.Options, setup *controllers.Options) {
		mgrOpts.Logger = zap.New(zap.UseFlagOptions(&flags.Log), zap.WriteTo(logFile))
		mgrOpts.Metrics.BindAddress, mgrOpts.HealthProbeBindAddress = metricsAddress, "0"
		mgrOpts.LeaderElectionNamespace, mgrOpts.LeaderElectionReleaseOnCancel = chartNamespace, true
		// Each test's manager is new in the same process; its controllers reuse their names.
		mgrOpts.Controller = config.Controller{SkipNameValidation: ptr.To(true)}
		setup.ServiceAddress, setup.CloudSQL = h.Web.Address, cloudSQL.ClientOptions()
	})
	if err != nil {
		t.Fatal(err)
	}
	mgrCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- mgr.Start(mgrCtx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("the manager: %v", err)
		}
		if t.Failed() {
			t.Logf("the operator's log is in %s", logFile.Name())
		}
	})
	return &chartManager{Flags: flags, Config: cfg, MetricsURL: "https://" + metricsAddress + "/metrics"}
}

// TestOperatorChartsOwnRBACMigratesAndRollsBack installs the operator's chart, runs the manager
// with its ServiceAccount's token only, and completes a BlueGreen migration and a level 2
// rollback on the official chart: the chart's RBAC is enough. A migration naming a chart
// repository outside the chart's allowedChartRepositories is refused by preflight.
func TestOperatorChartsOwnRBACMigratesAndRollsBack(t *testing.T) {
	ctx := context.Background()
	stopSharedOperator(t, ctx)
	installOperatorChart(t, ctx, map[string]any{"allowedChartRepositories": []any{h.ChartURL}})
	mgr := runChartManager(t, ctx)
	g := gomega.NewWithT(t)
	g.Expect(mgr.Flags).To(gomega.And(gomega.HaveField("AllowedChartRepositories", []string{h.ChartURL}),
		gomega.HaveField("LeaderElect", true), gomega.HaveField("WatchNamespaces", gomega.BeEmpty())))
	sa, err := client.New(mgr.Config, client.Options{Scheme: h.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	if err := sa.List(ctx, &corev1.NodeList{}); !apierrors.IsForbidden(err) {
		t.Fatalf("the ServiceAccount may list Nodes (%v): the test would not prove the chart's RBAC", err)
	}

	ns := "mastodon-chart-rbac"
	objs, before, m := migrateTo(t, ctx, ns, v1alpha1.PhaseCompleted, shortWindow)
	done1, _ := getMigration(ctx, m)()
	t.Logf("completed with the chart's ServiceAccount: %v", stepStates(done1))
	rollBackTo(t, ctx, m, 2)
	got, _ := getMigration(ctx, m)()
	g.Expect(got.Status.Rollback).To(gomega.HaveField("Level", int32(2)))
	expectReleaseGoneAndStackRestored(t, g, ctx, m, objs, before)

	refused := sampleMigration(t, "mastodon-chart-refused")
	refused.Spec.Release.Chart.Repository = "https://charts.example.com/"
	if _, err := h.DeployMastodon(ctx, refused.Namespace); err != nil {
		t.Fatal(err)
	}
	if err := h.Client.Create(ctx, refused); err != nil {
		t.Fatal(err)
	}
	const why = "chart repository https://charts.example.com/ is not one the operator may install from (--allowed-chart-repositories: "
	eventually(t, getMigration(ctx, refused)).Should(gomega.HaveField("Status.Preflight", gomega.ContainElement(gomega.And(
		gomega.HaveField("Check", "Chart"), gomega.HaveField("Message", gomega.ContainSubstring(why))))))
	// An empty class is Blocks: the migration stops at preflight.
	g.Expect(must(getMigration(ctx, refused)()).Status.PreflightSummary).To(gomega.HaveField("Blocks", gomega.BeNumerically(">=", 1)))
	eventually(t, func() ([]string, error) {
		var list eventsv1.EventList
		err := h.Client.List(ctx, &list, client.InNamespace(refused.Namespace))
		var notes []string
		for _, e := range list.Items {
			if e.Type == corev1.EventTypeWarning {
				notes = append(notes, e.Reason+": "+e.Note)
			}
		}
		return notes, err
	}).Should(gomega.ContainElement(gomega.And(gomega.HavePrefix("PreflightFailed: "), gomega.ContainSubstring(why))))
}

// TestOperatorChartNamespacedMode installs the chart in its namespaced mode (watchNamespaces: the
// manager's rules in a Role in each watched namespace, no ClusterRole of them) with its
// ServiceMonitor, runs the manager as the chart's Deployment does with its ServiceAccount's token,
// and completes a BlueGreen migration in the watched namespace while one in another namespace is
// left alone. The metrics endpoint serves over HTTPS with the API server's authentication: no
// token is 401, a ServiceAccount without the chart's metrics-reader ClusterRole 403, one bound to
// it 200 with the migration's phase. The ServiceMonitor is accepted by the Prometheus Operator's
// own CRD and finds the metrics Service and its port, as Prometheus Operator would.
func TestOperatorChartNamespacedMode(t *testing.T) {
	ctx := context.Background()
	stopSharedOperator(t, ctx)
	ns, unwatched := "mastodon-chart-namespaced", "mastodon-chart-unwatched"
	if _, err := h.DeployMastodon(ctx, ns); err != nil {
		t.Fatal(err)
	}
	if err := h.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: unwatched}}); err != nil {
		t.Fatal(err)
	}
	if _, err := envtest.InstallCRDs(h.Cluster.RESTConfig(), envtest.CRDInstallOptions{
		Paths: []string{fixture.Testdata("prometheus-operator")}, ErrorIfPathMissing: true,
	}); err != nil {
		t.Fatalf("installing the Prometheus Operator's ServiceMonitor CRD: %v", err)
	}
	installOperatorChart(t, ctx, map[string]any{
		"watchNamespaces":          []any{ns},
		"allowedChartRepositories": []any{h.ChartURL},
		"metrics":                  map[string]any{"serviceMonitor": map[string]any{"enabled": true}},
	})
	g := gomega.NewWithT(t)
	expectNamespacedRBAC(t, g, ctx, ns)
	mgr := runChartManager(t, ctx)
	g.Expect(mgr.Flags).To(gomega.And(gomega.HaveField("WatchNamespaces", []string{ns}),
		gomega.HaveField("MetricsAddress", ":8443"), gomega.HaveField("LeaderElect", true)))
	sa, err := client.New(mgr.Config, client.Options{Scheme: h.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	if err := sa.List(ctx, &v1alpha1.MastodonMigrationList{}); !apierrors.IsForbidden(err) {
		t.Fatalf("the ServiceAccount may list migrations in every namespace (%v): the test would not prove the Roles are enough", err)
	}

	outside := sampleMigration(t, unwatched)
	if err := h.Client.Create(ctx, outside); err != nil {
		t.Fatal(err)
	}
	// Before the shared operator starts again (an earlier cleanup), which would reconcile it.
	t.Cleanup(func() { _ = h.Client.Delete(ctx, outside) })
	m := sampleMigration(t, ns)
	shortWindow(m)
	if err := h.Client.Create(ctx, m); err != nil {
		t.Fatal(err)
	}
	started := time.Now()
	eventually(t, getMigration(ctx, m)).Should(gomega.HaveField("Status.Phase", v1alpha1.PhaseCompleted))
	done := must(getMigration(ctx, m)())
	t.Logf("completed in %s with the Roles of the namespaced mode: %v", time.Since(started).Round(time.Second), stepStates(done))
	expectOneDeployedRevision(g, ctx, ns, m.Spec.Release.Name)
	old := []string{m.Spec.Source.Web.Deployment, m.Spec.Source.Streaming.Deployment}
	for _, s := range m.Spec.Source.Sidekiq {
		old = append(old, s.Deployment)
	}
	for _, name := range old {
		d := &appsv1.Deployment{}
		g.Expect(h.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, d)).To(gomega.Succeed())
		g.Expect(d.Spec.Replicas).To(gomega.HaveValue(gomega.BeZero()), "old Deployment %s is scaled to 0 by Finish", name)
	}
	// The Events a user reads to see which replica leads (the leader election Role allows them).
	eventually(t, func() ([]string, error) {
		var list corev1.EventList
		err := h.Client.List(ctx, &list, client.InNamespace(chartNamespace))
		var notes []string
		for _, e := range list.Items {
			if e.Reason == "LeaderElection" {
				notes = append(notes, e.Message)
			}
		}
		return notes, err
	}).Should(gomega.ContainElement(gomega.HaveSuffix(" became leader")))
	// The whole migration ran meanwhile: had the manager seen the other namespace, preflight
	// would have written its findings long ago.
	left := must(getMigration(ctx, outside)())
	g.Expect(left.Status).To(gomega.BeZero(), "a migration outside --watch-namespaces was reconciled")
	g.Expect(left.Finalizers).To(gomega.BeEmpty())

	expectMetricsForReadersOnly(t, g, ctx, mgr.MetricsURL, done, outside)
	expectServiceMonitorFindsTheMetricsService(t, g, ctx)
}

// expectNamespacedRBAC checks what a user of the namespaced mode checks: the manager's rules are a
// Role in the watched namespace, and the only cluster-wide objects are the metrics endpoint's
// TokenReview/SubjectAccessReview rules and the metrics-reader role to bind to Prometheus.
func expectNamespacedRBAC(t *testing.T, g gomega.Gomega, ctx context.Context, ns string) {
	t.Helper()
	release := client.MatchingLabels{"app.kubernetes.io/instance": "mastodon-operator"}
	var clusterRoles rbacv1.ClusterRoleList
	g.Expect(h.Client.List(ctx, &clusterRoles, release)).To(gomega.Succeed())
	names := map[string][]rbacv1.PolicyRule{}
	for _, r := range clusterRoles.Items {
		names[r.Name] = r.Rules
	}
	g.Expect(names).To(gomega.HaveLen(2))
	g.Expect(names).To(gomega.HaveKey("mastodon-operator-metrics-reader"))
	g.Expect(names).To(gomega.HaveKeyWithValue("mastodon-operator-metrics-auth", gomega.ConsistOf(
		rbacv1.PolicyRule{APIGroups: []string{"authentication.k8s.io"}, Resources: []string{"tokenreviews"}, Verbs: []string{"create"}},
		rbacv1.PolicyRule{APIGroups: []string{"authorization.k8s.io"}, Resources: []string{"subjectaccessreviews"}, Verbs: []string{"create"}},
	)))
	var bindings rbacv1.ClusterRoleBindingList
	g.Expect(h.Client.List(ctx, &bindings, release)).To(gomega.Succeed())
	g.Expect(bindings.Items).To(gomega.ConsistOf(gomega.HaveField("ObjectMeta.Name", "mastodon-operator-metrics-auth")))
	var roles rbacv1.RoleList
	g.Expect(h.Client.List(ctx, &roles, release)).To(gomega.Succeed())
	var where []string
	for _, r := range roles.Items {
		where = append(where, r.Namespace+"/"+r.Name)
	}
	g.Expect(where).To(gomega.ConsistOf(ns+"/mastodon-operator", chartNamespace+"/mastodon-operator-leader-election"))
	t.Logf("namespaced mode: ClusterRoles %v, Roles %v", slices.Sorted(maps.Keys(names)), where)
}

// expectMetricsForReadersOnly scrapes the manager's HTTPS metrics endpoint as Prometheus does,
// with ServiceAccount tokens. The certificate is controller-runtime's self-signed one (the chart
// mounts none, and its ServiceMonitor skips verification too), so the client does not verify it.
func expectMetricsForReadersOnly(t *testing.T, g gomega.Gomega, ctx context.Context, url string, m, outside *v1alpha1.MastodonMigration) {
	t.Helper()
	monitoring := "monitoring-e2e"
	g.Expect(h.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: monitoring}})).To(gomega.Succeed())
	for _, name := range []string{"prometheus", "someone-else"} {
		g.Expect(h.Client.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: monitoring, Name: name}})).To(gomega.Succeed())
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "prometheus-e2e-mastodon-operator-metrics"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "mastodon-operator-metrics-reader"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: monitoring, Name: "prometheus"}},
	}
	g.Expect(h.Client.Create(ctx, binding)).To(gomega.Succeed())
	t.Cleanup(func() { _ = h.Client.Delete(ctx, binding) })
	https := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	status := func(token string) func() (int, error) {
		return func() (int, error) {
			resp, err := getMetrics(https, url, token)
			if err != nil {
				return 0, err
			}
			_ = resp.Body.Close()
			return resp.StatusCode, nil
		}
	}
	eventually(t, status("")).Should(gomega.Equal(http.StatusUnauthorized), "no token")
	g.Expect(status(serviceAccountToken(t, ctx, monitoring, "someone-else"))()).To(gomega.Equal(http.StatusForbidden),
		"a ServiceAccount without the metrics-reader ClusterRole")
	reader := serviceAccountToken(t, ctx, monitoring, "prometheus")
	g.Expect(status(reader)()).To(gomega.Equal(http.StatusOK), "a ServiceAccount bound to the metrics-reader ClusterRole")
	series, err := scrapeAs(https, url, reader)
	g.Expect(err).NotTo(gomega.HaveOccurred())
	of := "name=" + m.Name + ",namespace=" + m.Namespace
	g.Expect(series["mastodon_migration_phase"]).To(gomega.HaveKeyWithValue(of+",phase=Completed", 1.0))
	for labels := range series["mastodon_migration_phase"] {
		g.Expect(labels).NotTo(gomega.ContainSubstring("namespace="+outside.Namespace+","), "a series of the migration left alone")
	}
	t.Logf("metrics over HTTPS: 401 without a token, 403 for %s/someone-else, 200 for %s/prometheus: mastodon_migration_phase{%s,phase=Completed} 1",
		monitoring, monitoring, of)
}

// expectServiceMonitorFindsTheMetricsService checks the chart's ServiceMonitor against the
// Prometheus Operator's own CRD (test/testdata/prometheus-operator, hack/servicemonitor-crd.sh):
// the API server stores it as the chart renders it, and what Prometheus Operator follows to find
// targets leads to the manager: its selector matches the metrics Service in its namespace, and
// its endpoint's port is a named port of the Service, of the Service's EndpointSlices.
func expectServiceMonitorFindsTheMetricsService(t *testing.T, g gomega.Gomega, ctx context.Context) {
	t.Helper()
	cfg, err := helm.NewConfig(h.Cluster.RESTConfig(), chartNamespace, t.Logf)
	g.Expect(err).NotTo(gomega.HaveOccurred())
	rel, err := action.NewGet(cfg).Run("mastodon-operator")
	g.Expect(err).NotTo(gomega.HaveOccurred())
	var rendered *unstructured.Unstructured
	for _, doc := range releaseutil.SplitManifests(rel.Manifest) {
		o := &unstructured.Unstructured{}
		g.Expect(yaml.Unmarshal([]byte(doc), &o.Object)).To(gomega.Succeed())
		if o.GetKind() == "ServiceMonitor" {
			rendered = o
		}
	}
	g.Expect(rendered).NotTo(gomega.BeNil(), "the release has no ServiceMonitor")
	// Helm's writes let the API server prune unknown fields with a warning; strict validation
	// refuses them instead, so this says whether every field the chart renders is in the CRD.
	strict := rendered.DeepCopy()
	strict.SetName(rendered.GetName() + "-strict")
	strict.SetNamespace(chartNamespace)
	g.Expect(h.Client.Create(ctx, strict, client.DryRunAll, client.FieldValidation("Strict"))).To(gomega.Succeed(),
		"the chart's ServiceMonitor against the Prometheus Operator's CRD")
	// The CRD has a schema, which the check above would have failed against.
	wrong := strict.DeepCopy()
	endpoints, _, _ := unstructured.NestedSlice(wrong.Object, "spec", "endpoints")
	endpoints[0].(map[string]any)["scheme"] = "HTTPS"
	g.Expect(unstructured.SetNestedSlice(wrong.Object, endpoints, "spec", "endpoints")).To(gomega.Succeed())
	g.Expect(apierrors.IsInvalid(h.Client.Create(ctx, wrong, client.DryRunAll))).To(gomega.BeTrue(), "the CRD refuses scheme HTTPS")

	stored := &unstructured.Unstructured{}
	stored.SetGroupVersionKind(rendered.GroupVersionKind())
	g.Expect(h.Client.Get(ctx, client.ObjectKey{Namespace: chartNamespace, Name: rendered.GetName()}, stored)).To(gomega.Succeed())
	g.Expect(stored.Object["spec"]).To(gomega.Equal(rendered.Object["spec"]), "the API server stored the ServiceMonitor as rendered")
	_, hasNamespaces, _ := unstructured.NestedMap(stored.Object, "spec", "namespaceSelector")
	g.Expect(hasNamespaces).To(gomega.BeFalse(), "no namespaceSelector: Prometheus Operator looks in the ServiceMonitor's own namespace")
	raw, _, _ := unstructured.NestedMap(stored.Object, "spec", "selector")
	var ls metav1.LabelSelector
	g.Expect(apiruntime.DefaultUnstructuredConverter.FromUnstructured(raw, &ls)).To(gomega.Succeed())
	selector, err := metav1.LabelSelectorAsSelector(&ls)
	g.Expect(err).NotTo(gomega.HaveOccurred())
	var services corev1.ServiceList
	g.Expect(h.Client.List(ctx, &services, client.InNamespace(chartNamespace), client.MatchingLabelsSelector{Selector: selector})).To(gomega.Succeed())
	g.Expect(services.Items).To(gomega.ConsistOf(gomega.HaveField("ObjectMeta.Name", "mastodon-operator-metrics")))
	svc := services.Items[0]
	endpoints, _, _ = unstructured.NestedSlice(stored.Object, "spec", "endpoints")
	g.Expect(endpoints).To(gomega.HaveLen(1))
	port, _, _ := unstructured.NestedString(endpoints[0].(map[string]any), "port")
	g.Expect(svc.Spec.Ports).To(gomega.ContainElement(gomega.HaveField("Name", port)), "the ServiceMonitor's port %q on the Service", port)
	// Prometheus Operator's targets are the EndpointSlices' endpoints on the port of that name:
	// the chart's manager pod (kwok runs it).
	eventually(t, func() ([]string, error) {
		var list discoveryv1.EndpointSliceList
		err := h.Client.List(ctx, &list, client.InNamespace(chartNamespace), client.MatchingLabels{discoveryv1.LabelServiceName: svc.Name})
		var targets []string
		for _, s := range list.Items {
			for _, p := range s.Ports {
				if ptr.Deref(p.Name, "") != port {
					continue
				}
				for _, e := range s.Endpoints {
					if ptr.Deref(e.Conditions.Ready, false) {
						targets = append(targets, fmt.Sprintf("%s:%d", e.Addresses[0], ptr.Deref(p.Port, 0)))
					}
				}
			}
		}
		return targets, err
	}).ShouldNot(gomega.BeEmpty(), "no ready endpoint on port %q of Service %s", port, svc.Name)
	t.Logf("ServiceMonitor %s: accepted by the CRD (strict), selects Service %s, port %q", stored.GetName(), svc.Name, port)
}
