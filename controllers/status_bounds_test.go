package controllers_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/onsi/gomega"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
	"github.com/mastodon-operator/mastodon-operator/test/fixture"
)

// legacyVars is how many variables the old pods read from a Secret by envFrom.
const legacyVars = 300

// manyFindings creates, in a new namespace, an old stack whose preflight finds several hundred
// problems, and a migration of it: the three Deployments (never available in envtest) read
// legacyVars Secret keys by envFrom that the chart does not pass, and every one of the 64 extra
// resources is missing. It returns the migration and the number of findings there must be at
// least.
func manyFindings(t *testing.T, ctx context.Context) (*v1alpha1.MastodonMigration, int) {
	t.Helper()
	ns := newNamespace(t, ctx)
	legacy := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "legacy-env"}, StringData: map[string]string{}}
	for i := range legacyVars {
		legacy.StringData[fmt.Sprintf("LEGACY_SETTING_%03d", i)] = fmt.Sprintf("s3cr3t-value-%03d", i)
	}
	chartKeys := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "mastodon"}, StringData: map[string]string{}}
	for _, k := range []string{"secret-key-base", "vapid-private-key", "vapid-public-key", "are-primary-key",
		"are-deterministic-key", "are-derivation-salt", "password", "login", "username", "access-key-id", "secret-access-key"} {
		chartKeys.StringData[k] = "x"
	}
	for _, o := range []*corev1.Secret{legacy, chartKeys} {
		if err := k8sClient.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"mastodon-web", "mastodon-streaming", "mastodon-worker"} {
		d := deployment(ns, name)
		d.Spec.Template.Spec.Containers[0].EnvFrom = []corev1.EnvFromSource{
			{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "legacy-env"}}}}
		if err := k8sClient.Create(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	if err := k8sClient.Create(ctx, ingress(ns, "mastodon")); err != nil {
		t.Fatal(err)
	}
	m := migration(ns, "to-helm")
	for i := range 64 {
		m.Spec.Source.ExtraResources = append(m.Spec.Source.ExtraResources, v1alpha1.ObjectRef{
			APIVersion: autoscalingv2.SchemeGroupVersion.String(), Kind: "HorizontalPodAutoscaler", Name: fmt.Sprintf("mastodon-%02d", i)})
	}
	raw, err := json.Marshal(fixture.OfficialChartMinimalValues("mastodon"))
	if err != nil {
		t.Fatal(err)
	}
	m.Spec.Release.Values = &apiextensionsv1.JSON{Raw: raw}
	if err := k8sClient.Create(ctx, m); err != nil {
		t.Fatal(err)
	}
	return m, legacyVars + 64 + 3
}

func TestSeveralHundredFindingsStayReadable(t *testing.T) {
	ctx := context.Background()
	m, atLeast := manyFindings(t, ctx)
	eventually(t, get(ctx, m)).Should(gomega.WithTransform(func(m *v1alpha1.MastodonMigration) v1alpha1.StepState {
		return stepOf(m, "Preflight").State
	}, gomega.Equal(v1alpha1.StepFailed)))
	got, _ := get(ctx, m)()
	g := gomega.NewWithT(t)

	// Every finding is counted; the list keeps the 50 most serious.
	sum := got.Status.PreflightSummary
	g.Expect(sum).NotTo(gomega.BeNil())
	total := int(sum.Blocks + sum.Changes + sum.Informational)
	g.Expect(total).To(gomega.BeNumerically(">=", atLeast))
	g.Expect(got.Status.Preflight).To(gomega.HaveLen(50))
	g.Expect(int(sum.Omitted)).To(gomega.Equal(total - 50))
	rank := map[v1alpha1.FindingClass]int{"": 0, v1alpha1.FindingBlocks: 0, v1alpha1.FindingChanges: 1, v1alpha1.FindingInformational: 2}
	g.Expect(got.Status.Preflight[0].Class).To(gomega.BeElementOf(v1alpha1.FindingClass(""), v1alpha1.FindingBlocks))
	for i := 1; i < len(got.Status.Preflight); i++ {
		g.Expect(rank[got.Status.Preflight[i-1].Class]).To(gomega.BeNumerically("<=", rank[got.Status.Preflight[i].Class]),
			"finding %d is less serious than finding %d", i-1, i)
	}

	// The step and the conditions say it in one short line.
	msg := stepOf(got, "Preflight").Message
	g.Expect(len(msg)).To(gomega.BeNumerically("<", 200), msg)
	g.Expect(msg).To(gomega.And(gomega.HavePrefix(fmt.Sprintf("%d findings: %d block the migration", total, sum.Blocks)),
		gomega.HaveSuffix("status.preflight lists the 50 most serious")))
	g.Expect(conditionStatus(got, "Stalled")).To(gomega.Equal(metav1.ConditionTrue))
	g.Expect(conditionStatus(got, "PreflightPassed")).To(gomega.Equal(metav1.ConditionFalse))
	g.Expect(meta.FindStatusCondition(got.Status.Conditions, "Stalled").Message).To(gomega.Equal(msg))

	// The Warning Event: the summary, then the first findings, within the events API's limit.
	var notes string
	eventually(t, eventsFor(ctx, "MastodonMigration", m)).Should(gomega.ContainElement(gomega.And(
		gomega.HaveField("Type", corev1.EventTypeWarning), gomega.HaveField("Reason", "PreflightFailed"),
		gomega.HaveField("Note", gomega.And(gomega.HavePrefix(msg+". First: "+got.Status.Preflight[0].Message),
			gomega.WithTransform(func(s string) int { return len(s) }, gomega.BeNumerically("<=", 1024)))),
	)))
	evs, _ := eventsFor(ctx, "MastodonMigration", m)()
	for _, e := range evs {
		notes += e.Note + "\n"
	}

	// kubectl describe reads well: bounded, and only the findings' own messages make long lines.
	out := describe(t, "-n", got.Namespace, "mastodonmigration", got.Name)
	g.Expect(len(out)).To(gomega.BeNumerically("<", 64<<10), "kubectl describe prints %d bytes", len(out))
	g.Expect(out).To(gomega.ContainSubstring(msg))
	for _, line := range strings.Split(out, "\n") {
		if len(line) <= 300 {
			continue
		}
		g.Expect(slices.ContainsFunc(got.Status.Preflight, func(f v1alpha1.Finding) bool {
			return strings.Contains(line, f.Message)
		})).To(gomega.BeTrue(), "a long line of kubectl describe that is no finding's message:\n%s", line)
	}
	for _, where := range []string{out, notes} {
		g.Expect(where).NotTo(gomega.ContainSubstring("s3cr3t-value-"), "a Secret value")
	}
}

// describe runs kubectl describe against the envtest API server.
func describe(t *testing.T, args ...string) string {
	t.Helper()
	config := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(config, kubeconfig, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(os.Getenv("KUBEBUILDER_ASSETS"), "kubectl"),
		append([]string{"--kubeconfig", config, "describe"}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl describe %v: %v\n%s", args, err, out)
	}
	return string(out)
}

func TestARefusedStatusWriteStallsTheMigrationWithoutRetryingIt(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t, ctx)
	// The API server refuses, in this namespace, every status write that lists findings, as it
	// would refuse any invalid status: a ValidatingAdmissionPolicy answers 422 (reason Invalid),
	// as schema validation does.
	const refusal = "this test's API server refuses status.preflight"
	name := "refuse-findings-" + ns
	policy := &admissionregistrationv1.ValidatingAdmissionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{
			FailurePolicy: ptr.To(admissionregistrationv1.Fail),
			MatchConstraints: &admissionregistrationv1.MatchResources{ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{
				RuleWithOperations: admissionregistrationv1.RuleWithOperations{
					Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Update},
					Rule: admissionregistrationv1.Rule{APIGroups: []string{v1alpha1.GroupVersion.Group}, APIVersions: []string{"*"},
						Resources: []string{"mastodonmigrations/status"}},
				}}}},
			Validations: []admissionregistrationv1.Validation{{
				Expression: "!has(object.status.preflight) || size(object.status.preflight) == 0",
				Message:    refusal, Reason: ptr.To(metav1.StatusReasonInvalid)}},
		},
	}
	binding := &admissionregistrationv1.ValidatingAdmissionPolicyBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{PolicyName: name,
			ValidationActions: []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny},
			MatchResources: &admissionregistrationv1.MatchResources{NamespaceSelector: &metav1.LabelSelector{
				MatchLabels: map[string]string{corev1.LabelMetadataName: ns}}}},
	}
	for _, o := range []client.Object{policy, binding} {
		if err := k8sClient.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = k8sClient.Delete(context.Background(), o) })
	}

	// Paused, the migration writes no findings until the policy is in force.
	m := migration(ns, "to-helm")
	m.Spec.Paused = true
	if err := k8sClient.Create(ctx, m); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() error {
		latest, err := get(ctx, m)()
		if err != nil {
			return err
		}
		probe := latest.DeepCopy()
		probe.Status.Preflight = []v1alpha1.Finding{{Check: "Probe", Message: "probe"}}
		return k8sClient.Status().Patch(ctx, probe, client.MergeFrom(latest), client.DryRunAll)
	}).Should(gomega.WithTransform(apierrors.IsInvalid, gomega.BeTrue()))
	latest, _ := get(ctx, m)()
	resumed := latest.DeepCopy()
	resumed.Spec.Paused = false
	if err := k8sClient.Patch(ctx, resumed, client.MergeFrom(latest)); err != nil {
		t.Fatal(err)
	}

	// Status says why, within its limits, and keeps the phase; the preflight list that was
	// refused is not there.
	stalled := func(m *v1alpha1.MastodonMigration) *metav1.Condition {
		return meta.FindStatusCondition(m.Status.Conditions, "Stalled")
	}
	eventually(t, get(ctx, m)).Should(gomega.WithTransform(stalled, gomega.And(
		gomega.Not(gomega.BeNil()),
		gomega.HaveField("Status", metav1.ConditionTrue),
		gomega.HaveField("Reason", "StatusRejected"),
		gomega.HaveField("Message", gomega.And(
			gomega.HavePrefix("the API server refused the operator's status write: this is the last status it accepted"),
			gomega.ContainSubstring(refusal),
			gomega.WithTransform(func(s string) int { return len(s) }, gomega.BeNumerically("<=", 4096)))),
	)))
	got, _ := get(ctx, m)()
	g := gomega.NewWithT(t)
	g.Expect(got.Status.Phase).To(gomega.Equal(v1alpha1.PhasePreflight))
	g.Expect(got.Status.Preflight).To(gomega.BeEmpty())
	g.Expect(conditionStatus(got, "Ready")).To(gomega.Equal(metav1.ConditionFalse))
	g.Expect(conditionStatus(got, "Reconciling")).To(gomega.Equal(metav1.ConditionFalse))
	eventually(t, eventsFor(ctx, "MastodonMigration", m)).Should(gomega.ContainElement(gomega.And(
		gomega.HaveField("Type", corev1.EventTypeWarning), gomega.HaveField("Reason", "StatusRejected"),
		gomega.HaveField("Note", gomega.And(gomega.ContainSubstring(refusal),
			gomega.WithTransform(func(s string) int { return len(s) }, gomega.BeNumerically("<=", 1024)))),
	)))

	// And the operator does not hammer the API server with the refused write: a retry at the
	// workqueue's backoff would make about ten in five seconds.
	refused := func() int { return refusedStatusWrites(t, ns, m.Name) }
	g.Expect(refused()).To(gomega.BeNumerically(">=", 1), "the audit log shows the refused write")
	gomega.NewWithT(t).Consistently(refused).WithTimeout(5 * time.Second).WithPolling(500 * time.Millisecond).
		Should(gomega.BeNumerically("<=", 2))
}

// refusedStatusWrites counts the status writes of a migration that the API server refused as
// invalid (422), dry runs left out, from its audit log.
func refusedStatusWrites(t *testing.T, ns, name string) int {
	t.Helper()
	raw, err := os.ReadFile(auditLog)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, line := range bytes.Split(raw, []byte("\n")) {
		var e struct {
			Stage      string `json:"stage"`
			RequestURI string `json:"requestURI"`
			ObjectRef  struct {
				Namespace, Name, Subresource string
			} `json:"objectRef"`
			ResponseStatus struct {
				Code int `json:"code"`
			} `json:"responseStatus"`
		}
		if json.Unmarshal(line, &e) != nil {
			continue
		}
		if e.Stage == "ResponseComplete" && e.ObjectRef.Namespace == ns && e.ObjectRef.Name == name &&
			e.ObjectRef.Subresource == "status" && e.ResponseStatus.Code == http.StatusUnprocessableEntity &&
			!strings.Contains(e.RequestURI, "dryRun") {
			n++
		}
	}
	return n
}
