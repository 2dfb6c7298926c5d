package controllers

import (
	"context"
	"errors"
	"fmt"
	"time"

	"helm.sh/helm/v3/pkg/release"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
	"github.com/mastodon-operator/mastodon-operator/internal/helm"
	"github.com/mastodon-operator/mastodon-operator/internal/upgrade"
)

// releaseStatus returns status.release, creating it with the release's name.
func releaseStatus(m *v1alpha1.MastodonMigration) *v1alpha1.ReleaseStatus {
	if m.Status.Release == nil {
		m.Status.Release = &v1alpha1.ReleaseStatus{Name: m.Spec.Release.Name}
	}
	return m.Status.Release
}

func releaseTimeout(m *v1alpha1.MastodonMigration) time.Duration {
	if t := m.Spec.Release.Timeout; t != nil {
		return t.Duration
	}
	return 10 * time.Minute
}

// install installs the release beside the old stack through the Helm SDK, waiting for its
// resources and hook Jobs. helm.Install returns a deployed release of the same chart unchanged
// and recovers one left pending by an interrupted operator, so running it twice installs once.
// InPlace installs every Deployment at 0 replicas (stoppedValues): its roll steps start them.
// The other strategies install the Sidekiq workers that consume the scheduler queue at 0
// replicas: HandOverScheduler starts them once the old consumers have stopped.
//
// Helm runs in the background (helmActions), as the install may wait for minutes: this step
// starts it, says Running while it waits, and records its result on the reconcile its end
// triggers.
func (r *MastodonMigrationReconciler) install(ctx context.Context, m *v1alpha1.MastodonMigration) (outcome, error) {
	where := "beside the old stack, its Sidekiq scheduler consumers at 0 replicas"
	if m.Spec.Strategy == v1alpha1.StrategyInPlace {
		where = "with every Deployment at 0 replicas, beside the old stack"
	}
	a := r.Helm.get(m, actionInstall)
	if a == nil {
		var (
			out outcome
			err error
		)
		if a, out, err = r.startInstall(ctx, m); a == nil {
			return out, err
		}
	}
	rel, ended, err := r.Helm.result(m, a)
	if !ended {
		return outcome{state: v1alpha1.StepRunning, message: fmt.Sprintf("Helm is installing release %s %s, waiting up to %s for its pods and hooks",
			m.Spec.Release.Name, where, releaseTimeout(m))}, nil
	}
	if rel != nil {
		st := releaseStatus(m)
		st.Revision, st.ChartVersion, st.Status = int32(rel.Version), rel.Chart.Metadata.Version, rel.Info.Status.String()
		// A failed install may have migrated the database before it failed.
		if err := r.recordSchema(ctx, m, rel); err != nil {
			return outcome{}, err
		}
	}
	if errors.Is(err, context.Canceled) {
		return outcome{}, err // the operator stopped under it: the step installs again, recovering the release
	}
	if err != nil {
		return outcome{state: v1alpha1.StepFailed, message: fmt.Sprintf("installing release %s: %v", m.Spec.Release.Name, err)}, nil
	}
	if rel.Info.Status != release.StatusDeployed {
		return outcome{state: v1alpha1.StepFailed, message: fmt.Sprintf("release %s is %s", rel.Name, rel.Info.Status)}, nil
	}
	return outcome{state: v1alpha1.StepSucceeded, message: fmt.Sprintf("release %s revision %d of chart %s %s deployed %s",
		rel.Name, rel.Version, rel.Chart.Metadata.Name, rel.Chart.Metadata.Version, where)}, nil
}

// recordSchema records in status.schema, once, that the release's migration hooks ran at
// another Mastodon version than the old stack's: from then on the old code runs on the new
// schema, and only a level 3 rollback takes the database back.
func (r *MastodonMigrationReconciler) recordSchema(ctx context.Context, m *v1alpha1.MastodonMigration, rel *release.Release) error {
	image, migrated := helm.MigratedWith(rel)
	if m.Status.Schema != nil || !migrated {
		return nil
	}
	src, err := r.sourceStack(ctx, m)
	if err != nil {
		return err
	}
	if src.web == nil || len(src.web.Spec.Template.Spec.Containers) == 0 {
		return nil
	}
	jump := upgrade.Between(src.web.Spec.Template.Spec.Containers[0].Image, image)
	if !jump.Changed() {
		return nil
	}
	m.Status.Schema = &v1alpha1.SchemaStatus{From: jump.From, Version: jump.To, MigratedAt: metav1.Now()}
	r.Recorder.Eventf(m, nil, corev1.EventTypeWarning, "SchemaMigrated", "Install", "%s", eventNote(fmt.Sprintf(
		"release %s's hooks migrated the database from Mastodon %s to %s: the old pods now run on the new schema; only a level 3 rollback takes it back",
		m.Spec.Release.Name, jump.From, jump.To)))
	return nil
}

// startInstall prepares the install (chart, values, options) and starts it in the background.
// When it starts nothing it returns the step's outcome or error.
func (r *MastodonMigrationReconciler) startInstall(ctx context.Context, m *v1alpha1.MastodonMigration) (*helmAction, outcome, error) {
	ref := m.Spec.Release.Chart
	chrt, err := r.Charts.LoadChart(ctx, helm.ChartRef{Repository: ref.Repository, Name: ref.Name, Version: ref.Version})
	if err != nil {
		return nil, outcome{}, err
	}
	vals, err := r.releaseValues(ctx, m)
	if err != nil {
		return nil, outcome{state: v1alpha1.StepFailed, message: err.Error()}, nil
	}
	if m.Spec.Strategy == v1alpha1.StrategyInPlace {
		vals = stoppedValues(vals, chrt)
	} else {
		// The release's scheduler consumers start only once the old ones have stopped
		// (HandOverScheduler).
		consumers, err := schedulerWorkers(chrt, vals, m)
		if err != nil {
			return nil, outcome{state: v1alpha1.StepFailed, message: err.Error()}, nil
		}
		vals = stopWorkers(vals, chrt, func(worker string) bool { return consumers[worker] })
	}
	if m.Status.Scheduler == nil {
		src, err := r.sourceStack(ctx, m)
		if err != nil {
			return nil, outcome{}, err
		}
		m.Status.Scheduler = &v1alpha1.SchedulerStatus{Holder: deploymentNames(schedulerConsumers(src.sidekiq))}
	}
	cfg, err := r.helmConfig(ctx, m.Namespace)
	if err != nil {
		return nil, outcome{}, err
	}
	opts, err := r.installOptions(ctx, m)
	if err != nil {
		return nil, outcome{}, err
	}
	secretEnv, err := r.releaseSecretEnv(ctx, m)
	if err != nil {
		return nil, outcome{state: v1alpha1.StepFailed, message: err.Error()}, nil
	}
	src, err := r.sourceStack(ctx, m)
	if err != nil {
		return nil, outcome{}, err
	}
	// Level 2 uninstalls the release: what holds data, or what the old pods read, must outlive it.
	configMaps, secrets := readConfig(src)
	opts = append(opts, helm.WithSecretEnv(secretEnv), helm.WithKeep(helm.Keep{Secrets: secrets, ConfigMaps: configMaps}))
	name, namespace, timeout := m.Spec.Release.Name, m.Namespace, releaseTimeout(m)
	a, err := r.Helm.start(ctx, m, actionInstall, func(ctx context.Context) (*release.Release, error) {
		return helm.Install(ctx, cfg, chrt, name, namespace, vals, timeout, opts...)
	})
	return a, outcome{}, err
}
