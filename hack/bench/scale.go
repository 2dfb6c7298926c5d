package main

import (
	"context"
	"fmt"
	"reflect"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
)

// The scale runs' migrations are observed for scaleWindow, analysed every scaleInterval.
const (
	scaleWindow   = 20 * time.Second
	scaleInterval = 5 * time.Second
	// idleFor is how long the API writes are counted once every migration is done.
	idleFor = time.Minute
)

// scaleResult is one run of n migrations at once.
type scaleResult struct {
	elapsed time.Duration
	peakRSS float64
	// requests and writes per migration, from the creation of the migrations until all are done.
	requests, writes float64
	// idleWrites is how many writes the operator sent in idleFor once all were done (-1: not measured).
	idleWrites float64
	// rollback is the latency of a level 1 requested while the others ran; busy is how many of
	// the others were not Completed yet at the request.
	rollback time.Duration
	// trafficBack is when, in that level 1, the web Service selected the old pods again.
	trafficBack time.Duration
	busy        int
	// cpu is the CPU time per migration from the creation of the migrations until all are done.
	cpu cpuUse
}

// scale runs n migrations at once in as many namespaces, for each size, runs times, each run with
// a fresh operator process so that its peak memory is the run's. Beside the n, one more migration
// with a window of an hour is created with them: once it is Observing, while the n run, on-call
// asks it for a level 1 (spec.rollbackLevel), timed from the patch until a watch sees it
// RolledBack.
func (b *bench) scale(ctx context.Context, t *table) error {
	results := map[int][]scaleResult{}
	for _, n := range b.cfg.sizes {
		for i := range b.cfg.runs {
			r, err := b.scaleOnce(ctx, n, i, i == 0)
			if err != nil {
				return fmt.Errorf("%d migrations, run %d: %w", n, i+1, err)
			}
			progress("%d migrations, run %d: all Completed in %.1f s, peak RSS %.0f MiB, %.0f requests (%.0f writes) and %.2f s CPU (control plane %.2f s) per migration, level 1 under load: traffic back %d ms, RolledBack %d ms (%d others running), idle writes %.0f",
				n, i+1, r.elapsed.Seconds(), r.peakRSS, r.requests, r.writes, r.cpu.operator, r.cpu.cluster, r.trafficBack.Milliseconds(), r.rollback.Milliseconds(), r.busy, r.idleWrites)
			results[n] = append(results[n], r)
		}
	}
	one := 0.0
	if rs := results[1]; len(rs) > 0 {
		one = median(pick(rs, func(r scaleResult) float64 { return r.elapsed.Seconds() }))
	}
	for _, n := range b.cfg.sizes {
		rs := results[n]
		elapsed := pick(rs, func(r scaleResult) float64 { return r.elapsed.Seconds() })
		e := median(elapsed)
		r := row{what: fmt.Sprintf("Scale, %d at once: time until all Completed (window %s)", n, scaleWindow), measured: secs(e) + spread(elapsed, secs)}
		if one > 0 && n > 1 {
			r.against, r.ratio, r.target, r.met = "1 alone: "+secs(one), fmt.Sprintf("%.2f×", e/one), "≤ 1.20×", met(e <= 1.2*one)
		}
		t.add(r)
		rss := pick(rs, func(r scaleResult) float64 { return r.peakRSS })
		mib := func(v float64) string { return fmt.Sprintf("%.0f MiB", v) }
		t.add(row{what: fmt.Sprintf("Scale, %d at once: the manager's peak RSS", n), measured: mib(median(rss)) + spread(rss, mib),
			target: "≤ 200 MiB", met: met(median(rss) <= 200)})
		reqs := pick(rs, func(r scaleResult) float64 { return r.requests })
		writes := pick(rs, func(r scaleResult) float64 { return r.writes })
		count := func(v float64) string { return fmt.Sprintf("%.0f", v) }
		t.add(row{what: fmt.Sprintf("Scale, %d at once: API requests (writes) per migration", n),
			measured: fmt.Sprintf("%.0f (%.0f)", median(reqs), median(writes)) + spread(reqs, count)})
		opCPU := pick(rs, func(r scaleResult) float64 { return r.cpu.operator })
		clusterCPU := pick(rs, func(r scaleResult) float64 { return r.cpu.cluster })
		floor := (median(opCPU) + median(clusterCPU)) * float64(n+1) / float64(numCPU())
		t.add(row{what: fmt.Sprintf("Scale, %d at once: CPU time per migration, of the operator and of the control plane", n),
			measured: fmt.Sprintf("%.2f s, %.2f s", median(opCPU), median(clusterCPU)), against: fmt.Sprintf("all of it on %d CPUs: ≥ %s", numCPU(), secs(floor))})
		if idle := rs[0].idleWrites; idle >= 0 {
			t.add(row{what: fmt.Sprintf("Scale, %d at once: API writes in the %s after all are done (first run)", n, idleFor),
				measured: count(idle), target: "0", met: met(idle == 0)})
		}
		busy := pick(rs, func(r scaleResult) float64 { return float64(r.busy) })
		back := pick(rs, func(r scaleResult) float64 { return r.trafficBack.Seconds() })
		t.add(row{what: fmt.Sprintf("Scale, %d at once: a level 1 requested while they run (others not yet Completed: median %.0f): traffic back on the old pods", n, median(busy)),
			measured: millis(median(back)) + spread(back, millis), target: "≤ 1 s", met: met(median(back) <= 1)})
		lat := pick(rs, func(r scaleResult) float64 { return r.rollback.Seconds() })
		t.add(row{what: fmt.Sprintf("Scale, %d at once: the same level 1 until RolledBack (the scheduler handed back, the release at 0)", n),
			measured: millis(median(lat)) + spread(lat, millis), target: "≤ 1 s", met: met(median(lat) <= 1)})
	}
	return nil
}

func pick(rs []scaleResult, f func(scaleResult) float64) []float64 {
	out := make([]float64, len(rs))
	for i, r := range rs {
		out[i] = f(r)
	}
	return out
}

func (b *bench) scaleOnce(ctx context.Context, n, run int, measureIdle bool) (scaleResult, error) {
	res := scaleResult{idleWrites: -1}
	var namespaces []string
	for i := range n {
		namespaces = append(namespaces, fmt.Sprintf("bench-scale-%d-%d-%d", n, run, i))
	}
	probeNS := fmt.Sprintf("bench-scale-%d-%d-rollback", n, run)
	all := append([]string{probeNS}, namespaces...)
	progress("%d migrations, run %d: deploying the fixture in %d namespaces", n, run+1, len(all))
	if err := b.deploy(ctx, all); err != nil {
		return res, err
	}
	defer func() {
		if err := b.drop(context.WithoutCancel(ctx), all); err != nil {
			progress("deleting the namespaces: %v", err)
		}
	}()
	op, err := startOperator(ctx, b.h, 0, b.log)
	if err != nil {
		return res, err
	}
	defer op.stop()
	before, err := op.requests()
	if err != nil {
		return res, err
	}
	cpuBefore, err := b.cpu(op)
	if err != nil {
		return res, err
	}

	migrations := make([]*v1alpha1.MastodonMigration, n)
	for i, ns := range namespaces {
		if migrations[i], err = b.sample(ns, scaleWindow, scaleInterval); err != nil {
			return res, err
		}
	}
	probe, err := b.sample(probeNS, time.Hour, scaleInterval)
	if err != nil {
		return res, err
	}
	start := time.Now()
	for _, m := range append([]*v1alpha1.MastodonMigration{probe}, migrations...) {
		if err := b.h.Client.Create(ctx, m); err != nil {
			return res, err
		}
	}
	rollback := make(chan error, 1)
	web := &corev1.Service{}
	if err := b.h.Client.Get(ctx, client.ObjectKey{Namespace: probeNS, Name: "mastodon-web"}, web); err != nil {
		return res, err
	}
	go func() { rollback <- b.rollbackUnderLoad(ctx, probe, web.Spec.Selector, &res) }()

	// Once a second: listing a hundred migrations, status and all, is work for the API server
	// the operator would otherwise have.
	done := map[string]bool{}
	err = wait.PollUntilContextTimeout(ctx, time.Second, 20*time.Minute, true, func(ctx context.Context) (bool, error) {
		var list v1alpha1.MastodonMigrationList
		if err := b.h.Client.List(ctx, &list); err != nil {
			return false, err
		}
		for i := range list.Items {
			m := &list.Items[i]
			if m.Namespace == probeNS {
				continue
			}
			switch m.Status.Phase {
			case v1alpha1.PhaseCompleted:
				done[m.Namespace] = true
			case v1alpha1.PhaseRolledBack, v1alpha1.PhaseFailed:
				return false, fmt.Errorf("migration %s/%s is %s: %s", m.Namespace, m.Name, m.Status.Phase, lastMessage(m))
			}
		}
		return len(done) == n, nil
	})
	if err != nil {
		return res, fmt.Errorf("%d of %d Completed: %w", len(done), n, err)
	}
	res.elapsed = time.Since(start)
	if err := <-rollback; err != nil {
		return res, err
	}
	after, err := op.requests()
	if err != nil {
		return res, err
	}
	used := after.minus(before)
	res.requests, res.writes = used.all/float64(n+1), used.writes/float64(n+1)
	cpuAfter, err := b.cpu(op)
	if err != nil {
		return res, err
	}
	res.cpu = cpuAfter.minus(cpuBefore)
	res.cpu.operator /= float64(n + 1)
	res.cpu.cluster /= float64(n + 1)
	if res.peakRSS, err = op.peakRSS(); err != nil {
		return res, err
	}
	if measureIdle {
		// The rolled-back migration watches the restored stack for its rollback.watch: idle
		// starts once that is over too.
		if err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
			got := &v1alpha1.MastodonMigration{}
			if err := b.h.Client.Get(ctx, client.ObjectKeyFromObject(probe), got); err != nil {
				return false, err
			}
			rb := got.Status.Rollback
			return rb != nil && rb.Result != "" && rb.Result != "Watching", nil
		}); err != nil {
			return res, fmt.Errorf("the rolled-back migration's watch did not end: %w", err)
		}
		progress("%d migrations, run %d: counting the operator's API writes for %s, all done", n, run+1, idleFor)
		c0, err := op.requests()
		if err != nil {
			return res, err
		}
		time.Sleep(idleFor)
		c1, err := op.requests()
		if err != nil {
			return res, err
		}
		res.idleWrites = c1.minus(c0).writes
	}
	return res, nil
}

// rollbackUnderLoad waits until the probe migration is Observing, raises its
// spec.rollbackLevel to 1 as on-call would, and times it: until its web Service selects the old
// pods again (oldSelector, the fixture's), and until a watch sees it RolledBack.
func (b *bench) rollbackUnderLoad(ctx context.Context, probe *v1alpha1.MastodonMigration, oldSelector map[string]string, res *scaleResult) error {
	latest, err := b.waitPhase(ctx, probe, v1alpha1.PhaseObserving, 20*time.Minute)
	if err != nil {
		return err
	}
	var list v1alpha1.MastodonMigrationList
	if err := b.h.Client.List(ctx, &list); err != nil {
		return err
	}
	for _, m := range list.Items {
		if m.Namespace != probe.Namespace && m.Status.Phase != v1alpha1.PhaseCompleted {
			res.busy++
		}
	}
	wc, err := client.NewWithWatch(b.h.Cluster.RESTConfig(), client.Options{Scheme: b.h.Scheme})
	if err != nil {
		return err
	}
	// The watch starts at the version read, before the patch, so that it misses nothing.
	w, err := wc.Watch(ctx, &v1alpha1.MastodonMigrationList{}, client.InNamespace(probe.Namespace),
		&client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: latest.ResourceVersion}})
	if err != nil {
		return err
	}
	defer w.Stop()
	raised := latest.DeepCopy()
	raised.Spec.RollbackLevel = 1
	start := time.Now()
	if err := b.h.Client.Patch(ctx, raised, client.MergeFrom(latest)); err != nil {
		return err
	}
	back := make(chan error, 1)
	go func() {
		back <- wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, 5*time.Minute, true, func(ctx context.Context) (bool, error) {
			web := &corev1.Service{}
			if err := b.h.Client.Get(ctx, client.ObjectKey{Namespace: probe.Namespace, Name: "mastodon-web"}, web); err != nil {
				return false, err
			}
			if reflect.DeepEqual(web.Spec.Selector, oldSelector) {
				res.trafficBack = time.Since(start)
				return true, nil
			}
			return false, nil
		})
	}()
	timeout := time.After(5 * time.Minute)
	for {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				return fmt.Errorf("the watch of %s ended before RolledBack", probe.Namespace)
			}
			if ev.Type != watch.Modified {
				continue
			}
			m := ev.Object.(*v1alpha1.MastodonMigration)
			if m.Status.Phase == v1alpha1.PhaseRolledBack {
				res.rollback = time.Since(start)
				if err := <-back; err != nil {
					return fmt.Errorf("the traffic of %s did not come back: %w", probe.Namespace, err)
				}
				return nil
			}
			if m.Status.Phase == v1alpha1.PhaseFailed {
				return fmt.Errorf("the level 1 of %s failed: %s", probe.Namespace, lastMessage(m))
			}
		case <-timeout:
			return fmt.Errorf("the level 1 of %s did not end within 5m", probe.Namespace)
		}
	}
}
