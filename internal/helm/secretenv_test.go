package helm

import (
	"bytes"
	"context"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/kube"
	kubefake "helm.sh/helm/v3/pkg/kube/fake"
	"helm.sh/helm/v3/pkg/storage"
	"helm.sh/helm/v3/pkg/storage/driver"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
	"github.com/mastodon-operator/mastodon-operator/test/fixture"
)

var otpSecret = []v1alpha1.SecretEnvVar{{Name: "OTP_SECRET", SecretName: "mastodon-secrets", Key: "OTP_SECRET"}}

// officialValues render every kind of container the chart has: the Rails and streaming
// Deployments, the prometheus-exporter sidecar, the Rails hook Jobs and the rclone Job.
func officialValues() map[string]any {
	v := fixture.OfficialChartMinimalValues("mastodon")
	m := v["mastodon"].(map[string]any)
	m["metrics"] = map[string]any{"prometheus": map[string]any{"enabled": true}}
	m["hooks"] = map[string]any{"s3Upload": map[string]any{"enabled": true, "endpoint": "https://storage.googleapis.com",
		"bucket": "assets", "existingSecret": "mastodon"}}
	return v
}

func loadedChart(t *testing.T) *chart.Chart {
	t.Helper()
	chrt, err := loader.Load(fixture.OfficialChart())
	if err != nil {
		t.Fatal(err)
	}
	return chrt
}

// The post-renderer gives OTP_SECRET, from its Secret key, to the Mastodon container of web,
// streaming and Sidekiq and to the database Jobs, and to nothing else.
func TestSecretEnvReachesEveryMastodonContainer(t *testing.T) {
	m, err := Render(loadedChart(t), officialValues(), "mastodon-helm", "mastodon", WithSecretEnv(otpSecret))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{ // object/container: gets OTP_SECRET
		"Deployment/mastodon-helm-web/mastodon-web":                     true,
		"Deployment/mastodon-helm-web/prometheus-exporter":              false,
		"Deployment/mastodon-helm-streaming/mastodon-streaming":         true,
		"Deployment/mastodon-helm-sidekiq-all-queues/mastodon":          true,
		"Job/mastodon-helm-db-prepare/mastodon-helm-db-migrate":         true,
		"Job/mastodon-helm-db-migrate/mastodon-helm-db-migrate":         true,
		"Job/mastodon-helm-db-pre-migrate/mastodon-helm-db-pre-migrate": true,
		"Job/mastodon-helm-assets-upload/upload-assets":                 false,
	}
	got := map[string]bool{}
	for _, obj := range slices.Concat(m.Resources, m.Hooks) {
		var pod corev1.PodSpec
		switch obj.GetKind() {
		case "Deployment":
			var d appsv1.Deployment
			convert(t, obj, &d)
			pod = d.Spec.Template.Spec
		case "Job":
			var j batchv1.Job
			convert(t, obj, &j)
			pod = j.Spec.Template.Spec
		default:
			if doc, _ := yaml.Marshal(obj.Object); strings.Contains(string(doc), "OTP_SECRET") {
				t.Errorf("%s %s mentions OTP_SECRET", obj.GetKind(), obj.GetName())
			}
			continue
		}
		for _, c := range pod.Containers {
			ref := secretRef(c, "OTP_SECRET")
			got[obj.GetKind()+"/"+obj.GetName()+"/"+c.Name] = ref != nil
			if ref != nil && (ref.Name != "mastodon-secrets" || ref.Key != "OTP_SECRET") {
				t.Errorf("%s %s container %s: OTP_SECRET from %s/%s", obj.GetKind(), obj.GetName(), c.Name, ref.Name, ref.Key)
			}
			if n := countEnv(c, "OTP_SECRET"); n > 1 {
				t.Errorf("%s %s container %s has OTP_SECRET %d times", obj.GetKind(), obj.GetName(), c.Name, n)
			}
		}
	}
	for k, w := range want {
		if g, ok := got[k]; !ok || g != w {
			t.Errorf("%s: has OTP_SECRET %v (rendered: %v), want %v", k, g, ok, w)
		}
	}
}

// Running it again changes nothing, and a variable the chart already gives is left as the
// chart gives it.
func TestSecretEnvIsIdempotent(t *testing.T) {
	vars := append([]v1alpha1.SecretEnvVar{{Name: "SECRET_KEY_BASE", SecretName: "elsewhere", Key: "other"}}, otpSecret...)
	once, err := SecretEnv(vars).Run(bytes.NewBufferString(manifestOf(t, officialValues())))
	if err != nil {
		t.Fatal(err)
	}
	twice, err := SecretEnv(vars).Run(bytes.NewBuffer(bytes.Clone(once.Bytes())))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(once.Bytes(), twice.Bytes()) {
		t.Errorf("a second run changed the manifests:\n%s\n---- to ----\n%s", once, twice)
	}
	if !strings.Contains(once.String(), "OTP_SECRET") {
		t.Error("the first run added no OTP_SECRET")
	}
	if strings.Contains(once.String(), "elsewhere") {
		t.Error("SECRET_KEY_BASE, which the chart gives, was replaced or doubled")
	}
}

// manifestOf is the chart's rendered resources as Helm hands them to a post-renderer, or, with
// options, the manifest Helm stores for the release after their post-renderers.
func manifestOf(t *testing.T, values map[string]any, opts ...InstallOption) string {
	t.Helper()
	install := action.NewInstall(&action.Configuration{Log: func(string, ...any) {}})
	install.DryRun, install.ClientOnly, install.Replace = true, true, true
	install.ReleaseName, install.Namespace = "mastodon-helm", "mastodon"
	apply(install, opts)
	rel, err := install.Run(loadedChart(t), values)
	if err != nil {
		t.Fatal(err)
	}
	return rel.Manifest
}

// A post-renderer given before (the adoption's, in the operator) still runs, and SecretEnv
// after it.
func TestSecretEnvComposesWithOtherPostRenderers(t *testing.T) {
	label := labelling{}
	m, err := Render(loadedChart(t), officialValues(), "mastodon-helm", "mastodon", WithPostRenderer(label), WithSecretEnv(otpSecret))
	if err != nil {
		t.Fatal(err)
	}
	var web appsv1.Deployment
	convert(t, m.Find("Deployment", "mastodon-helm-web"), &web)
	if web.Labels["post-rendered"] != "yes" || secretRef(web.Spec.Template.Spec.Containers[0], "OTP_SECRET") == nil {
		t.Errorf("web labels %v, OTP_SECRET %v: want both post-renderers applied", web.Labels, secretRef(web.Spec.Template.Spec.Containers[0], "OTP_SECRET"))
	}
	// As in Helm v3, the other post-renderer does not see the hooks.
	if job := m.Find("Job", "mastodon-helm-db-prepare"); job.GetLabels()["post-rendered"] != "" {
		t.Error("the hook Job went through the resources' post-renderer")
	}
}

// Install gives the hook Jobs the variables as it creates them: Helm v3 does not post-render
// hooks, so the kube client's Build does.
func TestInstallGivesTheHookJobsTheSecretEnv(t *testing.T) {
	kc := &recordingKubeClient{PrintingKubeClient: kubefake.PrintingKubeClient{Out: io.Discard}}
	cfg := &action.Configuration{
		Releases:     storage.Init(driver.NewMemory()),
		KubeClient:   kc,
		Capabilities: chartutil.DefaultCapabilities,
		Log:          func(string, ...any) {},
	}
	if _, err := Install(context.Background(), cfg, loadedChart(t), "mastodon-helm", "mastodon", officialValues(), time.Minute,
		WithSecretEnv(otpSecret)); err != nil {
		t.Fatal(err)
	}
	var prepare bool
	for _, doc := range kc.built() {
		if !strings.Contains(doc, "name: mastodon-helm-db-prepare\n") {
			continue
		}
		prepare = true
		if !strings.Contains(doc, "name: OTP_SECRET") {
			t.Errorf("Job db-prepare was created without OTP_SECRET:\n%s", doc)
		}
	}
	if !prepare {
		t.Error("Install created no Job db-prepare")
	}
}

// recordingKubeClient is Helm's printing fake, complete enough to be bound, that keeps what
// Build reads.
type recordingKubeClient struct {
	kubefake.PrintingKubeClient
	mu   sync.Mutex
	docs []string
}

func (c *recordingKubeClient) Build(r io.Reader, validate bool) (kube.ResourceList, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.docs = append(c.docs, string(data))
	c.mu.Unlock()
	return c.PrintingKubeClient.Build(bytes.NewReader(data), validate)
}

func (c *recordingKubeClient) UpdateThreeWayMerge(original, target kube.ResourceList, force bool) (*kube.Result, error) {
	return c.Update(original, target, force)
}

func (c *recordingKubeClient) built() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.docs)
}

// labelling is a post-renderer that labels every object post-rendered=yes.
type labelling struct{}

func (labelling) Run(rendered *bytes.Buffer) (*bytes.Buffer, error) {
	return eachObject(rendered, func(u *unstructured.Unstructured) error {
		l := u.GetLabels()
		if l == nil {
			l = map[string]string{}
		}
		l["post-rendered"] = "yes"
		u.SetLabels(l)
		return nil
	})
}

func countEnv(c corev1.Container, name string) int {
	n := 0
	for _, e := range c.Env {
		if e.Name == name {
			n++
		}
	}
	return n
}
