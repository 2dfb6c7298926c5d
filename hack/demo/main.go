// Command demo shows the operator at work on the local cluster: it brings up the control plane,
// deploys a production-like Mastodon from the Kustomize fixture, serves the official chart from a Helm
// repository on loopback, runs the operator, and applies MastodonMigrations, printing each step as
// the operator records it. `make demo` runs it.
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
	"github.com/mastodon-operator/mastodon-operator/test/harness"
)

const namespace = "mastodon"

func main() {
	dir := flag.String("dir", "bin/demo-cluster", "directory for the cluster's state, logs and kubeconfig")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *dir); err != nil {
		fmt.Fprintln(os.Stderr, "demo failed:", err)
		os.Exit(1)
	}
}

var started = time.Now()

func say(format string, args ...any) {
	fmt.Printf("[%6.1fs] %s\n", time.Since(started).Seconds(), fmt.Sprintf(format, args...))
}

func heading(title string) { fmt.Printf("\n== %s\n", title) }

func run(ctx context.Context, dir string) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	operatorLog, err := os.Create(filepath.Join(dir, "operator.log"))
	if err != nil {
		return err
	}
	defer operatorLog.Close()

	heading("1. A real control plane on loopback")
	h, err := harness.Start(ctx, harness.Options{Dir: dir, Logf: func(f string, a ...any) { say(f, a...) }, OperatorLog: operatorLog})
	if err != nil {
		return err
	}
	defer h.Stop()
	say("cluster up: etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok with 3 nodes in pool %s", harness.NodePool)
	say("Helm repository with the official chart, mastodon 1.0.2: %s", h.ChartURL)

	heading("2. Mastodon as it runs today (the Kustomize fixture)")
	objs, err := h.DeployMastodon(ctx, namespace)
	if err != nil {
		return err
	}
	for _, o := range objs {
		say("applied %s/%s", o.GetKind(), o.GetName())
	}
	say("every Deployment rolled out; pods scheduled on the node pool and Ready")
	if err := kubectl(h, "", "get", "deployments,services,ingresses,hpa", "-n", namespace); err != nil {
		return err
	}

	heading("3. The operator")
	op, err := h.StartOperator(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = op.Stop() }()
	say("running (log: %s)", operatorLog.Name())

	heading("4. A MastodonMigration (config/samples), BlueGreen, watched for 20s after the switch")
	m, err := h.SampleMigration(namespace)
	if err != nil {
		return err
	}
	m.Spec.Analysis.Window = &metav1.Duration{Duration: 20 * time.Second}
	m.Spec.Analysis.Interval = &metav1.Duration{Duration: 5 * time.Second}
	if err := h.Client.Create(ctx, m); err != nil {
		return err
	}
	say("created MastodonMigration %s/%s", namespace, m.Name)
	if err := follow(ctx, h, m); err != nil {
		return err
	}
	if err := kubectl(h, "", "get", "mastodonmigrations", "-n", namespace); err != nil {
		return err
	}
	if err := kubectl(h, "", "get", "deployments,services,hpa", "-n", namespace, "-o", "wide"); err != nil {
		return err
	}
	if err := kubectl(h, "", "describe", "mastodonmigration", m.Name, "-n", namespace); err != nil {
		return err
	}

	heading("5. Another instance: a failure injected after the switch, and the automatic rollback")
	const canary = "mastodon-canary"
	if _, err := h.DeployMastodon(ctx, canary); err != nil {
		return err
	}
	failing, _ := h.SampleMigration(canary)
	// The harness's web server stands for the instance's public URL: the demo decides what it
	// answers, as a real outage would.
	public := "/public/" + canary
	failing.Spec.Analysis.HTTP = &v1alpha1.HTTPAnalysis{URL: h.Web.URL + public, Requests: 5}
	failing.Spec.Analysis.Window = &metav1.Duration{Duration: 10 * time.Minute}
	failing.Spec.Analysis.Interval = &metav1.Duration{Duration: 5 * time.Second}
	failing.Spec.Rollback.Watch = &metav1.Duration{Duration: 15 * time.Second}
	if err := h.Client.Create(ctx, failing); err != nil {
		return err
	}
	say("created MastodonMigration %s/%s, probing %s; waiting until the new stack takes the traffic", canary, failing.Name, h.Web.URL+public)
	if err := waitPhase(ctx, h, failing, v1alpha1.PhaseObserving); err != nil {
		return err
	}
	say("injecting a failure: the instance now answers 502 Bad Gateway")
	h.Web.Answer(public, http.StatusBadGateway, 0)
	if err := follow(ctx, h, failing); err != nil {
		return err
	}
	got := &v1alpha1.MastodonMigration{}
	if err := h.Client.Get(ctx, client.ObjectKeyFromObject(failing), got); err != nil {
		return err
	}
	rb := got.Status.Rollback
	say("rollback: level %d, trigger %s, in %s: %s", rb.Level, rb.Trigger, rb.FinishedAt.Sub(rb.StartedAt.Time).Round(time.Millisecond), rb.Reason)
	for _, b := range rb.Breaches {
		say("  breach %-8s %s = %s (threshold %s) since %s", b.Severity, b.Metric, b.Value, b.Threshold, b.Since.Format(time.TimeOnly))
	}
	say("the old stack answers again; the operator watches it for %s", failing.Spec.Rollback.Watch.Duration)
	h.Web.Answer(public, http.StatusOK, 0)
	if err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		err := h.Client.Get(ctx, client.ObjectKeyFromObject(failing), got)
		return err == nil && !strings.HasPrefix(got.Status.Rollback.Result, "Watching"), err
	}); err != nil {
		return err
	}
	say("watch after the rollback: %s", got.Status.Rollback.Result)
	if err := kubectl(h, "", "get", "services", "-n", canary, "-o", "custom-columns=SERVICE:.metadata.name,SELECTOR:.spec.selector"); err != nil {
		return err
	}

	heading("6. A migration preflight refuses: a chart version that does not exist, a Deployment that does not")
	broken, _ := h.SampleMigration(namespace)
	broken.Name = "broken"
	broken.Spec.Release.Chart.Version = "9.9.9"
	broken.Spec.Source.Sidekiq = append(broken.Spec.Source.Sidekiq, v1alpha1.ComponentRef{Deployment: "mastodon-worker-pull"})
	if err := h.Client.Create(ctx, broken); err != nil {
		return err
	}
	if err := follow(ctx, h, broken); err != nil {
		return err
	}
	if err := h.Client.Get(ctx, client.ObjectKeyFromObject(broken), got); err != nil {
		return err
	}
	for _, f := range got.Status.Preflight {
		say("finding %-18s %-32s %s", f.Check, f.Object, f.Message)
	}

	heading("7. The API server refuses an invalid migration, saying what to fix")
	invalid, _ := h.SampleMigration(namespace)
	invalid.Name = "invalid"
	invalid.Spec.RollbackLevel = 3
	invalid.Spec.Analysis.Thresholds.Critical.ErrorRate = "1.5"
	invalid.APIVersion, invalid.Kind = v1alpha1.GroupVersion.String(), "MastodonMigration"
	manifest, err := yaml.Marshal(invalid)
	if err != nil {
		return err
	}
	if err := kubectl(h, string(manifest), "apply", "-f", "-"); err == nil {
		return fmt.Errorf("the API server accepted an invalid migration")
	}

	heading("Done")
	say("MastodonMigration %s moved a live, production-like Mastodon to Helm release %s", m.Name, m.Spec.Release.Name)
	say("to explore a cluster yourself: make cluster-up, then export KUBECONFIG=$PWD/bin/local-cluster/kubeconfig")
	return nil
}

// follow watches a migration and prints each change of phase and step until the operator has
// fully handled its generation.
func follow(ctx context.Context, h *harness.Harness, m *v1alpha1.MastodonMigration) error {
	wc, err := client.NewWithWatch(h.Cluster.RESTConfig(), client.Options{Scheme: h.Scheme})
	if err != nil {
		return err
	}
	w, err := wc.Watch(ctx, &v1alpha1.MastodonMigrationList{}, client.InNamespace(m.Namespace),
		client.MatchingFields{"metadata.name": m.Name})
	if err != nil {
		return err
	}
	defer w.Stop()
	seen := map[string]string{}
	timeout := time.After(5 * time.Minute)
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-timeout:
			return fmt.Errorf("MastodonMigration %s did not settle within 5 minutes", m.Name)
		case ev, ok := <-w.ResultChan():
			if !ok {
				return fmt.Errorf("the watch of MastodonMigration %s ended", m.Name)
			}
			if ev.Type != watch.Added && ev.Type != watch.Modified {
				continue
			}
			got := ev.Object.(*v1alpha1.MastodonMigration)
			if seen["phase"] != string(got.Status.Phase) && got.Status.Phase != "" {
				seen["phase"] = string(got.Status.Phase)
				say("phase %s", got.Status.Phase)
			}
			for _, s := range got.Status.Steps {
				line := fmt.Sprintf("%s %s", s.State, s.Message)
				if seen[s.Name] == line {
					continue
				}
				seen[s.Name] = line
				took := ""
				if s.StartedAt != nil && s.FinishedAt != nil {
					took = fmt.Sprintf(" in %s", s.FinishedAt.Sub(s.StartedAt.Time).Round(time.Millisecond))
				}
				say("step %-10s %s%s: %s", s.Name, s.State, took, s.Message)
			}
			if settled(got) {
				if c := meta.FindStatusCondition(got.Status.Conditions, "Ready"); c != nil {
					say("Ready=%s (%s): %s", c.Status, c.Reason, c.Message)
				}
				return nil
			}
		}
	}
}

// waitPhase waits until a migration reaches a phase.
func waitPhase(ctx context.Context, h *harness.Harness, m *v1alpha1.MastodonMigration, phase v1alpha1.Phase) error {
	return wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		got := &v1alpha1.MastodonMigration{}
		if err := h.Client.Get(ctx, client.ObjectKeyFromObject(m), got); err != nil {
			return false, err
		}
		return got.Status.Phase == phase, nil
	})
}

// settled reports whether the operator has fully handled the migration's spec and stopped: it
// completed, or waits on a person.
func settled(m *v1alpha1.MastodonMigration) bool {
	if m.Status.ObservedGeneration != m.Generation {
		return false
	}
	return m.Status.Phase == v1alpha1.PhaseRolledBack || meta.IsStatusConditionTrue(m.Status.Conditions, "Ready") ||
		meta.IsStatusConditionTrue(m.Status.Conditions, "Stalled")
}

// kubectl runs the cluster's own kubectl and prints what it says, indented.
func kubectl(h *harness.Harness, stdin string, args ...string) error {
	bin := filepath.Join(os.Getenv("MASTODON_OPERATOR_BIN_DIR"), "kubectl")
	fmt.Printf("\n$ kubectl %s\n", strings.Join(args, " "))
	cmd := exec.Command(bin, append([]string{"--kubeconfig", h.Cluster.KubeconfigPath()}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	for _, line := range strings.Split(strings.TrimRight(out.String(), "\n"), "\n") {
		fmt.Println("  " + line)
	}
	fmt.Println()
	return err
}
