package controllers

import (
	"context"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/mastodon-operator/mastodon-operator/api/v1alpha1"
	"github.com/mastodon-operator/mastodon-operator/internal/preflight"
)

const (
	// indexSourceObject indexes migrations by the source objects they name, as "Kind/name".
	indexSourceObject = "spec.source.objects"
	// indexMigrationRef indexes rollbacks by the migration they name.
	indexMigrationRef = "spec.migrationRef.name"
)

func indexSourceObjects(ctx context.Context, mgr ctrl.Manager) error {
	return mgr.GetFieldIndexer().IndexField(ctx, &v1alpha1.MastodonMigration{}, indexSourceObject, func(o client.Object) []string {
		m := o.(*v1alpha1.MastodonMigration)
		var keys []string
		for _, d := range preflight.SourceDeployments(m) {
			keys = append(keys, "Deployment/"+d.Name)
		}
		for _, s := range m.Spec.Source.Services {
			keys = append(keys, "Service/"+s)
		}
		if m.Spec.Source.Ingress != "" {
			keys = append(keys, "Ingress/"+m.Spec.Source.Ingress)
		}
		// The maintenance page's objects carry its name as their instance label, like a release.
		return append(keys, releaseKey(m.Spec.Release.Name), releaseKey(maintenancePage(m).Name))
	})
}

// releaseKey is the index key of the objects of a Helm release, by the chart's instance label.
func releaseKey(release string) string { return "Release/" + release }

// migrationsNaming maps an object of the given kind to the migrations in its namespace that name
// it as a source object, or whose release it belongs to.
func (r *MastodonMigrationReconciler) migrationsNaming(kind string) handler.MapFunc {
	return func(ctx context.Context, o client.Object) []reconcile.Request {
		key := kind + "/" + o.GetName()
		if release := o.GetLabels()[labelChartInstance]; release != "" {
			key = releaseKey(release)
		}
		var list v1alpha1.MastodonMigrationList
		if err := r.List(ctx, &list, client.InNamespace(o.GetNamespace()), client.MatchingFields{indexSourceObject: key}); err != nil {
			log.FromContext(ctx).Error(err, "listing migrations that name an object", "kind", kind, "name", o.GetName())
			return nil
		}
		reqs := make([]reconcile.Request, len(list.Items))
		for i := range list.Items {
			reqs[i] = reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[i])}
		}
		return reqs
	}
}

// migrationOf maps a MastodonRollback to the migration it names.
func migrationOf(_ context.Context, o client.Object) []reconcile.Request {
	rb := o.(*v1alpha1.MastodonRollback)
	return []reconcile.Request{{NamespacedName: client.ObjectKey{Namespace: rb.Namespace, Name: rb.Spec.MigrationRef.Name}}}
}
