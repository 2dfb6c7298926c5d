package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	eventsv1 "k8s.io/api/events/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
)

// TestAVersionChangeIsJudgedAndItsRollbackSaysTheSchemaStaysMigrated runs the old stack at
// Mastodon v4.5.3 and lets the release run another version (allowImageChange, the database
// backed up first). Preflight refuses v4.8.0, which skips 4.6 and 4.7 while the old pods serve;
// v4.6.2, the next minor release, goes on with the advice to stop the old stack first. Once
// the install's db:prepare ran, status.schema records the new schema, and a level 1 rollback
// says that the old code now runs on it.
func TestAVersionChangeIsJudgedAndItsRollbackSaysTheSchemaStaysMigrated(t *testing.T) {
	ctx := context.Background()
	ns := "mastodon-version"
	if _, err := h.DeployMastodon(ctx, ns); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"mastodon-web", "mastodon-streaming", "mastodon-worker"} {
		d := &appsv1.Deployment{}
		if err := h.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, d); err != nil {
			t.Fatal(err)
		}
		older := d.DeepCopy()
		for i := range older.Spec.Template.Spec.Containers {
			c := &older.Spec.Template.Spec.Containers[i]
			c.Image = strings.Replace(c.Image, ":v4.6.2", ":v4.5.3", 1)
		}
		if err := h.Client.Patch(ctx, older, client.MergeFrom(d)); err != nil {
			t.Fatal(err)
		}
		if err := h.WaitCurrent(ctx, "apps/v1", "Deployment", ns, name, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	release := func(tag string) *apiextensionsv1.JSON {
		return &apiextensionsv1.JSON{Raw: []byte(`{"image": {"tag": "` + tag + `"}, "mastodon": {"streaming": {"image": {"tag": "` + tag + `"}}}}`)}
	}
	m := sampleMigration(t, ns)
	m.Spec.Preflight.AllowImageChange = true
	m.Spec.Rollback.Database.CloudSQL = &v1alpha1.CloudSQLInstance{Project: "my-project", Instance: "mastodon-db"}
	m.Spec.Analysis.Window = &metav1.Duration{Duration: 10 * time.Minute}
	m.Spec.Release.Values = release("v4.8.0")
	if err := h.Client.Create(ctx, m); err != nil {
		t.Fatal(err)
	}
	versionFinding := func(m *v1alpha1.MastodonMigration) *v1alpha1.Finding {
		for i, f := range m.Status.Preflight {
			if f.Check == "Version" {
				return &m.Status.Preflight[i]
			}
		}
		return nil
	}
	eventually(t, getMigration(ctx, m)).Should(gomega.WithTransform(versionFinding, gomega.And(
		gomega.Not(gomega.BeNil()), gomega.HaveField("Class", v1alpha1.FindingBlocks),
		gomega.HaveField("Message", gomega.HavePrefix("Mastodon v4.5.3 -> v4.8.0 (skips releases): ")))))
	got, _ := getMigration(ctx, m)()
	t.Logf("refused: %s: %s", got.Status.Preflight[0].Class, versionFinding(got).Message)
	g := gomega.NewWithT(t)
	g.Expect(got.Status.Phase).To(gomega.Equal(v1alpha1.PhasePreflight))
	g.Expect(got.Status.Schema).To(gomega.BeNil())

	next := got.DeepCopy()
	next.Spec.Release.Values = release("v4.6.2")
	g.Expect(h.Client.Patch(ctx, next, client.MergeFrom(got))).To(gomega.Succeed())
	eventually(t, getMigration(ctx, m)).WithTimeout(3 * time.Minute).Should(gomega.HaveField("Status.Phase", v1alpha1.PhaseObserving))
	got, _ = getMigration(ctx, m)()
	f := versionFinding(got)
	g.Expect(f).NotTo(gomega.BeNil())
	t.Logf("supported: %s: %s", f.Class, f.Message)
	g.Expect(*f).To(gomega.And(gomega.HaveField("Class", v1alpha1.FindingInformational),
		gomega.HaveField("Message", gomega.And(gomega.HavePrefix("Mastodon v4.5.3 -> v4.6.2 (next minor release): "),
			gomega.ContainSubstring("strategy Maintenance, which stops them first, is recommended for any version change")))))
	g.Expect(got.Status.Schema).To(gomega.And(gomega.Not(gomega.BeNil()),
		gomega.HaveField("From", "v4.5.3"), gomega.HaveField("Version", "v4.6.2")))
	t.Logf("status.schema: %+v", *got.Status.Schema)

	rollBackTo(t, ctx, m, 1)
	got, _ = getMigration(ctx, m)()
	ready := meta.FindStatusCondition(got.Status.Conditions, "Ready")
	g.Expect(ready).NotTo(gomega.BeNil())
	t.Logf("rolled back: %s", ready.Message)
	g.Expect(ready.Message).To(gomega.And(gomega.HavePrefix("rolled back at level 1: the old stack serves the traffic; "),
		gomega.ContainSubstring("the old code (Mastodon v4.5.3) now runs on the database schema migrated to v4.6.2 at "),
		gomega.ContainSubstring("level 3 restores the backup and the old schema, losing every write since")))
	eventually(t, func() ([]string, error) {
		var list eventsv1.EventList
		err := h.Client.List(ctx, &list, client.InNamespace(ns))
		var notes []string
		for _, e := range list.Items {
			if e.Reason == "RollingBack" || e.Reason == "RolledBack" || e.Reason == "SchemaMigrated" {
				notes = append(notes, e.Reason+": "+e.Note)
			}
		}
		return notes, err
	}).Should(gomega.ContainElements(
		gomega.HavePrefix("SchemaMigrated: release mastodon-helm's hooks migrated the database from Mastodon v4.5.3 to v4.6.2"),
		gomega.And(gomega.HavePrefix("RollingBack: rollback level 1: "), gomega.ContainSubstring("now runs on the database schema migrated to v4.6.2")),
		gomega.And(gomega.HavePrefix("RolledBack: "), gomega.ContainSubstring("now runs on the database schema migrated to v4.6.2"))))
}
