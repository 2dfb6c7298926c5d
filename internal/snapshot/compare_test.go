package snapshot_test

import (
	"testing"

	"github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/mastodon-operator/mastodon-operator/internal/snapshot"
)

func TestCompare(t *testing.T) {
	g := gomega.NewWithT(t)
	stored := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apps/v1", "kind": "Deployment",
		"metadata": map[string]any{"name": "web", "annotations": map[string]any{"cloud.google.com/neg": `{"ingress": true}`}},
		"spec": map[string]any{
			"replicas": int64(2),
			"template": map[string]any{"metadata": map[string]any{"creationTimestamp": nil}, "spec": map[string]any{"containers": []any{
				map[string]any{"name": "web", "image": "mastodon:v4.3.0", "args": []any{"a", "b"},
					"env": []any{map[string]any{"name": "A", "value": "1"}, map[string]any{"name": "B", "value": "2"}}},
				map[string]any{"name": "sidecar", "image": "proxy:1"},
			}}},
		},
	}}
	g.Expect(snapshot.Compare(stored, stored)).To(gomega.BeEmpty())

	live := stored.DeepCopy()
	// Server-set fields, status and controller-written annotations are ignored; so is a null.
	live.SetResourceVersion("42")
	live.SetUID("u")
	live.SetGeneration(3)
	live.Object["status"] = map[string]any{"replicas": int64(2)}
	live.SetAnnotations(map[string]string{"cloud.google.com/neg": `{"ingress": true}`, "deployment.kubernetes.io/revision": "7"})
	delete(live.Object["spec"].(map[string]any)["template"].(map[string]any)["metadata"].(map[string]any), "creationTimestamp")
	live.Object["spec"].(map[string]any)["replicas"] = float64(2) // same number, other type
	g.Expect(snapshot.Compare(live, stored)).To(gomega.BeEmpty())

	_ = unstructured.SetNestedField(live.Object, int64(0), "spec", "replicas")
	live.SetAnnotations(nil)
	live.SetLabels(map[string]string{"app.kubernetes.io/managed-by": "Helm"})
	containers := live.Object["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)["containers"].([]any)
	web := containers[0].(map[string]any)
	web["image"] = "mastodon:v4.3.1"
	web["args"] = []any{"a"}
	web["env"] = []any{web["env"].([]any)[1], web["env"].([]any)[0]} // reordered
	containers[1] = map[string]any{"name": "other", "image": "proxy:1"}
	g.Expect(snapshot.Compare(live, stored)).To(gomega.Equal([]string{
		"metadata.annotations",
		"metadata.labels",
		"spec.replicas",
		"spec.template.spec.containers[name=other]",
		"spec.template.spec.containers[name=sidecar]",
		"spec.template.spec.containers[name=web].args[1]",
		"spec.template.spec.containers[name=web].env",
		"spec.template.spec.containers[name=web].image",
	}))
}
