// Command manager runs the mastodon-operator: the MastodonMigration and MastodonRollback controllers.
package main

import (
	"flag"
	"fmt"
	"os"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/mastodon-operator/mastodon-operator/internal/manager"
)

func main() {
	flags, err := manager.Parse(flag.CommandLine, os.Args[1:])
	if err != nil {
		// flag.CommandLine exits by itself on -h and bad flags; this is what remains.
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&flags.Log)))
	setupLog := ctrl.Log.WithName("setup")

	mgr, err := flags.New(ctrl.GetConfigOrDie(), nil)
	if err != nil {
		setupLog.Error(err, "starting")
		os.Exit(1)
	}
	setupLog.Info("starting the manager")
	// SIGTERM cancels the manager's context, and with it every step under way.
	if err := mgr.Start(ctrl.SetupSignalHandler()); err != nil {
		setupLog.Error(err, "running the manager")
		os.Exit(1)
	}
}
