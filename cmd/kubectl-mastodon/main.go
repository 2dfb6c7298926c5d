// kubectl-mastodon is the kubectl plugin for MastodonMigrations: `kubectl mastodon status`,
// `plan`, `rollback`, `pause`, `resume`, `snapshot export` and `handoff`. The commands live in
// internal/kubectlmastodon, where the tests run them.
package main

import (
	"os"

	"github.com/mastodon-operator/mastodon-operator/internal/kubectlmastodon"
)

func main() {
	os.Exit(kubectlmastodon.Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
