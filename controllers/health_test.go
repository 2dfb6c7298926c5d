package controllers_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
	"github.com/mastodon-operator/mastodon-operator/config/argocd"
)

// health reads an object back from the API server, as Argo CD and kstatus get it, and returns
// "kstatus / Argo CD status / Argo CD message".
func health(ctx context.Context, obj client.Object, kind string) func() (string, error) {
	return func() (string, error) {
		u := &unstructured.Unstructured{}
		u.SetGroupVersionKind(v1alpha1.GroupVersion.WithKind(kind))
		if err := k8sClient.Get(ctx, client.ObjectKeyFromObject(obj), u); err != nil {
			return "", err
		}
		res, err := status.Compute(u)
		if err != nil {
			return "", err
		}
		hs, err := argocd.Evaluate(u.Object)
		if err != nil {
			return "", err
		}
		return string(res.Status) + " / " + hs.Status + " / " + hs.Message, nil
	}
}

// kubectlWait runs the `kubectl wait` that docs/health.md gives for a state, against the envtest
// API server, and fails the test unless it returns within 10 s.
func kubectlWait(t *testing.T, ns, object, condition string) {
	t.Helper()
	config := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(config, kubeconfig, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(os.Getenv("KUBEBUILDER_ASSETS"), "kubectl"), "--kubeconfig", config,
		"wait", "-n", ns, object, condition, "--timeout=10s")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("kubectl wait %s %s: %v\n%s", object, condition, err, out)
	}
}

// The shipped Argo CD health checks read the objects the controllers write, as the API server
// returns them, as kstatus does: a preflight that blocks, a paused migration, one rolled back by
// on-call, and a rollback that cannot run; and docs/health.md's `kubectl wait` for each returns.
func TestArgoCDHealthOfObjectsFromTheAPIServer(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t, ctx)
	blocked := migration(ns, "blocked")
	paused := migration(ns, "paused")
	paused.Spec.Paused = true
	for _, m := range []*v1alpha1.MastodonMigration{blocked, paused} {
		if err := k8sClient.Create(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	refused := rollback(ns, "refused", "no-such-migration", 1)
	if err := k8sClient.Create(ctx, refused); err != nil {
		t.Fatal(err)
	}
	eventually(t, health(ctx, blocked, "MastodonMigration")).Should(gomega.Equal(
		"Failed / Degraded / Preflight: 5 findings: 5 block the migration; see status.preflight"))
	eventually(t, health(ctx, paused, "MastodonMigration")).Should(gomega.Equal(
		"InProgress / Suspended / paused before step Preflight: set spec.paused to false to go on"))
	eventually(t, health(ctx, refused, "MastodonRollback")).Should(gomega.Equal(
		"Failed / Degraded / Failed: MastodonMigration no-such-migration not found in namespace " + ns + ": check spec.migrationRef.name"))

	kubectlWait(t, ns, "mastodonmigration/blocked", "--for=condition=Stalled")
	kubectlWait(t, ns, "mastodonmigration/paused", `--for=jsonpath={.status.conditions[?(@.type=="Ready")].reason}=Paused`)
	kubectlWait(t, ns, "mastodonrollback/refused", "--for=condition=Stalled")

	// On-call rolls the blocked one back: a spec change, then RolledBack.
	latest, _ := get(ctx, blocked)()
	raised := latest.DeepCopy()
	raised.Spec.RollbackLevel = 1
	if err := k8sClient.Patch(ctx, raised, client.MergeFrom(latest)); err != nil {
		t.Fatal(err)
	}
	eventually(t, health(ctx, blocked, "MastodonMigration")).Should(gomega.HavePrefix("Failed / Degraded / RolledBack: "))
	kubectlWait(t, ns, "mastodonmigration/blocked", "--for=jsonpath={.status.phase}=RolledBack")
}

// docs/health.md's `kubectl patch --patch-file config/argocd/argocd-cm.yaml` adds the checks to an
// argocd-cm and keeps its other keys.
func TestArgoCDConfigMapPatchInstallsTheChecks(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t, ctx)
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "argocd-cm"},
		Data: map[string]string{"url": "https://argocd.example.com"}}
	if err := k8sClient.Create(ctx, cm); err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(config, kubeconfig, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(os.Getenv("KUBEBUILDER_ASSETS"), "kubectl"), "--kubeconfig", config,
		"-n", ns, "patch", "configmap", "argocd-cm", "--patch-file", filepath.Join("..", "config", "argocd", "argocd-cm.yaml"))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("kubectl patch: %v\n%s", err, out)
	}
	if err := k8sClient.Get(ctx, client.ObjectKeyFromObject(cm), cm); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"url": "https://argocd.example.com"}
	for key, script := range argocd.Scripts {
		want["resource.customizations.health."+key] = script
	}
	gomega.NewWithT(t).Expect(cm.Data).To(gomega.Equal(want))
}
