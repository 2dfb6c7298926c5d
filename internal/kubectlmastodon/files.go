package kubectlmastodon

import (
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
	"github.com/mastodon-operator/mastodon-operator/internal/handoff"
	"github.com/mastodon-operator/mastodon-operator/internal/snapshot"
)

func (o *options) snapshotCommand() *cobra.Command {
	var includeSecrets bool
	var output string
	export := &cobra.Command{
		Use:   "export NAME",
		Short: "Write the old stack's objects from a migration's snapshot as YAML that kubectl apply takes",
		Long: `Write the objects a migration stored before it changed anything, as they were, clean enough
for kubectl apply (no resourceVersion, uid, managedFields or status): the way back when the
operator itself is gone. Secrets are left out unless --include-secrets (their values would be
printed).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			m, err := o.migration(cmd, c, args[0])
			if err != nil {
				return err
			}
			if m.Status.Snapshot == nil {
				return fmt.Errorf("migration %s has taken no snapshot yet", m.Name)
			}
			objs, err := snapshot.Load(cmd.Context(), c, m.Namespace, m.Status.Snapshot.Name)
			if err != nil {
				return err
			}
			w, closeOut, err := o.output(output)
			if err != nil {
				return err
			}
			if err := writeExport(w, m, objs, includeSecrets); err != nil {
				return err
			}
			return closeOut()
		},
	}
	export.Flags().BoolVar(&includeSecrets, "include-secrets", false, "include the snapshot's Secrets, values and all")
	export.Flags().StringVarP(&output, "output-file", "o", "", "write to this file instead of stdout")
	cmd := &cobra.Command{Use: "snapshot", Short: "Read a migration's snapshot of the old stack"}
	cmd.AddCommand(export)
	return cmd
}

// writeExport writes the objects as a YAML stream, a comment line first.
func writeExport(w io.Writer, m *v1alpha1.MastodonMigration, objs []*unstructured.Unstructured, includeSecrets bool) error {
	var skipped []string
	fmt.Fprintf(w, "# The old stack of migration %s/%s as snapshot %s stored it", m.Namespace, m.Name, m.Status.Snapshot.Name)
	if m.Status.Snapshot.TakenAt != nil {
		fmt.Fprintf(w, " at %s", m.Status.Snapshot.TakenAt.UTC().Format("2006-01-02T15:04:05Z"))
	}
	fmt.Fprintln(w, ": kubectl apply --server-side --force-conflicts -f this file")
	for _, u := range objs {
		if u.GetKind() == "Secret" && u.GroupVersionKind().Group == "" && !includeSecrets {
			skipped = append(skipped, u.GetName())
			continue
		}
		clean := handoff.Clean(u)
		clean.SetNamespace(m.Namespace)
		doc, err := yaml.Marshal(clean.Object)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "---\n%s", doc)
	}
	if len(skipped) > 0 {
		fmt.Fprintf(w, "# Left out (--include-secrets to export them): Secret %v\n", skipped)
	}
	return nil
}

func (o *options) handoffCommand() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "handoff NAME [-o DIR]",
		Short: "Write a completed migration's GitOps hand-off as files: values, Flux, Argo CD, what to delete and keep",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			m, err := o.migration(cmd, c, args[0])
			if err != nil {
				return err
			}
			cm := &corev1.ConfigMap{}
			name := m.Name + "-handoff"
			if err := c.Get(cmd.Context(), client.ObjectKey{Namespace: m.Namespace, Name: name}, cm); err != nil {
				return fmt.Errorf("reading ConfigMap %s (the Finish step writes it once the migration completes): %w", name, err)
			}
			if dir == "" {
				dir = name
			}
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
			for _, key := range slices.Sorted(maps.Keys(cm.Data)) {
				if key != filepath.Base(key) {
					return fmt.Errorf("ConfigMap %s has a key that is not a file name: %q", name, key)
				}
				if err := os.WriteFile(filepath.Join(dir, key), []byte(cm.Data[key]), 0o644); err != nil {
					return err
				}
				fmt.Fprintf(o.Out, "wrote %s\n", filepath.Join(dir, key))
			}
			fmt.Fprintf(o.Out, "\n%s", cm.Data[handoff.KeyReadme])
			return nil
		},
	}
	cmd.Flags().StringVarP(&dir, "output-dir", "o", "", "the directory to write to (default NAME-handoff)")
	return cmd
}

// migration reads the named migration in the namespace of the flags.
func (o *options) migration(cmd *cobra.Command, c client.Client, name string) (*v1alpha1.MastodonMigration, error) {
	ns, err := o.namespace()
	if err != nil {
		return nil, err
	}
	m := &v1alpha1.MastodonMigration{}
	return m, c.Get(cmd.Context(), client.ObjectKey{Namespace: ns, Name: name}, m)
}

// output is stdout, or the file named.
func (o *options) output(file string) (io.Writer, func() error, error) {
	if file == "" {
		return o.Out, func() error { return nil }, nil
	}
	f, err := os.Create(file)
	if err != nil {
		return nil, nil, err
	}
	return f, f.Close, nil
}
