package envparity

import (
	"fmt"
	"slices"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
)

// Classify says what a difference between the old and the new container of a component (web,
// streaming or sidekiq) means for the migration, and why, in a few words:
//
//   - Blocks: the new pods would not start (a ConfigMap or Secret key they read does not exist),
//     or would lose access to data (a variable whose value keeps data, such as OTP_SECRET or
//     ACTIVE_RECORD_ENCRYPTION_*, dropped or changed);
//   - Informational: nothing Mastodon does changes: the same value moved into or out of a
//     Secret, a variable added or dropped at the value Mastodon uses when it is unset
//     (mastodonUnset), or one this component does not read;
//   - Changes: anything else, a value that differs or a setting that is dropped.
//
// old is the old container's environment, for a default that follows another variable.
func Classify(component string, d Difference, old map[string]Value) (v1alpha1.FindingClass, string) {
	u, known := mastodonUnset[component+"/"+d.Name]
	if !known {
		u, known = mastodonUnset[d.Name]
	}
	switch {
	case d.NewValue.Missing:
		return v1alpha1.FindingBlocks, "the new pods would not start: they read " + d.NewValue.String()
	case d.SameValue:
		return v1alpha1.FindingInformational, "the same value, moved into or out of a Secret"
	case known && u.unread:
		return v1alpha1.FindingInformational, "Mastodon does not read it (" + u.source + ")"
	case known && u.railsOnly && component == "streaming":
		return v1alpha1.FindingInformational, "the streaming server does not read it"
	case u.keeps != "" && d.Kind != KindAdded:
		return v1alpha1.FindingBlocks, u.keeps + " (" + u.source + ")"
	}
	isDefault := func(v Value) bool { return known && u.isDefault(v, old) }
	switch d.Kind {
	case KindMissing:
		if isDefault(d.OldValue) {
			return v1alpha1.FindingInformational, "it was what Mastodon uses when it is unset (" + u.source + ")"
		}
		return v1alpha1.FindingChanges, "a setting the old pods had is dropped"
	case KindAdded:
		switch {
		case isDefault(d.NewValue):
			return v1alpha1.FindingInformational, "what Mastodon uses when it is unset (" + u.source + ")"
		case known && u.hasDefault():
			return v1alpha1.FindingChanges, fmt.Sprintf("not what Mastodon uses when it is unset (%s)", u.source)
		}
		return v1alpha1.FindingChanges, "the old pods did not have it, and Mastodon has no default for it on record"
	default:
		if isDefault(d.OldValue) && isDefault(d.NewValue) {
			return v1alpha1.FindingInformational, "both are what Mastodon uses when it is unset (" + u.source + ")"
		}
		return v1alpha1.FindingChanges, "the value differs"
	}
}

func (u unset) hasDefault() bool { return u.value != "" || u.flag || u.sameAs != "" }

// isDefault reports whether the process would see v as it sees the variable unset. Only a
// value that may be shown (a literal or a ConfigMap's) is compared.
func (u unset) isDefault(v Value, old map[string]Value) bool {
	if !v.expandable() || !u.hasDefault() {
		return false
	}
	if cond, ok := old[u.unless[0]]; ok && cond.expandable() && cond.Literal == u.unless[1] {
		return false
	}
	if u.flag {
		return v.Literal != "true"
	}
	def := u.value
	if u.sameAs != "" {
		def = mastodonUnset[u.sameAs].value
		if o, ok := old[u.sameAs]; ok && o.expandable() {
			def = o.Literal
		}
	}
	return v.Literal == def || slices.Contains(u.aliases, v.Literal)
}
