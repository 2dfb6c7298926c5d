// Command localcluster starts, reports on and stops a detached local cluster
// (see internal/localcluster) for the Makefile and for trying things by hand:
//
//	go run ./hack/localcluster up --dir bin/local-cluster [--nodes 3] [--node-labels k=v,...]
//	go run ./hack/localcluster status --dir bin/local-cluster
//	go run ./hack/localcluster down --dir bin/local-cluster
//
// The binaries come from --bin-dir or $MASTODON_OPERATOR_BIN_DIR, as printed
// by hack/tools/build.sh.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"

	"github.com/mastodon-operator/mastodon-operator/internal/localcluster"
)

const usage = `usage: localcluster up|status|down --dir DIR [flags]

  up      start a cluster in DIR that keeps running after this command exits
          (does nothing if one runs there already)
  status  report on the cluster in DIR; exit status 1 if it is not running
  down    stop the cluster in DIR, keeping DIR (remove it for a fresh cluster)
`

func main() {
	log.SetFlags(0)
	log.SetPrefix("localcluster: ")
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	command, args := os.Args[1], os.Args[2:]
	flags := flag.NewFlagSet(command, flag.ExitOnError)
	flags.Usage = func() {
		fmt.Fprint(os.Stderr, usage)
		flags.PrintDefaults()
	}
	dir := flags.String("dir", "bin/local-cluster", "the cluster's state dir")
	binDir := flags.String("bin-dir", os.Getenv(localcluster.BinDirEnv), "dir of the binaries that hack/tools/build.sh builds (default $"+localcluster.BinDirEnv+")")
	var err error
	switch command {
	case "up":
		nodes := flags.Int("nodes", 3, "number of fake nodes")
		nodeLabels := flags.String("node-labels", "", "labels of every node, as k=v,k2=v2")
		_ = flags.Parse(args)
		err = up(*dir, *binDir, *nodes, *nodeLabels)
	case "status":
		_ = flags.Parse(args)
		err = status(*dir, *binDir)
	case "down":
		_ = flags.Parse(args)
		err = localcluster.StopDir(*dir)
		if err == nil {
			fmt.Printf("local cluster in %s is stopped\n", *dir)
		}
	default:
		flags.Usage()
		os.Exit(2)
	}
	if err != nil {
		log.Fatal(err)
	}
}

func up(dir, binDir string, nodeCount int, nodeLabels string) error {
	if c, err := localcluster.Attach(dir); err == nil {
		fmt.Printf("local cluster already running in %s\n", dir)
		printUsage(c, binDir)
		return nil
	}
	labelSet, err := labels.ConvertSelectorToLabelsMap(nodeLabels)
	if err != nil {
		return fmt.Errorf("--node-labels: %w", err)
	}
	var nodes []localcluster.Node
	for i := range nodeCount {
		nodes = append(nodes, localcluster.Node{Name: fmt.Sprintf("kwok-node-%d", i), Labels: labelSet})
	}
	// Ctrl-C during start stops what has started rather than leaving it detached.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	c, err := localcluster.Start(ctx, localcluster.Options{
		BinDir: binDir,
		Dir:    dir,
		Nodes:  nodes,
		Detach: true,
		Logf:   log.Printf,
	})
	if err != nil {
		return err
	}
	printUsage(c, binDir)
	return nil
}

func printUsage(c *localcluster.Cluster, binDir string) {
	kubectl := "kubectl"
	if binDir != "" {
		kubectl = filepath.Join(binDir, "kubectl")
	}
	fmt.Printf(`API server %s; logs in %s
  export KUBECONFIG=%s
  %s get nodes
  go run ./hack/localcluster down --dir %s
`, c.Server(), filepath.Join(c.Dir(), "logs"), c.KubeconfigPath(), kubectl, c.Dir())
}

func status(dir, binDir string) error {
	c, err := localcluster.Attach(dir)
	if errors.Is(err, localcluster.ErrNotRunning) {
		fmt.Printf("local cluster in %s is not running\n", dir)
		os.Exit(1)
	}
	if err != nil {
		return err
	}
	client, err := kubernetes.NewForConfig(c.RESTConfig())
	if err != nil {
		return err
	}
	nodes, err := client.CoreV1().Nodes().List(context.Background(), metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("listing nodes: %w", err)
	}
	ready := 0
	for _, node := range nodes.Items {
		for _, cond := range node.Status.Conditions {
			if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue {
				ready++
			}
		}
	}
	fmt.Printf("local cluster in %s is running: %d/%d nodes Ready\n", dir, ready, len(nodes.Items))
	printUsage(c, binDir)
	return nil
}
