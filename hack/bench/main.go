// Command bench measures the operator at hosting scale on the local cluster and prints one
// table, each comparison side by side from the same run, as medians of -runs runs: the Install
// step against `helm upgrade --install --wait` (the Helm CLI built from the operator's own Helm
// module), the time from an error rate crossing critical to the traffic back on the old pods
// (HTTP probe and Prometheus), 1, 10 and 100 migrations at once (time, the manager's peak
// memory, API requests, idle writes, a level 1 rollback under load), and the level 1 rollback
// against the runbook's kubectl script. `make bench` runs it; docs/benchmarks.md has a run.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mastodon-operator/mastodon-operator/test/harness"
)

func main() {
	if len(os.Args) > 1 {
		// The bench runs itself as the operator and as Helm's post-renderer.
		switch os.Args[1] {
		case "operator":
			exitOn(runOperator(os.Args[2:]))
			return
		case "post-render":
			exitOn(postRender(os.Args[2:]))
			return
		}
	}
	var cfg config
	flag.IntVar(&cfg.runs, "runs", 5, "runs of each measurement; the table gives their medians")
	sizes := flag.String("sizes", "1,10,100", "how many migrations run at once in the scale rows")
	only := flag.String("only", "install,detection,scale,level1", "which comparisons to run")
	flag.StringVar(&cfg.dir, "dir", "bin/bench", "directory for the cluster's state, the logs and the table")
	flag.Parse()
	for _, s := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			exitOn(fmt.Errorf("-sizes %q: %q is not a count", *sizes, s))
		}
		cfg.sizes = append(cfg.sizes, n)
	}
	cfg.only = map[string]bool{}
	for _, s := range strings.Split(*only, ",") {
		cfg.only[strings.TrimSpace(s)] = true
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	exitOn(run(ctx, cfg))
}

func exitOn(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

type config struct {
	runs  int
	sizes []int
	only  map[string]bool
	dir   string
}

var started = time.Now()

// progress goes to standard error, the table to standard output.
func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[%6.1fs] %s\n", time.Since(started).Seconds(), fmt.Sprintf(format, args...))
}

func run(ctx context.Context, cfg config) error {
	if err := os.RemoveAll(cfg.dir); err != nil {
		return err
	}
	if err := os.MkdirAll(cfg.dir, 0o755); err != nil {
		return err
	}
	dir, err := filepath.Abs(cfg.dir)
	if err != nil {
		return err
	}
	cfg.dir = dir
	var t table
	t.header = fmt.Sprintf("mastodon-operator benchmarks, %s, %d CPUs, medians of %d runs", time.Now().UTC().Format("2006-01-02 15:04 MST"), numCPU(), cfg.runs)
	if cfg.only["install"] || cfg.only["detection"] || cfg.only["scale"] {
		progress("starting the local cluster in %s", filepath.Join(cfg.dir, "cluster"))
		h, err := harness.Start(ctx, harness.Options{Dir: filepath.Join(cfg.dir, "cluster"), Logf: func(f string, a ...any) { progress(f, a...) }})
		if err != nil {
			return err
		}
		// The bench's own client deploys hundreds of objects and watches the migrations: client-go's
		// default rate limit (5 QPS) would pace the bench, not the operator.
		rest := h.Cluster.RESTConfig()
		rest.QPS, rest.Burst = 500, 1000
		if h.Client, err = client.New(rest, client.Options{Scheme: h.Scheme}); err != nil {
			h.Stop()
			return err
		}
		b := &bench{h: h, cfg: cfg, log: filepath.Join(cfg.dir, "operator.log")}
		err = b.all(ctx, &t)
		h.Stop()
		if err != nil {
			return err
		}
	}
	if cfg.only["level1"] {
		if err := level1(ctx, cfg, &t); err != nil {
			return err
		}
	}
	out := t.String()
	fmt.Print(out)
	return os.WriteFile(filepath.Join(cfg.dir, "table.md"), []byte(out), 0o644)
}

// bench is a running cluster with what the comparisons share.
type bench struct {
	h   *harness.Harness
	cfg config
	log string
}

func (b *bench) all(ctx context.Context, t *table) error {
	if b.cfg.only["install"] {
		if err := b.install(ctx, t); err != nil {
			return fmt.Errorf("install: %w", err)
		}
	}
	if b.cfg.only["detection"] {
		if err := b.detection(ctx, t); err != nil {
			return fmt.Errorf("detection: %w", err)
		}
	}
	if b.cfg.only["scale"] {
		if err := b.scale(ctx, t); err != nil {
			return fmt.Errorf("scale: %w", err)
		}
	}
	return nil
}
