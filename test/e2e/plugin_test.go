package e2e

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
	"github.com/mastodon-operator/mastodon-operator/internal/handoff"
	"github.com/mastodon-operator/mastodon-operator/internal/kubectlmastodon"
	"github.com/mastodon-operator/mastodon-operator/internal/snapshot"
)

// plugin runs kubectl-mastodon against the local cluster in ns, as a user would.
func plugin(t *testing.T, ns string, args ...string) (string, int) {
	t.Helper()
	var out bytes.Buffer
	code := kubectlmastodon.Main(append([]string{"--kubeconfig", h.Cluster.KubeconfigPath(), "-n", ns}, args...),
		strings.NewReader(""), &out, &out)
	return out.String(), code
}

// yamlDocuments parses a YAML stream, failing the test on anything that is not YAML.
func yamlDocuments(t *testing.T, s string) []*unstructured.Unstructured {
	t.Helper()
	dec := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(s), 4096)
	var out []*unstructured.Unstructured
	for {
		doc := map[string]any{}
		if err := dec.Decode(&doc); err != nil {
			if err.Error() != "EOF" {
				t.Fatalf("invalid YAML: %v\n%s", err, s)
			}
			return out
		}
		if len(doc) > 0 {
			out = append(out, &unstructured.Unstructured{Object: doc})
		}
	}
}

// TestPluginPlansMigratesHandsOffAndRollsBack walks a BlueGreen migration with the plugin: plan
// changes nothing and shows what the migration then does, status --wait ends with the exit code
// of the outcome, the Finish step's hand-off holds a HelmRelease and an Application of the
// release, handoff writes it as files, the snapshot export applies, and a rollback asked for by
// the plugin rolls back.
func TestPluginPlansMigratesHandsOffAndRollsBack(t *testing.T) {
	ctx := context.Background()
	ns := "mastodon-plugin"
	g := gomega.NewWithT(t)
	objs, err := h.DeployMastodon(ctx, ns)
	if err != nil {
		t.Fatal(err)
	}
	before := liveObjects(t, ctx, ns, objs)
	m := sampleMigration(t, ns)
	shortWindow(m)
	raw, err := yaml.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "migration.yaml")
	if err := os.WriteFile(file, raw, 0o600); err != nil {
		t.Fatal(err)
	}

	// plan: the production layout passes (informational findings only), and nothing changes.
	out, code := plugin(t, ns, "plan", "-f", file)
	t.Log(firstLines(out, 3))
	g.Expect(code).To(gomega.Equal(0), out)
	g.Expect(out).To(gomega.MatchRegexp(`Plan for migration mastodon-plugin/to-helm \(BlueGreen to release mastodon-helm\): 0 block, 0 change, \d+ informational; \d+ objects rendered; 4 traffic change\(s\)\. Nothing was changed\.`))
	g.Expect(out).To(gomega.ContainSubstring("+ Deployment/mastodon-helm-web (new)"))
	g.Expect(out).To(gomega.ContainSubstring(`Service/mastodon-web /spec/selector: {"app":"mastodon-web"} -> `))
	for key, after := range liveObjects(t, ctx, ns, objs) {
		g.Expect(snapshot.Compare(after, before[key])).To(gomega.BeEmpty(), key)
	}
	var releases corev1.SecretList
	g.Expect(h.Client.List(ctx, &releases, client.InNamespace(ns), client.MatchingLabels{"owner": "helm"})).To(gomega.Succeed())
	g.Expect(releases.Items).To(gomega.BeEmpty(), "plan installed a release")

	// The migration the plan showed; status --wait returns once it completes.
	if err := h.Client.Create(ctx, m); err != nil {
		t.Fatal(err)
	}
	out, code = plugin(t, ns, "status", "to-helm", "--wait", "--timeout", "5m")
	t.Log(out)
	g.Expect(code).To(gomega.Equal(kubectlmastodon.ExitCompleted), out)
	g.Expect(out).To(gomega.HavePrefix("Migration mastodon-plugin/to-helm: Completed (BlueGreen, release mastodon-helm)"))
	g.Expect(out).To(gomega.MatchRegexp(`Finish\s+Succeeded\s+\S+\s+\S+\s+old Deployments scaled to 0 and kept; .*GitOps hand-off in ConfigMap to-helm-handoff`))
	g.Expect(out).To(gomega.MatchRegexp(`Sidekiq scheduler: held by mastodon-helm-sidekiq-\S+`))
	got, _ := getMigration(ctx, m)()

	// The hand-off: the HelmRelease is the release, with the full values (the generated ones:
	// the sample sets none of its own), not the 0 replicas of the scheduler worker's install.
	cm := &corev1.ConfigMap{}
	g.Expect(h.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "to-helm-handoff"}, cm)).To(gomega.Succeed())
	size := 0
	for k, v := range cm.Data {
		size += len(k) + len(v)
	}
	g.Expect(size).To(gomega.BeNumerically("<", handoff.MaxBytes))
	flux := yamlDocuments(t, cm.Data[handoff.KeyFlux])
	g.Expect(flux).To(gomega.HaveLen(2))
	g.Expect(flux[0].GetKind()).To(gomega.Equal("HelmRepository"))
	repoURL, _, _ := unstructured.NestedString(flux[0].Object, "spec", "url")
	g.Expect(repoURL).To(gomega.Equal(m.Spec.Release.Chart.Repository))
	hr := flux[1]
	g.Expect(hr.GetKind()).To(gomega.Equal("HelmRelease"))
	chart, _, _ := unstructured.NestedString(hr.Object, "spec", "chart", "spec", "chart")
	version, _, _ := unstructured.NestedString(hr.Object, "spec", "chart", "spec", "version")
	releaseName, _, _ := unstructured.NestedString(hr.Object, "spec", "releaseName")
	g.Expect([]string{releaseName, chart, version}).To(gomega.Equal([]string{"mastodon-helm", "mastodon", got.Status.Release.ChartVersion}))
	generated := &corev1.ConfigMap{}
	g.Expect(h.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "to-helm-generated-values"}, generated)).To(gomega.Succeed())
	var want map[string]any
	g.Expect(yaml.Unmarshal([]byte(generated.Data["values.yaml"]), &want)).To(gomega.Succeed())
	hrValues, _, _ := unstructured.NestedMap(hr.Object, "spec", "values")
	g.Expect(hrValues).To(gomega.Equal(want))
	g.Expect(yamlDocuments(t, cm.Data[handoff.KeyValues])[0].Object).To(gomega.Equal(want))
	// The variables the operator adds from Secret keys (OTP_SECRET, ...) come as the HelmRelease's
	// post-renderer patches, by reference only.
	postRenderers, _, _ := unstructured.NestedSlice(hr.Object, "spec", "postRenderers")
	g.Expect(postRenderers).To(gomega.HaveLen(1))
	g.Expect(cm.Data[handoff.KeyFlux]).To(gomega.ContainSubstring("name: mastodon-helm-web"))
	g.Expect(cm.Data[handoff.KeyFlux]).To(gomega.ContainSubstring("secretKeyRef"))
	secret := &corev1.Secret{}
	g.Expect(h.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "mastodon"}, secret)).To(gomega.Succeed())
	for key, value := range secret.Data {
		for doc, text := range cm.Data {
			if strings.HasPrefix(string(value), "fake-") { // the fixture's credentials (DB_USER is mastodon, which is everywhere)
				g.Expect(text).NotTo(gomega.ContainSubstring(string(value)), "Secret key %s's value in %s", key, doc)
			}
		}
	}
	argo := yamlDocuments(t, cm.Data[handoff.KeyArgoCD])
	g.Expect(argo).To(gomega.HaveLen(1))
	target, _, _ := unstructured.NestedString(argo[0].Object, "spec", "source", "targetRevision")
	argoValues, _, _ := unstructured.NestedMap(argo[0].Object, "spec", "source", "helm", "valuesObject")
	g.Expect(target).To(gomega.Equal(version))
	g.Expect(argoValues).To(gomega.Equal(want))

	// What the repository deletes and keeps: the old Deployments go; the switched Services and
	// the re-pointed HPA stay as they now are; the Ingress is untouched.
	var repo handoff.Repository
	g.Expect(yaml.UnmarshalStrict([]byte(cm.Data[handoff.KeyRepository]), &repo)).To(gomega.Succeed())
	names := func(es []handoff.Entry) []string {
		var out []string
		for _, e := range es {
			out = append(out, e.Object)
		}
		return out
	}
	g.Expect(names(repo.Delete)).To(gomega.Equal([]string{"Deployment/mastodon-streaming", "Deployment/mastodon-web", "Deployment/mastodon-worker"}))
	g.Expect(names(repo.KeepAsNow)).To(gomega.Equal([]string{"HorizontalPodAutoscaler/mastodon-web", "Service/mastodon-assets",
		"Service/mastodon-emoji", "Service/mastodon-streaming", "Service/mastodon-web"}))
	g.Expect(names(repo.KeepUnchanged)).To(gomega.ContainElement("Ingress/mastodon"))
	kept := yamlDocuments(t, cm.Data[handoff.KeyKept])
	g.Expect(kept).To(gomega.HaveLen(5))
	i := slices.IndexFunc(kept, func(u *unstructured.Unstructured) bool {
		return u.GetKind() == "Service" && u.GetName() == "mastodon-web"
	})
	g.Expect(i).NotTo(gomega.Equal(-1))
	selector, _, _ := unstructured.NestedStringMap(kept[i].Object, "spec", "selector")
	g.Expect(selector).To(gomega.HaveKeyWithValue("app.kubernetes.io/instance", "mastodon-helm"))
	// Clean enough to commit: the server takes it as it is.
	keptFile := filepath.Join(t.TempDir(), "kept.yaml")
	g.Expect(os.WriteFile(keptFile, []byte(cm.Data[handoff.KeyKept]), 0o600)).To(gomega.Succeed())
	out, err = kubectl(t, "", "apply", "--server-side", "--dry-run=server", "--force-conflicts", "-n", ns, "-f", keptFile)
	g.Expect(err).NotTo(gomega.HaveOccurred(), out)

	// handoff writes every document as a file.
	dir := filepath.Join(t.TempDir(), "handoff")
	out, code = plugin(t, ns, "handoff", "to-helm", "-o", dir)
	g.Expect(code).To(gomega.Equal(0), out)
	t.Log(out)
	for key, value := range cm.Data {
		written, err := os.ReadFile(filepath.Join(dir, key))
		g.Expect(err).NotTo(gomega.HaveOccurred())
		g.Expect(string(written)).To(gomega.Equal(value), key)
	}

	// snapshot export: the old stack, which kubectl applies as it is.
	exported := filepath.Join(t.TempDir(), "old-stack.yaml")
	out, code = plugin(t, ns, "snapshot", "export", "to-helm", "-o", exported)
	g.Expect(code).To(gomega.Equal(0), out)
	raw, err = os.ReadFile(exported)
	g.Expect(err).NotTo(gomega.HaveOccurred())
	docs := yamlDocuments(t, string(raw))
	g.Expect(len(docs)).To(gomega.BeNumerically(">=", int(got.Status.Snapshot.Objects)-2)) // less the Secrets
	out, err = kubectl(t, "", "apply", "--server-side", "--dry-run=server", "--force-conflicts", "-n", ns, "-f", exported)
	g.Expect(err).NotTo(gomega.HaveOccurred(), out)

	// rollback: on-call asks for level 1; status --wait ends with the rolled-back exit code.
	out, code = plugin(t, ns, "rollback", "to-helm", "--level", "1", "--reason", "asked by the plugin test")
	g.Expect(code).To(gomega.Equal(0), out)
	// Completed is an end too: wait for the operator to take the request up first.
	eventually(t, getMigration(ctx, m)).ShouldNot(gomega.HaveField("Status.Phase", v1alpha1.PhaseCompleted))
	out, code = plugin(t, ns, "status", "to-helm", "--wait", "--timeout", "3m")
	t.Log(out)
	g.Expect(code).To(gomega.Equal(kubectlmastodon.ExitRolledBack), out)
	g.Expect(out).To(gomega.ContainSubstring("Rollback: level 1 by MastodonRollback: asked by the plugin test"))
}

func firstLines(s string, n int) string {
	lines := strings.SplitN(s, "\n", n+1)
	return strings.Join(lines[:min(n, len(lines))], "\n")
}
