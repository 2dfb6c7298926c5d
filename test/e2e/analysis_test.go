package e2e

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/onsi/gomega"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
	"github.com/mastodon-operator/mastodon-operator/internal/snapshot"
)

// probed has the analysis probe a path of the harness's web server that stands for the
// instance's public URL, so the test decides what the stack answers.
func probed(path string, window time.Duration) func(*v1alpha1.MastodonMigration) {
	return func(m *v1alpha1.MastodonMigration) {
		m.Spec.Analysis.HTTP = &v1alpha1.HTTPAnalysis{URL: h.Web.URL + path, Requests: 4,
			Timeout: &metav1.Duration{Duration: 2 * time.Second}}
		m.Spec.Analysis.Window = &metav1.Duration{Duration: window}
		m.Spec.Analysis.Interval = &metav1.Duration{Duration: 5 * time.Second}
		m.Spec.Rollback.Watch = &metav1.Duration{Duration: 10 * time.Second}
	}
}

func eventReasons(ctx context.Context, ns string) func() ([]string, error) {
	return func() ([]string, error) {
		var list eventsv1.EventList
		err := h.Client.List(ctx, &list, client.InNamespace(ns))
		var reasons []string
		for _, e := range list.Items {
			reasons = append(reasons, e.Reason)
		}
		return reasons, err
	}
}

// TestErrorsAfterTheShiftRollBackAutomatically injects 5xx responses once the traffic has moved:
// the analysis calls it critical and the operator rolls back at level 1 at once, recording the
// values that caused it; the old pods get the traffic back, and the restored stack is watched.
func TestErrorsAfterTheShiftRollBackAutomatically(t *testing.T) {
	ctx := context.Background()
	ns := "mastodon-errors"
	path := "/probe/" + ns
	objs, before, m := migrateTo(t, ctx, ns, v1alpha1.PhaseObserving, probed(path, 10*time.Minute))
	got, _ := getMigration(ctx, m)()
	g := gomega.NewWithT(t)
	g.Expect(got.Status.Analysis.Baseline).To(gomega.HaveField("ErrorRate", "0.00%"), "a baseline of the old stack is taken before the switch")
	g.Expect(stepStates(got)).To(gomega.ContainElement("Baseline=Succeeded"))

	h.Web.Answer(path, http.StatusBadGateway, 0)
	t.Cleanup(func() { h.Web.Answer(path, http.StatusOK, 0) })
	eventually(t, getMigration(ctx, m)).Should(gomega.HaveField("Status.Phase", v1alpha1.PhaseRolledBack))
	// The old stack serves again, and answers as it did before the switch.
	h.Web.Answer(path, http.StatusOK, 0)
	got, _ = getMigration(ctx, m)()
	g.Expect(got.Status.Rollback).To(gomega.And(
		gomega.HaveField("Level", int32(1)), gomega.HaveField("Trigger", "Automatic"),
		gomega.HaveField("Reason", gomega.ContainSubstring("critical")),
		// The 4 requests to the path failed; the instance API, asked once, still answered.
		gomega.HaveField("Breaches", gomega.ContainElement(gomega.And(
			gomega.HaveField("Severity", "Critical"), gomega.HaveField("Metric", "errorRate"),
			gomega.HaveField("Value", "80.00%"), gomega.HaveField("Threshold", "50.00%")))),
	))
	g.Expect(got.Status.Traffic.Target).To(gomega.Equal(v1alpha1.TrafficToSource))
	after := liveObjects(t, ctx, ns, objs)
	for _, name := range []string{"mastodon-web", "mastodon-assets", "mastodon-emoji", "mastodon-streaming"} {
		g.Expect(snapshot.Compare(after["Service/"+name], before["Service/"+name])).To(gomega.BeEmpty(), name)
	}
	eventually(t, eventReasons(ctx, ns)).Should(gomega.ContainElements("AnalysisFailed", "AutomaticRollback", "RolledBack"))

	// The watch after the rollback records the restored stack healthy.
	eventually(t, getMigration(ctx, m)).Should(gomega.HaveField("Status.Rollback.Result", gomega.HavePrefix("Healthy: watched for 10s")))
	eventually(t, eventReasons(ctx, ns)).Should(gomega.ContainElement("RollbackWatchSucceeded"))
}

// TestTheProbeAsksWhichStackAnswers makes the instance API report another version once the
// traffic has moved, as the old stack would: the probe counts it as a failed request and status
// names the version; once the release answers again the migration completes.
func TestTheProbeAsksWhichStackAnswers(t *testing.T) {
	ctx := context.Background()
	ns := "mastodon-which-stack"
	_, _, m := migrateTo(t, ctx, ns, v1alpha1.PhaseObserving, probed("/probe/"+ns, 40*time.Second))
	h.Web.ReportVersion("4.5.0")
	t.Cleanup(h.Web.Reset)
	eventually(t, getMigration(ctx, m)).Should(gomega.HaveField("Status.Analysis", gomega.And(
		gomega.HaveField("Verdict", "Breaching"),
		gomega.HaveField("ErrorRate", "20.00%"), // the instance API: 1 of the 5 requests
		gomega.HaveField("Providers", gomega.ContainElement(gomega.HaveField("Message", gomega.MatchRegexp(
			`^measured; last failure: GET http://[^ ]*/api/v2/instance answered version 4.5.0, want 4.6.2: the old stack answered\?$`)))))))
	got, _ := getMigration(ctx, m)()
	t.Logf("analysis: %s", got.Status.Analysis.Providers[0].Message)

	h.Web.Reset()
	eventually(t, getMigration(ctx, m)).Should(gomega.HaveField("Status.Phase", v1alpha1.PhaseCompleted))
}

// TestAnAutomaticRollbackThatDoesNotHealEscalatesToLevel2 keeps the errors after the level 1
// rollback: with maxAutomaticLevel 2, the watch of the restored stack escalates to level 2,
// which removes the release and restores every object.
func TestAnAutomaticRollbackThatDoesNotHealEscalatesToLevel2(t *testing.T) {
	ctx := context.Background()
	ns := "mastodon-escalate"
	path := "/probe/" + ns
	objs, before, m := migrateTo(t, ctx, ns, v1alpha1.PhaseObserving, func(m *v1alpha1.MastodonMigration) {
		probed(path, 10*time.Minute)(m)
		m.Spec.Rollback.MaxAutomaticLevel = 2
	})
	h.Web.Answer(path, http.StatusInternalServerError, 0)
	t.Cleanup(func() { h.Web.Answer(path, http.StatusOK, 0) })
	eventually(t, getMigration(ctx, m)).WithTimeout(2 * time.Minute).Should(gomega.And(
		gomega.HaveField("Status.Phase", v1alpha1.PhaseRolledBack),
		gomega.HaveField("Status.Rollback.Level", int32(2))))
	got, _ := getMigration(ctx, m)()
	g := gomega.NewWithT(t)
	g.Expect(got.Status.Rollback.Reason).To(gomega.ContainSubstring("level 1 did not heal the stack"))
	g.Expect(stepStates(got)).To(gomega.ContainElements("RollbackTraffic=Succeeded", "RollbackUninstall=Succeeded", "RollbackRestore=Succeeded"))
	expectReleaseGoneAndStackRestored(t, g, ctx, m, objs, before)
	// The old stack fails the same way: the watch after level 2 says so and stops there.
	eventually(t, getMigration(ctx, m)).Should(gomega.HaveField("Status.Rollback.Result", gomega.HavePrefix("Unhealthy: ")))
}

// TestAProviderWithoutDataHoldsTheMigration points the probe at a port nothing listens on after
// the switch: the verdict is Inconclusive, MetricsAvailable turns False with an Event, and the
// window ends without the migration completing; nor is anything rolled back.
func TestAProviderWithoutDataHoldsTheMigration(t *testing.T) {
	ctx := context.Background()
	ns := "mastodon-nodata"
	_, _, m := migrateTo(t, ctx, ns, v1alpha1.PhaseObserving, probed("/probe/"+ns, 5*time.Second))
	latest, _ := getMigration(ctx, m)()
	down := latest.DeepCopy()
	down.Spec.Analysis.HTTP.URL = "http://127.0.0.1:9/health"
	if err := h.Client.Patch(ctx, down, client.MergeFrom(latest)); err != nil {
		t.Fatal(err)
	}
	eventually(t, getMigration(ctx, m)).Should(gomega.HaveField("Status.Analysis.Verdict", "Inconclusive"))
	eventually(t, eventReasons(ctx, ns)).Should(gomega.ContainElement("MetricsUnavailable"))
	gomega.NewWithT(t).Consistently(getMigration(ctx, m)).WithTimeout(10 * time.Second).WithPolling(time.Second).Should(gomega.And(
		gomega.HaveField("Status.Phase", v1alpha1.PhaseObserving),
		gomega.HaveField("Status.Rollback", gomega.BeNil())))
	got, _ := getMigration(ctx, m)()
	cond := meta.FindStatusCondition(got.Status.Conditions, "MetricsAvailable")
	g := gomega.NewWithT(t)
	g.Expect(cond).NotTo(gomega.BeNil())
	g.Expect(cond.Status).To(gomega.Equal(metav1.ConditionFalse))
	g.Expect(cond.Message).To(gomega.ContainSubstring("no data from http"))

	// Data again, and a pass: the migration completes.
	fixed := got.DeepCopy()
	fixed.Spec.Analysis.HTTP.URL = h.Web.URL + "/probe/" + ns
	g.Expect(h.Client.Patch(ctx, fixed, client.MergeFrom(got))).To(gomega.Succeed())
	eventually(t, getMigration(ctx, m)).Should(gomega.HaveField("Status.Phase", v1alpha1.PhaseCompleted))
}
