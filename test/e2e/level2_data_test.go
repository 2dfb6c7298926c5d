package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	storagev1 "k8s.io/api/storage/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
	"github.com/mastodon-operator/mastodon-operator/internal/snapshot"
	"github.com/mastodon-operator/mastodon-operator/test/fixture"
)

// staticStorage is a StorageClass without a provisioner that binds at once: the local cluster
// has no volume plugin, so each claim gets a PersistentVolume the test makes for it, as an
// administrator pre-provisions NFS or Filestore volumes for ReadWriteMany claims.
const staticStorage = "e2e-static"

// volumeFor makes a PersistentVolume reserved for the claim (claimRef), which the
// kube-controller-manager's binder binds as soon as the claim exists.
func volumeFor(t *testing.T, ctx context.Context, namespace, claim, size string) {
	t.Helper()
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: namespace + "-" + claim},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(size)},
			AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany},
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain,
			StorageClassName:              staticStorage,
			ClaimRef:                      &corev1.ObjectReference{Namespace: namespace, Name: claim},
			PersistentVolumeSource: corev1.PersistentVolumeSource{HostPath: &corev1.HostPathVolumeSource{
				Path: "/srv/mastodon/" + namespace + "/" + claim}},
		},
	}
	if err := h.Client.Create(ctx, pv); err != nil {
		t.Fatal(err)
	}
}

// TestLevel2RollbackKeepsTheReleasesVolumes installs the official chart with its volumes
// (mastodon.pvc, as an instance without object storage runs it: the media and assets live on
// the claims), lets the migration complete, and rolls it back at level 2. helm uninstall would
// delete the claims, keepAfterDelete or not; the operator marked them keep at install, so after
// the rollback the release is gone, the stack is as it was, and both claims are still there,
// bound to the same volumes, and listed as kept in status and in an Event.
func TestLevel2RollbackKeepsTheReleasesVolumes(t *testing.T) {
	ctx := context.Background()
	ns := "mastodon-level2-pvc"
	sc := &storagev1.StorageClass{
		ObjectMeta:        metav1.ObjectMeta{Name: staticStorage},
		Provisioner:       "kubernetes.io/no-provisioner",
		VolumeBindingMode: ptr.To(storagev1.VolumeBindingImmediate),
	}
	if err := h.Client.Create(ctx, sc); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	claims := []string{"mastodon-helm-assets", "mastodon-helm-system"}
	volumeFor(t, ctx, ns, "mastodon-helm-assets", "10Gi") // the chart's default sizes
	volumeFor(t, ctx, ns, "mastodon-helm-system", "100Gi")
	// The production layout, its media on local storage instead of S3.
	objs, err := fixture.Layout(fixture.LayoutProduction)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if _, found, _ := unstructured.NestedString(o.Object, "data", "S3_ENABLED"); found && o.GetKind() == "ConfigMap" {
			g := gomega.NewWithT(t)
			g.Expect(unstructured.SetNestedField(o.Object, "false", "data", "S3_ENABLED")).To(gomega.Succeed())
		}
	}
	if err := h.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	if err := h.DeployObjects(ctx, ns, objs); err != nil {
		t.Fatal(err)
	}
	before := liveObjects(t, ctx, ns, objs)
	m := sampleMigration(t, ns)
	shortWindow(m)
	m.Spec.Release.Values = &apiextensionsv1.JSON{Raw: []byte(`{"mastodon": {"pvc": {"enabled": true,
		"assets": {"storageClassName": "` + staticStorage + `"}, "system": {"storageClassName": "` + staticStorage + `"}}}}`)}
	// The chart passes no S3 variable with S3 off; Mastodon reads none of them then, and its
	// default for S3_ENABLED is false: read and accepted, as a user would.
	m.Spec.Preflight.AcceptEnvChanges = append(m.Spec.Preflight.AcceptEnvChanges,
		"S3_ENABLED", "S3_ALIAS_HOST", "S3_BUCKET", "S3_ENDPOINT", "S3_HOSTNAME", "S3_PROTOCOL", "S3_REGION")
	if err := h.Client.Create(ctx, m); err != nil {
		t.Fatal(err)
	}
	eventually(t, getMigration(ctx, m)).WithTimeout(2*time.Minute).Should(gomega.HaveField("Status.Phase", v1alpha1.PhaseCompleted),
		func() string {
			got, _ := getMigration(ctx, m)()
			return fmt.Sprintf("steps %v, findings %v", stepStates(got), stopping(got))
		})
	g := gomega.NewWithT(t)
	installed := map[string]types.UID{}
	for _, claim := range claims {
		pvc := &corev1.PersistentVolumeClaim{}
		g.Expect(h.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: claim}, pvc)).To(gomega.Succeed())
		g.Expect(pvc.Status.Phase).To(gomega.Equal(corev1.ClaimBound), claim)
		g.Expect(pvc.Annotations).To(gomega.HaveKeyWithValue("helm.sh/resource-policy", "keep"), claim)
		installed[claim] = pvc.UID
	}

	rollBackTo(t, ctx, m, 2)
	got, _ := getMigration(ctx, m)()
	expectReleaseGoneAndStackRestored(t, g, ctx, m, objs, before)
	for _, claim := range claims {
		pvc := &corev1.PersistentVolumeClaim{}
		g.Expect(h.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: claim}, pvc)).To(gomega.Succeed(), "the uninstall deleted "+claim)
		g.Expect(pvc.UID).To(gomega.Equal(installed[claim]), claim+" is the claim the release made, not a new one")
		g.Expect(pvc.DeletionTimestamp).To(gomega.BeNil(), claim)
		g.Expect(pvc.Status.Phase).To(gomega.Equal(corev1.ClaimBound), claim)
		g.Expect(pvc.Spec.VolumeName).To(gomega.Equal(ns+"-"+claim), claim)
	}

	u := got.Status.Rollback.Uninstall
	g.Expect(u).NotTo(gomega.BeNil())
	t.Logf("status.rollback.uninstall.summary: %s", u.Summary)
	t.Logf("status.rollback.uninstall.keeps: %v", u.Keeps)
	t.Logf("status.rollback.uninstall.deletes: %v", u.Deletes)
	g.Expect(u.Keeps).To(gomega.ConsistOf("PersistentVolumeClaim/mastodon-helm-assets", "PersistentVolumeClaim/mastodon-helm-system"))
	g.Expect(u.Deletes).To(gomega.ContainElements("Deployment/mastodon-helm-web", "Service/mastodon-helm-web", "ConfigMap/mastodon-helm-env"))
	g.Expect(u.Deletes).NotTo(gomega.ContainElement(gomega.HavePrefix("PersistentVolumeClaim/")))
	g.Expect(u.Summary).To(gomega.HavePrefix("uninstalling release mastodon-helm deletes "))
	g.Expect(u.Summary).To(gomega.ContainSubstring("and keeps 2: PersistentVolumeClaim/mastodon-helm-assets, PersistentVolumeClaim/mastodon-helm-system"))

	var events eventsv1.EventList
	g.Expect(h.Client.List(ctx, &events, client.InNamespace(ns))).To(gomega.Succeed())
	var notes []string
	for _, e := range events.Items {
		if e.Reason == "Uninstalling" {
			notes = append(notes, e.Note)
		}
	}
	g.Expect(notes).To(gomega.ConsistOf(u.Summary))
	var pvcs corev1.PersistentVolumeClaimList
	g.Expect(h.Client.List(ctx, &pvcs, client.InNamespace(ns))).To(gomega.Succeed())
	g.Expect(pvcs.Items).To(gomega.HaveLen(len(claims)))
}

// TestLevel3RefusesOnASharedInstanceUntilConfirmed backs up a Cloud SQL instance that also holds
// two other applications' databases. Preflight lists them; a confirmed level 3 rollback then
// refuses before it stops anything, names them in status and an Event, and goes on once
// spec.rollback.database.cloudSQL.sharedInstance is confirmed.
func TestLevel3RefusesOnASharedInstanceUntilConfirmed(t *testing.T) {
	ctx := context.Background()
	ns := "mastodon-level3-shared"
	cloudSQL.AddInstance("my-project", "shared-db")
	g := gomega.NewWithT(t)
	g.Expect(cloudSQL.AddDatabase("my-project", "shared-db", "mastodon_production", "pixelfed", "matrix_synapse")).To(gomega.Succeed())
	objs, before, m := migrateTo(t, ctx, ns, v1alpha1.PhaseObserving, func(m *v1alpha1.MastodonMigration) {
		m.Spec.Rollback.Database.CloudSQL = &v1alpha1.CloudSQLInstance{Project: "my-project", Instance: "shared-db"}
		m.Spec.Analysis.Window = &metav1.Duration{Duration: 10 * time.Minute}
	})
	got, _ := getMigration(ctx, m)()
	var listed []string
	for _, f := range got.Status.Preflight {
		if f.Check == "CloudSQLDatabases" {
			listed = append(listed, string(f.Class)+": "+f.Object+" "+f.Message)
		}
	}
	t.Logf("preflight: %v", listed)
	g.Expect(listed).To(gomega.ConsistOf(gomega.And(gomega.HavePrefix("Informational: Cloud SQL instance my-project/shared-db shared"),
		gomega.ContainSubstring("pixelfed, matrix_synapse"))))

	latest := got.DeepCopy()
	raised := latest.DeepCopy()
	raised.Spec.RollbackLevel, raised.Spec.ConfirmDataLoss = 3, true
	g.Expect(h.Client.Patch(ctx, raised, client.MergeFrom(latest))).To(gomega.Succeed())
	eventually(t, getMigration(ctx, m)).Should(gomega.HaveField("Status.Phase", v1alpha1.PhaseFailed))
	got, _ = getMigration(ctx, m)()
	refusal := ""
	for _, s := range got.Status.Steps {
		if s.Name == "RollbackCheckInstance" {
			refusal = s.Message
			g.Expect(s.State).To(gomega.Equal(v1alpha1.StepFailed))
		}
		g.Expect(s.Name).NotTo(gomega.Equal("RollbackStopAll"), "level 3 stopped the stack before it refused")
	}
	t.Logf("refusal: %s", refusal)
	g.Expect(refusal).To(gomega.HavePrefix("level 3 refused: Cloud SQL instance my-project/shared-db also holds pixelfed, matrix_synapse " +
		"besides Mastodon's mastodon_production"))
	g.Expect(refusal).To(gomega.ContainSubstring("set spec.rollback.database.cloudSQL.sharedInstance: confirmed"))
	g.Expect(meta.FindStatusCondition(got.Status.Conditions, "Stalled")).To(gomega.And(
		gomega.HaveField("Status", metav1.ConditionTrue), gomega.HaveField("Message", refusal)))
	var events eventsv1.EventList
	g.Expect(h.Client.List(ctx, &events, client.InNamespace(ns))).To(gomega.Succeed())
	var notes []string
	for _, e := range events.Items {
		if e.Reason == "RollbackCheckInstanceFailed" {
			notes = append(notes, e.Note)
		}
	}
	g.Expect(notes).To(gomega.ConsistOf(refusal))
	g.Expect(cloudSQL.Restored("my-project", "shared-db")).To(gomega.BeEmpty())
	for _, name := range []string{"mastodon-helm-web", "mastodon-helm-streaming"} {
		d := &appsv1.Deployment{}
		g.Expect(h.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, d)).To(gomega.Succeed())
		g.Expect(*d.Spec.Replicas).NotTo(gomega.BeZero(), name+" still serves")
	}

	latest = got.DeepCopy()
	confirmed := latest.DeepCopy()
	confirmed.Spec.Rollback.Database.CloudSQL.SharedInstance = v1alpha1.SharedInstanceConfirmed
	g.Expect(h.Client.Patch(ctx, confirmed, client.MergeFrom(latest))).To(gomega.Succeed())
	eventually(t, getMigration(ctx, m)).WithTimeout(2 * time.Minute).Should(gomega.HaveField("Status.Phase", v1alpha1.PhaseRolledBack))
	got, _ = getMigration(ctx, m)()
	g.Expect(stepStates(got)).To(gomega.ContainElements("RollbackCheckInstance=Succeeded", "RollbackStopAll=Succeeded",
		"RollbackDatabase=Succeeded", "RollbackRestore=Succeeded"))
	g.Expect(cloudSQL.Restored("my-project", "shared-db")).To(gomega.Equal([]string{got.Status.DatabaseBackup.ID}))
	after := liveObjects(t, ctx, ns, objs)
	for key, b := range before {
		g.Expect(snapshot.Compare(after[key], b)).To(gomega.BeEmpty(), key)
	}
}
