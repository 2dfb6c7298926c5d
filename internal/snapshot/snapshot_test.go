package snapshot_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/onsi/gomega"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/mastodon-operator/mastodon-operator/internal/snapshot"
)

// The tests run against a real etcd and kube-apiserver (envtest, binaries from
// KUBEBUILDER_ASSETS, which `make test` sets to the output of hack/tools/build.sh), so
// server-side apply, field ownership, immutability and Service address allocation are the API
// server's own. Each test works in a namespace of its own.
var k8s client.Client

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		fmt.Fprintln(os.Stderr, "KUBEBUILDER_ASSETS is not set: run `make test`, or set it to the output of hack/tools/build.sh")
		return 1
	}
	env := &envtest.Environment{}
	cfg, err := env.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting envtest:", err)
		return 1
	}
	defer func() { _ = env.Stop() }()
	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	if k8s, err = client.New(cfg, client.Options{Scheme: scheme}); err != nil {
		fmt.Fprintln(os.Stderr, "creating a client:", err)
		return 1
	}
	return m.Run()
}

var nsCount atomic.Int32

func namespace(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("snap-%d", nsCount.Add(1))
	if err := k8s.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}); err != nil {
		t.Fatal(err)
	}
	return name
}

const (
	secretValue  = "s3cr3t-key-base-do-not-leak"
	lastApplied  = "kubectl.kubernetes.io/last-applied-configuration"
	negAnnot     = "cloud.google.com/neg"
	fieldOwner   = "mastodon-operator-restore"
	kustomizeMgr = "kubectl-client-side-apply"
)

// stack creates the objects of a Kustomize-managed Mastodon web tier and returns their refs.
func stack(t testing.TB, ns, prefix string) []snapshot.Ref {
	t.Helper()
	ctx := context.Background()
	labels := map[string]string{"app": "mastodon", "component": prefix}
	objs := []client.Object{
		&corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: prefix + "-env", Namespace: ns},
			Data:       map[string]string{"LOCAL_DOMAIN": "example.social", "WEB_CONCURRENCY": "2", "DB_HOST": "10.1.2.3"},
		},
		&corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: prefix + "-secrets", Namespace: ns},
			Data:       map[string][]byte{"SECRET_KEY_BASE": []byte(secretValue), "DB_PASS": []byte("hunter2-" + secretValue)},
		},
		&appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: prefix, Namespace: ns, Labels: labels},
			Spec: appsv1.DeploymentSpec{
				Replicas: new(int32(2)),
				Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: labels},
					Spec: corev1.PodSpec{Containers: []corev1.Container{{
						Name: "web", Image: "ghcr.io/mastodon/mastodon:v4.3.0",
						Command: []string{"bundle", "exec", "puma", "-C", "config/puma.rb"},
						Ports:   []corev1.ContainerPort{{Name: "http", ContainerPort: 3000}},
						EnvFrom: []corev1.EnvFromSource{
							{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: prefix + "-env"}}},
							{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: prefix + "-secrets"}}},
						},
						Env: []corev1.EnvVar{{Name: "RAILS_ENV", Value: "production"}},
					}}},
				},
			},
		},
		&corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: prefix, Namespace: ns, Labels: labels, Annotations: map[string]string{
				negAnnot:                               `{"ingress": true}`,
				"beta.cloud.google.com/backend-config": `{"default": "mastodon-backendconfig"}`,
				lastApplied:                            `{"apiVersion":"v1","kind":"Service","metadata":{"name":"` + prefix + `"}}`,
			}},
			Spec: corev1.ServiceSpec{
				Selector: labels,
				Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http")}},
			},
		},
		&networkingv1.Ingress{
			ObjectMeta: metav1.ObjectMeta{Name: prefix, Namespace: ns, Annotations: map[string]string{
				"kubernetes.io/ingress.global-static-ip-name": "mastodon-ip",
				"ingress.kubernetes.io/url-map":               "k8s2-um-controller-written", // dropped: GKE writes it
			}},
			Spec: networkingv1.IngressSpec{Rules: []networkingv1.IngressRule{{
				Host: "example.social",
				IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{Paths: []networkingv1.HTTPIngressPath{{
					Path: "/", PathType: new(networkingv1.PathTypePrefix),
					Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{
						Name: prefix, Port: networkingv1.ServiceBackendPort{Number: 80}}},
				}}}},
			}}},
		},
		&autoscalingv2.HorizontalPodAutoscaler{
			ObjectMeta: metav1.ObjectMeta{Name: prefix, Namespace: ns},
			Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
				ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: prefix},
				MinReplicas:    new(int32(2)), MaxReplicas: 10,
				Metrics: []autoscalingv2.MetricSpec{{Type: autoscalingv2.ResourceMetricSourceType, Resource: &autoscalingv2.ResourceMetricSource{
					Name: corev1.ResourceCPU, Target: autoscalingv2.MetricTarget{Type: autoscalingv2.UtilizationMetricType, AverageUtilization: new(int32(70))}}}},
			},
		},
	}
	refs := []snapshot.Ref{
		{APIVersion: "v1", Kind: "ConfigMap", Name: prefix + "-env"},
		{APIVersion: "v1", Kind: "Secret", Name: prefix + "-secrets"},
		{APIVersion: "apps/v1", Kind: "Deployment", Name: prefix},
		{APIVersion: "v1", Kind: "Service", Name: prefix},
		{APIVersion: "networking.k8s.io/v1", Kind: "Ingress", Name: prefix},
		{APIVersion: "autoscaling/v2", Kind: "HorizontalPodAutoscaler", Name: prefix},
	}
	for _, o := range objs {
		if err := k8s.Create(ctx, o, client.FieldOwner(kustomizeMgr)); err != nil {
			t.Fatal(err)
		}
	}
	return refs
}

func get(t testing.TB, ns string, ref snapshot.Ref) *unstructured.Unstructured {
	t.Helper()
	u := &unstructured.Unstructured{}
	u.SetAPIVersion(ref.APIVersion)
	u.SetKind(ref.Kind)
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: ref.Name}, u); err != nil {
		t.Fatal(err)
	}
	return u
}

// parts returns the snapshot's Secrets by name.
func parts(t testing.TB, ns, name string) map[string]corev1.Secret {
	t.Helper()
	var list corev1.SecretList
	if err := k8s.List(context.Background(), &list, client.InNamespace(ns), client.MatchingLabels{snapshot.LabelSnapshot: name}); err != nil {
		t.Fatal(err)
	}
	out := map[string]corev1.Secret{}
	for _, s := range list.Items {
		out[s.Name] = s
	}
	return out
}

// expectMatchesSnapshot checks that every stored object is live and identical (Compare).
func expectMatchesSnapshot(t *testing.T, ns, name string) {
	t.Helper()
	g := gomega.NewWithT(t)
	stored, err := snapshot.Load(context.Background(), k8s, ns, name)
	g.Expect(err).NotTo(gomega.HaveOccurred())
	for _, s := range stored {
		g.Expect(snapshot.Compare(get(t, ns, snapshot.RefOf(s)), s)).To(gomega.BeEmpty(), "%s", snapshot.RefOf(s))
	}
}

func nestedString(u *unstructured.Unstructured, path ...string) string {
	s, _, _ := unstructured.NestedString(u.Object, path...)
	return s
}

func actions(outcomes []snapshot.Outcome) map[string]snapshot.Action {
	out := map[string]snapshot.Action{}
	for _, o := range outcomes {
		out[o.Ref.Kind+"/"+o.Ref.Name] = o.Action
	}
	return out
}

func TestTakeStoresObjectsWithoutServerSetFields(t *testing.T) {
	g := gomega.NewWithT(t)
	ctx := context.Background()
	ns := namespace(t)
	refs := stack(t, ns, "web")

	before := time.Now().Add(-time.Second)
	snap, err := snapshot.Take(ctx, k8s, ns, "premigration", map[string]string{"mastodon-operator.io/migration": "to-helm"}, refs)
	g.Expect(err).NotTo(gomega.HaveOccurred())
	g.Expect(snap.Name).To(gomega.Equal("premigration"))
	g.Expect(snap.Objects).To(gomega.Equal(6))
	g.Expect(snap.Parts).To(gomega.Equal(1))
	g.Expect(snap.TakenAt).To(gomega.BeTemporally(">=", before.Truncate(time.Second)))

	// One Secret, labelled to the migration, owned by nothing, immutable, annotated complete.
	ps := parts(t, ns, "premigration")
	g.Expect(ps).To(gomega.HaveLen(1))
	p0 := ps["premigration-0"]
	g.Expect(p0.Type).To(gomega.Equal(snapshot.SecretType))
	g.Expect(p0.OwnerReferences).To(gomega.BeEmpty())
	g.Expect(p0.Labels).To(gomega.Equal(map[string]string{snapshot.LabelSnapshot: "premigration", "mastodon-operator.io/migration": "to-helm"}))
	g.Expect(p0.Annotations).To(gomega.HaveKeyWithValue(snapshot.AnnotationParts, "1"))
	g.Expect(p0.Annotations).To(gomega.HaveKeyWithValue(snapshot.AnnotationObjects, "6"))
	g.Expect(p0.Immutable).To(gomega.HaveValue(gomega.BeTrue()))
	g.Expect(string(p0.Data[snapshot.PayloadKey])).NotTo(gomega.ContainSubstring(secretValue), "payload is compressed, not plain")

	stored, err := snapshot.Load(ctx, k8s, ns, "premigration")
	g.Expect(err).NotTo(gomega.HaveOccurred())
	g.Expect(stored).To(gomega.HaveLen(6))
	for i, s := range stored {
		g.Expect(snapshot.RefOf(s)).To(gomega.Equal(refs[i]))
		g.Expect(s.GetNamespace()).To(gomega.Equal(ns))
		for _, f := range []string{"resourceVersion", "uid", "creationTimestamp", "generation", "managedFields", "selfLink"} {
			g.Expect(s.Object["metadata"]).NotTo(gomega.HaveKey(f), "%s metadata.%s", refs[i], f)
		}
		g.Expect(s.Object).NotTo(gomega.HaveKey("status"))
		g.Expect(snapshot.Compare(get(t, ns, refs[i]), s)).To(gomega.BeEmpty())
	}
	svc, ing, sec := stored[3], stored[4], stored[1]
	g.Expect(svc.GetAnnotations()).To(gomega.HaveKey(lastApplied), "kubectl's last-applied annotation is kept")
	g.Expect(nestedString(svc, "spec", "clusterIP")).To(gomega.MatchRegexp(`^10\.`), "clusterIP is kept")
	g.Expect(ing.GetAnnotations()).NotTo(gomega.HaveKey("ingress.kubernetes.io/url-map"), "controller-written annotation dropped")
	g.Expect(ing.GetAnnotations()).To(gomega.HaveKey("kubernetes.io/ingress.global-static-ip-name"))
	data, _, _ := unstructured.NestedStringMap(sec.Object, "data")
	g.Expect(base64.StdEncoding.DecodeString(data["SECRET_KEY_BASE"])).To(gomega.Equal([]byte(secretValue)))
}

// bigConfigMaps creates n ConfigMaps of size bytes of base64 random data each: ConfigMaps are
// limited to 1 MiB, so a snapshot of ~2 MiB takes several.
func bigConfigMaps(t testing.TB, ns string, n, size int) []snapshot.Ref {
	t.Helper()
	var refs []snapshot.Ref
	for i := range n {
		raw := make([]byte, size*3/4)
		_, _ = rand.Read(raw)
		cm := &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("big-%d", i), Namespace: ns},
			Data:       map[string]string{"blob": base64.StdEncoding.EncodeToString(raw)},
		}
		if err := k8s.Create(context.Background(), cm); err != nil {
			t.Fatal(err)
		}
		refs = append(refs, snapshot.Ref{APIVersion: "v1", Kind: "ConfigMap", Name: cm.Name})
	}
	return refs
}

func TestTakeSplitsALargeSnapshotAcrossSecrets(t *testing.T) {
	g := gomega.NewWithT(t)
	ctx := context.Background()
	ns := namespace(t)
	refs := append(stack(t, ns, "web"), bigConfigMaps(t, ns, 3, 800*1024)...) // 2.4 MB of base64: ~1.8 MB gzipped

	snap, err := snapshot.Take(ctx, k8s, ns, "big", nil, refs)
	g.Expect(err).NotTo(gomega.HaveOccurred())
	g.Expect(snap.Objects).To(gomega.Equal(9))
	g.Expect(snap.Bytes).To(gomega.BeNumerically(">", 2*snapshot.MaxPartBytes))
	g.Expect(snap.Parts).To(gomega.Equal(3))

	ps := parts(t, ns, "big")
	g.Expect(ps).To(gomega.HaveLen(3))
	for i := range 3 {
		p := ps[fmt.Sprintf("big-%d", i)]
		g.Expect(len(p.Data[snapshot.PayloadKey])).To(gomega.BeNumerically("<=", snapshot.MaxPartBytes))
		g.Expect(p.Annotations).To(gomega.HaveKeyWithValue(snapshot.AnnotationPart, fmt.Sprint(i)))
	}
	g.Expect(ps["big-0"].Annotations).To(gomega.HaveKeyWithValue(snapshot.AnnotationParts, "3"))
	g.Expect(ps["big-1"].Annotations).NotTo(gomega.HaveKey(snapshot.AnnotationParts))

	stored, err := snapshot.Load(ctx, k8s, ns, "big")
	g.Expect(err).NotTo(gomega.HaveOccurred())
	g.Expect(stored).To(gomega.HaveLen(9))
	for i, s := range stored {
		g.Expect(snapshot.Compare(get(t, ns, refs[i]), s)).To(gomega.BeEmpty())
	}
}

func TestTakeIsIdempotentAndNeverOverwrites(t *testing.T) {
	g := gomega.NewWithT(t)
	ctx := context.Background()
	ns := namespace(t)
	refs := stack(t, ns, "web")

	first, err := snapshot.Take(ctx, k8s, ns, "once", nil, refs)
	g.Expect(err).NotTo(gomega.HaveOccurred())
	before := parts(t, ns, "once")

	// The migration changes the world, then the step runs again (a restart, a requeue).
	scale(t, ns, "web", 9)
	time.Sleep(1100 * time.Millisecond) // a new snapshot would have another TakenAt
	second, err := snapshot.Take(ctx, k8s, ns, "once", map[string]string{"other": "labels"}, refs[:2])
	g.Expect(err).NotTo(gomega.HaveOccurred())
	g.Expect(second).To(gomega.Equal(first))

	after := parts(t, ns, "once")
	g.Expect(after).To(gomega.HaveLen(len(before)))
	for n, s := range before {
		g.Expect(after[n].UID).To(gomega.Equal(s.UID))
		g.Expect(after[n].ResourceVersion).To(gomega.Equal(s.ResourceVersion))
	}
	stored, err := snapshot.Load(ctx, k8s, ns, "once")
	g.Expect(err).NotTo(gomega.HaveOccurred())
	replicas, _, _ := unstructured.NestedInt64(stored[2].Object, "spec", "replicas")
	g.Expect(replicas).To(gomega.Equal(int64(2)), "the pre-migration state")
}

func TestTakeReplacesAnIncompleteSnapshot(t *testing.T) {
	g := gomega.NewWithT(t)
	ctx := context.Background()
	ns := namespace(t)
	refs := append(stack(t, ns, "web"), bigConfigMaps(t, ns, 3, 800*1024)...)

	_, err := snapshot.Take(ctx, k8s, ns, "crash", nil, refs)
	g.Expect(err).NotTo(gomega.HaveOccurred())
	// A crash before the last write: parts 2 and 1 exist, part 0 (written last) does not.
	g.Expect(k8s.Delete(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "crash-0"}})).To(gomega.Succeed())
	leftovers := parts(t, ns, "crash")
	g.Expect(leftovers).To(gomega.HaveLen(2))

	_, err = snapshot.Load(ctx, k8s, ns, "crash")
	g.Expect(err).To(gomega.MatchError(snapshot.ErrNotFound))
	_, err = snapshot.Restore(ctx, k8s, ns, "crash", fieldOwner)
	g.Expect(err).To(gomega.MatchError(snapshot.ErrNotFound))

	// A Secret of the user's carrying the label by mistake is not a part: it stays.
	foreign := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "not-a-part", Namespace: ns, Labels: map[string]string{snapshot.LabelSnapshot: "crash"}}}
	g.Expect(k8s.Create(ctx, foreign)).To(gomega.Succeed())

	snap, err := snapshot.Take(ctx, k8s, ns, "crash", nil, refs)
	g.Expect(err).NotTo(gomega.HaveOccurred())
	g.Expect(snap.Parts).To(gomega.Equal(3))
	now := parts(t, ns, "crash")
	g.Expect(now).To(gomega.HaveLen(4))
	g.Expect(now).To(gomega.HaveKey("not-a-part"))
	for n, s := range leftovers {
		g.Expect(now[n].UID).NotTo(gomega.Equal(s.UID), "%s replaced", n)
	}
	_, err = snapshot.Load(ctx, k8s, ns, "crash")
	g.Expect(err).NotTo(gomega.HaveOccurred())

	// A complete snapshot that lost a part is damaged: Load says so, Take refuses to overwrite it.
	g.Expect(k8s.Delete(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "crash-2"}})).To(gomega.Succeed())
	_, err = snapshot.Load(ctx, k8s, ns, "crash")
	g.Expect(err).To(gomega.MatchError(snapshot.ErrIncomplete))
	g.Expect(err).To(gomega.MatchError(gomega.ContainSubstring("part 3 of 3")))
	_, err = snapshot.Take(ctx, k8s, ns, "crash", nil, refs)
	g.Expect(err).To(gomega.MatchError(snapshot.ErrIncomplete))

	g.Expect(snapshot.Delete(ctx, k8s, ns, "crash")).To(gomega.Succeed())
	g.Expect(parts(t, ns, "crash")).To(gomega.HaveLen(1)) // only the foreign Secret
}

func TestTakeNamesEveryMissingRef(t *testing.T) {
	g := gomega.NewWithT(t)
	ctx := context.Background()
	ns := namespace(t)
	refs := append(stack(t, ns, "web"),
		snapshot.Ref{APIVersion: "apps/v1", Kind: "Deployment", Name: "mastodon-sidekiq"},
		snapshot.Ref{APIVersion: "autoscaling/v2", Kind: "HorizontalPodAutoscaler", Name: "mastodon-streaming"},
		snapshot.Ref{APIVersion: "cloud.google.com/v1", Kind: "BackendConfig", Name: "mastodon-backendconfig"},
	)
	_, err := snapshot.Take(ctx, k8s, ns, "missing", nil, refs)
	g.Expect(err).To(gomega.HaveOccurred())
	g.Expect(err.Error()).To(gomega.And(
		gomega.ContainSubstring("3 of 9 objects not found"),
		gomega.ContainSubstring("Deployment mastodon-sidekiq (apps/v1)"),
		gomega.ContainSubstring("HorizontalPodAutoscaler mastodon-streaming (autoscaling/v2)"),
		gomega.ContainSubstring("BackendConfig mastodon-backendconfig (cloud.google.com/v1): kind not served"),
	))
	g.Expect(err.Error()).NotTo(gomega.ContainSubstring("web"))
	g.Expect(parts(t, ns, "missing")).To(gomega.BeEmpty(), "nothing stored")

	_, err = snapshot.Take(ctx, k8s, ns, "missing", nil, []snapshot.Ref{{APIVersion: "v1", Kind: "Namespace", Name: ns}})
	g.Expect(err).To(gomega.MatchError(gomega.ContainSubstring("cluster-scoped")))
	_, err = snapshot.Take(ctx, k8s, ns, strings.Repeat("x", 64), nil, refs[:1])
	g.Expect(err).To(gomega.MatchError(gomega.ContainSubstring("invalid snapshot name")))
}

func scale(t testing.TB, ns, name string, replicas int) {
	t.Helper()
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	patch := client.RawPatch(types.MergePatchType, fmt.Appendf(nil, `{"spec":{"replicas":%d}}`, replicas))
	if err := k8s.SubResource("scale").Patch(context.Background(), dep, patch, client.FieldOwner("kubectl-scale")); err != nil {
		t.Fatal(err)
	}
}

// applyAs server-side applies a partial object as another field manager (Helm, the traffic
// switch), forcing conflicts as they would.
func applyAs(t testing.TB, manager string, obj map[string]any) {
	t.Helper()
	u := &unstructured.Unstructured{Object: obj}
	if err := k8s.Apply(context.Background(), client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(manager), client.ForceOwnership); err != nil {
		t.Fatal(err)
	}
}

func TestRestoreBringsBackExactlyTheSnapshot(t *testing.T) {
	g := gomega.NewWithT(t)
	ctx := context.Background()
	ns := namespace(t)
	refs := stack(t, ns, "web")
	_, err := snapshot.Take(ctx, k8s, ns, "pre", nil, refs)
	g.Expect(err).NotTo(gomega.HaveOccurred())

	// The traffic switch points the Service at the Helm release's pods.
	applyAs(t, "traffic-switch", map[string]any{"apiVersion": "v1", "kind": "Service",
		"metadata": map[string]any{"name": "web", "namespace": ns},
		"spec":     map[string]any{"selector": map[string]any{"app.kubernetes.io/instance": "mastodon-helm", "app.kubernetes.io/component": "web"}}})
	// Helm adopts the Service: labels and annotations the snapshot does not have.
	applyAs(t, "helm", map[string]any{"apiVersion": "v1", "kind": "Service",
		"metadata": map[string]any{"name": "web", "namespace": ns,
			"labels":      map[string]any{"app.kubernetes.io/managed-by": "Helm"},
			"annotations": map[string]any{"meta.helm.sh/release-name": "mastodon-helm"}}})
	// Someone removes the NEG annotation with kubectl edit.
	svc := &corev1.Service{}
	g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "web"}, svc)).To(gomega.Succeed())
	delete(svc.Annotations, negAnnot)
	g.Expect(k8s.Update(ctx, svc, client.FieldOwner("kubectl-edit"))).To(gomega.Succeed())
	// The old stack is scaled down, and a sidecar's env var added to it.
	scale(t, ns, "web", 0)
	applyAs(t, "helm", map[string]any{"apiVersion": "apps/v1", "kind": "Deployment",
		"metadata": map[string]any{"name": "web", "namespace": ns},
		"spec": map[string]any{"template": map[string]any{"spec": map[string]any{"containers": []any{
			map[string]any{"name": "web", "env": []any{map[string]any{"name": "MIGRATED", "value": "true"}}}}}}}})
	// The HPA is deleted; the ConfigMap and the Secret are edited.
	g.Expect(k8s.Delete(ctx, &autoscalingv2.HorizontalPodAutoscaler{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"}})).To(gomega.Succeed())
	cm := &corev1.ConfigMap{}
	g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "web-env"}, cm)).To(gomega.Succeed())
	cm.Data["WEB_CONCURRENCY"] = "8"
	g.Expect(k8s.Update(ctx, cm)).To(gomega.Succeed())
	sec := &corev1.Secret{}
	g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "web-secrets"}, sec)).To(gomega.Succeed())
	sec.Data["SECRET_KEY_BASE"] = []byte("rotated-" + secretValue)
	g.Expect(k8s.Update(ctx, sec)).To(gomega.Succeed())

	ingressRV := get(t, ns, refs[4]).GetResourceVersion()
	outcomes, err := snapshot.Restore(ctx, k8s, ns, "pre", fieldOwner)
	g.Expect(err).NotTo(gomega.HaveOccurred())
	g.Expect(actions(outcomes)).To(gomega.Equal(map[string]snapshot.Action{
		"ConfigMap/web-env":           snapshot.Updated,
		"Secret/web-secrets":          snapshot.Updated,
		"Service/web":                 snapshot.Updated,
		"Deployment/web":              snapshot.Updated,
		"HorizontalPodAutoscaler/web": snapshot.Created,
		"Ingress/web":                 snapshot.Unchanged,
	}))
	// Dependency order: config first, the Ingress last.
	g.Expect(outcomes[0].Ref.Kind).To(gomega.Or(gomega.Equal("ConfigMap"), gomega.Equal("Secret")))
	g.Expect(outcomes[len(outcomes)-1].Ref.Kind).To(gomega.Equal("Ingress"))
	for _, o := range outcomes {
		t.Log(o)
		g.Expect(o.String()).NotTo(gomega.ContainSubstring(secretValue))
		switch o.Ref.Kind {
		case "Service":
			g.Expect(o.Fields).To(gomega.ContainElements(`metadata.annotations["cloud.google.com/neg"]`, `spec.selector["app.kubernetes.io/instance"]`,
				`metadata.annotations["meta.helm.sh/release-name"]`, `metadata.labels["app.kubernetes.io/managed-by"]`))
		case "Deployment":
			g.Expect(o.Fields).To(gomega.ConsistOf("spec.replicas", "spec.template.spec.containers[name=web].env[name=MIGRATED]"))
		}
	}
	expectMatchesSnapshot(t, ns, "pre")
	g.Expect(get(t, ns, refs[4]).GetResourceVersion()).To(gomega.Equal(ingressRV), "an unchanged object is not written")

	// Restored fields are now the restore's: Helm or the switch must force to take them again.
	live := get(t, ns, refs[3])
	var owners []string
	for _, mf := range live.GetManagedFields() {
		owners = append(owners, mf.Manager)
	}
	g.Expect(owners).To(gomega.ContainElement(fieldOwner))

	again, err := snapshot.Restore(ctx, k8s, ns, "pre", fieldOwner)
	g.Expect(err).NotTo(gomega.HaveOccurred())
	for _, o := range again {
		g.Expect(o.Action).To(gomega.Equal(snapshot.Unchanged), "%s", o)
	}
}

func TestRestoreOfAnUnchangedStackWritesNothing(t *testing.T) {
	g := gomega.NewWithT(t)
	ctx := context.Background()
	ns := namespace(t)
	refs := stack(t, ns, "web")
	_, err := snapshot.Take(ctx, k8s, ns, "pre", nil, refs)
	g.Expect(err).NotTo(gomega.HaveOccurred())
	rvs := map[snapshot.Ref]string{}
	for _, r := range refs {
		rvs[r] = get(t, ns, r).GetResourceVersion()
	}
	outcomes, err := snapshot.Restore(ctx, k8s, ns, "pre", fieldOwner)
	g.Expect(err).NotTo(gomega.HaveOccurred())
	g.Expect(outcomes).To(gomega.HaveLen(len(refs)))
	for _, o := range outcomes {
		g.Expect(o.Action).To(gomega.Equal(snapshot.Unchanged), "%s", o)
		g.Expect(get(t, ns, o.Ref).GetResourceVersion()).To(gomega.Equal(rvs[o.Ref]))
	}
}

func TestRestoreRecreatesWhatAnApplyCannotChange(t *testing.T) {
	g := gomega.NewWithT(t)
	ctx := context.Background()
	ns := namespace(t)
	refs := stack(t, ns, "web")
	immutable := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "frozen", Namespace: ns}, Immutable: new(true), Data: map[string]string{"v": "1"}}
	g.Expect(k8s.Create(ctx, immutable)).To(gomega.Succeed())
	refs = append(refs, snapshot.Ref{APIVersion: "v1", Kind: "ConfigMap", Name: "frozen"})
	_, err := snapshot.Take(ctx, k8s, ns, "pre", nil, refs)
	g.Expect(err).NotTo(gomega.HaveOccurred())

	// The Deployment is replaced by one with another selector (spec.selector is immutable), the
	// immutable ConfigMap by one with other data.
	g.Expect(k8s.Delete(ctx, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"}})).To(gomega.Succeed())
	labels := map[string]string{"app.kubernetes.io/name": "mastodon", "app.kubernetes.io/component": "web"}
	g.Expect(k8s.Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"},
		Spec: appsv1.DeploymentSpec{Selector: &metav1.LabelSelector{MatchLabels: labels}, Template: corev1.PodTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Labels: labels},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "ghcr.io/mastodon/mastodon:v4.3.1"}}}}},
	}, client.FieldOwner("helm"))).To(gomega.Succeed())
	g.Expect(k8s.Delete(ctx, immutable)).To(gomega.Succeed())
	g.Expect(k8s.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "frozen", Namespace: ns}, Immutable: new(true), Data: map[string]string{"v": "2"}})).To(gomega.Succeed())

	outcomes, err := snapshot.Restore(ctx, k8s, ns, "pre", fieldOwner)
	g.Expect(err).NotTo(gomega.HaveOccurred())
	got := actions(outcomes)
	g.Expect(got).To(gomega.HaveKeyWithValue("Deployment/web", snapshot.Recreated))
	g.Expect(got).To(gomega.HaveKeyWithValue("ConfigMap/frozen", snapshot.Recreated))
	for _, o := range outcomes {
		t.Log(o)
		if o.Action == snapshot.Recreated && o.Ref.Kind == "Deployment" {
			g.Expect(o.Message).To(gomega.ContainSubstring("spec.selector"))
		}
	}
	expectMatchesSnapshot(t, ns, "pre")
}

func TestRestoreServiceAddresses(t *testing.T) {
	g := gomega.NewWithT(t)
	ctx := context.Background()
	ns := namespace(t)
	refs := stack(t, ns, "web")
	refs = append(refs, stack(t, ns, "streaming")...)
	headless := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "sidekiq", Namespace: ns}, Spec: corev1.ServiceSpec{
		ClusterIP: corev1.ClusterIPNone, Selector: map[string]string{"app": "sidekiq"}, Ports: []corev1.ServicePort{{Port: 9394}}}}
	g.Expect(k8s.Create(ctx, headless)).To(gomega.Succeed())
	refs = append(refs, snapshot.Ref{APIVersion: "v1", Kind: "Service", Name: "sidekiq"})
	proxy := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "media-proxy", Namespace: ns}, Spec: corev1.ServiceSpec{
		Type: corev1.ServiceTypeNodePort, Selector: map[string]string{"app": "media-proxy"}, Ports: []corev1.ServicePort{{Port: 80}}}}
	g.Expect(k8s.Create(ctx, proxy)).To(gomega.Succeed())
	refs = append(refs, snapshot.Ref{APIVersion: "v1", Kind: "Service", Name: "media-proxy"})
	_, err := snapshot.Take(ctx, k8s, ns, "pre", nil, refs)
	g.Expect(err).NotTo(gomega.HaveOccurred())
	webIP, _, _ := unstructured.NestedString(get(t, ns, refs[3]).Object, "spec", "clusterIP")
	streamingIP, _, _ := unstructured.NestedString(get(t, ns, refs[9]).Object, "spec", "clusterIP")

	// web is deleted and another Service takes its address; streaming is deleted and created
	// again (as Helm would) with a new address; sidekiq stops being headless; media-proxy is
	// deleted and its address and nodePort stay free.
	for _, n := range []string{"web", "streaming", "sidekiq", "media-proxy"} {
		g.Expect(k8s.Delete(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: n}})).To(gomega.Succeed())
	}
	g.Expect(k8s.Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "squatter", Namespace: ns}, Spec: corev1.ServiceSpec{
		ClusterIP: webIP, Ports: []corev1.ServicePort{{Port: 80}}}})).To(gomega.Succeed())
	g.Expect(k8s.Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "streaming", Namespace: ns}, Spec: corev1.ServiceSpec{
		Selector: map[string]string{"app.kubernetes.io/component": "streaming"}, Ports: []corev1.ServicePort{{Name: "ws", Port: 4000}}}}, client.FieldOwner("helm"))).To(gomega.Succeed())
	g.Expect(k8s.Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "sidekiq", Namespace: ns}, Spec: corev1.ServiceSpec{
		Selector: map[string]string{"app": "sidekiq"}, Ports: []corev1.ServicePort{{Port: 9394}}}})).To(gomega.Succeed())
	newStreamingIP, _, _ := unstructured.NestedString(get(t, ns, refs[9]).Object, "spec", "clusterIP")
	g.Expect(newStreamingIP).NotTo(gomega.Equal(streamingIP))

	outcomes, err := snapshot.Restore(ctx, k8s, ns, "pre", fieldOwner)
	g.Expect(err).NotTo(gomega.HaveOccurred())
	byRef := map[string]snapshot.Outcome{}
	for _, o := range outcomes {
		t.Log(o)
		byRef[o.Ref.Kind+"/"+o.Ref.Name] = o
	}
	g.Expect(byRef["Service/web"].Action).To(gomega.Equal(snapshot.Created))
	g.Expect(byRef["Service/web"].Message).To(gomega.ContainSubstring("clusterIP " + webIP + " is taken"))
	g.Expect(byRef["Service/streaming"].Action).To(gomega.Equal(snapshot.Updated))
	g.Expect(byRef["Service/streaming"].Message).To(gomega.ContainSubstring("clusterIP " + newStreamingIP + " kept"))
	g.Expect(byRef["Service/sidekiq"].Action).To(gomega.Equal(snapshot.Recreated))
	g.Expect(byRef["Service/media-proxy"].Action).To(gomega.Equal(snapshot.Created))
	g.Expect(byRef["Service/media-proxy"].Message).To(gomega.BeEmpty(), "same address and nodePort")

	stored, err := snapshot.Load(ctx, k8s, ns, "pre")
	g.Expect(err).NotTo(gomega.HaveOccurred())
	for _, s := range stored {
		diff := snapshot.Compare(get(t, ns, snapshot.RefOf(s)), s)
		switch snapshot.RefOf(s) {
		case refs[3], refs[9]: // everything but the address
			g.Expect(diff).To(gomega.ConsistOf("spec.clusterIP", "spec.clusterIPs[0]"), "%s", snapshot.RefOf(s))
		default:
			g.Expect(diff).To(gomega.BeEmpty(), "%s", snapshot.RefOf(s))
		}
	}
	g.Expect(nestedString(get(t, ns, refs[len(refs)-2]), "spec", "clusterIP")).To(gomega.Equal("None"))

	again, err := snapshot.Restore(ctx, k8s, ns, "pre", fieldOwner)
	g.Expect(err).NotTo(gomega.HaveOccurred())
	for _, o := range again {
		g.Expect(o.Action).To(gomega.Equal(snapshot.Unchanged), "%s", o)
	}
}

func TestRestoreReportsFailuresAndGoesOn(t *testing.T) {
	g := gomega.NewWithT(t)
	ctx := context.Background()
	ns := namespace(t)
	refs := stack(t, ns, "web")
	_, err := snapshot.Take(ctx, k8s, ns, "pre", nil, refs)
	g.Expect(err).NotTo(gomega.HaveOccurred())

	_, err = snapshot.Restore(ctx, k8s, ns, "pre", "")
	g.Expect(err).To(gomega.MatchError(gomega.ContainSubstring("field owner")))
	_, err = snapshot.Restore(ctx, k8s, ns, "nope", fieldOwner)
	g.Expect(err).To(gomega.MatchError(snapshot.ErrNotFound))

	cm := &corev1.ConfigMap{}
	g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "web-env"}, cm)).To(gomega.Succeed())
	cm.Data["WEB_CONCURRENCY"] = "8"
	g.Expect(k8s.Update(ctx, cm)).To(gomega.Succeed())
	sec := &corev1.Secret{}
	g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "web-secrets"}, sec)).To(gomega.Succeed())
	sec.Data["SECRET_KEY_BASE"] = []byte("changed-" + secretValue)
	g.Expect(k8s.Update(ctx, sec)).To(gomega.Succeed())
	scale(t, ns, "web", 5)

	// A policy engine (here a ValidatingAdmissionPolicy) now refuses any change to the ConfigMap
	// and the Secret: an Invalid answer that is not about immutability must not get them deleted.
	policy := &admissionregistrationv1.ValidatingAdmissionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "freeze-" + ns},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{
			FailurePolicy: new(admissionregistrationv1.Fail),
			MatchConstraints: &admissionregistrationv1.MatchResources{ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{
				RuleWithOperations: admissionregistrationv1.RuleWithOperations{
					Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Update, admissionregistrationv1.Delete},
					Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"configmaps", "secrets"}},
				}}}},
			Validations: []admissionregistrationv1.Validation{{Expression: "false", Message: "frozen by policy"}},
		},
	}
	binding := &admissionregistrationv1.ValidatingAdmissionPolicyBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "freeze-" + ns},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{
			PolicyName:        policy.Name,
			ValidationActions: []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny},
			MatchResources: &admissionregistrationv1.MatchResources{NamespaceSelector: &metav1.LabelSelector{
				MatchLabels: map[string]string{"kubernetes.io/metadata.name": ns}}},
		},
	}
	g.Expect(k8s.Create(ctx, policy)).To(gomega.Succeed())
	g.Expect(k8s.Create(ctx, binding)).To(gomega.Succeed())
	defer func() { _ = k8s.Delete(ctx, binding); _ = k8s.Delete(ctx, policy) }()
	g.Eventually(func() error {
		probe := cm.DeepCopy()
		probe.Data["probe"] = "x"
		return k8s.Update(ctx, probe, client.DryRunAll)
	}).WithTimeout(30 * time.Second).Should(gomega.MatchError(gomega.ContainSubstring("frozen by policy")))

	outcomes, err := snapshot.Restore(ctx, k8s, ns, "pre", fieldOwner)
	g.Expect(err).To(gomega.MatchError(gomega.ContainSubstring("2 of 6 objects failed")))
	g.Expect(err.Error()).NotTo(gomega.ContainSubstring(secretValue))
	g.Expect(actions(outcomes)).To(gomega.Equal(map[string]snapshot.Action{
		"ConfigMap/web-env":           snapshot.Failed,
		"Secret/web-secrets":          snapshot.Failed,
		"Service/web":                 snapshot.Unchanged,
		"Deployment/web":              snapshot.Updated,
		"HorizontalPodAutoscaler/web": snapshot.Unchanged,
		"Ingress/web":                 snapshot.Unchanged,
	}))
	for _, o := range outcomes {
		t.Log(o)
		g.Expect(o.String()).NotTo(gomega.ContainSubstring(secretValue))
		if o.Ref.Kind == "ConfigMap" {
			g.Expect(o.Message).To(gomega.ContainSubstring("frozen by policy"))
		}
	}
	// Still there, as they were: refused, not deleted.
	g.Expect(get(t, ns, refs[0]).Object["data"]).To(gomega.HaveKeyWithValue("WEB_CONCURRENCY", "8"))
	g.Expect(get(t, ns, refs[1]).GetUID()).To(gomega.Equal(sec.UID))
}

func TestErrorsNeverCarrySecretData(t *testing.T) {
	g := gomega.NewWithT(t)
	err := &apierrors.StatusError{ErrStatus: metav1.Status{
		Status: metav1.StatusFailure, Code: 422, Reason: metav1.StatusReasonInvalid,
		Message: `Secret "x" is invalid: data: Invalid value: "` + secretValue + `"`,
		Details: &metav1.StatusDetails{Name: "x", Kind: "Secret", Causes: []metav1.StatusCause{
			{Type: metav1.CauseTypeFieldValueInvalid, Field: "data", Message: `Invalid value: "` + secretValue + `"`}}},
	}}
	red := snapshot.Redact(snapshot.Ref{APIVersion: "v1", Kind: "Secret", Name: "x"}, err)
	g.Expect(red.Error()).NotTo(gomega.ContainSubstring(secretValue))
	g.Expect(red.Error()).To(gomega.ContainSubstring("data (FieldValueInvalid)"))
	g.Expect(apierrors.IsInvalid(red)).To(gomega.BeTrue())
	g.Expect(errors.Unwrap(red)).To(gomega.BeNil())
	g.Expect(snapshot.Redact(snapshot.Ref{Kind: "ConfigMap"}, err)).To(gomega.Equal(error(err)))
}

// BenchmarkTakeLoad takes and loads a snapshot of 30 objects: five web tiers (ConfigMap,
// Secret, Deployment, Service, Ingress, HPA each).
func BenchmarkTakeLoad(b *testing.B) {
	ctx := context.Background()
	ns := namespace(b)
	var refs []snapshot.Ref
	for i := range 5 {
		refs = append(refs, stack(b, ns, fmt.Sprintf("tier%d", i))...)
	}
	var bytes, n int
	for b.Loop() {
		n++
		name := fmt.Sprintf("bench-%d", n)
		snap, err := snapshot.Take(ctx, k8s, ns, name, nil, refs)
		if err != nil {
			b.Fatal(err)
		}
		objs, err := snapshot.Load(ctx, k8s, ns, name)
		if err != nil || len(objs) != 30 {
			b.Fatal(len(objs), err)
		}
		bytes = snap.Bytes
	}
	b.ReportMetric(float64(bytes), "payload-bytes")
}

// BenchmarkRestoreUnchanged restores a 30-object snapshot onto an unchanged stack: the cost of
// a rollback's check when nothing drifted.
func BenchmarkRestoreUnchanged(b *testing.B) {
	ctx := context.Background()
	ns := namespace(b)
	var refs []snapshot.Ref
	for i := range 5 {
		refs = append(refs, stack(b, ns, fmt.Sprintf("tier%d", i))...)
	}
	if _, err := snapshot.Take(ctx, k8s, ns, "bench", nil, refs); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := snapshot.Restore(ctx, k8s, ns, "bench", fieldOwner); err != nil {
			b.Fatal(err)
		}
	}
}
