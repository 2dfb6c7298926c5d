package preflight

import (
	"context"
	"fmt"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
	"github.com/mastodon-operator/mastodon-operator/internal/upgrade"
)

// migrationHooks is what the chart's hooks do to the database when the version changes.
const migrationHooks = "the chart's pre-install db:prepare runs every pending migration, post-deployment ones included, before any new pod starts"

// versionJump says which change of Mastodon version the release makes (the source web
// Deployment's image tag against the rendered release's) and what Mastodon supports of it
// (upgrade.Rules). A downgrade, or a jump over minor releases while the old pods serve, is
// refused whatever spec.preflight.allowImageChange says; any other change is only made with it
// (the Image check says so), and is then listed with the advice to stop the old stack first
// (strategy Maintenance). A tag that names no version (nightly) needs
// spec.preflight.acceptVersionChange.
func versionJump(ctx context.Context, in Input) ([]v1alpha1.Finding, error) {
	w, err := webImages(ctx, in)
	if err != nil || w == nil {
		return nil, err
	}
	jump := upgrade.Between(w.old, w.new)
	if !jump.Changed() {
		return nil, nil
	}
	verdict := upgrade.Judge(jump)
	spec := in.Migration.Spec
	maintenance := spec.Strategy == v1alpha1.StrategyMaintenance
	accepted := spec.Preflight.AcceptVersionChange == jump.String()
	found := func(class v1alpha1.FindingClass, format string, args ...any) []v1alpha1.Finding {
		f := finding("Deployment/"+w.release, "%s; %s", verdict.Describe(), fmt.Sprintf(format, args...))
		f.Class = class
		return []v1alpha1.Finding{f}
	}
	accept := fmt.Sprintf("spec.preflight.acceptVersionChange: %q", jump.String())
	switch verdict.Support {
	case upgrade.Never:
		return found(v1alpha1.FindingBlocks, "set image.tag in spec.release.values to %s and upgrade after the migration", jump.From), nil
	case upgrade.Offline:
		switch {
		case !maintenance:
			return found(v1alpha1.FindingBlocks, "not while the old pods serve: upgrade the old stack through each minor release first, or use strategy Maintenance, which stops it before the install"), nil
		case !accepted:
			return found(v1alpha1.FindingChanges, "with strategy Maintenance the old stack stops, then db:prepare runs the migrations of every release skipped at once: read the upgrade notes of each, do what they ask beforehand, then set %s", accept), nil
		}
		return found(v1alpha1.FindingInformational, "accepted (spec.preflight.acceptVersionChange); strategy Maintenance stops the old stack first"), nil
	}
	if !spec.Preflight.AllowImageChange {
		return nil, nil // the Image check refuses the change
	}
	advice := "the old stack is stopped first (strategy Maintenance)"
	if !maintenance {
		advice = "the old pods go on serving on the migrated schema until the switch, and after a level 1 or 2 rollback: strategy Maintenance, which stops them first, is recommended for any version change"
	}
	if verdict.Support == upgrade.Unknown {
		if accepted {
			return found(v1alpha1.FindingInformational, "accepted (spec.preflight.acceptVersionChange); %s; %s", migrationHooks, advice), nil
		}
		return found(v1alpha1.FindingChanges, "%s; %s; check which versions the images run, then set %s", migrationHooks, advice, accept), nil
	}
	return found(v1alpha1.FindingInformational, "%s; %s", migrationHooks, advice), nil
}
