package kubectlmastodon

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/pmezard/go-difflib/difflib"
	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
	"github.com/mastodon-operator/mastodon-operator/controllers"
	"github.com/mastodon-operator/mastodon-operator/internal/handoff"
)

// planFieldManager names the server-side dry-run applies of plan's diff.
const planFieldManager = "kubectl-mastodon-plan"

func (o *options) planCommand() *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "plan -f migration.yaml",
		Short: "Show what a migration would do, changing nothing: values, preflight findings, diff, traffic switch",
		Long: `Show what a MastodonMigration would do if it were created now, changing nothing: the
release's values, the preflight findings by class (the operator's own checklist, run read-only;
its server-side dry-runs store nothing), a diff of the live objects against what the release
renders, and what the traffic switch would change. The Cloud SQL databases check is not run
(it needs the operator's credentials). Exits 4 when preflight would stop the
migration (a Blocks or Changes finding), 0 otherwise.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			m, err := readMigration(file, o.In)
			if err != nil {
				return err
			}
			if m.Namespace == "" {
				if m.Namespace, err = o.namespace(); err != nil {
					return err
				}
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			p, err := controllers.PreviewMigration(cmd.Context(), c, nil, m)
			if err != nil {
				return err
			}
			if err := writePlan(cmd.Context(), o.Out, c, m, p); err != nil {
				return err
			}
			if p.Summary.Blocks+p.Summary.Changes > 0 {
				return exitError{ExitFailed}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "filename", "f", "", "the MastodonMigration's YAML (- for stdin)")
	_ = cmd.MarkFlagRequired("filename")
	return cmd
}

func readMigration(file string, stdin io.Reader) (*v1alpha1.MastodonMigration, error) {
	var raw []byte
	var err error
	if file == "-" {
		raw, err = io.ReadAll(stdin)
	} else {
		raw, err = os.ReadFile(file)
	}
	if err != nil {
		return nil, err
	}
	m := &v1alpha1.MastodonMigration{}
	if err := yaml.UnmarshalStrict(raw, m); err != nil {
		return nil, fmt.Errorf("%s is not a MastodonMigration: %w", file, err)
	}
	if m.Kind != "MastodonMigration" {
		return nil, fmt.Errorf("%s holds a %q, not a MastodonMigration", file, m.Kind)
	}
	return m, nil
}

// writePlan writes the preview: the summary first, then the findings by class, the values, the
// diff and the traffic switch.
func writePlan(ctx context.Context, w io.Writer, c client.Client, m *v1alpha1.MastodonMigration, p *controllers.Preview) error {
	s := p.Summary
	fmt.Fprintf(w, "Plan for migration %s/%s (%s to release %s): %d block, %d change, %d informational",
		m.Namespace, m.Name, m.Spec.Strategy, m.Spec.Release.Name, s.Blocks, s.Changes, s.Informational)
	if p.Manifests != nil {
		fmt.Fprintf(w, "; %d objects rendered; %d traffic change(s)", len(p.Manifests.Resources), len(p.TrafficChanges))
	}
	fmt.Fprintln(w, ". Nothing was changed.")
	for _, class := range []v1alpha1.FindingClass{v1alpha1.FindingBlocks, v1alpha1.FindingChanges, v1alpha1.FindingInformational} {
		var lines []string
		for _, f := range p.Findings {
			if f.Class == class || (class == v1alpha1.FindingBlocks && f.Class == "") {
				lines = append(lines, "  - "+findingLine(f))
			}
		}
		if len(lines) > 0 {
			fmt.Fprintf(w, "\n## Preflight: %s (%d)\n%s\n", class, len(lines), strings.Join(lines, "\n"))
		}
	}
	if p.RenderError != "" {
		fmt.Fprintf(w, "\n## Release\nnot rendered: %s\n", p.RenderError)
		return nil
	}
	values, err := yaml.Marshal(p.Values)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "\n## Values of release %s\n%s", m.Spec.Release.Name, values)
	if len(p.SecretEnv) > 0 {
		fmt.Fprintln(w, "secretEnv (added to the Mastodon containers from Secret keys):")
		for _, v := range p.SecretEnv {
			fmt.Fprintf(w, "  %s: Secret %s key %s\n", v.Name, v.SecretName, v.Key)
		}
	}
	fmt.Fprintf(w, "\n## Diff of the live objects against the release\n")
	if m.Spec.Strategy == v1alpha1.StrategyInPlace {
		fmt.Fprintln(w, "(InPlace adopts an existing object as it is; the chart's rendering shown here applies at the release's next upgrade)")
	}
	for _, obj := range p.Manifests.Resources {
		d, err := objectDiff(ctx, c, m.Namespace, obj)
		if err != nil {
			return err
		}
		fmt.Fprint(w, d)
	}
	fmt.Fprintf(w, "\n## Traffic switch (%s)\n", orDash(string(m.Spec.Traffic.Method)))
	for _, ch := range p.TrafficChanges {
		fmt.Fprintf(w, "  %s\n", ch)
	}
	for _, pr := range p.TrafficProblems {
		fmt.Fprintf(w, "  cannot switch: %s\n", pr)
	}
	return nil
}

func findingLine(f v1alpha1.Finding) string {
	line := f.Check
	if f.Object != "" {
		line += " " + f.Object
	}
	return line + ": " + oneLine(f.Message)
}

// objectDiff is one rendered object against the live one: "+ new" when there is none, else a
// unified diff of the live object and what a server-side apply of the rendering would make of
// it (dry run: nothing stored). Secret values are never shown, only which keys there are.
func objectDiff(ctx context.Context, c client.Client, namespace string, rendered *unstructured.Unstructured) (string, error) {
	key := rendered.GetKind() + "/" + rendered.GetName()
	live := &unstructured.Unstructured{}
	live.SetGroupVersionKind(rendered.GroupVersionKind())
	err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: rendered.GetName()}, live)
	switch {
	case apierrors.IsNotFound(err):
		return fmt.Sprintf("+ %s (new)\n", key), nil
	case meta.IsNoMatchError(err):
		return fmt.Sprintf("+ %s (new; the API server does not serve this kind)\n", key), nil
	case err != nil:
		return "", err
	}
	after := rendered.DeepCopy()
	after.SetNamespace(namespace)
	if err := c.Apply(ctx, client.ApplyConfigurationFromUnstructured(after), client.DryRunAll, client.ForceOwnership,
		client.FieldOwner(planFieldManager)); err != nil {
		return fmt.Sprintf("~ %s exists; the server refuses the release's version: %v\n", key, err), nil
	}
	a, err := yaml.Marshal(hideSecret(handoff.Clean(live)).Object)
	if err != nil {
		return "", err
	}
	b, err := yaml.Marshal(hideSecret(handoff.Clean(after)).Object)
	if err != nil {
		return "", err
	}
	if string(a) == string(b) {
		return fmt.Sprintf("= %s (exists, unchanged)\n", key), nil
	}
	diff, err := difflib.GetUnifiedDiffString(difflib.UnifiedDiff{A: difflib.SplitLines(string(a)), B: difflib.SplitLines(string(b)),
		FromFile: "live " + key, ToFile: "release " + key, Context: 2})
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("~ %s (exists, changed)\n%s", key, diff), nil
}

// hideSecret replaces a Secret's values by a mark, so that a diff shows keys only.
func hideSecret(u *unstructured.Unstructured) *unstructured.Unstructured {
	if u.GetKind() != "Secret" {
		return u
	}
	for _, field := range []string{"data", "stringData"} {
		if data, ok := u.Object[field].(map[string]any); ok {
			for k := range data {
				data[k] = "(hidden)"
			}
		}
	}
	return u
}
