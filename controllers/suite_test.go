package controllers_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/onsi/gomega"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
	"github.com/mastodon-operator/mastodon-operator/controllers"
	"github.com/mastodon-operator/mastodon-operator/internal/chartrepo"
	"github.com/mastodon-operator/mastodon-operator/internal/database/sqladmintest"
	"github.com/mastodon-operator/mastodon-operator/test/fixture"
)

// The suite runs the controllers against a real etcd and kube-apiserver (envtest, with the
// binaries `make test` builds), so admission, CEL rules, defaulting and watches are the API
// server's own. Nothing here runs pods: behaviour that needs a kubelet is tested in test/e2e.
var (
	k8sClient client.Client
	chartURL  string
	// kubeconfig reaches the API server as its admin, for kubectl.
	kubeconfig []byte
	// auditLog is the API server's audit log of status writes to MastodonMigrations.
	auditLog string
	// cloudSQL stands in for the Cloud SQL Admin API; each test adds its own instance.
	cloudSQL *sqladmintest.Server
)

// auditPolicy records the status writes to MastodonMigrations, and nothing else.
const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
  verbs: [patch, update]
  resources:
  - group: migration.mastodon-operator.io
    resources: [mastodonmigrations/status]
- level: None
`

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	ctrl.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.UseDevMode(true)))
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		os.Stderr.WriteString("KUBEBUILDER_ASSETS is not set: run `make test`, or set it to the output of hack/tools/build.sh\n")
		return 1
	}
	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join("..", "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
	}
	dir, err := os.MkdirTemp("", "envtest-audit-")
	if err != nil {
		os.Stderr.WriteString(err.Error() + "\n")
		return 1
	}
	defer func() { _ = os.RemoveAll(dir) }()
	policy := filepath.Join(dir, "policy.yaml")
	auditLog = filepath.Join(dir, "audit.log")
	if err := os.WriteFile(policy, []byte(auditPolicy), 0o600); err != nil {
		os.Stderr.WriteString(err.Error() + "\n")
		return 1
	}
	env.ControlPlane.GetAPIServer().Configure().Set("audit-policy-file", policy).Set("audit-log-path", auditLog)
	cfg, err := env.Start()
	if err != nil {
		os.Stderr.WriteString("starting envtest: " + err.Error() + "\n")
		return 1
	}
	defer func() { _ = env.Stop() }()
	kubeconfig = env.KubeConfig

	repo, err := chartrepo.Serve(fixture.OfficialChart())
	if err != nil {
		os.Stderr.WriteString("serving the official chart: " + err.Error() + "\n")
		return 1
	}
	defer func() { _ = repo.Close() }()
	chartURL = repo.URL()

	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(v1alpha1.AddToScheme(scheme))
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{Scheme: scheme, Client: controllers.ClientOptions(),
		Metrics: metricsserver.Options{BindAddress: "0"}})
	if err != nil {
		os.Stderr.WriteString("creating the manager: " + err.Error() + "\n")
		return 1
	}
	cloudSQL = sqladmintest.New(sqladmintest.Options{})
	defer cloudSQL.Close()
	if err := controllers.Setup(mgr, controllers.Options{CloudSQL: cloudSQL.ClientOptions()}); err != nil {
		os.Stderr.WriteString("setting up the controllers: " + err.Error() + "\n")
		return 1
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		if err := mgr.Start(ctx); err != nil {
			os.Stderr.WriteString("manager: " + err.Error() + "\n")
		}
	}()
	k8sClient, err = client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		os.Stderr.WriteString("creating a client: " + err.Error() + "\n")
		return 1
	}
	return m.Run()
}

// eventually polls for up to 30 s, as a person watching `kubectl get -w` would.
func eventually(t *testing.T, f any) gomega.AsyncAssertion {
	t.Helper()
	return gomega.NewWithT(t).Eventually(f).WithTimeout(30 * time.Second).WithPolling(100 * time.Millisecond)
}

// eventsFor lists the Events about an object, as `kubectl describe` shows them.
func eventsFor(ctx context.Context, kind string, obj client.Object) func() ([]eventsv1.Event, error) {
	return func() ([]eventsv1.Event, error) {
		var list eventsv1.EventList
		if err := k8sClient.List(ctx, &list, client.InNamespace(obj.GetNamespace())); err != nil {
			return nil, err
		}
		var out []eventsv1.Event
		for _, e := range list.Items {
			if e.Regarding.Name == obj.GetName() && e.Regarding.Kind == kind {
				out = append(out, e)
			}
		}
		return out, nil
	}
}
