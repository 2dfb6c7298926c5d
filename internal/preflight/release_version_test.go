package preflight

import (
	"context"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
)

// TestVersionJumps runs the Version check on the fixture against the official chart, with the
// old web Deployment's image and the release's image.tag of each kind of jump.
func TestVersionJumps(t *testing.T) {
	for _, tc := range []struct {
		name           string
		oldTag, newTag string
		strategy       v1alpha1.Strategy
		allow          bool
		accept         string
		class          v1alpha1.FindingClass // empty: no Version finding
		says           []string
	}{
		{name: "the same version", oldTag: "v4.6.2", newTag: "v4.6.2", allow: true},
		{name: "the next minor release, BlueGreen", oldTag: "v4.5.3", newTag: "v4.6.2", allow: true,
			class: v1alpha1.FindingInformational,
			says: []string{"Mastodon v4.5.3 -> v4.6.2 (next minor release)", "source: https://github.com/mastodon/mastodon/releases",
				"db:prepare runs every pending migration, post-deployment ones included", "strategy Maintenance, which stops them first, is recommended"}},
		{name: "the next minor release, Maintenance", oldTag: "v4.5.3", newTag: "v4.6.2", allow: true, strategy: v1alpha1.StrategyMaintenance,
			class: v1alpha1.FindingInformational, says: []string{"(next minor release)", "the old stack is stopped first (strategy Maintenance)"}},
		{name: "the next minor release without allowImageChange is the Image check's", oldTag: "v4.5.3", newTag: "v4.6.2"},
		{name: "a patch release", oldTag: "v4.6.1", newTag: "v4.6.2", allow: true, class: v1alpha1.FindingInformational,
			says: []string{"v4.6.1 -> v4.6.2 (patch release)"}},
		{name: "skipping a minor release while the old pods serve", oldTag: "v4.4.8", newTag: "v4.6.2", allow: true,
			class: v1alpha1.FindingBlocks,
			says:  []string{"Mastodon v4.4.8 -> v4.6.2 (skips releases)", "not while the old pods serve", "or use strategy Maintenance"}},
		{name: "skipping a minor release is refused even without allowImageChange", oldTag: "v4.4.8", newTag: "v4.6.2",
			class: v1alpha1.FindingBlocks, says: []string{"(skips releases)"}},
		{name: "skipping a minor release with the old stack stopped needs a confirmation", oldTag: "v4.4.8", newTag: "v4.6.2", allow: true,
			strategy: v1alpha1.StrategyMaintenance, class: v1alpha1.FindingChanges,
			says: []string{"read the upgrade notes of each", `spec.preflight.acceptVersionChange: "v4.4.8 -> v4.6.2"`}},
		{name: "skipping a minor release with the old stack stopped, confirmed", oldTag: "v4.4.8", newTag: "v4.6.2", allow: true,
			strategy: v1alpha1.StrategyMaintenance, accept: "v4.4.8 -> v4.6.2", class: v1alpha1.FindingInformational, says: []string{"accepted"}},
		{name: "a confirmation of another jump confirms nothing", oldTag: "v4.4.8", newTag: "v4.6.2", allow: true,
			strategy: v1alpha1.StrategyMaintenance, accept: "v4.4.8 -> v4.6.1", class: v1alpha1.FindingChanges},
		{name: "a downgrade", oldTag: "v4.6.2", newTag: "v4.5.3", allow: true, strategy: v1alpha1.StrategyMaintenance,
			accept: "v4.6.2 -> v4.5.3", class: v1alpha1.FindingBlocks,
			says: []string{"Mastodon v4.6.2 -> v4.5.3 (downgrade): Mastodon's migrations only go forward", "set image.tag in spec.release.values to v4.6.2"}},
		{name: "a nightly image", oldTag: "nightly", newTag: "v4.6.2", allow: true, class: v1alpha1.FindingChanges,
			says: []string{"tag nightly names no version", `check which versions the images run, then set spec.preflight.acceptVersionChange: "nightly -> v4.6.2"`}},
		{name: "a nightly image, confirmed", oldTag: "nightly", newTag: "v4.6.2", allow: true, accept: "nightly -> v4.6.2",
			class: v1alpha1.FindingInformational, says: []string{"accepted"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			s := preparedStack(t)
			var web appsv1.Deployment
			if err := s.c.Get(ctx, client.ObjectKey{Namespace: s.ns, Name: "mastodon-web"}, &web); err != nil {
				t.Fatal(err)
			}
			web.Spec.Template.Spec.Containers[0].Image = "ghcr.io/mastodon/mastodon:" + tc.oldTag
			if err := s.c.Update(ctx, &web); err != nil {
				t.Fatal(err)
			}
			s.overrides = setValue("image.tag", tc.newTag)
			spec := &s.in.Migration.Spec
			spec.Strategy, spec.Preflight.AllowImageChange, spec.Preflight.AcceptVersionChange = tc.strategy, tc.allow, tc.accept
			var found []v1alpha1.Finding
			for _, f := range run(t, s.in) {
				if f.Check == "Version" {
					found = append(found, f)
				}
			}
			if tc.class == "" {
				if len(found) > 0 {
					t.Fatalf("want no Version finding, got %+v", found)
				}
				return
			}
			if len(found) != 1 || found[0].Class != tc.class || found[0].Object != "Deployment/mastodon-helm-web" {
				t.Fatalf("want one %s finding about Deployment/mastodon-helm-web, got %+v", tc.class, found)
			}
			t.Logf("%s: %s", found[0].Class, found[0].Message)
			for _, want := range tc.says {
				if !strings.Contains(found[0].Message, want) {
					t.Errorf("%q does not say %q", found[0].Message, want)
				}
			}
		})
	}
}
