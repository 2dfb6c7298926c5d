package handoff

import (
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
)

func migration() *v1alpha1.MastodonMigration {
	return &v1alpha1.MastodonMigration{
		ObjectMeta: metav1.ObjectMeta{Name: "to-helm", Namespace: "mastodon"},
		Spec: v1alpha1.MastodonMigrationSpec{
			Strategy: v1alpha1.StrategyBlueGreen,
			Source: v1alpha1.SourceSpec{Web: v1alpha1.ComponentRef{Deployment: "mastodon-web"},
				Streaming: v1alpha1.ComponentRef{Deployment: "mastodon-streaming"},
				Sidekiq:   []v1alpha1.ComponentRef{{Deployment: "mastodon-worker"}}},
			Release: v1alpha1.ReleaseSpec{Name: "mastodon-helm", Timeout: &metav1.Duration{Duration: 600e9},
				Chart: v1alpha1.ChartRef{Repository: "https://mastodon.github.io/helm-charts/", Name: "mastodon", Version: "1.0.x"}},
		},
	}
}

func object(kind, name string, fields map[string]any) *unstructured.Unstructured {
	apiVersion := map[string]string{"Deployment": "apps/v1", "Ingress": "networking.k8s.io/v1"}[kind]
	if apiVersion == "" {
		apiVersion = "v1"
	}
	u := &unstructured.Unstructured{Object: map[string]any{"apiVersion": apiVersion, "kind": kind,
		"metadata": map[string]any{"name": name, "namespace": "mastodon", "resourceVersion": "7", "uid": "u-1",
			"annotations": map[string]any{"kubectl.kubernetes.io/last-applied-configuration": "{}"}}}}
	for k, v := range fields {
		u.Object[k] = v
	}
	return u
}

// documents parses a YAML stream into maps, failing on anything that is not valid YAML.
func documents(t *testing.T, s string) []map[string]any {
	t.Helper()
	dec := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(s), 4096)
	var out []map[string]any
	for {
		doc := map[string]any{}
		if err := dec.Decode(&doc); err != nil {
			if err.Error() == "EOF" {
				return out
			}
			t.Fatalf("invalid YAML: %v\n%s", err, s)
		}
		if len(doc) > 0 {
			out = append(out, doc)
		}
	}
}

func TestBuildWritesTheReleaseForFluxAndArgoCDAndWhatTheRepositoryKeeps(t *testing.T) {
	webBefore := object("Service", "mastodon-web", map[string]any{"spec": map[string]any{"selector": map[string]any{"app": "mastodon-web"}}})
	webNow := object("Service", "mastodon-web", map[string]any{"spec": map[string]any{
		"selector": map[string]any{"app.kubernetes.io/instance": "mastodon-helm", "app.kubernetes.io/component": "web"}},
		"status": map[string]any{"loadBalancer": map[string]any{}}})
	secret := object("Secret", "mastodon", map[string]any{"data": map[string]any{"OTP_SECRET": "c2VjcmV0"}})
	secretNow := secret.DeepCopy()
	secretNow.Object["data"] = map[string]any{"OTP_SECRET": "bmV3"}
	deployBefore := object("Deployment", "mastodon-web", map[string]any{"spec": map[string]any{"replicas": int64(2)}})
	deployNow := object("Deployment", "mastodon-web", map[string]any{"spec": map[string]any{"replicas": int64(0)}})
	cm := object("ConfigMap", "mastodon-env", map[string]any{"data": map[string]any{"LOCAL_DOMAIN": "example.social"}})
	values := map[string]any{"mastodon": map[string]any{"web": map[string]any{"replicas": int64(2)}, "local_domain": "example.social"}}
	web := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "mastodon-helm-web"}}
	web.Spec.Template.Spec.Containers = []corev1.Container{{Name: "mastodon-web"}}

	data, err := Build(Input{Migration: migration(), ChartVersion: "1.0.2", Values: values,
		SecretEnv:   []v1alpha1.SecretEnvVar{{Name: "OTP_SECRET", SecretName: "mastodon", Key: "OTP_SECRET"}},
		Deployments: map[string]*appsv1.Deployment{"web": web},
		Snapshot:    []*unstructured.Unstructured{webBefore, secret, deployBefore, cm, object("Service", "gone", nil)},
		Live: map[string]*unstructured.Unstructured{"Service/mastodon-web": webNow, "Secret/mastodon": secretNow,
			"Deployment/mastodon-web": deployNow, "ConfigMap/mastodon-env": cm},
	})
	if err != nil {
		t.Fatal(err)
	}

	flux := documents(t, data[KeyFlux])
	if len(flux) != 2 || flux[0]["kind"] != "HelmRepository" || flux[1]["kind"] != "HelmRelease" {
		t.Fatalf("flux.yaml: want a HelmRepository and a HelmRelease, got %v", flux)
	}
	var hr struct {
		Spec struct {
			ReleaseName string `json:"releaseName"`
			Chart       struct {
				Spec struct {
					Chart     string            `json:"chart"`
					Version   string            `json:"version"`
					SourceRef map[string]string `json:"sourceRef"`
				} `json:"spec"`
			} `json:"chart"`
			Values        map[string]any `json:"values"`
			PostRenderers []struct {
				Kustomize struct {
					Patches []struct {
						Patch string `json:"patch"`
					} `json:"patches"`
				} `json:"kustomize"`
			} `json:"postRenderers"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal([]byte(strings.Split(data[KeyFlux], "---\n")[1]), &hr); err != nil {
		t.Fatal(err)
	}
	// The installed version pins the spec's range; the values are the release's.
	if hr.Spec.ReleaseName != "mastodon-helm" || hr.Spec.Chart.Spec.Chart != "mastodon" || hr.Spec.Chart.Spec.Version != "1.0.2" ||
		hr.Spec.Chart.Spec.SourceRef["name"] != flux[0]["metadata"].(map[string]any)["name"] {
		t.Errorf("HelmRelease chart: %+v", hr.Spec)
	}
	if got, _ := yaml.Marshal(hr.Spec.Values); string(got) != mustYAML(t, values) {
		t.Errorf("HelmRelease values:\n%s\nwant\n%s", got, mustYAML(t, values))
	}
	if len(hr.Spec.PostRenderers) != 1 || !strings.Contains(hr.Spec.PostRenderers[0].Kustomize.Patches[0].Patch, "secretKeyRef") ||
		!strings.Contains(hr.Spec.PostRenderers[0].Kustomize.Patches[0].Patch, "name: mastodon-web") {
		t.Errorf("HelmRelease post-renderers do not carry secretEnv: %+v", hr.Spec.PostRenderers)
	}

	argo := documents(t, data[KeyArgoCD])
	src := argo[0]["spec"].(map[string]any)["source"].(map[string]any)
	if argo[0]["kind"] != "Application" || src["chart"] != "mastodon" || src["targetRevision"] != "1.0.2" ||
		src["repoURL"] != "https://mastodon.github.io/helm-charts/" {
		t.Errorf("Application: %v", argo[0])
	}
	if documents(t, data[KeyValues])[0]["mastodon"] == nil {
		t.Errorf("values.yaml: %s", data[KeyValues])
	}

	var repo Repository
	if err := yaml.UnmarshalStrict([]byte(data[KeyRepository]), &repo); err != nil {
		t.Fatal(err)
	}
	objects := func(es []Entry) (out []string) {
		for _, e := range es {
			out = append(out, e.Object)
		}
		return out
	}
	if got := strings.Join(objects(repo.Delete), ","); got != "Deployment/mastodon-web,Service/gone" {
		t.Errorf("delete: %s", got)
	}
	if got := strings.Join(objects(repo.KeepAsNow), ","); got != "Secret/mastodon,Service/mastodon-web" {
		t.Errorf("keep as now: %s", got)
	}
	if got := strings.Join(objects(repo.KeepUnchanged), ","); got != "ConfigMap/mastodon-env" {
		t.Errorf("keep unchanged: %s", got)
	}
	// The switched Service as it now is, clean for a repository; never a Secret's values.
	kept := documents(t, data[KeyKept])
	if len(kept) != 1 || kept[0]["kind"] != "Service" {
		t.Fatalf("kept-objects.yaml: %v", kept)
	}
	meta := kept[0]["metadata"].(map[string]any)
	if kept[0]["status"] != nil || meta["resourceVersion"] != nil || meta["uid"] != nil || meta["annotations"] != nil {
		t.Errorf("kept object not clean: %v", kept[0])
	}
	for k, v := range data {
		if strings.Contains(v, "bmV3") || strings.Contains(v, "c2VjcmV0") {
			t.Errorf("%s holds a Secret value", k)
		}
	}
	if !strings.HasPrefix(data[KeyReadme], "Hand-off of migration mastodon/to-helm: release mastodon-helm (chart mastodon 1.0.2)") {
		t.Errorf("README.txt: %s", data[KeyReadme])
	}
}

func TestBuildStaysUnderAConfigMapsLimit(t *testing.T) {
	big := object("Service", "big", map[string]any{"spec": map[string]any{"selector": map[string]any{"app": "a"}}})
	bigNow := big.DeepCopy()
	bigNow.SetAnnotations(map[string]string{"note": strings.Repeat("x", MaxBytes)})
	data, err := Build(Input{Migration: migration(), ChartVersion: "1.0.2", Values: map[string]any{},
		Snapshot: []*unstructured.Unstructured{big}, Live: map[string]*unstructured.Unstructured{"Service/big": bigNow}})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := data[KeyKept]; ok || !strings.Contains(data[KeyReadme], "CUT: "+KeyKept) {
		t.Errorf("kept objects not cut, or not said: %s", data[KeyReadme])
	}
	if size(data) > MaxBytes {
		t.Errorf("%d bytes", size(data))
	}
	_, err = Build(Input{Migration: migration(), Values: map[string]any{"x": strings.Repeat("y", MaxBytes)}})
	if err == nil || !strings.Contains(err.Error(), "too large") {
		t.Errorf("values over the limit: %v", err)
	}
}

func mustYAML(t *testing.T, v any) string {
	t.Helper()
	b, err := yaml.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// InPlace: what the release adopted is Helm's now, and leaves the repository even though it
// changed.
func TestBuildDeletesWhatTheReleaseAdopted(t *testing.T) {
	m := migration()
	m.Spec.Strategy = v1alpha1.StrategyInPlace
	m.Status.Adoption = &v1alpha1.AdoptionStatus{Adopted: []string{"Service/mastodon-web"}}
	before := object("Service", "mastodon-web", map[string]any{"spec": map[string]any{"selector": map[string]any{"app": "mastodon-web"}}})
	now := object("Service", "mastodon-web", map[string]any{"spec": map[string]any{"selector": map[string]any{"app.kubernetes.io/instance": "mastodon"}}})
	data, err := Build(Input{Migration: m, ChartVersion: "1.0.2", Values: map[string]any{},
		Snapshot: []*unstructured.Unstructured{before}, Live: map[string]*unstructured.Unstructured{"Service/mastodon-web": now}})
	if err != nil {
		t.Fatal(err)
	}
	var repo Repository
	if err := yaml.UnmarshalStrict([]byte(data[KeyRepository]), &repo); err != nil {
		t.Fatal(err)
	}
	if len(repo.Delete) != 1 || repo.Delete[0].Object != "Service/mastodon-web" || !strings.Contains(repo.Delete[0].Why, "adopted") ||
		len(repo.KeepAsNow) != 0 || data[KeyKept] != "" {
		t.Errorf("repository: %+v; kept: %q", repo, data[KeyKept])
	}
}
