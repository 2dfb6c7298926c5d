// Package v1alpha1 contains the API of the mastodon-operator: MastodonMigration, which carries a
// Kustomize-managed Mastodon over to a Helm release of the official chart, and MastodonRollback,
// which asks for one of the rollback procedure's three levels.
// +kubebuilder:object:generate=true
// +groupName=migration.mastodon-operator.io
package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the group and version of every kind in this package.
	GroupVersion = schema.GroupVersion{Group: "migration.mastodon-operator.io", Version: "v1alpha1"}

	// SchemeBuilder registers the kinds of this package with a scheme.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme adds the kinds of this package to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)
