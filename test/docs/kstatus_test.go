package docs

import (
	"context"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"
)

// A migration and a rollback as a user or a GitOps repository applies them, the least they need.
const fresh = `
apiVersion: v1
kind: Namespace
metadata: {name: kstatus-fresh}
---
apiVersion: migration.mastodon-operator.io/v1alpha1
kind: MastodonMigration
metadata: {name: to-helm, namespace: kstatus-fresh}
spec:
  source:
    web: {deployment: mastodon-web}
    streaming: {deployment: mastodon-streaming}
    sidekiq: [{deployment: mastodon-worker}]
  release:
    chart: {repository: "https://mastodon.github.io/helm-charts/", name: mastodon, version: "1.0.2"}
    generateValues: true
---
apiVersion: migration.mastodon-operator.io/v1alpha1
kind: MastodonRollback
metadata: {name: back, namespace: kstatus-fresh}
spec: {migrationRef: {name: to-helm}, level: 1, reason: "5xx over 50%"}
`

// docs/health.md: a migration or rollback that no operator has looked at yet (this API server
// runs none) reads to kstatus as InProgress, so a Flux Kustomization with wait: true does not
// turn Ready on a migration that has not started.
func TestAnObjectTheOperatorHasNotSeenReadsAsInProgress(t *testing.T) {
	ctx := context.Background()
	for _, doc := range strings.Split(fresh, "\n---\n") {
		created := &unstructured.Unstructured{}
		if err := yaml.Unmarshal([]byte(doc), &created.Object); err != nil {
			t.Fatal(err)
		}
		if err := k8sClient.Create(ctx, created); err != nil {
			t.Fatal(err)
		}
		if created.GetKind() == "Namespace" {
			continue
		}
		u := &unstructured.Unstructured{}
		u.SetGroupVersionKind(created.GroupVersionKind())
		if err := k8sClient.Get(ctx, client.ObjectKeyFromObject(created), u); err != nil {
			t.Fatal(err)
		}
		res, err := status.Compute(u)
		if err != nil {
			t.Fatal(err)
		}
		if res.Status != status.InProgressStatus {
			t.Errorf("%s %s as the API server returns it before any status write: kstatus %s (%s), want InProgress; status %v",
				u.GetKind(), u.GetName(), res.Status, res.Message, u.Object["status"])
		}
	}
}
