// Package notify tells people what a migration did: a JSON webhook and a Slack incoming webhook,
// sent in the background with retries, so that a receiver that fails or hangs never holds a
// migration. Changes derives the messages from the status before and after a reconcile's write,
// so a requeue that changes nothing sends nothing.
package notify

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
)

// Kind is what a message is about.
type Kind string

// The kinds of messages.
const (
	KindPhase          Kind = "PhaseChanged"
	KindFindings       Kind = "PreflightFindings"
	KindBreach         Kind = "AnalysisBreach"
	KindRollback       Kind = "RollbackStarted"
	KindRolledBack     Kind = "RollbackFinished"
	KindRollbackResult Kind = "RollbackWatched"
)

// Severity says how soon a person should look.
type Severity string

// The severities.
const (
	SeverityInfo     Severity = "info"
	SeverityWarning  Severity = "warning"
	SeverityCritical Severity = "critical"
)

// Message is one notification: what happened (Summary, one line), why, and the command to act.
// Every text comes from the migration's status, which holds no secret value.
type Message struct {
	Kind      Kind      `json:"kind"`
	Severity  Severity  `json:"severity"`
	Namespace string    `json:"namespace"`
	Name      string    `json:"name"`
	Phase     string    `json:"phase"`
	Summary   string    `json:"summary"`
	Reason    string    `json:"reason,omitempty"`
	Action    string    `json:"action,omitempty"`
	Time      time.Time `json:"time"`
}

// maxText bounds a message's reason: a notification is read on a phone.
const maxText = 1000

// RollbackCommand is the command that asks for a rollback at level.
func RollbackCommand(namespace, name string, level int) string {
	return fmt.Sprintf(`kubectl -n %s patch mastodonmigration %s --type merge -p '{"spec":{"rollbackLevel":%d}}'`, namespace, name, level)
}

func describeCommand(namespace, name string) string {
	return fmt.Sprintf("kubectl -n %s describe mastodonmigration %s", namespace, name)
}

// Changes are the messages for what changed from before to after: the phase, a new preflight
// summary with findings, a breach not seen before, a rollback started, finished, or watched.
func Changes(before, after *v1alpha1.MastodonMigration, now time.Time) []Message {
	b, a := &before.Status, &after.Status
	ns, name := after.Namespace, after.Name
	msg := func(kind Kind, sev Severity, summary, reason, action string) Message {
		return Message{Kind: kind, Severity: sev, Namespace: ns, Name: name, Phase: string(a.Phase),
			Summary: fmt.Sprintf("%s/%s: %s", ns, name, summary), Reason: cut(reason), Action: action, Time: now}
	}
	var out []Message
	rollbackStarted := a.Rollback != nil && (b.Rollback == nil || b.Rollback.Level != a.Rollback.Level)
	rollbackFinished := a.Rollback != nil && a.Rollback.FinishedAt != nil &&
		(b.Rollback == nil || b.Rollback.FinishedAt == nil || rollbackStarted)
	// The rollback's own messages say what RollingBack and RolledBack would: RollbackStarted
	// went out when status.rollback appeared, which comes before the phase.
	saidByRollback := a.Phase == v1alpha1.PhaseRollingBack || rollbackFinished && a.Phase == v1alpha1.PhaseRolledBack
	if a.Phase != b.Phase && a.Phase != v1alpha1.PhasePending && !saidByRollback {
		out = append(out, phaseMessage(msg, before, after))
	}
	if p := a.PreflightSummary; p != nil && p.Blocks+p.Changes+p.Informational > 0 &&
		(b.PreflightSummary == nil || *b.PreflightSummary != *p) {
		out = append(out, findingsMessage(msg, after))
	}
	if a.Analysis != nil {
		for _, br := range a.Analysis.Breaches {
			if b.Analysis != nil && slices.ContainsFunc(b.Analysis.Breaches, func(o v1alpha1.Breach) bool {
				return o.Severity == br.Severity && o.Metric == br.Metric
			}) {
				continue
			}
			sev := SeverityWarning
			if br.Severity == "Critical" {
				sev = SeverityCritical
			}
			reason := fmt.Sprintf("measured %s, threshold %s, since %s", br.Value, br.Threshold, br.Since.UTC().Format(time.RFC3339))
			if br.For != "" {
				reason += fmt.Sprintf("; the operator acts once it holds for %s", br.For)
			}
			out = append(out, msg(KindBreach, sev, fmt.Sprintf("analysis breach: %s %s", br.Severity, br.Metric), reason,
				"to move the traffic back now: "+RollbackCommand(ns, name, 1)))
		}
	}
	if rb := a.Rollback; rb != nil {
		if rollbackStarted {
			reason := rb.Reason
			for _, br := range rb.Breaches {
				reason += fmt.Sprintf("; %s %s %s (threshold %s)", br.Severity, br.Metric, br.Value, br.Threshold)
			}
			action := describeCommand(ns, name) + " to follow its steps"
			if rb.Level < 2 {
				action += "; to also remove the release and restore every object: " + RollbackCommand(ns, name, 2)
			}
			out = append(out, msg(KindRollback, SeverityCritical,
				fmt.Sprintf("rolling back at level %d (%s)", rb.Level, rb.Trigger), reason, action))
		}
		if rollbackFinished {
			took := ""
			if rb.StartedAt != nil {
				took = " in " + rb.FinishedAt.Sub(rb.StartedAt.Time).Round(time.Millisecond).String()
			}
			out = append(out, msg(KindRolledBack, SeverityWarning,
				fmt.Sprintf("rolled back at level %d%s: the old stack serves the traffic", rb.Level, took),
				rb.Reason, "the release stays for inspection; a new MastodonMigration starts the migration again"))
		}
		if result := rb.Result; result != "" && (b.Rollback == nil || b.Rollback.Result != result) &&
			!strings.HasPrefix(result, "Watching") {
			sev, action := SeverityInfo, ""
			if strings.HasPrefix(result, "Unhealthy") {
				sev, action = SeverityCritical, "the restored stack misbehaves too: "+describeCommand(ns, name)
				if rb.Level < 2 {
					action += "; level 2: " + RollbackCommand(ns, name, 2)
				}
			}
			summary, reason, _ := strings.Cut(result, ": ")
			out = append(out, msg(KindRollbackResult, sev, "restored stack "+summary, reason, action))
		}
	}
	return out
}

type newMessage func(kind Kind, sev Severity, summary, reason, action string) Message

func phaseMessage(msg newMessage, before, after *v1alpha1.MastodonMigration) Message {
	ns, name := after.Namespace, after.Name
	from := before.Status.Phase
	if from == "" {
		from = v1alpha1.PhasePending
	}
	summary := fmt.Sprintf("phase %s -> %s", from, after.Status.Phase)
	reason := ""
	if c := meta.FindStatusCondition(after.Status.Conditions, "Ready"); c != nil {
		reason = c.Message
	}
	if s := lastEnded(after.Status.Steps); s != nil && s.Message != "" {
		reason = fmt.Sprintf("%s %s: %s", s.Name, s.State, s.Message)
	}
	sev, action := SeverityInfo, ""
	switch after.Status.Phase {
	case v1alpha1.PhaseShiftingTraffic, v1alpha1.PhaseObserving:
		action = "to move the traffic back: " + RollbackCommand(ns, name, 1)
	case v1alpha1.PhaseFailed:
		sev, action = SeverityCritical, describeCommand(ns, name)+" says which change moves it on; to move the traffic back: "+
			RollbackCommand(ns, name, 1)
	case v1alpha1.PhaseRolledBack:
		sev, action = SeverityWarning, describeCommand(ns, name)
	case v1alpha1.PhaseCompleted:
		action = describeCommand(ns, name) + " shows every step"
	}
	return msg(KindPhase, sev, summary, reason, action)
}

func findingsMessage(msg newMessage, m *v1alpha1.MastodonMigration) Message {
	p := m.Status.PreflightSummary
	summary := fmt.Sprintf("preflight found %d blocking, %d changing, %d informational", p.Blocks, p.Changes, p.Informational)
	var first []string
	for _, f := range m.Status.Preflight {
		if len(first) == 3 {
			break
		}
		first = append(first, fmt.Sprintf("[%s] %s %s: %s", classOf(f), f.Check, f.Object, f.Message))
	}
	sev, action := SeverityInfo, ""
	list := fmt.Sprintf("kubectl -n %s get mastodonmigration %s -o jsonpath='{.status.preflight}'", m.Namespace, m.Name)
	switch {
	case p.Blocks > 0:
		sev, action = SeverityWarning, "fix what blocks, and preflight runs again: "+list
	case p.Changes > 0:
		sev, action = SeverityWarning, "accept the changes in spec.preflight.acceptEnvChanges or fix them: "+list
	}
	return msg(KindFindings, sev, summary, strings.Join(first, "; "), action)
}

func classOf(f v1alpha1.Finding) v1alpha1.FindingClass {
	if f.Class == "" {
		return v1alpha1.FindingBlocks
	}
	return f.Class
}

// lastEnded is the step that ended last.
func lastEnded(steps []v1alpha1.StepStatus) *v1alpha1.StepStatus {
	var last *v1alpha1.StepStatus
	for i := range steps {
		s := &steps[i]
		if s.FinishedAt != nil && (last == nil || s.FinishedAt.After(last.FinishedAt.Time)) {
			last = s
		}
	}
	return last
}

func cut(s string) string {
	if len(s) <= maxText {
		return s
	}
	i := maxText
	for i > 0 && s[i]&0xc0 == 0x80 {
		i--
	}
	return s[:i] + "…"
}
