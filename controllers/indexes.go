package controllers

import (
	"context"

	discoveryv1 "k8s.io/api/discovery/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
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
		if a := m.Status.Adoption; a != nil {
			for _, s := range a.SetAside {
				keys = append(keys, "Deployment/"+s.As)
			}
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
		return r.migrationsIndexed(ctx, o.GetNamespace(), key)
	}
}

// migrationsOfEndpointSlice maps an EndpointSlice to the migrations that name its Service: the
// SourceServices rule counts the Service's ready endpoints. Not migrationsNaming: a slice copies
// its Service's labels, so an instance label there names a release, not the Service.
func (r *MastodonMigrationReconciler) migrationsOfEndpointSlice(ctx context.Context, o client.Object) []reconcile.Request {
	return r.migrationsIndexed(ctx, o.GetNamespace(), "Service/"+o.GetLabels()[discoveryv1.LabelServiceName])
}

// endpointSliceReadiness passes the EndpointSlices of a Service and, of their updates, only those
// where the slice gains its first ready endpoint or loses its last: all the SourceServices rule
// can tell apart, while a busy Service's slices change at every pod restart.
var endpointSliceReadiness = predicate.And(
	predicate.NewPredicateFuncs(func(o client.Object) bool { return o.GetLabels()[discoveryv1.LabelServiceName] != "" }),
	predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
		hadReady := preflight.ReadyEndpoints(e.ObjectOld.(*discoveryv1.EndpointSlice)) > 0
		return hadReady != (preflight.ReadyEndpoints(e.ObjectNew.(*discoveryv1.EndpointSlice)) > 0)
	}},
)

// migrationsIndexed lists the migrations in namespace whose indexSourceObject has key.
func (r *MastodonMigrationReconciler) migrationsIndexed(ctx context.Context, namespace, key string) []reconcile.Request {
	var list v1alpha1.MastodonMigrationList
	if err := r.List(ctx, &list, client.InNamespace(namespace), client.MatchingFields{indexSourceObject: key}); err != nil {
		log.FromContext(ctx).Error(err, "listing migrations that name an object", "key", key)
		return nil
	}
	reqs := make([]reconcile.Request, len(list.Items))
	for i := range list.Items {
		reqs[i] = reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[i])}
	}
	return reqs
}

// migrationOf maps a MastodonRollback to the migration it names.
func migrationOf(_ context.Context, o client.Object) []reconcile.Request {
	rb := o.(*v1alpha1.MastodonRollback)
	return []reconcile.Request{{NamespacedName: client.ObjectKey{Namespace: rb.Namespace, Name: rb.Spec.MigrationRef.Name}}}
}
