package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/perf/benchfmt"

	"github.com/mastodon-operator/mastodon-operator/test/harness"
)

// level1 runs the end-to-end suite's level 1 benchmarks (test/e2e/level1_bench_test.go: the
// operator's level 1 against the runbook's Level 1 commands run with kubectl, for each traffic
// method), each once per run, and adds their medians to the table. They bring up a cluster of
// their own, after the bench's is gone.
func level1(ctx context.Context, cfg config, t *table) error {
	progress("running the level 1 benchmarks of test/e2e, %d runs each", cfg.runs)
	cmd := exec.CommandContext(ctx, "go", "test", "./test/e2e", "-run", "^$", "-bench", "Level1",
		"-benchtime", "1x", "-count", strconv.Itoa(cfg.runs), "-timeout", "60m")
	cmd.Dir = harness.RepoPath()
	var out bytes.Buffer
	logFile, err := os.Create(filepath.Join(cfg.dir, "level1.log"))
	if err != nil {
		return err
	}
	defer logFile.Close()
	cmd.Stdout, cmd.Stderr = &out, logFile
	if err := cmd.Run(); err != nil {
		_, _ = logFile.Write(out.Bytes())
		return fmt.Errorf("go test -bench Level1: %v (see %s)", err, logFile.Name())
	}
	_, _ = logFile.Write(out.Bytes())
	samples := map[string][]float64{}
	r := benchfmt.NewReader(&out, "level1")
	for r.Scan() {
		res, ok := r.Result().(*benchfmt.Result)
		if !ok {
			continue
		}
		base, parts := res.Name.Parts()
		method := ""
		if len(parts) > 0 {
			method = strings.TrimPrefix(string(parts[0]), "/")
		}
		if ns, ok := res.Value("sec/op"); ok {
			key := string(base) + "/" + method
			samples[key] = append(samples[key], ns)
		}
	}
	if err := r.Err(); err != nil {
		return err
	}
	for _, method := range []string{"ServiceSelector", "Ingress"} {
		op, script := samples["Level1RollbackByTheOperator/"+method], samples["Level1RollbackByTheRunbookScript/"+method]
		if len(op) == 0 || len(script) == 0 {
			return fmt.Errorf("no result for the %s method in %s", method, logFile.Name())
		}
		t.add(row{
			what:     fmt.Sprintf("Level 1 rollback (%s): the operator vs the runbook's kubectl script", method),
			measured: millis(median(op)) + spread(op, millis), against: millis(median(script)) + spread(script, millis),
			ratio: fmt.Sprintf("%.2f×", median(op)/median(script)), target: "≤ 1.00×", met: met(median(op) <= median(script)),
		})
	}
	return nil
}
