// Package kubectlmastodon is the kubectl-mastodon plugin's commands. They reuse the
// controller's own packages (preflight, values, helm, traffic, snapshot, handoff) rather than
// repeating what the operator does.
package kubectlmastodon

import (
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
)

// The exit codes of status (and of plan, which exits ExitFailed when preflight would stop the
// migration).
const (
	ExitCompleted  = 0
	ExitError      = 1 // the command itself failed: bad flags, API server unreachable
	ExitRolledBack = 3
	ExitFailed     = 4 // phase Failed, or Stalled: waits on a person
	ExitRunning    = 5
)

// exitError ends a command with a code other than ExitError, after its output.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit code %d", e.code) }

// Main runs the plugin with args and returns its exit code.
func Main(args []string, in io.Reader, out, errOut io.Writer) int {
	cmd := NewCommand(genericiooptions.IOStreams{In: in, Out: out, ErrOut: errOut})
	cmd.SetArgs(args)
	err := cmd.Execute()
	var exit exitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exit):
		return exit.code
	}
	fmt.Fprintln(errOut, "error:", err)
	return ExitError
}

// options are what every command shares: the kubeconfig flags and the streams.
type options struct {
	flags *genericclioptions.ConfigFlags
	genericiooptions.IOStreams
}

// NewCommand is the plugin's root command.
func NewCommand(streams genericiooptions.IOStreams) *cobra.Command {
	o := &options{flags: genericclioptions.NewConfigFlags(true), IOStreams: streams}
	root := &cobra.Command{
		Use:   "kubectl-mastodon",
		Short: "Operate MastodonMigrations: status, plan, rollback, pause, resume, snapshot export, handoff",
		Long: `Operate MastodonMigrations.

Exit codes of status: 0 completed, 3 rolled back, 4 failed or stalled (waits on a person),
5 still running, 1 the command failed. plan exits 4 when preflight would stop the migration.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(streams.Out)
	root.SetErr(streams.ErrOut)
	o.flags.AddFlags(root.PersistentFlags())
	root.AddCommand(o.statusCommand(), o.planCommand(), o.rollbackCommand(), o.pauseCommand(true), o.pauseCommand(false),
		o.snapshotCommand(), o.handoffCommand())
	return root
}

func scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(s)
	_ = v1alpha1.AddToScheme(s)
	return s
}

// client connects with the kubeconfig flags.
func (o *options) client() (client.WithWatch, error) {
	cfg, err := o.flags.ToRESTConfig()
	if err != nil {
		return nil, err
	}
	return client.NewWithWatch(cfg, client.Options{Scheme: scheme()})
}

// namespace is --namespace, or the kubeconfig context's.
func (o *options) namespace() (string, error) {
	ns, _, err := o.flags.ToRawKubeConfigLoader().Namespace()
	return ns, err
}
