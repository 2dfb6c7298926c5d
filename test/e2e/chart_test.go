package e2e

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/onsi/gomega"
	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
	"github.com/mastodon-operator/mastodon-operator/controllers"
	"github.com/mastodon-operator/mastodon-operator/internal/helm"
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

// serviceAccountConfig is a client config that authenticates with a token of the chart's
// ServiceAccount (TokenRequest API) and trusts the cluster's CA: no admin certificate.
func serviceAccountConfig(t *testing.T, ctx context.Context) *rest.Config {
	t.Helper()
	admin := h.Cluster.RESTConfig()
	clientset, err := kubernetes.NewForConfig(admin)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := clientset.CoreV1().ServiceAccounts(chartNamespace).CreateToken(ctx, "mastodon-operator",
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600)}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("TokenRequest for the chart's ServiceAccount: %v", err)
	}
	return &rest.Config{Host: admin.Host, BearerToken: tr.Status.Token, TLSClientConfig: rest.TLSClientConfig{CAData: admin.CAData}}
}

// TestOperatorChartsOwnRBACMigratesAndRollsBack installs the operator's chart, runs the manager
// with its ServiceAccount's token only, and completes a BlueGreen migration and a level 2
// rollback on the official chart: the chart's RBAC is enough. A migration naming a chart
// repository outside the chart's allowedChartRepositories is refused by preflight.
func TestOperatorChartsOwnRBACMigratesAndRollsBack(t *testing.T) {
	ctx := context.Background()
	// The shared operator holds admin credentials: it stops for this test and starts again after.
	if err := operator.Stop(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		var err error
		if operator, err = h.StartOperator(ctx); err != nil {
			t.Fatal(err)
		}
	}()
	installOperatorChart(t, ctx, map[string]any{"allowedChartRepositories": []any{h.ChartURL}})
	// The manager below runs in this process, with the flags the chart gives the Deployment.
	deployment := &appsv1.Deployment{}
	if err := h.Client.Get(ctx, client.ObjectKey{Namespace: chartNamespace, Name: "mastodon-operator"}, deployment); err != nil {
		t.Fatal(err)
	}
	gomega.NewWithT(t).Expect(deployment.Spec.Template.Spec.Containers[0].Args).To(gomega.ContainElements(
		"--allowed-chart-repositories="+h.ChartURL, "--leader-elect=true"))

	cfg := serviceAccountConfig(t, ctx)
	sa, err := client.New(cfg, client.Options{Scheme: h.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	if err := sa.List(ctx, &corev1.NodeList{}); !apierrors.IsForbidden(err) {
		t.Fatalf("the ServiceAccount may list Nodes (%v): the test would not prove the chart's RBAC", err)
	}

	logFile, err := os.CreateTemp("", "mastodon-operator-chart-rbac-*.log")
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if t.Failed() {
			t.Logf("the operator's log is in %s", logFile.Name())
		}
	}()
	mgr, err := harness.NewManager(cfg, ctrl.Options{
		Logger:         zap.New(zap.WriteTo(logFile), zap.UseDevMode(true)),
		LeaderElection: true, LeaderElectionID: controllers.LeaderElectionID, LeaderElectionNamespace: chartNamespace,
		LeaderElectionReleaseOnCancel: true,
	}, controllers.Options{ServiceAddress: h.Web.Address, CloudSQL: cloudSQL.ClientOptions(), AllowedChartRepositories: []string{h.ChartURL}})
	if err != nil {
		t.Fatal(err)
	}
	mgrCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- mgr.Start(mgrCtx) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("the manager: %v", err)
		}
	}()

	ns := "mastodon-chart-rbac"
	objs, before, m := migrateTo(t, ctx, ns, v1alpha1.PhaseCompleted, shortWindow)
	done1, _ := getMigration(ctx, m)()
	t.Logf("completed with the chart's ServiceAccount: %v", stepStates(done1))
	rollBackTo(t, ctx, m, 2)
	g := gomega.NewWithT(t)
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
