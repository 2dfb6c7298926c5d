// Package upgrade judges a change of Mastodon version between the old stack and the release:
// the chart's pre-install hook (rake db:prepare) runs every pending migration, post-deployment
// ones included, while the old pods still serve, so which jumps are safe is Mastodon's rule,
// kept here in one table with its sources.
package upgrade

import (
	"fmt"

	"github.com/Masterminds/semver/v3"
	"github.com/distribution/reference"
)

// Jump is the change from the old stack's image to the release's.
type Jump struct {
	// From and To are the images' tags (or digests), as they name the version: v4.5.3, nightly.
	From, To string
	// FromVersion and ToVersion are the versions the tags name; nil when a tag names none
	// (nightly, latest, a floating v4.6, a digest alone).
	FromVersion, ToVersion *semver.Version
}

// Between is the jump from the image oldImage to newImage.
func Between(oldImage, newImage string) Jump {
	j := Jump{}
	j.From, j.FromVersion = tagOf(oldImage)
	j.To, j.ToVersion = tagOf(newImage)
	return j
}

// tagOf is an image's tag (or digest, or latest) and the whole version it names, if any.
func tagOf(image string) (string, *semver.Version) {
	ref, err := reference.ParseNormalizedNamed(image)
	if err != nil {
		return image, nil
	}
	tag := "latest"
	if t, ok := ref.(reference.Tagged); ok {
		tag = t.Tag()
	} else if d, ok := ref.(reference.Digested); ok {
		tag = d.Digest().String()
	}
	// Only a whole version: a floating tag such as v4.6 runs whichever 4.6.x was pushed last.
	v, err := semver.StrictNewVersion(trimV(tag))
	if err != nil {
		return tag, nil
	}
	return tag, v
}

func trimV(tag string) string {
	if len(tag) > 1 && tag[0] == 'v' {
		return tag[1:]
	}
	return tag
}

// Changed says whether the release runs another Mastodon version: by version when both tags
// name one (v4.6.2 and 4.6.2 are the same), else by tag.
func (j Jump) Changed() bool {
	if j.FromVersion != nil && j.ToVersion != nil {
		return !j.FromVersion.Equal(j.ToVersion)
	}
	return j.From != j.To
}

// String is the jump as preflight names it and spec.preflight.acceptVersionChange accepts it.
func (j Jump) String() string { return j.From + " -> " + j.To }

// Support is what Mastodon supports of a jump.
type Support string

// The kinds of support.
const (
	// Online: supported while the old version serves (its post-deployment migrations assume
	// only the version before).
	Online Support = "Online"
	// Offline: supported only with the old version stopped (each skipped release's upgrade
	// notes followed); never while it serves.
	Offline Support = "Offline"
	// Never: not supported at all.
	Never Support = "Never"
	// Unknown: a tag names no version; the jump cannot be judged.
	Unknown Support = "Unknown"
)

// Rule is one line of the table: which jumps it matches, what Mastodon supports of them, why,
// and where Mastodon says so.
type Rule struct {
	Name    string
	Matches func(from, to *semver.Version) bool
	Support Support
	Why     string
	Source  string
}

// Sources of the rules.
const (
	sourceUpgrading = "https://docs.joinmastodon.org/admin/upgrading/"
	// Every release's notes since v3.3.1: "If you are upgrading directly from an earlier
	// release, please carefully read the upgrade notes for the skipped releases as well, as
	// they often require extra steps such as database migrations."
	// The notes of a release with post-deployment migrations run them (without
	// SKIP_POST_DEPLOYMENT_MIGRATIONS) only once every process runs the new code: they remove
	// what the release before still reads.
	sourceReleaseNotes = "https://github.com/mastodon/mastodon/releases"
)

// Rules is the table, first match wins; the rules after the first read only the major and minor
// versions, so a pre-release (v4.6.0-rc.1) counts as its release. A patch release and the next minor (or major) release
// are the upgrades each release's notes are written for; anything further skips releases whose
// post-deployment migrations the next ones rely on.
var Rules = []Rule{
	{Name: "downgrade", Matches: func(f, t *semver.Version) bool { return t.LessThan(f) }, Support: Never,
		Why:    "Mastodon's migrations only go forward: the older code does not run on the newer schema, and db:prepare does not undo them",
		Source: sourceUpgrading},
	{Name: "patch release", Matches: func(f, t *semver.Version) bool { return t.Major() == f.Major() && t.Minor() == f.Minor() },
		Support: Online, Why: "a patch release of the same minor version",
		Source: sourceReleaseNotes},
	{Name: "next minor release", Matches: func(f, t *semver.Version) bool { return t.Major() == f.Major() && t.Minor() == f.Minor()+1 },
		Support: Online, Why: "the next minor release, whose upgrade notes start from this one",
		Source: sourceReleaseNotes},
	{Name: "3.5 to 4.0", Matches: func(f, t *semver.Version) bool {
		return f.Major() == 3 && f.Minor() == 5 && t.Major() == 4 && t.Minor() == 0
	}, Support: Online, Why: "4.0 is the release after 3.5", Source: sourceReleaseNotes},
	{Name: "skips releases", Matches: func(f, t *semver.Version) bool { return true }, Support: Offline,
		Why:    "it skips minor releases: each one's post-deployment migrations must run, with its upgrade notes, before the next release's code serves",
		Source: sourceReleaseNotes},
}

// Verdict is a jump judged by the table.
type Verdict struct {
	Jump    Jump
	Support Support
	// Rule is the line that matched; nil for Unknown.
	Rule *Rule
}

// Judge applies the table to a jump that changed the version.
func Judge(j Jump) Verdict {
	if j.FromVersion == nil || j.ToVersion == nil {
		return Verdict{Jump: j, Support: Unknown}
	}
	for i := range Rules {
		if Rules[i].Matches(j.FromVersion, j.ToVersion) {
			return Verdict{Jump: j, Support: Rules[i].Support, Rule: &Rules[i]}
		}
	}
	return Verdict{Jump: j, Support: Unknown}
}

// Describe names the jump and what the table says of it, with the source.
func (v Verdict) Describe() string {
	if v.Rule == nil {
		unknown := v.Jump.From
		if v.Jump.FromVersion != nil {
			unknown = v.Jump.To
		}
		return fmt.Sprintf("Mastodon %s: tag %s names no version, so whether Mastodon supports the jump cannot be judged", v.Jump, unknown)
	}
	return fmt.Sprintf("Mastodon %s (%s): %s (source: %s)", v.Jump, v.Rule.Name, v.Rule.Why, v.Rule.Source)
}
