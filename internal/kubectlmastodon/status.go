package kubectlmastodon

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
)

func (o *options) statusCommand() *cobra.Command {
	var wait bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "status NAME",
		Short: "Show a migration's steps with timings, analysis, breaches, rollback and scheduler holder",
		Long: `Show a migration's steps with timings, analysis, breaches, rollback and the Sidekiq scheduler holder.

Exit codes: 0 completed, 3 rolled back, 4 failed or stalled (waits on a person), 5 still running.
With --wait, waits (a watch) until one of the first three.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, timeout)
				defer cancel()
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			ns, err := o.namespace()
			if err != nil {
				return err
			}
			m := &v1alpha1.MastodonMigration{}
			if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: args[0]}, m); err != nil {
				return err
			}
			if wait && ExitCode(m) == ExitRunning {
				if m, err = waitTerminal(ctx, c, m); err != nil {
					return err
				}
			}
			WriteStatus(o.Out, m, time.Now())
			if code := ExitCode(m); code != 0 {
				return exitError{code}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&wait, "wait", false, "wait until the migration completes, rolls back, fails or stalls")
	cmd.Flags().DurationVar(&timeout, "timeout", 0, "with --wait, give up after this long (0: never)")
	return cmd
}

// ExitCode is status's exit code for a migration.
func ExitCode(m *v1alpha1.MastodonMigration) int {
	switch m.Status.Phase {
	case v1alpha1.PhaseCompleted:
		return ExitCompleted
	case v1alpha1.PhaseRolledBack:
		return ExitRolledBack
	case v1alpha1.PhaseFailed:
		return ExitFailed
	}
	if meta.IsStatusConditionTrue(m.Status.Conditions, "Stalled") {
		return ExitFailed
	}
	return ExitRunning
}

// waitTerminal watches m until ExitCode says it no longer runs.
func waitTerminal(ctx context.Context, c client.WithWatch, m *v1alpha1.MastodonMigration) (*v1alpha1.MastodonMigration, error) {
	for {
		w, err := c.Watch(ctx, &v1alpha1.MastodonMigrationList{}, client.InNamespace(m.Namespace),
			client.MatchingFieldsSelector{Selector: fields.OneTermEqualSelector("metadata.name", m.Name)},
			&client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: m.ResourceVersion}})
		if err != nil {
			return nil, err
		}
		for ev := range w.ResultChan() {
			if ev.Type == watch.Error {
				break // an expired resourceVersion: read again and watch from there
			}
			got, ok := ev.Object.(*v1alpha1.MastodonMigration)
			if !ok {
				continue
			}
			m = got
			if ExitCode(m) != ExitRunning {
				w.Stop()
				return m, nil
			}
		}
		w.Stop()
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("waiting for migration %s: %w", m.Name, err)
		}
		if err := c.Get(ctx, client.ObjectKeyFromObject(m), m); err != nil {
			return nil, err
		}
		if ExitCode(m) != ExitRunning {
			return m, nil
		}
	}
}

// WriteStatus writes what status shows: the summary line first, then the steps, the analysis,
// the rollback and the scheduler.
func WriteStatus(w io.Writer, m *v1alpha1.MastodonMigration, now time.Time) {
	st := m.Status
	fmt.Fprintf(w, "Migration %s/%s: %s (%s, release %s)", m.Namespace, m.Name, orDash(string(st.Phase)), m.Spec.Strategy, m.Spec.Release.Name)
	if m.Spec.Paused {
		fmt.Fprint(w, ", paused")
	}
	fmt.Fprintln(w)
	for _, t := range []string{"Ready", "Stalled"} {
		if c := meta.FindStatusCondition(st.Conditions, t); c != nil && (t == "Ready" || c.Status == "True") {
			fmt.Fprintf(w, "  %s=%s %s: %s\n", c.Type, c.Status, c.Reason, c.Message)
		}
	}
	if s := st.PreflightSummary; s != nil {
		fmt.Fprintf(w, "  Preflight: %d block, %d change, %d informational\n", s.Blocks, s.Changes, s.Informational)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STEP\tSTATE\tSTARTED\tDURATION\tMESSAGE")
	for _, s := range st.Steps {
		started, took := "-", "-"
		if s.StartedAt != nil {
			started = s.StartedAt.UTC().Format(time.TimeOnly)
			end := now
			if s.FinishedAt != nil {
				end = s.FinishedAt.Time
			}
			took = end.Sub(s.StartedAt.Time).Round(time.Millisecond).String()
			if s.FinishedAt == nil {
				took += " so far"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", s.Name, s.State, started, took, oneLine(s.Message))
	}
	_ = tw.Flush()
	if a := st.Analysis; a != nil {
		fmt.Fprintf(w, "\nAnalysis: %s", orDash(a.Verdict))
		for _, kv := range [][2]string{{"error rate", a.ErrorRate}, {"latency", a.Latency}, {"latency ratio", a.LatencyRatio}, {"queue latency", a.QueueLatency}} {
			if kv[1] != "" {
				fmt.Fprintf(w, ", %s %s", kv[0], kv[1])
			}
		}
		fmt.Fprintln(w)
		for _, b := range a.Breaches {
			fmt.Fprintf(w, "  breach: %s %s = %s (threshold %s) since %s", b.Severity, b.Metric, b.Value, b.Threshold, b.Since.UTC().Format(time.RFC3339))
			if b.For != "" {
				fmt.Fprintf(w, ", acts after %s", b.For)
			}
			fmt.Fprintln(w)
		}
	}
	if r := st.Rollback; r != nil {
		fmt.Fprintf(w, "\nRollback: level %d by %s", r.Level, r.Trigger)
		if r.Reason != "" {
			fmt.Fprintf(w, ": %s", oneLine(r.Reason))
		}
		if r.Result != "" {
			fmt.Fprintf(w, "; watch: %s", oneLine(r.Result))
		}
		fmt.Fprintln(w)
		for _, b := range r.Breaches {
			fmt.Fprintf(w, "  caused by: %s %s = %s (threshold %s)\n", b.Severity, b.Metric, b.Value, b.Threshold)
		}
	}
	if s := st.Scheduler; s != nil {
		fmt.Fprintf(w, "\nSidekiq scheduler: held by %s", orDash(s.Holder))
		if s.Since != nil {
			fmt.Fprintf(w, " since %s", s.Since.UTC().Format(time.RFC3339))
		}
		fmt.Fprintln(w)
		for _, h := range s.HandOvers {
			fmt.Fprintf(w, "  hand-over %s -> %s", orDash(h.From), orDash(h.To))
			if h.OldStoppedAt != nil && h.NewStartedAt != nil {
				fmt.Fprintf(w, ": none consumed it for %s", h.NewStartedAt.Sub(h.OldStoppedAt.Time).Round(time.Millisecond))
			}
			fmt.Fprintln(w)
		}
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// oneLine keeps a table row on one line.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
