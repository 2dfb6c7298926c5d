package e2e

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"testing"
	"time"

	"github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
	"github.com/mastodon-operator/mastodon-operator/internal/scheduler"
	"github.com/mastodon-operator/mastodon-operator/internal/snapshot"
	"github.com/mastodon-operator/mastodon-operator/test/fixture"
)

// layoutRun is one real-world shape of layout migrated the way a user would: the sample
// migration with nothing accepted, the findings read, the changes accepted, BlueGreen to
// Completed on the official chart, then a level 1 rollback.
type layoutRun struct {
	layout string
	// source adapts the sample's spec.source to the layout's names.
	source func(*v1alpha1.MastodonMigration)
	// services are the layout's Services that carry Mastodon's traffic.
	services []string
	// hpas are HPAs of spec.source.extraResources and the release Deployment Finish points
	// each at.
	hpas map[string]string
}

// envVariable is the variable an EnvParity finding is about: its message starts "env NAME: ".
var envVariable = regexp.MustCompile(`^env ([^:\s]+): `)

// TestEveryLayoutMigratesAndRollsBack migrates each layout of the fixture with BlueGreen on the
// official chart and rolls it back at level 1, and logs one table row per layout: the findings of
// the first preflight by class, the time from the accepted findings to Completed, and the level 1
// rollback as the operator recorded it.
func TestEveryLayoutMigratesAndRollsBack(t *testing.T) {
	runs := []layoutRun{
		{layout: fixture.LayoutProduction, services: []string{"mastodon-web", "mastodon-streaming", "mastodon-assets", "mastodon-emoji"}},
		// The HPA scales the one worker, scheduler queue and all, up to 3: the generated values
		// split it, and Finish moves the HPA to the worker of the other queues.
		{layout: fixture.LayoutOneSecret, services: []string{"mastodon-web", "mastodon-streaming"},
			hpas: map[string]string{"mastodon-web": "mastodon-helm-web", "mastodon-sidekiq": "mastodon-helm-sidekiq-worker"},
			source: func(m *v1alpha1.MastodonMigration) {
				m.Spec.Source.Sidekiq = []v1alpha1.ComponentRef{{Deployment: "mastodon-sidekiq"}}
				m.Spec.Source.ExtraResources = append(m.Spec.Source.ExtraResources,
					v1alpha1.ObjectRef{APIVersion: "autoscaling/v2", Kind: "HorizontalPodAutoscaler", Name: "mastodon-sidekiq"})
			}},
		{layout: fixture.LayoutGitOps, services: []string{"mastodon-web", "mastodon-streaming", "mastodon-assets", "mastodon-emoji"}},
	}
	rows := []string{"| layout | Blocks | Changes | Informational (listed) | accepted | BlueGreen to Completed | level 1 restored |", "|---|---|---|---|---|---|---|"}
	for _, run := range runs {
		t.Run(run.layout, func(t *testing.T) {
			rows = append(rows, migrateLayout(t, run))
		})
	}
	for _, row := range rows {
		t.Log(row)
	}
}

func migrateLayout(t *testing.T, run layoutRun) string {
	ctx := context.Background()
	ns := "layout-" + run.layout
	objs, err := h.DeployLayout(ctx, ns, run.layout)
	if err != nil {
		t.Fatal(err)
	}
	before := liveObjects(t, ctx, ns, objs)
	m := sampleMigration(t, ns)
	shortWindow(m)
	m.Spec.Preflight.AcceptEnvChanges = nil
	if run.source != nil {
		run.source(m)
	}
	if err := h.Client.Create(ctx, m); err != nil {
		t.Fatal(err)
	}
	g := gomega.NewWithT(t)

	// The first preflight: every finding is in status, counted by class.
	eventually(t, getMigration(ctx, m)).Should(gomega.HaveField("Status.PreflightSummary", gomega.Not(gomega.BeNil())))
	first, _ := getMigration(ctx, m)()
	summary := *first.Status.PreflightSummary
	t.Logf("first preflight: %s", stepMessage(first, "Preflight"))
	// The list keeps the 50 most serious: every finding that stops the migration is among them.
	g.Expect(summary.Blocks + summary.Changes).To(gomega.BeNumerically("<=", len(first.Status.Preflight)))

	// What a user does next: accept the changes and the GitOps owners they have suspended, and
	// nothing else. Any other Block is a defect of the operator on a real layout.
	var envChanges, owners []string
	for _, f := range first.Status.Preflight {
		switch {
		case f.Check == "GitOpsOwners":
			owners = append(owners, f.Object)
		case f.Check == "EnvParity" && f.Class == v1alpha1.FindingChanges:
			name := envVariable.FindStringSubmatch(f.Message)
			g.Expect(name).NotTo(gomega.BeNil(), f.Message)
			envChanges = append(envChanges, name[1])
		case f.Class == v1alpha1.FindingInformational:
		default:
			t.Errorf("%s finding %s on a real layout: %s", f.Check, f.Object, f.Message)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("accepting the changes %v and the GitOps owners %v", envChanges, owners)
	accepted := time.Now()
	latest, _ := getMigration(ctx, m)()
	patched := latest.DeepCopy()
	patched.Spec.Preflight.AcceptEnvChanges = envChanges
	patched.Spec.Preflight.AcceptGitOpsOwners = owners
	if err := h.Client.Patch(ctx, patched, client.MergeFrom(latest)); err != nil {
		t.Fatal(err)
	}
	eventually(t, getMigration(ctx, m)).Should(gomega.HaveField("Status.Phase", v1alpha1.PhaseCompleted))
	completedIn := time.Since(accepted)
	done, _ := getMigration(ctx, m)()
	g.Expect(stepStates(done)).To(gomega.ContainElements("Install=Succeeded", "ShiftTraffic=Succeeded", "Finish=Succeeded"))
	for _, name := range run.services {
		g.Expect(selectsRelease(ctx, ns, name)).To(gomega.BeTrue(), "Service %s selects the release's pods", name)
	}
	for name, to := range run.hpas {
		hpa := &autoscalingv2.HorizontalPodAutoscaler{}
		g.Expect(h.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, hpa)).To(gomega.Succeed())
		g.Expect(hpa.Spec.ScaleTargetRef.Name).To(gomega.Equal(to), "HorizontalPodAutoscaler %s after Finish", name)
		d := &appsv1.Deployment{}
		g.Expect(h.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: to}, d)).To(gomega.Succeed())
		g.Expect(scheduler.Consumes(d.Spec.Template.Spec).Consumes).To(gomega.BeFalse(), "HorizontalPodAutoscaler %s scales a scheduler consumer", name)
	}
	t.Logf("Finish: %s", stepMessage(done, "Finish"))

	// Level 1 on the completed migration: the old pods come back and the Services select them
	// exactly as before.
	rollBackTo(t, ctx, m, 1)
	rolled, _ := getMigration(ctx, m)()
	rb := rolled.Status.Rollback
	g.Expect(rb).To(gomega.HaveField("FinishedAt", gomega.Not(gomega.BeNil())))
	restoredIn := rb.FinishedAt.Sub(rb.StartedAt.Time)
	after := liveObjects(t, ctx, ns, objs)
	for _, name := range run.services {
		g.Expect(snapshot.Compare(after["Service/"+name], before["Service/"+name])).To(gomega.BeEmpty(), name)
	}
	for _, o := range objs {
		if o.GetKind() == "Deployment" {
			g.Expect(h.WaitCurrent(ctx, "apps/v1", "Deployment", ns, o.GetName(), time.Minute)).To(gomega.Succeed(), o.GetName())
		}
	}
	return fmt.Sprintf("| %s | %d | %d | %d (%d) | %d env, %d GitOps owners | %.1f s | %d ms |", run.layout, summary.Blocks, summary.Changes,
		summary.Informational, summary.Informational-summary.Omitted, len(envChanges), len(owners), completedIn.Seconds(), restoredIn.Milliseconds())
}

// selectsRelease reports whether a Service selects the pods of the release mastodon-helm.
func selectsRelease(ctx context.Context, ns, name string) (bool, error) {
	svc := &corev1.Service{}
	if err := h.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, svc); err != nil {
		return false, err
	}
	return svc.Spec.Selector["app.kubernetes.io/instance"] == "mastodon-helm", nil
}

func stepMessage(m *v1alpha1.MastodonMigration, step string) string {
	i := slices.IndexFunc(m.Status.Steps, func(s v1alpha1.StepStatus) bool { return s.Name == step })
	if i < 0 {
		return ""
	}
	return m.Status.Steps[i].Message
}
