package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/onsi/gomega"
	"helm.sh/helm/v3/pkg/action"
	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/yaml"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
	"github.com/mastodon-operator/mastodon-operator/controllers"
	"github.com/mastodon-operator/mastodon-operator/internal/helm"
	"github.com/mastodon-operator/mastodon-operator/test/harness"
)

// kustomizeImage is the image make deploy is given; kwok runs no container, so any name rolls out.
const kustomizeImage = "registry.example.com/mastodon-operator:e2e"

// kustomizeObjects is what make deploy applies: config/default built by the harness's kubectl.
func kustomizeObjects(t *testing.T) []*unstructured.Unstructured {
	t.Helper()
	out, err := kubectl(t, "", "kustomize", harness.RepoPath("config", "default"))
	if err != nil {
		t.Fatalf("kubectl kustomize config/default: %v\n%s", err, out)
	}
	var objs []*unstructured.Unstructured
	for _, doc := range strings.Split(out, "\n---\n") {
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal([]byte(doc), &u.Object); err != nil {
			t.Fatal(err)
		}
		if len(u.Object) > 0 {
			objs = append(objs, u)
		}
	}
	return objs
}

// uninstallOperatorChart removes the chart's release, which another test may have left, so that
// make deploy meets no object another manager owns. The CRDs stay (crds.keep).
func uninstallOperatorChart(t *testing.T) {
	t.Helper()
	cfg, err := helm.NewConfig(h.Cluster.RESTConfig(), chartNamespace, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	if last, err := helm.Status(cfg, "mastodon-operator"); err != nil || last == nil {
		if err != nil {
			t.Fatal(err)
		}
		return
	}
	if _, err := action.NewUninstall(cfg).Run("mastodon-operator"); err != nil {
		t.Fatalf("helm uninstall: %v", err)
	}
}

// TestKustomizeInstallRunsTheOperator runs `make deploy` (config/default, the harness's kubectl)
// against the local cluster, then runs the manager with a TokenRequest token of the
// ServiceAccount it created, no admin credentials: every object is accepted, the CRDs are
// established, the Deployment rolls out with the image given, the leader election Role lets
// the manager take the Lease in the namespace, and its ClusterRole carries a BlueGreen migration
// through to Completed.
func TestKustomizeInstallRunsTheOperator(t *testing.T) {
	ctx := context.Background()
	g := gomega.NewWithT(t)
	stopSharedOperator(t, ctx)
	uninstallOperatorChart(t)

	objs := kustomizeObjects(t)
	// Delete what make deploy made, but the CRDs (every test's migrations) and the Namespace,
	// so that the chart's tests install into the same state as before.
	defer func() {
		for _, o := range objs {
			if o.GetKind() == "CustomResourceDefinition" || o.GetKind() == "Namespace" {
				continue
			}
			if err := h.Client.Delete(ctx, o); client.IgnoreNotFound(err) != nil {
				t.Errorf("deleting %s %s: %v", o.GetKind(), o.GetName(), err)
			}
		}
	}()
	bin := os.Getenv("MASTODON_OPERATOR_BIN_DIR")
	deploy := exec.CommandContext(ctx, "make", "--no-print-directory", "deploy", "KUBECTL="+filepath.Join(bin, "kubectl"), "IMG="+kustomizeImage)
	deploy.Dir = harness.RepoPath()
	deploy.Env = append(os.Environ(), "KUBECONFIG="+h.Cluster.KubeconfigPath())
	out, err := deploy.CombinedOutput()
	if err != nil {
		t.Fatalf("make deploy: %v\n%s", err, out)
	}
	t.Logf("make deploy:\n%s", out)
	if n := strings.Count(string(out), " serverside-applied"); n != len(objs) {
		t.Errorf("make deploy applied %d objects, config/default has %d", n, len(objs))
	}
	for _, o := range objs {
		live := &unstructured.Unstructured{}
		live.SetGroupVersionKind(o.GroupVersionKind())
		if err := h.Client.Get(ctx, client.ObjectKeyFromObject(o), live); err != nil {
			t.Errorf("%s %s/%s: %v", o.GetKind(), o.GetNamespace(), o.GetName(), err)
		}
		if o.GetKind() == "CustomResourceDefinition" {
			eventually(t, func() (string, error) {
				crd := &unstructured.Unstructured{}
				crd.SetGroupVersionKind(o.GroupVersionKind())
				err := h.Client.Get(ctx, client.ObjectKeyFromObject(o), crd)
				conds, _, _ := unstructured.NestedSlice(crd.Object, "status", "conditions")
				for _, c := range conds {
					if c := c.(map[string]any); c["type"] == "Established" {
						return c["status"].(string), err
					}
				}
				return "", err
			}).Should(gomega.Equal("True"), "CRD %s is not established", o.GetName())
		}
	}

	// The Deployment rolls out (kwok makes its pod Ready) with the image make deploy was given
	// and the ServiceAccount whose token the manager below uses.
	if err := h.WaitCurrent(ctx, "apps/v1", "Deployment", chartNamespace, "mastodon-operator", 60*time.Second); err != nil {
		t.Fatal(err)
	}
	deployment := &appsv1.Deployment{}
	g.Expect(h.Client.Get(ctx, client.ObjectKey{Namespace: chartNamespace, Name: "mastodon-operator"}, deployment)).To(gomega.Succeed())
	pod := deployment.Spec.Template.Spec
	g.Expect(pod.Containers[0].Image).To(gomega.Equal(kustomizeImage))
	g.Expect(pod.ServiceAccountName).To(gomega.Equal("mastodon-operator"))
	g.Expect(pod.Containers[0].Args).To(gomega.ContainElement("--leader-elect=true"))

	cfg := serviceAccountConfig(t, ctx)
	sa, err := client.New(cfg, client.Options{Scheme: h.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	if err := sa.List(ctx, &corev1.NodeList{}); !apierrors.IsForbidden(err) {
		t.Fatalf("the ServiceAccount may list Nodes (%v): the test would not prove config/rbac", err)
	}
	logFile, err := os.CreateTemp("", "mastodon-operator-kustomize-*.log")
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if t.Failed() {
			t.Logf("the operator's log is in %s", logFile.Name())
		}
	}()
	// The manager main runs, with the Deployment's leader election, in this process; it may install
	// from the loopback repository (the Deployment allows only the official one).
	mgr, err := harness.NewManager(cfg, ctrl.Options{
		Logger:         zap.New(zap.WriteTo(logFile), zap.UseDevMode(true)),
		LeaderElection: true, LeaderElectionID: controllers.LeaderElectionID, LeaderElectionNamespace: chartNamespace,
		LeaderElectionReleaseOnCancel: true,
		// Another manager of this process (the chart's test) may have used the controllers' names.
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
	}, controllers.Options{ServiceAddress: h.Web.Address, CloudSQL: cloudSQL.ClientOptions(), AllowedChartRepositories: []string{h.ChartURL}})
	if err != nil {
		t.Fatal(err)
	}
	mgrCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- mgr.Start(mgrCtx) }()
	defer func() {
		stop()
		// A manager whose caches never synced (RBAC that forbids a list) does not stop: the
		// test reports it and goes on.
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("the manager: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("the manager did not stop within 30s")
		}
	}()
	select {
	case <-mgr.Elected():
	case <-time.After(30 * time.Second):
		// The manager takes the Lease once its caches have synced: the ClusterRole's lists too.
		t.Fatal("the manager did not take the leader election Lease in 30s: see config/rbac")
	}
	lease := &coordinationv1.Lease{}
	g.Expect(h.Client.Get(ctx, client.ObjectKey{Namespace: chartNamespace, Name: controllers.LeaderElectionID}, lease)).To(gomega.Succeed())
	g.Expect(lease.Spec.HolderIdentity).NotTo(gomega.BeNil())

	_, _, m := migrateTo(t, ctx, "mastodon-kustomize", v1alpha1.PhaseCompleted, shortWindow)
	got, _ := getMigration(ctx, m)()
	t.Logf("completed with the kustomize install's ServiceAccount: %v", stepStates(got))
}
