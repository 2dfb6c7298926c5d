package adoption

import (
	"bytes"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

func object(t *testing.T, doc string) *unstructured.Unstructured {
	t.Helper()
	u := &unstructured.Unstructured{}
	if err := yaml.Unmarshal([]byte(doc), &u.Object); err != nil {
		t.Fatal(err)
	}
	return u
}

const storedService = `
apiVersion: v1
kind: Service
metadata: {name: mastodon-web, namespace: social, labels: {app.kubernetes.io/part-of: mastodon}}
spec:
  clusterIP: 10.0.0.7
  selector: {app: mastodon-web}
  ports: [{name: http, port: 80, targetPort: http}]
`

const renderedService = `
apiVersion: v1
kind: Service
metadata: {name: mastodon-web, labels: {app.kubernetes.io/instance: mastodon}}
spec:
  selector: {app.kubernetes.io/instance: mastodon, app.kubernetes.io/component: web}
  ports: [{name: http, port: 3000, targetPort: http}]
`

func TestFormKeepsTheStoredObjectWithHelmsMarks(t *testing.T) {
	g := gomega.NewWithT(t)
	stored := object(t, storedService)
	got, err := Form(stored, object(t, renderedService), "mastodon", "social")
	g.Expect(err).NotTo(gomega.HaveOccurred())
	g.Expect(got.Object["spec"]).To(gomega.Equal(stored.Object["spec"]), "the old selector and ports stay until the switch")
	g.Expect(got.GetLabels()).To(gomega.Equal(map[string]string{"app.kubernetes.io/part-of": "mastodon", LabelManagedBy: ManagedByHelm}))
	g.Expect(got.GetAnnotations()).To(gomega.Equal(map[string]string{AnnotationReleaseName: "mastodon",
		AnnotationReleaseNamespace: "social", AnnotationResourcePolicy: ResourcePolicyKeep}))
	g.Expect(Owned(got, "mastodon", "social")).To(gomega.BeTrue())
	g.Expect(Owned(stored, "mastodon", "social")).To(gomega.BeFalse(), "the stored object is left alone")
	g.Expect(Owned(got, "mastodon", "other")).To(gomega.BeFalse())
}

func TestFormAddsTheChartsKeysToAConfigMapAndASecret(t *testing.T) {
	g := gomega.NewWithT(t)
	cm, err := Form(object(t, `{apiVersion: v1, kind: ConfigMap, metadata: {name: mastodon-env}, data: {LOCAL_DOMAIN: example.social, OLD_ONLY: x}}`),
		object(t, `{apiVersion: v1, kind: ConfigMap, metadata: {name: mastodon-env}, data: {LOCAL_DOMAIN: example.social, RAILS_LOG_LEVEL: warn}}`),
		"mastodon", "social")
	g.Expect(err).NotTo(gomega.HaveOccurred())
	g.Expect(cm.Object["data"]).To(gomega.Equal(map[string]any{"LOCAL_DOMAIN": "example.social", "OLD_ONLY": "x", "RAILS_LOG_LEVEL": "warn"}))

	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	secret, err := Form(object(t, `{apiVersion: v1, kind: Secret, metadata: {name: mastodon}, data: {DB_PASS: `+b64("p")+`}}`),
		object(t, `{apiVersion: v1, kind: Secret, metadata: {name: mastodon}, stringData: {OTP_SECRET: o}, data: {VAPID: `+b64("v")+`}}`),
		"mastodon", "social")
	g.Expect(err).NotTo(gomega.HaveOccurred())
	g.Expect(secret.Object["data"]).To(gomega.Equal(map[string]any{"DB_PASS": b64("p"), "OTP_SECRET": b64("o"), "VAPID": b64("v")}))
	g.Expect(secret.Object).NotTo(gomega.HaveKey("stringData"))
}

func TestKeyConflictsNamesKeysNeverValues(t *testing.T) {
	g := gomega.NewWithT(t)
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	keys, err := KeyConflicts(
		object(t, `{apiVersion: v1, kind: Secret, metadata: {name: s}, data: {B: `+b64("old-secret")+`, A: `+b64("same")+`, C: `+b64("1")+`}}`),
		object(t, `{apiVersion: v1, kind: Secret, metadata: {name: s}, stringData: {A: same, B: new-secret}, data: {C: `+b64("2")+`, D: `+b64("4")+`}}`))
	g.Expect(err).NotTo(gomega.HaveOccurred())
	g.Expect(keys).To(gomega.Equal([]string{"B", "C"}))

	keys, err = KeyConflicts(object(t, storedService), object(t, renderedService))
	g.Expect(err).NotTo(gomega.HaveOccurred())
	g.Expect(keys).To(gomega.BeEmpty(), "only ConfigMaps and Secrets have keys")
}

func TestPostRendererReplacesOnlyTheAdoptedObjects(t *testing.T) {
	g := gomega.NewWithT(t)
	rendered := "---\n# Source: mastodon/templates/service-web.yaml\n" + renderedService +
		"---\n# Source: mastodon/templates/empty.yaml\n" +
		"---\napiVersion: v1\nkind: ServiceAccount\nmetadata: {name: mastodon}\n"
	pr := PostRenderer{Stored: map[string]*unstructured.Unstructured{"Service/mastodon-web": object(t, storedService)},
		Release: "mastodon", Namespace: "social"}
	out, err := pr.Run(bytes.NewBufferString(rendered))
	g.Expect(err).NotTo(gomega.HaveOccurred())
	docs := strings.Split(strings.TrimPrefix(out.String(), "---\n"), "---\n")
	g.Expect(docs).To(gomega.HaveLen(2), "the empty document is dropped")
	svc := object(t, docs[0])
	g.Expect(svc.Object["spec"]).To(gomega.HaveKeyWithValue("selector", map[string]any{"app": "mastodon-web"}))
	g.Expect(svc.GetAnnotations()).To(gomega.HaveKeyWithValue(AnnotationResourcePolicy, ResourcePolicyKeep))
	sa := object(t, docs[1])
	g.Expect(sa.GetName()).To(gomega.Equal("mastodon"))
	g.Expect(sa.GetAnnotations()).To(gomega.BeEmpty(), "what the release does not adopt is left as the chart renders it")
}
