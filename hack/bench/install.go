package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
	"github.com/mastodon-operator/mastodon-operator/internal/helm"
)

// install compares the operator's Install step (its record in status, from the step's start to
// the release deployed with its pods ready and hooks done) with `helm upgrade --install --wait
// --wait-for-jobs` of the same chart from the same repository, with the same values (the ones
// the operator generated, read from its ConfigMap) and the same post-rendering (the operator's
// secretEnv, through `bench post-render`), each into a fresh copy of the fixture.
func (b *bench) install(ctx context.Context, t *table) error {
	helmCLI := filepath.Join(b.cfg.dir, "helm")
	progress("building the Helm CLI from the operator's Helm module (go.mod's tool helm.sh/helm/v3/cmd/helm)")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", helmCLI, "helm.sh/helm/v3/cmd/helm").CombinedOutput(); err != nil {
		return fmt.Errorf("go build helm: %v: %s", err, out)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	op, err := startOperator(ctx, b.h, 0, b.log)
	if err != nil {
		return err
	}
	defer op.stop()
	var byOperator, byCLI []float64
	for i := range b.cfg.runs {
		nsOp, nsCLI := fmt.Sprintf("bench-install-op-%d", i), fmt.Sprintf("bench-install-cli-%d", i)
		if err := b.deploy(ctx, []string{nsOp, nsCLI}); err != nil {
			return err
		}
		m, err := b.sample(nsOp, time.Hour, 30*time.Second)
		if err != nil {
			return err
		}
		if err := b.h.Client.Create(ctx, m); err != nil {
			return err
		}
		// Observing: the install is over and the migration is quiet while the CLI runs.
		got, err := b.waitPhase(ctx, m, v1alpha1.PhaseObserving, 10*time.Minute)
		if err != nil {
			return err
		}
		s := step(got, "Install")
		if s == nil || s.State != v1alpha1.StepSucceeded || s.StartedAt == nil || s.FinishedAt == nil {
			return fmt.Errorf("step Install %+v, want Succeeded with its times", s)
		}
		byOperator = append(byOperator, s.FinishedAt.Sub(s.StartedAt.Time).Seconds())

		dir := filepath.Join(b.cfg.dir, "helm-cli", nsCLI)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		cm := &corev1.ConfigMap{}
		if err := b.h.Client.Get(ctx, client.ObjectKey{Namespace: nsOp, Name: got.Status.Release.GeneratedValues}, cm); err != nil {
			return err
		}
		values, secretEnv := filepath.Join(dir, "values.yaml"), filepath.Join(dir, "secretEnv.yaml")
		if err := os.WriteFile(values, []byte(cm.Data["values.yaml"]), 0o600); err != nil {
			return err
		}
		if err := os.WriteFile(secretEnv, []byte(cm.Data["secretEnv.yaml"]), 0o600); err != nil {
			return err
		}
		cmd := exec.CommandContext(ctx, helmCLI, "upgrade", "--install", m.Spec.Release.Name, m.Spec.Release.Chart.Name,
			"--repo", b.h.ChartURL, "--version", m.Spec.Release.Chart.Version, "--namespace", nsCLI,
			"-f", values, "--post-renderer", self, "--post-renderer-args", "post-render", "--post-renderer-args", "-secret-env="+secretEnv,
			"--wait", "--wait-for-jobs", "--timeout", "10m")
		cmd.Env = append(os.Environ(), "KUBECONFIG="+b.h.Cluster.KubeconfigPath(),
			"HELM_CACHE_HOME="+filepath.Join(dir, "cache"), "HELM_CONFIG_HOME="+filepath.Join(dir, "config"), "HELM_DATA_HOME="+filepath.Join(dir, "data"))
		start := time.Now()
		out, err := cmd.CombinedOutput()
		elapsed := time.Since(start)
		if err != nil {
			return fmt.Errorf("%s: %v: %s", cmd, err, out)
		}
		byCLI = append(byCLI, elapsed.Seconds())
		progress("install %d: the operator's Install step %.2f s, helm upgrade --install --wait %.2f s", i+1, byOperator[i], byCLI[i])
		if err := b.drop(ctx, []string{nsOp, nsCLI}); err != nil {
			return err
		}
	}
	opMedian, cliMedian := median(byOperator), median(byCLI)
	t.add(row{
		what:     "Install: the Install step vs `helm upgrade --install --wait --wait-for-jobs` (official chart 1.0.2, same values)",
		measured: secs(opMedian) + spread(byOperator, secs), against: secs(cliMedian) + spread(byCLI, secs),
		ratio: fmt.Sprintf("%.2f×", opMedian/cliMedian), target: "≤ 1.00×", met: met(opMedian <= cliMedian),
	})
	return nil
}

// postRender is Helm's post-renderer for the CLI install: the operator's own (helm.SecretEnv),
// reading the secretEnv the operator generated.
func postRender(args []string) error {
	fs := flag.NewFlagSet("post-render", flag.ExitOnError)
	file := fs.String("secret-env", "", "the secretEnv.yaml of the generated values ConfigMap")
	if err := fs.Parse(args); err != nil {
		return err
	}
	raw, err := os.ReadFile(*file)
	if err != nil {
		return err
	}
	var env []v1alpha1.SecretEnvVar
	if err := yaml.Unmarshal(raw, &env); err != nil {
		return err
	}
	in, err := io.ReadAll(os.Stdin)
	if err != nil {
		return err
	}
	out, err := helm.SecretEnv(env).Run(bytes.NewBuffer(in))
	if err != nil {
		return err
	}
	_, err = io.Copy(os.Stdout, out)
	return err
}
