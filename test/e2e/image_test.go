package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
	"github.com/mastodon-operator/mastodon-operator/controllers"
	"github.com/mastodon-operator/mastodon-operator/internal/image"
	"github.com/mastodon-operator/mastodon-operator/internal/image/imagetest"
	"github.com/mastodon-operator/mastodon-operator/internal/testenv/redisserver"
	"github.com/mastodon-operator/mastodon-operator/internal/testenv/registry"
)

// TestOperatorImageRunsInAContainer builds the operator's image as `make image` does, pushes it
// to Debian's docker-registry on loopback, pulls it back and checks it, then runs what was pulled
// with runc: read-only root file system, user 65532, a token of the chart's ServiceAccount
// mounted where Kubernetes mounts it, in a namespaced mode watching one namespace. The manager
// in the container elects itself through the chart's Lease Role, and refuses a migration whose
// chart repository is not allowed; one in a namespace it does not watch is left alone.
func TestOperatorImageRunsInAContainer(t *testing.T) {
	ctx := context.Background()
	work := t.TempDir()
	bin := filepath.Join(work, "manager")
	build := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, ".")
	build.Dir = harnessRoot()
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the manager: %v: %s", err, out)
	}
	opts := image.Options{Binary: bin, CACertificates: "/etc/ssl/certs/ca-certificates.crt", Arch: runtime.GOARCH,
		Version: "0.1.0", Revision: "e2e", Source: "https://github.com/mastodon-operator/mastodon-operator", Created: time.Unix(0, 0).UTC()}
	img, err := image.Build(opts)
	if err != nil {
		t.Fatal(err)
	}
	addr, stopRegistry, err := registry.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer stopRegistry()
	ref, err := name.ParseReference(addr+"/mastodon-operator:0.1.0", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatalf("pushing %s: %v", ref, err)
	}
	pulled, err := remote.Image(ref)
	if err != nil {
		t.Fatalf("pulling %s: %v", ref, err)
	}
	imagetest.CheckOperatorImage(t, pulled, opts)
	if t.Failed() {
		return
	}

	// The part that needs an OCI runtime, and root to unpack the image's owners.
	runc, err := exec.LookPath("runc")
	if err != nil {
		t.Skip("runc is not installed (hack/test-deps.sh installs Debian's runc): the image was pushed, pulled and checked but not run")
	}
	if os.Geteuid() != 0 {
		t.Skip("not root: runc runs containers as root here, so the image was pushed, pulled and checked but not run")
	}
	bundle := filepath.Join(work, "bundle")
	rootfs := filepath.Join(bundle, "rootfs")
	if err := imagetest.Unpack(pulled, rootfs); err != nil {
		t.Fatal(err)
	}
	cfg, err := pulled.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	// The shared operator would reconcile these migrations too: it stops for this test.
	stopSharedOperator(t, ctx)
	watched := "mastodon-image-run"
	if _, err := h.DeployMastodon(ctx, watched); err != nil {
		t.Fatal(err)
	}
	if err := h.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: watched + "-unwatched"}}); err != nil {
		t.Fatal(err)
	}
	// The chart in its namespaced mode: Roles in the watched namespace, no ClusterRole.
	installOperatorChart(t, ctx, map[string]any{"watchNamespaces": []any{watched}})
	tokenDir := serviceAccountDir(t, ctx, filepath.Join(work, "serviceaccount"))
	probePort, err := redisserver.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	apiserver, err := url.Parse(h.Cluster.RESTConfig().Host)
	if err != nil {
		t.Fatal(err)
	}
	// The manager's flags are the chart's Deployment's; the probes move to a free loopback port
	// (the container shares the host's network) and metrics are off (a later flag wins).
	deployment := &appsv1.Deployment{}
	if err := h.Client.Get(ctx, client.ObjectKey{Namespace: chartNamespace, Name: "mastodon-operator"}, deployment); err != nil {
		t.Fatal(err)
	}
	manager := deployment.Spec.Template.Spec.Containers[0]
	gomega.NewWithT(t).Expect(manager.Args).To(gomega.ContainElements("--watch-namespaces="+watched, "--leader-elect=true"))
	env := cfg.Config.Env
	for _, e := range manager.Env {
		env = append(env, e.Name+"="+e.Value)
	}
	writeRuntimeSpec(t, runc, bundle, cfg.Config.Entrypoint, cfg.Config.User,
		append(env, "KUBERNETES_SERVICE_HOST="+apiserver.Hostname(), "KUBERNETES_SERVICE_PORT="+apiserver.Port()),
		append(manager.Args, fmt.Sprintf("--health-probe-bind-address=127.0.0.1:%d", probePort), "--metrics-bind-address=0"),
		tokenDir)

	logPath := filepath.Join(work, "container.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	id := fmt.Sprintf("mastodon-operator-e2e-%d", os.Getpid())
	run := exec.Command(runc, "run", "--detach", "--bundle", bundle, id)
	run.Stdout, run.Stderr = logFile, logFile
	if err := run.Run(); err != nil {
		out, _ := os.ReadFile(logPath)
		t.Skipf("runc cannot run containers on this machine (%v: %s): the image was pushed, pulled and checked but not run", err, strings.TrimSpace(string(out)))
	}
	defer func() {
		_ = exec.Command(runc, "kill", id, "KILL").Run()
		_ = exec.Command(runc, "delete", "--force", id).Run()
		if t.Failed() {
			out, _ := os.ReadFile(logPath)
			t.Logf("the container's log:\n%s", out)
		}
	}()

	g := gomega.NewWithT(t)
	eventually(t, func() (int, error) {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", probePort))
		if err != nil {
			return 0, err
		}
		_ = resp.Body.Close()
		return resp.StatusCode, nil
	}).Should(gomega.Equal(http.StatusOK))
	lease := &coordinationv1.Lease{}
	eventually(t, func() (string, error) {
		err := h.Client.Get(ctx, client.ObjectKey{Namespace: chartNamespace, Name: controllers.LeaderElectionID}, lease)
		return ptr.Deref(lease.Spec.HolderIdentity, ""), err
	}).ShouldNot(gomega.BeEmpty())
	t.Logf("the manager in the container (runc, user %s, read-only root) leads: Lease holder %s", cfg.Config.User, *lease.Spec.HolderIdentity)

	refused := sampleMigration(t, watched)
	unwatched := sampleMigration(t, watched+"-unwatched")
	for _, m := range []*v1alpha1.MastodonMigration{refused, unwatched} {
		if err := h.Client.Create(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, getMigration(ctx, refused)).Should(gomega.HaveField("Status.Preflight", gomega.ContainElement(
		gomega.HaveField("Message", gomega.ContainSubstring("is not one the operator may install from (--allowed-chart-repositories: https://mastodon.github.io/helm-charts/)")))))
	for _, f := range must(getMigration(ctx, refused)()).Status.Preflight {
		if strings.Contains(f.Message, "--allowed-chart-repositories") {
			t.Logf("refused by the manager in the container: %s %s: %s", f.Class, f.Object, f.Message)
		}
	}
	got, err := getMigration(ctx, unwatched)()
	g.Expect(err).NotTo(gomega.HaveOccurred())
	g.Expect(got.Status.Phase).To(gomega.BeEmpty(), "a migration outside --watch-namespaces was reconciled")
}

// harnessRoot is the repository's root, where main is.
func harnessRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// serviceAccountDir writes what the kubelet mounts at /var/run/secrets/kubernetes.io/serviceaccount:
// a token of the chart's ServiceAccount (TokenRequest), the cluster's CA and the namespace.
func serviceAccountDir(t *testing.T, ctx context.Context, dir string) string {
	t.Helper()
	token := serviceAccountToken(t, ctx, chartNamespace, "mastodon-operator")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for file, data := range map[string][]byte{"token": []byte(token), "ca.crt": h.Cluster.RESTConfig().CAData, "namespace": []byte(chartNamespace)} {
		// Readable by the container's user, as the kubelet's projected volume makes them.
		if err := os.WriteFile(filepath.Join(dir, file), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// writeRuntimeSpec writes the bundle's config.json: runc's default spec with the image's
// entrypoint, user and env, a read-only root, the host's network (the API server listens on
// loopback), a tmpfs on /tmp (the chart's emptyDir) and the ServiceAccount mount. The cgroup
// mount and resource limits are left out: nothing here limits the container.
func writeRuntimeSpec(t *testing.T, runc, bundle string, entrypoint []string, user string, env, args []string, tokenDir string) {
	t.Helper()
	if out, err := exec.Command(runc, "spec", "--bundle", bundle).CombinedOutput(); err != nil {
		t.Fatalf("runc spec: %v: %s", err, out)
	}
	path := filepath.Join(bundle, "config.json")
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var spec map[string]any
	if err := json.Unmarshal(raw, &spec); err != nil {
		t.Fatal(err)
	}
	var uid, gid int
	if _, err := fmt.Sscanf(user, "%d:%d", &uid, &gid); err != nil {
		t.Fatalf("the image's user %q is not uid:gid", user)
	}
	process := spec["process"].(map[string]any)
	process["terminal"] = false
	process["args"] = append(append([]string{}, entrypoint...), args...)
	process["env"] = env
	process["user"] = map[string]any{"uid": uid, "gid": gid}
	spec["root"] = map[string]any{"path": "rootfs", "readonly": true}
	linux := spec["linux"].(map[string]any)
	delete(linux, "resources")
	var namespaces []any
	for _, ns := range linux["namespaces"].([]any) {
		if ns.(map[string]any)["type"] != "network" {
			namespaces = append(namespaces, ns)
		}
	}
	linux["namespaces"] = namespaces
	var mounts []any
	for _, m := range spec["mounts"].([]any) {
		if m.(map[string]any)["type"] != "cgroup" {
			mounts = append(mounts, m)
		}
	}
	mounts = append(mounts,
		map[string]any{"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": []string{"nosuid", "nodev", "mode=1777"}},
		map[string]any{"destination": "/var/run/secrets/kubernetes.io/serviceaccount", "type": "bind", "source": tokenDir, "options": []string{"rbind", "ro"}},
	)
	spec["mounts"] = mounts
	raw, err = json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, raw, 0o644); err != nil {
		t.Fatal(err)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
