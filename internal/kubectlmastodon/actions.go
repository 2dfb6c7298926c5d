package kubectlmastodon

import (
	"fmt"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
)

func (o *options) rollbackCommand() *cobra.Command {
	var level int32
	var reason string
	var confirmDataLoss bool
	cmd := &cobra.Command{
		Use:   "rollback NAME --level N --reason TEXT",
		Short: "Ask for a rollback of a migration (creates a MastodonRollback)",
		Long: `Ask for a rollback of a migration by creating a MastodonRollback: level 1 moves the
traffic back to the old stack, 2 also uninstalls the release and restores the old manifests,
3 also restores the database from the pre-migration backup (needs --confirm-data-loss).
Follow it with: kubectl mastodon status NAME --wait`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			ns, err := o.namespace()
			if err != nil {
				return err
			}
			rb := &v1alpha1.MastodonRollback{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, GenerateName: args[0] + "-level" + fmt.Sprint(level) + "-"},
				Spec: v1alpha1.MastodonRollbackSpec{MigrationRef: v1alpha1.LocalObjectReference{Name: args[0]},
					Level: level, Reason: reason, ConfirmDataLoss: confirmDataLoss},
			}
			// The API server's validation (CEL) says what is wrong, such as level 3 without
			// confirmDataLoss.
			if err := c.Create(cmd.Context(), rb); err != nil {
				return err
			}
			fmt.Fprintf(o.Out, "MastodonRollback %s/%s created: level %d of migration %s; follow it with: kubectl mastodon status %s --wait\n",
				ns, rb.Name, level, args[0], args[0])
			return nil
		},
	}
	cmd.Flags().Int32Var(&level, "level", 1, "rollback level: 1, 2 or 3")
	cmd.Flags().StringVar(&reason, "reason", "", "why, recorded with the rollback")
	cmd.Flags().BoolVar(&confirmDataLoss, "confirm-data-loss", false, "confirm level 3, which loses every write since the backup")
	_ = cmd.MarkFlagRequired("reason")
	return cmd
}

// pauseCommand is pause (paused true) or resume.
func (o *options) pauseCommand(paused bool) *cobra.Command {
	use, short, done := "resume NAME", "Let a paused migration go on with its next step", "resumed"
	if paused {
		use, short, done = "pause NAME", "Stop a migration before its next step (the step under way finishes)", "paused"
	}
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			ns, err := o.namespace()
			if err != nil {
				return err
			}
			m := &v1alpha1.MastodonMigration{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: args[0]}}
			patch := fmt.Sprintf(`{"spec":{"paused":%t}}`, paused)
			if err := c.Patch(cmd.Context(), m, client.RawPatch(types.MergePatchType, []byte(patch))); err != nil {
				return err
			}
			fmt.Fprintf(o.Out, "migration %s/%s %s\n", ns, args[0], done)
			return nil
		},
	}
}
